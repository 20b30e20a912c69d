"""`emorec predict PATH [PATH ...]`: emotions of the faces in images, folders and videos.

A bad file among the inputs is reported on stderr (one line) and skipped; the others are
still processed and written. Exit status: 0 when every input was processed, 1 when some
could not be (results for the rest written), 2 for usage errors (bad model, bad options).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from emorec.cli import add_config_arguments

SAVE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
CHUNK = 16  # images decoded and classified together


EPILOG = """output: one line (text), row (CSV) or record (JSON) per face; a face's box is x, y, w, h
in original-image pixels (top-left corner, width, height). JSON faces have the shape of the API's:
{"box": [x, y, w, h], "label", "confidence", "probs": {class: p}, "det_score", "top": [{"label", "prob"}]}.
models: an .onnx file, or a shipped model by name: 5class (the default).
exit status: 0 every input processed; 1 some inputs could not be read (the rest are written);
2 usage error."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files, folders (searched recursively) or videos (.mp4 .avi .mov .mkv .webm)")
    p.add_argument("--model", help="ONNX file or shipped model name (default: 5class)")
    p.add_argument("--detector", choices=["yunet", "haar", "none"], help="face detector (default: config DETECTOR)")
    p.add_argument("--no-detect", action="store_true",
                   help="treat each whole image as one face (already-cropped faces)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON output")
    fmt.add_argument("--csv", action="store_true", help="CSV output, one row per face (or per face-less image/frame)")
    p.add_argument("--output", "-o", metavar="FILE", help="write the results to FILE instead of stdout")
    p.add_argument("--annotate", metavar="OUT",
                   help="save images with boxes and labels: a file for one image, else a folder")
    p.add_argument("--top-k", type=int, default=1, metavar="K", help="show the K most likely emotions per face")
    p.add_argument("--threads", type=int, metavar="N", help="ONNX Runtime threads (default: config ORT_THREADS)")
    p.add_argument("--every", type=int, default=1, metavar="N", help="videos: analyse every Nth frame")
    p.add_argument("--video-out", metavar="FILE", help="videos: write an annotated copy (.mp4 .avi .mkv .mov)")
    add_config_arguments(p)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from emorec.cli import config_from_args
    from emorec.errors import EmorecError
    from emorec.inference.predictor import Predictor
    from emorec.inference.video import VideoWriter, is_video

    cfg = config_from_args(args)
    if args.top_k < 1:
        raise EmorecError(f"--top-k must be at least 1, got {args.top_k}")
    if args.every < 1:
        raise EmorecError(f"--every must be at least 1, got {args.every}")
    if args.threads is not None and args.threads < 0:
        raise EmorecError(f"--threads must be 0 (all cores) or more, got {args.threads}")

    failed = 0

    def report(msg: str) -> None:
        nonlocal failed
        failed += 1
        tqdm.write(f"emorec predict: skipped {_printable(msg)}", file=sys.stderr)

    items, from_folder, problems = _collect(args.paths)
    if not items:  # nothing to do: a usage error, said in one line
        raise EmorecError(problems[0] if len(problems) == 1 else f"no images or videos found in: {' '.join(args.paths)}")
    for msg in problems:
        report(msg)
    videos = [p for p, _ in items if is_video(p)]
    writer = None
    if args.video_out:
        if len(videos) != 1:
            raise EmorecError(f"--video-out needs exactly one video among the inputs, got {len(videos)}")
        writer = VideoWriter(args.video_out)
    n_images = len(items) - len(videos)
    if args.annotate and videos:
        if not n_images:
            raise EmorecError("--annotate saves annotated images; for a video use --video-out FILE")
        tqdm.write("emorec predict: note: --annotate applies to the images; for videos use --video-out",
                   file=sys.stderr)
    annotate_to = _annotate_target(args.annotate, n_images, from_folder) if args.annotate else None

    detector = "none" if args.no_detect else args.detector
    predictor = Predictor.from_config(cfg, args.model, detector=detector, threads=args.threads)
    stream = _open_output(args.output)
    sink = (JsonSink if args.json else CsvSink if args.csv else TextSink)(stream, predictor, args.top_k)
    names: set[Path] = set()
    try:
        # disable=None: a bar only on a terminal, so logs and pipes get clean lines
        with tqdm(total=len(items), unit="file", disable=True if len(items) < 2 else None, file=sys.stderr) as bar:
            images = [(p, root) for p, root in items if not is_video(p)]
            for i in range(0, len(images), CHUNK):
                _images(images[i:i + CHUNK], predictor, sink, report, annotate_to, names, args.top_k)
                bar.update(len(images[i:i + CHUNK]))
            for path in videos:
                _video(path, predictor, sink, report, args.every, writer, args.top_k)
                bar.update(1)
        sink.close()
    except BrokenPipeError:  # `emorec predict ... | head`: the reader left, nothing to report
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        if writer is not None:
            writer.close()
        if stream is not sys.stdout:
            stream.close()
    return 1 if failed else 0


# --- inputs -------------------------------------------------------------------------

def _collect(paths: list[str]) -> tuple[list[tuple[Path, Path | None]], bool, list[str]]:
    """Files as given, folders expanded recursively to images and videos (sorted).
    Returns (file, its folder argument or None) pairs, whether a folder was given, problems."""
    from emorec.imageio import IMAGE_EXTS, find_files
    from emorec.inference.video import VIDEO_EXTS

    items: list[tuple[Path, Path | None]] = []
    problems: list[str] = []
    from_folder = False
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            from_folder = True
            found = find_files(p, IMAGE_EXTS + VIDEO_EXTS)
            if not found:
                problems.append(f"{p}: no images or videos in this folder")
            items += [(f, p) for f in found]
        elif p.exists():
            items.append((p, None))
        else:
            problems.append(f"{p}: no such file")
    return items, from_folder, problems


def _open_output(path: str | None):
    from emorec.errors import EmorecError

    if path is None:
        return sys.stdout
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        return open(path, "w", encoding="utf-8", newline="")
    except OSError as e:
        raise EmorecError(f"cannot write --output {path}: {e.strerror}") from None


# --- work ---------------------------------------------------------------------------

def _images(batch, predictor, sink, report, annotate_to, names, top_k) -> None:
    from emorec.errors import EmorecError
    from emorec.imageio import read_image

    decoded = []  # (path, root, image or the error message), in input order
    for path, root in batch:
        try:
            decoded.append((path, root, read_image(path)))
        except EmorecError as e:
            report(str(e))
            decoded.append((path, root, str(e)))
    results = iter(_predict_each(predictor, [img for _, _, img in decoded if not isinstance(img, str)]))
    for path, root, img in decoded:
        if isinstance(img, str):
            sink.error(path, img)
            continue
        faces = next(results)
        if isinstance(faces, Exception):  # this image's failure, never the run's
            msg = f"{path}: cannot classify ({type(faces).__name__}: {str(faces)[:200]})"
            report(msg)
            sink.error(path, msg)
            continue
        sink.faces(path, faces)
        if annotate_to is not None:
            _save_annotated(img, faces, path, root, annotate_to, names, top_k, report)


def _predict_each(predictor, images: list) -> list:
    """All images in one batch; should that fail, each alone, a failure standing in for its faces."""
    try:
        return predictor.predict(images)
    except Exception:
        out = []
        for img in images:
            try:
                out.append(predictor.predict([img])[0])
            except Exception as e:
                out.append(e)
        return out


def _video(path, predictor, sink, report, every, writer, top_k) -> None:
    from emorec.errors import EmorecError
    from emorec.inference.draw import annotate
    from emorec.inference.video import read_frames

    faces = []
    try:
        for frame in read_frames(path, every, decode_all=writer is not None):
            if frame.keep:
                faces = predictor.predict([frame.rgb])[0]
                sink.faces(path, faces, frame=frame.index, time_s=frame.time_s)
            if writer is not None:  # every frame, labelled with the latest analysed one
                writer.write(annotate(frame.rgb, faces, top_k, numbered=True), frame.fps)
    except EmorecError as e:
        report(str(e))
        sink.error(path, str(e))


def _annotate_target(out: str, n_images: int, from_folder: bool) -> tuple[Path, bool]:
    """(path, is_folder): a file for exactly one image given as a file, else a folder."""
    from emorec.errors import EmorecError

    target = Path(out)
    one_file = n_images == 1 and not from_folder and not target.is_dir()
    if one_file and target.suffix.lower() in SAVE_EXTS:
        return target, False
    if one_file and target.suffix:
        raise EmorecError(f"--annotate {out}: unknown image type; use one of {', '.join(SAVE_EXTS)}")
    if target.exists() and not target.is_dir():
        raise EmorecError(f"--annotate {out} is a file; with several images it must be a folder")
    return target, True


def _save_annotated(img, faces, path: Path, root: Path | None, target, names: set, top_k: int, report) -> None:
    from PIL import Image

    from emorec.inference.draw import annotate

    dest, is_folder = target
    if is_folder:
        rel = path.relative_to(root) if root is not None else Path(path.name)
        if rel.suffix.lower() not in SAVE_EXTS:
            rel = rel.with_suffix(".png")
        dest = dest / rel
        stem, n = dest.with_suffix(""), 1
        while dest in names:  # same name from two places: keep both
            dest = stem.with_name(f"{stem.name}_{n}").with_suffix(dest.suffix)
            n += 1
        names.add(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(annotate(img, faces, top_k, numbered=True)).save(dest)
    except OSError as e:
        report(f"{path}: cannot save annotated image to {dest} ({e})")


# --- output formats -----------------------------------------------------------------

def _printable(text) -> str:
    """One line whatever the file name holds: control characters as escapes (a newline as \\n)."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in str(text))


class TextSink:
    """``path  face#  x,y,w,h  label  confidence`` per face; "no face found" lines."""

    HEADER = "# path  face  x,y,w,h (box in pixels)  label confidence"

    def __init__(self, stream, predictor, top_k: int):
        self.stream, self.top_k = stream, top_k
        self._write(self.HEADER + ("  [next labels]" if top_k > 1 else ""))

    def _write(self, line: str) -> None:
        if self.stream.isatty():  # a progress bar may share the terminal: let tqdm redraw it
            from tqdm import tqdm

            tqdm.write(line, file=self.stream)
        else:
            self.stream.write(line + "\n")

    def faces(self, path, faces, frame: int | None = None, time_s: float | None = None) -> None:
        where = _printable(path) if frame is None else f"{_printable(path)} frame {frame}"
        if not faces:
            self._write(f"{where}  no face found")
        for i, f in enumerate(faces, 1):
            x, y, w, h = f.box
            labels = "  ".join(f"{c} {p:.3f}" for c, p in f.top_k(self.top_k))
            self._write(f"{where}  {i}  {x},{y},{w},{h}  {labels}")

    def error(self, path, msg: str) -> None:  # already on stderr
        pass

    def close(self) -> None:
        self.stream.flush()


class CsvSink:
    def __init__(self, stream, predictor, top_k: int):
        import csv

        self.classes = predictor.classes
        self.writer = csv.writer(stream)
        self.stream = stream
        self.writer.writerow(["path", "frame", "time_s", "face", "x", "y", "w", "h", "det_score", "label",
                              "confidence", *[f"p_{c}" for c in self.classes], "error"])

    def faces(self, path, faces, frame: int | None = None, time_s: float | None = None) -> None:
        frame_cols = ["" if frame is None else frame, "" if time_s is None else f"{time_s:.3f}"]
        if not faces:
            self.writer.writerow([path, *frame_cols] + [""] * (8 + len(self.classes)) + [""])
        for i, f in enumerate(faces, 1):
            self.writer.writerow([path, *frame_cols, i, *f.box, f"{f.det_score:.4f}", f.label,
                                  f"{f.confidence:.6f}", *[f"{f.probs[c]:.6f}" for c in self.classes], ""])

    def error(self, path, msg: str) -> None:
        self.writer.writerow([path] + [""] * (10 + len(self.classes)) + [msg])

    def close(self) -> None:
        self.stream.flush()


class JsonSink:
    """One JSON document: model facts and one record per image or analysed frame."""

    def __init__(self, stream, predictor, top_k: int):
        self.stream, self.top_k = stream, top_k
        self.doc = {"model": str(predictor.model_path), "classes": predictor.classes,
                    "detector": predictor.detector_name, "results": []}

    def faces(self, path, faces, frame: int | None = None, time_s: float | None = None) -> None:
        rec = {"path": str(path)}
        if frame is not None:
            rec.update(frame=frame, time_s=round(time_s or 0.0, 3))
        rec["faces"] = [f.to_dict(self.top_k) for f in faces]
        self.doc["results"].append(rec)

    def error(self, path, msg: str) -> None:
        self.doc["results"].append({"path": str(path), "error": msg})

    def close(self) -> None:
        import json

        json.dump(self.doc, self.stream, indent=2)
        self.stream.write("\n")
        self.stream.flush()

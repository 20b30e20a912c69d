"""Batch prediction over files, folders and videos: the pipeline behind ``emorec predict``.

Inputs are collected (folders searched recursively), images decoded and classified
``CHUNK`` at a time, videos frame by frame; each result goes to a writer
(``inference.writers``). A bad input costs one ``report`` line and its own result only:
the rest of the batch is still processed.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

from emorec.errors import EmorecError
from emorec.files import atomic_path, display_name
from emorec.imageio import IMAGE_EXTS, find_files, read_image
from emorec.inference.draw import annotate
from emorec.inference.face import TOP_K
from emorec.inference.people import People, track_frames, video_summary
from emorec.inference.video import VIDEO_EXTS, VideoReader, is_video

SAVE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
CHUNK = 16  # images decoded and classified together


def collect(paths: list[str]) -> tuple[list[tuple[Path, Path | None]], bool, list[tuple[Path, str]]]:
    """Files as given, folders expanded recursively to images and videos (sorted).
    Returns (file, its folder argument or None) pairs, whether a folder was given, and
    (path, problem) for each argument that gave nothing (missing, an empty folder)."""
    items: list[tuple[Path, Path | None]] = []
    problems: list[tuple[Path, str]] = []
    from_folder = False
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            from_folder = True
            found = find_files(p, IMAGE_EXTS + VIDEO_EXTS)
            if not found:
                problems.append((p, f"{p}: no images or videos in this folder"))
            items += [(f, p) for f in found]
        elif p.exists():
            items.append((p, None))
        else:
            problems.append((p, f"{p}: no such file"))
    return items, from_folder, problems


def predict_inputs(items: list[tuple[Path, Path | None]], predictor, writer, report: Callable[[str], None], *,
                   top_k: int = TOP_K, every: int = 1, annotate_to: tuple[Path, bool] | None = None,
                   video_writer=None, progress: Callable[[int], None] | None = None, smooth_s: float = 0.5,
                   max_missing_s: float = 1.0, on_video: Callable[[dict, People], None] | None = None) -> None:
    """Images (``CHUNK`` at a time, input order kept), then videos (every ``every``-th frame,
    faces tracked and their emotions smoothed over ``smooth_s`` seconds) -> ``writer``;
    ``report(msg)`` hears of each input that failed; ``annotate_to`` (``annotate_target``) saves
    annotated images; ``video_writer`` gets every frame, labelled; ``on_video(summary, people)``
    hears of each video read to the end."""
    names: set[Path] = set()
    images = [(p, root) for p, root in items if not is_video(p)]
    for i in range(0, len(images), CHUNK):
        _images(images[i:i + CHUNK], predictor, writer, report, annotate_to, names, top_k)
        if progress:
            progress(len(images[i:i + CHUNK]))
    for path in (p for p, _ in items if is_video(p)):
        _video(path, predictor, writer, report, every, video_writer, top_k,
               People(predictor.classes, smooth_s=smooth_s, max_missing_s=max_missing_s), on_video)
        if progress:
            progress(1)


def _images(batch, predictor, out, report, annotate_to, names, top_k) -> None:
    decoded = []  # (path, root, image or the error message), in input order
    for path, root in batch:
        try:
            decoded.append((path, root, read_image(path)))
        except EmorecError as e:
            report(str(e))
            decoded.append((path, root, str(e)))
    results = iter(predict_each(predictor, [img for _, _, img in decoded if not isinstance(img, str)]))
    for path, root, img in decoded:
        if isinstance(img, str):
            out.error(path, img)
            continue
        faces = next(results)
        if isinstance(faces, Exception):  # this image's failure, never the run's
            msg = f"{path}: cannot classify ({type(faces).__name__}: {str(faces)[:200]})"
            report(msg)
            out.error(path, msg)
            continue
        out.faces(path, faces, size=(img.shape[1], img.shape[0]))
        if annotate_to is not None:
            _save_annotated(img, faces, path, root, annotate_to, names, top_k, report)


def predict_each(predictor, images: list) -> list:
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


def _video(path, predictor, out, report, every, video_writer, top_k, people: People, on_video) -> None:
    try:
        video = VideoReader(path, every, decode_all=video_writer is not None)
        for frame, faces in track_frames(video, predictor, people):
            if frame.keep:
                out.faces(path, faces, size=(frame.rgb.shape[1], frame.rgb.shape[0]), frame=frame.index,
                          time_s=frame.time_s)
            if video_writer is not None:  # every frame, labelled with the latest analysed one
                video_writer.write(annotate(frame.rgb, faces, top_k, numbered=True), frame.fps)
    except EmorecError as e:
        report(str(e))
        out.error(path, str(e))
        return
    summary = video_summary(display_name(path), video, people)
    out.video(summary)
    if on_video is not None:
        on_video(summary, people)


def annotate_target(out: str, n_images: int, from_folder: bool) -> tuple[Path, bool]:
    """(path, is_folder): a file for exactly one image given as a file, else a folder."""
    target = Path(out)
    one_file = n_images == 1 and not from_folder and not target.is_dir()
    if one_file and target.suffix.lower() in SAVE_EXTS:
        return target, False
    if one_file and target.suffix:
        raise EmorecError(f"--annotate {out}: unknown image type; use one of {', '.join(SAVE_EXTS)}")
    if target.exists() and not target.is_dir():
        raise EmorecError(f"--annotate {out} is a file; with several images it must be a folder")
    return target, True


def annotated_path(path: Path, root: Path | None, target: tuple[Path, bool]) -> Path:
    """Where the annotated copy of ``path`` goes (before any _1, _2 for names met twice)."""
    dest, is_folder = target
    if not is_folder:
        return dest
    rel = path.relative_to(root) if root is not None else Path(path.name)
    return dest / (rel if rel.suffix.lower() in SAVE_EXTS else rel.with_suffix(".png"))


def refuse_overwriting_inputs(items: list[tuple[Path, Path | None]], output: str | None, video_out: str | None,
                              annotate_to: tuple[Path, bool] | None, summary: str | None = None,
                              *timelines: str) -> None:
    """An output that would write over an input, or over another output, is a usage error,
    said before any work."""
    inputs = {p.resolve() for p, _ in items}
    written: dict[Path, str] = {}
    for flag, out in (("--output", output), ("--video-out", video_out), ("--summary", summary),
                      *(("--timeline", t) for t in timelines)):
        if not out:
            continue
        if Path(out).resolve() in inputs:
            raise EmorecError(f"{flag} {out} is one of the inputs; refusing to write over it")
        if Path(out).resolve() in written:
            raise EmorecError(f"{flag} {out} is also {written[Path(out).resolve()]}; name two files")
        written[Path(out).resolve()] = flag
    if annotate_to is not None:
        for p, root in items:
            if not is_video(p) and annotated_path(p, root, annotate_to).resolve() in inputs:
                raise EmorecError(f"--annotate {annotate_to[0]} would write over the input "
                                  f"{annotated_path(p, root, annotate_to)}; choose another folder")


def _pil_format(dest: Path) -> str:
    ext = dest.suffix.lower()
    return {".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}.get(ext, ext.lstrip(".").upper())


def _save_annotated(img, faces, path: Path, root: Path | None, target, names: set, top_k: int, report) -> None:
    from PIL import Image

    dest, is_folder = target[0], target[1]
    if is_folder:
        dest = annotated_path(path, root, target)
        stem, n = dest.with_suffix(""), 1
        while dest in names:  # same name from two places: keep both
            dest = stem.with_name(f"{stem.name}_{n}").with_suffix(dest.suffix)
            n += 1
        names.add(dest)
    try:
        with atomic_path(dest, "annotated image") as tmp:
            Image.fromarray(annotate(img, faces, top_k, numbered=True)).save(tmp, format=_pil_format(dest))
    except EmorecError as e:
        report(f"{path}: {e}")



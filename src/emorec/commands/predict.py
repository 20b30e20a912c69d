"""`emorec predict PATH [PATH ...]`: emotions of the faces in images, folders and videos.

An input that cannot be processed (missing, an empty folder, unreadable, not an image) is
reported on stderr (one line) and recorded in the output with its error; the others are still
processed and written. Exit status: 0 when every input was processed, 1 when one or more could
not be (alone or beside good ones), 2 for usage errors, before any input is read (bad option,
bad model, bad output path).
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
from pathlib import Path

from emorec.cli import add_config_arguments
from emorec.inference.face import TOP_K

EPILOG = """output: one line (text) or row (CSV) per face, or one JSON document; a face's box is x, y, w, h
in original-image pixels (top-left corner, width, height). JSON: {"model", "classes", "detector",
"results": [image, ...]}, each image as the API's POST /predict answers it: {"path", "width", "height",
"faces": [{"box", "label", "confidence", "probs", "det_score", "top"}], "error"} (an image that
failed: "faces": [] and the error).
models: an .onnx file, or a shipped model by name: 5class (the default) or 7class (with neutral
and disgust).
exit status: 0 every input processed; 1 one or more inputs could not be (missing, unreadable:
each reported, the rest written); 2 usage error (bad option, model or output path), nothing run."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.epilog = EPILOG
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="image files, folders (searched recursively) or videos (.mp4 .avi .mov .mkv .webm)")
    p.add_argument("--model", help="ONNX file or shipped model name: 5class (default) or 7class")
    p.add_argument("--detector", choices=["yunet", "haar", "none"], help="face detector (default: config DETECTOR)")
    p.add_argument("--no-detect", action="store_true",
                   help="treat each whole image as one face (already-cropped faces)")
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="JSON output")
    fmt.add_argument("--csv", action="store_true", help="CSV output, one row per face (or per face-less image/frame)")
    p.add_argument("--output", "-o", metavar="FILE", help="write the results to FILE instead of stdout")
    p.add_argument("--annotate", metavar="OUT",
                   help="save images with boxes and labels: a file for one image, else a folder")
    p.add_argument("--top-k", type=int, default=TOP_K, metavar="K",
                   help=f"show the K most likely emotions per face (default {TOP_K}, as the API)")
    p.add_argument("--threads", type=int, metavar="N", help="ONNX Runtime threads (default: config ORT_THREADS)")
    p.add_argument("--every", type=int, default=1, metavar="N", help="videos: analyse every Nth frame")
    p.add_argument("--video-out", metavar="FILE", help="videos: write an annotated copy (.mp4 .avi .mkv .mov)")
    add_config_arguments(p)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from emorec.cli import config_from_args
    from emorec.errors import EmorecError
    from emorec.files import atomic_path
    from emorec.inference.batch import annotate_target, collect, predict_inputs, refuse_overwriting_inputs
    from emorec.inference.predictor import Predictor
    from emorec.inference.video import VideoWriter, is_video
    from emorec.inference.writers import WRITERS, printable

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
        tqdm.write(f"emorec predict: skipped {printable(msg)}", file=sys.stderr)

    items, from_folder, problems = collect(args.paths)
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
    annotate_to = annotate_target(args.annotate, n_images, from_folder) if args.annotate else None
    refuse_overwriting_inputs(items, args.output, args.video_out, annotate_to)

    detector = "none" if args.no_detect else args.detector
    predictor = Predictor.from_config(cfg, args.model, detector=detector, threads=args.threads)
    if args.output is not None and Path(args.output).is_dir():
        raise EmorecError(f"--output {args.output} is a directory; name a file")
    with contextlib.ExitStack() as stack:
        # --output is written to a temporary file and renamed at the end: a failure keeps the old one
        stream = sys.stdout if args.output is None else stack.enter_context(
            open(stack.enter_context(atomic_path(args.output, "--output")), "w", encoding="utf-8", newline="",
                 errors="backslashreplace"))
        out = WRITERS["json" if args.json else "csv" if args.csv else "text"](stream, predictor, args.top_k)
        for path, msg in problems:
            report(msg)
            out.error(path, msg)
        try:
            # disable=None: a bar only on a terminal, so logs and pipes get clean lines
            with tqdm(total=len(items), unit="file", disable=True if len(items) < 2 else None,
                      file=sys.stderr) as bar:
                predict_inputs(items, predictor, out, report, top_k=args.top_k, every=args.every,
                               annotate_to=annotate_to, video_writer=writer, progress=bar.update)
            out.close()
        except BrokenPipeError:  # `emorec predict ... | head`: the reader left, nothing to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except BaseException:
            if writer is not None:
                writer.discard()  # no half-written video left behind
            raise
        if writer is not None:
            writer.close()
    return 1 if failed else 0

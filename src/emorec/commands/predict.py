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
import json
import os
import sys
from pathlib import Path

from emorec.cli import add_config_arguments
from emorec.inference.face import TOP_K

EPILOG = """output: one line (text) or row (CSV) per face, one JSON document, or JSON lines (one image
or video frame a line); a face's box is x, y, w, h in original-image pixels (top-left corner, width,
height). JSON: {"model", "classes", "detector", "results": [image, ...], "videos": [summary, ...]},
each image as the API's POST /predict answers it: {"path", "width", "height", "faces": [{"box",
"label", "confidence", "probs", "det_score", "top"}], "error"} (an image that failed: "faces": []
and the error).
videos: each person gets a track id that stays with them across frames; their emotions are
smoothed over --smooth seconds. A video frame's record adds "frame" and "time_s", its faces
"track" and "smoothed" (label, confidence and top are the smoothed ones, probs the frame's own);
CSV adds track and s_<class> columns. The text output is a table per video: each person's time
on screen, share of time per emotion, dominant emotion and strongest moments; --summary writes
the same as JSON ({"path", "frames", "fps", "duration_s", "every", "smooth_s", "people": [{"track",
"first_s", "last_s", "seen_s", "dominant", "share", "moments"}]}).
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
    fmt.add_argument("--jsonl", action="store_true", help="JSON lines: one image or video frame per line, as it comes")
    p.add_argument("--output", "-o", metavar="FILE", help="write the results to FILE instead of stdout")
    p.add_argument("--annotate", metavar="OUT",
                   help="save images with boxes and labels: a file for one image, else a folder")
    p.add_argument("--top-k", type=int, default=TOP_K, metavar="K",
                   help=f"show the K most likely emotions per face (default {TOP_K}, as the API)")
    p.add_argument("--threads", type=int, metavar="N", help="ONNX Runtime threads (default: config ORT_THREADS)")
    p.add_argument("--every", type=int, default=1, metavar="N", help="videos: analyse every Nth frame")
    p.add_argument("--video-out", metavar="FILE",
                   help="videos: write an annotated copy (.mp4 .avi .mkv .mov): track ids and smoothed labels")
    p.add_argument("--smooth", type=float, metavar="S",
                   help="videos: smooth each person's emotions over about S seconds (0: raw; default config SMOOTH_S)")
    p.add_argument("--summary", metavar="FILE", help="videos: write each video's per-person summary (JSON)")
    p.add_argument("--timeline", metavar="PNG",
                   help="videos: draw each person's smoothed emotions over time, to PNG for one video, to "
                        "a folder of <video name>.png for several (needs matplotlib)")
    add_config_arguments(p)


def timeline_paths(videos: list[Path], target: str | None) -> dict[str, Path]:
    """Where each video's timeline goes, by the video's shown name: ``target`` itself for one
    video, ``target/<name>.png`` for several (``_1``, ``_2`` for names met twice)."""
    from emorec.files import display_name

    if not target:
        return {}
    if len(videos) == 1:
        return {display_name(videos[0]): Path(target)}
    out, used = {}, set()
    for v in videos:
        dest, n = Path(target) / f"{v.stem}.png", 1
        while dest in used:
            dest, n = Path(target) / f"{v.stem}_{n}.png", n + 1
        used.add(dest)
        out[display_name(v)] = dest
    return out


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from emorec.cli import config_from_args
    from emorec.errors import EmorecError, require
    from emorec.files import atomic_path, write_text
    from emorec.inference.batch import annotate_target, collect, predict_inputs, refuse_overwriting_inputs
    from emorec.inference.predictor import Predictor
    from emorec.inference.people import summary_table
    from emorec.inference.timeline import timeline_png
    from emorec.inference.video import VideoWriter, is_video
    from emorec.inference.writers import WRITERS, printable, printable_lines

    cfg = config_from_args(args)
    if args.top_k < 1:
        raise EmorecError(f"--top-k must be at least 1, got {args.top_k}")
    if args.every < 1:
        raise EmorecError(f"--every must be at least 1, got {args.every}")
    if args.threads is not None and args.threads < 0:
        raise EmorecError(f"--threads must be 0 (all cores) or more, got {args.threads}")
    smooth_s = cfg.smooth_s if args.smooth is None else args.smooth
    if not 0 <= smooth_s < float("inf"):
        raise EmorecError(f"--smooth must be 0 (raw) or more seconds, got {args.smooth}")

    failed = 0

    def report(msg: str) -> None:
        nonlocal failed
        failed += 1
        tqdm.write(f"emorec predict: skipped {printable(msg)}", file=sys.stderr)

    items, from_folder, problems = collect(args.paths)
    videos = [p for p, _ in items if is_video(p)]
    writer = None
    if args.video_out and len(videos) != 1:
        raise EmorecError(f"--video-out needs exactly one video among the inputs, got {len(videos)}")
    if args.timeline:
        if not videos:
            raise EmorecError("--timeline draws videos; there is none among the inputs")
        if len(videos) == 1 and Path(args.timeline).suffix.lower() != ".png":
            raise EmorecError(f"--timeline {args.timeline}: name a .png file")
        if len(videos) > 1 and Path(args.timeline).is_file():
            raise EmorecError(f"--timeline {args.timeline} is a file; with several videos it must be a folder")
        require("matplotlib", "video")  # said before the video is read, not after
    timelines = timeline_paths(videos, args.timeline)
    if args.summary and not videos:
        raise EmorecError("--summary describes videos; there is none among the inputs")
    if args.video_out:
        writer = VideoWriter(args.video_out)
    n_images = len(items) - len(videos)
    if args.annotate and videos:
        if not n_images:
            raise EmorecError("--annotate saves annotated images; for a video use --video-out FILE")
        tqdm.write("emorec predict: note: --annotate applies to the images; for videos use --video-out",
                   file=sys.stderr)
    annotate_to = annotate_target(args.annotate, n_images, from_folder) if args.annotate else None
    refuse_overwriting_inputs(items, args.output, args.video_out, annotate_to, args.summary,
                              *[str(t) for t in timelines.values()])

    detector = "none" if args.no_detect else args.detector
    predictor = Predictor.from_config(cfg, args.model, detector=detector, threads=args.threads)
    if args.output is not None and Path(args.output).is_dir():
        raise EmorecError(f"--output {args.output} is a directory; name a file")
    with contextlib.ExitStack() as stack:
        # --output is written to a temporary file and renamed at the end: a failure keeps the old one
        stream = sys.stdout if args.output is None else stack.enter_context(
            open(stack.enter_context(atomic_path(args.output, "--output")), "w", encoding="utf-8", newline="",
                 errors="backslashreplace"))
        fmt = "json" if args.json else "csv" if args.csv else "jsonl" if args.jsonl else "text"
        out = WRITERS[fmt](stream, predictor, args.top_k)
        summaries: list[dict] = []

        def on_video(summary, people) -> None:
            summaries.append(summary)
            if fmt != "text" and sys.stderr.isatty():  # the table for the person at the terminal
                tqdm.write(printable_lines(summary_table(summary)), file=sys.stderr)
            if args.timeline:
                timeline_png(people.series(), predictor.classes, timelines[summary["path"]],
                             duration_s=summary["duration_s"],
                             title=f"{summary['path']}: smoothed over {smooth_s:g} s")

        for path, msg in problems:
            report(msg)
            out.error(path, msg)
        try:
            # disable=None: a bar only on a terminal, so logs and pipes get clean lines
            with tqdm(total=len(items), unit="file", disable=True if len(items) < 2 else None,
                      file=sys.stderr) as bar:
                predict_inputs(items, predictor, out, report, top_k=args.top_k, every=args.every,
                               annotate_to=annotate_to, video_writer=writer, progress=bar.update,
                               smooth_s=smooth_s, max_missing_s=cfg.track_max_missing_s, on_video=on_video)
            out.close()
            if args.summary:
                write_text(args.summary, json.dumps(summaries, indent=2) + "\n", "--summary")
        except BrokenPipeError:  # `emorec predict ... | head`: the reader left, nothing to report
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except BaseException:
            if writer is not None:
                writer.discard()  # no half-written video left behind
            raise
        if writer is not None:
            writer.close()
    return 1 if failed else 0

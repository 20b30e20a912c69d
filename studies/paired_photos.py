"""Is one model really better than another on the same labelled photos? McNemar's exact test on
the photos one model gets right and the other wrong, each photo through the face detector as
``emorec evaluate --photos`` scores it (no face found: wrong).

    python studies/paired_photos.py OLD.onnx NEW.onnx [--photos ../shared/datasets/muxspace_dev.zip]

Photos of classes either model lacks are left out. Table in studies/paired_photos.md.
"""
import argparse
import os
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

from emorec.config import load_config
from emorec.data.pipeline import label_columns
from emorec.data.sources import open_sources
from emorec.imageio import read_image
from emorec.inference.face import largest_face
from emorec.inference.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOREC_SHARED", ROOT.parent / "shared"))


def right_or_wrong(predictor: Predictor, photos: Path, classes: set[str]) -> np.ndarray:
    cfg = load_config()
    ok = []
    for src in open_sources([str(photos)], label_columns(cfg)):
        try:
            for e in src.entries:
                if e.label in classes:
                    face = largest_face(predictor.predict([read_image(src.read(e.name), name=e.name)])[0])
                    ok.append(face is not None and face.label == e.label)
        finally:
            src.close()
    return np.array(ok)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--photos", type=Path, default=SHARED / "datasets" / "muxspace_dev.zip")
    args = ap.parse_args()
    cfg = load_config()
    a, b = (Predictor.from_config(cfg, m, check_classes=False) for m in (args.old, args.new))
    classes = set(a.classes) & set(b.classes)
    old, new = right_or_wrong(a, args.photos, classes), right_or_wrong(b, args.photos, classes)
    only_old, only_new = int((old & ~new).sum()), int((new & ~old).sum())
    p = binomtest(min(only_old, only_new), only_old + only_new).pvalue if only_old + only_new else 1.0
    print(f"| {args.old} | {args.new} | {len(old)} | {old.mean():.1%} | {new.mean():.1%} | {only_old} | {only_new} "
          f"| {p:.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""How often does an int8 file answer as its fp32 file does? Label-free: top-1 agreement on the
FER2013 PublicTest faces of a split (the val split of `emorec data prepare`) and on the largest
detector crop of each labelled photo, the crops `emorec evaluate --photos` scores.

    python studies/int8_agreement.py FP32 INT8 [INT8 ...] --data-dir data_split_7 \
        [--photos ../shared/datasets/muxspace_dev.zip]

Rule and table: configs/blend_7class_photos.yaml (int8 rule), studies/int8_agreement.md.
"""
import argparse
import os
from pathlib import Path

import numpy as np

from emorec.config import load_config
from emorec.data.dataset import load_split
from emorec.data.pipeline import label_columns
from emorec.data.sources import open_sources
from emorec.imageio import read_image
from emorec.inference.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOREC_SHARED", ROOT.parent / "shared"))


def photo_crops(predictor: Predictor, photos: Path) -> list[np.ndarray]:
    """The largest face's crop of every photo where the detector finds one (RGB arrays)."""
    from emorec.preprocess import crop_face

    crops = []
    for src in open_sources([str(photos)], label_columns(load_config())):
        for e in src.entries:
            img = read_image(src.read(e.name), name=e.name)
            dets = predictor.detect(img)
            if dets:
                box = max(dets, key=lambda d: d[0][2] * d[0][3])[0]
                crops.append(crop_face(img, box, predictor.info.face_margin))
    return crops


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fp32")
    ap.add_argument("int8", nargs="+")
    ap.add_argument("--data-dir", type=Path, required=True, help="a split whose val faces are FER2013 PublicTest")
    ap.add_argument("--photos", type=Path, default=SHARED / "datasets" / "muxspace_dev.zip")
    args = ap.parse_args()
    ref = Predictor.from_path(args.fp32)
    info = ref.info
    val = load_split(args.data_dir, "val", info.classes, info.img_size, info.grayscale, load_config().cache_dir,
                     progress=False, source_size=info.source_size)
    faces = val.images.numpy()
    crops = photo_crops(ref, args.photos)
    p_faces, p_crops = ref.predict_arrays(faces).argmax(1), ref.predict_crops(crops).argmax(1)
    print(f"reference {args.fp32}: {len(faces)} val faces of {args.data_dir}, {len(crops)} photo crops "
          f"of {args.photos.name}\n")
    print("| int8 file | agreement on val faces | agreement on photo crops | mean |\n|---|---|---|---|")
    for path in args.int8:
        q = Predictor.from_path(path)
        a = (q.predict_arrays(faces).argmax(1) == p_faces).mean()
        b = (q.predict_crops(crops).argmax(1) == p_crops).mean()
        print(f"| {path} | {a:.2%} | {b:.2%} | {(a + b) / 2:.2%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

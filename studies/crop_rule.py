"""How the face detector sees each training source: the share of images where YuNet finds a face
(as ``emorec predict`` runs it) and the side of its box against the image's longer side. This
decides each source's ``crop:`` in configs/sources.yaml: aligned crops whose box is the crop
itself are re-detected (``redetect``), portraits are cropped (``detect``).

    python studies/crop_rule.py [--per-source 600]      # writes studies/crop_rule.md's table
"""
import argparse
import os
import zipfile
from pathlib import Path

import numpy as np

from emorec.data.faces import largest_box
from emorec.detect import make_detector
from emorec.imageio import IMAGE_EXTS, read_image

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOREC_SHARED", ROOT.parent / "shared"))
SOURCES = [("ferplus.zip", "train/"), ("rafdb_basic.zip", "rafdb_basic/aligned/"), ("sfew.zip", "SFEW/Train/"),
           ("kdef.zip", "KDEF/"), ("taiwanese_faces.zip", "taiwanese_faces/faces/")]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--per-source", type=int, default=600)
    args = ap.parse_args()
    det = make_detector("yunet")
    print("| source | image size | faces found | box side / image side: median (10th-90th pct) |")
    print("|---|---|---|---|")
    for zip_name, prefix in SOURCES:
        with zipfile.ZipFile(SHARED / "datasets" / zip_name) as zf:
            names = [n for n in zf.namelist() if n.startswith(prefix) and Path(n).suffix.lower() in IMAGE_EXTS]
            pick = np.random.default_rng(0).choice(len(names), min(args.per_source, len(names)), replace=False)
            rel, sizes = [], set()
            for i in pick:
                img = read_image(zf.read(names[i]), name=names[i])
                sizes.add(f"{img.shape[1]}x{img.shape[0]}")
                box = largest_box(det.detect(img))
                if box:
                    rel.append(max(box[2], box[3]) / max(img.shape[:2]))
        p10, p50, p90 = np.percentile(rel, [10, 50, 90])
        size = next(iter(sizes)) if len(sizes) == 1 else f"{len(sizes)} sizes"
        print(f"| {zip_name} | {size} | {len(rel)} of {len(pick)} ({len(rel) / len(pick):.1%}) | "
              f"{p50:.2f} ({p10:.2f}-{p90:.2f}) |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Faces shared between two split folders (exact pixels, and average hash within --bits):
checks what a model pretrained on one dataset saw of the other's val/test faces, and whether
those faces are already flagged as leaks (left out of the leakage-clean test set) in B's
split manifest. Exact pixels only match within one file format (FER2013 is JPEG, FER+ PNG).

    python studies/split_overlap.py data_split_ferplus/train data_split_7/test [--bits 0]
"""
import csv
import argparse
import sys
from pathlib import Path

import numpy as np

from emorec.data.dedup import average_hash, decode, fingerprint

EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}


def prints(folder: Path) -> tuple[list[Path], set[bytes], np.ndarray]:
    paths, md5s, thumbs = [], set(), []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() in EXTS:
            md5, thumb = fingerprint(decode(p.read_bytes(), str(p)))
            paths.append(p)
            md5s.add(md5)
            thumbs.append(thumb)
    return paths, md5s, average_hash(np.array(thumbs))


def leak_flags(split_dir: Path) -> dict[str, str]:
    manifest = split_dir.parent / "manifest.csv"
    if not manifest.is_file():
        return {}
    with open(manifest, newline="") as f:
        return {r["path"]: r.get("leak", "") for r in csv.DictReader(f)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--bits", type=int, default=0, help="average-hash Hamming distance counted as the same face")
    args = ap.parse_args()
    (_, ma, ha), (pb, mb, hb) = prints(args.a), prints(args.b)
    near = [p for p, h in zip(pb, hb) if np.any(np.bitwise_count(ha ^ h) <= args.bits)]
    flags = leak_flags(args.b)
    flagged = sum(flags.get(p.relative_to(args.b.parent).as_posix()) == "1" for p in near)
    print(f"| {args.a} | {args.b} | {len(ha)} | {len(hb)} | {len(ma & mb)} | {len(near)} (<= {args.bits} bits) "
          f"| {flagged} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

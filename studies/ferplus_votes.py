"""FER+'s annotator votes for the FER2013 faces of a prepared split: each face of
``<data_dir>/<split>`` is paired with the FER+ face of the same pixels (the pairing of
label_agreement.py) and that face's ten votes become its row of ``<data_dir>/votes.csv``, so
that SOFT_LABELS training with HARD_LABEL_WEIGHT blends two real annotations (FER2013's label
and FER+'s votes) instead of a label and a teacher's guess. A face FER+ dropped (unknown, not a
face) gets no row: training then gives it the one-hot of its folder label.

    python studies/ferplus_votes.py data_split_vote7 ../shared/datasets/ferplus.zip
"""
import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from label_agreement import as_rows, load, pair_faces
from emorec.data.sources import open_source
from emorec.data.votes import VOTES_FILE, SourceVotes, source_votes, write_votes


def ferplus_faces(zip_path: Path, split: str) -> tuple[list[str], np.ndarray, SourceVotes]:
    """File names, 48 px grey pixels (rows) and votes of one split of a FER+ source."""
    source = open_source(str(zip_path), zip_path, "ferplus")
    entries = [e for e in source.entries if e.split == split]
    faces = [cv2.imdecode(np.frombuffer(source.read(e.name), np.uint8), cv2.IMREAD_GRAYSCALE) for e in entries]
    return [Path(e.name).name for e in entries], as_rows(faces), source_votes(source)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data_dir", type=Path, help="a split prepared from fer2013.zip")
    ap.add_argument("ferplus", type=Path, help="ferplus.zip")
    ap.add_argument("--split", default="train")
    ap.add_argument("--force", action="store_true", help="replace an existing votes.csv")
    args = ap.parse_args()
    out = args.data_dir / VOTES_FILE
    if out.exists() and not args.force:
        print(f"error: {out} exists; use --force to replace it", file=sys.stderr)
        return 2
    folder = args.data_dir / args.split
    paths, a = load(folder)
    names, b, votes = ferplus_faces(args.ferplus, args.split)
    nearest, matched = pair_faces(a, b)
    rows, agree = [], 0
    for j in np.flatnonzero(matched):
        counts = votes.lookup(args.split, names[j])
        if counts is None:
            continue
        i = nearest[j]
        agree += max(counts, key=counts.get) == paths[i].parent.name
        rows.append({"path": paths[i].relative_to(args.data_dir).as_posix(), **counts})
    write_votes(out, rows)
    print(f"{out}: FER+ votes for {len(rows)} of {len(paths)} faces of {folder} ({len(b)} FER+ faces); "
          f"FER+'s top vote is the folder label for {agree / max(len(rows), 1):.1%} of them")
    return 0


if __name__ == "__main__":
    sys.exit(main())

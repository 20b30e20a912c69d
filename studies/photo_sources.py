"""Where on the validation photos are a model's errors? muxspace_dev mixes two kinds of photo:
portraits named like LFW's (``First_Last_0001.jpg``, one person each) and film frames (many
frames of a few actresses, ``Jayamadhuri_12.jpg``). This splits each model's answers from
``emorec evaluate --photos`` (its predictions.csv) by that naming and reports accuracy and the
labels in each part.

    python studies/photo_sources.py runs/eval_X/photos/predictions.csv [...]

Table in studies/photo_sources.md.
"""
import argparse
import collections
import csv
import re
import sys
from pathlib import Path

PORTRAIT = re.compile(r"_\d{4}\.\w+$")  # LFW's naming: person, then a four-digit photo number


def kind(photo: str) -> str:
    return "portraits" if PORTRAIT.search(photo) else "film frames and others"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("predictions", nargs="+", type=Path)
    args = ap.parse_args()
    print("| predictions | part | photos | accuracy | right / photos of each label |\n|---|---|---|---|---|")
    for path in args.predictions:
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
        for part in ("portraits", "film frames and others"):
            mine = [r for r in rows if kind(r["photo"]) == part]
            if not mine:
                continue
            right = sum(r["label"] == r["predicted"] for r in mine)
            labels = collections.Counter(r["label"] for r in mine).most_common()
            hits = collections.Counter(r["label"] for r in mine if r["label"] == r["predicted"])
            print(f"| {path} | {part} | {len(mine)} | {right / len(mine):.1%} | "
                  f"{', '.join(f'{c} {hits[c]}/{n}' for c, n in labels)} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

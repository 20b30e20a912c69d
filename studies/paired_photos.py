"""Is one model really better than another on the same labelled photos? McNemar's exact test on
the photos one model gets right and the other wrong, each model scored by ``emorec evaluate
--photos`` (detector first; no face found: wrong), paired by the photos' names.

    python studies/paired_photos.py OLD.onnx NEW.onnx [--photos ../shared/datasets/muxspace_dev.zip]

Photos of classes either model lacks are left out. Table in studies/paired_photos.md.
"""
import argparse
import os
import tempfile
from pathlib import Path

from scipy.stats import binomtest

from emorec.config import load_config
from emorec.evaluation.evaluate import evaluate_photos

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOREC_SHARED", ROOT.parent / "shared"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("old", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("--photos", type=Path, default=SHARED / "datasets" / "muxspace_dev.zip")
    args = ap.parse_args()
    right = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, model in enumerate((args.old, args.new)):
            r = evaluate_photos(load_config(), model, str(args.photos), Path(tmp) / str(i))
            right.append({photo: label == predicted for photo, label, predicted in r["predictions"]})
    old, new = right
    common = sorted(old.keys() & new.keys())  # photos of classes both models know
    only_old = sum(old[p] and not new[p] for p in common)
    only_new = sum(new[p] and not old[p] for p in common)
    p = binomtest(min(only_old, only_new), only_old + only_new).pvalue if only_old + only_new else 1.0
    acc_old, acc_new = (sum(r[p] for p in common) / len(common) for r in (old, new))
    shown = f"{p:.3f}" if p >= 0.001 else f"{p:.1e}"
    print(f"| {args.old} | {args.new} | {len(common)} | {acc_old:.1%} | {acc_new:.1%} | {only_old} | {only_new} "
          f"| {shown} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

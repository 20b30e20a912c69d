"""Would logit adjustment help a shipped model? Scores the file with its head's bias lowered by
tau x log(class share of the training split's labels) (Menon et al. 2021), for several tau, on
the validation sets its rule names: muxspace_dev photos through the detector, FER+ val, FER2013 val.

    python studies/logit_adjustment.py models/emotion_7class.onnx --train-split data_split_distill7 \\
        --val data_split_ferplus7 --val data_split_7          # table in studies/logit_adjustment.md
    python studies/logit_adjustment.py models/best_model.onnx --train-split data_split_distill \\
        --val data_split_ferplus5 --val data_split

Lowering the bias is the same as multiplying the model's probabilities by prior ** -tau and
renormalising, which is what this does to the file's outputs (no re-export needed).
"""
import argparse
import os
from pathlib import Path

import numpy as np

from emorec.config import load_config
from emorec.data.dataset import list_split
from emorec.evaluation.evaluate import evaluate_photos, run_evaluation
from emorec.inference.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOREC_SHARED", ROOT.parent / "shared"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model", type=Path)
    ap.add_argument("--train-split", type=Path, required=True, help="the split whose train labels give the prior")
    ap.add_argument("--val", type=Path, action="append", default=[], help="a split whose val part is scored")
    ap.add_argument("--photos", type=Path, default=SHARED / "datasets" / "muxspace_dev.zip")
    ap.add_argument("--tau", default="0,0.25,0.5,0.75,1")
    ap.add_argument("--out", type=Path, default=Path("runs/logit_adjustment"))
    args = ap.parse_args()

    classes = Predictor.from_path(args.model, detector="none").classes
    _, labels = list_split(args.train_split, "train", classes)
    prior = np.bincount(labels, minlength=len(classes)) / len(labels)
    print("training prior:", ", ".join(f"{c} {p:.3f}" for c, p in zip(classes, prior)))
    plain = Predictor.predict_arrays
    print(f"| tau | photos acc / macro-F1 | {' | '.join(f'{v} val' for v in args.val)} |")
    print("|---|---|" + "---|" * len(args.val))
    for tau in [float(t) for t in args.tau.split(",")]:
        def adjusted(self, arrays, tau=tau):
            p = plain(self, arrays) * prior ** -tau
            return p / p.sum(1, keepdims=True)

        Predictor.predict_arrays = adjusted
        out = args.out / f"{args.model.stem}_tau{tau}"
        ph = evaluate_photos(load_config(), args.model, str(args.photos), out_dir=out / "photos")
        vals = [run_evaluation(load_config(overrides={"data_dir": v, "active_classes": classes}), args.model, "val",
                               out_dir=out / v.name)["accuracy"] for v in args.val]
        print(f"| {tau} | {ph['accuracy']:.3f} / {ph['macro_f1']:.3f} | "
              + " | ".join(f"{a:.3f}" for a in vals) + " |", flush=True)
    Predictor.predict_arrays = plain
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

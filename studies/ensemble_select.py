"""Choose which trained checkpoints to ship together as one ensemble, on validation data only.

    python studies/ensemble_select.py --checkpoint runs/g5s7/models/best_model.pt ... \\
        --val data_split_7 --val data_split_ferplus5 [--classes angry,fear,happy,sad,surprise] [--max-members 3]

Every subset of up to ``--max-members`` checkpoints is scored on each validation split by the
rule ``emorec export`` builds into an ensemble (mean of the members' probabilities over the
classes, each member softmaxed over those classes only). Rule: keep the subsets whose accuracy on
the first split is within ``--tolerance`` of the best one, then take the highest mean accuracy
over all splits. Prints a table and writes JSON (``--out``).
"""
import argparse
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
from emorec.config import DEFAULT_CLASSES
from emorec.models.checkpoint import load_checkpoint, model_from_checkpoint
from emorec.data.dataset import load_split
from emorec.models.predict import predict_probs


def member_probs(ckpt_path: Path, splits: list[Path], classes: list[str], cache: Path) -> list[np.ndarray]:
    model, cfg = model_from_checkpoint(load_checkpoint(ckpt_path))
    model.eval()
    keep = [cfg.active_classes.index(c) for c in classes]
    out = []
    for d in splits:
        data = load_split(d, "val", classes, cfg.img_size, cfg.grayscale, cache, progress=False)
        with torch.inference_mode():
            p = predict_probs(model, data.images)[:, keep]
        out.append(p / p.sum(1, keepdims=True))  # softmax over the kept logits
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", action="append", type=Path, required=True)
    ap.add_argument("--val", action="append", type=Path, required=True, help="split folder (its val/ is used)")
    ap.add_argument("--classes", default=",".join(DEFAULT_CLASSES))
    ap.add_argument("--max-members", type=int, default=3)
    ap.add_argument("--tolerance", type=float, default=0.005)
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "emorec")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()
    classes = args.classes.split(",")
    labels = [load_split(d, "val", classes, 48, True, None, progress=False).labels.numpy() for d in args.val]
    probs = {c: member_probs(c, args.val, classes, args.cache) for c in args.checkpoint}
    rows = []
    for k in range(1, args.max_members + 1):
        for subset in itertools.combinations(args.checkpoint, k):
            accs = [float((np.mean([probs[c][i] for c in subset], 0).argmax(1) == y).mean())
                    for i, y in enumerate(labels)]
            rows.append({"members": [str(c) for c in subset], "val_accuracy": dict(zip(map(str, args.val), accs)),
                         "mean": float(np.mean(accs)), "first": accs[0]})
    best_first = max(r["first"] for r in rows)
    ranked = sorted((r for r in rows if r["first"] >= best_first - args.tolerance), key=lambda r: -r["mean"])
    print(f"{len(rows)} subsets; best accuracy on {args.val[0]}: {best_first:.4f}; kept within {args.tolerance}: {len(ranked)}")
    print("| members | " + " | ".join(str(v) for v in args.val) + " | mean |\n|---|" + "---|" * (len(args.val) + 1))
    for r in ranked[:8]:
        names = ", ".join(Path(m).parent.parent.name for m in r["members"])
        print(f"| {names} | " + " | ".join(f"{a:.4f}" for a in r["val_accuracy"].values()) + f" | {r['mean']:.4f} |")
    if args.out:
        args.out.write_text(json.dumps({"classes": classes, "tolerance": args.tolerance, "chosen": ranked[0],
                                        "ranked": ranked[:8]}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

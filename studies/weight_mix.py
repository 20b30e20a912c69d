"""Weight mixing (WiSE-FT, Wortsman et al. 2022): a fine-tuned checkpoint B and the one it started
from, A, mixed as (1 - a) A + a B, every float tensor (BatchNorm statistics too). When A has more
classes than B, A's head rows of B's classes are mixed. Each mix is written as a checkpoint with B's
config, for ``emorec export``.

    python studies/weight_mix.py A.pt B.pt --out runs/NAME [--alpha 0.25 0.5 0.75]
    # -> runs/NAME_a25/models/best_model.pt, ...

Rules: configs/blend_7class_photos.yaml and configs/blend_5class_from_7class.yaml; results:
benchmarks/accuracy.md.
"""
import argparse
from pathlib import Path

import torch

from emorec.config import Config, class_rows
from emorec.models.checkpoint import load_checkpoint
from emorec.models.registry import create_model


def mix(a: dict, b: dict, alpha: float) -> dict:
    cfg = Config.from_dict(b["config"])
    head = create_model(cfg.backbone, num_classes=1, in_chans=cfg.in_chans, pretrained=False).pretrained_cfg["classifier"]
    rows = class_rows(a["classes"], b["classes"], "A")
    state = {}
    for key, vb in b["model"].items():
        va = a["model"][key][rows] if key.startswith(head + ".") else a["model"][key]
        state[key] = (1 - alpha) * va + alpha * vb if vb.is_floating_point() else vb
    return {**b, "model": state, "mixed_from": {"a": a.get("commit"), "b": b.get("commit"), "alpha": alpha}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("--out", required=True)
    ap.add_argument("--alpha", type=float, nargs="+", default=[0.25, 0.5, 0.75])
    args = ap.parse_args()
    a, b = load_checkpoint(args.a), load_checkpoint(args.b)
    for alpha in args.alpha:
        path = Path(f"{args.out}_a{round(alpha * 100)}") / "models" / "best_model.pt"
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(mix(a, b, alpha), path)
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

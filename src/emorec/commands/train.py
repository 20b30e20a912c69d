"""`emorec train`: two-stage transfer learning on data_split/."""
from __future__ import annotations

from emorec.cli import add_config_arguments, config_from_args, tune_malloc


def add_arguments(p) -> None:
    add_config_arguments(p)
    p.add_argument("--resume", action="store_true", help="continue a killed run from models/last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log files)")


def run(args) -> int:
    cfg = config_from_args(args)
    from emorec.errors import require

    require("torch", "train")
    tune_malloc(args)
    from emorec.train.loop import fit

    fit(cfg, resume=args.resume, show_progress=not args.no_progress)
    return 0

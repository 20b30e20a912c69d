"""`emorec train`: two-stage transfer learning on data_split/."""
from __future__ import annotations

from emorec.cli import add_config_arguments, config_from_args

GLIBC_TUNING = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"


def add_arguments(p) -> None:
    add_config_arguments(p)
    p.add_argument("--resume", action="store_true", help="continue a killed run from models/last.pt")
    p.add_argument("--no-progress", action="store_true", help="no progress bars (log files)")


def tune_malloc() -> None:
    """glibc's default malloc thresholds make torch 2-3x slower on small CPU batches:
    re-exec this process once with the tunables set (they only apply at start)."""
    import os
    import sys

    if os.environ.get("GLIBC_TUNABLES") or not sys.platform.startswith("linux"):
        return
    os.environ["GLIBC_TUNABLES"] = GLIBC_TUNING
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def run(args) -> int:
    cfg = config_from_args(args)
    from emorec.errors import require

    require("torch", "train")
    if getattr(args, "_process_entry", False):  # never re-exec a caller's process (tests)
        tune_malloc()
    from emorec.train.loop import fit

    fit(cfg, resume=args.resume, show_progress=not args.no_progress)
    return 0

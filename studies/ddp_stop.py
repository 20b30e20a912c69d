"""Repeat a two-process CPU DDP run that MAX_MINUTES stops between stages, and count the runs
that fail. A stop is a teardown race: one run in the test suite says little, many runs do.

    python studies/ddp_stop.py data_split --runs 30   # table in studies/ddp_stop.md

Tiny settings (64 px, 1 + 1 epochs, at most 80 train images per class) keep a run near 10 s.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOREC_SHARED", ROOT.parent / "shared"))
from emorec.cli import GLIBC_TUNING


def one_run(data: Path, weights: Path, work: Path) -> tuple[int, float, str]:
    sets = {"DATA_DIR": data, "MODELS_DIR": work / "models", "REPORTS_DIR": work / "reports",
            "CACHE_DIR": work / "cache", "WEIGHTS_DIR": weights, "IMG_SIZE": 64, "BATCH_SIZE": 32,
            "EPOCHS_STAGE1": 1, "EPOCHS_STAGE2": 1, "MAX_TRAIN_PER_CLASS": 80, "MAX_EVAL_PER_CLASS": 30,
            "MAX_MINUTES": "1e-6"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--rdzv-backend=c10d",
           "--rdzv-endpoint=127.0.0.1:0", "-m", "emorec", "train", "--no-progress", "--profile", "FAST_DEBUG"]
    cmd += [a for k, v in sets.items() for a in ("--set", f"{k}={v}")]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "GLIBC_TUNABLES": GLIBC_TUNING}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    lines = (out.stdout + out.stderr).splitlines()
    # The rank's own words first (a C++ abort, an emorec error), then torchrun's exit code.
    why = next((ln for ln in lines if "terminate called" in ln or ": error: " in ln), "") or \
        next((ln for ln in lines if "exitcode" in ln), "")
    return out.returncode, time.perf_counter() - t0, why.strip()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path, help="a split folder: <data>/{train,val}/<class>/<image>")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--weights", type=Path, default=SHARED / "weights")
    args = ap.parse_args()
    if not (args.data / "train").is_dir():
        print(f"error: {args.data}/train not found (make a split with: emorec data prepare)", file=sys.stderr)
        return 2
    if not args.weights.is_dir():
        print(f"error: ImageNet weights folder {args.weights} not found (--weights)", file=sys.stderr)
        return 2
    failures, seconds = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            rc, s, why = one_run(args.data.resolve(), args.weights.resolve(), Path(tmp) / f"run{i}")
            seconds.append(s)
            if rc:
                failures.append(why or f"rc {rc}")
            print(f"run {i + 1}/{args.runs}: rc {rc}, {s:.1f} s {why}", file=sys.stderr)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    print(f"\nCommit {commit.strip()}: `python studies/ddp_stop.py {args.data} --runs {args.runs}`\n")
    print("| runs | failed | median s/run | first failure |\n|---:|---:|---:|---|")
    print(f"| {args.runs} | {len(failures)} | {statistics.median(seconds):.1f} | {failures[0] if failures else '-'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

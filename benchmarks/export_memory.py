"""Peak memory of `emorec export` (int8 calibration), streamed against all faces at once.

    python benchmarks/export_memory.py --checkpoint runs/m7/models/best_model.pt [--calib 1024]

Each export runs in its own process (peak resident memory from the kernel's rusage):
- "streamed": export as it is (activations turned into histograms CALIB_CHUNK faces at a time);
- "all at once": the same with CALIB_CHUNK set above the face count, which is how onnxruntime
  calibrated before (every activation of every face held until the histograms are made).
Both int8 files are then compared with their fp32 file: top-1 agreement on the faces of the
checkpoint's val split. Writes benchmarks/export_memory.md.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
RUN = """
import resource, sys
import emorec.export as ex
if sys.argv[1] == "all":
    ex.CALIB_CHUNK = 10 ** 9
from emorec.cli import main
rc = main(["export", "--checkpoint", sys.argv[2], "--out", sys.argv[3], "--set", "INT8_CALIB_IMAGES=" + sys.argv[4]])
print("PEAK_KIB", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
raise SystemExit(rc)
"""


def peak_export(mode: str, checkpoint: str, out: Path, calib: int) -> float:
    """Peak resident memory (GiB) of one export process, as the kernel counted it."""
    from emorec.cli import GLIBC_TUNING

    env = {**os.environ, "GLIBC_TUNABLES": GLIBC_TUNING}  # as the `emorec` command runs
    done = subprocess.run([sys.executable, "-c", RUN, mode, checkpoint, str(out), str(calib)], check=True,
                          capture_output=True, text=True, env=env)
    kib = next(int(line.split()[1]) for line in done.stdout.splitlines() if line.startswith("PEAK_KIB"))
    return kib / 2 ** 20


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--calib", type=int, default=1024, help="INT8_CALIB_IMAGES (export's default: 1024)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "export_memory.md"))
    args = ap.parse_args()

    from emorec.data.dataset import load_split
    from emorec.inference.predictor import Predictor
    from emorec.models.checkpoint import load_checkpoint
    from emorec.config import Config

    cfg = Config.from_dict(load_checkpoint(Path(args.checkpoint))["config"])
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("all", "streamed"):
            out = Path(tmp) / mode / "m.onnx"
            out.parent.mkdir()
            gib = peak_export(mode, args.checkpoint, out, args.calib)
            rows.append((mode, gib, out))
        val = load_split(cfg.data_dir, "val", cfg.active_classes, cfg.img_size, cfg.grayscale, cfg.cache_dir,
                         progress=False, source_size=cfg.source_size).images.numpy()
        fp32 = Predictor.from_path(rows[0][2], detector="none").predict_arrays(val).argmax(1)
        lines = [f"# `emorec export` peak memory ({platform.machine()}, {args.calib} calibration faces)", "",
                 f"Command: `python benchmarks/export_memory.py --checkpoint {args.checkpoint} --calib {args.calib}`",
                 "", f"Agreement: int8 top-1 equal to fp32's on the {len(val):,} faces of `{cfg.data_dir}/val`.", "",
                 "| int8 calibration | peak memory | int8 = fp32 top-1 | calibration faces |", "|---|---|---|---|"]
        for mode, gib, out in rows:
            q = out.with_name("m.int8.onnx")
            agree = float((Predictor.from_path(q, detector="none").predict_arrays(val).argmax(1) == fp32).mean())
            faces = json.loads(out.with_suffix(".json").read_text())["export"]["int8"]["calib_images"]
            name = "all faces at once (before)" if mode == "all" else "streamed, 64 faces at a time (now)"
            lines.append(f"| {name} | {gib:.2f} GiB | {agree:.2%} | {faces:,} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

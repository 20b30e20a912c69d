"""Assemble the record that sits beside a shipped model: what it was trained on, how, by which
commit, and what it scores; written as models/<stem>.metrics.json (+ .config.yaml,
.training_logs.json, .data_report.json, .json).

    python tools/model_record.py RUN_DIR MODEL.onnx --test DIR/metrics.json [--test ...] \
        --photos DIR/metrics.json --command "emorec train --config ..." [--also RUN_DIR ...] \
        [--export-json RUN/best_model.json] [--suite DIR/suite.json]   # --export-json: required in models/

RUN_DIR is the run's folder (``models/`` and ``reports/`` inside, as ``emorec train`` leaves
them; its config, logs and data report are copied); ``--also RUN_DIR`` names each further run the
model is made of (a weight mix, an ensemble); each ``--test`` is the metrics.json that
``emorec evaluate --model MODEL.onnx`` wrote for a split, ``--photos`` the one of
``emorec evaluate --photos``. Paths are stored relative to the repository. The first ``--test``
is the model's headline test result.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
from pathlib import Path

import yaml

from emorec.provenance import git_commit, portable_path

ROOT = Path(__file__).resolve().parents[1]
KEEP = ("data_dir", "split", "n", "accuracy", "macro_f1", "per_class", "confusion_matrix", "leakage_clean",
        "photos", "detector", "no_face", "model", "commit")


def read_run(run: Path) -> tuple[dict, dict]:
    """A run folder's config and training logs, as ``emorec train`` left them."""
    return (yaml.safe_load((run / "models" / "config.yaml").read_text()),
            json.loads((run / "reports" / "training_logs.json").read_text()))


def member(run: Path, cfg: dict, logs: dict) -> dict:
    """A run's line in the record: where it is, the commit that trained it, how long, with what."""
    return {"run": run.name, "commit": logs["commit"], "device": logs.get("device"),
            "wall_seconds": round(sum(h["train_seconds"] for h in logs["history"])),  # validation excluded
            "seed": cfg["seed"],
            "classes": cfg["active_classes"], "init_from": cfg.get("init_from")}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir", type=Path)
    ap.add_argument("model", type=Path)
    ap.add_argument("--test", type=Path, action="append", required=True)
    ap.add_argument("--photos", type=Path, action="append", default=[])
    ap.add_argument("--command", required=True, help="the training command, as run")
    ap.add_argument("--export-json", type=Path,
                    help="emorec export's report (default: beside MODEL; required for a file in models/, "
                         "where the JSON beside it is the previous record's)")
    ap.add_argument("--selection", help="the adoption rule and what validation said")
    ap.add_argument("--also", type=Path, action="append", default=[], help="another run the model is made of")
    ap.add_argument("--suite", type=Path, help="the suite.json of `emorec evaluate --suite` on MODEL: copied "
                                               "beside it as <stem>.suite.json (the README's results table)")
    args = ap.parse_args()

    models, reports = args.run_dir / "models", args.run_dir / "reports"
    cfg, logs = read_run(args.run_dir)
    data_dir = Path(cfg["data_dir"])
    data_report = json.loads((data_dir / "data_report.json").read_text())
    if args.export_json is None and args.model.resolve().parent == ROOT / "models":
        ap.error("a model in models/: name its export report with --export-json (e.g. runs/<run>/best_model.json)")
    export = json.loads((args.export_json or args.model.with_suffix(".json")).read_text())
    tests = [json.loads(p.read_text()) for p in args.test]
    photos = [json.loads(p.read_text()) for p in args.photos]
    history = logs["history"]
    best = max(history, key=lambda h: h["val_acc"] if cfg["monitor"] == "val_acc" else h["val_macro_f1"])
    members = [member(args.run_dir, cfg, logs), *(member(run, *read_run(run)) for run in args.also)]

    stem = args.model.name.split(".")[0] if args.model.resolve().parent == ROOT / "models" else None
    record = {
        "model": portable_path(args.model),
        "format": "ONNX int8 (static QDQ)" if "int8" in export.get("export", {}) else "ONNX fp32",
        "test": {k: v for k, v in tests[0].items() if k in KEEP},
        "other_tests": [{k: v for k, v in t.items() if k in KEEP} for t in tests[1:]],
        "photos": [{k: v for k, v in p.items() if k in KEEP} for p in photos],
        "data": {"split_dir": portable_path(data_dir), "sources": data_report["sources"],
                 "written": data_report.get("written")},
        "export": export.get("export"),
        "model_info": export.get("model_info"),
        "config": cfg,
        "training": {"commit": logs["commit"], "command": args.command, "epochs": len(history),
                     "wall_seconds": members[0]["wall_seconds"], "best_val": best["val_acc"], "device": logs.get("device"),
                     "machine": f"{platform.machine()} CPU, {cfg.get('num_threads')} threads",
                     "members": members},
        "record_commit": git_commit(),
    }
    if args.selection:
        record["selection"] = args.selection
    suite = json.loads(args.suite.read_text()) if args.suite else None
    if suite:
        record["suite"] = {k: suite[k] for k in ("score", "domains", "pooled_recall", "baseline_score",
                                                 "paired_all") if k in suite}
    if stem:
        out = ROOT / "models"
        (out / f"{stem}.metrics.json").write_text(json.dumps(record, indent=2) + "\n")
        shutil.copy(models / "config.yaml", out / f"{stem}.config.yaml")
        shutil.copy(reports / "training_logs.json", out / f"{stem}.training_logs.json")
        shutil.copy(data_dir / "data_report.json", out / f"{stem}.data_report.json")
        (out / f"{stem}.json").write_text(json.dumps(export, indent=2) + "\n")
        if suite:
            (out / f"{stem}.suite.json").write_text(json.dumps(suite, indent=2) + "\n")
        print(f"wrote {out / (stem + '.metrics.json')} and the run's config, logs and data report beside it")
    else:
        print(json.dumps(record, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

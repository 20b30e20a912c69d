"""Scores and their reports: accuracy, macro-F1, per-class P/R/F1, the confusion matrix, and the
leakage-clean subset (test faces whose duplicate is in train, flagged in ``manifest.csv``)."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from emorec.config import Config
from emorec.files import write_text


def leak_flags(data_dir: Path, paths: list[str]) -> np.ndarray | None:
    """Per test image: True if the manifest says a duplicate of it exists in train."""
    manifest = Path(data_dir) / "manifest.csv"
    if not manifest.is_file():
        return None
    with open(manifest, newline="") as f:
        rows = {str((Path(data_dir) / r["path"]).resolve()): r.get("leak", "0") for r in csv.DictReader(f)}
    return np.array([rows.get(str(Path(p).resolve()), "0") in ("1", "True", "true") for p in paths])


def metrics(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    return metrics_of_predictions(y, probs.argmax(1), classes)


def metrics_of_predictions(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1 and the confusion matrix; a prediction outside
    ``classes`` (a photo without a face) is an error for its true class."""
    from sklearn.metrics import classification_report, confusion_matrix, f1_score

    labels = list(range(len(classes)))
    rep = classification_report(y, pred, labels=labels, target_names=classes, output_dict=True, zero_division=0)
    return {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()) if len(y) else 0.0,
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {c: {k: float(rep[c][k]) for k in ("precision", "recall", "f1-score", "support")} for c in classes},
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "report_text": classification_report(y, pred, labels=labels, target_names=classes, digits=4, zero_division=0),
    }


NO_FACE = "no face"


def write_reports(result: dict, cfg: Config, out_dir: Path, title: str, header: str,
                  predicted: list[str] | None = None) -> None:
    """metrics.json (with the config), classification_report.txt and confusion_matrix.png."""
    from emorec.plots import confusion_matrix_png

    confusion_matrix_png(np.array(result["confusion_matrix"]), result["classes"], out_dir / "confusion_matrix.png",
                         f"{title} (acc {result['accuracy']:.1%})", predicted=predicted)
    write_text(out_dir / "classification_report.txt",
               f"{header}accuracy: {result['accuracy']:.4f}  macro-F1: {result['macro_f1']:.4f}\n\n{result['report_text']}")
    write_text(out_dir / "metrics.json", json.dumps({**{k: v for k, v in result.items() if k != "report_text"},
                                                     "config": cfg.to_dict()}, indent=2))

"""Evaluation stage: metrics match scikit-learn, report files appear, leakage-clean subset."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emorec.cli import main
from emorec.evaluate import metrics, run_evaluation


def test_metrics_match_hand_computed_values():
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 2, 0]]
    m = metrics(y, probs, ["a", "b", "c"])
    assert m["accuracy"] == 4 / 6
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["per_class"]["b"]["precision"] == 2 / 3 and m["per_class"]["c"]["recall"] == 0.5


def test_evaluate_writes_report_confusion_matrix_and_json(trained, tmp_path):
    out = tmp_path / "reports"
    ckpt = Path(trained.models_dir) / "best_model.pt"
    r = run_evaluation(trained, ckpt, "test", out)
    assert r["n"] == 150 and r["classes"] == trained.active_classes
    assert np.array(r["confusion_matrix"]).sum() == 150
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["accuracy"] == r["accuracy"] and saved["config"]["img_size"] == 64
    assert "macro avg" in (out / "classification_report.txt").read_text()
    assert (out / "confusion_matrix.png").stat().st_size > 5000
    flipped = run_evaluation(trained, ckpt, "test", tmp_path / "tta", tta_flip=True)
    assert flipped["tta_flip"] and flipped["n"] == 150


def test_leakage_clean_score_uses_manifest_flags(trained, tmp_path):
    data = Path(trained.data_dir)
    files = sorted((data / "test").rglob("*.jpg"))
    rows = ["path,split,label,leak"] + [f"{p.relative_to(data)},test,{p.parent.name},{int(i % 3 == 0)}"
                                        for i, p in enumerate(files)]
    manifest = data / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    try:
        r = run_evaluation(trained, Path(trained.models_dir) / "best_model.pt", "test", tmp_path)
    finally:
        manifest.unlink()
    assert r["leakage_clean"]["n"] == 150 - len(files[::3])


def test_evaluate_command_and_bad_model_path(trained, tmp_path, capsys):
    args = ["evaluate", "--set", f"data_dir={trained.data_dir}", "--set", f"cache_dir={trained.cache_dir}",
            "--model", str(Path(trained.models_dir) / "best_model.pt"), "--out", str(tmp_path)]
    assert main(args) == 0
    assert "accuracy" in capsys.readouterr().out
    assert main(["evaluate", "--model", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err.strip()
    assert "model not found" in err and err.count("\n") == 0

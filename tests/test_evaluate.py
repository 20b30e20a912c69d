"""Evaluation stage: metrics match scikit-learn, report files appear, leakage-clean subset."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from emorec.cli import main
from emorec.evaluation.evaluate import run_evaluation
from emorec.evaluation.metrics import metrics


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


def test_whole_photos_are_scored_through_the_detector(tiny_onnx, yunet_path, images_dir, tmp_path, capsys,
                                                      monkeypatch):
    """emorec evaluate --photos: the predict path (detector, largest face), faces not found are
    errors, a CSV label file works, classes the model lacks are left out."""
    import csv

    from emorec.config import Config
    from emorec.evaluation.evaluate import evaluate_photos
    from emorec.inference.predictor import Predictor
    from emorec.imageio import read_image

    src = tmp_path / "photos"
    (src / "images").mkdir(parents=True)
    rows = [("single_face.jpg", "HAPPINESS"), ("multi_face.jpg", "happiness"), ("astronaut.png", "sadness"),
            ("coffee.png", "anger"), ("chelsea_cat.png", "neutral")]  # no face in coffee; neutral not a class
    for name, _ in rows:
        (src / "images" / name).write_bytes((images_dir / name).read_bytes())
    with open(src / "legend.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "emotion"), *rows])
    cfg = Config(yunet_path=yunet_path)
    r = evaluate_photos(cfg, tiny_onnx, str(src), tmp_path / "out")
    p = Predictor.from_path(tiny_onnx, detector_path=yunet_path)
    expected = []
    for name, _ in rows[:4]:
        faces = p.predict([read_image(images_dir / name)])[0]
        expected.append(max(faces, key=lambda f: f.box[2] * f.box[3]).label if faces else "no face")
    truth = ["happy", "happy", "sad", "angry"]
    assert r["n"] == 4 and r["no_face"] == 1 and r["no_face_files"] == ["images/coffee.png"]
    assert r["accuracy"] == sum(e == t for e, t in zip(expected, truth)) / 4
    cm = np.array(r["confusion_matrix"])
    assert cm.shape == (5, 6) and cm.sum() == 4 and cm[r["classes"].index("angry"), 5] == 1  # "no face" column
    assert (tmp_path / "out" / "confusion_matrix.png").stat().st_size > 1000
    want = sorted((f"images/{name}", t, e) for (name, _), t, e in zip(rows, truth, expected))
    assert sorted(r["predictions"]) == want  # photo by photo, "no face" for coffee
    with open(tmp_path / "out" / "predictions.csv", newline="") as f:
        lines = [tuple(row) for row in csv.reader(f)]
    assert lines[0] == ("photo", "label", "predicted") and sorted(lines[1:]) == want
    monkeypatch.setenv("EMOREC_YUNET", str(yunet_path))
    assert main(["evaluate", "--photos", str(src), "--model", str(tiny_onnx), "--out", str(tmp_path / "o2")]) == 0
    out = capsys.readouterr().out
    assert "(4 photos, no face found in 1, 0 unreadable" in out and "recall: angry" in out


def test_split_and_photo_reports_do_not_overwrite_each_other(tiny_onnx, yunet_path, images_dir, tmp_path,
                                                              monkeypatch, capsys):
    """evaluate and evaluate --photos with the same REPORTS_DIR: two metrics.json, both kept."""
    import json

    from emorec.config import Config
    from emorec.data import prepare
    from test_data import face, save

    src = tmp_path / "src"
    for j, c in enumerate(("angry", "happy", "sad")):
        for k in range(4):
            save(src / c / f"{k}.png", face(10 * j + k))
    prepare(Config(val_fraction=0.25, test_fraction=0.25), [src], tmp_path / "split")
    photos = tmp_path / "photos" / "happy"
    photos.mkdir(parents=True)
    (photos / "multi.jpg").write_bytes((images_dir / "multi_face.jpg").read_bytes())
    monkeypatch.setenv("EMOREC_YUNET", str(yunet_path))
    reports = tmp_path / "reports"
    common = ["--model", str(tiny_onnx), "--set", f"REPORTS_DIR={reports}", "--set", f"CACHE_DIR={tmp_path / 'c'}"]
    assert main(["evaluate", "--set", f"DATA_DIR={tmp_path / 'split'}", *common]) == 0
    assert main(["evaluate", "--photos", str(tmp_path / "photos"), *common]) == 0
    out = capsys.readouterr().out
    split, photo = (json.loads((d / "metrics.json").read_text()) for d in (reports, reports / "photos"))
    assert split["split"] == "test" and split["n"] == 3 and photo["n"] == 1 and "photos" in photo
    assert f"wrote {reports / 'photos' / 'metrics.json'}" in out


def test_damaged_zip_members_in_photos_cost_one_line_each(tiny_onnx, yunet_path, tmp_path, monkeypatch, capsys):
    from test_data import damaged_zip

    monkeypatch.setenv("EMOREC_YUNET", str(yunet_path))
    src = damaged_zip(tmp_path / "photos.zip")
    assert main(["evaluate", "--photos", str(src), "--model", str(tiny_onnx), "--out", str(tmp_path / "o")]) == 0
    out, err = capsys.readouterr()
    skipped = [line for line in err.splitlines() if line.startswith("emorec evaluate: skipped ")]
    assert len(skipped) == 5 and "Traceback" not in err
    assert "(2 photos, no face found in 2, 5 unreadable" in out

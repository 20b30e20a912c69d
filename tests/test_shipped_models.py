"""The models shipped in models/: each loads on ONNX Runtime alone, fits the size budget, carries
its record (metrics, config, data, commit), and the default model's recorded test accuracy is
reproduced from the raw FER2013 zip."""
from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import numpy as np
import pytest

from emorec.imageio import read_image
from emorec.inference.predictor import Predictor

MODELS = Path(__file__).resolve().parents[1] / "models"


def _shipped() -> list[Path]:
    """The committed model files: models rebuilt with the README's commands are copied into
    models/ too, but git ignores them (their records live in benchmarks/models/)."""
    try:
        out = subprocess.run(["git", "ls-files", "*.onnx"], cwd=MODELS, capture_output=True, text=True, check=True)
        return sorted(MODELS / name for name in out.stdout.split())
    except (OSError, subprocess.CalledProcessError):  # not a git checkout (an unpacked archive)
        return sorted(MODELS.glob("*.onnx"))


SHIPPED = _shipped()


def test_default_model_is_shipped():
    assert MODELS / "best_model.onnx" in SHIPPED


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_model_record_and_prediction(path, images_dir):
    assert path.stat().st_size <= 10 * 2**20
    record = json.loads(path.with_suffix(".metrics.json").read_text())
    predictor = Predictor.from_path(path, detector="none", threads=1)
    assert predictor.classes == record["config"]["active_classes"] == record["model_info"]["classes"]
    assert record["training"]["commit"] and record["data"]["sources"]
    for member in record["training"]["members"]:  # every trained network inside the file
        assert member["commit"] and member["device"] and member["wall_seconds"] > 0 and member["seed"]
        assert set(predictor.classes) <= set(member["classes"])
    assert path.with_suffix(".config.yaml").is_file() and path.with_suffix(".training_logs.json").is_file()
    assert 0 < record["test"]["accuracy"] <= 1 and record["test"]["n"] > 1000

    probs = predictor.predict_crops([read_image(images_dir / "single_face.jpg")])
    assert probs.shape == (1, len(predictor.classes)) and np.isclose(probs.sum(), 1, atol=1e-4)


@pytest.mark.slow
def test_default_model_accuracy_is_reproduced_from_the_raw_test_set(fer2013_zip):
    """Recorded by `emorec evaluate` on the prepared split; re-measured here on FER2013
    PrivateTest straight from the zip (the split's test set is exactly those faces)."""
    record = json.loads((MODELS / "best_model.metrics.json").read_text())
    predictor = Predictor.from_path(MODELS / "best_model.onnx", detector="none", threads=2)
    classes = predictor.classes
    with zipfile.ZipFile(fer2013_zip) as zf:
        names = sorted(n for n in zf.namelist() if n.count("/") == 2 and n.split("/")[1] in classes
                       and n.split("/")[2].startswith("PrivateTest_"))
        faces = [read_image(zf.read(n), name=n) for n in names]
    labels = np.array([classes.index(n.split("/")[1]) for n in names])
    pred = np.concatenate([predictor.predict_crops(faces[i:i + 256]).argmax(1) for i in range(0, len(faces), 256)])
    assert len(names) == record["test"]["n"]
    assert predictor.info.metrics["accuracy"] == record["test"]["accuracy"]  # what the app and the API show
    assert abs((pred == labels).mean() - record["test"]["accuracy"]) < 0.002

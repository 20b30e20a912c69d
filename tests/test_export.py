"""Export stage: ONNX matches torch on real faces; int8 is calibrated and close; metadata travels."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from emorec.cli import main


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    from emorec.export import export

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return export(Path(trained.models_dir) / "best_model.pt", out, int8=True, data_dir=Path(trained.data_dir),
                  calib_count=100, parity_count=150)


def test_onnx_matches_torch_on_real_test_faces(exported):
    par = exported["parity"]
    assert par["images"] == 150
    assert par["max_abs_prob_diff"] < 1e-4
    assert par["top1_agreement"] == 1.0


def test_int8_model_is_static_qdq_and_close_to_fp32(exported):
    import onnx

    q = exported["int8"]
    ops = {n.op_type for n in onnx.load(q["onnx"]).graph.node}
    assert "QuantizeLinear" in ops and "DequantizeLinear" in ops  # static QDQ, not dynamic
    assert "DynamicQuantizeLinear" not in ops
    print(q)
    assert q["mean_abs_prob_diff_vs_fp32"] < 0.05
    assert abs(q["acc_drop_vs_fp32"]) < 0.1
    assert Path(q["onnx"]).stat().st_size < Path(exported["onnx"]).stat().st_size


def test_metadata_lets_the_predictor_run_without_torch_state(exported, trained, images_dir):
    from emorec.imageio import read_image
    from emorec.inference.predictor import Predictor

    for path in (exported["onnx"], exported["int8"]["onnx"]):
        p = Predictor.from_path(path, detector="none")
        assert p.info.classes == trained.active_classes and p.info.img_size == 64 and p.info.grayscale
        faces = p.predict([read_image(images_dir / "single_face.jpg")], detect=False)[0]
        assert len(faces) == 1 and abs(sum(faces[0].probs.values()) - 1) < 1e-5
    side = json.loads(Path(exported["onnx"]).with_suffix(".json").read_text())
    assert side["model_info"]["classes"] == trained.active_classes


def test_export_command_prints_parity_and_rejects_missing_checkpoint(trained, tmp_path, capsys):
    rc = main(["export", "--checkpoint", str(Path(trained.models_dir) / "best_model.pt"), "--out",
               str(tmp_path / "m.onnx"), "--no-int8", "--data-dir", str(trained.data_dir)])
    out = capsys.readouterr().out
    assert rc == 0 and "top-1 agreement" in out and (tmp_path / "m.onnx").is_file()
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "checkpoint not found" in capsys.readouterr().err

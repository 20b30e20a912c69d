"""Export stage: ONNX matches torch on real faces; int8 is calibrated and close; metadata travels."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from emorec.cli import main


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    from emorec.export import export

    out = tmp_path_factory.mktemp("onnx") / "model.onnx"
    return export(Path(trained.models_dir) / "best_model.pt", out, int8=True, data_dir=Path(trained.data_dir),
                  settings={"int8_calib_images": 100}, parity_count=150)


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


def test_export_command_prints_parity_and_rejects_missing_checkpoint(trained, tmp_path, capfd):
    rc = main(["export", "--checkpoint", str(Path(trained.models_dir) / "best_model.pt"), "--out",
               str(tmp_path / "m.onnx"), "--no-int8", "--data-dir", str(trained.data_dir)])
    out, err = capfd.readouterr()
    assert rc == 0 and "top-1 agreement" in out and (tmp_path / "m.onnx").is_file()
    assert "torchvision" not in err and "Warning" not in err, err  # torch's exporter notes stay quiet
    assert main(["export", "--checkpoint", str(tmp_path / "none.pt")]) == 2
    assert "checkpoint not found" in capfd.readouterr().err


def test_export_never_replaces_a_shipped_model_unasked(tmp_path, capsys):
    from emorec.config import SHIPPED_MODELS_DIR

    shipped = SHIPPED_MODELS_DIR / "best_model.onnx"
    before = shipped.read_bytes()
    assert main(["export", "--checkpoint", str(tmp_path / "x.pt"), "--out", str(shipped)]) == 2
    err = capsys.readouterr().err
    assert "is a shipped model file" in err and "--force" in err and shipped.read_bytes() == before
    # with --force the export goes ahead (and here stops at the missing checkpoint)
    assert main(["export", "--checkpoint", str(tmp_path / "x.pt"), "--out", str(shipped), "--force"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err and shipped.read_bytes() == before


@pytest.mark.slow
def test_ensemble_averages_member_probabilities_over_its_classes():
    import torch

    from emorec.config import DEFAULT_CLASSES, FER_CLASSES
    from emorec.models import create_model
    from emorec.models.ensemble import Ensemble

    torch.manual_seed(0)
    five = create_model("mobilenet_v2", num_classes=5, in_chans=1, pretrained=False).eval()
    seven = create_model("mobilenet_v2", num_classes=7, in_chans=1, pretrained=False).eval()
    ens = Ensemble([five, seven], [DEFAULT_CLASSES, FER_CLASSES], DEFAULT_CLASSES).eval()
    x = torch.rand(3, 1, 48, 48)
    keep = [FER_CLASSES.index(c) for c in DEFAULT_CLASSES]  # seven's logits for the five classes
    want = (five(x).softmax(1) + seven(x)[:, keep].softmax(1)) / 2
    assert torch.allclose(ens(x).softmax(1), want, atol=1e-5)
    with pytest.raises(Exception, match="has no class disgust"):
        Ensemble([five], [DEFAULT_CLASSES], FER_CLASSES)


def test_several_checkpoints_export_as_one_ensemble_model(trained, tmp_path):
    import onnx
    import torch

    from emorec.config import FER_CLASSES, Config
    from emorec.export import export, get_metadata
    from emorec.models import create_model

    # A 7-class member: the trained 5-class backbone, perturbed (identical weights would be
    # merged by the ONNX optimiser), with a new 7-class head.
    ckpt = torch.load(Path(trained.models_dir) / "best_model.pt", weights_only=False)
    cfg7 = Config.from_dict({**ckpt["config"], "active_classes": FER_CLASSES})
    m7 = create_model("mobilenet_v2", num_classes=7, in_chans=1, pretrained=False)
    m7.load_state_dict({k: v * 1.01 if v.is_floating_point() else v for k, v in ckpt["model"].items()
                        if not k.startswith("classifier")}, strict=False)
    p7 = tmp_path / "seven.pt"
    torch.save({**ckpt, "model": m7.state_dict(), "config": cfg7.to_dict(), "classes": FER_CLASSES}, p7)

    rep = export([Path(trained.models_dir) / "best_model.pt", p7], tmp_path / "ens.onnx", int8=True,
                 data_dir=Path(trained.data_dir), settings={"int8_calib_images": 50},
                 parity_count=60)
    assert rep["classes"] == trained.active_classes and len(rep["checkpoints"]) == 2
    assert rep["parity"]["max_abs_prob_diff"] < 1e-4 and rep["parity"]["top1_agreement"] == 1.0
    model = onnx.load(rep["int8"]["onnx"])
    info = get_metadata(rep["int8"]["onnx"])
    assert info.classes == trained.active_classes and info.backbone == "ensemble of 2 mobilenet_v2"
    # Each member's first convolution stays fp32: both read the normalised input directly.
    made_by = {o: n.op_type for n in model.graph.node for o in n.output}
    assert sum(n.op_type == "Conv" and made_by.get(n.input[0]) == "Div" for n in model.graph.node) == 2


def test_evaluate_store_writes_the_files_own_metrics_into_its_metadata(exported, trained, tmp_path, capsys):
    import shutil

    from emorec.inference.predictor import Predictor

    q = tmp_path / "q.onnx"
    shutil.copy(exported["int8"]["onnx"], q)
    rc = main(["evaluate", "--model", str(q), "--set", f"data_dir={trained.data_dir}", "--out", str(tmp_path / "r"),
               "--store"])
    assert rc == 0 and "stored accuracy" in capsys.readouterr().out
    measured = json.loads((tmp_path / "r" / "metrics.json").read_text())
    stored = Predictor.from_path(q, detector="none").info.metrics
    assert stored["accuracy"] == measured["accuracy"] and stored["n"] == measured["n"] == 150
    assert main(["evaluate", "--model", str(Path(trained.models_dir) / "best_model.pt"), "--store"]) == 2
    assert "not an .onnx model" in capsys.readouterr().err


def test_flip_tta_export_gives_a_face_and_its_mirror_one_prediction(trained, tmp_path, capsys):
    import numpy as np
    import onnx
    import torch

    from emorec.export import _ort_probs, get_metadata
    from emorec.models.checkpoint import load_checkpoint, model_from_checkpoint
    from emorec.data.dataset import load_split

    ckpt = Path(trained.models_dir) / "best_model.pt"
    rc = main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "tta.onnx"), "--tta-flip",
               "--data-dir", str(trained.data_dir)])
    assert rc == 0 and "top-1 agreement 100.00%" in capsys.readouterr().out
    x = load_split(Path(trained.data_dir), "test", trained.active_classes, 64, True, trained.cache_dir,
                   progress=False).images.numpy()[:40]
    model, _ = model_from_checkpoint(load_checkpoint(ckpt))
    with torch.no_grad():
        t = torch.from_numpy(x).float() / 255
        want = (model(t).softmax(1) + model(t.flip(3)).softmax(1)).numpy() / 2
    for path in (tmp_path / "tta.onnx", tmp_path / "tta.int8.onnx"):
        got, mirrored = _ort_probs(path, x), _ort_probs(path, x[..., ::-1].copy())
        assert np.abs(got - mirrored).max() < 1e-5  # the face and its mirror image: one answer
        if path.name == "tta.onnx":
            assert np.abs(got - want).max() < 1e-4
        m = onnx.load(str(path))
        assert "flip TTA" in get_metadata(path).backbone
    made_by = {o: n.op_type for n in m.graph.node for o in n.output}  # int8: the first conv stays fp32
    assert sum(n.op_type == "Conv" and made_by.get(n.input[0]) == "Div" for n in m.graph.node) == 1


def test_export_keeps_the_classes_and_settings_asked_for(exported, trained, tmp_path, capsys):
    """--classes: only those of the checkpoint's classes; export keys named by --config or --set
    replace the checkpoint's, other keys there change nothing."""
    import numpy as np

    from emorec.data.dataset import load_split
    from emorec.export import _ort_probs, get_metadata

    ckpt = str(Path(trained.models_dir) / "best_model.pt")
    full, part = Path(exported["onnx"]), tmp_path / "part.onnx"  # full: exported with no options
    keep = [trained.active_classes[i] for i in (3, 0, 1)]  # any order
    cfg = tmp_path / "export.yaml"
    cfg.write_text("SOURCE_SIZE: 48\nEPOCHS_STAGE2: 99\nIMG_SIZE: 32\n")
    common = ["--no-int8", "--data-dir", str(trained.data_dir)]
    assert main(["export", "--checkpoint", ckpt, "--out", str(part), "--classes", ",".join(keep), "--config", str(cfg),
                 "--set", "FACE_MARGIN=0.1", *common]) == 0
    a, b = get_metadata(full), get_metadata(part)
    assert (a.source_size, a.face_margin, a.classes) == (0, trained.face_margin, trained.active_classes)
    assert (b.source_size, b.face_margin, b.classes, b.img_size, b.metrics) == (48, 0.1, keep, a.img_size, {})
    x = load_split(Path(trained.data_dir), "test", trained.active_classes, 64, True, trained.cache_dir,
                   progress=False).images.numpy()[:50]
    p_full = _ort_probs(full, x)[:, [trained.active_classes.index(c) for c in keep]]
    np.testing.assert_allclose(_ort_probs(part, x), p_full / p_full.sum(1, keepdims=True), atol=1e-5)
    capsys.readouterr()
    assert main(["export", "--checkpoint", ckpt, "--out", str(tmp_path / "x.onnx"), "--classes", "happy,calm",
                 *common]) == 2
    err = capsys.readouterr().err
    assert "--classes: the checkpoint has no class calm" in err and len(err.strip().splitlines()) == 1


def test_mix_exports_one_network_of_mixed_weights(trained, tmp_path, capsys):
    """--mix W with two checkpoints: one network, (1 - W) x the first's weights + W x the second's
    (the second's head rows picked by class name); one W per checkpoint: their weighted sum; bad
    weights are one line."""
    import numpy as np
    import torch

    from emorec.data.dataset import load_split
    from emorec.export import _ort_probs, get_metadata
    from emorec.models.checkpoint import load_checkpoint, model_from_checkpoint

    first = Path(trained.models_dir) / "best_model.pt"
    ckpt = load_checkpoint(first)
    order = list(reversed(ckpt["classes"]))  # the second names its classes in another order
    rows = [ckpt["classes"].index(c) for c in order]
    moved = {k: (v[rows] if k.startswith("classifier.") else v) * 1.5 if v.is_floating_point() else v
             for k, v in ckpt["model"].items()}
    second = tmp_path / "second.pt"
    torch.save({**ckpt, "model": moved, "classes": order, "config": {**ckpt["config"], "active_classes": order}},
               second)
    out = tmp_path / "mix.onnx"
    common = ["--no-int8", "--data-dir", str(trained.data_dir)]
    assert main(["export", "--checkpoint", str(first), str(second), "--mix", "0.25", "--out", str(out), *common]) == 0
    want, _ = model_from_checkpoint({**ckpt, "model": {k: v * 1.125 if v.is_floating_point() else v
                                                       for k, v in ckpt["model"].items()}})
    x = load_split(Path(trained.data_dir), "test", trained.active_classes, 64, True, trained.cache_dir,
                   progress=False).images.numpy()[:40]
    with torch.no_grad():
        expected = want(torch.from_numpy(x).float() / 255).softmax(1).numpy()
    np.testing.assert_allclose(_ort_probs(out, x), expected, atol=1e-4)
    info = get_metadata(out)
    assert (info.classes, info.backbone) == (trained.active_classes, "mobilenet_v2")
    capsys.readouterr()
    # one weight per checkpoint (a soup): 1/2 first + 1/4 second + 1/4 first = 1.125 x first again
    soup = tmp_path / "soup.onnx"
    assert main(["export", "--checkpoint", str(first), str(second), str(first), "--mix", "0.5", "0.25", "0.25",
                 "--out", str(soup), *common]) == 0
    np.testing.assert_allclose(_ort_probs(soup, x), expected, atol=1e-4)
    capsys.readouterr()
    for bad, says in (([str(first), str(second), "--mix", "1.5"], "outside [0, 1]"),
                      ([str(first), str(second), str(first), "--mix", "0.5"], "one weight per checkpoint"),
                      ([str(first), str(second), "--mix", "0.5", "0.6"], "sum to 1.1")):
        assert main(["export", "--checkpoint", *bad, "--out", str(tmp_path / "x.onnx"), *common]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err, err


def test_int8_ranges_come_from_the_configured_calibration(exported, trained, tmp_path, capfd):
    import onnx
    from onnx import numpy_helper

    from emorec.data.dataset import load_split
    from emorec.export import quantize_int8

    q = exported["int8"]
    assert q["calibration"] == "percentile" and 0 < q["calib_images"] <= 100  # the export default, the setting's count
    faces = load_split(Path(trained.data_dir), "train", trained.active_classes, 64, True, max_per_class=20,
                       progress=False).images.numpy()

    def scales(method):
        model = onnx.load(str(quantize_int8(Path(exported["onnx"]), tmp_path / f"{method}.onnx", faces, method)))
        return {t.name: float(numpy_helper.to_array(t)) for t in model.graph.initializer
                if t.name.endswith("_scale") and not t.dims}

    minmax, percentile = scales("minmax"), scales("percentile")
    assert minmax.keys() == percentile.keys() and minmax != percentile  # the method, not a no-op, sets the ranges
    ckpt = str(Path(trained.models_dir) / "best_model.pt")
    assert main(["export", "--checkpoint", ckpt, "--out", str(tmp_path / "e.onnx"),
                 "--set", "INT8_CALIBRATION=entropy"]) == 2
    err = capfd.readouterr().err.strip()
    assert "INT8_CALIBRATION must be one of percentile, minmax" in err and len(err.splitlines()) == 1


def test_int8_calibration_that_would_not_fit_in_memory_is_one_line(trained, tmp_path, capfd, monkeypatch):
    import emorec.export as ex

    monkeypatch.setattr(ex, "available_bytes", lambda: 10 * 2**20)  # 10 MiB free
    out = tmp_path / "m.onnx"
    assert main(["export", "--checkpoint", str(Path(trained.models_dir) / "best_model.pt"), "--out", str(out),
                 "--data-dir", str(trained.data_dir), "--set", "INT8_CALIB_IMAGES=50"]) == 2
    err = capfd.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "INT8_CALIB_IMAGES" in err and "--no-int8" in err, err
    assert out.is_file() and not (tmp_path / "m.int8.onnx").exists()
    one = ex.calibration_bytes(out, 1)
    assert one > 4 * 64 * 64 and ex.calibration_bytes(out, 50) == 50 * one  # every activation, per face


def test_int8_calibration_reads_faces_in_chunks():
    """The calibration reader hands onnxruntime one range of batches at a time (CalibStridedMinMax),
    so histograms are built chunk by chunk and memory holds one chunk of activations."""
    from emorec.export import CALIB_BATCH, CALIB_CHUNK, _Calibration

    faces = np.arange(100 * 4, dtype=np.uint8).reshape(100, 1, 2, 2)
    reader = _Calibration(faces)
    assert len(reader) == 100 // CALIB_BATCH
    stride = reader.stride()
    assert len(reader) % stride == 0 and stride * CALIB_BATCH <= CALIB_CHUNK
    seen = []
    for start in range(0, len(reader), stride):
        reader.set_range(start, start + stride)
        while (batch := reader.get_next()) is not None:
            seen.append(batch["input"])
        assert reader.get_next() is None  # the range is used up until the next one is set
    got = np.concatenate(seen)
    assert got.shape == (len(reader) * CALIB_BATCH, 1, 2, 2)
    assert np.array_equal(got, faces[:len(got)].astype(np.float32) / 255.0)

"""Odd configs, model files, checkpoints and caches: each costs one line, never a traceback or
gigabytes (issue 28's findings, each with the input that showed it)."""
from __future__ import annotations

import json
import resource

import cv2

import numpy as np
import pytest
import torch

from emorec.cli import main
from emorec.config import DEFAULT_CLASSES, Config, load_config
from emorec.errors import EmorecError

from conftest import make_tiny_onnx
from test_data import face, save


# --- config files -------------------------------------------------------------------------

def test_binary_unreadable_and_oversized_config_files(tmp_path, monkeypatch):
    binary = tmp_path / "b.yaml"
    binary.write_bytes(b"\xff\xfe\x00binary\x80\x81")
    with pytest.raises(EmorecError, match="is not text"):
        load_config(binary)
    locked = tmp_path / "locked.yaml"
    locked.write_text("SEED: 1\n")
    real = type(locked).read_text

    def denied(self, *a, **k):
        if self.name == "locked.yaml":
            raise PermissionError(13, "Permission denied")
        return real(self, *a, **k)

    monkeypatch.setattr(type(locked), "read_text", denied)
    with pytest.raises(EmorecError, match="cannot read it \\(Permission denied\\)"):
        load_config(locked)


def test_a_deep_base_chain_is_one_line(tmp_path):
    for i in range(1200):
        (tmp_path / f"c{i}.yaml").write_text(f"base: c{i + 1}.yaml\n")
    (tmp_path / "c1200.yaml").write_text("SEED: 3\n")
    with pytest.raises(EmorecError, match="base: chain deeper than 16 files"):
        load_config(tmp_path / "c0.yaml")


def test_a_yaml_alias_bomb_is_refused_before_it_expands(tmp_path, capsys):
    lines = ['a: &a ["x","x","x","x","x","x","x","x","x"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append("SOURCES: *i")
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text("\n".join(lines) + "\n")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["train", "--config", str(bomb)]) == 2
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) < 100 * 1024  # KiB: nothing expanded
    err = capsys.readouterr().err.strip()
    assert "anchors and aliases" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("seed", ["-1", str(2 ** 32), "nan"])
def test_seed_out_of_range_is_one_line(seed):
    with pytest.raises(EmorecError, match="SEED"):
        load_config(overrides={"seed": seed})


# --- model files --------------------------------------------------------------------------

def _with_metadata(path, text: str):
    import onnx

    from emorec.modelfile import META_KEY

    model = onnx.load(str(path))
    for prop in model.metadata_props:
        if prop.key == META_KEY:
            prop.value = text
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("meta, why", [
    ('["angry", "happy"]', "expected a JSON object"),
    (None, "img_size must be a whole number in \\[32, 1024\\], got 30000"),
    ('{"classes": "angry", "img_size": 48, "grayscale": true, "face_margin": 0}', "classes must be a list"),
])
def test_bad_model_metadata_is_one_line_at_start_and_when_served(tmp_path, meta, why, capsys):
    from fastapi.testclient import TestClient

    from emorec.api import create_app

    path = make_tiny_onnx(tmp_path / "m.onnx", DEFAULT_CLASSES)
    if meta is None:  # the real metadata with a huge input size: it would take gigabytes to feed
        meta = json.loads(_read_meta(path)) | {"img_size": 30000}
        meta = json.dumps(meta)
    _with_metadata(path, meta)
    assert main(["predict", str(tmp_path), "--model", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert "unreadable emorec metadata" in err and len(err.splitlines()) == 1
    import re

    assert re.search(why, err), err
    with pytest.raises(EmorecError, match="unreadable emorec metadata"):
        with TestClient(create_app(model_path=path)):
            pass


def _read_meta(path) -> str:
    import onnx

    from emorec.modelfile import META_KEY

    return next(p.value for p in onnx.load(str(path)).metadata_props if p.key == META_KEY)


# --- checkpoints ----------------------------------------------------------------------------

def _checkpoint(path, cfg: Config, **extra):
    from emorec.models import create_model

    model = create_model(cfg.backbone, num_classes=cfg.num_classes, pretrained=False, in_chans=cfg.in_chans)
    torch.save({"model": model.state_dict(), "config": cfg.to_dict(), "classes": cfg.active_classes, **extra}, path)
    return model


def test_a_checkpoint_with_nan_weights_is_refused(tmp_path, capsys):
    cfg = Config(img_size=48)
    path = tmp_path / "nan.pt"
    model = _checkpoint(path, cfg)
    state = model.state_dict()
    state["classifier.1.weight"][0, 0] = float("nan")
    torch.save({"model": state, "config": cfg.to_dict(), "classes": cfg.active_classes}, path)
    assert main(["export", "--checkpoint", str(path), "--out", str(tmp_path / "x.onnx"), "--no-int8"]) == 2
    err = capsys.readouterr().err.strip()
    assert "holds NaN or infinite values" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize("bad", ["optimizer", "model"])
def test_a_malformed_resume_point_is_one_line(tmp_path, bad):
    from emorec.train.loop import fit

    src = tmp_path / "src"
    for j, c in enumerate(DEFAULT_CLASSES):
        for k in range(4):
            save(src / c / f"{k}.png", face(10 * j + k))
    from emorec.data import prepare

    cfg = Config(img_size=48, val_fraction=0.25, test_fraction=0, data_dir=tmp_path / "split",
                 models_dir=tmp_path / "run/models", reports_dir=tmp_path / "run/reports",
                 cache_dir=tmp_path / "cache", train_mode="FAST_DEBUG")
    prepare(cfg, [src], cfg.data_dir)
    (tmp_path / "run/models").mkdir(parents=True)
    state = {"optimizer": {}, "scheduler": {}, "stage": 1, "epoch": 0, "history": [], "best": 0.0, "bad_epochs": 0}
    model = _checkpoint(tmp_path / "run/models/last.pt", cfg, **state)
    if bad == "model":  # weights of another shape under the right names
        weights = model.state_dict()
        weights["classifier.1.weight"] = torch.zeros(3, weights["classifier.1.weight"].shape[1])
        torch.save({"model": weights, "config": cfg.to_dict(), "classes": cfg.active_classes, **state},
                   tmp_path / "run/models/last.pt")
    with pytest.raises(EmorecError, match="cannot be resumed: its saved state does not fit this run"):
        fit(cfg, resume=True, show_progress=False)


# --- the decode cache -------------------------------------------------------------------------

@pytest.mark.parametrize("garbage", [b"", b"not a zip at all", b"PK\x03\x04broken"])
def test_a_garbage_decode_cache_is_rebuilt(tmp_path, garbage):
    from emorec.data import prepare
    from emorec.data.dataset import load_split

    src = tmp_path / "src"
    for j, c in enumerate(("happy", "sad")):
        for k in range(3):
            save(src / c / f"{k}.png", face(10 * j + k))
    prepare(Config(active_classes=["happy", "sad"], val_fraction=0, test_fraction=0), [src], tmp_path / "split")
    args = (tmp_path / "split", "train", ["happy", "sad"], 48, True, tmp_path / "cache")
    first = load_split(*args, progress=False)
    [cache] = (tmp_path / "cache").iterdir()
    cache.write_bytes(garbage)
    again = load_split(*args, progress=False)
    assert torch.equal(first.images, again.images) and np.array_equal(first.labels, again.labels)


def test_a_second_training_into_the_same_folder_stops_with_one_line(tmp_path):
    """Two runs into one MODELS_DIR both exited 0 and best_model.pt held the other run's weights."""
    import fcntl
    import os

    from emorec.train.loop import fit

    models = tmp_path / "run" / "models"
    models.mkdir(parents=True)
    fd = os.open(models / ".lock", os.O_RDWR | os.O_CREAT)  # the first run, holding its folder
    os.write(fd, b"4242")
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    try:
        with pytest.raises(EmorecError, match=r"MODELS_DIR .* is in use by another training \(pid 4242\)"):
            fit(Config(models_dir=models, data_dir=tmp_path / "none"), show_progress=False)
    finally:
        os.close(fd)
    with pytest.raises(EmorecError) as e:  # free again: the run goes on (to its missing weights or data)
        fit(Config(models_dir=models, data_dir=tmp_path / "none"), show_progress=False)
    assert "in use" not in str(e.value)


# --- file names that are not UTF-8 ------------------------------------------------------------

def test_file_names_that_are_not_utf8_are_processed_and_written_escaped(tmp_path, capsys, tiny_onnx, yunet_path,
                                                                        monkeypatch):
    """A Latin-1 name on a Linux disk killed predict --csv -o, data prepare, evaluate and train
    (UnicodeEncodeError: surrogates not allowed)."""
    import csv
    import os

    from emorec.data import prepare
    from emorec.data.dataset import load_split

    latin1 = os.fsdecode(b"caf\xe9.png")  # 'caf\udce9.png'
    raw = lambda path, seed: path.write_bytes(cv2.imencode(".png", face(seed))[1].tobytes())  # OpenCV: UTF-8 names only
    src = tmp_path / "src"
    for j, c in enumerate(("happy", "sad")):
        for k in range(3):
            save(src / c / f"{k}.png", face(10 * j + k))
    raw(src / "happy" / latin1, 99)
    report = prepare(Config(active_classes=["happy", "sad"], val_fraction=0, test_fraction=0), [src], tmp_path / "split")
    assert report["written"]["train"] == {"happy": 4, "sad": 3}
    rows = list(csv.DictReader(open(tmp_path / "split" / "manifest.csv", encoding="utf-8")))
    escaped = [r for r in rows if "caf" in r["original"]]
    assert escaped[0]["original"] == "happy/caf\\xe9.png" and (tmp_path / "split" / escaped[0]["path"]).is_file()
    # a split holding a raw name (made by hand): training and evaluation read it
    raw(tmp_path / "split" / "train" / "sad" / latin1, 98)
    data = load_split(tmp_path / "split", "train", ["happy", "sad"], 48, True, tmp_path / "cache", progress=False)
    assert len(data) == 8
    monkeypatch.setenv("EMOREC_YUNET", str(yunet_path))
    out = tmp_path / "faces.csv"
    assert main(["predict", str(src / "happy"), "--model", str(tiny_onnx), "--csv", "-o", str(out)]) == 0
    paths = [r["path"] for r in csv.DictReader(open(out, encoding="utf-8"))]
    assert str(src / "happy" / "caf\\xe9.png") in paths and len(paths) == 4
    assert main(["predict", str(src / "happy" / latin1), "--model", str(tiny_onnx), "--json"]) == 0
    assert "caf\\\\xe9.png" in capsys.readouterr().out
    clip = tmp_path / os.fsdecode(b"clip\xe9.mp4")  # a video: OpenCV opens it, so one line instead of a crash
    clip.write_bytes(b"\0" * 100)
    assert main(["predict", str(clip), str(src / "happy" / "0.png"), "--model", str(tiny_onnx)]) == 1
    err = capsys.readouterr().err
    assert "whose name is not UTF-8" in err and len(err.splitlines()) == 1


# --- writes that fail part-way (a full disk, simulated with a file size limit as `ulimit -f` does) ----

def _limited(args: list[str], limit: int, env_extra: dict):
    import os
    import subprocess
    import sys

    def limit_size():
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return subprocess.run([sys.executable, "-m", "emorec", *args], preexec_fn=limit_size, capture_output=True,
                          text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1", **env_extra})


@pytest.mark.slow  # subprocesses under a file size limit / a 49 MP decode
def test_a_failed_write_keeps_the_previous_file_and_is_one_line(tmp_path, tiny_onnx, yunet_path, images_dir):
    import hashlib
    import shutil

    from emorec.config import FER_CLASSES, SHIPPED_MODELS_DIR
    from emorec.data import prepare

    env = {"EMOREC_YUNET": str(yunet_path)}
    # evaluate --store rewrote the 2.8 MB model in place: a failed write left a 1 MB file that no longer loaded
    model = tmp_path / "m.onnx"
    shutil.copy(SHIPPED_MODELS_DIR / "emotion_7class.onnx", model)
    src = tmp_path / "src"
    for j, c in enumerate(FER_CLASSES):
        save(src / c / "0.png", face(j))
        save(src / c / "1.png", face(50 + j))
    prepare(Config(active_classes=FER_CLASSES, val_fraction=0, test_fraction=0.5), [src], tmp_path / "split")
    before = hashlib.sha256(model.read_bytes()).hexdigest()
    run = _limited(["evaluate", "--model", str(model), "--store", "--set", f"DATA_DIR={tmp_path / 'split'}",
                    "--out", str(tmp_path / "rep"), "--set", f"CACHE_DIR={tmp_path / 'c'}"], 1_000_000, env)
    assert run.returncode == 2 and "Traceback" not in run.stderr, run.stderr
    [line] = [ln for ln in run.stderr.splitlines() if ln.startswith("emorec evaluate:")]
    assert line.startswith(f"emorec evaluate: error: cannot write model {model} (File too large; ")
    assert "MB free on" in line and line.endswith("; the previous file is kept")
    assert hashlib.sha256(model.read_bytes()).hexdigest() == before and sorted(p.name for p in tmp_path.iterdir()
                                                                                 if p.name.startswith(".m")) == []
    # predict -o: the previous results stay, and no partial file is left
    out = tmp_path / "results.csv"
    out.write_text("old results\n")
    run = _limited(["predict", str(images_dir / "multi_face.jpg"), "--model", str(tiny_onnx), "--csv", "-o", str(out)],
                   100, env)
    assert run.returncode == 2 and "Traceback" not in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert f"cannot write --output {out}" in run.stderr and out.read_text() == "old results\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".results")] == []


# --- image memory: bounded before decoding, for every format ----------------------------------

def _png16(side: int) -> bytes:
    """A 16-bit grey PNG of side x side pixels: a few hundred KB that decode to 2 bytes a pixel."""
    import io

    from PIL import Image

    arr = np.tile(np.linspace(0, 65535, side, dtype=np.uint16), (side, 1))
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG", compress_level=9)  # uint16 -> mode I;16
    return buf.getvalue()


def test_large_png_is_refused_by_the_api_before_decoding_and_the_limit_is_published(tiny_onnx, yunet_path):
    from fastapi.testclient import TestClient

    from emorec.api import create_app
    from emorec.imageio import FULL_DECODE_PIXELS
    from emorec.inference.predictor import Predictor

    predictor = Predictor.from_path(tiny_onnx, detector_path=yunet_path)
    with TestClient(create_app(predictor)) as client:
        limits = client.get("/").json()["limits"]
        assert limits["image_pixels_other_than_jpeg"] == FULL_DECODE_PIXELS
        r = client.post("/predict", files={"file": ("big.png", _png16(7000), "image/png")})
        assert r.status_code == 413
        assert r.json()["detail"] == (f"big.png: image too large to decode (7000x7000 = 49,000,000 pixels, limit "
                                      f"{FULL_DECODE_PIXELS:,} for images other than JPEG, which are decoded reduced)")


@pytest.mark.slow  # subprocesses under a file size limit / a 49 MP decode
def test_a_16bit_png_decodes_without_a_float64_copy(tmp_path):
    """A 49 MP 16-bit PNG took the process to 1.5 GB (a float64 copy of it, then more); now its
    arrays peak near the RGB result's size. Counted by tracemalloc (numpy's allocations), which does
    not depend on the allocator's settings the way the process's resident size does."""
    import subprocess
    import sys

    path = tmp_path / "big16.png"
    path.write_bytes(_png16(7000))
    code = ("import tracemalloc; tracemalloc.start(); from emorec.imageio import read_image; "
            f"img = read_image({str(path)!r}); print(img.shape, img.dtype, img[0, -1, 0], "
            "tracemalloc.get_traced_memory()[1] // 2 ** 20)")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    shape, peak_mib = run.stdout.rsplit(" ", 1)
    assert shape == "(7000, 7000, 3) uint8 255", run.stderr
    assert int(peak_mib) < 450  # 289 MiB measured (the 140 MiB result and its bytes on the way); 1,129 MiB before


@pytest.mark.slow  # subprocesses under a file size limit / a 49 MP decode
def test_reports_exports_and_caches_that_cannot_be_written(tmp_path, tiny_onnx, yunet_path):
    """evaluate --out and export --out gave OSError tracebacks and 0-byte files on a full disk;
    a decode cache that cannot be written is only a warning (the run goes on)."""
    from emorec.data import prepare

    env = {"EMOREC_YUNET": str(yunet_path)}
    src = tmp_path / "src"
    for j, c in enumerate(DEFAULT_CLASSES):
        for k in range(2):
            save(src / c / f"{k}.png", face(10 * j + k))
    prepare(Config(val_fraction=0, test_fraction=0.5), [src], tmp_path / "split")
    common = ["--set", f"DATA_DIR={tmp_path / 'split'}", "--set", f"CACHE_DIR={tmp_path / 'cache'}"]
    run = _limited(["evaluate", "--model", str(tiny_onnx), "--out", str(tmp_path / "rep"), *common], 2000, env)
    [line] = [ln for ln in run.stderr.splitlines() if ln.startswith("emorec evaluate:")]
    assert run.returncode == 2 and "Traceback" not in run.stderr and "cannot write" in line and "File too large" in line
    assert all(p.stat().st_size > 0 for p in (tmp_path / "rep").rglob("*")) and \
        not [p for p in (tmp_path / "rep").iterdir() if p.name.startswith(".")]
    assert "warning: cannot write decode cache" in run.stdout + run.stderr  # the cache (over 2 KB) was skipped
    ckpt = tmp_path / "m.pt"
    _checkpoint(ckpt, Config(img_size=48, data_dir=tmp_path / "split"))
    out = tmp_path / "exp" / "m.onnx"
    run = _limited(["export", "--checkpoint", str(ckpt), "--out", str(out), "--no-int8"], 1_000_000, env)
    [line] = [ln for ln in run.stderr.splitlines() if ln.startswith("emorec export:")]
    assert run.returncode == 2 and "Traceback" not in run.stderr and line.startswith(f"emorec export: error: cannot write model {out}")
    assert not out.exists() and list(out.parent.iterdir()) == []


def test_export_never_writes_over_its_checkpoint(tmp_path, capsys):
    ckpt = tmp_path / "m.pt"
    _checkpoint(ckpt, Config(img_size=48))
    before = ckpt.read_bytes()
    assert main(["export", "--checkpoint", str(ckpt), "--out", str(ckpt), "--no-int8"]) == 2
    assert "write over its own checkpoint" in capsys.readouterr().err and ckpt.read_bytes() == before

"""Shared fixtures. Real data lives in ../shared (or $EMOREC_SHARED); tests that need it
skip with a clear reason when it is absent."""
from __future__ import annotations

import os
import subprocess
import zipfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOREC_SHARED", ROOT.parent / "shared"))


def shared_path(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not found: {p} (set EMOREC_SHARED)")
    return p


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    return shared_path()


@pytest.fixture(scope="session")
def images_dir(tmp_path_factory) -> Path:
    """../shared/images, or stand-ins with the same names, sizes and face counts made from the
    repository's examples/multi_face.jpg, so a fresh clone runs the photo tests too."""
    if (SHARED / "images").is_dir():
        return SHARED / "images"
    return make_photo_standins(tmp_path_factory.mktemp("images"))


# (x0, y0, x1, y1) around one face of examples/multi_face.jpg, clear of the others
_ONE_FACE = {"left": (160, 10, 360, 215), "right": (645, 255, 845, 465)}


def make_photo_standins(out: Path) -> Path:
    """multi_face.jpg (5 faces); single_face.jpg, astronaut.png, BWPictureHuman.jpg (gray) and
    Image_with_alpha.png (RGBA) with one face each; chelsea_cat.png, coffee.png and
    free-mountain-vector-01.jpg with none."""
    from PIL import Image, ImageDraw

    group = Image.open(ROOT / "examples" / "multi_face.jpg").convert("RGB")
    group.save(out / "multi_face.jpg", quality=95)
    left, right = (group.crop(_ONE_FACE[k]) for k in ("left", "right"))
    single = Image.new("RGB", (572, 562), (128, 120, 110))  # the face a third of the frame, as Haar wants
    single.paste(right.resize((300, 315), Image.BICUBIC), (136, 124))
    single.save(out / "single_face.jpg", quality=95)
    left.resize((512, 512), Image.BICUBIC).save(out / "astronaut.png")
    rng = np.random.default_rng(0)
    grain = rng.normal(170, 25, (1912, 2560)).clip(0, 255).astype(np.uint8)  # film grain: a file over 1 MB
    bw = Image.fromarray(grain)
    bw.paste(left.convert("L").resize((900, 920), Image.BICUBIC), (830, 500))
    bw.save(out / "BWPictureHuman.jpg", quality=90)
    alpha = Image.new("RGBA", (1524, 1036), (0, 0, 0, 0))
    alpha.paste(right.resize((600, 620), Image.BICUBIC).convert("RGBA"), (460, 200))
    alpha.save(out / "Image_with_alpha.png")
    for name, size in (("chelsea_cat.png", (451, 300)), ("coffee.png", (600, 400)),
                       ("free-mountain-vector-01.jpg", (1920, 1080))):
        w, h = size
        grad = np.linspace(40, 220, w, dtype=np.float32)[None, :, None] * np.ones((h, 1, 3), np.float32)
        img = Image.fromarray(grad.astype(np.uint8))
        draw = ImageDraw.Draw(img)
        for _ in range(6):
            x, y = int(rng.integers(0, w - 60)), int(rng.integers(0, h - 60))
            draw.rectangle((x, y, x + int(rng.integers(20, 60)), y + int(rng.integers(20, 60))),
                           fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        img.save(out / name, quality=90)
    return out


@pytest.fixture(scope="session")
def weights_dir() -> Path:
    return shared_path("weights")


@pytest.fixture(scope="session")
def yunet_path() -> Path:
    """The detector that ships in the package (the same file as ../shared/weights')."""
    from emorec.detect import PACKAGED_YUNET

    return PACKAGED_YUNET


@pytest.fixture(scope="session")
def fer2013_zip() -> Path:
    return shared_path("datasets", "fer2013.zip")


@pytest.fixture(scope="session")
def ferplus_zip() -> Path:
    return shared_path("datasets", "ferplus.zip")


@contextmanager
def emorec_server(model: Path, yunet: Path, log_path: Path, *extra: str):
    """`emorec serve --model MODEL` on a free loopback port, up once /health answers; yields its base URL."""
    import socket
    import sys
    import time

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = log_path.open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "emorec", "serve", "--model", str(model), "--host", "127.0.0.1",
                             "--port", str(port), "--log-level", "warning", *extra],
                            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "EMOREC_YUNET": str(yunet)},
                            cwd=log_path.parent)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 45
        while True:
            assert proc.poll() is None, f"server exited early:\n{log_path.read_text()[-2000:]}"
            try:
                if httpx.get(f"{base}/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not answer /health within 45 s"
            time.sleep(0.2)
        yield base
    finally:
        stop_process(proc)
        log.close()


def stop_process(proc: subprocess.Popen, timeout: float = 15) -> None:
    """Terminate a test server, killing it if it does not go in time."""
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def make_tiny_onnx(path: Path, classes: list[str], img_size: int = 48, grayscale: bool = True,
                   source_size: int = 0) -> Path:
    """A real (untrained) ONNX classifier with emorec metadata, built without torch:
    mean pixel of each channel -> linear layer. Logits depend on the input, so tests can
    tell bright from dark images apart."""
    import onnx
    from onnx import TensorProto, helper

    from emorec.modelfile import META_KEY, ModelInfo

    c, k = (1 if grayscale else 3), len(classes)
    rng = np.random.default_rng(0)
    w = rng.normal(size=(c, k)).astype(np.float32) * 4
    b = np.linspace(-0.5, 0.5, k).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("GlobalAveragePool", ["input"], ["pooled"]),
         helper.make_node("Flatten", ["pooled"], ["flat"]),
         helper.make_node("Gemm", ["flat", "W", "B"], ["logits"])],
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", c, img_size, img_size])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", k])],
        [helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.flatten()),
         helper.make_tensor("B", TensorProto.FLOAT, b.shape, b)],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    info = ModelInfo(classes=list(classes), img_size=img_size, grayscale=grayscale, face_margin=0.15, backbone="tiny",
                     version="test", source_size=source_size)
    helper.set_model_props(model, {META_KEY: info.to_json()})
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="session")
def tiny_onnx(tmp_path_factory) -> Path:
    """5-class default-classes tiny model."""
    from emorec.config import DEFAULT_CLASSES

    return make_tiny_onnx(tmp_path_factory.mktemp("model") / "tiny.onnx", DEFAULT_CLASSES)


@pytest.fixture(scope="session")
def tiny_onnx7(tmp_path_factory) -> Path:
    from emorec.config import FER_CLASSES

    return make_tiny_onnx(tmp_path_factory.mktemp("model7") / "tiny7.onnx", FER_CLASSES)


# --- a real (tiny) training run shared by train/evaluate/export tests ---

def small_split(zip_path: Path, out: Path, per_class: dict[str, int], classes=None) -> Path:
    """A few real FER2013 faces per class in data_split layout (PublicTest -> val, PrivateTest -> test)."""
    from emorec.config import DEFAULT_CLASSES

    classes = classes or DEFAULT_CLASSES
    taken: dict[tuple[str, str], int] = {}
    with zipfile.ZipFile(zip_path) as zf:
        for name in sorted(zf.namelist()):
            parts = name.split("/")
            if len(parts) != 3 or not parts[2] or parts[1] not in classes:
                continue
            split = parts[0] if parts[0] == "train" else ("val" if parts[2].startswith("PublicTest") else "test")
            if taken.get((split, parts[1]), 0) >= per_class[split]:
                continue
            taken[(split, parts[1])] = taken.get((split, parts[1]), 0) + 1
            dest = out / split / parts[1] / parts[2]
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.write_bytes(zf.read(name))
    return out


def tiny_cfg(data: Path, run: Path, weights_dir: Path, **kw):
    from emorec.config import Config

    base = dict(data_dir=str(data), models_dir=str(run / "models"), reports_dir=str(run / "reports"),
                cache_dir=str(run / "cache"), weights_dir=str(weights_dir), train_mode="FAST_DEBUG", img_size=64,
                batch_size=32, epochs_stage1=2, epochs_stage2=1, lr_stage1=3e-3, lr_stage2=3e-4, patience=5)
    base.update(kw)
    return Config.from_dict(base)


def cli_args(cfg) -> list[str]:
    keys = ("data_dir", "models_dir", "reports_dir", "cache_dir", "weights_dir", "img_size", "batch_size",
            "epochs_stage1", "epochs_stage2", "patience", "max_train_per_class")
    return [a for k in keys for a in ("--set", f"{k}={getattr(cfg, k)}")]


@pytest.fixture(scope="session")
def split_dir(fer2013_zip, tmp_path_factory) -> Path:
    return small_split(fer2013_zip, tmp_path_factory.mktemp("split"), {"train": 80, "val": 30, "test": 30})


@pytest.fixture(scope="session")
def trained(split_dir, weights_dir, tmp_path_factory):
    """One FAST_DEBUG-sized run shared by the evaluate/export tests."""
    from emorec.train.loop import fit

    cfg = tiny_cfg(split_dir, tmp_path_factory.mktemp("run"), weights_dir)
    fit(cfg, show_progress=False)
    return cfg


# Fixtures that train a model or read a whole dataset (tens of seconds each): every test using
# one belongs to the full run, so the quick run (-m "not slow and not browser") stays under a minute.
SLOW_FIXTURES = {"trained", "exported", "split_dir", "fer_scan", "fer_split", "private_test", "ferplus_split"}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)

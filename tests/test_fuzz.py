"""Seeded fuzzing of the inference path: mutated photos and extreme aspect ratios through the
library and the API, from several threads. Each input gets a result or its own one-line error;
nothing else may escape (issue: a 3200x40 image made YuNet return infinite boxes)."""
from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from emorec.errors import EmorecError
from emorec.imageio import read_image

SHAPES = [(40, 3200), (3200, 40), (8, 4000), (4000, 9), (20, 640), (9, 9), (8, 200), (1000, 12)]


def mutations(photo: bytes, n: int, seed: int = 0) -> list[bytes]:
    """Bytes flipped, runs zeroed, truncations and splices: the usual damaged-upload shapes."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        b = bytearray(photo)
        kind = i % 4
        if kind == 0:
            for pos in rng.integers(0, len(b), 20):
                b[pos] = int(rng.integers(0, 256))
        elif kind == 1:
            start = int(rng.integers(0, len(b) - 500))
            b[start:start + 500] = bytes(500)
        elif kind == 2:
            b = b[: int(rng.integers(10, len(b)))]
        else:
            start = int(rng.integers(0, len(b) // 2))
            b = b[:start] + b[start + int(rng.integers(1, 2000)):]
        out.append(bytes(b))
    return out


def extreme(shape, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (*shape, 3), dtype=np.uint8)


def png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def photo(images_dir) -> bytes:
    return (images_dir / "single_face.jpg").read_bytes()


@pytest.fixture(scope="module")
def predictor(tiny_onnx, yunet_path):
    from emorec.inference.predictor import Predictor

    return Predictor.from_path(tiny_onnx, detector_path=yunet_path)


def test_library_never_raises_unexpectedly(predictor, photo):
    inputs = [("mut", data) for data in mutations(photo, 120)]
    inputs += [("shape", extreme(SHAPES[i % len(SHAPES)], i)) for i in range(80)]

    def one(item):
        kind, x = item
        try:
            img = read_image(x, name="fuzz.jpg") if kind == "mut" else x
        except EmorecError:
            return "refused"
        faces = predictor.predict([img])[0]
        for f in faces:  # every box inside the image
            x0, y0, w, h = f.box
            assert 0 <= x0 and 0 <= y0 and w > 0 and h > 0
            assert x0 + w <= img.shape[1] and y0 + h <= img.shape[0]
        return "ok"

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, inputs))
    assert len(results) == 200 and results.count("ok") >= 80  # every extreme shape is answered
    again = [len(predictor.predict([extreme(s, 1)])[0]) for s in SHAPES]
    assert again == [len(predictor.predict([extreme(s, 1)])[0]) for s in SHAPES]  # deterministic


def test_api_batch_keeps_good_images_beside_extreme_ones(predictor, photo):
    from fastapi.testclient import TestClient

    from emorec.api import create_app

    client = TestClient(create_app(predictor))
    wide = png(extreme((40, 3200), 3))

    def batch(i):
        files = [("files", ("a.jpg", photo, "image/jpeg")), ("files", (f"wide{i}.png", wide, "image/png")),
                 ("files", ("m.jpg", mutations(photo, 4, seed=i)[i % 4], "image/jpeg")),
                 ("files", ("b.jpg", photo, "image/jpeg"))]
        return client.post("/predict/batch", files=files)

    with ThreadPoolExecutor(4) as pool:
        responses = list(pool.map(batch, range(12)))
    for r in responses:
        assert r.status_code == 200, r.text
        res = r.json()["results"]
        assert [x["status"] for x in (res[0], res[1], res[3])] == [200, 200, 200]
        assert len(res[0]["faces"]) == 1 and len(res[3]["faces"]) == 1 and res[1]["faces"] == []
        assert res[2]["status"] in (200, 422)
    r = client.post("/predict", files={"file": ("tall.png", png(extreme((3200, 40), 5)), "image/png")})
    assert r.status_code == 200 and r.json()["faces"] == []

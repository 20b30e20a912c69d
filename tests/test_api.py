"""REST API: every endpoint through FastAPI's TestClient, the bad uploads a client can send,
`emorec serve` errors, and one real uvicorn server on loopback."""
from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from conftest import emorec_server
from PIL import Image

pytest.importorskip("fastapi")
pytest.importorskip("python_multipart")
httpx = pytest.importorskip("httpx")
with warnings.catch_warnings():  # starlette nags about httpx2 at import time
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

from emorec.api import create_app  # noqa: E402
from emorec.cli import main  # noqa: E402
from emorec.config import DEFAULT_CLASSES, Config  # noqa: E402

MAX_UPLOAD = 400_000  # small per-file limit so oversize uploads are cheap to build
MAX_BATCH = 4


@pytest.fixture(scope="module")
def predictor(tiny_onnx, yunet_path):
    from emorec.inference.predictor import Predictor

    return Predictor.from_path(tiny_onnx, detector="yunet", detector_path=yunet_path)


@pytest.fixture(scope="module")
def client(predictor):
    app = create_app(predictor, max_upload_bytes=MAX_UPLOAD, max_batch_files=MAX_BATCH)
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


@pytest.fixture(scope="module")
def multi_face(images_dir) -> bytes:
    data = (images_dir / "multi_face.jpg").read_bytes()
    assert len(data) < MAX_UPLOAD
    return data


def png_bytes(w: int, h: int, value: int = 128) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def png_header_only(w: int, h: int) -> bytes:
    """A tiny PNG that claims w x h pixels: what a decompression bomb looks like to a server."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def post_one(client, name: str, data: bytes, **params):
    return client.post("/predict", params=params, files={"file": (name, data, "image/jpeg")})


def assert_one_line_error(r, status: int) -> str:
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and "\n" not in detail and "Traceback" not in detail
    return detail


# --- endpoints -----------------------------------------------------------------
def test_health_and_model(client):
    r = client.get("/health")
    assert r.status_code == 200 and r.json()["status"] == "ok" and r.json()["model_loaded"] is True
    m = client.get("/model").json()
    assert m["classes"] == DEFAULT_CLASSES
    assert (m["img_size"], m["grayscale"], m["backbone"], m["version"]) == (48, True, "tiny", "test")
    assert m["metrics"] == {}


def test_predict_multi_face(client, multi_face):
    r = post_one(client, "multi_face.jpg", multi_face)
    assert r.status_code == 200, r.text
    body = r.json()
    with Image.open(io.BytesIO(multi_face)) as im:
        assert (body["width"], body["height"]) == im.size
    assert body["model"] == "test"
    assert len(body["faces"]) == 5
    for face in body["faces"]:
        assert set(face["probs"]) == set(DEFAULT_CLASSES)
        assert sum(face["probs"].values()) == pytest.approx(1.0, abs=1e-5)
        assert face["label"] == max(face["probs"], key=face["probs"].get)
        assert face["confidence"] == pytest.approx(face["probs"][face["label"]])
        x, y, w, h = face["box"]
        assert w > 0 and h > 0 and 0 <= x < body["width"] and 0 <= y < body["height"]
        assert 0.6 <= face["det_score"] <= 1.0
        assert [t["label"] for t in face["top"]] == [face["label"]]  # TOP_K = 1, as the CLI


def test_predict_options_query_and_form(client, multi_face):
    # detect=false: the whole image is one face, as a query option or a form field.
    q = post_one(client, "m.jpg", multi_face, detect="false", top_k=2).json()
    f = client.post("/predict", data={"detect": "false"}, files={"file": ("m.jpg", multi_face)}).json()
    for body in (q, f):
        assert len(body["faces"]) == 1
        assert body["faces"][0]["box"] == [0, 0, body["width"], body["height"]]
        assert body["faces"][0]["det_score"] == 1.0
    assert len(q["faces"][0]["top"]) == 2
    probs = q["faces"][0]["top"]
    assert probs[0]["prob"] >= probs[1]["prob"]
    # top_k beyond the class count is capped, below 1 refused in one line
    assert len(post_one(client, "m.jpg", multi_face, top_k=50).json()["faces"][0]["top"]) == len(DEFAULT_CLASSES)
    assert "top_k" in assert_one_line_error(post_one(client, "m.jpg", multi_face, top_k=0), 422)
    assert "detect" in assert_one_line_error(post_one(client, "m.jpg", multi_face, detect="maybe"), 422)


def test_predict_no_face(client, images_dir):
    data = (images_dir / "free-mountain-vector-01.jpg").read_bytes()
    r = post_one(client, "mountain.jpg", data)
    assert r.status_code == 200 and r.json()["faces"] == []


def test_brightness_changes_probs(client):
    # The tiny model maps mean brightness to logits: the API must pass the pixels through.
    dark = post_one(client, "d.png", png_bytes(64, 64, 20), detect="false").json()["faces"][0]["probs"]
    light = post_one(client, "l.png", png_bytes(64, 64, 235), detect="false").json()["faces"][0]["probs"]
    assert max(abs(dark[c] - light[c]) for c in DEFAULT_CLASSES) > 0.01


# --- bad inputs ------------------------------------------------------------------
@pytest.mark.parametrize("name, data, words", [
    ("empty.jpg", b"", "empty"),
    ("text.jpg", b"this is not a JPEG, just text\n" * 20, "not an image"),
    ("one.png", None, "too small"),
])
def test_bad_images_are_422(client, name, data, words):
    data = png_bytes(1, 1) if data is None else data
    detail = assert_one_line_error(post_one(client, name, data), 422)
    assert name in detail and words in detail


def test_truncated_jpeg_is_422(client, multi_face):
    detail = assert_one_line_error(post_one(client, "cut.jpg", multi_face[: len(multi_face) // 3]), 422)
    assert "truncated" in detail or "corrupt" in detail


def test_missing_file_field_is_422(client):
    detail = assert_one_line_error(client.post("/predict", data={"detect": "true"}), 422)
    assert "file" in detail


def test_oversize_upload_is_413(client):
    # Just over the per-file limit: the endpoint answers with a JSON detail.
    detail = assert_one_line_error(post_one(client, "big.jpg", b"\xff" * (MAX_UPLOAD + 1)), 413)
    assert "too large" in detail
    # Far over: the body limit stops it before the multipart parser spools it to disk,
    # still as JSON naming the limit.
    r = post_one(client, "huge.jpg", b"\xff" * (3 * MAX_UPLOAD))
    detail = assert_one_line_error(r, 413)
    assert detail == f"request body too large (limit {MAX_UPLOAD:,} bytes per file)"
    # the number GET / publishes, one number per limit
    assert client.get("/").json()["limits"]["upload_bytes"] == MAX_UPLOAD


def test_pixel_bomb_is_413(client, predictor):
    # Over Pillow's own bomb limit: refused from the header, nothing decoded.
    detail = assert_one_line_error(post_one(client, "bomb.png", png_header_only(30_000, 30_000)), 413)
    assert "too large" in detail
    # Under Pillow's limit but over the server's: same answer with the numbers.
    app = create_app(predictor, max_pixels=100 * 100)
    with TestClient(app) as small:
        detail = assert_one_line_error(post_one(small, "wide.png", png_bytes(200, 100)), 413)
        assert "20,000 pixels" in detail and "10,000" in detail
        assert post_one(small, "ok.png", png_bytes(100, 100)).status_code == 200


def test_unexpected_error_is_generic_500(predictor, caplog, monkeypatch, multi_face):
    def boom(*a, **k):
        raise RuntimeError("secret internal state")

    monkeypatch.setattr(predictor, "predict", boom)
    with TestClient(create_app(predictor), raise_server_exceptions=False) as c:
        r = post_one(c, "m.jpg", multi_face)
    assert r.status_code == 500 and r.json() == {"detail": "internal server error"}
    assert "secret" not in r.text
    assert any("secret internal state" in (rec.exc_text or "") or
               (rec.exc_info and "secret internal state" in str(rec.exc_info[1])) for rec in caplog.records)


# --- batch -------------------------------------------------------------------------
def test_batch_mixed_items(client, multi_face):
    files = [("files", ("faces.jpg", multi_face, "image/jpeg")),
             ("files", ("text.jpg", b"hello", "image/jpeg")),
             ("files", ("empty.png", b"", "image/png")),
             ("files", ("big.jpg", b"\xff" * (MAX_UPLOAD + 1), "image/jpeg"))]
    r = client.post("/predict/batch", files=files, params={"top_k": 2})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["model"] == "test"
    res = body["results"]
    assert [x["path"] for x in res] == ["faces.jpg", "text.jpg", "empty.png", "big.jpg"]
    assert [x["status"] for x in res] == [200, 422, 422, 413]
    assert len(res[0]["faces"]) == 5 and res[0]["error"] is None
    assert all(len(f["top"]) == 2 for f in res[0]["faces"])
    for bad in res[1:]:  # the one envelope: faces [] and the error
        assert bad["faces"] == [] and bad["width"] is None and bad["path"] in bad["error"] and "\n" not in bad["error"]
    # the batch answer for a file equals the single answer, in the same envelope
    one = post_one(client, "faces.jpg", multi_face, top_k=2).json()
    assert set(one) == {"model", *(k for k in res[0] if k != "status")}
    single = one["faces"]
    assert [f["box"] for f in single] == [f["box"] for f in res[0]["faces"]]
    for a, b in zip(single, res[0]["faces"]):
        assert a["probs"] == pytest.approx(b["probs"], abs=1e-5)


def test_batch_detect_form_and_limits(client):
    files = [("files", (f"{v}.png", png_bytes(40, 40, v), "image/png")) for v in (30, 220)]
    r = client.post("/predict/batch", files=files, data={"detect": "false"})
    assert r.status_code == 200
    assert [len(x["faces"]) for x in r.json()["results"]] == [1, 1]
    too_many = [("files", (f"{i}.png", png_bytes(10, 10), "image/png")) for i in range(MAX_BATCH + 1)]
    assert "too many files" in assert_one_line_error(client.post("/predict/batch", files=too_many), 413)
    assert "files" in assert_one_line_error(client.post("/predict/batch"), 422)


# --- schema and model loading ----------------------------------------------------
def test_openapi_has_response_models(client):
    spec = client.get("/openapi.json").json()
    assert {"/predict", "/predict/batch", "/health", "/model"} <= set(spec["paths"])

    def ok_schema(path, method):
        return spec["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]

    assert ok_schema("/predict", "post").endswith("/PredictOut")
    assert ok_schema("/predict/batch", "post").endswith("/BatchOut")
    assert ok_schema("/model", "get").endswith("/ModelOut")
    assert ok_schema("/health", "get").endswith("/HealthOut")
    schemas = spec["components"]["schemas"]
    assert {"box", "label", "confidence", "probs", "det_score", "top"} <= set(schemas["FaceOut"]["properties"])
    assert spec["paths"]["/predict"]["post"]["responses"]["422"]["content"]["application/json"]["schema"]["$ref"] \
        .endswith("/ErrorOut")


def test_model_loaded_once_at_startup(tiny_onnx, yunet_path, multi_face):
    app = create_app(model_path=tiny_onnx, config=Config(yunet_path=yunet_path))
    # Without the lifespan (no `with`), nothing is loaded yet: 503, not a crash.
    bare = TestClient(app)
    assert bare.get("/health").status_code == 503
    assert assert_one_line_error(post_one(bare, "m.jpg", multi_face), 503) == "model not loaded"
    with TestClient(app) as c:
        assert c.get("/health").json()["model_loaded"] is True
        loaded = app.state.predictor
        assert len(post_one(c, "m.jpg", multi_face).json()["faces"]) == 5
        assert app.state.predictor is loaded


def test_missing_model_fails_startup(tmp_path):
    from emorec.errors import EmorecError

    app = create_app(model_path=tmp_path / "nope.onnx")
    with pytest.raises(EmorecError, match="model file not found"):
        with TestClient(app):
            pass


def test_api_never_imports_torch(tiny_onnx, yunet_path):
    code = ("import sys\nfrom emorec.api import create_app\nfrom emorec.config import Config\n"
            "from fastapi.testclient import TestClient\n"
            f"app = create_app(model_path={str(tiny_onnx)!r}, config=Config(yunet_path={str(yunet_path)!r}))\n"
            "with TestClient(app) as c:\n    assert c.get('/health').status_code == 200\n"
            "assert 'torch' not in sys.modules, 'torch imported'\n")
    r = subprocess.run([sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]


# --- `emorec serve` ----------------------------------------------------------------
def test_serve_missing_model_is_one_line(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "missing.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("emorec serve: error:") and "missing.onnx" in err and "\n" not in err


def test_serve_without_uvicorn_gives_install_hint(monkeypatch, capsys, tiny_onnx):
    monkeypatch.setitem(sys.modules, "uvicorn", None)  # import uvicorn -> ImportError
    assert main(["serve", "--model", str(tiny_onnx)]) == 2
    assert "pip install 'emorec[api]'" in capsys.readouterr().err


def test_real_server(tiny_onnx, yunet_path, multi_face, tmp_path):
    with emorec_server(tiny_onnx, yunet_path, tmp_path / "server.log", "--threads", "1") as base:
        r = httpx.post(f"{base}/predict", files={"file": ("multi_face.jpg", multi_face, "image/jpeg")},
                       timeout=30)
        assert r.status_code == 200, r.text
        faces = r.json()["faces"]
        assert len(faces) == 5
        assert all(sum(f["probs"].values()) == pytest.approx(1.0, abs=1e-5) for f in faces)
        bad = httpx.post(f"{base}/predict", files={"file": ("x.jpg", b"nope")}, timeout=30)
        assert bad.status_code == 422 and "not an image" in bad.json()["detail"]


# --- bounds: busy, slow bodies, huge photos; headers and the index ---------------------
def test_busy_server_is_503_with_retry_after(predictor, multi_face):
    import threading

    gate = threading.Event()
    real = predictor.predict

    def slow(*a, **k):
        gate.wait(10)
        return real(*a, **k)

    app = create_app(predictor, max_concurrent=1, queue_timeout=0.2)
    with TestClient(app) as c:
        predictor.predict = slow
        try:
            first = threading.Thread(target=post_one, args=(c, "a.jpg", multi_face))
            first.start()
            import time

            time.sleep(0.3)
            r = post_one(c, "b.jpg", multi_face)
            gate.set()
            first.join()
        finally:
            predictor.predict = real
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert "server busy" in r.json()["detail"]
        assert post_one(c, "c.jpg", multi_face).status_code == 200


def test_body_shorter_than_its_length_is_408(predictor):
    import asyncio

    app = create_app(predictor, body_timeout=0.3)
    body = b"--x\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.jpg\"\r\n\r\nabc"
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
             "scheme": "http", "path": "/predict", "raw_path": b"/predict", "query_string": b"",
             "root_path": "", "server": ("127.0.0.1", 80), "client": ("127.0.0.1", 1),
             "headers": [(b"content-type", b"multipart/form-data; boundary=x"),
                         (b"content-length", str(len(body) + 1000).encode())]}
    sent = []

    async def run():
        messages = [{"type": "http.request", "body": body, "more_body": True}]

        async def receive():
            if messages:
                return messages.pop()
            await asyncio.sleep(3600)  # the client never sends the rest

        async def send(m):
            sent.append(m)

        await asyncio.wait_for(app(scope, receive, send), 10)

    asyncio.run(run())
    start = next(m for m in sent if m["type"] == "http.response.start")
    body_out = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    assert start["status"] == 408 and "incomplete" in json.loads(body_out)["detail"]


def test_large_jpeg_decodes_reduced_with_boxes_in_original_pixels(predictor, images_dir):
    img = Image.open(images_dir / "multi_face.jpg").convert("RGB")
    big = img.resize((img.width * 4, img.height * 4))
    buf = io.BytesIO()
    big.save(buf, "JPEG", quality=90)
    full = create_app(predictor, max_upload_bytes=20 * 1024 * 1024, decode_pixels=10 ** 9)
    reduced = create_app(predictor, max_upload_bytes=20 * 1024 * 1024, decode_pixels=img.width * img.height * 2)
    with TestClient(full) as a, TestClient(reduced) as b:
        ra, rb = (post_one(c, "big.jpg", buf.getvalue()).json() for c in (a, b))
    assert (ra["width"], ra["height"]) == (rb["width"], rb["height"]) == big.size
    assert len(ra["faces"]) == len(rb["faces"]) == 5
    for fa, fb in zip(ra["faces"], rb["faces"]):
        assert np.allclose(fa["box"], fb["box"], atol=0.08 * fa["box"][2])


def test_security_headers_and_index(client):
    for r in (client.get("/health"), client.get("/"), post_one(client, "x.jpg", b"not an image")):
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
    index = client.get("/").json()
    assert index["openapi"] == "/openapi.json" and "POST /predict" in index["endpoints"]
    assert "commit" in client.get("/openapi.json").json()["info"]["description"]

"""REST API over the ONNX predictor: ``create_app()`` builds the FastAPI app.

Endpoints: ``POST /predict``, ``POST /predict/batch``, ``GET /health``, ``GET /model``.
Every error a client can cause is a one-line ``{"detail": ...}``: 413 for uploads or
images over the limits, 422 for anything that is not a usable image. A request body far
over the limit (``max_upload_bytes`` per file, times ``max_batch_files`` for a batch) is
cut off by FastAPI's ``max_body_size`` before it is spooled to disk; that 413 is
Starlette's plain-text "Content Too Large" when the client declared the length up front.
In a batch, a bad file only gets an error entry; the other files are still answered.
Inference is blocking, so the endpoints are plain ``def`` functions: FastAPI runs them in
its threadpool and the event loop keeps serving /health meanwhile.
"""
# No `from __future__ import annotations`: FastAPI reads the endpoint annotations, and the
# ones built inside create_app must be evaluated there.
import io
import logging
import warnings
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from PIL import Image
from pydantic import BaseModel, Field

from emorec import __version__, imageio
from emorec.errors import EmorecError

log = logging.getLogger("emorec.api")

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # per file; phone photos are 2-8 MB
MAX_BATCH_FILES = 16
MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and form fields


class TooLarge(EmorecError):
    """An upload or image over the server's limits (HTTP 413)."""


# --- response models (they make /openapi.json describe real payloads) ---------
class LabelProb(BaseModel):
    label: str
    prob: float


class FaceOut(BaseModel):
    box: list[int] = Field(description="x, y, w, h in original-image pixels")
    label: str
    confidence: float
    probs: dict[str, float] = Field(description="probability of every model class; sums to 1")
    det_score: float = Field(description="face detector score (1.0 with detect=false)")
    top: list[LabelProb] = Field(description="the top_k most likely classes, best first")


class PredictOut(BaseModel):
    faces: list[FaceOut]
    width: int
    height: int
    model: str = Field(description="model version")


class BatchItemOut(BaseModel):
    filename: str
    status: int = Field(description="HTTP-style status of this item: 200, 413 or 422")
    faces: list[FaceOut] | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None


class BatchOut(BaseModel):
    results: list[BatchItemOut] = Field(description="one entry per uploaded file, in upload order")
    model: str


class HealthOut(BaseModel):
    status: str
    model_loaded: bool
    version: str = Field(description="emorec version")


class ModelOut(BaseModel):
    classes: list[str]
    img_size: int
    grayscale: bool
    face_margin: float
    backbone: str
    version: str
    metrics: dict[str, Any]


class ErrorOut(BaseModel):
    detail: str


ERRORS = {413: {"model": ErrorOut, "description": "upload or image over the limits"},
          422: {"model": ErrorOut, "description": "not a usable image, or a bad parameter"},
          503: {"model": ErrorOut, "description": "model not loaded"}}


# --- helpers ------------------------------------------------------------------
def _read_upload(upload: UploadFile, max_bytes: int) -> tuple[str, bytes]:
    name = upload.filename or "upload"
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TooLarge(f"{name}: file too large (over {max_bytes:,} bytes)")
    return name, data


def _decode(name: str, data: bytes, max_pixels: int):
    """Bytes -> RGB array; the pixel limit is checked on the header, before decoding."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
    except Image.DecompressionBombError:
        raise TooLarge(f"{name}: image too large (decompression bomb guard)") from None
    except Exception:
        w = h = 0  # not readable as an image: read_image says what is wrong
    if w * h > max_pixels:
        raise TooLarge(f"{name}: image too large ({w}x{h} = {w * h:,} pixels, limit {max_pixels:,})")
    return imageio.read_image(data, name=name)


def _one_line(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(x) for x in err.get("loc", ()) if x != "body")
        parts.append(f"{where}: {err.get('msg', 'invalid')}" if where else str(err.get("msg", "invalid")))
    return "; ".join(parts) or "invalid request"


# --- the app ------------------------------------------------------------------
def create_app(predictor=None, *, model_path: str | Path | None = None, config=None,
               detector: str | None = None, threads: int | None = None,
               max_upload_bytes: int = MAX_UPLOAD_BYTES, max_pixels: int = imageio.MAX_PIXELS,
               max_batch_files: int = MAX_BATCH_FILES) -> FastAPI:
    """Build the app. Give a loaded ``predictor``, or let the app load ``model_path`` once at
    startup (``None``: the default model). ``config`` (a ``Config``) supplies the detector,
    YuNet path, score threshold and ONNX Runtime threads unless given here. ``max_pixels``
    above ``imageio.MAX_PIXELS`` has no effect: ``read_image`` refuses more anyway."""
    if config is None:
        from emorec.config import Config

        config = Config()
    max_pixels = min(max_pixels, imageio.MAX_PIXELS)

    def load():
        from emorec.inference.predictor import Predictor

        # The model describes its own classes: serve it whatever ACTIVE_CLASSES says.
        return Predictor.from_config(config, model_path, detector=detector, threads=threads,
                                     check_classes=False)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if app.state.predictor is None:
            app.state.predictor = await run_in_threadpool(load)
            log.info("loaded model %s", app.state.predictor.model_path)
        yield

    app = FastAPI(title="emorec", version=__version__, lifespan=lifespan,
                  description="Facial emotion recognition: faces, their emotion and class probabilities.")
    app.state.predictor = predictor

    def get_predictor():
        p = app.state.predictor
        if p is None:
            raise HTTPException(503, "model not loaded")
        return p

    def options(detect_q: bool | None, detect_f: bool | None, top_k: int) -> tuple[bool, int]:
        detect = detect_q if detect_q is not None else (detect_f if detect_f is not None else True)
        return detect, min(top_k, len(get_predictor().info.classes))

    # --- error handlers: one line, never a traceback ---
    @app.exception_handler(EmorecError)
    async def _user_error(request: Request, exc: EmorecError):
        return JSONResponse({"detail": str(exc)}, status_code=413 if isinstance(exc, TooLarge) else 422)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _one_line(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    # --- endpoints ---
    @app.get("/health", response_model=HealthOut)
    def health():
        loaded = app.state.predictor is not None
        return JSONResponse({"status": "ok" if loaded else "loading", "model_loaded": loaded,
                             "version": __version__}, status_code=200 if loaded else 503)

    @app.get("/model", response_model=ModelOut, responses={503: ERRORS[503]})
    def model():
        info = get_predictor().info
        return ModelOut(classes=list(info.classes), img_size=info.img_size, grayscale=info.grayscale,
                        face_margin=info.face_margin, backbone=info.backbone, version=info.version,
                        metrics=dict(info.metrics or {}))

    detect_query = Annotated[bool | None, Query(alias="detect", description="find faces first (default true); "
                                                 "false: the whole image is one face")]
    detect_form = Annotated[bool | None, Form(alias="detect", description="same as the query option")]
    top_k_query = Annotated[int, Query(ge=1, description="how many best classes to list per face")]

    @app.post("/predict", response_model=PredictOut, responses=ERRORS,
              max_body_size=max_upload_bytes + MULTIPART_OVERHEAD)
    def predict(file: Annotated[UploadFile, File(description="an image (JPEG, PNG, WebP, BMP, TIFF...)")],
                detect_q: detect_query = None, detect_f: detect_form = None, top_k: top_k_query = 3):
        detect, top_k = options(detect_q, detect_f, top_k)
        name, data = _read_upload(file, max_upload_bytes)
        img = _decode(name, data, max_pixels)
        faces = get_predictor().predict([img], detect=detect)[0]  # thread-safe
        return {"faces": [f.to_dict(top_k) for f in faces], "width": int(img.shape[1]),
                "height": int(img.shape[0]), "model": get_predictor().info.version}

    @app.post("/predict/batch", response_model=BatchOut, responses=ERRORS,
              max_body_size=max_batch_files * max_upload_bytes + MULTIPART_OVERHEAD)
    def predict_batch(files: Annotated[list[UploadFile], File(description=f"up to {max_batch_files} images")],
                      detect_q: detect_query = None, detect_f: detect_form = None, top_k: top_k_query = 3):
        detect, top_k = options(detect_q, detect_f, top_k)
        if len(files) > max_batch_files:
            raise TooLarge(f"too many files ({len(files)}, limit {max_batch_files})")
        results: list[dict[str, Any]] = []
        good: list[tuple[int, Any]] = []  # (index in results, image)
        for upload in files:
            name = upload.filename or "upload"
            try:
                name, data = _read_upload(upload, max_upload_bytes)
                img = _decode(name, data, max_pixels)
            except EmorecError as e:
                results.append({"filename": name, "status": 413 if isinstance(e, TooLarge) else 422,
                                "error": str(e)})
                continue
            good.append((len(results), img))
            results.append({"filename": name, "status": 200, "width": int(img.shape[1]),
                            "height": int(img.shape[0])})
        if good:  # all faces of all good images in one inference batch
            per_image = get_predictor().predict([img for _, img in good], detect=detect)
            for (i, _), faces in zip(good, per_image):
                results[i]["faces"] = [f.to_dict(top_k) for f in faces]
        return {"results": results, "model": get_predictor().info.version}

    return app

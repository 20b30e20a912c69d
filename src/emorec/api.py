"""REST API over the ONNX predictor: ``create_app()`` builds the FastAPI app.

Endpoints: ``POST /predict``, ``POST /predict/batch``, ``POST /predict/video`` (a short clip:
each person's track, smoothed emotions and summary), ``GET /health``, ``GET /model``, and
``GET /`` (where the docs are). Every error a client can cause is JSON ``{"detail": ...}``
naming the limit it hit: 413 for uploads or images over the limits, 422 for anything that is
not a usable image, 408 for a body that stops arriving, 503 + ``Retry-After`` when the server
is busy. A request body far over the limit is cut off before it is spooled to disk.

Memory is bounded: at most ``max_concurrent`` requests decode and infer at once (others wait
up to ``queue_timeout`` s, then get 503), a batch is decoded one image at a time, and JPEGs over
``decode_pixels`` decode reduced (boxes are still given in the original photo's pixels).
In a batch, a bad file only gets an error entry; the other files are still answered.
Inference is blocking, so the endpoints are plain ``def`` functions: FastAPI runs them in
its threadpool and the event loop keeps serving /health meanwhile.
"""
# No `from __future__ import annotations`: FastAPI reads the endpoint annotations, and the
# ones built inside create_app must be evaluated there.
import asyncio
import dataclasses
import io
import json
import logging
import tempfile
import threading
import warnings
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, File, Form, HTTPException, Query, Request, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline
from PIL import Image
from pydantic import BaseModel, Field

from emorec import __version__, imageio
from emorec.errors import EmorecError
from emorec.inference.face import TOP_K, image_record

log = logging.getLogger("emorec.api")

MAX_UPLOAD_BYTES = 10 * 1024 * 1024  # per file; phone photos are 2-8 MB
MAX_BATCH_FILES = 16
MAX_VIDEO_BYTES = 50 * 1024 * 1024  # a minute of phone video at 720p is ~40 MB
MAX_VIDEO_SECONDS = 60.0  # about 20 s of one core at every=1, 25 fps
MAX_VIDEO_PIXELS = 1920 * 1080  # per frame
MULTIPART_OVERHEAD = 64 * 1024  # boundaries, part headers and form fields
MAX_CONCURRENT = 2  # requests decoding and inferring at once (about the cores of a small server)
QUEUE_TIMEOUT = 10.0  # s a request waits for a slot before 503
BODY_TIMEOUT = 30.0  # s without a byte of a request body that is still due: 408
DECODE_PIXELS = imageio.DECODE_PIXELS  # JPEGs above this decode at 1/2..1/8 size; faces stay far above 112 px
FULL_DECODE_PIXELS = imageio.FULL_DECODE_PIXELS  # other formats above this are refused (they decode whole)
SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"x-frame-options", b"DENY"),
                    (b"referrer-policy", b"no-referrer"), (b"cache-control", b"no-store")]


class TooLarge(EmorecError):
    """An upload or image over the server's limits (HTTP 413)."""


class Busy(EmorecError):
    """Every inference slot taken for longer than the queue timeout (HTTP 503)."""


class _Guard:
    """ASGI middleware: a body that stops arriving gets 408 (a body shorter than its
    Content-Length would hang forever), Starlette's plain-text 413 becomes JSON naming the limit,
    and every response carries the security headers."""

    def __init__(self, app, body_timeout: float, limits: dict[str, str]):
        self.app, self.body_timeout, self.limits = app, body_timeout, limits

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        state: dict[str, Any] = {"body_done": False, "started": False, "timed_out": False, "body": None}

        async def timed_receive():
            if state["body_done"]:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), self.body_timeout)
            except asyncio.TimeoutError:
                state["timed_out"] = True
                raise _BodyTimeout() from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                state["body_done"] = True
            return message

        async def guarded_send(message):
            if message["type"] == "http.response.start":
                state["started"] = True
                status, headers = message["status"], list(message.get("headers", []))
                plain = any(k.lower() == b"content-type" and v.startswith(b"text/plain") for k, v in headers)
                # FastAPI answers a body that failed to arrive with its own 400: say what happened
                if state["timed_out"] or (status == 413 and plain):
                    status, state["body"] = (408, self._timeout()) if state["timed_out"] else (
                        413, self._too_large(scope["path"]))
                    headers = [(k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-length")]
                    headers += [(b"content-type", b"application/json"),
                                (b"content-length", str(len(state["body"])).encode())]
                message = {**message, "status": status, "headers": headers + SECURITY_HEADERS}
            elif message["type"] == "http.response.body" and state["body"] is not None:
                if message.get("more_body", False):
                    return
                message = {"type": "http.response.body", "body": state["body"]}
            await send(message)

        try:
            await self.app(scope, timed_receive, guarded_send)
        except _BodyTimeout:
            if not state["started"]:
                await guarded_send({"type": "http.response.start", "status": 408, "headers": []})
                await guarded_send({"type": "http.response.body", "body": b""})

    def _timeout(self) -> bytes:
        return json.dumps({"detail": f"request body incomplete: no data for {self.body_timeout:g} s"}).encode()

    def _too_large(self, path: str) -> bytes:
        limit = self.limits.get(path.rstrip("/"))
        detail = f"request body too large ({limit})" if limit else "request body too large"
        return json.dumps({"detail": detail}).encode()


class _BodyTimeout(Exception):
    pass


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


class ImageOut(BaseModel):
    """One image's result: the same envelope as each of `emorec predict --json`'s results."""

    path: str = Field(description="the uploaded file's name")
    width: int | None = Field(description="the image's width in pixels (null when it could not be read)")
    height: int | None
    faces: list[FaceOut] = Field(description="one per face found; [] for none, and for a failed image")
    error: str | None = Field(description="why this image failed; null when it did not")


class PredictOut(ImageOut):
    model: str = Field(description="model version")


class BatchItemOut(ImageOut):
    status: int = Field(description="HTTP-style status of this item: 200, 413, 422 or 500")


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
    source_size: int
    backbone: str
    version: str
    metrics: dict[str, Any]


class TrackedFaceOut(FaceOut):
    track: int = Field(description="the person's id, the same in every frame they are in")
    smoothed: dict[str, float] = Field(description="probabilities averaged over smooth_s seconds; label, "
                                                   "confidence and top come from these, probs is the frame's own")


class FrameOut(BaseModel):
    path: str
    frame: int = Field(description="0-based frame number in the clip")
    time_s: float
    width: int | None
    height: int | None
    faces: list[TrackedFaceOut]
    error: str | None


class MomentOut(BaseModel):
    time_s: float
    emotion: str
    prob: float = Field(description="the smoothed probability at that moment")


class PersonOut(BaseModel):
    track: int
    first_s: float
    last_s: float
    seen_s: float = Field(description="time on screen in seconds")
    dominant: str = Field(description="the emotion shown longest")
    share: dict[str, float] = Field(description="share of time on screen per (smoothed) emotion")
    moments: list[MomentOut] = Field(description="strongest moments, strongest first")


class VideoSummaryOut(BaseModel):
    path: str
    frames: int
    fps: float
    duration_s: float
    every: int
    smooth_s: float
    people: list[PersonOut]


class VideoOut(BaseModel):
    model: str
    summary: VideoSummaryOut
    frames: list[FrameOut] = Field(description="one per analysed frame (every `every`-th), with its tracked faces")


class ErrorOut(BaseModel):
    detail: str


ERRORS = {408: {"model": ErrorOut, "description": "request body stopped arriving"},
          413: {"model": ErrorOut, "description": "upload or image over the limits (the limit is named)"},
          422: {"model": ErrorOut, "description": "not a usable image, or a bad parameter"},
          503: {"model": ErrorOut, "description": "model not loaded, or server busy (see Retry-After)"}}


# --- helpers ------------------------------------------------------------------
def _read_upload(upload: UploadFile, max_bytes: int) -> tuple[str, bytes]:
    name = upload_name(upload)
    data = upload.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise TooLarge(f"{name}: file too large (over {max_bytes:,} bytes)")
    return name, data


def _decode(name: str, data: bytes, max_pixels: int, decode_pixels: int | None = DECODE_PIXELS,
            full_decode_pixels: int | None = FULL_DECODE_PIXELS):
    """Bytes -> (RGB array, factor to the original's pixels, the original's upright (w, h)); the
    pixel limits are checked on the header, before decoding: a large JPEG is decoded reduced, a
    large image of another format (decoded whole) is refused."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as im:
                w, h = im.size
                whole = im.format != "JPEG"
    except Image.DecompressionBombError:
        raise TooLarge(f"{name}: image too large (decompression bomb guard)") from None
    except Exception:
        w, h, whole = 0, 0, False  # not readable as an image: read_image says what is wrong
    if w * h > max_pixels:
        raise TooLarge(f"{name}: image too large ({w}x{h} = {w * h:,} pixels, limit {max_pixels:,})")
    if whole and full_decode_pixels and w * h > full_decode_pixels:
        raise TooLarge(f"{name}: image too large to decode ({w}x{h} = {w * h:,} pixels, limit "
                       f"{full_decode_pixels:,} for images other than JPEG, which are decoded reduced)")
    img = imageio.read_image(data, name=name, decode_pixels=decode_pixels)
    upright = (w, h) if (img.shape[1] >= img.shape[0]) == (w >= h) else (h, w)  # EXIF may turn it
    return img, max(w, h) / max(img.shape[:2]), upright


def _in_original(faces, factor: float, size: tuple[int, int]) -> list:
    """Faces of a reduced decode, with boxes in the original photo's pixels."""
    w, h = size
    out = []
    for f in faces:
        if factor != 1.0:
            x, y, bw, bh = (int(round(v * factor)) for v in f.box)
            f = dataclasses.replace(f, box=(x, y, min(bw, w - x), min(bh, h - y)))
        out.append(f)
    return out


def _release_memory() -> None:
    """Give the freed pages of a large decode back to the system (glibc keeps them otherwise, and
    an idle server stayed at ~1 GB after a run of large PNGs)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


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
               max_batch_files: int = MAX_BATCH_FILES, max_concurrent: int = MAX_CONCURRENT,
               queue_timeout: float = QUEUE_TIMEOUT, body_timeout: float = BODY_TIMEOUT,
               decode_pixels: int = DECODE_PIXELS, full_decode_pixels: int = FULL_DECODE_PIXELS,
               max_video_bytes: int = MAX_VIDEO_BYTES, max_video_seconds: float = MAX_VIDEO_SECONDS,
               max_video_pixels: int = MAX_VIDEO_PIXELS) -> FastAPI:
    """Build the app. Give a loaded ``predictor``, or let the app load ``model_path`` once at
    startup (``None``: the default model). ``config`` (a ``Config``) supplies the detector,
    YuNet path, score threshold and ONNX Runtime threads unless given here. ``max_pixels``
    above ``imageio.MAX_PIXELS`` has no effect: ``read_image`` refuses more anyway. The memory
    bounds (``max_concurrent``, ``queue_timeout``, ``body_timeout``, ``decode_pixels``) are
    described in the module docstring."""
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

    # /docs (Swagger UI) from files shipped in fastapi-offline: it renders with no network. No /redoc:
    # its bundle still fetches a logo from a CDN.
    app = FastAPIOffline(title="emorec", version=__version__, lifespan=lifespan, redoc_url=None,
                         description="Facial emotion recognition: faces, their emotion and class "
                                     "probabilities. A face's box is x, y, w, h in the uploaded photo's pixels. "
                                     "`GET /model` publishes the model's version string, which names the git "
                                     "commit it was trained from.")
    app.state.predictor = predictor
    batch_limit = max_batch_files * max_upload_bytes + MULTIPART_OVERHEAD
    video_limits = f"limit {max_video_bytes:,} bytes, {max_video_seconds:g} s, {max_video_pixels:,} pixels a frame"
    # The body cut-off allows for multipart framing; messages name the limits GET / publishes.
    app.add_middleware(_Guard, body_timeout=body_timeout,
                       limits={"/predict": f"limit {max_upload_bytes:,} bytes per file",
                               "/predict/batch": f"limit {max_batch_files} files of {max_upload_bytes:,} bytes",
                               "/predict/video": video_limits})
    slots = threading.BoundedSemaphore(max_concurrent)

    @contextmanager
    def slot():
        if not slots.acquire(timeout=queue_timeout):
            raise Busy(f"server busy: {max_concurrent} requests in progress; retry shortly")
        try:
            yield
        finally:
            slots.release()

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
        if isinstance(exc, Busy):
            return JSONResponse({"detail": str(exc)}, status_code=503, headers={"Retry-After": "1"})
        return JSONResponse({"detail": str(exc)}, status_code=413 if isinstance(exc, TooLarge) else 422)

    @app.exception_handler(RequestValidationError)
    async def _bad_request(request: Request, exc: RequestValidationError):
        return JSONResponse({"detail": _one_line(exc)}, status_code=422)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception):
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
        return JSONResponse({"detail": "internal server error"}, status_code=500)

    # --- endpoints ---
    @app.get("/")
    def index():
        return {"name": "emorec", "version": __version__, "openapi": "/openapi.json",
                "docs": "/docs (interactive, works offline)",
                "endpoints": ["POST /predict", "POST /predict/batch", "POST /predict/video", "GET /health",
                              "GET /model", "GET /docs", "GET /openapi.json"],
                "limits": {"upload_bytes": max_upload_bytes, "batch_files": max_batch_files,
                           "video_bytes": max_video_bytes, "video_seconds": max_video_seconds,
                           "video_frame_pixels": max_video_pixels,
                           "image_pixels": max_pixels, "image_pixels_other_than_jpeg": full_decode_pixels,
                           "jpeg_decoded_reduced_above_pixels": decode_pixels, "concurrent_requests": max_concurrent}}

    @app.get("/health", response_model=HealthOut)
    def health():
        loaded = app.state.predictor is not None
        return JSONResponse({"status": "ok" if loaded else "loading", "model_loaded": loaded,
                             "version": __version__}, status_code=200 if loaded else 503)

    @app.get("/model", response_model=ModelOut, responses={503: ERRORS[503]})
    def model():
        info = get_predictor().info
        return ModelOut(classes=list(info.classes), img_size=info.img_size, grayscale=info.grayscale,
                        face_margin=info.face_margin, source_size=info.source_size, backbone=info.backbone,
                        version=info.version, metrics=dict(info.metrics or {}))

    detect_query = Annotated[bool | None, Query(alias="detect", description="find faces first (default true); "
                                                 "false: the whole image is one face")]
    detect_form = Annotated[bool | None, Form(alias="detect", description="same as the query option")]
    top_k_query = Annotated[int, Query(ge=1, description="how many best classes to list per face")]

    def one_image(name: str, data: bytes, detect: bool, top_k: int) -> dict[str, Any]:
        img, factor, size = _decode(name, data, max_pixels, decode_pixels, full_decode_pixels)
        faces = get_predictor().predict([img], detect=detect)[0]  # thread-safe
        if img.size > 3 * decode_pixels:
            del img
            _release_memory()
        return image_record(name, _in_original(faces, factor, size), size, top_k)

    @app.post("/predict", response_model=PredictOut, responses=ERRORS,
              max_body_size=max_upload_bytes + MULTIPART_OVERHEAD)
    def predict(file: Annotated[UploadFile, File(description="an image (JPEG, PNG, WebP, BMP, TIFF...)")],
                detect_q: detect_query = None, detect_f: detect_form = None, top_k: top_k_query = TOP_K):
        detect, top_k = options(detect_q, detect_f, top_k)
        name, data = _read_upload(file, max_upload_bytes)
        with slot():
            return {"model": get_predictor().info.version, **one_image(name, data, detect, top_k)}

    @app.post("/predict/batch", response_model=BatchOut, responses=ERRORS, max_body_size=batch_limit)
    def predict_batch(files: Annotated[list[UploadFile], File(description=f"up to {max_batch_files} images")],
                      detect_q: detect_query = None, detect_f: detect_form = None, top_k: top_k_query = TOP_K):
        detect, top_k = options(detect_q, detect_f, top_k)
        if len(files) > max_batch_files:
            raise TooLarge(f"too many files ({len(files)}, limit {max_batch_files})")
        results: list[dict[str, Any]] = []
        with slot():  # one image decoded at a time: memory stays that of one photo
            for upload in files:
                name = upload_name(upload)
                try:
                    name, data = _read_upload(upload, max_upload_bytes)
                    results.append({**one_image(name, data, detect, top_k), "status": 200})
                except EmorecError as e:
                    results.append({**image_record(name, [], error=str(e)),
                                    "status": 413 if isinstance(e, TooLarge) else 422})
                except Exception:  # this image's failure, never the batch's
                    log.exception("unexpected error on %s", name)
                    results.append({**image_record(name, [], error=f"{name}: internal error"), "status": 500})
        return {"results": results, "model": get_predictor().info.version}

    every_query = Annotated[int, Query(ge=1, le=1000, description="analyse every Nth frame")]
    smooth_query = Annotated[float | None, Query(ge=0, le=3600, description="seconds each person's emotions "
                                                 "are smoothed over (0: raw; default the config's SMOOTH_S)")]

    @app.post("/predict/video", response_model=VideoOut, responses=ERRORS,
              max_body_size=max_video_bytes + MULTIPART_OVERHEAD)
    def predict_video(file: Annotated[UploadFile, File(description=f"a clip (MP4, AVI, MOV, MKV, WebM), "
                                                                   f"{video_limits}")],
                      every: every_query = 1, smooth_s: smooth_query = None, top_k: top_k_query = TOP_K):
        _, top_k = options(None, None, top_k)
        name = upload_name(file)
        with tempfile.TemporaryDirectory(prefix="emorec-video-") as tmp:
            path = Path(tmp) / ("clip" + (Path(name).suffix.lower() if Path(name).suffix.isascii() else ""))
            spool(file, path, max_video_bytes)
            with slot():
                summary, frames = video_records(path, name, every, config.smooth_s if smooth_s is None else smooth_s,
                                                top_k)
        return {"model": get_predictor().info.version, "summary": summary, "frames": frames}

    def video_records(path: Path, name: str, every: int, smooth_s: float, top_k: int):
        from emorec.inference.people import People, track_frames, video_summary
        from emorec.inference.video import VideoReader, VideoTooLong

        try:
            video = VideoReader(path, every, name=name, max_seconds=max_video_seconds)
            w, h = video.size
            if w * h > max_video_pixels:
                raise TooLarge(f"{name}: frames too large ({w}x{h}, limit {max_video_pixels:,} pixels)")
            people = People(get_predictor().classes, smooth_s=smooth_s, max_missing_s=config.track_max_missing_s,
                            keep_series=False)
            frames = []
            for frame, faces in track_frames(video, get_predictor(), people):
                if frame.rgb.size > 3 * max_video_pixels:  # the header did not say
                    raise TooLarge(f"{name}: frames too large (limit {max_video_pixels:,} pixels)")
                frames.append(image_record(name, faces, (frame.rgb.shape[1], frame.rgb.shape[0]), top_k,
                                           frame=frame.index, time_s=round(frame.time_s, 3)))
        except VideoTooLong as e:
            raise TooLarge(str(e)) from None
        return video_summary(name, video, people), frames

    return app


def upload_name(upload: UploadFile) -> str:
    return upload.filename or "upload"


def spool(upload: UploadFile, path: Path, max_bytes: int, chunk: int = 1 << 20) -> None:
    """An upload copied to ``path`` (OpenCV reads videos from files), refused over ``max_bytes``."""
    done = 0
    with open(path, "wb") as out:
        while data := upload.file.read(chunk):
            done += len(data)
            if done > max_bytes:
                raise TooLarge(f"{upload_name(upload)}: file too large (over {max_bytes:,} bytes)")
            out.write(data)

"""Face detectors: YuNet (default), Haar cascade (no model file needed), or none.

Every detector takes an RGB uint8 image and returns ``[((x, y, w, h), score), ...]`` in
original-image pixels. Large photos are shrunk to ``max_side`` before detecting: YuNet
costs grows with the pixel count (a 640x480 frame takes ~25 ms at full size and ~6 ms
at 320 px on one core) while faces worth classifying stay well above its ~10 px floor.
Small images (face crops such as FER2013's 48 px) are enlarged to ``min_side``: a face
that fills a tiny input is what YuNet misses most (24 % of FER2013 test at 48 px, 2.0 %
at 224 px; ``benchmarks/detection.py``).
"""
from __future__ import annotations

import hashlib
import os
import threading
import urllib.request
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from emorec.errors import EmorecError
from emorec.files import opencv_path

Detection = tuple[tuple[int, int, int, int], float]

YUNET_FILE = "face_detection_yunet_2026may.onnx"
YUNET_SHA256 = "ebafce4e3c118d6554634be5c27ab333b4c047a9a8c3faf1d7cf93101c22f0f0"
# Pinned opencv_zoo commit; the file is in Git LFS, which github.com/.../raw/ resolves.
YUNET_URL = ("https://github.com/opencv/opencv_zoo/raw/47534e27c9851bb1128ccc0102f1145e27f23f98/"
             f"models/face_detection_yunet/{YUNET_FILE}")
DETECTORS = ("yunet", "haar", "none")


class Detector(Protocol):
    def detect(self, img: np.ndarray) -> list[Detection]: ...


# Shipped inside the package (230 KB, MIT, OpenCV Zoo; see NOTICE): no download by default.
PACKAGED_YUNET = Path(__file__).resolve().parent / "assets" / YUNET_FILE


def yunet_cache_path() -> Path:
    return Path.home() / ".cache" / "emorec" / YUNET_FILE


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def download_yunet(dest: Path | None = None, url: str | None = None, timeout: float = 30.0) -> Path:
    """Fetch the pinned YuNet model once into the user cache; the sha256 must match."""
    dest = dest or yunet_cache_path()
    url = url or YUNET_URL
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(f".part{os.getpid()}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            tmp.write_bytes(r.read())
        digest = _sha256(tmp)
        if digest != YUNET_SHA256:
            raise EmorecError(f"downloaded {url} has sha256 {digest[:12]}..., expected {YUNET_SHA256[:12]}...")
        tmp.replace(dest)  # atomic: a concurrent reader never sees half a file
    except OSError as e:  # URLError, timeouts and disk errors are all OSError
        raise EmorecError(f"cannot download the YuNet face detector from {url} ({e}); "
                          "use --detector haar, or set EMOREC_YUNET to a local copy") from None
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def find_yunet(path: str | os.PathLike | None = None, *, download: bool = True) -> Path:
    """Explicit path > $EMOREC_YUNET > the copy in the package > user cache > one download."""
    explicit = path or os.environ.get("EMOREC_YUNET")
    if explicit:
        p = Path(explicit).expanduser().absolute()  # relative: to the current folder, said in full
        if not p.is_file():
            raise EmorecError(f"YuNet face detector model not found: {p} (or use --detector haar)")
        return p
    if PACKAGED_YUNET.is_file():
        return PACKAGED_YUNET
    cached = yunet_cache_path()
    if cached.is_file():
        return cached
    if not download:
        raise EmorecError(f"YuNet face detector model not found (looked at {cached}); "
                          "set EMOREC_YUNET or use --detector haar")
    return download_yunet(cached)


PAD_TO = 64  # px: a shorter side (a 3200x40 strip shrunk to 320 px) is padded, never squashed


def _rescale(img: np.ndarray, min_side: int, max_side: int) -> tuple[np.ndarray, float]:
    """The image with its longest side brought into [min_side, max_side], and the factor; a side
    left under PAD_TO px is padded with black at the bottom/right (boxes keep their coordinates):
    YuNet returns infinite boxes for inputs a few pixels high."""
    h, w = img.shape[:2]
    long = max(h, w)
    scale = max_side / long if long > max_side else min_side / long if long < min_side else 1.0
    if scale != 1.0:
        size = (max(1, round(w * scale)), max(1, round(h * scale)))
        img = cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR)
    h, w = img.shape[:2]
    if min(h, w) < PAD_TO:
        img = cv2.copyMakeBorder(img, 0, max(0, PAD_TO - h), 0, max(0, PAD_TO - w), cv2.BORDER_CONSTANT, value=0)
    return img, scale


def _to_original(boxes: np.ndarray, scores: np.ndarray, scale: float, shape: tuple[int, ...],
                 min_size: int) -> list[Detection]:
    """Scale boxes back, clip them to the photo, drop the too-small ones."""
    h, w = shape[:2]
    out: list[Detection] = []
    boxes = np.asarray(boxes, np.float64) / scale
    scores = np.asarray(scores, np.float64)
    ok = np.isfinite(boxes).all(axis=1) & np.isfinite(scores) & (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
    # far-off coordinates (1e32) clip to the photo, so int() below always works
    boxes = np.clip(boxes[ok], -1.0, float(max(h, w)) + 1.0)
    for (x, y, bw, bh), s in zip(boxes, scores[ok]):
        x0, y0 = max(0, int(round(x))), max(0, int(round(y)))
        x1, y1 = min(w, int(round(x + bw))), min(h, int(round(y + bh)))
        if min(x1 - x0, y1 - y0) >= min_size:
            out.append(((x0, y0, x1 - x0, y1 - y0), float(s)))
    out.sort(key=lambda d: (d[0][0], d[0][1]))  # left to right: a stable, readable face order
    return out


class YuNetDetector:
    def __init__(self, model_path: str | os.PathLike | None = None, *, score_threshold: float = 0.6,
                 min_face_size: int = 20, min_side: int = 224, max_side: int = 320, nms_threshold: float = 0.3):
        path = find_yunet(model_path)
        try:
            self._net = cv2.FaceDetectorYN.create(opencv_path(path, "face detector model"), "", (max_side, max_side),
                                                  score_threshold, nms_threshold, 5000)
        except cv2.error:
            raise EmorecError(f"{path}: not a valid YuNet face detector model") from None
        self.model_path = path
        self.min_face_size = min_face_size
        self.min_side, self.max_side = min_side, max_side
        self._size: tuple[int, int] | None = None
        self._lock = threading.Lock()  # the OpenCV net keeps per-call state: one caller at a time

    def detect(self, img: np.ndarray) -> list[Detection]:
        small, scale = _rescale(img, self.min_side, self.max_side)
        bgr = cv2.cvtColor(small, cv2.COLOR_RGB2BGR)
        size = (bgr.shape[1], bgr.shape[0])
        with self._lock:
            if size != self._size:
                self._net.setInputSize(size)
                self._size = size
            _, faces = self._net.detect(bgr)
        if faces is None:
            return []
        return _to_original(faces[:, :4], faces[:, 14], scale, img.shape, self.min_face_size)


class HaarDetector:
    """OpenCV's frontal-face cascade. It has no calibrated score: every hit scores 1.0."""

    def __init__(self, *, min_face_size: int = 20, min_side: int = 224, max_side: int = 640):
        path = Path(cv2.data.haarcascades) / "haarcascade_frontalface_default.xml"
        self._cascade = cv2.CascadeClassifier(str(path))
        if self._cascade.empty():
            raise EmorecError(f"Haar cascade not found at {path} (needs opencv-python-headless 4.x)")
        self.min_face_size = min_face_size
        self.min_side, self.max_side = min_side, max_side

    def detect(self, img: np.ndarray) -> list[Detection]:
        small, scale = _rescale(img, self.min_side, self.max_side)
        gray = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        side = max(24, int(self.min_face_size * scale))  # 24 px: the cascade's own window
        rects = self._cascade.detectMultiScale(gray, scaleFactor=1.1, minNeighbors=5, minSize=(side, side))
        if len(rects) == 0:
            return []
        rects = np.asarray(rects, dtype=np.float64)
        return _to_original(rects, np.ones(len(rects)), scale, img.shape, self.min_face_size)


class WholeImage:
    """No detection: the whole image is one face (already-cropped datasets)."""

    def detect(self, img: np.ndarray) -> list[Detection]:
        h, w = img.shape[:2]
        return [((0, 0, w, h), 1.0)]


def make_detector(name: str, *, model_path: str | os.PathLike | None = None, score_threshold: float = 0.6,
                  min_face_size: int = 20, min_side: int = 224, max_side: int = 320) -> Detector:
    if name == "yunet":
        return YuNetDetector(model_path, score_threshold=score_threshold, min_face_size=min_face_size,
                             min_side=min_side, max_side=max_side)
    if name == "haar":
        return HaarDetector(min_face_size=min_face_size, min_side=min_side, max_side=max(max_side, 640))
    if name == "none":
        return WholeImage()
    raise EmorecError(f"unknown detector {name!r}; choose one of {', '.join(DETECTORS)}")

"""Faces of a source cropped as ``emorec predict`` crops them: the same detector, the largest face,
the same square crop (``preprocess.crop_face`` with FACE_MARGIN).

Which sources are cropped is a source setting (``crop:`` of :class:`~emorec.data.sources.SourceSpec`):
``detect`` for portraits (an image with no face found is dropped, counted per source) and
``redetect`` for already aligned crops (no face found: the crop is kept whole, counted). Boxes are
cached per source file and detector setting, so a second ``data prepare`` does not detect again.
"""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from emorec.config import Config
from emorec.data.dedup import quiet_opencv
from emorec.data.sources import Source
from emorec.detect import make_detector
from emorec.imageio import read_image
from emorec.preprocess import crop_face

Box = tuple[int, int, int, int]


def detector_settings(cfg: Config) -> dict:
    """The keys of the detector that ``Predictor.from_config`` builds, as keyword arguments."""
    return {"model_path": cfg.yunet_path, "score_threshold": cfg.det_score_threshold,
            "min_face_size": cfg.min_face_size, "min_side": cfg.det_min_side, "max_side": cfg.det_max_side}


def _cache_file(cfg: Config, source: Source) -> Path | None:
    if not cfg.cache_dir:
        return None
    try:
        st = Path(source.path).stat()
    except OSError:
        return None
    key = json.dumps([str(Path(source.path).resolve()), st.st_size, st.st_mtime_ns, cfg.detector,
                      {k: str(v) for k, v in detector_settings(cfg).items()}])
    return Path(cfg.cache_dir).expanduser() / "faces" / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.json"


def _read_cache(path: Path | None) -> dict:
    try:
        data = json.loads(path.read_text()) if path and path.is_file() else {}
    except (OSError, ValueError):  # an unreadable or garbage cache is rebuilt, never fatal
        return {}
    return data if isinstance(data, dict) else {}


def _write_cache(path: Path | None, boxes: dict) -> None:
    if path is None:
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(boxes))
        os.replace(tmp, path)
    except OSError:  # a read-only cache folder costs time next run, nothing else
        pass


def largest_box(detections) -> Box | None:
    return max((box for box, _ in detections), key=lambda b: b[2] * b[3], default=None)


def find_faces(cfg: Config, source: Source, names: list[str]) -> dict[str, Box | None]:
    """``{image name: largest face box, or None when none is found}`` for ``names`` of ``source``."""
    cache_path = _cache_file(cfg, source)
    cached = _read_cache(cache_path)
    todo = [n for n in names if n not in cached]
    if todo:
        detector = make_detector(cfg.detector, **detector_settings(cfg))
        with quiet_opencv():
            for n in tqdm(todo, desc=f"faces of {source.name}", unit="img", leave=False):
                try:
                    box = largest_box(detector.detect(read_image(source.read(n), name=n)))
                except Exception:  # unreadable here was already reported by the scan
                    box = None
                cached[n] = list(box) if box else None
        _write_cache(cache_path, cached)
    return {n: tuple(cached[n]) if cached.get(n) else None for n in names}


def face_png(data: bytes, name: str, box: Box, margin: float) -> bytes:
    """The face of an image file, cropped as inference crops it, as lossless PNG bytes."""
    img = crop_face(read_image(data, name=name), box, margin)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(img))
    return buf.tobytes()

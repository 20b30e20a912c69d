"""The library API for inference: ONNX model + face detector -> :class:`Face` results.

Imports numpy, OpenCV and ONNX Runtime only (never torch), so the CLI, the REST API and
the app start fast and install without the training stack.

    p = Predictor.from_path("models/best_model.onnx", detector="yunet")
    faces = p.predict([read_image("photo.jpg")])[0]
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Iterable

import numpy as np

from emorec.config import DEFAULT_MODEL, PACKAGED_MODELS_DIR, SHIPPED_MODELS, SHIPPED_MODELS_DIR
from emorec.errors import EmorecError
from emorec.detect import Detection, Detector, make_detector
from emorec.inference.face import Face
from emorec.modelfile import ModelInfo, open_session, read_info, session_probs
from emorec.preprocess import crop_face, face_to_array

if TYPE_CHECKING:
    from emorec.config import Config


def resolve_model(spec: str | os.PathLike | None = None) -> Path:
    """A shipped model's short name (``SHIPPED_MODELS``: ``5class``, ``7class``) or a path; None: the default."""
    spec = DEFAULT_MODEL if spec is None else spec
    if str(spec) not in SHIPPED_MODELS:
        return Path(spec).expanduser()
    name = SHIPPED_MODELS[str(spec)]
    packaged = PACKAGED_MODELS_DIR / name  # a plain `pip install .` has no models/ beside it
    return packaged if packaged.is_file() and not (SHIPPED_MODELS_DIR / name).is_file() else SHIPPED_MODELS_DIR / name


def default_model_path(cfg: "Config | None" = None) -> Path:
    """MODEL_PATH of the config (a path or a shipped model's name), else the default shipped model."""
    return resolve_model(cfg.model_path if cfg is not None else None)


class Predictor:
    """A loaded model and detector. Thread-safe: ORT sessions are, and the detector locks."""

    def __init__(self, session, info: ModelInfo, model_path: Path, detector: Detector, detector_name: str):
        self._sess = session
        self.info = info
        self.model_path = model_path
        self.detector = detector
        self.detector_name = detector_name

    @classmethod
    def from_path(cls, path: str | os.PathLike | None = None, *, detector: str = "yunet",
                  detector_path: str | os.PathLike | None = None, score_threshold: float = 0.6,
                  threads: int = 1, expected_classes: Iterable[str] | None = None,
                  min_face_size: int = 20, det_min_side: int = 224, det_max_side: int = 320) -> "Predictor":
        path = resolve_model(path)
        if path.is_dir():
            raise EmorecError(f"model path {path} is a directory, expected an .onnx file")
        if not path.is_file():
            names = ", ".join(SHIPPED_MODELS)
            raise EmorecError(f"model file not found: {path} (give an .onnx file or a shipped model: {names})")
        sess = open_session(path, threads)
        info = read_info(sess, path)
        if expected_classes is not None:
            expected = [str(c).lower() for c in expected_classes]
            if sorted(expected) != sorted(info.classes):
                raise EmorecError(f"{path}: model classes {','.join(info.classes)} differ from "
                                  f"ACTIVE_CLASSES {','.join(expected)}")
        det = make_detector(detector, model_path=detector_path, score_threshold=score_threshold,
                            min_face_size=min_face_size, min_side=det_min_side, max_side=det_max_side)
        return cls(sess, info, path, det, detector)

    @classmethod
    def from_config(cls, cfg: "Config", path: str | os.PathLike | None = None, *, detector: str | None = None,
                    threads: int | None = None, check_classes: bool = True) -> "Predictor":
        """The same, with every setting taken from the config (CLI, API and app use this). The
        model's classes must match ACTIVE_CLASSES (``check_classes``), so that a model for other
        classes is not used by mistake, unless a shipped model is named: it brings its own."""
        named = path if path is not None else cfg.model_path
        check_classes = check_classes and (named is None or str(named) not in SHIPPED_MODELS)
        return cls.from_path(
            path if path is not None else default_model_path(cfg),
            detector=detector or cfg.detector, detector_path=cfg.yunet_path,
            score_threshold=cfg.det_score_threshold,
            threads=cfg.ort_threads if threads is None else threads,
            expected_classes=cfg.active_classes if check_classes else None,
            min_face_size=cfg.min_face_size, det_min_side=cfg.det_min_side, det_max_side=cfg.det_max_side)

    def with_detector(self, detector: Detector, name: str) -> "Predictor":
        """The same model (one shared ONNX Runtime session) with another face detector."""
        return Predictor(self._sess, self.info, self.model_path, detector, name)

    @property
    def classes(self) -> list[str]:
        return list(self.info.classes)

    def detect(self, img: np.ndarray) -> list[Detection]:
        """Face boxes (x, y, w, h) and detector scores in original-image pixels."""
        return self.detector.detect(img)

    def predict_crops(self, crops: list[np.ndarray]) -> np.ndarray:
        """Face images (any size, RGB or gray) -> (N, K) class probabilities."""
        if not crops:
            return np.zeros((0, len(self.info.classes)), np.float32)
        info = self.info
        return self.predict_arrays(np.stack([face_to_array(c, info.img_size, info.grayscale, info.source_size)
                                             for c in crops]))

    def predict_arrays(self, arrays: np.ndarray) -> np.ndarray:
        """Model inputs already made by ``face_to_array`` (uint8 (N, C, S, S)) -> (N, K) probabilities."""
        return session_probs(self._sess, arrays)

    def predict(self, images: list[np.ndarray], detect: bool = True) -> list[list[Face]]:
        """Faces of each image, all classified in one batch; an image with no face gives []."""
        found: list[list[Detection]] = []
        crops: list[np.ndarray] = []
        for img in images:
            if detect and self.detector_name != "none":
                dets = self.detector.detect(img)
                crops += [crop_face(img, box, self.info.face_margin) for box, _ in dets]
            else:  # already a face crop: take it as is, like the training images
                dets = [((0, 0, img.shape[1], img.shape[0]), 1.0)]
                crops.append(img)
            found.append(dets)
        probs = self.predict_crops(crops)
        results: list[list[Face]] = []
        i = 0
        for dets in found:
            faces = []
            for box, score in dets:
                p = probs[i]
                i += 1
                best = int(p.argmax())
                faces.append(Face(box=tuple(int(v) for v in box), label=self.info.classes[best],
                                  confidence=float(p[best]), det_score=float(score),
                                  probs={c: float(v) for c, v in zip(self.info.classes, p)}))
            results.append(faces)
        return results

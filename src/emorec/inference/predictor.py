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
from emorec.inference.detect import Detection, Detector, make_detector
from emorec.inference.types import META_KEY, Face, ModelInfo
from emorec.preprocess import crop_face, face_to_array, to_float

if TYPE_CHECKING:
    from emorec.config import Config

BATCH = 64  # faces per ORT call: bounds memory on crowd photos and long folders


def resolve_model(spec: str | os.PathLike | None = None) -> Path:
    """A shipped model's short name (``SHIPPED_MODELS``: ``5class``) or a path; None: the default."""
    spec = DEFAULT_MODEL if spec is None else spec
    if str(spec) not in SHIPPED_MODELS:
        return Path(spec).expanduser()
    name = SHIPPED_MODELS[str(spec)]
    packaged = PACKAGED_MODELS_DIR / name  # a plain `pip install .` has no models/ beside it
    return packaged if packaged.is_file() and not (SHIPPED_MODELS_DIR / name).is_file() else SHIPPED_MODELS_DIR / name


def default_model_path(cfg: "Config | None" = None) -> Path:
    """MODEL_PATH of the config (a path or a shipped model's name), else the default shipped model."""
    return resolve_model(cfg.model_path if cfg is not None else None)


def _session(path: Path, threads: int):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = max(0, int(threads))  # 0: ORT's default (all cores)
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3  # ORT warnings are not the user's business
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own exception types (InvalidProtobuf, Fail, ...)
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EmorecError(f"{path}: not a valid ONNX model ({msg[:200]})") from None


def _model_info(sess, path: Path) -> ModelInfo:
    meta = sess.get_modelmeta().custom_metadata_map
    if META_KEY not in meta:
        raise EmorecError(f"{path}: ONNX model has no emorec metadata (export it with `emorec export`)")
    try:
        info = ModelInfo.from_json(meta[META_KEY])
    except (ValueError, TypeError) as e:
        raise EmorecError(f"{path}: unreadable emorec metadata ({e})") from None
    inputs, outputs = sess.get_inputs(), sess.get_outputs()
    if [i.name for i in inputs] != ["input"] or "logits" not in [o.name for o in outputs]:
        raise EmorecError(f"{path}: model must have one input 'input' and an output 'logits'")
    if inputs[0].type != "tensor(float)":
        raise EmorecError(f"{path}: model input must be float32, got {inputs[0].type}")
    shape = inputs[0].shape
    want = [None, info.in_chans, info.img_size, info.img_size]
    if len(shape) != 4 or any(isinstance(s, int) and w is not None and s != w for s, w in zip(shape, want)):
        raise EmorecError(f"{path}: input shape {shape} does not match its metadata "
                          f"(C={info.in_chans}, size={info.img_size})")
    k = next(o for o in outputs if o.name == "logits").shape[-1]
    if isinstance(k, int) and k != len(info.classes):
        raise EmorecError(f"{path}: model has {k} outputs but its metadata lists {len(info.classes)} classes")
    return info


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


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
        sess = _session(path, threads)
        info = _model_info(sess, path)
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
        """The same, with every setting taken from the config (CLI, API and app use this)."""
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
        arrays = np.stack([face_to_array(c, self.info.img_size, self.info.grayscale) for c in crops])
        out = [self._sess.run(["logits"], {"input": to_float(arrays[i:i + BATCH])})[0]
               for i in range(0, len(arrays), BATCH)]
        return softmax(np.concatenate(out).astype(np.float64)).astype(np.float32)

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

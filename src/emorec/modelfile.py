"""The model-file contract: what an emorec ONNX file says about itself and how it is fed.

Export writes it, inference and evaluation read it; nothing else defines it. The model takes
float32 ``(N, C, S, S)`` in [0, 1] (``preprocess.to_float``) named ``input`` and returns
``logits``; mean/std normalisation is inside the graph.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from emorec.errors import EmorecError
from emorec.preprocess import to_float

META_KEY = "emorec"  # key in the ONNX model's metadata_props holding ModelInfo as JSON
BATCH = 64  # faces per ORT call: bounds memory on crowd photos and long folders
MIN_SIZE, MAX_SIZE = 32, 1024  # a model's input side (config IMG_SIZE's range): more is a broken file


@dataclass
class ModelInfo:
    """Everything inference needs to feed the model the way it was trained."""

    classes: list[str]
    img_size: int
    grayscale: bool
    face_margin: float  # the crop rule the model was trained for (config FACE_MARGIN, an export setting)
    source_size: int = 0  # crops reduced to this size first (config SOURCE_SIZE; 0 in older files)
    backbone: str = ""
    version: str = ""
    metrics: dict[str, Any] = field(default_factory=dict)

    @property
    def in_chans(self) -> int:
        return 1 if self.grayscale else 3

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "ModelInfo":
        """Parsed and checked (ValueError, one line, for anything a model file must not say)."""
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        known = cls.__dataclass_fields__
        info = cls(**{k: v for k, v in data.items() if k in known})
        if not (isinstance(info.classes, list) and len(info.classes) >= 2
                and all(isinstance(c, str) for c in info.classes)):
            raise ValueError("classes must be a list of at least two names")
        if not (isinstance(info.img_size, int) and MIN_SIZE <= info.img_size <= MAX_SIZE):
            raise ValueError(f"img_size must be a whole number in [{MIN_SIZE}, {MAX_SIZE}], got {info.img_size!r}")
        if not (isinstance(info.source_size, int) and 0 <= info.source_size <= MAX_SIZE):
            raise ValueError(f"source_size must be a whole number in [0, {MAX_SIZE}], got {info.source_size!r}")
        if not (isinstance(info.face_margin, (int, float)) and 0 <= info.face_margin <= 1):
            raise ValueError(f"face_margin must be in [0, 1], got {info.face_margin!r}")
        if not isinstance(info.grayscale, bool) or not isinstance(info.metrics, dict):
            raise ValueError("grayscale must be true or false and metrics an object")
        return info


def softmax(logits: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def open_session(path: Path, threads: int = 1):
    """An ONNX Runtime CPU session; a file ORT cannot read is one line."""
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


def read_info(sess, path: Path) -> ModelInfo:
    """The session's ModelInfo, checked against the graph's input and output."""
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


def session_probs(sess, arrays: np.ndarray, batch: int = BATCH) -> np.ndarray:
    """uint8 ``(N, C, S, S)`` model inputs -> ``(N, K)`` class probabilities."""
    out = [sess.run(["logits"], {"input": to_float(arrays[i:i + batch])})[0] for i in range(0, len(arrays), batch)]
    return softmax(np.concatenate(out).astype(np.float64)).astype(np.float32)

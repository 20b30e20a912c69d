"""Checkpoint -> ONNX (fp32) and static int8 ONNX, with the metadata inference needs.

Static (QDQ, calibrated) quantisation, because dynamic int8 runs convolutions ~10x
slower than fp32 in ONNX Runtime on CPU. A parity check compares ONNX with torch on
real test faces, and the int8 model with fp32 on accuracy.
"""
from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
import tempfile
from pathlib import Path

import numpy as np

from emorec import __version__
from emorec.config import Config, class_rows
from emorec.files import atomic_path, write_text
from emorec.errors import EmorecError
from emorec.modelfile import META_KEY, ModelInfo, open_session, session_probs
from emorec.preprocess import to_float
from emorec.provenance import portable_path


def model_info(cfg: Config, commit: str, metrics: dict | None = None, members: int = 1,
               tta_flip: bool = False) -> ModelInfo:
    backbone = cfg.backbone if members == 1 else f"ensemble of {members} {cfg.backbone}"
    backbone += " + flip TTA" if tta_flip else ""
    return ModelInfo(classes=cfg.active_classes, img_size=cfg.img_size, grayscale=cfg.grayscale,
                     face_margin=cfg.face_margin, source_size=cfg.source_size, backbone=backbone,
                     version=f"emorec {__version__} {backbone} {commit}", metrics=metrics or {})


# Test metrics a model file carries (shown by the app and the API).
METRIC_KEYS = ("accuracy", "macro_f1", "n", "data_dir", "split", "tta_flip", "leakage_clean")


def get_metadata(onnx_path: Path) -> ModelInfo:
    import onnx

    props = {p.key: p.value for p in onnx.load(str(onnx_path)).metadata_props}
    return ModelInfo.from_json(props[META_KEY])


def set_metadata(onnx_path: Path, info: ModelInfo) -> None:
    import onnx

    model = onnx.load(str(onnx_path))
    onnx.helper.set_model_props(model, {META_KEY: info.to_json()})
    with atomic_path(onnx_path, "model") as tmp:  # a failed write keeps the file loadable
        onnx.save(model, str(tmp))


def to_onnx(model, path: Path, *, in_chans: int, img_size: int) -> Path:
    """Dynamo export; a batch-2 example and a named dynamic dim give a dynamic batch."""
    import torch

    model = model.eval().to(memory_format=torch.contiguous_format)
    x = torch.rand(2, in_chans, img_size, img_size)
    batch = torch.export.Dim("batch", min=1, max=4096)
    # The exporter's notes ("torchvision is not installed. Skipping torchvision::nms", deprecation
    # FutureWarnings) concern torch's internals, not the user's model: kept off the terminal.
    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), atomic_path(path, "model") as tmp:
            warnings.simplefilter("ignore", FutureWarning)
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(model, (x,), str(tmp), input_names=["input"], output_names=["logits"], dynamo=True,
                              dynamic_shapes=({0: batch},), external_data=False, optimize=True, verbose=False)
    finally:
        quiet.setLevel(level)
    return path


def store_metrics(onnx_path: Path, result: dict) -> dict:
    """Write test metrics measured on this very file into its metadata (the app and the API
    show them), replacing any stored before."""
    info = get_metadata(onnx_path)
    info.metrics = {k: result[k] for k in METRIC_KEYS if k in result}
    set_metadata(onnx_path, info)
    return info.metrics


CALIB_BATCH = 16  # faces per calibration batch (histogram calibrators cannot stack ragged ones)
CALIB_CHUNK = 64  # faces whose activations are held at once: the histograms grow chunk by chunk


class _Calibration:
    """Feeds onnxruntime's static quantiser with real training faces, one range of batches at a
    time (``set_range``, driven by ``CalibStridedMinMax``): activations are turned into histograms
    chunk by chunk, so memory holds one chunk, not every face."""

    def __init__(self, images: np.ndarray, batch: int = CALIB_BATCH):
        n = max(batch, len(images) // batch * batch)
        self.batches = [images[i:i + batch] for i in range(0, min(n, len(images)), batch)]
        self._todo: list[np.ndarray] = []

    def __len__(self) -> int:
        return len(self.batches)

    def set_range(self, start_index: int, end_index: int) -> None:
        self._todo = list(self.batches[start_index:end_index])

    def stride(self, faces: int | None = None) -> int:
        """Batches per chunk: at most ``faces`` (default CALIB_CHUNK) faces, and a divisor of the batch count."""
        want = max(1, (CALIB_CHUNK if faces is None else faces) // CALIB_BATCH)
        return next(s for s in range(min(want, len(self)), 0, -1) if len(self) % s == 0)

    def get_next(self):
        return {"input": to_float(self._todo.pop(0))} if self._todo else None

    def rewind(self):  # not needed by one calibration pass
        pass


def calibration_bytes(fp32: Path, images: int) -> int:
    """About the memory onnxruntime's calibration holds: every float activation of every
    calibration face at once (measured: 12.4 GB peak for 7class's network at 1,024 faces,
    where this says 10.1 GB; an ensemble holds that per member)."""
    import onnx

    graph = onnx.shape_inference.infer_shapes(onnx.load(str(fp32))).graph
    per_face = 0
    for value in [*graph.value_info, *graph.output]:
        tensor = value.type.tensor_type
        dims = [d.dim_value for d in tensor.shape.dim][1:]  # the first is the batch
        if tensor.elem_type == onnx.TensorProto.FLOAT and dims and all(dims):
            per_face += 4 * int(np.prod(dims))
    return per_face * images


def available_bytes() -> int | None:
    """Memory the system can still give (Linux's MemAvailable); None where unknown."""
    try:
        with open("/proc/meminfo") as f:
            return next(int(line.split()[1]) * 1024 for line in f if line.startswith("MemAvailable:"))
    except (OSError, StopIteration, ValueError, IndexError):
        return None


def check_calibration_memory(fp32: Path, images: int) -> None:
    """A clear error instead of the system killing the export part-way."""
    need, free = calibration_bytes(fp32, images), available_bytes()
    if free is not None and need * 5 // 4 > free:  # measured peak: 1.23x the estimate
        raise EmorecError(f"int8 calibration on {images} faces would hold about {need / 2**30:.1f} GiB of "
                          f"activations and {free / 2**30:.1f} GiB is free; lower INT8_CALIB_IMAGES "
                          f"(--set INT8_CALIB_IMAGES=256) or export with --no-int8 ({fp32} is written)")


def quantize_int8(fp32: Path, out: Path, calib_images: np.ndarray, calibration: str = "percentile") -> Path:
    """Static QDQ int8 (``calibration``: percentile or minmax activation ranges),
    keeping the first convolution and the classifier in fp32: on a FER model (measured) that
    cut top-1 disagreement with fp32 from 35 % to 16 % for almost no cost in speed. The first
    convolutions are those fed by the input normalisation (one per ensemble member)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    methods = {"minmax": CalibrationMethod.MinMax, "percentile": CalibrationMethod.Percentile}
    with tempfile.TemporaryDirectory() as tmp:
        pre = Path(tmp) / "pre.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        nodes = onnx.load(str(pre)).graph.node
        made_by = {o: n.op_type for n in nodes for o in n.output}
        firsts = [n.name for n in nodes if n.op_type == "Conv" and made_by.get(n.input[0]) in ("Div", None)]
        heads = [n.name for n in nodes if n.op_type in ("Gemm", "MatMul")]
        reader = _Calibration(calib_images)
        # onnxruntime prints a line per chunk
        with contextlib.redirect_stdout(io.StringIO()), atomic_path(out, "int8 model") as tmp:
            quantize_static(str(pre), str(tmp), reader, quant_format=QuantFormat.QDQ,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                            calibrate_method=methods[calibration], nodes_to_exclude=firsts + heads,
                            extra_options={"CalibStridedMinMax": reader.stride()})
    return out


def _ort_probs(path: Path, images: np.ndarray) -> np.ndarray:
    return session_probs(open_session(path, threads=0), images, batch=128)


def export(checkpoint: Path | list[Path], out: Path | None = None, int8: bool = True, data_dir: Path | None = None,
           parity_count: int = 1000, metrics_json: Path | None = None,
           tta_flip: bool = False, settings: dict | None = None, classes: list[str] | None = None,
           mix: float | list[float] | None = None) -> dict:
    """Export ``checkpoint`` (several: their ensemble; with ``mix``: one network of their
    mixed weights; see ``model_from_checkpoints``;
    ``tta_flip``: with the mirror-image average in the graph; ``settings``: export-section
    values such as SOURCE_SIZE that replace the checkpoint's; ``classes``: only these of the
    model's classes, each face's logits of them softmaxed on their own); returns the parity
    report (also written beside the model)."""
    import torch

    from emorec.data.dataset import load_split
    from emorec.models.checkpoint import mix_weights, model_from_checkpoints
    from emorec.models.predict import predict_probs

    paths = [Path(p) for p in checkpoint] if isinstance(checkpoint, (list, tuple)) else [Path(checkpoint)]
    weights = None if mix is None else mix_weights(mix, len(paths))
    model, cfg, commits = model_from_checkpoints(paths, weights)
    if settings:
        cfg = cfg.with_overrides(settings)
    restricted = bool(classes) and list(classes) != cfg.active_classes
    if restricted:
        from emorec.models.ensemble import Ensemble

        class_rows(cfg.active_classes, list(classes), "--classes: the checkpoint")
        model = Ensemble([model], [cfg.active_classes], list(classes)).eval()
        cfg = cfg.with_overrides({"active_classes": list(classes)})
    if tta_flip:
        from emorec.models.ensemble import FlipAverage

        model = FlipAverage(model).eval()
    checkpoint = paths[0]
    out = Path(out) if out else checkpoint.with_suffix(".onnx")
    written = [out, out.with_name(out.stem + ".int8.onnx"), out.with_suffix(".json")]
    if any(w.resolve() == p.resolve() for w in written for p in paths):  # --out a.pt would replace it
        raise EmorecError(f"--out {out}: export would write over its own checkpoint; name an .onnx file")
    data_dir = Path(data_dir or cfg.data_dir)
    metrics = {}
    if metrics_json and Path(metrics_json).is_file():
        m = json.loads(Path(metrics_json).read_text())
        # Embed only metrics measured on this very checkpoint.
        if len(paths) == 1 and not tta_flip and not restricted \
                and Path(m.get("model", "")).resolve() == checkpoint.resolve():
            metrics = {k: m[k] for k in METRIC_KEYS if k in m}
    info = model_info(cfg, "+".join(dict.fromkeys(commits)), metrics, members=1 if weights else len(paths),
                      tta_flip=tta_flip)

    to_onnx(model, out, in_chans=cfg.in_chans, img_size=cfg.img_size)
    set_metadata(out, info)
    report: dict = {"onnx": portable_path(out), "classes": cfg.active_classes,
                    "checkpoints": [portable_path(p) for p in paths],
                    "mix": weights,
                    "tta_flip": tta_flip}

    test = load_split(data_dir, "test", cfg.active_classes, cfg.img_size, cfg.grayscale, cfg.cache_dir,
                      max_per_class=max(1, parity_count // cfg.num_classes), seed=cfg.seed, progress=False,
                      source_size=cfg.source_size)
    x, y = test.images.numpy(), test.labels.numpy()
    p_torch = predict_probs(model, torch.from_numpy(x))
    p_onnx = _ort_probs(out, x)
    report["parity"] = {"images": int(len(x)), "max_abs_prob_diff": float(np.abs(p_torch - p_onnx).max()),
                        "top1_agreement": float((p_torch.argmax(1) == p_onnx.argmax(1)).mean()),
                        "acc_torch": float((p_torch.argmax(1) == y).mean()),
                        "acc_onnx_fp32": float((p_onnx.argmax(1) == y).mean())}
    if int8:
        calib = load_split(data_dir, "train", cfg.active_classes, cfg.img_size, cfg.grayscale, cfg.cache_dir,
                           max_per_class=max(1, cfg.int8_calib_images // cfg.num_classes), seed=cfg.seed,
                           progress=False, source_size=cfg.source_size)
        q = out.with_name(out.stem + ".int8.onnx")
        check_calibration_memory(out, min(len(calib.images), CALIB_CHUNK))
        quantize_int8(out, q, calib.images.numpy(), cfg.int8_calibration)
        set_metadata(q, info)
        p_q = _ort_probs(q, x)
        report["int8"] = {"onnx": portable_path(q), "calibration": cfg.int8_calibration,
                          "calib_images": int(len(calib.images)), "acc_int8": float((p_q.argmax(1) == y).mean()),
                          "acc_drop_vs_fp32": float((p_onnx.argmax(1) == y).mean() - (p_q.argmax(1) == y).mean()),
                          "top1_agreement_vs_fp32": float((p_q.argmax(1) == p_onnx.argmax(1)).mean()),
                          "mean_abs_prob_diff_vs_fp32": float(np.abs(p_q - p_onnx).mean()),
                          "size_mb": round(q.stat().st_size / 1e6, 2)}
    report["size_mb"] = round(out.stat().st_size / 1e6, 2)
    write_text(out.with_suffix(".json"), json.dumps({"model_info": json.loads(info.to_json()), "export": report},
                                                    indent=2))
    return report

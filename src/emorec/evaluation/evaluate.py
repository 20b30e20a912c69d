"""Evaluation of a torch checkpoint (``.pt``) or an exported ONNX model (``.onnx``) on a split,
and of an ONNX model on labelled whole photos through the face detector.

The numbers published for the shipped ONNX file are measured on that very file, through
``Predictor`` (the inference path); checkpoints go through ``models.predict``.
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from emorec.config import Config
from emorec.errors import EmorecError
from emorec.evaluation.metrics import NO_FACE, leak_flags, metrics, metrics_of_predictions, write_reports


@dataclass
class Scorer:
    """A loaded model as evaluation sees it: ``probs(images_uint8_nchw, batch_size, tta_flip) -> (N, K)``."""

    classes: list[str]
    img_size: int
    grayscale: bool
    probs: Callable[[np.ndarray, int, bool], np.ndarray]
    extra: dict = field(default_factory=dict)
    source_size: int = 0  # the model file's SOURCE_SIZE: its inputs are made with it


def load_model(path: Path) -> Scorer:
    """Load a checkpoint or an ONNX model once."""
    if path.suffix == ".onnx":
        from emorec.inference.predictor import Predictor

        pred = Predictor.from_path(path, detector="none")

        def probs_onnx(x: np.ndarray, batch_size: int, tta_flip: bool) -> np.ndarray:
            out = []
            for i in range(0, len(x), batch_size):
                batch = x[i:i + batch_size]
                p = pred.predict_arrays(batch)
                if tta_flip:
                    p = (p + pred.predict_arrays(np.ascontiguousarray(batch[..., ::-1]))) / 2
                out.append(p)
            return np.concatenate(out)

        info = pred.info
        return Scorer(info.classes, info.img_size, info.grayscale, probs_onnx, source_size=info.source_size)

    import torch

    from emorec.models.checkpoint import load_checkpoint, model_from_checkpoint
    from emorec.models.predict import predict_probs

    ckpt = load_checkpoint(path)
    model, mcfg = model_from_checkpoint(ckpt)
    probs_torch = lambda x, batch_size, tta_flip: predict_probs(model, torch.from_numpy(x), batch_size, tta_flip)
    return Scorer(mcfg.active_classes, mcfg.img_size, mcfg.grayscale, probs_torch, {"commit": ckpt.get("commit")},
                  source_size=mcfg.source_size)


def run_evaluation(cfg: Config, model_path: Path, split: str = "test", out_dir: Path | None = None,
                   tta_flip: bool | None = None, batch_size: int = 256) -> dict:
    from emorec.data.dataset import load_split
    from emorec.provenance import git_commit

    model_path = Path(model_path)
    if not model_path.is_file():
        raise EmorecError(f"model not found: {model_path}; train one with: emorec train")
    tta = cfg.tta_flip if tta_flip is None else tta_flip
    scorer = load_model(model_path)
    classes = scorer.classes
    data = load_split(cfg.data_dir, split, classes, scorer.img_size, scorer.grayscale, cfg.cache_dir,
                      source_size=scorer.source_size)
    t0 = time.perf_counter()
    probs = scorer.probs(data.images.numpy(), batch_size, tta)
    seconds = time.perf_counter() - t0
    y = data.labels.numpy()
    result = {"model": str(model_path), "data_dir": str(cfg.data_dir), "split": split, "classes": classes,
              "tta_flip": tta, "skipped_images": data.skipped, "seconds": round(seconds, 2),
              "commit": git_commit(), **{k: v for k, v in scorer.extra.items() if v}, **metrics(y, probs, classes)}
    leak = leak_flags(cfg.data_dir, data.paths)
    if leak is not None and leak.any():
        clean = metrics(y[~leak], probs[~leak], classes)
        result["leakage_clean"] = {k: clean[k] for k in ("n", "accuracy", "macro_f1")}

    header = (f"model: {model_path}\ndata: {cfg.data_dir}/{split} ({result['n']} images, TTA flip: {tta})\n"
              + (f"leakage-clean: accuracy {result['leakage_clean']['accuracy']:.4f} on "
                 f"{result['leakage_clean']['n']} images\n" if "leakage_clean" in result else ""))
    write_reports(result, cfg, Path(out_dir or cfg.reports_dir), f"{model_path.name} on {split}", header)
    return result


PHOTOS_REPORTS = "photos"  # REPORTS_DIR/photos/: whole-photo reports never overwrite a split's


def evaluate_photos(cfg: Config, model_path: Path, source: str, out_dir: Path | None = None) -> dict:
    """Score labelled whole photos the way ``emorec predict`` sees them: the face detector first,
    then the ONNX model on the largest face. A photo where no face is found counts as an error
    (column "no face" of the confusion matrix); photos of classes the model lacks are left out.
    Each photo's answer is written to predictions.csv (photo, label, predicted) and returned
    under "predictions", so that two models can be compared photo by photo."""
    from emorec.data.pipeline import label_columns
    from emorec.data.sources import open_sources
    from emorec.imageio import read_image
    from emorec.inference.predictor import Predictor
    from emorec.inference.face import largest_face
    from emorec.provenance import git_commit, portable_path

    predictor = Predictor.from_config(cfg, model_path, check_classes=False)
    classes = predictor.classes
    y, pred, names, no_face, unreadable = [], [], [], [], []
    t0 = time.perf_counter()
    for src in open_sources([source], label_columns(cfg)):
        try:
            for e in src.entries:
                if e.label not in classes:
                    continue
                try:
                    img = read_image(src.read(e.name), name=e.name)
                except (EmorecError, OSError) as err:
                    unreadable.append(str(err))
                    continue
                face = largest_face(predictor.predict([img])[0])
                names.append(e.name)
                y.append(classes.index(e.label))
                if face:
                    pred.append(classes.index(face.label))
                else:
                    pred.append(len(classes))
                    no_face.append(e.name)
        finally:
            src.close()
    if not y:
        raise EmorecError(f"{source}: no labelled photo of the model's classes ({', '.join(classes)})")
    y_arr, p_arr = np.array(y), np.array(pred)
    result = {"model": portable_path(predictor.model_path), "photos": portable_path(source),
              "detector": predictor.detector_name, "classes": classes, "no_face": len(no_face),
              "no_face_files": no_face, "unreadable": unreadable,
              "seconds": round(time.perf_counter() - t0, 2), "commit": git_commit(),
              **metrics_of_predictions(y_arr, p_arr, classes)}
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y_arr, p_arr, labels=list(range(len(classes) + 1)))[:len(classes)]
    result["confusion_matrix"] = cm.tolist()
    header = (f"model: {result['model']}\nphotos: {result['photos']} ({result['n']} faces of the model's classes, "
              f"detector {result['detector']}, no face found in {len(no_face)})\n")
    out_dir = Path(out_dir or Path(cfg.reports_dir) / PHOTOS_REPORTS)
    write_reports(result, cfg, out_dir, f"{predictor.model_path.name} on {Path(source).name}",
                  header, predicted=[*classes, NO_FACE])
    named = [*classes, NO_FACE]
    result["predictions"] = [(n, classes[t], named[p]) for n, t, p in zip(names, y, pred)]
    write_predictions(out_dir / "predictions.csv", result["predictions"])
    return result


def write_predictions(path: Path, rows: list[tuple[str, str, str]]) -> None:
    """Each photo's answer, (photo, label, predicted; NO_FACE when no face was found), as a CSV
    that two runs can be paired by (studies/paired_photos.py, studies/photo_sources.py)."""
    from emorec.files import atomic_path

    with atomic_path(path, "predictions") as tmp, open(tmp, "w", newline="", errors="backslashreplace") as f:
        csv.writer(f).writerows([("photo", "label", "predicted"), *rows])

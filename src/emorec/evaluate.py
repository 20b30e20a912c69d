"""Test-set evaluation: accuracy, per-class precision/recall/F1, confusion matrix.

Works on a torch checkpoint (``.pt``) or an exported ONNX model (``.onnx``), so the
numbers published for the shipped ONNX file are measured on that very file. When
``data_split/manifest.csv`` flags test images whose duplicates occur in train
(``leak``), a leakage-clean score is reported beside the full one.
"""
from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Callable

import numpy as np

from emorec.config import Config
from emorec.errors import EmorecError


def load_model(path: Path) -> tuple[list[str], int, bool, Callable, dict]:
    """Load a checkpoint or ONNX model once: (classes, img_size, grayscale, probs_fn, extra).

    ``probs_fn(images_uint8_nchw, batch_size, tta_flip) -> (N, K)`` probabilities."""
    if path.suffix == ".onnx":
        from emorec.inference.predictor import Predictor

        pred = Predictor.from_path(path, detector="none")

        def probs_onnx(x: np.ndarray, batch_size: int, tta_flip: bool) -> np.ndarray:
            x = x.transpose(0, 2, 3, 1)  # crops as images: (S, S, C)
            out = []
            for i in range(0, len(x), batch_size):
                crops = list(x[i:i + batch_size])
                p = pred.predict_crops(crops)
                if tta_flip:
                    p = (p + pred.predict_crops([np.ascontiguousarray(c[:, ::-1]) for c in crops])) / 2
                out.append(p)
            return np.concatenate(out)

        info = pred.info
        return info.classes, info.img_size, info.grayscale, probs_onnx, {}

    import torch

    from emorec.train.checkpoint import load_checkpoint, model_from_checkpoint
    from emorec.train.engine import predict_probs

    ckpt = load_checkpoint(path)
    model, mcfg = model_from_checkpoint(ckpt)
    probs_torch = lambda x, batch_size, tta_flip: predict_probs(model, torch.from_numpy(x), batch_size, tta_flip)
    return mcfg.active_classes, mcfg.img_size, mcfg.grayscale, probs_torch, {"commit": ckpt.get("commit")}


def leak_flags(data_dir: Path, paths: list[str]) -> np.ndarray | None:
    """Per test image: True if the manifest says a duplicate of it exists in train."""
    manifest = Path(data_dir) / "manifest.csv"
    if not manifest.is_file():
        return None
    with open(manifest, newline="") as f:
        rows = {str((Path(data_dir) / r["path"]).resolve()): r.get("leak", "0") for r in csv.DictReader(f)}
    return np.array([rows.get(str(Path(p).resolve()), "0") in ("1", "True", "true") for p in paths])


def metrics(y: np.ndarray, probs: np.ndarray, classes: list[str]) -> dict:
    return metrics_of_predictions(y, probs.argmax(1), classes)


def metrics_of_predictions(y: np.ndarray, pred: np.ndarray, classes: list[str]) -> dict:
    """Accuracy, macro-F1, per-class P/R/F1 and the confusion matrix; a prediction outside
    ``classes`` (a photo without a face) is an error for its true class."""
    from sklearn.metrics import classification_report, confusion_matrix, f1_score

    labels = list(range(len(classes)))
    rep = classification_report(y, pred, labels=labels, target_names=classes, output_dict=True, zero_division=0)
    return {
        "n": int(len(y)),
        "accuracy": float((pred == y).mean()) if len(y) else 0.0,
        "macro_f1": float(f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "per_class": {c: {k: float(rep[c][k]) for k in ("precision", "recall", "f1-score", "support")} for c in classes},
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "report_text": classification_report(y, pred, labels=labels, target_names=classes, digits=4, zero_division=0),
    }


def run_evaluation(cfg: Config, model_path: Path, split: str = "test", out_dir: Path | None = None,
                   tta_flip: bool | None = None, batch_size: int = 256) -> dict:
    from emorec.provenance import git_commit
    from emorec.train.dataset import load_split

    model_path = Path(model_path)
    if not model_path.is_file():
        raise EmorecError(f"model not found: {model_path}; train one with: emorec train")
    tta = cfg.tta_flip if tta_flip is None else tta_flip
    classes, img_size, gray, probs_fn, extra = load_model(model_path)
    data = load_split(cfg.data_dir, split, classes, img_size, gray, cfg.cache_dir)
    t0 = time.perf_counter()
    probs = probs_fn(data.images.numpy(), batch_size, tta)
    seconds = time.perf_counter() - t0
    y = data.labels.numpy()
    result = {"model": str(model_path), "data_dir": str(cfg.data_dir), "split": split, "classes": classes,
              "tta_flip": tta, "skipped_images": data.skipped, "seconds": round(seconds, 2),
              "commit": git_commit(), **{k: v for k, v in extra.items() if v}, **metrics(y, probs, classes)}
    leak = leak_flags(cfg.data_dir, data.paths)
    if leak is not None and leak.any():
        clean = metrics(y[~leak], probs[~leak], classes)
        result["leakage_clean"] = {k: clean[k] for k in ("n", "accuracy", "macro_f1")}

    header = (f"model: {model_path}\ndata: {cfg.data_dir}/{split} ({result['n']} images, TTA flip: {tta})\n"
              + (f"leakage-clean: accuracy {result['leakage_clean']['accuracy']:.4f} on "
                 f"{result['leakage_clean']['n']} images\n" if "leakage_clean" in result else ""))
    write_reports(result, cfg, Path(out_dir or cfg.reports_dir), f"{model_path.name} on {split}", header)
    return result


NO_FACE = "no face"


def write_reports(result: dict, cfg: Config, out_dir: Path, title: str, header: str,
                  predicted: list[str] | None = None) -> None:
    """metrics.json (with the config), classification_report.txt and confusion_matrix.png."""
    from emorec.plots import confusion_matrix_png

    out_dir.mkdir(parents=True, exist_ok=True)
    confusion_matrix_png(np.array(result["confusion_matrix"]), result["classes"], out_dir / "confusion_matrix.png",
                         f"{title} (acc {result['accuracy']:.1%})", predicted=predicted)
    (out_dir / "classification_report.txt").write_text(
        f"{header}accuracy: {result['accuracy']:.4f}  macro-F1: {result['macro_f1']:.4f}\n\n{result['report_text']}")
    (out_dir / "metrics.json").write_text(json.dumps({**{k: v for k, v in result.items() if k != "report_text"},
                                                      "config": cfg.to_dict()}, indent=2))


def evaluate_photos(cfg: Config, model_path: Path, source: str, out_dir: Path | None = None) -> dict:
    """Score labelled whole photos the way ``emorec predict`` sees them: the face detector first,
    then the ONNX model on the largest face. A photo where no face is found counts as an error
    (column "no face" of the confusion matrix); photos of classes the model lacks are left out."""
    from emorec.data.pipeline import label_columns
    from emorec.data.sources import open_sources
    from emorec.imageio import read_image
    from emorec.inference.predictor import Predictor
    from emorec.inference.types import largest_face
    from emorec.provenance import git_commit, portable_path

    predictor = Predictor.from_config(cfg, model_path, check_classes=False)
    classes = predictor.classes
    y, pred, no_face, unreadable = [], [], [], []
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
    write_reports(result, cfg, Path(out_dir or cfg.reports_dir), f"{predictor.model_path.name} on {Path(source).name}",
                  header, predicted=[*classes, NO_FACE])
    return result

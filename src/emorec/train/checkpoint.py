"""Checkpoints written atomically: a kill mid-write never leaves a corrupt file."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from emorec.errors import EmorecError


def save_atomic(obj: Any, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_checkpoint(path: Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise EmorecError(f"checkpoint not found: {path}; train one with: emorec train")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # torch raises many types for a damaged file
        raise EmorecError(f"{path}: not a readable emorec checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or "config" not in ckpt:
        raise EmorecError(f"{path}: not an emorec checkpoint (no model/config inside)")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]):
    """Rebuild the trained network (no ImageNet weights needed) and its config."""
    from emorec.config import Config
    from emorec.models import create_model

    cfg = Config.from_dict(ckpt["config"])
    model = create_model(cfg.backbone, num_classes=cfg.num_classes, pretrained=False,
                         in_chans=cfg.in_chans, drop_rate=cfg.dropout)
    model.load_state_dict(ckpt["model"])
    model.eval()
    return model, cfg


def model_from_checkpoints(paths: list[Path]):
    """One checkpoint -> its model; several -> their ``Ensemble`` over the first one's
    classes (the others must know those classes and share its input size and colour).
    Returns (model, config of the first, commits of all)."""
    from emorec.models.ensemble import Ensemble

    ckpts = [load_checkpoint(p) for p in paths]
    built = [model_from_checkpoint(c) for c in ckpts]
    commits = [c.get("commit", "unknown") for c in ckpts]
    model, cfg = built[0]
    if len(built) == 1:
        return model, cfg, commits
    for path, (_, other) in zip(paths[1:], built[1:]):
        if (other.img_size, other.grayscale) != (cfg.img_size, cfg.grayscale):
            raise EmorecError(f"{path}: input {other.img_size} px grayscale={other.grayscale} differs from "
                              f"{paths[0]}: {cfg.img_size} px grayscale={cfg.grayscale}")
    ens = Ensemble([m for m, _ in built], [c.active_classes for _, c in built], cfg.active_classes)
    return ens.eval(), cfg, commits

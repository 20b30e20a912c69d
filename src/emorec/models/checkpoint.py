"""Checkpoints written atomically: a kill mid-write (or a full disk) never leaves a corrupt file.

Loading never runs code from the file: ``torch.load(weights_only=True)`` unpickles tensors and
plain containers only, so a crafted ``.pt`` cannot execute anything; its structure is then checked,
so a wrong file is one line, not a ``KeyError`` later."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from emorec.errors import EmorecError
from emorec.files import atomic_path


def save_atomic(obj: Any, path: Path) -> Path:
    with atomic_path(path, "checkpoint") as tmp:
        torch.save(obj, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
    return Path(path)


# What a checkpoint must hold: every file emorec writes has these; resume points (last.pt) more.
REQUIRED = {"model": dict, "config": dict, "classes": list}
RESUME = {"optimizer": dict, "scheduler": dict, "stage": int, "epoch": int, "history": list, "best": float,
          "bad_epochs": int}


def check_keys(ckpt: dict, required: dict[str, type], path: Path) -> None:
    for key, kind in required.items():
        if not isinstance(ckpt.get(key), kind) or isinstance(ckpt.get(key), bool):
            what = "missing" if key not in ckpt else f"a {type(ckpt[key]).__name__}, not a {kind.__name__}"
            raise EmorecError(f"{path}: not an emorec checkpoint ({key!r} is {what})")


def load_checkpoint(path: Path, resume: bool = False) -> dict[str, Any]:
    """The checkpoint's contents, loaded without running code; ``resume``: a last.pt to continue."""
    path = Path(path)
    if not path.is_file():
        raise EmorecError(f"checkpoint not found: {path}; train one with: emorec train")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # damaged file, or objects other than tensors and plain containers
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            msg = "it holds objects other than tensors and plain values; refused, as loading could run code"
        raise EmorecError(f"{path}: not a readable emorec checkpoint ({msg[:200]})") from None
    if not isinstance(ckpt, dict):
        raise EmorecError(f"{path}: not an emorec checkpoint (no model/config inside)")
    check_keys(ckpt, {**REQUIRED, **(RESUME if resume else {})}, path)
    if not all(isinstance(v, torch.Tensor) for v in ckpt["model"].values()):
        raise EmorecError(f"{path}: not an emorec checkpoint ('model' is not a state dict of tensors)")
    bad = next((k for k, v in ckpt["model"].items() if v.is_floating_point() and not torch.isfinite(v).all()), None)
    if bad is not None:  # a diverged run: its answers would be NaN, whatever a parity check says
        raise EmorecError(f"{path}: weight {bad!r} holds NaN or infinite values; this checkpoint cannot be used")
    return ckpt


def model_from_checkpoint(ckpt: dict[str, Any]):
    """Rebuild the trained network (no ImageNet weights needed) and its config."""
    from emorec.config import Config
    from emorec.models import create_model

    cfg = Config.from_dict(ckpt["config"])
    model = create_model(cfg.backbone, num_classes=cfg.num_classes, pretrained=False,
                         in_chans=cfg.in_chans, drop_rate=cfg.dropout)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        first = next((ln.strip() for ln in str(e).splitlines()[1:] if ln.strip()), str(e).splitlines()[0])
        raise EmorecError(f"checkpoint weights do not fit {cfg.backbone} with {cfg.num_classes} classes "
                          f"({first[:200]})") from None
    model.eval()
    return model, cfg


def mix_weights(mix: float | list[float], count: int) -> list[float]:
    """``--mix``'s values -> one weight per checkpoint: one value W with two checkpoints means
    (1 - W, W); otherwise one value per checkpoint, each in [0, 1], summing to 1."""
    values = [float(mix)] if isinstance(mix, (int, float)) else [float(w) for w in mix]
    bad = [w for w in values if not 0.0 <= w <= 1.0]
    if bad:
        raise EmorecError(f"mix weight {bad[0]:g} is outside [0, 1]")
    if len(values) == 1 and count == 2:
        return [1.0 - values[0], values[0]]
    if count < 2 or len(values) != count:
        raise EmorecError(f"a weight mix takes two checkpoints and one weight, or one weight per checkpoint; "
                          f"got {count} checkpoints and {len(values)} weights")
    if abs(sum(values) - 1.0) > 1e-6:
        raise EmorecError(f"mix weights sum to {sum(values):g}; they must sum to 1")
    return values


def mixed_model(ckpts: list[dict[str, Any]], weights: list[float]):
    """One network from checkpoints of the same architecture: the weighted sum of their weights,
    BatchNorm statistics included (``weights`` from ``mix_weights``). A fine-tuned network mixed
    with the one it started from (WiSE-FT), or runs of one recipe with other seeds (model soups),
    often hold up better on unseen data than any one of them (Wortsman et al. 2022). Config and
    classes are the first's; the others' head rows for those classes are used. Returns (model,
    config) as ``model_from_checkpoint`` does."""
    from emorec.config import Config, class_rows

    first = ckpts[0]
    model, cfg = model_from_checkpoint(first)
    head = model.pretrained_cfg["classifier"] + "."
    states = [first["model"]]
    for i, other_ckpt in enumerate(ckpts[1:], start=2):
        other = Config.from_dict(other_ckpt["config"])
        if (other.backbone, other.in_chans, other.img_size) != (cfg.backbone, cfg.in_chans, cfg.img_size):
            raise EmorecError(f"cannot mix a {other.backbone} ({other.img_size} px, {other.in_chans} channel) into a "
                              f"{cfg.backbone} ({cfg.img_size} px, {cfg.in_chans} channel)")
        rows = class_rows(other_ckpt["classes"], first["classes"], f"checkpoint {i}")
        states.append({k: v[rows] if k.startswith(head) else v for k, v in other_ckpt["model"].items()})
    state = {}
    for key, a in first["model"].items():
        state[key] = sum(w * s[key] for w, s in zip(weights, states)) if a.is_floating_point() else a
    model.load_state_dict(state)
    return model.eval(), cfg


def model_from_checkpoints(paths: list[Path], weights: list[float] | None = None):
    """One checkpoint -> its model; several -> their ``Ensemble`` over the first one's
    classes (the others must know those classes and share its input size and colour);
    ``weights`` (one per checkpoint, from ``mix_weights``): one network of their weights mixed
    (``mixed_model``).
    Returns (model, config of the first, commits of all)."""
    from emorec.models.ensemble import Ensemble

    ckpts = [load_checkpoint(p) for p in paths]
    commits = [c.get("commit", "unknown") for c in ckpts]
    if weights is not None:
        return (*mixed_model(ckpts, weights), commits)
    built = [model_from_checkpoint(c) for c in ckpts]
    model, cfg = built[0]
    if len(built) == 1:
        return model, cfg, commits
    for path, (_, other) in zip(paths[1:], built[1:]):
        if (other.img_size, other.grayscale) != (cfg.img_size, cfg.grayscale):
            raise EmorecError(f"{path}: input {other.img_size} px grayscale={other.grayscale} differs from "
                              f"{paths[0]}: {cfg.img_size} px grayscale={cfg.grayscale}")
    ens = Ensemble([m for m, _ in built], [c.active_classes for _, c in built], cfg.active_classes)
    return ens.eval(), cfg, commits

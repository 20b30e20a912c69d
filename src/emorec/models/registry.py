"""timm-style model registry: ``@register_model`` factories, ``create_model(name, ...)``."""
from __future__ import annotations

import os
from typing import Callable

from torch import nn

from emorec.errors import EmorecError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(fn: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Register a factory ``fn(num_classes, in_chans, drop_rate) -> model`` under its name."""
    _MODELS[fn.__name__] = fn
    return fn


def list_models() -> list[str]:
    return sorted(_MODELS)


def create_model(
    name: str,
    num_classes: int = 1000,
    pretrained: bool | str | os.PathLike = False,
    in_chans: int = 3,
    drop_rate: float | None = None,
    weights_dir: str | os.PathLike | None = None,
) -> nn.Module:
    """Build a registered model.

    ``pretrained``: False (random init), True (find the ImageNet file, see
    ``emorec.models.weights``) or a path to a state-dict file. With ``num_classes``
    other than the file's, its classifier is dropped and the new head stays fresh.
    """
    key = str(name).strip().lower().replace("-", "_")
    if key not in _MODELS:
        raise EmorecError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    if num_classes < 0:
        raise EmorecError(f"num_classes must be >= 0, got {num_classes}")
    model = _MODELS[key](num_classes=num_classes, in_chans=in_chans, drop_rate=drop_rate)
    if pretrained is not False and pretrained is not None:
        from emorec.models.weights import load_pretrained

        load_pretrained(model, pretrained, weights_dir)
    return model

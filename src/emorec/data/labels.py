"""Canonical emotion names, and the many ways datasets spell them and their splits.

Datasets name the same class differently (``Angry``, ``anger``, ``AN``; ``Suprise``
with a typo; ``happiness``). Everything is mapped onto one lower-case canonical name;
a name that is not listed here is *unknown* and gets reported, never guessed.
"""
from __future__ import annotations

import re

CANONICAL_CLASSES = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise", "contempt"]

_ALIASES = {
    "angry": ["angry", "anger", "ang", "an", "mad"],
    "disgust": ["disgust", "disgusted", "disgusting", "dis", "di"],
    "fear": ["fear", "fearful", "afraid", "scared", "fea", "fe", "af"],
    "happy": ["happy", "happiness", "joy", "hap", "ha"],
    "neutral": ["neutral", "neutrality", "neu", "ne"],
    "sad": ["sad", "sadness", "sa"],
    "surprise": ["surprise", "surprised", "suprise", "suprised", "surprize", "sur", "su"],
    "contempt": ["contempt", "contemptuous"],
}
_LABELS = {alias: name for name, aliases in _ALIASES.items() for alias in aliases}

_SPLITS = {
    "train": "train", "training": "train",
    "val": "val", "valid": "val", "validation": "val", "dev": "val", "publictest": "val",
    "test": "test", "testing": "test", "privatetest": "test",
}

# "1_Angry", "angry-", "03 sad": numbering and separators around the name are not part of it
_TRIM = re.compile(r"^[\d\W_]+|[\d\W_]+$")


def _norm(name: str) -> str:
    return _TRIM.sub("", str(name).strip().lower())


def canonical_label(name: str) -> str | None:
    """Folder name -> canonical class (``"Suprise"`` -> ``"surprise"``), or None if unknown."""
    return _LABELS.get(_norm(name))


def split_name(name: str) -> str | None:
    """Folder name -> ``"train"``, ``"val"`` or ``"test"``, or None if it is not a split folder."""
    return _SPLITS.get(_norm(name))

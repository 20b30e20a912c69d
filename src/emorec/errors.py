"""Errors that reach the user as one line, never a traceback."""
from __future__ import annotations

import importlib
from types import ModuleType


class EmorecError(Exception):
    """A user-facing problem (bad path, bad config, bad input). Its message is the whole story."""


def require(module: str, extra: str) -> ModuleType:
    """Import an optional dependency, or fail with the install hint."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise EmorecError(f"{module} is not installed; run: pip install 'emorec[{extra}]'") from None

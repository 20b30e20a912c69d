"""`emorec train` (not implemented yet)."""
from __future__ import annotations

from emorec.cli import add_config_arguments


def add_arguments(p) -> None:
    add_config_arguments(p)


def run(args) -> int:
    from emorec.errors import EmorecError

    raise EmorecError("'train' is not implemented yet")

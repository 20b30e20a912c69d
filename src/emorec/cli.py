"""`emorec <command>`: a thin layer over the library.

Each command lives in ``emorec.commands.<name>`` with ``add_arguments(parser)`` and
``run(args) -> int``; command modules import heavy libraries inside ``run`` only, so
``emorec predict`` never pays for torch.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from emorec import __version__
from emorec.errors import EmorecError

COMMANDS = {
    "data": "prepare datasets: merge sources into data_split/{train,val,test}/<class>/",
    "train": "two-stage transfer learning on data_split/",
    "evaluate": "test metrics, classification report, confusion matrix",
    "export": "checkpoint -> ONNX (fp32, int8) with a parity check",
    "predict": "emotions of the faces in images, folders or videos",
    "serve": "REST API (FastAPI)",
    "app": "Streamlit app",
}


def add_config_arguments(p: argparse.ArgumentParser) -> None:
    """The options every config-driven command shares."""
    p.add_argument("--config", help="YAML file with config keys (e.g. ACTIVE_CLASSES, IMG_SIZE)")
    p.add_argument("--set", dest="overrides", action="append", metavar="KEY=VALUE", default=[],
                   help="override one config key; repeatable")
    p.add_argument("--profile", choices=["FAST_DEBUG", "DEV_TRAIN", "FULL_TRAIN"],
                   help="TRAIN_MODE profile (same as --set TRAIN_MODE=...)")


def config_from_args(args: argparse.Namespace):
    from emorec.config import load_config, parse_overrides

    overrides = parse_overrides(getattr(args, "overrides", None))
    if getattr(args, "profile", None):
        overrides["train_mode"] = args.profile
    return load_config(getattr(args, "config", None), overrides)


def explicit_settings(args: argparse.Namespace, cfg, section: str) -> dict:
    """The keys of one config section that --config or --set name, with their values in
    ``cfg`` (the config those arguments built): what a command lets replace a checkpoint's."""
    from dataclasses import fields

    from emorec.config import SECTIONS, parse_overrides, read_config_file

    named = set(read_config_file(args.config)) if getattr(args, "config", None) else set()
    named |= {k.lower() for k in parse_overrides(getattr(args, "overrides", None))}
    return {f.name: getattr(cfg, f.name) for f in fields(SECTIONS[section]) if f.name in named}


GLIBC_TUNING = "glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296"


def tune_malloc(args: argparse.Namespace) -> None:
    """glibc's default malloc thresholds make torch 2-3x slower on small CPU batches:
    re-exec this process once with the tunables set (they only apply at start).
    Only for a real program start, never inside a caller's process (tests, notebooks)."""
    import os

    if not getattr(args, "_process_entry", False) or os.environ.get("GLIBC_TUNABLES") \
            or not sys.platform.startswith("linux"):
        return
    os.environ["GLIBC_TUNABLES"] = GLIBC_TUNING
    os.execv(sys.executable, [sys.executable, *sys.orig_argv[1:]])


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="emorec", description="Facial emotion recognition toolkit")
    parser.add_argument("--version", action="version", version=f"emorec {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, help_text in COMMANDS.items():
        module = importlib.import_module(f"emorec.commands.{name}")
        p = sub.add_parser(name, help=help_text, description=help_text)
        module.add_arguments(p)
        p.set_defaults(_module=module, _parser=p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra:  # said by the command's own parser, so its usage is the one shown
        (getattr(args, "_parser", None) or parser).error(f"unrecognized arguments: {' '.join(extra)}")
    args._process_entry = argv is None  # called as a program, not from Python code
    if not getattr(args, "_module", None):
        parser.print_help()
        return 2
    try:
        return int(args._module.run(args) or 0)
    except EmorecError as e:
        print(f"emorec {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"emorec {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

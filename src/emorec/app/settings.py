"""Where the app's settings come from.

Script arguments (``streamlit run app_streamlit.py -- --model M``, which is what
``emorec app`` passes) win over environment variables, which win over the config.
The same parser serves the launcher, so a bad option fails there before a server starts.
"""
from __future__ import annotations

import argparse
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from emorec.cli import add_config_arguments, config_from_args
from emorec.config import Config
from emorec.errors import EmorecError

ENV_MODEL = "EMOREC_MODEL"
ENV_QUIZ_DIR = "EMOREC_QUIZ_DIR"
DEFAULT_MAX_UPLOAD_MB = 10  # photos, not videos: a 50 MP JPEG is ~15 MB, phone shots 2-6 MB
DEFAULT_MAX_VIDEO_MB = 50  # a minute of phone video at 720p is ~40 MB
DEFAULT_MAX_VIDEO_S = 60.0  # a minute of 25 fps video: about 20 s of analysis on one core


@dataclass
class AppSettings:
    cfg: Config
    model_path: Path | None  # None: the predictor's default (models/best_model.onnx)
    quiz_dir: Path
    max_upload_mb: int
    max_video_mb: int = DEFAULT_MAX_VIDEO_MB
    max_video_s: float = DEFAULT_MAX_VIDEO_S


def add_app_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help=f"ONNX model (default: ${ENV_MODEL}, else models/best_model.onnx)")
    p.add_argument("--quiz-dir", help=f"folder of <class>/ images for the quiz (default: ${ENV_QUIZ_DIR}, "
                                      "else DATA_DIR/test)")
    p.add_argument("--max-upload-mb", type=int, default=DEFAULT_MAX_UPLOAD_MB,
                   help=f"largest accepted upload in MB (default {DEFAULT_MAX_UPLOAD_MB})")
    p.add_argument("--max-video-mb", type=int, default=DEFAULT_MAX_VIDEO_MB,
                   help=f"largest accepted clip in MB (default {DEFAULT_MAX_VIDEO_MB})")
    p.add_argument("--max-video-seconds", type=float, default=DEFAULT_MAX_VIDEO_S,
                   help=f"longest accepted clip in seconds (default {DEFAULT_MAX_VIDEO_S:g})")
    add_config_arguments(p)


def settings_from_args(args: argparse.Namespace, environ: Mapping[str, str] | None = None) -> AppSettings:
    environ = os.environ if environ is None else environ
    cfg = config_from_args(args)
    model = args.model or environ.get(ENV_MODEL) or cfg.model_path
    quiz_dir = args.quiz_dir or environ.get(ENV_QUIZ_DIR) or Path(cfg.data_dir) / "test"
    if args.max_upload_mb < 1:
        raise EmorecError(f"--max-upload-mb must be at least 1, got {args.max_upload_mb}")
    if args.max_video_mb < 1:
        raise EmorecError(f"--max-video-mb must be at least 1, got {args.max_video_mb}")
    if not 0 < args.max_video_seconds <= 24 * 3600:
        raise EmorecError(f"--max-video-seconds must be in (0, 86400], got {args.max_video_seconds:g}")
    return AppSettings(cfg=cfg, model_path=Path(model).expanduser() if model else None,
                       quiz_dir=Path(quiz_dir).expanduser(), max_upload_mb=args.max_upload_mb,
                       max_video_mb=args.max_video_mb, max_video_s=args.max_video_seconds)


class _ScriptParser(argparse.ArgumentParser):
    """Inside the app a bad argument must become a message in the page, not sys.exit."""

    def error(self, message: str):
        raise EmorecError(f"app arguments: {message}")


def parse_script_args(argv: Sequence[str], environ: Mapping[str, str] | None = None) -> AppSettings:
    p = _ScriptParser(prog="app_streamlit.py", allow_abbrev=False)
    add_app_arguments(p)
    return settings_from_args(p.parse_args(list(argv)), environ)

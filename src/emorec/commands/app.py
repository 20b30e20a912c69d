"""`emorec app`: start the Streamlit app (the script shipped in the package, any cwd)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from emorec.app.settings import add_app_arguments, settings_from_args


def add_arguments(p) -> None:
    add_app_arguments(p)
    p.add_argument("--port", type=int, default=8501, help="HTTP port (default 8501)")
    p.add_argument("--address", default="127.0.0.1",
                   help="address to listen on (default 127.0.0.1; 0.0.0.0 to serve your network)")
    p.add_argument("--browser", action="store_true", help="open a browser tab (default: just print the URL)")


def script_path() -> Path:
    import emorec.app

    return Path(emorec.app.__file__).with_name("streamlit_app.py")


def script_args(args: argparse.Namespace) -> list[str]:
    """The app's own options, passed on to the script after `--`."""
    out = ["--max-upload-mb", str(args.max_upload_mb)]
    for opt, value in (("--model", args.model), ("--quiz-dir", args.quiz_dir), ("--config", args.config),
                       ("--profile", args.profile)):
        if value:
            out += [opt, str(value)]
    for item in args.overrides:
        out += ["--set", item]
    return out


def build_command(args: argparse.Namespace) -> list[str]:
    return [sys.executable, "-m", "streamlit", "run", str(script_path()),
            "--server.port", str(args.port), "--server.address", args.address,
            "--server.maxUploadSize", str(args.max_upload_mb),
            "--server.headless", "false" if args.browser else "true",
            "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
            "--", *script_args(args)]


def run(args) -> int:
    import os
    import subprocess

    from emorec.errors import EmorecError, require

    require("streamlit", "app")
    settings_from_args(args)  # a bad config or option fails here, not in the page
    if not 1 <= args.port <= 65535:
        raise EmorecError(f"--port must be 1-65535, got {args.port}")
    cmd = build_command(args)
    print(f"emorec app: http://{args.address}:{args.port}", file=sys.stderr)
    if getattr(args, "_process_entry", False):
        os.execv(cmd[0], cmd)  # become the server: Ctrl-C and kill reach streamlit directly
    return subprocess.call(cmd)

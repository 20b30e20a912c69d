"""Where a record came from: the code's commit, and paths written so that they hold on any machine."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def git_commit() -> str:
    """Short commit of the code (``-dirty`` with uncommitted changes); ``$EMOREC_COMMIT`` when set,
    for a copy of the tree without .git (e.g. on a rented GPU machine)."""
    if os.environ.get("EMOREC_COMMIT"):
        return os.environ["EMOREC_COMMIT"]
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=here)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                               text=True, timeout=5, cwd=here).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "") if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def portable_path(path: str | os.PathLike, start: str | os.PathLike | None = None) -> str:
    """``path`` as a record should hold it: relative to ``start`` (default: the repository root)
    when it lies in that folder or beside it (``../shared/...``); a relative path as given."""
    p = Path(path)
    if not p.is_absolute():
        return p.as_posix()
    base = Path(start).absolute() if start is not None else REPO_ROOT
    p = p.resolve()
    for root, prefix in ((base, ""), (base.parent, "../")):
        try:
            return prefix + p.relative_to(root.resolve()).as_posix()
        except ValueError:
            continue
    return p.as_posix()

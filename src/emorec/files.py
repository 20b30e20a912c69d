"""Every file emorec writes goes to a temporary name beside it and is renamed into place: a
failure (full disk, a size limit, a kill) leaves the previous file as it was and no partial one,
and says so in one line naming the file and the free space."""
from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from emorec.errors import EmorecError


def disk_cause(path: Path, e: Exception) -> str:
    """Why writing ``path`` failed, in words: the free space when the disk is (nearly) full."""
    try:
        free = shutil.disk_usage(Path(path).parent).free
    except OSError:
        free = -1
    if 0 <= free < 64 * 1024 * 1024:
        return f"disk full: {free // 1024 ** 2} MB free on {Path(path).parent}"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror + (f"; {free // 1024 ** 2:,} MB free on {Path(path).parent}" if free >= 0 else "")
    return str(e).splitlines()[0][:200] if str(e) else type(e).__name__


def temp_path(path: Path) -> Path:
    """A temporary name beside ``path``, with its suffix (writers that pick a format by it)."""
    return path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")


@contextmanager
def atomic_path(path: str | os.PathLike, what: str = "") -> Iterator[Path]:
    """Yield a temporary path to write; on success it replaces ``path``, on any failure it is
    removed and an OSError becomes one EmorecError line (the previous ``path`` is kept)."""
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        os.replace(tmp, path)
    except (OSError, RuntimeError) as e:  # RuntimeError: torch's and onnx's writers on a full disk
        tmp.unlink(missing_ok=True)
        kept = "the previous file is kept" if path.exists() else "nothing written"
        raise EmorecError(f"cannot write {what + ' ' if what else ''}{path} ({disk_cause(path, e)}); {kept}") \
            from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_text(path: str | os.PathLike, text: str, what: str = "") -> Path:
    with atomic_path(path, what) as tmp:
        tmp.write_text(text, encoding="utf-8", errors="backslashreplace")
    return Path(path)


def write_bytes(path: str | os.PathLike, data: bytes, what: str = "") -> Path:
    with atomic_path(path, what) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def display_name(name: str | os.PathLike) -> str:
    """A file name as text that any UTF-8 output takes: bytes that are not UTF-8 (a Latin-1 name
    on a Linux disk) written escaped, ``caf\\xe9.jpg``, instead of failing the whole output."""
    return os.fsencode(os.fspath(name)).decode("utf-8", "backslashreplace")


def opencv_path(path: str | os.PathLike, what: str) -> str:
    """``path`` for an OpenCV function that takes a file name: OpenCV's binding crashes the process
    on a name that is not UTF-8, so such a name is one line instead."""
    name = os.fspath(path)
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        raise EmorecError(f"{display_name(name)}: OpenCV cannot open a {what} whose name is not UTF-8; "
                          "rename it") from None
    return name

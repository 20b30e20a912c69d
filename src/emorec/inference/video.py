"""Video in and out with OpenCV's FFmpeg backend (frames are RGB like everything else)."""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np

from emorec.errors import EmorecError
from emorec.files import opencv_path, temp_path

# FFmpeg logs damaged files itself ("moov atom not found"); the caller reports them in one line.
# Read when FFmpeg is first used, so setting it here, before any capture, is enough.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

VIDEO_EXTS = (".mp4", ".avi", ".mov", ".mkv", ".webm")
# Codecs that the opencv-python wheels' FFmpeg writes without complaint.
WRITE_CODECS = {".mp4": "mp4v", ".mov": "mp4v", ".avi": "MJPG", ".mkv": "XVID"}


def is_video(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTS


@dataclass
class Frame:
    index: int  # 0-based frame number in the file
    time_s: float  # presentation time (index / fps; ASSUMED_FPS when the file does not say)
    fps: float  # 0 when the container does not say
    rgb: np.ndarray
    keep: bool  # True for every ``every``-th frame: the ones to analyse


ASSUMED_FPS = 25.0  # frame times when the container does not say its frame rate


class VideoTooLong(EmorecError):
    """A video over the length its reader was allowed (servers and the app bound their work)."""


class VideoReader:
    """Frames of a video; only every ``every``-th is decoded unless ``decode_all`` (an annotated
    output video needs all of them). ``fps`` is known once opened, ``frames`` (frames in the
    file) once read to the end. ``name`` is what messages call the file (an upload's name, not
    its temporary copy's); ``max_seconds`` refuses a longer video, by its header when opened and
    by its frames as they come (a header may say less)."""

    def __init__(self, path: str | os.PathLike, every: int = 1, decode_all: bool = False, *,
                 name: str | None = None, max_seconds: float | None = None):
        if every < 1:
            raise EmorecError(f"--every must be at least 1, got {every}")
        self.path, self.every, self.decode_all = path, every, decode_all
        self.name, self.max_seconds = str(path) if name is None else name, max_seconds
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)  # "could not find decoder": said below
        try:
            self._cap = cv2.VideoCapture(opencv_path(path, "video"))
        finally:
            cv2.utils.logging.setLogLevel(level)
        if not self._cap.isOpened():
            raise EmorecError(f"{self.name}: cannot open as a video")
        self.fps = self._cap.get(cv2.CAP_PROP_FPS) or 0.0
        self.claimed_frames = max(0, int(self._cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0))  # the header's word
        self.size = (int(self._cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self._cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        self.frames = 0
        if max_seconds is not None and self.claimed_frames / self.rate > max_seconds:
            self._cap.release()
            raise VideoTooLong(f"{self.name}: clip too long ({self.claimed_frames / self.rate:.1f} s; "
                               f"the limit is {max_seconds:g} s)")

    @property
    def rate(self) -> float:
        """Frames per second as frame times are counted (ASSUMED_FPS when the file does not say)."""
        return self.fps if self.fps > 0 else ASSUMED_FPS

    def __iter__(self) -> Iterator[Frame]:
        cap, index, rate = self._cap, 0, self.rate
        last = None if self.max_seconds is None else self.max_seconds * rate
        try:
            while cap.grab():  # grab() skips decoding: cheap for frames we do not analyse
                if last is not None and index >= last:
                    raise VideoTooLong(f"{self.name}: clip too long (over the {self.max_seconds:g} s limit)")
                keep = index % self.every == 0
                if keep or self.decode_all:
                    ok, bgr = cap.retrieve()
                    if not ok:
                        raise EmorecError(f"{self.name}: cannot decode frame {index}")
                    yield Frame(index, index / rate, self.fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), keep)
                index += 1
                self.frames = index
        finally:
            cap.release()
        if index == 0:
            raise EmorecError(f"{self.name}: no frames could be read (unsupported codec or not a video)")


def read_frames(path: str | os.PathLike, every: int = 1, decode_all: bool = False) -> Iterator[Frame]:
    """``VideoReader``'s frames, opened on the first ``next``."""
    yield from VideoReader(path, every, decode_all)


MIN_WRITE_SIDE = 16  # OpenCV's MJPG writer corrupts memory on frames a few pixels wide: smaller ones are padded


class VideoWriter:
    """RGB frames -> video file; size and frame rate are taken from the first frame (padded with
    black to at least MIN_WRITE_SIDE and to even sides, which every codec takes).
    The extension is checked here, so a bad name fails before any work is done."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        codec = WRITE_CODECS.get(self.path.suffix.lower())
        if codec is None:
            raise EmorecError(f"cannot write video {self.path}: use one of {', '.join(WRITE_CODECS)}")
        self.fourcc = cv2.VideoWriter_fourcc(*codec)
        self._writer: cv2.VideoWriter | None = None

    def write(self, rgb: np.ndarray, fps: float = 25.0) -> None:
        h, w = rgb.shape[:2]
        if self._writer is None:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise EmorecError(f"cannot write video {self.path}: {e.strerror or e}") from None
            self.size = (max(MIN_WRITE_SIDE, w + w % 2), max(MIN_WRITE_SIDE, h + h % 2))
            self._tmp = temp_path(self.path)  # renamed into place by close(): no half-written video
            self._writer = cv2.VideoWriter(opencv_path(self._tmp, "video"), self.fourcc, fps if fps > 0 else 25.0,
                                           self.size)
            if not self._writer.isOpened():
                raise EmorecError(f"cannot write video {self.path}")
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        if (w, h) != self.size:  # padded (or cut) to the video's size: the writer takes no other
            bgr = cv2.copyMakeBorder(bgr[:self.size[1], :self.size[0]], 0, max(0, self.size[1] - h), 0,
                                     max(0, self.size[0] - w), cv2.BORDER_CONSTANT, value=0)
        self._writer.write(bgr)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            try:
                os.replace(self._tmp, self.path)
            except OSError as e:
                self._tmp.unlink(missing_ok=True)
                raise EmorecError(f"cannot write video {self.path} ({e.strerror or e})") from None

    def discard(self) -> None:
        """Stop without keeping the file (the run failed)."""
        if self._writer is not None:
            self._writer.release()
            self._writer = None
            self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> "VideoWriter":
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close() if exc_type is None else self.discard()

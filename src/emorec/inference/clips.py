"""Clips with known face paths, built from the faces of one photo: the ground truth of the video
tests, the tracker study and the video benchmark.

Each :class:`Actor` is one face of the photo, pasted (with its surroundings, so a detector finds
it) on a plain background and moved in a straight line; later actors cover earlier ones where they
cross. :func:`clip_frames` yields the frames with the true face box of every visible actor;
:func:`iou_matrix` matches found boxes to them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import numpy as np

from emorec.inference.video import VideoWriter

MARGIN = 0.45  # photo around the face box pasted with it, per side, as a share of the box


@dataclass
class Actor:
    face: int  # which face of the photo (its detections sorted left to right)
    start: tuple[float, float]  # face-box centre (x, y) on the first frame it is visible
    end: tuple[float, float]  # ... and on its last frame
    first: int = 0  # first frame visible
    last: int | None = None  # last frame visible (None: the clip's last)
    hidden: tuple[int, ...] = ()  # frames it is missing (a detection gap)
    swaps: dict[int, int] = field(default_factory=dict)  # frame -> another face shown there instead


def photo_faces(photo: np.ndarray, boxes: list[tuple[int, int, int, int]], height: int = 110) -> list[tuple]:
    """(patch, face box inside the patch) per face, left to right, each scaled to a face ``height``."""
    import cv2

    out = []
    for x, y, w, h in sorted(boxes):
        mx, my = int(w * MARGIN), int(h * MARGIN)
        x0, y0 = max(0, x - mx), max(0, y - my)
        patch = photo[y0:min(photo.shape[0], y + h + my), x0:min(photo.shape[1], x + w + mx)]
        s = height / h
        patch = cv2.resize(patch, (round(patch.shape[1] * s), round(patch.shape[0] * s)),
                           interpolation=cv2.INTER_AREA)
        out.append((patch, (round((x - x0) * s), round((y - y0) * s), round(w * s), round(h * s))))
    return out


def background(width: int, height: int) -> np.ndarray:
    """A soft grey-blue gradient: no faces in it, not a flat colour either."""
    gx = np.linspace(90, 150, width, dtype=np.float32)[None, :, None]
    gy = np.linspace(0, 40, height, dtype=np.float32)[:, None, None]
    return np.clip(gx + gy + np.array([0, 5, 20], np.float32), 0, 255).astype(np.uint8) + np.zeros(
        (height, width, 3), np.uint8)


def clip_frames(faces: list[tuple], actors: list[Actor], n_frames: int, size: tuple[int, int] = (640, 480)
                ) -> Iterator[tuple[np.ndarray, dict[int, tuple[int, int, int, int]]]]:
    """(RGB frame, {actor index: true face box (x, y, w, h)}) for each frame; a face more than half
    covered by another is not in the truth (no detector could see it)."""
    width, height = size
    base = background(width, height)
    for t in range(n_frames):
        frame, truth = base.copy(), {}
        owner = np.full((height, width), -1, np.int16)  # which actor each pixel shows
        for a, actor in enumerate(actors):
            last = n_frames - 1 if actor.last is None else actor.last
            if not actor.first <= t <= last or t in actor.hidden:
                continue
            u = (t - actor.first) / max(1, last - actor.first)
            cx = actor.start[0] + u * (actor.end[0] - actor.start[0])
            cy = actor.start[1] + u * (actor.end[1] - actor.start[1])
            patch, (fx, fy, fw, fh) = faces[actor.swaps.get(t, actor.face)]
            px, py = round(cx - fx - fw / 2), round(cy - fy - fh / 2)
            x0, y0 = max(0, px), max(0, py)
            x1, y1 = min(width, px + patch.shape[1]), min(height, py + patch.shape[0])
            if x1 <= x0 or y1 <= y0:
                continue
            frame[y0:y1, x0:x1] = patch[y0 - py:y1 - py, x0 - px:x1 - px]
            owner[y0:y1, x0:x1] = a
            truth[a] = (px + fx, py + fy, fw, fh)
        for a, (x, y, w, h) in list(truth.items()):
            seen = owner[max(0, y):y + h, max(0, x):x + w]
            if (seen == a).sum() < 0.5 * w * h:
                del truth[a]
        yield frame, truth


def write_clip(path, faces: list[tuple], actors: list[Actor], n_frames: int, fps: float = 25.0,
               size: tuple[int, int] = (640, 480)) -> list[dict[int, tuple[int, int, int, int]]]:
    """The clip written to ``path``; returns each frame's true boxes."""
    truths = []
    with VideoWriter(path) as out:
        for frame, truth in clip_frames(faces, actors, n_frames, size):
            out.write(frame, fps)
            truths.append(truth)
    return truths


def crossing(n_frames: int = 75, width: int = 640, height: int = 480) -> list[Actor]:
    """Two faces walking towards each other, the second passing in front of the first."""
    y = height / 2
    return [Actor(0, (90, y - 15), (width - 90, y + 15)), Actor(1, (width - 90, y + 15), (90, y - 15))]


def missing(n_frames: int = 75, gap: tuple[int, ...] = (30, 31, 32, 33), width: int = 640,
            height: int = 480) -> list[Actor]:
    """One face drifting right that is missing for a few frames (``gap``), one still face."""
    return [Actor(0, (120, 170), (width - 200, 200), hidden=gap), Actor(4, (width - 110, 360), (width - 110, 360))]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every (x, y, w, h) box in ``a`` with every one in ``b``."""
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    ax0, ay0, ax1, ay1 = a[:, 0, None], a[:, 1, None], (a[:, 0] + a[:, 2])[:, None], (a[:, 1] + a[:, 3])[:, None]
    bx0, by0, bx1, by1 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    inter = np.clip(np.minimum(ax1, bx1) - np.maximum(ax0, bx0), 0, None) * \
        np.clip(np.minimum(ay1, by1) - np.maximum(ay0, by0), 0, None)
    union = a[:, 2, None] * a[:, 3, None] + b[:, 2] * b[:, 3] - inter
    return inter / np.maximum(union, 1e-9)


def write_y4m(path, frames, fps: int = 25) -> None:
    """RGB frames -> an uncompressed YUV4MPEG2 file: what Chromium's fake camera plays
    (``--use-file-for-fake-video-capture``), looping."""
    import cv2

    with open(path, "wb") as out:
        for i, rgb in enumerate(frames):
            h, w = rgb.shape[:2]
            if i == 0:
                out.write(f"YUV4MPEG2 W{w} H{h} F{fps}:1 Ip A1:1 C420jpeg\n".encode())
            out.write(b"FRAME\n" + cv2.cvtColor(rgb, cv2.COLOR_RGB2YUV_I420).tobytes())

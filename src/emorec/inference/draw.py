"""Boxes and labels drawn onto a copy of the photo (CLI --annotate, video output, app)."""
from __future__ import annotations

import zlib

import cv2
import numpy as np

from emorec.inference.face import Face

# Colour-blind-safe palette (Okabe-Ito), RGB: one colour per FER class, none shared, and the
# same in annotated images, videos and timelines; other class names take one by their name's hash.
CLASS_COLORS = {"angry": (213, 94, 0), "disgust": (0, 158, 115), "fear": (204, 121, 167), "happy": (230, 159, 0),
                "neutral": (150, 150, 150), "sad": (0, 114, 178), "surprise": (86, 180, 233)}
PALETTE = [*CLASS_COLORS.values(), (240, 228, 66)]


def label_color(label: str) -> tuple[int, int, int]:
    return CLASS_COLORS.get(label) or PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]


Rect = tuple[int, int, int, int]  # x0, y0, x1, y1


def _overlap(a: Rect, b: Rect) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))


def place_labels(boxes: list[tuple[int, int, int, int]], sizes: list[tuple[int, int]], width: int,
                 height: int) -> list[Rect]:
    """Where each face's label goes: a rectangle of its ``(w, h)`` size near its box (above, below,
    inside the top, beside), the first spot that covers no other face and no label placed before;
    where every spot does, the one that covers least. Labels stay inside the image."""
    faces = [(x, y, x + w, y + h) for x, y, w, h in boxes]
    placed: list[Rect] = []
    for i, ((x, y, bw, bh), (tw, th)) in enumerate(zip(boxes, sizes)):
        spots = [(x, y - th), (x, y + bh), (x, y), (x + bw, y), (x - tw, y), (x + bw - tw, y - th),
                 (x + bw - tw, y + bh), (x, y + bh - th)]
        others = [f for j, f in enumerate(faces) if j != i]
        best, best_cost = None, None
        for sx, sy in spots:
            sx, sy = min(max(0, sx), max(0, width - tw)), min(max(0, sy), max(0, height - th))
            rect = (sx, sy, sx + tw, sy + th)
            cost = sum(_overlap(rect, r) for r in placed) * 4 + sum(_overlap(rect, f) for f in others)
            if best_cost is None or cost < best_cost:
                best, best_cost = rect, cost
            if cost == 0:
                break
        placed.append(best)
    return placed


def text_scale(width: int, height: int) -> float:
    """Font scale whose capital letters are ~1/45 of the longer side: about 15 px where the app shows
    a photo 700 px wide, and never under 0.6 (~13 px) on small photos."""
    return max(0.6, max(width, height) / 950)


def label_layout(shape: tuple[int, ...], faces: list[Face], top_k: int = 1,
                 numbered: bool = False) -> list[tuple[str, Rect, int]]:
    """Each face's label text, its rectangle in the image and its text height, as drawn."""
    h, w = shape[:2]
    scale, text_thick = text_scale(w, h), max(1, max(2, round(max(h, w) / 400)) - 1)
    texts, sizes = [], []
    for i, face in enumerate(faces, 1):
        text = ", ".join(f"{c} {p:.0%}" for c, p in face.top_k(max(1, top_k)))
        text = f"#{getattr(face, 'track', i)} {text}" if numbered else text  # a video's faces: the person's id
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, text_thick)
        texts.append((text, th))
        sizes.append((tw + 4, th + base + 4))
    rects = place_labels([f.box for f in faces], sizes, w, h)
    return [(text, rect, th) for (text, th), rect in zip(texts, rects)]


def annotate(img: np.ndarray, faces: list[Face], top_k: int = 1, numbered: bool = False) -> np.ndarray:
    """RGB image + faces -> new RGB image with a box and ``label 87%`` per face; labels are placed
    so that none covers another label or a face (:func:`place_labels`).

    ``numbered`` prefixes ``#1``, ``#2`` ... matching the CLI's face numbers (in a video, each
    person's track id; their label is the smoothed one).
    """
    out = np.ascontiguousarray(img.copy())
    h, w = out.shape[:2]
    thick = max(2, round(max(h, w) / 400))
    scale, text_thick = text_scale(w, h), max(1, thick - 1)
    for face in faces:  # boxes first, so no box line crosses a label
        x, y, bw, bh = face.box
        cv2.rectangle(out, (x, y), (x + bw, y + bh), label_color(face.label), thick)
    for face, (text, (x0, y0, x1, y1), th) in zip(faces, label_layout(out.shape, faces, top_k, numbered)):
        fill = label_color(face.label)
        ink = (0, 0, 0) if 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2] > 110 else (255, 255, 255)
        cv2.rectangle(out, (x0, y0), (x1 - 1, y1 - 1), fill, cv2.FILLED)
        cv2.putText(out, text, (x0 + 2, y0 + 2 + th), cv2.FONT_HERSHEY_SIMPLEX, scale, ink, text_thick, cv2.LINE_AA)
    return out

"""Boxes and labels drawn onto a copy of the photo (CLI --annotate, video output, app)."""
from __future__ import annotations

import zlib

import cv2
import numpy as np

from emorec.inference.face import Face

# Colour-blind-safe palette (Okabe-Ito), RGB; a label always gets the same colour.
PALETTE = [(230, 159, 0), (86, 180, 233), (0, 158, 115), (240, 228, 66), (0, 114, 178),
           (213, 94, 0), (204, 121, 167), (255, 255, 255)]


def label_color(label: str) -> tuple[int, int, int]:
    return PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]


def annotate(img: np.ndarray, faces: list[Face], top_k: int = 1, numbered: bool = False) -> np.ndarray:
    """RGB image + faces -> new RGB image with a box and ``label 87%`` per face.

    ``numbered`` prefixes ``#1``, ``#2`` ... matching the CLI's face numbers.
    """
    out = np.ascontiguousarray(img.copy())
    h, w = out.shape[:2]
    thick = max(2, round(max(h, w) / 400))
    scale = max(0.6, max(h, w) / 1100)  # readable when the photo is shown at page width
    text_thick = max(1, thick - 1)
    for face in faces:  # boxes first, so no box line crosses a label
        x, y, bw, bh = face.box
        cv2.rectangle(out, (x, y), (x + bw, y + bh), label_color(face.label), thick)
    for i, face in enumerate(faces, 1):
        x, y, bw, bh = face.box
        text = ", ".join(f"{c} {p:.0%}" for c, p in face.top_k(max(1, top_k)))
        if numbered:
            text = f"#{i} {text}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, text_thick)
        # above the box, or inside its top edge when there is no room above
        ty = y - base - 2 if y - th - base - 2 >= 0 else y + th + 2
        cv2.rectangle(out, (x, ty - th - 2), (x + tw + 2, ty + base), label_color(face.label), cv2.FILLED)
        cv2.putText(out, text, (x + 1, ty), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), text_thick, cv2.LINE_AA)
    return out

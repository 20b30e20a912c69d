"""Pictures and tables for the page: boxes with labels on the photo, probability rows."""
from __future__ import annotations

import cv2
import numpy as np

from emorec.inference.types import Face

# Distinct, readable on photos; RGB.
COLORS = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
          (70, 240, 240), (240, 50, 230), (128, 128, 0)]
FONT = cv2.FONT_HERSHEY_SIMPLEX


def face_caption(i: int, face: Face) -> str:
    return f"{i}: {face.label} {face.confidence:.0%}"


def draw_faces(img: np.ndarray, faces: list[Face]) -> np.ndarray:
    """A copy of the RGB image with a numbered box and 'label confidence' on every face."""
    out = np.ascontiguousarray(img.copy())
    side = max(out.shape[:2])
    thick = max(1, round(side / 400))
    scale = max(0.4, side / 1400)
    for i, face in enumerate(faces, 1):
        x, y, w, h = face.box
        color = COLORS[(i - 1) % len(COLORS)]
        cv2.rectangle(out, (x, y), (x + w, y + h), color, thick + 1)
        text = face_caption(i, face)
        (tw, th), base = cv2.getTextSize(text, FONT, scale, thick)
        # Label above the box, or below it when the box touches the top edge.
        ty = y - base - 2 if y - th - base - 2 >= 0 else min(out.shape[0] - base, y + h + th + 2)
        tx = min(max(0, x), max(0, out.shape[1] - tw))
        cv2.rectangle(out, (tx, ty - th - 2), (tx + tw, ty + base), color, -1)
        cv2.putText(out, text, (tx, ty), FONT, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return out


def prob_rows(probs: dict[str, float], classes: list[str]) -> dict[str, list]:
    """Column data (emotion, probability) in the model's class order, for a table or chart."""
    return {"emotion": list(classes), "probability": [round(float(probs[c]), 4) for c in classes]}


def enlarge(img: np.ndarray, side: int) -> np.ndarray:
    """Small face crops (48 px) scaled up for viewing; only the display copy."""
    h, w = img.shape[:2]
    if max(h, w) >= side:
        return img
    f = side / max(h, w)
    return cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC)

"""Data for the page's tables and charts, and face crops made viewable.
(Boxes on the photo come from emorec.inference.draw, shared with the CLI.)"""
from __future__ import annotations

import cv2
import numpy as np


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

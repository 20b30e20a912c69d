"""Data for the page's tables and charts, and face crops made viewable.
(Boxes on the photo come from emorec.inference.draw, shared with the CLI.)"""
from __future__ import annotations

import base64

import cv2
import numpy as np


def png_data_uri(img: np.ndarray) -> str:
    """An RGB array as a ``data:image/png`` URI (a table's image column)."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    return "data:image/png;base64," + base64.b64encode(buf.tobytes()).decode()


def enlarge(img: np.ndarray, side: int) -> np.ndarray:
    """Small face crops (48 px) scaled up for viewing; only the display copy."""
    h, w = img.shape[:2]
    if max(h, w) >= side:
        return img
    f = side / max(h, w)
    return cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_CUBIC)

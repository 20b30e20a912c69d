"""Pixels -> model input, identical for training and inference (numpy + OpenCV, no torch).

A face crop is turned into a square ``(C, S, S)`` uint8 array: grayscale if the model
is grayscale, resized with area interpolation when shrinking and bilinear when
enlarging. Training caches exactly these arrays; inference makes them from detector
crops with :func:`crop_face`. The model itself takes float input in [0, 1] and does
its own mean/std normalisation, so there is nothing else to keep in sync.
"""
from __future__ import annotations

import cv2
import numpy as np


def face_to_array(img: np.ndarray, img_size: int, grayscale: bool, source_size: int = 0) -> np.ndarray:
    """RGB (H, W, 3) or gray (H, W) uint8 -> (C, img_size, img_size) uint8.

    ``source_size``: a face larger than this is first reduced to it, so that a sharp photo
    crop reaches the model as soft as the small training faces did (0: no such step).
    """
    if img.ndim == 3 and img.shape[2] == 1:
        img = img[:, :, 0]
    if grayscale and img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)
    elif not grayscale and img.ndim == 2:
        img = cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if 0 < source_size < max(img.shape[:2]) and source_size != img_size:
        img = cv2.resize(img, (source_size, source_size), interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    if (h, w) != (img_size, img_size):
        interp = cv2.INTER_AREA if max(h, w) > img_size else cv2.INTER_LINEAR
        img = cv2.resize(img, (img_size, img_size), interpolation=interp)
    if img.ndim == 2:
        return img[None]
    return np.ascontiguousarray(img.transpose(2, 0, 1))


PIXEL_MAX = 255.0  # uint8 pixels / PIXEL_MAX: the model's [0, 1] input, in training, export and inference


def to_float(batch: np.ndarray) -> np.ndarray:
    """uint8 (N, C, H, W) -> float32 in [0, 1], the model's input."""
    return batch.astype(np.float32) / PIXEL_MAX


def square_box(box: tuple[float, float, float, float], margin: float) -> tuple[int, int, int, int]:
    """Detector box (x, y, w, h) -> square (x0, y0, x1, y1) grown by ``margin`` per side."""
    x, y, w, h = box
    cx, cy = x + w / 2.0, y + h / 2.0
    side = max(w, h) * (1.0 + 2.0 * margin)
    x0, y0 = int(round(cx - side / 2)), int(round(cy - side / 2))
    s = int(round(side))
    return x0, y0, x0 + s, y0 + s


def crop_face(img: np.ndarray, box: tuple[float, float, float, float], margin: float) -> np.ndarray:
    """Square crop around a detected face; parts outside the photo are edge-replicated."""
    x0, y0, x1, y1 = square_box(box, margin)
    h, w = img.shape[:2]
    pad = max(0, -x0, -y0, x1 - w, y1 - h)
    if pad:
        img = cv2.copyMakeBorder(img, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
        x0, y0, x1, y1 = x0 + pad, y0 + pad, x1 + pad, y1 + pad
    return img[y0:y1, x0:x1].copy()

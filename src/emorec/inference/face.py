"""What a prediction returns: one :class:`Face` per detected face, and the one JSON shape of an
image's result (:func:`image_record`), the same in the CLI's ``--json``, the REST API and the library."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


TOP_K = 1  # classes listed in a face's "top" unless asked otherwise: CLI, API and library alike


@dataclass
class Face:
    """One face in one image. ``box`` is (x, y, w, h) in original-image pixels: the top-left
    corner, then width and height. ``to_dict`` is the one JSON shape of a face, the same in the
    CLI's ``--json``, the REST API and the library:

        {"box": [x, y, w, h], "label": "happy", "confidence": 0.89,
         "probs": {"angry": 0.01, ...}, "det_score": 0.93,
         "top": [{"label": "happy", "prob": 0.89}, ...]}
    """

    box: tuple[int, int, int, int]
    label: str
    confidence: float
    probs: dict[str, float]
    det_score: float = 1.0

    def top_k(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.probs.items(), key=lambda kv: -kv[1])[:k]

    def to_dict(self, top_k: int = TOP_K) -> dict[str, Any]:
        return {"box": list(self.box), "label": self.label, "confidence": self.confidence,
                "probs": self.probs, "det_score": self.det_score,
                "top": [{"label": c, "prob": p} for c, p in self.top_k(top_k)]}


def largest_face(faces: list[Face]) -> Face | None:
    """The face with the largest box (the subject of a portrait), None when there is none."""
    return max(faces, key=lambda f: f.box[2] * f.box[3]) if faces else None


def image_record(path: str, faces: list[Face] | None, size: tuple[int, int] | None = None, top_k: int = TOP_K,
                 error: str | None = None, **extra: Any) -> dict[str, Any]:
    """One image's result, the one envelope everywhere (``emorec predict --json``'s ``results``,
    ``POST /predict``, each item of ``POST /predict/batch``)::

        {"path": "photo.jpg", "width": 640, "height": 480, "faces": [face, ...], "error": null}

    A failed image has ``"faces": []``, null width and height, and ``"error"`` saying why; a video
    frame adds ``"frame"`` and ``"time_s"`` (``extra``)."""
    w, h = size if size else (None, None)
    return {"path": str(path), **extra, "width": w, "height": h,
            "faces": [f.to_dict(top_k) for f in faces or []], "error": error}

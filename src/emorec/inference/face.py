"""What a prediction returns: one :class:`Face` per detected face."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any


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

    def to_dict(self, top_k: int = 3) -> dict[str, Any]:
        return {"box": list(self.box), "label": self.label, "confidence": self.confidence,
                "probs": self.probs, "det_score": self.det_score,
                "top": [{"label": c, "prob": p} for c, p in self.top_k(top_k)]}


def largest_face(faces: list[Face]) -> Face | None:
    """The face with the largest box (the subject of a portrait), None when there is none."""
    return max(faces, key=lambda f: f.box[2] * f.box[3]) if faces else None

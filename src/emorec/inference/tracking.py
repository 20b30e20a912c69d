"""Which face is which across video frames: a track id per face that stays with the person.

Each track's box is predicted forward at its own velocity (pixels per second, so analysing every
Nth frame or another frame rate changes nothing), then boxes and predictions are paired by how
near their centres are, in face widths, with a reach that grows while a face is unseen (Hungarian,
in ``_pairs``); a track not seen for ``max_missing_s`` ends. The choice of this tracker
over ``trackers``' ByteTrack and SORT is measured in ``studies/tracker_choice.md``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

Box = tuple[float, float, float, float]  # x, y, w, h


def nearness(predicted: np.ndarray, missing_s: np.ndarray, found: np.ndarray, reach: float,
             reach_per_s: float) -> np.ndarray:
    """1 where a found box sits on a track's prediction, falling to 0 at a centre distance of
    ``reach + reach_per_s * missing_s`` face widths; 0 too for boxes of another size (over 1.6x)."""
    if not len(predicted) or not len(found):
        return np.zeros((len(predicted), len(found)))
    pc = predicted[:, :2] + predicted[:, 2:] / 2
    fc = found[:, :2] + found[:, 2:] / 2
    side = np.sqrt(predicted[:, 2] * predicted[:, 3])[:, None]
    dist = np.linalg.norm(pc[:, None] - fc[None], axis=2) / np.maximum(side, 1)
    ratio = side / np.sqrt(found[:, 2] * found[:, 3])[None]
    near = 1 - dist / (reach + reach_per_s * missing_s[:, None])
    return np.where((ratio < 1.6) & (ratio > 1 / 1.6), np.clip(near, 0, None), 0)


def _pairs(score: np.ndarray, min_score: float) -> list[tuple[int, int]]:
    """Rows paired with columns for the largest total score (each pair above ``min_score``)."""
    if not score.size:
        return []
    try:
        from scipy.optimize import linear_sum_assignment
        rows, cols = linear_sum_assignment(-score)
        pairs = list(zip(rows.tolist(), cols.tolist()))
    except ImportError:  # scipy is optional: best pair first is the same for the few faces of a video
        pairs, used_r, used_c = [], set(), set()
        for flat in np.argsort(-score, axis=None):
            r, c = divmod(int(flat), score.shape[1])
            if r not in used_r and c not in used_c:
                pairs.append((r, c))
                used_r.add(r)
                used_c.add(c)
    return [(r, c) for r, c in pairs if score[r, c] > min_score]


@dataclass
class Track:
    id: int
    box: np.ndarray  # x, y, w, h at ``time_s``
    velocity: np.ndarray  # of the box's x, y per second (its size is not extrapolated)
    time_s: float  # when last seen

    def predict(self, time_s: float) -> np.ndarray:
        return np.concatenate([self.box[:2] + self.velocity * (time_s - self.time_s), self.box[2:]])


class FaceTracker:
    """``update(boxes, time_s)`` -> a track id per box (1, 2, 3 ... in order of first appearance).

    ``max_missing_s``: how long a face may go undetected (turned away, covered, a missed
    detection) and come back under the same id. ``reach``: how far (in face widths) a face may be
    from where its track was expected and still be paired with it; the reach grows by
    ``reach_per_s`` for each second the face was unseen. A face paired with no track starts one."""

    def __init__(self, max_missing_s: float = 1.0, reach: float = 0.6, reach_per_s: float = 1.5,
                 velocity_weight: float = 0.2):
        self.max_missing_s, self.reach, self.reach_per_s = max_missing_s, reach, reach_per_s
        self.velocity_weight = velocity_weight
        self.tracks: list[Track] = []
        self.next_id = 1

    def update(self, boxes: list[Box], time_s: float) -> list[int]:
        self.tracks = [t for t in self.tracks if time_s - t.time_s <= self.max_missing_s]
        found = np.asarray(boxes, np.float64).reshape(-1, 4)
        ids = [0] * len(found)
        # Faces seen on the last update are paired first, the unseen ones with what is left (a
        # matching cascade): where two people cross, the hidden one's prediction must not take
        # the visible one's box.
        latest = max((t.time_s for t in self.tracks), default=None)
        for stage in ([t for t in self.tracks if t.time_s == latest], [t for t in self.tracks if t.time_s != latest]):
            free = [c for c, i in enumerate(ids) if i == 0]
            if not stage or not free:
                continue
            predicted = np.array([t.predict(time_s) for t in stage])
            missing_s = np.array([time_s - t.time_s for t in stage])
            near = nearness(predicted, missing_s, found[free], self.reach, self.reach_per_s)
            for r, k in _pairs(near, 0.0):
                self._move(stage[r], found[free[k]], time_s)
                ids[free[k]] = stage[r].id
        for c in (c for c, i in enumerate(ids) if i == 0):
            self.tracks.append(Track(self.next_id, found[c], np.zeros(2), time_s))
            ids[c] = self.next_id
            self.next_id += 1
        return ids

    def _move(self, track: Track, box: np.ndarray, time_s: float) -> None:
        dt = time_s - track.time_s
        if dt > 0:  # velocity: a running mean, so one jittery box does not throw the prediction
            seen = (box[:2] - track.box[:2]) / dt
            track.velocity = (1 - self.velocity_weight) * track.velocity + self.velocity_weight * seen
        track.box, track.time_s = box, time_s

"""Who felt what, when: faces tracked across a video's frames, each person's emotions smoothed over
time, and a summary per person (time on screen, share of time per emotion, strongest moments).

    people = People(predictor.classes, smooth_s=0.5)
    for frame, faces in track_frames(VideoReader(path, every), predictor, people):
        ...                                  # faces: TrackedFace, label = the smoothed one
    people.summary()                         # one dict per person
"""
from __future__ import annotations

import math
from array import array
from dataclasses import dataclass, field
from typing import Any, Iterator

import numpy as np

from emorec.inference.face import Face
from emorec.inference.tracking import FaceTracker
from emorec.inference.video import Frame, VideoReader

MOMENTS = 3  # strongest moments listed per person


@dataclass
class TrackedFace(Face):
    """A face in a video frame: ``track`` is the person's id, ``smoothed`` the probabilities
    averaged over time; ``label``, ``confidence`` and ``top`` come from ``smoothed``, ``probs``
    stays the frame's own (raw) answer. JSON: a face's usual keys plus ``"track"`` and ``"smoothed"``."""

    track: int = 0
    smoothed: dict[str, float] = field(default_factory=dict)

    def top_k(self, k: int) -> list[tuple[str, float]]:
        return sorted(self.smoothed.items(), key=lambda kv: -kv[1])[:k]

    def to_dict(self, top_k: int = 1) -> dict[str, Any]:
        return {"track": self.track, **super().to_dict(top_k), "smoothed": self.smoothed}


def smoothing_weight(dt: float, smooth_s: float) -> float:
    """Weight of a new frame in an exponential average with time constant ``smooth_s`` seconds,
    ``dt`` seconds after the previous one: the same curve at any frame rate or ``--every``."""
    if smooth_s <= 0:
        return 1.0
    return 1.0 - math.exp(-max(dt, 0.0) / smooth_s)


@dataclass
class Person:
    track: int
    first_s: float
    last_s: float
    smoothed: np.ndarray  # latest smoothed probabilities
    seen_s: float = 0.0  # time on screen: analysed frames seen x the time each stands for
    label_s: np.ndarray | None = None  # time per smoothed label
    peak: np.ndarray | None = None  # highest smoothed probability per class while it was the label
    peak_s: np.ndarray | None = None  # ... and when
    times: array = field(default_factory=lambda: array("f"))  # the timeline, kept compact
    series: array = field(default_factory=lambda: array("f"))


class People:
    """Faces of successive analysed frames -> :class:`TrackedFace` (track id, smoothed label), and
    what is known of each person so far. ``keep_series``: keep the smoothed probabilities of every
    analysed frame for the timeline (4 bytes per class and frame)."""

    def __init__(self, classes: list[str], *, smooth_s: float = 0.5, max_missing_s: float = 1.0,
                 keep_series: bool = True):
        self.classes, self.smooth_s = list(classes), smooth_s
        self.keep_series = keep_series
        self.tracker = FaceTracker(max_missing_s=max_missing_s)
        self.people: dict[int, Person] = {}

    def update(self, faces: list[Face], time_s: float, step_s: float) -> list[TrackedFace]:
        """The faces of the frame at ``time_s``, which stands for ``step_s`` seconds of video
        (``every / fps``): what makes up each person's time on screen."""
        ids = self.tracker.update([f.box for f in faces], time_s)
        out = []
        for face, track in zip(faces, ids):
            raw = np.array([face.probs[c] for c in self.classes], np.float64)
            p = self.people.get(track)
            if p is None:
                k = len(self.classes)
                p = self.people[track] = Person(track, time_s, time_s, raw, label_s=np.zeros(k),
                                                peak=np.zeros(k), peak_s=np.zeros(k))
            else:
                w = smoothing_weight(time_s - p.last_s, self.smooth_s)
                p.smoothed = raw if w >= 1 else p.smoothed + w * (raw - p.smoothed)
                p.last_s = time_s
            best = int(p.smoothed.argmax())
            p.seen_s += step_s
            p.label_s[best] += step_s
            if p.smoothed[best] > p.peak[best]:
                p.peak[best], p.peak_s[best] = p.smoothed[best], time_s
            if self.keep_series:
                p.times.append(time_s)
                p.series.extend(p.smoothed.astype(np.float32))
            smoothed = {c: float(v) for c, v in zip(self.classes, p.smoothed)}
            out.append(TrackedFace(box=face.box, label=self.classes[best], confidence=float(p.smoothed[best]),
                                   probs=face.probs, det_score=face.det_score, track=track, smoothed=smoothed))
        return out

    def summary(self) -> list[dict[str, Any]]:
        """One dict per person, in order of first appearance::

            {"track": 1, "first_s": 0.0, "last_s": 11.96, "seen_s": 12.0, "dominant": "happy",
             "share": {"happy": 0.8, ...}, "moments": [{"time_s": 3.4, "emotion": "happy", "prob": 0.97}]}
        """
        out = []
        for p in self.people.values():
            share = p.label_s / max(p.seen_s, 1e-9)
            shown = np.flatnonzero(p.peak > 0)
            moments = sorted(shown, key=lambda i: -p.peak[i])[:MOMENTS]
            out.append({"track": p.track, "first_s": round(p.first_s, 3), "last_s": round(p.last_s, 3),
                        "seen_s": round(p.seen_s, 3), "dominant": self.classes[int(p.label_s.argmax())],
                        "share": {c: round(float(s), 4) for c, s in zip(self.classes, share)},
                        "moments": [{"time_s": round(float(p.peak_s[i]), 3), "emotion": self.classes[i],
                                     "prob": round(float(p.peak[i]), 4)} for i in moments]})
        return out

    def series(self) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Per person: times (s) and smoothed probabilities (times x classes), for the timeline."""
        k = len(self.classes)
        return {t: (np.frombuffer(p.times, np.float32), np.frombuffer(p.series, np.float32).reshape(-1, k))
                for t, p in self.people.items()}


def track_frames(video: VideoReader, predictor, people: People) -> Iterator[tuple[Frame, list[TrackedFace]]]:
    """(frame, its tracked faces) for each frame of ``video``; a frame that is not analysed
    (``keep`` False) carries the latest analysed faces, for drawing."""
    faces: list[TrackedFace] = []
    step_s = video.every / video.rate
    for frame in video:
        if frame.keep:
            faces = people.update(predictor.predict([frame.rgb])[0], frame.time_s, step_s)
        yield frame, faces


def video_summary(path: str, video: VideoReader, people: People) -> dict[str, Any]:
    """A video's facts and its people (after reading it): the ``"videos"`` items of ``--json``
    and ``--summary``, and ``POST /predict/video``'s ``"summary"``."""
    return {"path": str(path), "frames": video.frames, "fps": round(video.fps, 3),
            "duration_s": round(video.frames / video.rate, 3), "every": video.every, "smooth_s": people.smooth_s,
            "people": people.summary()}


def summary_table(summary: dict[str, Any]) -> str:
    """The summary as lines for a terminal: one row per person."""
    people = summary["people"]
    head = f"{summary['path']}: {summary['duration_s'] or 0:.1f} s, {summary['frames']} frames, " \
           f"{len(people)} {'person' if len(people) == 1 else 'people'}"
    if not people:
        return head + "  (no face found)"
    rows = [("person", "on screen", "seen", "dominant", "share of time", "strongest moments")]
    for p in people:
        shares = ", ".join(f"{c} {s:.0%}" for c, s in sorted(p["share"].items(), key=lambda kv: -kv[1]) if s >= 0.005)
        moments = ", ".join(f"{m['emotion']} {m['prob']:.2f} at {m['time_s']:.1f} s" for m in p["moments"])
        rows.append((f"#{p['track']}", f"{p['seen_s']:.1f} s", f"{p['first_s']:.1f}-{p['last_s']:.1f} s",
                     p["dominant"], shares, moments))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
    return "\n".join([head, *(l.rstrip() for l in lines)])

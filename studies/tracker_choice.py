"""Which face tracker: emorec's own (``inference.tracking.FaceTracker``) against the maintained
``trackers`` package (ByteTrack, SORT, OC-SORT). norfair 2.3.0 was the other candidate; it pins
numpy<2 and cannot be installed beside opencv-python-headless 4.14 (numpy>=2).

Clips from ``inference.clips`` (faces of examples/multi_face.jpg moved along known paths), YuNet
run once per frame, then each tracker over the same boxes. ID switches: times a true face's id
changes from the id it had when last detected (MOT's IDSW); unlabelled: detections given no id.

    pip install trackers==2.6.1          # needs supervision, rich, and opencv-python
    python studies/tracker_choice.py     # prints studies/tracker_choice.md's table
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from emorec.detect import make_detector
from emorec.imageio import read_image
from emorec.inference import clips
from emorec.inference.tracking import FaceTracker, _pairs
from emorec.inference.video import read_frames

ROOT = Path(__file__).resolve().parents[1]
FPS = 25.0


def scenes():
    w, h = 640, 480
    three = [clips.Actor(0, (100, 120), (540, 140)), clips.Actor(1, (540, 360), (100, 340)),
             clips.Actor(2, (320, 100), (330, 380), hidden=(40, 41, 42))]
    fast = [clips.Actor(0, (80, 200), (w - 80, 260)), clips.Actor(1, (w - 80, 260), (80, 200))]
    return {"crossing (2 faces)": (clips.crossing(), 75, 1), "missing 4 frames": (clips.missing(), 75, 1),
            "3 faces, one gap": (three, 100, 1), "fast crossing, every 3rd frame": (fast, 60, 3)}


class Library:
    """A ``trackers`` tracker behind FaceTracker's update(boxes, time_s) -> ids."""

    def __init__(self, cls, **kw):
        import supervision as sv

        self.sv = sv  # lost_track_buffer=30 frames at 30 fps: 1 s, as FaceTracker's max_missing_s
        self.t = cls(lost_track_buffer=30, frame_rate=FPS, minimum_consecutive_frames=1, **kw)

    def update(self, boxes, scores, time_s):
        sv = self.sv
        xyxy = np.array([[x, y, x + w, y + h] for x, y, w, h in boxes], np.float32).reshape(-1, 4)
        det = sv.Detections(xyxy=xyxy, confidence=np.asarray(scores, np.float32),
                            data={"i": np.arange(len(boxes))})
        out = self.t.update(det, timestamp=time_s)
        ids = [-1] * len(boxes)
        for i, tid in zip(out.data["i"], out.tracker_id):
            ids[int(i)] = int(tid)
        return ids


class Own:
    def __init__(self):
        self.t = FaceTracker()

    def update(self, boxes, scores, time_s):
        return self.t.update(boxes, time_s)


def score(truths, dets, ids_per_frame):
    switches, unlabelled, last = 0, 0, {}
    for truth, (boxes, _), ids in zip(truths, dets, ids_per_frame):
        if not truth or not boxes:
            continue
        actors = list(truth)
        iou = clips.iou_matrix(np.array([truth[a] for a in actors], float), np.array(boxes, float))
        for r, c in _pairs(iou, 0.3):  # each true face its own detection
            a = actors[r]
            if ids[c] < 0:
                unlabelled += 1
                continue
            if a in last and last[a] != ids[c]:
                switches += 1
            last[a] = ids[c]
    return switches, unlabelled


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    det = make_detector("yunet")
    photo = read_image(ROOT / "examples" / "multi_face.jpg")
    faces = clips.photo_faces(photo, [b for b, _ in det.detect(photo)])
    try:
        import trackers
        makers = {"emorec FaceTracker": Own, "trackers ByteTrack": lambda: Library(trackers.ByteTrackTracker, track_activation_threshold=0.5),
                  "trackers SORT": lambda: Library(trackers.SORTTracker, track_activation_threshold=0.5),
                  "trackers OC-SORT": lambda: Library(trackers.OCSORTTracker)}
    except ImportError:
        print("trackers is not installed: only emorec's tracker is measured", file=sys.stderr)
        makers = {"emorec FaceTracker": Own}
    rows = {name: [] for name in makers}
    with tempfile.TemporaryDirectory() as tmp:
        for scene, (actors, n, every) in scenes().items():
            path = Path(tmp) / "clip.avi"
            truths = clips.write_clip(path, faces, actors, n, FPS)
            frames = [f for f in read_frames(path, every)]
            dets = [tuple(zip(*det.detect(f.rgb))) or ((), ()) for f in frames]
            truths = [truths[f.index] for f in frames]
            for name, make in makers.items():
                tracker, ids, t0 = make(), [], time.perf_counter()
                for f, (boxes, scores) in zip(frames, dets):
                    ids.append(tracker.update(list(boxes), list(scores), f.time_s))
                ms = (time.perf_counter() - t0) / len(frames) * 1000
                rows[name].append((scene, *score(truths, dets, ids), ms))
    print("| tracker | " + " | ".join(s for s, *_ in next(iter(rows.values()))) + " | ms per frame (mean) |")
    print("|---|" + "---|" * (len(scenes()) + 1))
    for name, r in rows.items():
        cells = " | ".join(f"{sw} switches" + (f", {un} unlabelled" if un else "") for _, sw, un, _ in r)
        print(f"| {name} | {cells} | {np.mean([m for *_, m in r]):.3f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

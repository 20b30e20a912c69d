"""Video about people: tracks, smoothing, summaries, timelines, on clips built here from
examples/multi_face.jpg with faces moved along known paths (``emorec.inference.clips``)."""
from __future__ import annotations

import csv
import io
import json
import math
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from emorec.cli import main
from emorec.detect import make_detector
from emorec.imageio import read_image
from emorec.inference import clips
from emorec.inference.draw import label_color, label_layout
from emorec.inference.face import Face
from emorec.inference.people import People, track_frames
from emorec.inference.predictor import Predictor
from emorec.inference.tracking import FaceTracker
from emorec.inference.video import VideoReader

FPS = 25.0
HAPPY, SAD = 1, 2  # faces of multi_face.jpg, left to right: the 2nd is read as happy, the 3rd as sad


@pytest.fixture(scope="module")
def faces(yunet_path):
    photo = read_image(ROOT / "examples" / "multi_face.jpg")
    return clips.photo_faces(photo, [b for b, _ in make_detector("yunet", model_path=yunet_path).detect(photo)])


@pytest.fixture(scope="module")
def predictor(yunet_path):
    return Predictor.from_path("5class", detector_path=yunet_path)


@pytest.fixture(scope="module")
def crossing(faces, tmp_path_factory):
    path = tmp_path_factory.mktemp("clips") / "crossing.avi"
    return path, clips.write_clip(path, faces, clips.crossing(), 75, FPS)


@pytest.fixture(scope="module")
def gap(faces, tmp_path_factory):
    """Actor 0 moves right and is missing on frames 30-33; actor 1 stays still all 75 frames."""
    path = tmp_path_factory.mktemp("clips") / "gap.avi"
    return path, clips.write_clip(path, faces, clips.missing(), 75, FPS)


@pytest.fixture(scope="module")
def flip(yunet_path, tmp_path_factory):
    """One happy face, shown as the sad face on frame 20 only (faces 90 px tall, where the shipped
    model reads that face as sad 0.54, happy 0.35)."""
    photo = read_image(ROOT / "examples" / "multi_face.jpg")
    boxes = [b for b, _ in make_detector("yunet", model_path=yunet_path).detect(photo)]
    path = tmp_path_factory.mktemp("clips") / "flip.avi"
    return path, clips.write_clip(path, clips.photo_faces(photo, boxes, height=90),
                                  [clips.Actor(HAPPY, (320, 170), (320, 170), swaps={20: SAD})], 40, FPS)


def run(path, predictor, every=1, smooth_s=0.5):
    video, people = VideoReader(path, every), People(predictor.classes, smooth_s=smooth_s)
    frames = [(f.index, faces) for f, faces in track_frames(video, predictor, people)]
    return frames, people


def true_actor(truth: dict, face) -> int | None:
    """The actor whose true box this face's box overlaps most (IoU over 0.3), else None."""
    if not truth:
        return None
    actors = list(truth)
    iou = clips.iou_matrix(np.array([truth[a] for a in actors], float), np.array([face.box], float))[:, 0]
    return actors[int(iou.argmax())] if iou.max() > 0.3 else None


def id_switches(frames, truths) -> int:
    switches, last = 0, {}
    for index, faces in frames:
        for face in faces:
            a = true_actor(truths[index], face)
            if a is None:
                continue
            switches += a in last and last[a] != face.track
            last[a] = face.track
    return switches


def test_two_people_crossing_keep_their_ids(crossing, predictor):
    path, truths = crossing
    frames, people = run(path, predictor)
    assert id_switches(frames, truths) <= 1
    # both were found before and after they crossed, each under the id it started with
    first = {true_actor(truths[0], f): f.track for f in frames[0][1]}
    last = {true_actor(truths[-1], f): f.track for f in frames[-1][1]}
    assert first == last and sorted(first) == [0, 1]


def test_a_face_missing_for_a_few_frames_keeps_its_id(gap, predictor):
    path, truths = gap
    frames, people = run(path, predictor)
    assert id_switches(frames, truths) == 0 and len(people.summary()) == 2
    assert [len(faces) for i, faces in frames if i in (30, 33)] == [1, 1]  # the gap really is one


@pytest.mark.slow
def test_summary_times_match_the_paths(gap, predictor):
    """Actor 0 is seen on 71 of 75 frames (0.0-2.96 s), actor 1 on all 75: within a frame (0.04 s)."""
    path, truths = gap
    _, people = run(path, predictor)
    s0, s1 = people.summary()  # in order of first appearance; on frame 0, actor 0 (left) is found first
    frame = 1 / FPS
    assert s0["seen_s"] == pytest.approx(71 / FPS, abs=frame) and s1["seen_s"] == pytest.approx(75 / FPS, abs=frame)
    assert s0["first_s"] == pytest.approx(0, abs=frame) and s0["last_s"] == pytest.approx(74 / FPS, abs=frame)
    assert s1["first_s"] == pytest.approx(0, abs=frame) and s1["last_s"] == pytest.approx(74 / FPS, abs=frame)
    assert sum(s0["share"].values()) == pytest.approx(1) and s0["dominant"] == max(s0["share"], key=s0["share"].get)
    # and with every 5th frame the same times come out, 5 frames' worth each
    _, sparse = run(path, predictor, every=5)
    s0_sparse = sorted(sparse.summary(), key=lambda p: p["track"])[0]
    assert s0_sparse["seen_s"] == pytest.approx(s0["seen_s"], abs=5 * frame)


def test_smoothing_removes_a_single_frame_flip(flip, predictor):
    path, _ = flip
    raw, _ = run(path, predictor, smooth_s=0)
    smooth, _ = run(path, predictor, smooth_s=0.5)
    raw_labels = [faces[0].label for _, faces in raw]
    assert raw_labels[20] == "sad" and set(raw_labels[:20] + raw_labels[21:]) == {"happy"}  # the flip is real
    assert {faces[0].label for _, faces in smooth} == {"happy"}
    assert smooth[20][1][0].probs["sad"] == pytest.approx(raw[20][1][0].probs["sad"])  # raw probs stay raw
    assert {faces[0].track for _, faces in smooth} == {1}


def face(probs: dict[str, float], box=(100, 100, 80, 80)) -> Face:
    best = max(probs, key=probs.get)
    return Face(box=box, label=best, confidence=probs[best], probs=probs)


@pytest.mark.parametrize("fps, every", [(25, 1), (25, 5), (10, 1), (60, 3)])
def test_smoothing_depends_on_seconds_not_frames(fps, every):
    """A change from happy to sad at 1 s: after 0.5 s more (one time constant), sad's smoothed share
    is 1 - 1/e whatever the frame rate or --every."""
    people = People(["happy", "sad"], smooth_s=0.5)
    step = every / fps
    t, out = 0.0, None
    while t <= 1.5 + 1e-9:
        probs = {"happy": 1.0, "sad": 0.0} if t < 1 - 1e-9 else {"happy": 0.0, "sad": 1.0}
        out = people.update([face(probs)], t, step)[0]
        t = round(t + step, 9)
    last_t = round(t - step, 9)
    first_sad = math.ceil((1 - 1e-9) / step) * step  # the first analysed frame at or after 1 s
    expected = 1 - math.exp(-(last_t - first_sad + step) / 0.5)  # each frame stands for `step` seconds
    assert out.smoothed["sad"] == pytest.approx(expected, abs=1e-6)
    assert out.smoothed["sad"] == pytest.approx(1 - math.exp(-1), abs=0.15)


def test_smoothing_zero_is_raw():
    people = People(["happy", "sad"], smooth_s=0)
    people.update([face({"happy": 0.9, "sad": 0.1})], 0.0, 0.04)
    out = people.update([face({"happy": 0.2, "sad": 0.8})], 0.04, 0.04)[0]
    assert out.label == "sad" and out.smoothed == {"happy": 0.2, "sad": 0.8}


def test_tracker_ids_follow_boxes_and_end_after_max_missing():
    t = FaceTracker(max_missing_s=0.5)
    assert t.update([(0, 0, 50, 50), (200, 0, 50, 50)], 0.0) == [1, 2]
    assert t.update([(210, 0, 50, 50), (10, 0, 50, 50)], 0.1) == [2, 1]  # order of boxes does not matter
    assert t.update([(20, 0, 50, 50)], 0.2) == [1]
    assert t.update([(30, 0, 50, 50), (240, 0, 50, 50)], 0.6) == [1, 2]  # 2 unseen 0.4 s: still 2
    assert t.update([(250, 0, 50, 50)], 1.2) == [3]  # 1 and 2 unseen over 0.5 s: a new person


@pytest.mark.slow
def test_cli_outputs_for_a_video(crossing, tmp_path, yunet_path, monkeypatch, capsys):
    monkeypatch.setenv("EMOREC_YUNET", str(yunet_path))
    path, truths = crossing
    summary, timeline, video = tmp_path / "s.json", tmp_path / "t.png", tmp_path / "a.avi"
    rc = main(["predict", str(path), "--csv", "--summary", str(summary), "--timeline", str(timeline),
               "--video-out", str(video), "--every", "2"])
    out, err = capsys.readouterr()
    assert rc == 0 and err == ""
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {r["frame"] for r in rows} == {str(i) for i in range(0, 75, 2)} and {r["track"] for r in rows} == {"1", "2"}
    assert all(r["label"] == max(("angry", "fear", "happy", "sad", "surprise"), key=lambda c: float(r[f"s_{c}"]))
               for r in rows)  # the label is the smoothed one
    people = json.loads(summary.read_text())[0]["people"]
    assert [p["track"] for p in people] == [1, 2] and all(p["seen_s"] > 2 for p in people)
    png = np.asarray(Image.open(timeline).convert("RGB"))
    happy = np.all(np.abs(png.astype(int) - label_color("happy")) < 8, axis=2)
    rows_with_happy = np.flatnonzero(happy.any(axis=1))
    assert png.shape[0] > 300 and rows_with_happy.size  # the happy lines are drawn, in happy's colour
    frames = list(VideoReader(video))
    assert len(frames) == 75  # every frame written, labelled with the latest analysed one
    rc = main(["predict", str(path), "--jsonl", "--every", "25", "--smooth", "0"])
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["frame"] for r in lines] == [0, 25, 50]
    assert all(f["smoothed"] == f["probs"] and f["track"] in (1, 2) for r in lines for f in r["faces"])


def test_labels_never_cover_each_other_on_the_crossing(crossing, predictor):
    path, _ = crossing
    frames, _ = run(path, predictor, every=3)
    for _, faces in frames:
        rects = [r for _, r, _ in label_layout((480, 640), faces, numbered=True)]
        for i, a in enumerate(rects):
            for b in rects[i + 1:]:
                assert min(a[2], b[2]) <= max(a[0], b[0]) or min(a[3], b[3]) <= max(a[1], b[1]), (a, b)
        assert all(text.startswith(f"#{f.track} ") for f, (text, _, _) in
                   zip(faces, label_layout((480, 640), faces, numbered=True)))


def bad_videos(tmp_path, crossing) -> dict:
    path, _ = crossing
    good = path.read_bytes()
    mp4 = tmp_path / "whole.mp4"
    clips.write_clip(mp4, [(np.full((40, 40, 3), 128, np.uint8), (0, 0, 40, 40))], [], 10)
    videos = {"empty.mp4": b"", "truncated.mp4": mp4.read_bytes()[: mp4.stat().st_size // 2],
              # an AVI whose frames are in a codec FFmpeg does not know
              "codec.avi": good[:good.index(b"MJPG")] + b"XQZ1" + good[good.index(b"MJPG") + 4:].replace(b"MJPG", b"XQZ1"),
              "noframes.avi": good[:good.index(b"movi") + 4]}
    for name, data in videos.items():
        (tmp_path / name).write_bytes(data)
    return videos


@pytest.mark.slow
def test_bad_videos_cost_one_line_each(crossing, tmp_path, yunet_path):
    """In a process of its own: FFmpeg and OpenCV write to the stderr file itself, not sys.stderr."""
    bad = bad_videos(tmp_path, crossing)
    paths = [str(tmp_path / n) for n in bad]
    done = subprocess.run([sys.executable, "-m", "emorec", "predict", *paths, str(crossing[0]), "--json", "--every",
                           "15"], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "EMOREC_YUNET": str(yunet_path)})
    rc, out, err = done.returncode, done.stdout, done.stderr
    assert rc == 1 and "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == len(bad) and all(any(n in line for line in lines) for n in bad), err
    doc = json.loads(out)
    assert [v["path"] for v in doc["videos"]] == [str(crossing[0])]  # the good clip is still summarised
    assert {r["path"] for r in doc["results"] if r["error"]} == set(paths)


# --- POST /predict/video ----------------------------------------------------------------
@pytest.fixture(scope="module")
def api(predictor):
    pytest.importorskip("fastapi")
    pytest.importorskip("python_multipart")
    with warnings.catch_warnings():  # starlette nags about httpx2 at import time
        warnings.simplefilter("ignore")
        from fastapi.testclient import TestClient

    from emorec.api import create_app

    def client(**limits):
        return TestClient(create_app(predictor, **limits), raise_server_exceptions=False)
    return client


def post_video(client, path, name=None, **params):
    with client:
        return client.post("/predict/video", params=params,
                           files={"file": (name or path.name, path.read_bytes(), "video/x-msvideo")})


def test_api_video_returns_people_and_tracked_frames(api, crossing):
    path, truths = crossing
    r = post_video(api(), path, every=5, top_k=2)
    assert r.status_code == 200, r.text
    body = r.json()
    summary = body["summary"]
    assert summary["path"] == "crossing.avi" and summary["frames"] == 75 and summary["fps"] == FPS
    assert [p["track"] for p in summary["people"]] == [1, 2]
    assert [f["frame"] for f in body["frames"]] == list(range(0, 75, 5))
    faces = [f for fr in body["frames"] for f in fr["faces"]]
    assert {f["track"] for f in faces} == {1, 2} and all(len(f["top"]) == 2 and "smoothed" in f for f in faces)
    raw = post_video(api(), path, every=5, smooth_s=0).json()
    assert all(f["smoothed"] == f["probs"] for fr in raw["frames"] for f in fr["faces"])


def test_api_video_errors_are_one_json_line(api, crossing, tmp_path):
    path, _ = crossing
    bad = bad_videos(tmp_path, crossing)
    for name in bad:
        r = post_video(api(), tmp_path / name)
        assert r.status_code == 422 and r.json()["detail"].startswith(f"{name}: ") and "\n" not in r.text, r.text
        assert "emorec-video-" not in r.text  # the temporary file's name is not the client's business
    cases = [({"max_video_seconds": 1}, "clip too long"), ({"max_video_bytes": 10_000}, "too large (limit 10,000 bytes"),
             ({"max_video_pixels": 320 * 240}, "frames too large")]
    for limits, why in cases:
        r = post_video(api(**limits), path)
        assert r.status_code == 413 and why in r.json()["detail"], r.text
    r = post_video(api(), path, every=0)
    assert r.status_code == 422 and "every" in r.json()["detail"]
    with api() as client:  # the limits are published where the others are
        limits = client.get("/").json()["limits"]
    assert (limits["video_bytes"], limits["video_seconds"], limits["video_frame_pixels"]) == (50 * 2**20, 60, 1920 * 1080)


def test_a_timeline_per_video(gap, flip, tmp_path, yunet_path, monkeypatch, capsys):
    monkeypatch.setenv("EMOREC_YUNET", str(yunet_path))
    rc = main(["predict", str(gap[0]), str(flip[0]), "--every", "10", "--timeline", str(tmp_path / "lines")])
    out = capsys.readouterr().out
    assert rc == 0 and out.count(" frames, ") == 2  # a summary table per video
    assert sorted(p.name for p in (tmp_path / "lines").iterdir()) == ["flip.png", "gap.png"]
    rc = main(["predict", str(gap[0]), "--timeline", str(tmp_path / "one.jpg")])
    assert rc == 2 and "name a .png file" in capsys.readouterr().err
    same = tmp_path / "out.json"
    same.write_text("the user's file")
    rc = main(["predict", str(gap[0]), "--json", "-o", str(same), "--summary", str(same)])
    assert rc == 2 and "name two files" in capsys.readouterr().err and same.read_text() == "the user's file"
    rc = main(["predict", str(gap[0]), "--smooth", "-1"])
    assert rc == 2 and "--smooth must be 0 (raw) or more seconds" in capsys.readouterr().err

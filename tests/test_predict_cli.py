"""`emorec predict` and `infer_single.py` end to end on real photos with a tiny model."""
from __future__ import annotations

import csv
import fcntl
import io
import json
import os
import pty
import shutil
import struct
import subprocess
import sys
import termios
import zipfile

import cv2
import numpy as np
import pytest
from PIL import Image

from conftest import ROOT
from emorec.cli import main
from emorec.config import DEFAULT_CLASSES
from emorec.imageio import read_image


@pytest.fixture(autouse=True)
def _yunet(yunet_path, monkeypatch):
    monkeypatch.setenv("EMOREC_YUNET", str(yunet_path))


def predict(capsys, *args):
    rc = main(["predict", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def parse_text(out: str) -> list[list[str]]:
    lines = out.splitlines()
    assert lines[0].startswith("# path  face  x,y,w,h (box in pixels)")  # the header says what the columns are
    return [line.split("  ") for line in lines[1:]]


@pytest.fixture
def photo_tree(tmp_path, images_dir):
    """in/ a.jpg, sub/b.png, sub/deeper/c.png, notes.txt (ignored), broken.jpg (bad)."""
    root = tmp_path / "in"
    (root / "sub" / "deeper").mkdir(parents=True)
    shutil.copy(images_dir / "single_face.jpg", root / "a.jpg")
    shutil.copy(images_dir / "astronaut.png", root / "sub" / "b.png")
    shutil.copy(images_dir / "chelsea_cat.png", root / "sub" / "deeper" / "c.png")
    (root / "notes.txt").write_text("not an image, not looked at")
    (root / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return root


def test_one_image_human_output(capsys, tiny_onnx, images_dir):
    path = images_dir / "single_face.jpg"
    rc, out, err = predict(capsys, path, "--model", tiny_onnx)
    assert rc == 0 and err == ""
    [[p, n, box, result]] = parse_text(out)
    assert p == str(path) and n == "1"
    assert all(v.isdigit() for v in box.split(","))
    label, conf = result.split()
    assert label in DEFAULT_CLASSES and 0 < float(conf) <= 1


def test_many_images_and_no_face(capsys, tiny_onnx, images_dir):
    rc, out, _ = predict(capsys, images_dir / "multi_face.jpg", images_dir / "coffee.png", "--model", tiny_onnx,
                         "--top-k", "3", "--threads", "2")
    rows = parse_text(out)
    assert rc == 0 and len(rows) == 6
    assert [r[1] for r in rows[:5]] == ["1", "2", "3", "4", "5"]
    assert all(len(r) == 3 + 3 for r in rows[:5])  # path, n, box + three "label prob"
    probs = [float(x.split()[1]) for x in rows[0][3:]]
    assert probs == sorted(probs, reverse=True)
    assert rows[5] == [str(images_dir / "coffee.png"), "no face found"]


def test_folder_is_searched_recursively(capsys, tiny_onnx, photo_tree):
    rc, out, err = predict(capsys, photo_tree, "--model", tiny_onnx)
    assert rc == 1  # broken.jpg could not be read; the others are answered
    seen = {r[0] for r in parse_text(out)}
    assert seen == {str(photo_tree / p) for p in ("a.jpg", "sub/b.png", "sub/deeper/c.png")}
    assert len(err.splitlines()) == 1
    assert err.startswith(f"emorec predict: skipped {photo_tree / 'broken.jpg'}: ")


def test_progress_bar_on_a_terminal(tiny_onnx, photo_tree, yunet_path):
    """tqdm draws on stderr when it is a terminal; stdout keeps only results."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a new pty is 0 columns wide
    proc = subprocess.Popen([sys.executable, "-m", "emorec", "predict", str(photo_tree), "--model", str(tiny_onnx)],
                            stdout=subprocess.PIPE, stderr=slave, env={**os.environ, "EMOREC_YUNET": str(yunet_path)})
    os.close(slave)
    out = proc.stdout.read().decode()
    proc.wait(timeout=60)
    err = b""
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:  # the terminal's other end is closed: all read
            break
        if not chunk:
            break
        err += chunk
    os.close(master)
    assert proc.returncode == 1  # broken.jpg
    assert "100%" in err.decode() and "4/4" in err.decode()
    assert "%" not in out and len(out.splitlines()) == 1 + 3


def test_json_output(capsys, tiny_onnx, images_dir, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("x")
    rc, out, _ = predict(capsys, images_dir / "multi_face.jpg", bad, "--model", tiny_onnx, "--json", "--top-k", "2")
    doc = json.loads(out)
    assert rc == 1 and doc["classes"] == DEFAULT_CLASSES and doc["detector"] == "yunet"
    by_path = {r["path"]: r for r in doc["results"]}
    faces = by_path[str(images_dir / "multi_face.jpg")]["faces"]
    assert len(faces) == 5
    for f in faces:
        assert set(f) == {"box", "label", "confidence", "probs", "det_score", "top"}
        assert f["top"][0] == {"label": f["label"], "prob": f["confidence"]} and len(f["top"]) == 2
        assert sum(f["probs"].values()) == pytest.approx(1, abs=1e-5)
    assert "not an image" in by_path[str(bad)]["error"] and by_path[str(bad)]["faces"] == []
    # one envelope per image, the API's: the same keys, in the CLI and in POST /predict's answer
    from emorec.api import ImageOut

    for r in doc["results"]:
        assert set(r) == set(ImageOut.model_fields)
    good = by_path[str(images_dir / "multi_face.jpg")]
    assert (good["width"], good["height"]) == (1000, 667) and good["error"] is None


def test_one_default_for_top(capsys, tiny_onnx, images_dir):
    """The CLI, the API and the library list the same number of classes in a face's "top"."""
    import inspect

    from emorec.api import create_app
    from emorec.inference.face import TOP_K, Face

    rc, out, _ = predict(capsys, images_dir / "single_face.jpg", "--model", tiny_onnx, "--json")
    [face] = json.loads(out)["results"][0]["faces"]
    assert len(face["top"]) == TOP_K
    assert inspect.signature(Face.to_dict).parameters["top_k"].default == TOP_K
    app = create_app(object())
    for route in app.routes:
        if getattr(route, "path", "") in ("/predict", "/predict/batch"):
            assert inspect.signature(route.endpoint).parameters["top_k"].default == TOP_K


def test_csv_to_a_file(capsys, tiny_onnx, images_dir, tmp_path):
    dest = tmp_path / "out" / "faces.csv"
    rc, out, _ = predict(capsys, images_dir / "astronaut.png", images_dir / "chelsea_cat.png",
                         "--model", tiny_onnx, "--csv", "--output", dest)
    assert rc == 0 and out == ""
    rows = list(csv.DictReader(dest.open()))
    assert [r["path"] for r in rows] == [str(images_dir / "astronaut.png"), str(images_dir / "chelsea_cat.png")]
    face, empty = rows
    assert face["face"] == "1" and face["label"] in DEFAULT_CLASSES
    assert sum(float(face[f"p_{c}"]) for c in DEFAULT_CLASSES) == pytest.approx(1, abs=1e-4)
    assert float(face[f"p_{face['label']}"]) == pytest.approx(float(face["confidence"]))
    assert empty["face"] == "" and empty["label"] == ""


def test_annotate_one_image_to_a_file(capsys, tiny_onnx, images_dir, tmp_path):
    dest = tmp_path / "multi_annotated.png"
    rc, _, _ = predict(capsys, images_dir / "multi_face.jpg", "--model", tiny_onnx, "--annotate", dest)
    src = read_image(images_dir / "multi_face.jpg")
    drawn = read_image(dest)
    assert rc == 0 and drawn.shape == src.shape
    assert (np.abs(drawn.astype(int) - src).max(axis=2) > 60).mean() > 0.005  # boxes and labels


def test_annotate_many_images_to_a_folder(capsys, tiny_onnx, photo_tree, tmp_path):
    out_dir = tmp_path / "annotated"
    rc, _, _ = predict(capsys, photo_tree, "--model", tiny_onnx, "--annotate", out_dir)
    assert rc == 1  # broken.jpg
    made = sorted(p.relative_to(out_dir).as_posix() for p in out_dir.rglob("*") if p.is_file())
    assert made == ["a.jpg", "sub/b.png", "sub/deeper/c.png"]
    # the cat has no face: its copy is unchanged
    assert np.array_equal(read_image(out_dir / "sub/deeper/c.png"), read_image(photo_tree / "sub/deeper/c.png"))


def test_no_detect_on_a_fer_face(capsys, tiny_onnx, fer2013_zip, tmp_path):
    with zipfile.ZipFile(fer2013_zip) as z:
        name = next(n for n in z.namelist() if n.startswith("test/happy/") and n.endswith(".jpg"))
        path = tmp_path / "fer.jpg"
        path.write_bytes(z.read(name))
    rc, out, _ = predict(capsys, path, "--model", tiny_onnx, "--no-detect")
    [[_, n, box, _]] = parse_text(out)
    assert rc == 0 and n == "1" and box == "0,0,48,48"


def test_haar_detector(capsys, tiny_onnx, images_dir):
    rc, out, _ = predict(capsys, images_dir / "single_face.jpg", "--model", tiny_onnx, "--detector", "haar")
    assert rc == 0 and len(parse_text(out)) == 1 and parse_text(out)[0][1] == "1"


@pytest.fixture
def clip(tmp_path, images_dir):
    """12 frames at 10 fps: the face, with frames 6-7 black."""
    path = tmp_path / "clip.avi"
    face = cv2.cvtColor(cv2.resize(read_image(images_dir / "single_face.jpg"), (200, 196)), cv2.COLOR_RGB2BGR)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (200, 196))
    for i in range(12):
        w.write(np.zeros_like(face) if i in (6, 7) else face)
    w.release()
    return path


def test_video_rows_every_nth_frame(capsys, tiny_onnx, clip, tmp_path):
    out_video = tmp_path / "annotated.mp4"
    rc, out, err = predict(capsys, clip, "--model", tiny_onnx, "--csv", "--every", "3", "--video-out", out_video)
    assert rc == 0 and err == ""
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["frame"], r["face"]) for r in rows] == [("0", "1"), ("3", "1"), ("6", ""), ("9", "1")]
    assert float(rows[1]["time_s"]) == pytest.approx(0.3)
    cap = cv2.VideoCapture(str(out_video))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    assert len(frames) == 12 and frames[0].shape == (196, 200, 3)


def test_video_human_output_is_a_table_per_person(capsys, tiny_onnx, clip):
    """Frames 0 and 6 analysed, the face in frame 0 only: one person, seen for 6 frames' time."""
    rc, out, _ = predict(capsys, clip, "--model", tiny_onnx, "--every", "6")
    lines = out.splitlines()
    assert rc == 0 and lines[0] == f"{clip}: 1.2 s, 12 frames, 1 person", out
    assert lines[1].split()[:4] == ["person", "on", "screen", "seen"]
    assert lines[2].split()[:4] == ["#1", "0.6", "s", "0.0-0.0"] and len(lines) == 3


def test_exit_status_and_input_order(capsys, tiny_onnx, images_dir, tmp_path):
    """0: every input processed; 1: some could not be read, the rest still written in input order."""
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    odd = tmp_path / "two\nlines.jpg"
    odd.write_bytes((images_dir / "single_face.jpg").read_bytes())
    rc, out, err = predict(capsys, empty, "--model", tiny_onnx)
    assert rc == 1 and "empty file" in err and len(err.splitlines()) == 1
    rc, out, err = predict(capsys, images_dir / "astronaut.png", empty, odd, "--model", tiny_onnx, "--csv")
    assert rc == 1 and len(err.splitlines()) == 1
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [r["path"] for r in rows] == [str(images_dir / "astronaut.png"), str(empty), str(odd)]
    assert rows[1]["error"] and not rows[2]["error"]
    rc, out, _ = predict(capsys, odd, "--model", tiny_onnx)
    assert rc == 0 and len(out.splitlines()) == 2 and "two\\nlines.jpg  1  " in out  # one line per face


def test_annotate_does_not_apply_to_videos(capsys, tiny_onnx, clip, images_dir, tmp_path):
    assert "--video-out" in usage_error(capsys, clip, "--model", tiny_onnx, "--annotate", tmp_path / "a")
    rc, _, err = predict(capsys, clip, images_dir / "single_face.jpg", "--model", tiny_onnx, "--annotate",
                         tmp_path / "a", "--every", "6")
    assert rc == 0 and "--annotate applies to the images" in err
    assert [p.name for p in (tmp_path / "a").iterdir()] == ["single_face.jpg"]


def test_broken_video_is_one_line(tiny_onnx, tmp_path, yunet_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"\0\0\0\x18ftypmp42" + bytes(2000))
    run = subprocess.run([sys.executable, "-m", "emorec", "predict", str(bad), "--model", str(tiny_onnx)],
                         capture_output=True, text=True, env={**os.environ, "EMOREC_YUNET": str(yunet_path)})
    assert run.returncode == 1 and len(run.stderr.splitlines()) == 1, run.stderr
    assert "moov" not in run.stderr and run.stderr.startswith(f"emorec predict: skipped {bad}")


def usage_error(capsys, *args) -> str:
    rc, out, err = predict(capsys, *args)
    assert rc == 2 and out == "" and len(err.splitlines()) == 1, err
    return err


def test_usage_errors(capsys, tiny_onnx, images_dir, tmp_path, clip):
    img = images_dir / "single_face.jpg"
    (tmp_path / "empty").mkdir()
    # an input that gives nothing is an input error (exit 1), alone or beside a good file: one rule
    for bad, why in ((tmp_path / "empty", "no images or videos in this folder"), (tmp_path / "nope.jpg", "no such file")):
        for args in ((bad,), (bad, img)):
            rc, out, err = predict(capsys, *args, "--model", tiny_onnx, "--json")
            assert rc == 1 and err.splitlines() == [f"emorec predict: skipped {bad}: {why}"], err
            results = json.loads(out)["results"]
            assert results[0] == {"path": str(bad), "width": None, "height": None, "faces": [],
                                  "error": f"{bad}: {why}"}
            assert len(results) == len(args)
    assert "--top-k" in usage_error(capsys, img, "--model", tiny_onnx, "--top-k", "0")
    assert "--every" in usage_error(capsys, clip, "--model", tiny_onnx, "--every", "0")
    assert "--video-out" in usage_error(capsys, img, "--model", tiny_onnx, "--video-out", tmp_path / "v.mp4")
    assert "use one of" in usage_error(capsys, clip, "--model", tiny_onnx, "--video-out", tmp_path / "v.gif")
    assert "--annotate" in usage_error(capsys, img, "--model", tiny_onnx, "--annotate", tmp_path / "x.txt")
    with pytest.raises(SystemExit) as e:  # argparse: usage line + error line
        main(["predict", str(img), "--json", "--csv"])
    assert e.value.code == 2


def test_config_file_sets_the_classes(capsys, tiny_onnx7, images_dir, tmp_path):
    cfg = tmp_path / "fer7.yaml"
    cfg.write_text("ACTIVE_CLASSES: [angry, disgust, fear, happy, neutral, sad, surprise]\n")
    rc, out, _ = predict(capsys, images_dir / "astronaut.png", "--model", tiny_onnx7, "--config", cfg, "--json")
    assert rc == 0 and len(json.loads(out)["results"][0]["faces"][0]["probs"]) == 7


# --- infer_single.py ----------------------------------------------------------------

def infer_single(*args, env_yunet):
    run = subprocess.run([sys.executable, "infer_single.py", *map(str, args)], capture_output=True, text=True,
                         cwd=ROOT, env={**os.environ, "EMOREC_YUNET": str(env_yunet)})
    assert "Traceback" not in run.stderr
    return run


def test_infer_single_largest_face_and_all_probs(tiny_onnx, images_dir, yunet_path):
    from emorec.inference.predictor import Predictor

    photo = images_dir / "multi_face.jpg"
    run = infer_single("--image", photo, "--model", tiny_onnx, "--all-probs", env_yunet=yunet_path)
    lines = run.stdout.splitlines()
    assert run.returncode == 0 and lines[0] == "5 faces found; showing the largest"
    faces = Predictor.from_path(tiny_onnx, detector_path=yunet_path).predict([read_image(photo)])[0]
    largest = max(faces, key=lambda f: f.box[2] * f.box[3])
    assert lines[1] == f"{largest.label} {largest.confidence:.1%}"
    probs = dict(line.split() for line in lines[2:])
    assert list(probs) == DEFAULT_CLASSES
    assert float(probs[largest.label]) == pytest.approx(largest.confidence, abs=1e-4)


def test_infer_single_without_a_face(tiny_onnx, images_dir, yunet_path):
    run = infer_single("--image", images_dir / "coffee.png", "--model", tiny_onnx, env_yunet=yunet_path)
    lines = run.stdout.splitlines()
    assert run.returncode == 0 and lines[0] == "no face found; classifying the whole image" and len(lines) == 2
    assert lines[1].split()[0] in DEFAULT_CLASSES and lines[1].endswith("%")
    crop = infer_single("--image", images_dir / "coffee.png", "--model", tiny_onnx, "--no-detect", env_yunet=yunet_path)
    assert crop.stdout.splitlines() == lines[1:]


def test_infer_single_errors(tiny_onnx, tmp_path, yunet_path, images_dir):
    bad = tmp_path / "x.jpg"
    Image.new("RGB", (2, 2)).save(bad)
    run = infer_single("--image", bad, "--model", tiny_onnx, env_yunet=yunet_path)
    assert run.returncode == 2 and run.stderr.splitlines() == [f"infer_single.py: error: {bad}: image too small "
                                                               "(2x2, need at least 8 px per side)"]
    run = infer_single("--image", images_dir / "single_face.jpg", "--model", tmp_path / "none.onnx",
                       env_yunet=yunet_path)
    assert run.returncode == 2 and "model file not found" in run.stderr


def test_an_image_that_breaks_the_model_costs_only_itself(capsys, tiny_onnx, images_dir, monkeypatch):
    from emorec.inference.predictor import Predictor

    real = Predictor.predict

    def fragile(self, images, detect=True):
        if any(img.shape[:2] == (512, 512) for img in images):  # astronaut.png
            raise RuntimeError("simulated failure")
        return real(self, images, detect)

    monkeypatch.setattr(Predictor, "predict", fragile)
    rc, out, err = predict(capsys, images_dir / "single_face.jpg", images_dir / "astronaut.png",
                           images_dir / "multi_face.jpg", "--model", tiny_onnx)
    assert rc == 1 and "astronaut.png: cannot classify (RuntimeError: simulated failure)" in err
    assert [r[0] for r in parse_text(out)] == [str(images_dir / "single_face.jpg")] + [str(images_dir / "multi_face.jpg")] * 5


@pytest.mark.parametrize("name", ["5class", "7class"])
def test_shipped_models_by_name_need_no_class_setting(capsys, images_dir, name):
    """`--model 7class` works as it is: a shipped model brings its own classes."""
    from emorec.config import FER_CLASSES, SHIPPED_MODELS

    assert name in SHIPPED_MODELS
    rc, out, _ = predict(capsys, images_dir / "multi_face.jpg", "--model", name, "--json")
    doc = json.loads(out)
    faces = doc["results"][0]["faces"]
    want = DEFAULT_CLASSES if name == "5class" else FER_CLASSES
    assert rc == 0 and len(faces) == 5 and doc["classes"] == want and list(faces[0]["probs"]) == want


def test_a_bad_flag_shows_the_commands_own_usage(capsys, images_dir):
    with pytest.raises(SystemExit) as e:
        main(["predict", str(images_dir / "single_face.jpg"), "--bogus"])
    err = capsys.readouterr().err
    assert e.value.code == 2 and err.startswith("usage: emorec predict ")
    assert err.splitlines()[-1] == "emorec predict: error: unrecognized arguments: --bogus"


def test_an_output_that_is_an_input_is_refused_before_any_work(capsys, tiny_onnx, images_dir, tmp_path, clip):
    photos = tmp_path / "photos"
    photos.mkdir()
    a = photos / "a.jpg"
    a.write_bytes((images_dir / "single_face.jpg").read_bytes())
    before, video_before = a.read_bytes(), clip.read_bytes()
    for args in ((a, "-o", a), (a, "--annotate", a), (photos, "--annotate", photos), (a, "--annotate", photos),
                 (clip, "--video-out", clip)):
        rc, out, err = predict(capsys, *args, "--model", tiny_onnx)
        assert rc == 2 and out == "" and len(err.splitlines()) == 1 and "write over" in err, (args, err)
    assert a.read_bytes() == before and clip.read_bytes() == video_before and sorted(photos.iterdir()) == [a]


def test_video_out_of_tiny_frames_and_into_a_new_folder(tiny_onnx, tmp_path, yunet_path):
    """OpenCV's MJPG writer corrupts memory on 4x4 frames (the process aborted): frames are padded."""
    tiny = tmp_path / "tiny.mp4"
    w = cv2.VideoWriter(str(tiny), cv2.VideoWriter_fourcc(*"mp4v"), 10, (4, 4))
    for _ in range(5):
        w.write(np.full((4, 4, 3), 100, np.uint8))
    w.release()
    out = tmp_path / "new" / "folder" / "tiny_annotated.avi"
    run = subprocess.run([sys.executable, "-m", "emorec", "predict", str(tiny), "--model", str(tiny_onnx),
                          "--video-out", str(out)], capture_output=True, text=True,
                         env={**os.environ, "EMOREC_YUNET": str(yunet_path)})
    assert run.returncode == 0 and "Traceback" not in run.stderr, run.stderr
    cap = cv2.VideoCapture(str(out))
    ok, frame = cap.read()
    assert ok and frame.shape == (16, 16, 3)

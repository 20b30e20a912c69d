"""The Streamlit app: its plain logic (settings, quiz deck and score, table data), the page
driven through Streamlit's AppTest (upload, webcam, no face, bad file, quiz, 7 classes),
and the `emorec app` launcher starting a real server."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import small_split

from emorec.app.drawing import enlarge, png_data_uri
from emorec.app.quiz import QuizState, find_quiz_items
from emorec.app.settings import parse_script_args
from emorec.config import DEFAULT_CLASSES, FER_CLASSES
from emorec.errors import EmorecError

ROOT = Path(__file__).resolve().parents[1]
SHIM = ROOT / "app_streamlit.py"
PER_CLASS = 4


def make_quiz_split(fer2013_zip: Path, dest: Path) -> Path:
    """dest/test/<class>/: the first PER_CLASS FER2013 PrivateTest faces of all 7 classes."""
    return small_split(fer2013_zip, dest, {"train": 0, "val": 0, "test": PER_CLASS}, FER_CLASSES) / "test"


@pytest.fixture(scope="module")
def quiz_dir(tmp_path_factory, fer2013_zip) -> Path:
    return make_quiz_split(fer2013_zip, tmp_path_factory.mktemp("split"))


@pytest.fixture
def app_env(monkeypatch, yunet_path, tiny_onnx, tmp_path):
    """The app as `streamlit run app_streamlit.py` would see it: no script args, model by env."""
    monkeypatch.setattr(sys, "argv", [str(SHIM)])
    monkeypatch.setenv("EMOREC_YUNET", str(yunet_path))
    monkeypatch.setenv("EMOREC_MODEL", str(tiny_onnx))
    monkeypatch.setenv("EMOREC_QUIZ_DIR", str(tmp_path / "no_split"))
    monkeypatch.chdir(tmp_path)  # no models/ or data_split/ here
    return monkeypatch


def open_app(script: Path = SHIM):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(script), default_timeout=60).run()
    assert not at.exception, at.exception
    return at


def upload(at, path: Path, name: str | None = None, data: bytes | None = None):
    at.file_uploader(key="upload").upload(name or path.name, path.read_bytes() if data is None else data)
    at.run()
    assert not at.exception, at.exception
    return at


def face_rows(at) -> list[tuple[str, str, float]]:
    """(face, emotion, confidence) of the page's faces table: one compact row per face."""
    if not at.main.dataframe:
        return []
    t = at.main.dataframe[0].value
    return [(face, emotion, t[emotion][i]) for i, (face, emotion) in enumerate(zip(t["face"], t["emotion"]))]


# --- settings ------------------------------------------------------------------------

def test_settings_precedence(tmp_path):
    env = {"EMOREC_MODEL": "env.onnx", "EMOREC_QUIZ_DIR": "env_quiz"}
    s = parse_script_args(["--model", "arg.onnx", "--set", "data_dir=elsewhere"], env)
    assert s.model_path == Path("arg.onnx") and s.quiz_dir == Path("env_quiz")
    s = parse_script_args(["--set", "model_path=cfg.onnx", "--set", "data_dir=elsewhere"], {})
    assert s.model_path == Path("cfg.onnx") and s.quiz_dir == Path("elsewhere/test")
    s = parse_script_args([], {})
    assert s.model_path is None and s.quiz_dir == Path("data_split/test") and s.max_upload_mb == 10
    with pytest.raises(EmorecError, match="unrecognized arguments"):
        parse_script_args(["--modle", "x.onnx"], {})
    with pytest.raises(EmorecError, match="unknown config key"):
        parse_script_args(["--set", "no_such_key=1"], {})


# --- quiz logic ----------------------------------------------------------------------

def test_find_quiz_items_keeps_model_classes_only(quiz_dir, tmp_path):
    items = find_quiz_items(quiz_dir, DEFAULT_CLASSES)
    assert sorted({i.label for i in items}) == sorted(DEFAULT_CLASSES)
    assert len(items) == PER_CLASS * len(DEFAULT_CLASSES)
    assert all(i.path.parent.name == i.label for i in items)
    assert len(find_quiz_items(quiz_dir, FER_CLASSES)) == PER_CLASS * 7
    sample = find_quiz_items(quiz_dir, ["happy", "sad"], per_class=2, seed=1)
    assert len(sample) == 4 and sample == find_quiz_items(quiz_dir, ["happy", "sad"], per_class=2, seed=1)
    assert find_quiz_items(tmp_path / "missing", DEFAULT_CLASSES) == []
    (tmp_path / "HAPPY").mkdir()
    (tmp_path / "HAPPY" / "a.PNG").write_bytes(b"x")
    (tmp_path / "HAPPY" / "notes.txt").write_text("not an image")
    assert [i.label for i in find_quiz_items(tmp_path, ["happy"])] == ["happy"]


def test_deck_shows_every_image_before_repeating():
    state = QuizState(7, seed=3)
    seen = []
    for _ in range(3 * 7):
        seen.append(state.current)
        state.next()
    for k in range(3):
        assert sorted(seen[7 * k:7 * (k + 1)]) == list(range(7))
    assert all(a != b for a, b in zip(seen, seen[1:]))  # no image twice in a row, even across decks
    assert QuizState(7, seed=3).deck == seen[:7]  # seeded
    assert QuizState(7, seed=4).deck != seen[:7]
    with pytest.raises(ValueError):
        QuizState(0)


def test_quiz_scoring_and_reset():
    state = QuizState(3, seed=0)
    probs = {"happy": 0.7, "sad": 0.3}
    r = state.answer("happy", "happy", "sad", probs)
    assert r.player_right and not r.model_right
    assert (state.rounds, state.player, state.model) == (1, 1, 0)
    state.answer("sad", "happy", "happy", probs)  # second submit of the same image: ignored
    assert (state.rounds, state.player, state.model) == (1, 1, 0)
    first = state.current
    state.next()
    assert state.current != first and not state.answered
    state.answer("sad", "happy", "happy", probs)
    assert (state.rounds, state.player, state.model) == (2, 1, 1)
    answered = state.current
    state.reset_score()
    assert (state.rounds, state.player, state.model) == (0, 0, 0)
    assert state.current != answered and not state.answered  # the solved image is not asked again


# --- page data ----------------------------------------------------------------------

def test_png_data_uri_and_enlarge():
    import base64

    img = np.zeros((4, 6, 3), np.uint8)
    img[0, 0] = (255, 0, 0)
    uri = png_data_uri(img)
    back = cv2.cvtColor(cv2.imdecode(np.frombuffer(base64.b64decode(uri.split(",", 1)[1]), np.uint8), 1),
                        cv2.COLOR_BGR2RGB)
    assert uri.startswith("data:image/png;base64,") and np.array_equal(back, img)
    crop = np.zeros((48, 40, 3), np.uint8)
    assert enlarge(crop, 240).shape == (240, 200, 3)
    big = np.zeros((300, 300), np.uint8)
    assert enlarge(big, 240) is big  # never shrinks


# --- the page (AppTest) --------------------------------------------------------------

def test_missing_model_explains_how_to_get_one(app_env, tmp_path, tiny_onnx):
    import shutil

    path = tmp_path / "models" / "later.onnx"
    app_env.setenv("EMOREC_MODEL", str(path))
    at = open_app()
    assert "model file not found" in at.error[0].value
    assert any("emorec export" in m.value for m in at.markdown)
    path.parent.mkdir()
    shutil.copy(tiny_onnx, path)  # exported while the app runs: the next rerun uses it
    at.run()
    assert not at.error and "later.onnx" in at.sidebar.caption[0].value


def test_bad_script_argument_is_a_page_message(app_env):
    app_env.setattr(sys, "argv", [str(SHIM), "--max-upload-mb", "zero"])
    at = open_app()
    assert "app arguments" in at.error[0].value


def test_upload_multi_face_photo(app_env, images_dir, tiny_onnx, yunet_path):
    from emorec.imageio import read_image
    from emorec.inference.predictor import Predictor

    at = open_app()
    assert "Upload a photo" in at.info[0].value
    sidebar = " ".join(m.value for m in at.sidebar.markdown)
    assert ", ".join(DEFAULT_CLASSES) in sidebar and "Version:** test" in sidebar
    upload(at, images_dir / "multi_face.jpg")
    expected = Predictor.from_path(tiny_onnx, detector_path=yunet_path).predict(
        [read_image(images_dir / "multi_face.jpg")])[0]
    assert len(expected) == 5
    assert [s.value for s in at.main.subheader] == ["5 face(s) found"]
    rows = face_rows(at)
    assert [(r[0], r[1]) for r in rows] == [(f"#{i}", f.label) for i, f in enumerate(expected, 1)]
    assert np.allclose([r[2] for r in rows], [f.confidence for f in expected], atol=1e-5)
    table = at.main.dataframe[0].value
    assert all(str(c).startswith("data:image/png;base64,") for c in table["crop"])  # each face's crop
    # one bar per class on a shared 0-1 scale, in the model's class order
    # one bar per emotion, named by its column, on a shared 0-1 scale, in the model's class order
    assert [c for c in table.columns if c in DEFAULT_CLASSES] == DEFAULT_CLASSES
    assert np.allclose([table[c][0] for c in DEFAULT_CLASSES], [expected[0].probs[c] for c in DEFAULT_CLASSES],
                       atol=1e-5)
    numbers = at.main.dataframe[1].value  # the numbers, in an expander
    assert list(numbers.columns) == ["face", *DEFAULT_CLASSES] and len(numbers) == 5
    # Haar finds faces too; the detector choice reaches the prediction.
    at.sidebar.selectbox(key="detector").set_value("haar").run()
    assert not at.exception and face_rows(at)


def test_no_face_offers_whole_image(app_env, images_dir):
    at = upload(open_app(), images_dir / "free-mountain-vector-01.jpg")
    assert "No face found" in at.warning[0].value and not face_rows(at)
    at.toggle(key="whole_image").set_value(True).run()
    assert not at.exception
    assert len(face_rows(at)) == 1


def test_unreadable_upload_then_good_one(app_env, images_dir):
    at = upload(open_app(), images_dir / "single_face.jpg", name="broken.jpg", data=b"GIF89a this is no image")
    assert "Cannot use this file" in at.error[0].value and "broken.jpg" in at.error[0].value
    at.file_uploader(key="upload").clear()
    at.run()
    at = upload(at, images_dir / "single_face.jpg")
    assert not at.error and len(face_rows(at)) == 1


def test_upload_over_size_limit(app_env, images_dir):
    app_env.setattr(sys, "argv", [str(SHIM), "--max-upload-mb", "1"])
    big = images_dir / "BWPictureHuman.jpg"
    assert big.stat().st_size > 2**20
    at = upload(open_app(), big)
    assert "over the 1 MB limit" in at.error[0].value and not face_rows(at)


def test_webcam_snapshot(app_env, images_dir):
    at = open_app()
    at.radio(key="source").set_value("Webcam snapshot").run()
    at.camera_input(key="camera").upload("shot.jpg", (images_dir / "single_face.jpg").read_bytes())
    at.run()
    assert not at.exception and len(face_rows(at)) == 1


def test_quiz_without_test_split_says_how_to_make_one(app_env):
    at = open_app()
    at.sidebar.radio(key="mode").set_value("Emotion quiz").run()
    assert not at.exception
    assert at.warning[0].value == "No quiz images on this server."  # no server path revealed
    assert any("--quiz-dir" in m.value for m in at.markdown)
    assert not at.sidebar.text_input and not at.text_input  # visitors cannot name server folders
    assert not at.sidebar.selectbox and not at.sidebar.slider  # no face finding in the quiz


def play_round(at, guess: str):
    state = at.session_state["quiz"]
    at.radio(key=f"guess_{state.deck_no}_{state.pos}").set_value(guess).run()
    at.button(key="quiz_submit").click().run()
    assert not at.exception, at.exception
    return at.session_state["quiz"]


def metric_values(at) -> dict[str, str]:
    return {m.label: m.value for m in at.main.metric}


def test_quiz_scores_player_and_model(app_env, quiz_dir, tiny_onnx):
    from emorec.imageio import read_image
    from emorec.inference.predictor import Predictor

    app_env.setenv("EMOREC_QUIZ_DIR", str(quiz_dir))
    items = find_quiz_items(quiz_dir, DEFAULT_CLASSES)
    model = Predictor.from_path(tiny_onnx, detector="none")
    at = open_app()
    at.sidebar.radio(key="mode").set_value("Emotion quiz").run()
    assert not at.exception
    assert at.radio(key="guess_0_0").options == DEFAULT_CLASSES  # only the model's classes
    assert metric_values(at) == {"Rounds": "0", "You": "0 / 0", "Model": "0 / 0"}

    shown, model_right = [], 0
    for k, right in enumerate([True, False, True]):
        state = at.session_state["quiz"]
        item = items[state.current]
        shown.append(item.path)
        guess = item.label if right else next(c for c in DEFAULT_CLASSES if c != item.label)
        predicted = model.predict([read_image(item.path)], detect=False)[0][0].label
        model_right += predicted == item.label
        state = play_round(at, guess)
        player = 1 + (k == 2)
        assert (state.rounds, state.player, state.model) == (k + 1, player, model_right)
        assert metric_values(at) == {"Rounds": str(k + 1), "You": f"{player} / {k + 1}",
                                     "Model": f"{model_right} / {k + 1}"}
        assert f"The face shows **{item.label}**." in [m.value for m in at.markdown]
        verdicts = [a.value for a in (*at.success, *at.error)]
        assert f"You: {guess} — {'right' if right else 'wrong'}." in verdicts
        assert any(v.startswith(f"Model: {predicted} (") for v in verdicts)
        assert at.button(key="quiz_submit").disabled  # one answer per image
        at.button(key="quiz_next").click().run()
    assert len(set(shown)) == 3

    at.button(key="quiz_reset").click().run()
    assert metric_values(at) == {"Rounds": "0", "You": "0 / 0", "Model": "0 / 0"}
    assert items[at.session_state["quiz"].current].path not in shown


def test_seven_class_model(app_env, tiny_onnx7, quiz_dir, images_dir):
    app_env.setenv("EMOREC_MODEL", str(tiny_onnx7))
    app_env.setenv("EMOREC_QUIZ_DIR", str(quiz_dir))
    at = upload(open_app(), images_dir / "multi_face.jpg")
    assert len(face_rows(at)) == 5
    assert list(at.main.dataframe[1].value.columns) == ["face", *FER_CLASSES]
    at.sidebar.radio(key="mode").set_value("Emotion quiz").run()
    assert at.radio(key="guess_0_0").options == FER_CLASSES
    assert at.session_state["quiz"].size == PER_CLASS * 7
    state = play_round(at, "disgust")
    assert state.rounds == 1 and state.player == (state.result.truth == "disgust")


def test_default_model_and_its_metrics_in_sidebar(app_env, tmp_path):
    """No --model, no EMOREC_MODEL: the shipped 5-class model, wherever the app starts; a model
    trained into ./models is not picked up; the shipped model's stored test metrics are listed."""
    from emorec.config import SHIPPED_MODELS_DIR
    from emorec.inference.predictor import Predictor

    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "best_model.onnx").write_bytes(b"not this one")
    app_env.delenv("EMOREC_MODEL")
    at = open_app()
    assert not at.error
    assert at.sidebar.caption[0].value == "`models/best_model.onnx`"  # no machine path on the page
    assert (SHIPPED_MODELS_DIR / "best_model.onnx").is_file()
    info = Predictor.from_path("5class", detector="none").info
    plain = at.sidebar.markdown[0].value  # what a visitor reads first: plain words, no field names
    assert f"**Recognises:** {', '.join(info.classes)}" in plain
    assert f"Right on {info.metrics['accuracy']:.0%} of {info.metrics['n']:,} test faces" in plain
    assert not any(word in plain for word in ("macro_f1", "leakage", "tta_flip", "data_dir", "Version"))
    assert [e.label for e in at.sidebar.expander] == ["Technical details"]  # the details, one click away
    metrics = at.sidebar.dataframe[0].value
    assert dict(zip(metrics["metric"], metrics["value"]))["accuracy"] == f"{info.metrics['accuracy']:.4f}"


def test_quiz_picks_up_split_made_later_and_skips_bad_files(app_env, quiz_dir, tmp_path):
    import shutil

    split = tmp_path / "later" / "test"
    app_env.setenv("EMOREC_QUIZ_DIR", str(split))
    at = open_app()
    at.sidebar.radio(key="mode").set_value("Emotion quiz").run()
    assert "No quiz images" in at.warning[0].value
    for cls in ("happy", "sad"):
        shutil.copytree(quiz_dir / cls, split / cls)
    (split / "sad" / "broken.jpg").write_bytes(b"\xff\xd8 truncated")
    at.run()
    assert not at.exception and not at.warning
    assert at.session_state["quiz"].size == 2 * PER_CLASS
    assert "1 unreadable image(s) left out" in at.main.caption[0].value and "broken.jpg" in at.main.caption[0].value


def test_packaged_script_runs_without_the_shim(app_env, images_dir):
    at = upload(open_app(ROOT / "src" / "emorec" / "app" / "streamlit_app.py"), images_dir / "single_face.jpg")
    assert len(face_rows(at)) == 1


def test_app_never_imports_torch():
    code = ("import sys, emorec.app.streamlit_app, emorec.commands.app; "
            "assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --- launcher ------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_launcher_command():
    from emorec.cli import build_parser
    from emorec.commands.app import build_command

    args = build_parser().parse_args(["app", "--model", "m.onnx", "--port", "9000", "--max-upload-mb", "5",
                                      "--set", "detector=haar", "--quiz-dir", "q"])
    cmd = build_command(args)
    script = Path(cmd[4])
    assert cmd[1:4] == ["-m", "streamlit", "run"] and script.is_file() and script.parent.name == "app"
    assert cmd[cmd.index("--server.port") + 1] == "9000"
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == "5"
    assert cmd[cmd.index("--server.headless") + 1] == "true"
    tail = cmd[cmd.index("--") + 1:]
    assert parse_script_args(tail, {}).model_path == Path("m.onnx")  # the script understands what it gets
    assert parse_script_args(tail, {}).cfg.detector == "haar"


def test_launcher_rejects_bad_config(capsys):
    from emorec.cli import main

    assert main(["app", "--set", "detector=mtcnn"]) == 2
    assert "emorec app: error: DETECTOR must be" in capsys.readouterr().err


def test_launcher_starts_server_from_any_cwd(tmp_path, tiny_onnx):
    port = free_port()
    env = {**os.environ, "EMOREC_MODEL": str(tiny_onnx)}
    proc = subprocess.Popen([sys.executable, "-m", "emorec", "app", "--port", str(port)], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, health = time.monotonic() + 60, None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    health = r.read().decode()
                break
            except OSError:
                time.sleep(0.5)
        assert health == "ok", f"server did not come up (exit code {proc.poll()})"
    finally:
        proc.terminate()  # `emorec app` exec'd into streamlit: this pid is the server
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_shipped_models_offered_by_name(app_env, tiny_onnx, tiny_onnx7, tmp_path, images_dir):
    import shutil

    from emorec.config import SHIPPED_MODELS
    from emorec.inference import predictor as predictor_mod

    app_env.setitem(SHIPPED_MODELS, "8class", "emotion_8class.onnx")  # a name without a description
    shipped = tmp_path / "shipped"
    shipped.mkdir()
    shutil.copy(tiny_onnx, shipped / "best_model.onnx")
    shutil.copy(tiny_onnx7, shipped / "emotion_7class.onnx")
    shutil.copy(tiny_onnx7, shipped / "emotion_8class.onnx")
    app_env.setattr(predictor_mod, "SHIPPED_MODELS_DIR", shipped)
    app_env.delenv("EMOREC_MODEL")
    at = open_app()
    choice = at.sidebar.selectbox(key="model_name")
    assert choice.options == ["5 emotions (no neutral)", "7 emotions (with neutral)", "8class"]
    assert all(len(o) <= 25 for o in choice.options)  # the whole name fits the sidebar's picker
    choice.set_value("7class").run()
    assert not at.exception and "emotion_7class.onnx" in at.sidebar.caption[0].value
    at = upload(at, images_dir / "single_face.jpg")
    assert list(at.main.dataframe[1].value.columns) == ["face", *FER_CLASSES]


def test_repository_streamlit_config_matches_the_launcher():
    import tomllib

    conf = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert conf["server"]["address"] == "127.0.0.1" and conf["server"]["maxUploadSize"] == 10
    assert conf["browser"]["gatherUsageStats"] is False and conf["client"]["toolbarMode"] == "minimal"


def test_a_huge_png_is_refused_before_decoding(app_env, tmp_path):
    """A 97 KB 16-bit 7000x7000 PNG took the app's process to 1.5 GB."""
    from test_edge_cases import _png16

    big = tmp_path / "big16.png"
    big.write_bytes(_png16(7000))
    at = open_app()
    upload(at, big)
    assert "image too large to decode" in at.error[0].value and not at.exception


# --- the video page (AppTest; the live webcam is in test_app_browser.py) -------------------
@pytest.fixture(scope="module")
def crossing_clip(tmp_path_factory, yunet_path) -> Path:
    from emorec.detect import make_detector
    from emorec.imageio import read_image
    from emorec.inference import clips

    photo = read_image(ROOT / "examples" / "multi_face.jpg")
    faces = clips.photo_faces(photo, [b for b, _ in make_detector("yunet", model_path=yunet_path).detect(photo)])
    path = tmp_path_factory.mktemp("clip") / "crossing.avi"
    clips.write_clip(path, faces, clips.crossing(), 50)
    return path


def upload_clip(at, name: str, data: bytes):
    at.sidebar.radio(key="mode").set_value("Video").run()
    at.file_uploader(key="clip").upload(name, data)
    at.run()
    assert not at.exception, at.exception
    return at


def test_video_clip_gives_a_row_per_person(app_env, crossing_clip):
    at = open_app()
    at.sidebar.radio(key="mode").set_value("Video").run()
    assert "up to 50 MB and 60 seconds" in at.info[0].value  # the limits, stated before an upload
    at = upload_clip(at, "crossing.avi", crossing_clip.read_bytes())
    assert [s.value for s in at.main.subheader] == ["2 people in 2.0 s"]
    table = at.main.dataframe[0].value
    assert list(table["person"]) == ["#1", "#2"] and list(table.columns)[:4] == ["person", "on screen", "seen", "mostly"]


@pytest.mark.slow
def test_bad_or_long_clip_is_a_page_message(app_env, crossing_clip):
    at = upload_clip(open_app(), "broken.mp4", b"\x00\x00\x00\x18ftypmp42 not really a video")
    assert "Cannot use this clip: broken.mp4: cannot open as a video" in at.error[0].value
    app_env.setattr(sys, "argv", [str(SHIM), "--max-video-seconds", "1"])
    at = upload_clip(open_app(), "crossing.avi", crossing_clip.read_bytes())
    assert "the limit is 1 s" in at.error[0].value and not at.main.dataframe

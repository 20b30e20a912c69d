"""The real app in a real browser: `streamlit run app_streamlit.py` driven by headless Chromium
(Playwright). Upload a five-face photo and see five results; play three quiz rounds and see
both scores move as they should. Screenshots go to test-output/ (two also to docs/)."""
from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import small_split, stop_process

from emorec.app.quiz import QuizState, find_quiz_items
from emorec.app.streamlit_app import QUIZ_PER_CLASS
from emorec.config import FER_CLASSES, Config

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")
OUT = ROOT / "test-output"
DOCS = ROOT / "docs"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
WAIT_MS = 60_000
# The tiny test model by default; set this to a trained model to refresh the README screenshots.
# Every expectation below is computed with the same model, so any model passes.
MODEL_ENV = "EMOREC_TEST_APP_MODEL"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def quiz_dir(tmp_path_factory, fer2013_zip) -> Path:
    return small_split(fer2013_zip, tmp_path_factory.mktemp("split"), {"train": 0, "val": 0, "test": 4},
                       FER_CLASSES) / "test"


@pytest.fixture(scope="module")
def model_path(tiny_onnx) -> Path:
    return Path(os.environ.get(MODEL_ENV) or tiny_onnx).resolve()


@pytest.fixture(scope="module")
def server(quiz_dir, model_path, yunet_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} not found (apt-get install -y chromium)")
    OUT.mkdir(exist_ok=True)
    port = free_port()
    log = open(OUT / "streamlit_server.log", "wb")
    cmd = [sys.executable, "-m", "streamlit", "run", str(ROOT / "app_streamlit.py"),
           "--server.headless", "true", "--server.address", "127.0.0.1", "--server.port", str(port),
           "--browser.gatherUsageStats", "false", "--client.toolbarMode", "minimal",
           "--", "--model", str(model_path), "--quiz-dir", str(quiz_dir)]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                            env={**os.environ, "EMOREC_YUNET": str(yunet_path)})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.read() == b"ok":
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"streamlit did not start (exit code {proc.poll()}); see {log.name}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop_process(proc)
        log.close()


@contextlib.contextmanager
def browser_page(server: str, *args: str):
    """A page of the app in headless Chromium started with ``args`` besides CHROMIUM_ARGS."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + list(args))
        try:
            pg = browser.new_page(viewport={"width": 1400, "height": 1000})
            pg.set_default_timeout(WAIT_MS)
            pg.goto(server)
            yield pg
        finally:
            browser.close()


@pytest.fixture
def page(server):
    with browser_page(server) as pg:
        yield pg


def save_docs_copy(shot: Path, name: str) -> None:
    """The README's screenshot (256-colour PNG), refreshed only when asked for with
    EMOREC_UPDATE_DOCS=1, so ordinary test runs leave tracked files alone."""
    from PIL import Image

    if os.environ.get("EMOREC_UPDATE_DOCS") != "1":
        return
    DOCS.mkdir(exist_ok=True)
    img = Image.open(shot).convert("RGB")
    img.thumbnail((1200, 1200))
    img.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(DOCS / name, optimize=True)
    assert (DOCS / name).stat().st_size < 300_000


def wait_idle(page) -> None:
    """Until the script rerun triggered by the last click has finished."""
    page.wait_for_timeout(300)
    page.locator('[data-testid="stStatusWidget"]').wait_for(state="hidden")


def click_button(page, key: str) -> None:
    """Click the button with Streamlit key ``key`` once the page has settled: during a
    rerun Streamlit briefly shows the stale and the new element side by side."""
    from playwright.sync_api import expect

    wait_idle(page)
    button = page.locator(f".st-key-{key} button")
    expect(button).to_have_count(1)
    button.click()


def test_upload_shows_every_face(page, images_dir):
    from playwright.sync_api import expect

    expect(page.get_by_text("Upload a photo or take a snapshot")).to_be_visible()
    page.locator('.st-key-upload input[type="file"]').set_input_files(str(images_dir / "multi_face.jpg"))
    expect(page.get_by_text("5 face(s) found")).to_be_visible()
    expect(page.locator('[data-testid="stMain"] [data-testid="stDataFrame"]').first).to_be_visible()  # a row per face
    expect(page.get_by_text("multi_face.jpg: 5 face(s)")).to_be_visible()  # the boxed photo's caption
    wait_idle(page)
    page.wait_for_timeout(1000)  # the table finishes drawing
    # compact: the photo, shown large enough to read its labels, and all five faces' rows in about
    # one screen and a half (the old page was 2,500 px tall)
    height = page.evaluate('document.querySelector(\'[data-testid="stMain"]\').scrollHeight')
    assert height < 1500, height
    page.screenshot(path=str(OUT / "app_predict.png"))
    save_docs_copy(OUT / "app_predict.png", "app_predict.png")


def expect_score(page, rounds: int, player: int, model: int) -> None:
    """The three score metrics; retried, since a rerun redraws them one after another."""
    from playwright.sync_api import expect

    for label, value in (("Rounds", str(rounds)), ("You", f"{player} / {rounds}"), ("Model", f"{model} / {rounds}")):
        box = page.locator('[data-testid="stMetric"]').filter(has=page.get_by_text(label, exact=True))
        expect(box.locator('[data-testid="stMetricValue"]')).to_have_text(value)


def test_quiz_three_rounds(page, quiz_dir, model_path):
    from playwright.sync_api import expect

    from emorec.imageio import read_image
    from emorec.inference.predictor import Predictor

    model = Predictor.from_path(model_path, detector="none")
    classes = model.classes
    # The app's deck is seeded: replaying it here tells each image's true label in advance.
    items = find_quiz_items(quiz_dir, classes, per_class=QUIZ_PER_CLASS, seed=Config().seed)
    deck = QuizState(len(items), seed=Config().seed)

    page.locator(".st-key-mode").get_by_text("Emotion quiz", exact=True).click()
    expect(page.get_by_text("Which emotion is this?")).to_be_visible()
    expect_score(page, 0, 0, 0)
    player = model_score = 0
    for k, right in enumerate([True, False, True], 1):
        expect(page.get_by_text(f"Image {k} of {len(items)}")).to_be_visible()
        item = items[deck.current]
        guess = item.label if right else next(c for c in classes if c != item.label)
        predicted = model.predict([read_image(item.path)], detect=False)[0][0].label
        player += right
        model_score += predicted == item.label

        page.locator(f".st-key-guess_0_{k - 1}").get_by_text(guess, exact=True).click()
        click_button(page, "quiz_submit")
        expect(page.get_by_text(f"The face shows {item.label}.")).to_be_visible()
        expect(page.get_by_text(f"You: {guess} — {'right' if right else 'wrong'}.")).to_be_visible()
        expect(page.get_by_text(f"Model: {predicted} (", exact=False)).to_be_visible()
        expect_score(page, k, player, model_score)
        wait_idle(page)
        page.wait_for_timeout(500)
        page.screenshot(path=str(OUT / f"app_quiz_round{k}.png"))
        click_button(page, "quiz_next")
        deck.next()

    expect(page.get_by_text(f"Image 4 of {len(items)}")).to_be_visible()
    click_button(page, "quiz_reset")
    expect_score(page, 0, 0, 0)
    save_docs_copy(OUT / "app_quiz_round3.png", "app_quiz.png")


# --- video page --------------------------------------------------------------------------
def clip_faces():
    from emorec.detect import make_detector
    from emorec.imageio import read_image
    from emorec.inference import clips

    photo = read_image(ROOT / "examples" / "multi_face.jpg")
    return clips.photo_faces(photo, [b for b, _ in make_detector("yunet").detect(photo)])


def test_video_clip_shows_each_person(page, tmp_path, model_path):
    from playwright.sync_api import expect

    from emorec.inference import clips
    from emorec.inference.predictor import Predictor

    clip = tmp_path / "crossing.avi"
    clips.write_clip(clip, clip_faces(), clips.crossing(), 75)
    page.locator(".st-key-mode").get_by_text("Video", exact=True).click()
    page.locator('.st-key-clip input[type="file"]').set_input_files(str(clip))
    expect(page.get_by_text("2 people in 3.0 s")).to_be_visible()
    expect(page.get_by_text("up to 50 MB and 60 seconds", exact=False)).to_be_visible()  # the limits are stated
    expect(page.locator('[data-testid="stMain"] [data-testid="stDataFrame"]')).to_be_visible()  # a row per person
    # the annotated preview is H.264 the browser can play (readyState 4: enough data to play through)
    page.wait_for_function("document.querySelector('video') && document.querySelector('video').readyState >= 2")
    assert page.locator('[data-testid="stImage"] img').count() >= 1  # the timeline
    Predictor.from_path(model_path)  # the app served this model: it loads
    wait_idle(page)
    page.screenshot(path=str(OUT / "app_video.png"), full_page=True)
    save_docs_copy(OUT / "app_video.png", "app_video.png")


@pytest.fixture
def camera_page(server, tmp_path):
    """A browser whose camera plays a clip built here: one face, drifting right, on a loop."""
    from emorec.inference import clips

    y4m = tmp_path / "camera.y4m"
    clips.write_y4m(y4m, (f for f, _ in clips.clip_frames(clip_faces(), [clips.Actor(1, (300, 240), (340, 240))], 50)))
    with browser_page(server, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream",
                      f"--use-file-for-fake-video-capture={y4m}") as pg:
        yield pg


def test_live_webcam_labels_each_face(camera_page, model_path):
    """START the stream: the server labels the camera's face (#1 and an emotion) and says so on the
    page; the frame rate it reached is kept in test-output/live_webcam.txt."""
    import re

    from playwright.sync_api import expect

    from emorec.inference.predictor import Predictor

    page = camera_page
    classes = Predictor.from_path(model_path).classes
    page.locator(".st-key-mode").get_by_text("Video", exact=True).click()
    page.locator(".st-key-video_source").get_by_text("Live webcam", exact=True).click()
    page.frame_locator('iframe[title*="webrtc"]').get_by_role("button", name="START").click()
    status = page.get_by_text("frames per second", exact=False)
    expect(status).to_be_visible()
    person = page.get_by_text(re.compile(rf"#1 ({'|'.join(classes)}) \d+%"))
    expect(person).to_be_visible()
    page.wait_for_timeout(10_000)  # ten seconds of stream: the frame rate settles
    text = status.inner_text()
    fps, frames = re.search(r"([\d.]+) frames per second, 1 face\(s\) now, (\d+) frames", text).groups()
    assert int(frames) > 50, text
    (OUT / "live_webcam.txt").write_text(f"{text}\n")
    page.screenshot(path=str(OUT / "app_live.png"))

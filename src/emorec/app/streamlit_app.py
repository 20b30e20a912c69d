"""The Streamlit app: emotions of the faces in a photo or webcam shot, the people of a video
clip or a live webcam stream (``video_page``), and an emotion quiz (player against model) on the
test split.

    emorec app [--model M]                      # or:
    streamlit run app_streamlit.py [-- --model M --quiz-dir D]

Runs on the ONNX predictor only (no torch). The model and the quiz images are loaded
once per server, not on every rerun of this script.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from emorec.app.drawing import enlarge, png_data_uri
from emorec.app.quiz import QuizItem, QuizState, find_quiz_items, folder_stamp
from emorec.app.settings import AppSettings, parse_script_args
from emorec.app.video_page import video_page
from emorec.errors import EmorecError
from emorec.imageio import DECODE_PIXELS, FULL_DECODE_PIXELS, read_image
from emorec.detect import make_detector
from emorec.inference.draw import annotate
from emorec.config import SHIPPED_MODELS
from emorec.inference.predictor import Predictor, default_model_path, resolve_model
from emorec.inference.face import Face
from emorec.preprocess import crop_face
from emorec.provenance import portable_path

UPLOAD_TYPES = ["jpg", "jpeg", "png", "webp", "bmp"]
DETECTORS = {"yunet": "YuNet (finds more faces)", "haar": "Haar cascade (classic, faster)"}
# Shipped models, as a visitor reads them: short enough for the sidebar's picker.
MODEL_NAMES = {"5class": "5 emotions (no neutral)", "7class": "7 emotions (with neutral)"}
QUIZ_PER_CLASS = 200  # a seeded sample of the test split: plenty of rounds, quick start
MODES = ["Predict", "Video", "Emotion quiz"]

MODEL_HELP = """**No model to run yet.** Prepare data, train and export one, then reload this page:

```
emorec data prepare ../shared/datasets/fer2013.zip   # -> data_split/{train,val,test}/<class>/
emorec train --profile DEV_TRAIN                     # -> runs/default/models/best_model.pt
emorec export                                        # -> runs/default/models/best_model.int8.onnx
```

Then start the app on it: `emorec app --model runs/default/models/best_model.int8.onnx`
(or set `EMOREC_MODEL`)."""

SPLIT_HELP = """The quiz shows face images from a folder laid out as `<folder>/<class>/*.jpg` (the
folder name is the true emotion), chosen by whoever runs the app: `emorec app --quiz-dir FOLDER`
(or `EMOREC_QUIZ_DIR`); by default the test split of `emorec data prepare`:

```
emorec data prepare ../shared/datasets/fer2013.zip   # -> data_split/test/<class>/
```"""


# --- loading (once per server) -----------------------------------------------------------

@st.cache_resource(show_spinner="Loading the model...", max_entries=2)
def load_model(path: str, threads: int, mtime_ns: int) -> Predictor:
    # The classifier alone; detectors are attached per sidebar choice, so changing the
    # detector or its threshold never reloads the model. ``mtime_ns`` is only part of the
    # key: a re-exported model file is picked up without restarting the server.
    return Predictor.from_path(path, detector="none", threads=threads)


@st.cache_resource(show_spinner="Loading the face detector...", max_entries=8)
def load_detector(name: str, threshold: float, yunet_path: str | None, min_face_size: int, min_side: int,
                  max_side: int):
    return make_detector(name, model_path=yunet_path, score_threshold=threshold,
                         min_face_size=min_face_size, min_side=min_side, max_side=max_side)


@st.cache_data(show_spinner="Loading quiz images...", max_entries=4)
def load_quiz(quiz_dir: str, classes: tuple[str, ...], seed: int,
              stamp: tuple) -> tuple[list[QuizItem], list[np.ndarray], list[str]]:
    """Quiz items with their decoded pixels; unreadable files are skipped and reported.
    ``stamp`` (see folder_stamp) is only part of the cache key."""
    items, images, skipped = [], [], []
    for item in find_quiz_items(quiz_dir, classes, QUIZ_PER_CLASS, seed):
        try:
            images.append(read_image(item.path))
            items.append(item)
        except EmorecError as e:
            skipped.append(str(e))
    return items, images, skipped


# --- sidebar -----------------------------------------------------------------------------

def sidebar_controls(settings: AppSettings) -> tuple[str, str, float, Path]:
    st.sidebar.title("emorec")
    mode = st.sidebar.radio("Mode", MODES, key="mode")
    detector, threshold = settings.cfg.detector, float(settings.cfg.det_score_threshold)
    if mode != "Emotion quiz":  # the quiz shows face crops: no face finding there
        st.sidebar.subheader("Finding faces")
        default = detector if detector in DETECTORS else "yunet"
        detector = st.sidebar.selectbox("Face finder", list(DETECTORS), index=list(DETECTORS).index(default),
                                        format_func=DETECTORS.get, key="detector")
        threshold = st.sidebar.slider("How sure it must be that it is a face", 0.1, 0.99, threshold, 0.01,
                                      key="threshold", disabled=detector != "yunet",
                                      help="Lower finds more faces, and more things that are not faces. "
                                           "The Haar cascade has no such score.")
    return mode, detector, threshold, model_choice(settings)


def model_choice(settings: AppSettings) -> Path:
    """The operator's model (--model, EMOREC_MODEL, MODEL_PATH) as given; else the shipped ones
    by name, when there is more than one to choose from."""
    if settings.model_path is not None:
        return resolve_model(settings.model_path)
    shipped = [name for name in SHIPPED_MODELS if resolve_model(name).is_file()]
    if len(shipped) < 2:
        return default_model_path(settings.cfg)
    name = st.sidebar.selectbox("Model", shipped, format_func=lambda n: MODEL_NAMES.get(n, n), key="model_name",
                                help="5 emotions: angry, fear, happy, sad, surprise. 7 emotions adds disgust "
                                     "and neutral: better for everyday photos, where most faces are calm.")
    return resolve_model(name)


def metric_rows(metrics: dict, prefix: str = "") -> list[tuple[str, str]]:
    """Nested metrics flattened for a table: floats to 4 significant digits."""
    rows = []
    for key, value in metrics.items():
        if isinstance(value, dict):
            rows += metric_rows(value, f"{prefix}{key} ")
        else:
            rows.append((prefix + key, f"{value:.4g}" if isinstance(value, float) else str(value)))
    return rows


def plain_metrics(metrics: dict) -> str:
    """A model's stored test result in words: "Right on 65% of 2,908 test faces." (which faces: in
    the technical details)."""
    if not isinstance(metrics.get("accuracy"), (int, float)):
        return "No test result stored in this model."
    n = metrics.get("n")
    return f"Right on {metrics['accuracy']:.0%}" + (f" of {n:,} test faces." if isinstance(n, int) else " of its test faces.")


def sidebar_model(model: Predictor) -> None:
    info = model.info
    st.sidebar.subheader("Model")
    st.sidebar.markdown(f"**Recognises:** {', '.join(info.classes)}  \n{plain_metrics(info.metrics or {})}")
    with st.sidebar.expander("Technical details"):
        st.caption(f"`{portable_path(model.model_path)}`")  # the shipped one as models/...
        st.markdown(f"**Version:** {info.version or 'unknown'}  \n"
                    f"**Input:** {info.img_size} px, {'grayscale' if info.grayscale else 'colour'}"
                    f"{f' · {info.backbone}' if info.backbone else ''}")
        if info.metrics:
            rows = metric_rows(info.metrics)
            st.dataframe(pd.DataFrame({"metric": [k for k, _ in rows], "value": [v for _, v in rows]}),
                         hide_index=True)


# --- predict mode ------------------------------------------------------------------------

def faces_table(faces: list[Face], crops: list[np.ndarray] | None, classes: list[str], key: str) -> None:
    """One compact row per face: crop, emotion, and a named bar per emotion on one shared 0-1 scale;
    the numbers on demand."""
    rows = {"face": [f"#{i}" for i in range(1, len(faces) + 1)]}
    if crops is not None:
        rows["crop"] = [png_data_uri(enlarge(c, 64)) for c in crops]
    rows["emotion"] = [f.label for f in faces]
    rows.update({c: [f.probs[c] for f in faces] for c in classes})
    columns = {"face": st.column_config.TextColumn("face", width=40),
               "crop": st.column_config.ImageColumn("crop", width=56),
               "emotion": st.column_config.TextColumn("emotion", width=80)}
    columns.update({c: st.column_config.ProgressColumn(c, format="percent", min_value=0.0, max_value=1.0,
                                                       width=90) for c in classes})
    st.dataframe(pd.DataFrame(rows), hide_index=True, key=f"faces_{key}", row_height=56 if crops else 35,
                 column_config=columns)
    with st.expander("Probabilities as numbers"):
        numbers = pd.DataFrame({"face": rows["face"], **{c: [round(f.probs[c], 4) for f in faces] for c in classes}})
        st.dataframe(numbers, hide_index=True, key=f"numbers_{key}")


def show_faces(img: np.ndarray, faces: list[Face], model: Predictor, name: str) -> None:
    # The photo at 640 px (its labels, ~1/45 of its side, stay ~15 px tall), the table below it.
    st.image(annotate(img, faces, numbered=True), caption=f"{name}: {len(faces)} face(s)", width=640)
    st.subheader(f"{len(faces)} face(s) found" if len(faces) != 1 else "1 face found")
    crops = [crop_face(img, f.box, model.info.face_margin) for f in faces]
    faces_table(faces, crops, model.classes, key="photo")


def predict_page(model: Predictor, predictor: Predictor, settings: AppSettings) -> None:
    st.header("What emotion is on each face?")
    source = st.radio("Image source", ["Upload a photo", "Webcam snapshot"], horizontal=True, key="source")
    if source == "Upload a photo":
        upload = st.file_uploader(f"Photo ({', '.join(UPLOAD_TYPES)}; up to {settings.max_upload_mb} MB)",
                                  type=UPLOAD_TYPES, max_upload_size=settings.max_upload_mb, key="upload")
    else:
        upload = st.camera_input("Take a snapshot", key="camera")
    if upload is None:
        st.info("Upload a photo or take a snapshot: every face found gets its emotion.")
        return
    data = upload.getvalue()
    if len(data) > settings.max_upload_mb * 2**20:  # the browser enforces it too; a script client need not
        st.error(f"{upload.name}: {len(data) / 2**20:.1f} MB is over the {settings.max_upload_mb} MB limit.")
        return
    try:
        img = read_image(data, name=upload.name, decode_pixels=DECODE_PIXELS, full_decode_pixels=FULL_DECODE_PIXELS)
    except EmorecError as e:
        st.error(f"Cannot use this file: {e}")
        return
    faces = predictor.predict([img])[0]
    if not faces:
        st.warning(f"No face found in {upload.name} (detector: {predictor.detector_name}). Try the other "
                   "detector or a lower threshold in the sidebar, or classify the whole image.")
        if not st.toggle("Use the whole image as one face", key="whole_image"):
            st.image(img, caption=upload.name)
            return
        faces = predictor.predict([img], detect=False)[0]
    show_faces(img, faces, model, upload.name)


# --- quiz mode ---------------------------------------------------------------------------

def quiz_state(key: tuple, size: int, seed: int) -> QuizState:
    """One deck and score per browser session; a new deck when the image set changes."""
    if st.session_state.get("quiz_key") != key:
        st.session_state.quiz = QuizState(size, seed=seed)
        st.session_state.quiz_key = key
    return st.session_state.quiz


def submit_answer(state: QuizState, model: Predictor, item: QuizItem, img: np.ndarray, guess_key: str) -> None:
    guess = st.session_state.get(guess_key)
    if guess is None or state.answered:
        return
    face = model.predict([img], detect=False)[0][0]  # quiz images are face crops already
    state.answer(guess, item.label, face.label, face.probs)


def quiz_page(model: Predictor, settings: AppSettings) -> None:
    st.header("Emotion quiz: you against the model")
    quiz_dir = settings.quiz_dir  # the server's setting: visitors never name server folders
    classes = model.classes
    items, images, skipped = load_quiz(str(quiz_dir), tuple(classes), settings.cfg.seed,
                                       folder_stamp(quiz_dir))
    if skipped:
        st.caption(f"{len(skipped)} unreadable image(s) left out, e.g. {Path(skipped[0].split(':')[0]).name}")
    if not items:
        where = "does not exist" if not quiz_dir.is_dir() else f"has no images in folders named {', '.join(classes)}"
        print(f"emorec app: no quiz images: {quiz_dir} {where}", file=sys.stderr)  # for the operator's log
        st.warning("No quiz images on this server.")
        st.markdown(SPLIT_HELP)
        return
    state = quiz_state((str(quiz_dir.resolve()), tuple(classes), len(items)), len(items), settings.cfg.seed)
    score = st.columns(3)
    score[0].metric("Rounds", state.rounds)
    score[1].metric("You", f"{state.player} / {state.rounds}")
    score[2].metric("Model", f"{state.model} / {state.rounds}")

    item, img = items[state.current], images[state.current]
    picture, answer = st.columns([1, 2])
    seen = state.pos + 1
    picture.image(enlarge(img, 240), caption=f"Image {seen} of {len(items)}"
                  + (f" (round {state.deck_no + 1} through the set)" if state.deck_no else ""))
    with answer:
        guess_key = f"guess_{state.deck_no}_{state.pos}"  # a fresh, unanswered radio per image
        guess = st.radio("Which emotion is this?", classes, index=None, key=guess_key,
                         horizontal=True, disabled=state.answered)
        st.button("Submit", key="quiz_submit", type="primary", disabled=state.answered or guess is None,
                  on_click=submit_answer, args=(state, model, item, img, guess_key))
        if state.result is not None:
            r = state.result
            st.markdown(f"The face shows **{r.truth}**.")
            (st.success if r.player_right else st.error)(
                f"You: {r.guess} — {'right' if r.player_right else 'wrong'}.")
            (st.success if r.model_right else st.error)(
                f"Model: {r.predicted} ({r.probs[r.predicted]:.0%}) — {'right' if r.model_right else 'wrong'}.")
            faces_table([Face((0, 0, 0, 0), r.predicted, r.probs[r.predicted], r.probs)], None, classes, key="quiz")
        buttons = st.columns(2)
        buttons[0].button("Next image", key="quiz_next", on_click=state.next)
        buttons[1].button("Reset score", key="quiz_reset", on_click=state.reset_score)


# --- page --------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> None:
    st.set_page_config(page_title="emorec: facial emotions", layout="wide")
    try:
        settings = parse_script_args(sys.argv[1:] if argv is None else argv)
    except EmorecError as e:
        st.error(str(e))
        st.stop()
    mode, detector_name, threshold, model_path = sidebar_controls(settings)
    cfg = settings.cfg
    try:
        mtime = model_path.stat().st_mtime_ns if model_path.is_file() else 0
        model = load_model(str(model_path), cfg.ort_threads, mtime)
    except EmorecError as e:
        st.error(str(e))
        st.markdown(MODEL_HELP)
        st.stop()
    sidebar_model(model)
    if mode in ("Predict", "Video"):
        try:
            detector = load_detector(detector_name, threshold if detector_name == "yunet" else 0.0,
                                     str(cfg.yunet_path) if cfg.yunet_path else None,
                                     cfg.min_face_size, cfg.det_min_side, cfg.det_max_side)
        except EmorecError as e:
            st.error(f"Face detector '{detector_name}' unavailable: {e}")
            st.stop()
        page = predict_page if mode == "Predict" else video_page
        page(model, model.with_detector(detector, detector_name), settings)
    else:
        quiz_page(model, settings)


if __name__ == "__main__":
    main()

"""The app's video page: a clip's people (annotated preview, timeline, a row per person) and a
live webcam stream (streamlit-webrtc) with each face's track id and smoothed emotion."""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
import time
from collections import deque
from pathlib import Path

import numpy as np
import pandas as pd
import streamlit as st

from emorec.app.settings import AppSettings
from emorec.errors import EmorecError, require
from emorec.inference.draw import annotate
from emorec.inference.people import People, track_frames, video_summary
from emorec.inference.predictor import Predictor
from emorec.inference.video import VideoReader

VIDEO_TYPES = ["mp4", "mov", "avi", "mkv", "webm"]
PREVIEW_SIDE = 640  # the preview's longer side: smaller files, the same labels
ENV_ICE = "EMOREC_ICE_SERVERS"  # JSON list of STUN/TURN servers for the live stream (default: none)
SOURCES = ["Upload a clip", "Live webcam"]


def video_page(model: Predictor, predictor: Predictor, settings: AppSettings) -> None:
    st.header("Who felt what, and when?")
    source = st.radio("Video source", SOURCES, horizontal=True, key="video_source")
    if source == SOURCES[0]:
        clip_section(predictor, settings)
    else:
        live_section(predictor, settings)


# --- a clip ------------------------------------------------------------------------------

def clip_section(predictor: Predictor, settings: AppSettings) -> None:
    limits = f"up to {settings.max_video_mb} MB and {settings.max_video_s:g} seconds"
    upload = st.file_uploader(f"Clip ({', '.join(VIDEO_TYPES)}; {limits})", type=VIDEO_TYPES,
                              max_upload_size=settings.max_video_mb, key="clip")
    every = st.number_input("Look at every Nth frame (1: all; higher is faster)", 1, 30, 1, key="clip_every")
    if upload is None:
        st.info(f"Upload a clip ({limits}): every person in it gets an id, their emotions over time and a "
                "summary. Emotions are averaged over "
                f"{settings.cfg.smooth_s:g} s, so a single odd frame does not change the label.")
        return
    data = upload.getvalue()
    if len(data) > settings.max_video_mb * 2**20:
        st.error(f"{upload.name}: {len(data) / 2**20:.1f} MB is over the {settings.max_video_mb} MB limit.")
        return
    key = (hashlib.sha1(data).hexdigest(), int(every), str(predictor.model_path), predictor.detector_name)
    if st.session_state.get("clip_result", (None,))[0] != key:  # analysed once, not on every rerun
        try:
            result = analyse_clip(data, upload.name, predictor, settings, int(every))
        except EmorecError as e:
            st.error(f"Cannot use this clip: {e}")
            return
        st.session_state["clip_result"] = (key, result)
    summary, preview, timeline = st.session_state["clip_result"][1]
    people = summary["people"]
    st.subheader(f"{len(people)} {'person' if len(people) == 1 else 'people'} in {summary['duration_s']:.1f} s")
    left, right = st.columns([3, 4])
    with left:
        st.video(preview, format="video/mp4")
    with right:
        st.image(timeline, caption="Each person's emotions over time (smoothed)")
    if people:
        st.dataframe(people_table(summary), hide_index=True)
        st.download_button("Summary (JSON)", json.dumps(summary, indent=2), file_name=f"{upload.name}.json",
                           mime="application/json", key="clip_json")
    else:
        st.warning("No face found in this clip.")


def analyse_clip(data: bytes, name: str, predictor: Predictor, settings: AppSettings, every: int):
    """(summary, preview MP4 bytes, timeline PNG bytes) of one uploaded clip."""
    from emorec.inference.timeline import timeline_png

    cfg = settings.cfg
    with tempfile.TemporaryDirectory(prefix="emorec-app-") as tmp:
        path = Path(tmp) / ("clip" + Path(name).suffix.lower())
        path.write_bytes(data)
        video = VideoReader(path, every, decode_all=True, name=name, max_seconds=settings.max_video_s)
        people = People(predictor.classes, smooth_s=cfg.smooth_s, max_missing_s=cfg.track_max_missing_s)
        bar = st.progress(0.0, text=f"Looking at {name}...")
        total = max(1, video.claimed_frames)
        preview = Path(tmp) / "preview.mp4"
        try:
            with Mp4Writer(preview, video.rate) as out:
                for frame, faces in track_frames(video, predictor, people):
                    out.write(annotate(frame.rgb, faces, numbered=True))
                    if frame.index % 10 == 0:
                        bar.progress(min(1.0, frame.index / total), text=f"Looking at {name}: frame {frame.index}")
        finally:
            bar.empty()
        summary = video_summary(name, video, people)
        timeline = timeline_png(people.series(), predictor.classes, Path(tmp) / "timeline.png",
                                duration_s=summary["duration_s"], title=f"{name}: smoothed over {cfg.smooth_s:g} s")
        return summary, preview.read_bytes(), timeline.read_bytes()


class Mp4Writer:
    """RGB frames -> an H.264 MP4 that browsers play (PyAV, which streamlit-webrtc brings),
    shrunk to PREVIEW_SIDE; OpenCV's wheels write no H.264."""

    def __init__(self, path: Path, fps: float, crf: int = 26):
        self.av = require("av", "app")
        self.path, self.fps, self.crf, self.stream = path, fps, crf, None
        self.out = self.av.open(str(path), "w")

    def write(self, rgb: np.ndarray) -> None:
        import cv2

        h, w = rgb.shape[:2]
        scale = min(1.0, PREVIEW_SIDE / max(h, w))
        size = (max(2, round(w * scale) // 2 * 2), max(2, round(h * scale) // 2 * 2))  # even sides for yuv420p
        if self.stream is None:
            from fractions import Fraction

            self.stream = self.out.add_stream("libx264", rate=Fraction(self.fps).limit_denominator(1001))
            self.stream.width, self.stream.height = size
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"preset": "veryfast", "crf": str(self.crf)}  # 18: near lossless
        if (w, h) != size:
            rgb = cv2.resize(rgb, size, interpolation=cv2.INTER_AREA)
        for packet in self.stream.encode(self.av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
            self.out.mux(packet)

    def __enter__(self) -> "Mp4Writer":
        return self

    def __exit__(self, *exc) -> None:
        if self.stream is not None:
            for packet in self.stream.encode():
                self.out.mux(packet)
        self.out.close()


def people_table(summary: dict) -> pd.DataFrame:
    rows = []
    for p in summary["people"]:
        shares = sorted(p["share"].items(), key=lambda kv: -kv[1])
        rows.append({"person": f"#{p['track']}", "on screen": f"{p['seen_s']:.1f} s",
                     "seen": f"{p['first_s']:.1f}–{p['last_s']:.1f} s", "mostly": p["dominant"],
                     "share of time": ", ".join(f"{c} {s:.0%}" for c, s in shares if s >= 0.005),
                     "strongest moments": ", ".join(f"{m['emotion']} at {m['time_s']:.1f} s"
                                                    for m in p["moments"])})
    return pd.DataFrame(rows)


# --- live --------------------------------------------------------------------------------

class LiveLabeller:
    """streamlit-webrtc's frame callback, run in its own thread: each frame's faces tracked,
    their emotions smoothed and drawn; ``status()`` tells the page what it saw."""

    def __init__(self, predictor: Predictor, smooth_s: float, max_missing_s: float):
        self.predictor = predictor
        self.people = People(predictor.classes, smooth_s=smooth_s, max_missing_s=max_missing_s, keep_series=False)
        self.lock = threading.Lock()
        self.times: deque[float] = deque(maxlen=60)  # when the last frames were done: the frame rate
        self.faces: list = []
        self.frames = 0

    def __call__(self, frame):
        av = require("av", "app")
        rgb = frame.to_ndarray(format="rgb24")
        now = time.monotonic()
        with self.lock:
            step = now - self.times[-1] if self.times else 1 / 30
            faces = self.people.update(self.predictor.predict([rgb])[0], now, min(step, 1.0))
            self.faces, self.frames = faces, self.frames + 1
            self.times.append(time.monotonic())
        out = av.VideoFrame.from_ndarray(annotate(rgb, faces, numbered=True), format="rgb24")
        if frame.time_base is not None:  # the stream's own timing, for the browser
            out.pts, out.time_base = frame.pts, frame.time_base
        return out

    def status(self) -> tuple[float, list, int]:
        """(frames per second over the last 60 frames, the latest faces, frames done)."""
        with self.lock:
            times, faces, frames = list(self.times), list(self.faces), self.frames
        fps = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 and times[-1] > times[0] else 0.0
        return fps, faces, frames


def ice_servers() -> list:
    """STUN/TURN servers from $EMOREC_ICE_SERVERS (JSON); none by default, which is all a browser
    on the same machine or network needs, and needs no internet."""
    raw = os.environ.get(ENV_ICE, "").strip()
    if not raw:
        return []
    try:
        servers = json.loads(raw)
    except json.JSONDecodeError as e:
        raise EmorecError(f"${ENV_ICE} is not JSON ({e.msg}): give a list like "
                          '[{"urls": ["stun:stun.l.google.com:19302"]}]') from None
    if not isinstance(servers, list):
        raise EmorecError(f"${ENV_ICE} must be a JSON list of ICE servers")
    return servers


def live_section(predictor: Predictor, settings: AppSettings) -> None:
    webrtc = require("streamlit_webrtc", "app")
    cfg = settings.cfg
    key = (str(predictor.model_path), predictor.detector_name, cfg.smooth_s)
    if st.session_state.get("live_key") != key:  # one labeller per visitor, kept across reruns
        st.session_state["live_key"] = key
        st.session_state["live_labeller"] = LiveLabeller(predictor, cfg.smooth_s, cfg.track_max_missing_s)
    labeller: LiveLabeller = st.session_state["live_labeller"]
    try:
        ice = ice_servers()
    except EmorecError as e:
        st.error(str(e))
        return
    st.caption("Press START and allow the camera: each face gets an id and its emotion, averaged over "
               f"{cfg.smooth_s:g} s. Frames are processed on this server and not stored.")
    left, right = st.columns([3, 2])
    with left:
        ctx = webrtc.webrtc_streamer(
            key="live", mode=webrtc.WebRtcMode.SENDRECV, video_frame_callback=labeller,
            media_stream_constraints={"video": {"width": {"ideal": 640}, "height": {"ideal": 480}}, "audio": False},
            rtc_configuration={"iceServers": ice}, async_processing=True,
            video_html_attrs={"style": {"width": "100%", "maxWidth": "640px"}, "autoPlay": True, "muted": True})
    with right:
        board = st.empty()
    while ctx.state.playing:
        fps, faces, frames = labeller.status()
        lines = [f"**Live:** {fps:.1f} frames per second, {len(faces)} face(s) now, {frames} frames so far"]
        lines += [f"- #{f.track} {f.label} {f.confidence:.0%}" for f in faces]
        board.markdown("\n".join(lines))
        time.sleep(0.5)

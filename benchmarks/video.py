"""Video speed and memory: frames per second and peak memory of emorec's video path (decode,
detect, classify, track, smooth: what ``emorec predict clip.mp4`` runs) on 640x480 clips with
one and three faces at ``--every 1``, a 10-minute clip showing time per frame and memory stay
flat, and the ``fer`` package's video path on the same clips where it runs.

Clips are built from examples/multi_face.jpg (``emorec.inference.clips``). Each measurement runs
in a process of its own, so peak memory (ru_maxrss) is that run's alone.

    python benchmarks/video.py                                   # emorec only
    python benchmarks/video.py --fer-python /path/to/venv/bin/python   # with fer beside it
    # that venv: pip install --no-deps fer==25.10.3 facenet-pytorch; pip install tensorflow-cpu
    #   opencv-contrib-python pandas matplotlib "moviepy<2" ffmpeg-python tqdm requests
    #   torch==2.13.0 "setuptools<81"
    # (fer imports pkg_resources; Video.analyze calls OpenCV's GUI, which the headless build lacks)
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FPS = 25


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_emorec(clip: str, every: int, window: int) -> dict:
    from emorec.inference.people import People, track_frames
    from emorec.inference.predictor import Predictor
    from emorec.inference.video import VideoReader

    predictor = Predictor.from_path("5class")
    video = VideoReader(clip, every)
    people = People(predictor.classes)
    start = last = time.perf_counter()
    windows, n = [], 0
    for frame, _ in track_frames(video, predictor, people):
        n += 1
        if n % window == 0:  # a row per window of frames: time per frame and memory as the clip goes on
            now = time.perf_counter()
            windows.append({"frame": frame.index + 1, "ms_per_frame": (now - last) / window * 1000, "rss_mb": rss_mb()})
            last = now
    seconds = time.perf_counter() - start
    return {"frames": n, "fps": n / seconds, "peak_mb": peak_mb(), "windows": windows,
            "people": len(people.summary())}


def run_live(clip: str) -> dict:
    """The app's live webcam callback alone: a WebRTC frame in, a labelled frame out (the
    browser's own encode and decode are not in it)."""
    import av

    from emorec.app.video_page import LiveLabeller
    from emorec.inference.predictor import Predictor
    from emorec.inference.video import VideoReader

    labeller = LiveLabeller(Predictor.from_path("5class"), smooth_s=0.5, max_missing_s=1.0)
    frames = [av.VideoFrame.from_ndarray(f.rgb, format="rgb24") for f in VideoReader(clip)]
    for i, frame in enumerate(frames):  # timed as a camera's frames are
        frame.pts, frame.time_base = i, Fraction(1, FPS)
    start = time.perf_counter()
    for frame in frames:
        labeller(frame)
    seconds = time.perf_counter() - start
    return {"frames": len(frames), "fps": len(frames) / seconds, "peak_mb": peak_mb()}


def run_fer(clip: str, every: int) -> dict:
    from fer.classes import Video  # fer 25.10's __init__ exports nothing
    from fer.fer import FER

    detector = FER(mtcnn=False)
    start = time.perf_counter()
    rows = Video(clip, outdir=tempfile.mkdtemp()).analyze(detector, display=False, frequency=every, output="pandas",
                                                          save_frames=False, save_video=False, annotate_frames=False,
                                                          zip_images=False)
    seconds = time.perf_counter() - start
    return {"frames": len(rows), "fps": len(rows) / seconds, "peak_mb": peak_mb()}


def build_clips(out: Path, long_minutes: float) -> dict[str, tuple[Path, int]]:
    from emorec.detect import make_detector
    from emorec.imageio import read_image
    from emorec.inference import clips

    photo = read_image(ROOT / "examples" / "multi_face.jpg")
    faces = clips.photo_faces(photo, [b for b, _ in make_detector("yunet").detect(photo)])
    one = [clips.Actor(1, (200, 240), (440, 240))]
    three = [clips.Actor(0, (100, 130), (540, 150)), clips.Actor(1, (540, 350), (100, 330)),
             clips.Actor(3, (320, 120), (330, 380))]
    n_long = round(long_minutes * 60 * FPS)
    specs = {"1 face, 10 s": (one, 10 * FPS), "3 faces, 10 s": (three, 10 * FPS),
             f"1 face, {long_minutes:g} min": (one, n_long)}
    made = {}
    for i, (name, (actors, n)) in enumerate(specs.items()):
        path = out / f"clip{i}.mp4"
        clips.write_clip(path, faces, actors, n, FPS)
        made[name] = (path, n)
    return made


def measure(python: str, tool: str, clip: Path, every: int, window: int) -> dict:
    cmd = [python, str(Path(__file__).resolve()), "--run", tool, "--clip", str(clip), "--every", str(every),
           "--window", str(window)]
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if done.returncode:
        return {"error": (done.stderr.strip().splitlines() or ["failed"])[-1][:160]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--fer-python", help="a Python with the fer package installed (its own venv)")
    ap.add_argument("--long-minutes", type=float, default=10.0)
    ap.add_argument("--every", type=int, default=1)
    ap.add_argument("--run", choices=["emorec", "live", "fer"], help=argparse.SUPPRESS)
    ap.add_argument("--clip", help=argparse.SUPPRESS)
    ap.add_argument("--window", type=int, default=60 * FPS, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:  # one measurement, in this process
        result = (run_emorec(args.clip, args.every, args.window) if args.run == "emorec" else
                  run_live(args.clip) if args.run == "live" else run_fer(args.clip, args.every))
        print(json.dumps(result))
        return 0

    print(f"machine: {os.cpu_count()} cores; clips 640x480 at {FPS} fps, --every {args.every}; "
          "emorec: the shipped 5class int8 model, YuNet, ORT_THREADS=1")
    with tempfile.TemporaryDirectory() as tmp:
        clips = build_clips(Path(tmp), args.long_minutes)
        tools = [("emorec", sys.executable), ("live", sys.executable)] + (
            [("fer", args.fer_python)] if args.fer_python else [])
        names = {"emorec": "emorec", "live": "emorec app, live webcam callback", "fer": "fer"}
        print("\n| clip | tool | frames | frames/s | peak memory (MB) |\n|---|---|---|---|---|")
        long_run = None
        for name, (path, n) in clips.items():
            for tool, python in tools:
                if tool == "live" and name != "1 face, 10 s":
                    continue
                r = measure(python, tool, path, args.every, 60 * FPS if n > 10 * FPS else n)
                if "error" in r:
                    print(f"| {name} | {names[tool]} | failed: {r['error']} | | |")
                    continue
                print(f"| {name} | {names[tool]} | {r['frames']} | {r['fps']:.1f} | {r['peak_mb']:.0f} |")
                if n > 10 * FPS and tool == "emorec":
                    long_run = r
        if long_run:
            print(f"\nThe {args.long_minutes:g}-minute clip, emorec, a row per minute of video:\n")
            print("| minute | ms per frame | memory (RSS, MB) |\n|---|---|---|")
            for i, w in enumerate(long_run["windows"], 1):
                print(f"| {i} | {w['ms_per_frame']:.2f} | {w['rss_mb']:.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

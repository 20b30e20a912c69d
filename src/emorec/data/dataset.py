"""A split of ``data_split/`` decoded once into one uint8 tensor.

FER-sized images are tiny, so a whole split fits in memory (36k faces at 112 px ~ 450 MB);
batches are then plain tensor indexing and augmentation runs on whole batches, which keeps
Python out of the hot loop. Decoded arrays are cached in ``cfg.cache_dir`` keyed by the
file list, so a second run starts in seconds. Soft targets (FER+ votes) are read from the
split's ``votes.csv`` on every load, never cached, so they always match that file.
"""
from __future__ import annotations

import hashlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from emorec.data.votes import VOTES_FILE, read_votes
from emorec.errors import EmorecError
from emorec.files import atomic_path
from emorec.imageio import find_files, read_image
from emorec.preprocess import face_to_array

log = logging.getLogger(__name__)


@dataclass
class SplitData:
    images: torch.Tensor  # (N, C, S, S) uint8
    labels: torch.Tensor  # (N,) int64
    paths: list[str]
    classes: list[str]
    skipped: int = 0
    soft: torch.Tensor | None = None  # (N, K) float32 targets from annotator votes (SOFT_LABELS)

    def __len__(self) -> int:
        return len(self.labels)

    def counts(self) -> np.ndarray:
        return np.bincount(self.labels.numpy(), minlength=len(self.classes))


def list_split(data_dir: Path, split: str, classes: list[str]) -> tuple[list[Path], list[int]]:
    root = Path(data_dir) / split
    if not root.is_dir():
        raise EmorecError(f"no '{split}' split in {data_dir}; create one with: emorec data prepare SOURCE")
    paths, labels = [], []
    for idx, name in enumerate(classes):
        d = root / name
        files = find_files(d) if d.is_dir() else []
        paths += files
        labels += [idx] * len(files)
    if not paths:
        raise EmorecError(f"{root} has no images for classes {', '.join(classes)}")
    return paths, labels


def _subsample(labels: list[int], max_per_class: int | None, seed: int) -> list[int]:
    """Indices keeping at most ``max_per_class`` per class, chosen by seed."""
    idx = np.arange(len(labels))
    if not max_per_class:
        return idx.tolist()
    rng = np.random.default_rng(seed)
    lab = np.asarray(labels)
    keep = [rng.permutation(idx[lab == c])[:max_per_class] for c in np.unique(lab)]
    return sorted(np.concatenate(keep).tolist())


def soft_targets(votes: dict[str, list[float]], rel_paths: list[str], labels: np.ndarray,
                 num_classes: int) -> tuple[torch.Tensor, int]:
    """Votes of the active classes renormalised to sum 1, one row per image; an image without
    votes (or none for an active class) gets the one-hot of its folder label. Also returns how
    many images fell back to one-hot."""
    soft = np.eye(num_classes, dtype=np.float32)[labels]
    fallback = 0
    for i, rel in enumerate(rel_paths):
        v = np.asarray(votes.get(rel, ()), dtype=np.float32)
        if v.sum() > 0:
            soft[i] = v / v.sum()
        else:
            fallback += 1
    return torch.from_numpy(soft), fallback


def _with_soft(data: SplitData, data_dir: Path, votes: dict[str, list[float]]) -> SplitData:
    rel = [Path(p).relative_to(data_dir).as_posix() for p in data.paths]
    data.soft, fallback = soft_targets(votes, rel, data.labels.numpy(), len(data.classes))
    if fallback:
        print(f"warning: {fallback} of {len(data)} images have no votes for the active classes in "
              f"{Path(data_dir) / VOTES_FILE}; their target is the folder label")
    return data


def _read_cache(cache: Path | None, n: int, shape: tuple[int, bool]):
    """(images, labels, ok) from a decode cache that fits this split; None for no cache, or one that
    cannot be read or does not fit (it is then rebuilt: a cache is never worth an error)."""
    if cache is None or not cache.is_file():
        return None
    try:
        with np.load(cache) as z:
            images, lab, ok = z["images"], z["labels"], z["ok"]
    except Exception:  # unreadable, truncated, garbage, another format
        log.warning("decode cache %s unreadable; decoding again", cache)
        return None
    size, gray = shape
    fits = (ok.dtype == bool and ok.shape == (n,) and images.dtype == np.uint8 and images.ndim == 4
            and images.shape[1:] == ((1 if gray else 3), size, size) and len(images) == len(lab) == int(ok.sum()))
    return (images, lab, ok) if fits else None


def load_split(data_dir: Path, split: str, classes: list[str], img_size: int, grayscale: bool,
               cache_dir: Path | None = None, max_per_class: int | None = None, seed: int = 0,
               progress: bool = True, soft_labels: bool = False, source_size: int = 0) -> SplitData:
    """Decode (or read from the cache) one split as ``face_to_array`` makes model inputs; with
    ``soft_labels`` also attach the per-image soft targets from ``<data_dir>/votes.csv``."""
    votes = read_votes(data_dir, classes) if soft_labels else None  # fail before the slow decode
    paths, labels = list_split(data_dir, split, classes)
    keep = _subsample(labels, max_per_class, seed)
    paths = [paths[i] for i in keep]
    labels = [labels[i] for i in keep]

    key = hashlib.sha1()
    # Labels are cached too, and they index ``classes``: the same files under another class
    # list (e.g. an 8-class model on a 7-class split) must not reuse them.
    key.update(f"{img_size}|{grayscale}|{','.join(classes)}|".encode())
    if source_size:
        key.update(f"source {source_size}|".encode())
    for p in paths:
        try:
            st = p.stat()
            key.update(os.fsencode(p.resolve()) + f"|{st.st_size}|{st.st_mtime_ns}\n".encode())
        except (OSError, RuntimeError):  # a broken or looping link: decoding skips it below
            key.update(os.fsencode(p) + b"|unreadable\n")
    cache = Path(cache_dir).expanduser() / f"{split}-{key.hexdigest()[:16]}.npz" if cache_dir else None
    cached = _read_cache(cache, len(paths), (img_size, grayscale))
    if cached is not None:
        images, lab, ok = cached
        data = SplitData(torch.from_numpy(images), torch.from_numpy(lab),
                         [str(p) for p, good in zip(paths, ok) if good], list(classes), int((~ok).sum()))
        return _with_soft(data, data_dir, votes) if soft_labels else data

    c = 1 if grayscale else 3
    images = np.empty((len(paths), c, img_size, img_size), dtype=np.uint8)
    ok = np.ones(len(paths), dtype=bool)
    for i, p in enumerate(tqdm(paths, desc=f"decode {split}", unit="img", disable=not progress, leave=False)):
        try:
            images[i] = face_to_array(read_image(p), img_size, grayscale, source_size)
        except EmorecError as e:
            ok[i] = False
            log.warning("skipped %s", e)
    if not ok.all():
        print(f"warning: {split}: skipped {int((~ok).sum())} unreadable image(s)")
    images, lab = images[ok], np.asarray(labels, dtype=np.int64)[ok]
    if cache is not None:
        try:
            with atomic_path(cache, "decode cache") as tmp:  # two runs on one split never share a file
                np.savez(tmp, images=images, labels=lab, ok=ok)
        except EmorecError as e:  # a cache that cannot be written costs the next run time, nothing else
            print(f"warning: {e}")
    data = SplitData(torch.from_numpy(images), torch.from_numpy(lab),
                     [str(p) for p, good in zip(paths, ok) if good], list(classes), int((~ok).sum()))
    return _with_soft(data, data_dir, votes) if soft_labels else data


def class_weights(counts: np.ndarray, power: float = 1.0) -> torch.Tensor:
    """Inverse-frequency weights to ``power``, normalised to mean 1.

    power 1 is sklearn's 'balanced'; 0.5 (square root) is the milder form, for a class
    twenty times rarer than the largest that full weighting would let dominate.
    """
    counts = np.maximum(counts.astype(np.float64), 1.0)
    w = (counts.sum() / (len(counts) * counts)) ** power
    return torch.tensor(w / w.mean(), dtype=torch.float32)


def sample_weights(data_dir: Path, paths: list[str], weights: dict[str, float]) -> torch.Tensor | None:
    """Each training image's sampling weight: its source's (``manifest.csv``), 1 for sources not
    named; None when no source has a weight other than 1."""
    if not weights:
        return None
    from emorec.data.report import read_manifest

    source_of = {r["path"]: r["source"] for r in read_manifest(data_dir)}
    if not source_of:
        raise EmorecError(f"source weights need {Path(data_dir) / 'manifest.csv'} (a split made by emorec data prepare)")
    unknown = sorted(set(weights) - set(source_of.values()))
    if unknown:
        raise EmorecError(f"SOURCES: weight given for {unknown[0]!r}, which is not a source of {data_dir} "
                          f"(its sources: {', '.join(sorted(set(source_of.values())))})")
    rel = [Path(p).relative_to(data_dir).as_posix() for p in paths]
    return torch.tensor([weights.get(source_of.get(r, ""), 1.0) for r in rel], dtype=torch.float64)


def epoch_indices(labels: torch.Tensor, balanced: bool, epoch: int, seed: int, rank: int = 0,
                  world: int = 1, weights: torch.Tensor | None = None) -> torch.Tensor:
    """One epoch of sample indices for this rank.

    Balanced: each sample drawn with probability ~ 1/count(class), so classes appear
    equally often; ``weights`` (per sample, e.g. its source's): drawn in proportion to them
    (times the balance); plain: a permutation. Every rank draws the same global order from
    (seed, epoch) and takes its own stride, which is what DistributedSampler does.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    n = len(labels)
    if balanced or weights is not None:
        p = torch.ones(n, dtype=torch.float64) if weights is None else weights.to(torch.float64)
        if balanced:
            counts = torch.bincount(labels).double()
            p = p * (1.0 / counts.clamp(min=1))[labels]
        order = torch.multinomial(p.float(), n, replacement=True, generator=g)
    else:
        order = torch.randperm(n, generator=g)
    per_rank = n // world
    return order[rank * per_rank:(rank + 1) * per_rank] if world > 1 else order

"""FER+ annotator votes: ``<split>_label_votes.csv`` beside a source's split folders.

Each row is ``file, "(x, y, w, h)", neutral, happiness, surprise, sadness, anger, disgust,
fear, contempt, unknown, NF`` (no header): how many of the 10 annotators chose each
emotion. They become ``votes.csv`` in a prepared split (one column per canonical class),
from which training can build soft targets.
"""
from __future__ import annotations

import csv
import io
import os
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from emorec.data.labels import CANONICAL_CLASSES, canonical_label, split_name
from emorec.data.sources import Source
from emorec.errors import EmorecError

# FER+'s vote columns in file order; "unknown" and "NF" (not a face) are no classes and are dropped.
FERPLUS_COLUMNS = ["neutral", "happiness", "surprise", "sadness", "anger", "disgust", "fear", "contempt",
                   "unknown", "NF"]
_CLASS_OF = [canonical_label(c) for c in FERPLUS_COLUMNS]
_VOTE_FILE = re.compile(r"^(?P<split>[^/]+)_label_votes\.csv$", re.IGNORECASE)

VOTES_FILE = "votes.csv"  # in a prepared split: path, then one count column per canonical class
VOTES_FIELDS = ["path", *CANONICAL_CLASSES]


@dataclass
class SourceVotes:
    """The votes found in one source, keyed by (source split, file name)."""

    files: list[str] = field(default_factory=list)  # the vote CSVs read
    votes: dict[tuple[str, str], dict[str, int]] = field(default_factory=dict)
    bad_rows: list[str] = field(default_factory=list)  # "<csv>:<line>: <why>", those rows ignored

    def lookup(self, split: str | None, name: str) -> dict[str, int] | None:
        return self.votes.get((split, PurePosixPath(name).name)) if split else None


def parse_votes(text: str, origin: str, split: str, into: SourceVotes) -> None:
    """Add the rows of one vote CSV to ``into``; a malformed row is recorded and skipped."""
    try:
        _parse_rows(csv.reader(io.StringIO(text)), origin, split, into)
    except csv.Error as e:  # broken quoting and the like: keep the rows read so far
        into.bad_rows.append(f"{origin}: unreadable from here on ({e})")


def _parse_rows(reader, origin: str, split: str, into: SourceVotes) -> None:
    for line, row in enumerate(reader, 1):
        if not row or not "".join(row).strip():
            continue
        if len(row) != 2 + len(FERPLUS_COLUMNS):
            into.bad_rows.append(f"{origin}:{line}: expected {2 + len(FERPLUS_COLUMNS)} fields, got {len(row)}")
            continue
        if not row[0].strip():
            into.bad_rows.append(f"{origin}:{line}: no file name")
            continue
        try:
            counts = [int(v) for v in row[2:]]
        except ValueError:
            into.bad_rows.append(f"{origin}:{line}: vote counts are not whole numbers")
            continue
        if min(counts) < 0:
            into.bad_rows.append(f"{origin}:{line}: negative vote count")
            continue
        per_class = dict.fromkeys(CANONICAL_CLASSES, 0)
        for label, n in zip(_CLASS_OF, counts):
            if label:
                per_class[label] += n
        into.votes[(split, PurePosixPath(row[0].strip()).name)] = per_class


def _top_level_files(source: Source) -> list[str]:
    if source.is_zip:
        with zipfile.ZipFile(source.path) as zf:
            return [n for n in zf.namelist() if "/" not in n.rstrip("/")]
    return [p.name for p in source.path.iterdir() if p.is_file()]


def source_votes(source: Source) -> SourceVotes:
    """Read every ``<split>_label_votes.csv`` at the source's top level (none: empty result).
    An unreadable CSV is recorded like a bad row, never fatal."""
    found = SourceVotes()
    try:
        names = _top_level_files(source)
    except (OSError, zipfile.BadZipFile) as e:
        found.bad_rows.append(f"cannot list vote files ({e})")
        return found
    for name in sorted(names):
        m = _VOTE_FILE.match(name)
        split = split_name(m["split"]) if m else None
        if split is None:
            continue
        try:
            text = source.read(name).decode("utf-8-sig")
        except (OSError, EmorecError, UnicodeDecodeError) as e:
            found.bad_rows.append(f"{name}: unreadable ({e})")
            continue
        found.files.append(name)
        parse_votes(text, name, split, found)
    return found


def write_votes(path: Path, rows: list[dict], fields: list[str] = VOTES_FIELDS) -> None:
    """``votes.csv`` of a prepared split: ``path`` and one column per class (``fields``), one
    row per file with votes (annotator counts or a teacher's probabilities). Written to a
    temporary file first, so a reader never sees half a file."""
    tmp = Path(path).with_name(Path(path).name + ".tmp")
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_votes(data_dir: Path, classes: list[str]) -> dict[str, list[float]]:
    """``<data_dir>/votes.csv`` -> {path relative to ``data_dir``: votes for each of ``classes``}."""
    path = Path(data_dir) / VOTES_FILE
    if not path.is_file():
        raise EmorecError(f"SOFT_LABELS is on but {path} does not exist; prepare the split from a source "
                          "with FER+ vote files (<split>_label_votes.csv), e.g. ferplus.zip")
    out = {}
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        missing = [c for c in ["path", *classes] if c not in (reader.fieldnames or [])]
        if missing:
            raise EmorecError(f"{path}: no column {missing[0]!r}")
        for row in reader:
            try:
                counts = [float(row[c]) for c in classes]
                valid = all(n >= 0 for n in counts)  # False for NaN too
            except (TypeError, ValueError):
                valid = False
            if not valid:
                raise EmorecError(f"{path}:{reader.line_num}: vote counts must be numbers >= 0")
            out[row["path"]] = counts
    return out

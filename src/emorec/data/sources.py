"""Where images come from: folders, zip archives and Kaggle datasets, in the usual layouts.

The layout is read from each image's path, so any nesting works: the class is the
nearest folder above the file whose name is a known emotion (see :mod:`labels`), the
split is the nearest split-named folder above that. Other folders are wrappers and
ignored. So ``train/angry/x.jpg``, ``Data/Angry/x.jpg``, ``images/train/angry/x.jpg``,
``train/train/angry/x.jpg`` and ``dataset/anger/x.jpg`` all read as expected.

A source without class folders may carry a CSV label file instead (muxspace's ``legend.csv``,
AffectNet's and FER+'s CSVs, RAF-DB's label list saved as CSV): any ``.csv`` in it whose header
has the image and label columns (:class:`LabelColumns`, configurable) labels the images it names,
matched by path relative to the CSV, else by file name. Spellings are harmonised like folder names.

A source given as a mapping (:class:`SourceSpec`, a YAML item of ``SOURCES``) says more: codes that
stand for classes (RAF-DB's ``1`` = surprise), a file-name pattern with named fields (``label``,
``person``: KDEF's ``AF01ANS``, the Taiwanese ``0112d03``), how faces are cropped, its own split
fractions and its sampling weight. One spec serves every dataset of that layout: no per-dataset code.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import os
import re
import threading
import zipfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from emorec.data.labels import canonical_label, split_name
from emorec.errors import EmorecError, require
from emorec.imageio import IMAGE_EXTS


MAX_MEMBER_BYTES = 64 * 2**20  # a zip member unpacked: far above any photo, far below a zip bomb

# The four datasets of the original design (spec "kaggle:owner/name", or "kaggle:all").
KAGGLE_DATASETS = [
    "samithsachidanandan/human-face-emotions",
    "aadityasinghal/facial-expression-dataset",
    "sudarshanvaidya/random-images-for-face-emotion-recognition",
    "nabilsherif/facial-emotions-recognition-dataset",
]


@dataclass(frozen=True)
class Entry:
    """One image file of a source."""

    source: str  # source name (unique within a run)
    name: str  # path inside the source, with "/" separators
    raw_label: str  # the class folder as the dataset spells it
    label: str | None  # canonical class, None when the spelling is unknown
    split: str | None  # the source's own split: train / val / test, None when it has none
    person: str | None = None  # who is shown, when the source names people: no person in two splits


CROPS = ("none", "detect", "redetect")
# none: the image is the face (FER crops); detect: the face detector finds it as `emorec predict`
# does, an image with no face is dropped (portraits); redetect: the same, but an image with no face
# found is kept whole (aligned crops, where a miss is the detector's fault, not the image's).


@dataclass(frozen=True)
class SourceSpec:
    """One item of ``SOURCES``: a path, or a mapping with these keys (all optional but ``path``)."""

    path: str
    name: str | None = None  # the source's name in manifest and reports (default: file or folder name)
    codes: dict | None = None  # raw label -> class name, e.g. {1: surprise, 2: fear} or {AN: angry}
    pattern: str | None = None  # regex over the file name (no extension) with groups label, person
    image_column: str | None = None  # CSV label file columns (default: LABELS_IMAGE_COLUMN ...)
    label_column: str | None = None
    crop: str = "none"  # see CROPS
    weight: float = 1.0  # sampling weight of each of its training images
    val_fraction: float | None = None  # of its people (or images) carved into val (default: VAL_FRACTION)
    test_fraction: float | None = None

    @classmethod
    def parse(cls, item) -> "SourceSpec":
        if isinstance(item, (str, os.PathLike)):
            return cls(str(item))
        if not isinstance(item, dict):
            raise EmorecError(f"SOURCES: each item is a path or a mapping with 'path', got {item!r}")
        known = {f for f in cls.__dataclass_fields__}
        keys = {str(k).strip().lower(): v for k, v in item.items()}
        unknown = sorted(set(keys) - known)
        if unknown or "path" not in keys:
            raise EmorecError(f"SOURCES item {item!r}: " + (f"unknown key {unknown[0]!r} (known: "
                              f"{', '.join(sorted(known))})" if unknown else "no 'path'"))
        spec = cls(**{**keys, "path": str(keys["path"])})
        if spec.crop not in CROPS:
            raise EmorecError(f"SOURCES {spec.path}: crop must be one of {', '.join(CROPS)}, got {spec.crop!r}")
        if spec.codes is not None and not isinstance(spec.codes, dict):
            raise EmorecError(f"SOURCES {spec.path}: codes must map raw labels to classes, got {spec.codes!r}")
        if spec.codes:  # normalised once: label() is called for every image
            spec = dataclasses.replace(spec, codes={str(k).strip().lower(): str(v) for k, v in spec.codes.items()})
        if spec.pattern is not None:
            try:
                groups = re.compile(spec.pattern).groupindex
            except re.error as e:
                raise EmorecError(f"SOURCES {spec.path}: pattern is not a regular expression ({e})") from None
            if "label" not in groups:
                raise EmorecError(f"SOURCES {spec.path}: pattern needs a named group (?P<label>...)")
        try:
            weight = float(spec.weight)
            fractions = [None if f is None else float(f) for f in (spec.val_fraction, spec.test_fraction)]
        except (TypeError, ValueError):
            raise EmorecError(f"SOURCES {spec.path}: weight and fractions must be numbers") from None
        if not weight >= 0 or any(f is not None and not 0 <= f < 1 for f in fractions):
            raise EmorecError(f"SOURCES {spec.path}: weight must be >= 0 and fractions in [0, 1)")
        return spec

    def label(self, raw: str) -> str | None:
        """Raw label (a code, a folder name) -> canonical class, None when unknown."""
        if self.codes:  # keys normalised by parse()
            raw = self.codes.get(str(raw).strip().lower(), raw)
        return canonical_label(raw)


@dataclass(frozen=True)
class LabelColumns:
    """Column names of a CSV label file (case-insensitive)."""

    image: str = "image"
    label: str = "emotion"


def parse_path(name: str) -> tuple[str, str | None, str | None] | None:
    """``"images/train/Angry/x.jpg"`` -> ``("Angry", "angry", "train")``; None when the
    image sits in no class folder (at the top, or directly inside a split folder)."""
    dirs = PurePosixPath(name).parts[:-1]
    at = next((i for i in range(len(dirs) - 1, -1, -1) if canonical_label(dirs[i])), None)
    if at is None:
        if not dirs or split_name(dirs[-1]):
            return None
        at = len(dirs) - 1
    split = next((split_name(d) for d in reversed(dirs[:at]) if split_name(d)), None)
    return dirs[at], canonical_label(dirs[at]), split


def _is_data(name: str) -> bool:
    # macOS archive debris and hidden files are not data
    return not any(p.startswith(".") or p == "__MACOSX" for p in PurePosixPath(name).parts)


def _is_image(name: str) -> bool:
    return _is_data(name) and PurePosixPath(name).suffix.lower() in IMAGE_EXTS


def _split_of(name: str) -> str | None:
    return next((split_name(d) for d in reversed(PurePosixPath(name).parts[:-1]) if split_name(d)), None)


@dataclass
class Source:
    """A listed dataset: its images (with labels and splits) and a way to read their bytes."""

    name: str
    spec: str  # what the user gave (path or kaggle:owner/name)
    path: Path
    entries: list[Entry] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)  # images outside any class folder
    label_files: list[str] = field(default_factory=list)  # CSV label files used
    label_rows_unmatched: list[str] = field(default_factory=list)  # CSV rows naming no image of the source
    is_zip: bool = False
    spec_options: SourceSpec | None = None  # how it was configured (a plain path: the defaults)
    links_skipped: list[str] = field(default_factory=list)  # file links not followed
    unreadable_folders: list[str] = field(default_factory=list)  # folders that could not be listed
    # one ZipFile per thread: a shared one is not safe to read from several threads
    _local: threading.local = field(default_factory=threading.local, repr=False)
    _open: list = field(default_factory=list, repr=False)

    @property
    def has_splits(self) -> bool:
        return any(e.split for e in self.entries)

    def read(self, name: str) -> bytes:
        """The file's original bytes (OSError for an unreadable file; EmorecError, one line, for a
        damaged, encrypted or oversized zip member)."""
        if not self.is_zip:
            return (self.path / name).read_bytes()
        zf = getattr(self._local, "zip", None)
        if zf is None:
            zf = self._local.zip = zipfile.ZipFile(self.path)
            self._open.append(zf)
        try:
            info = zf.getinfo(name)
            if info.file_size > MAX_MEMBER_BYTES:  # a zip bomb is refused before it is inflated
                raise EmorecError(f"{name}: {info.file_size:,} bytes unpacked, over the {MAX_MEMBER_BYTES:,} limit")
            with zf.open(info) as f:
                data = f.read(MAX_MEMBER_BYTES + 1)
        except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError, ValueError,
                KeyError) as e:  # bad CRC, encrypted, unknown compression, truncated
            raise EmorecError(f"{name}: damaged zip member ({str(e).splitlines()[0] if str(e) else type(e).__name__})") \
                from None
        if len(data) > MAX_MEMBER_BYTES:  # its header understated its size
            raise EmorecError(f"{name}: over {MAX_MEMBER_BYTES:,} bytes unpacked")
        return data

    def close(self) -> None:
        while self._open:
            self._open.pop().close()
        self._local = threading.local()


def _list_folder(root: Path, follow_links: bool = False) -> tuple[list[str], list[str], list[str]]:
    """(files, links skipped, folders that could not be read) under ``root``. File links are not
    followed unless asked (a link may reach outside the source); folder links never are."""
    names, links, locked = [], [], []
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda e: locked.append(str(e.filename))):
        dirnames[:] = [d for d in dirnames if not d.startswith(".") and d != "__MACOSX"]
        rel = Path(dirpath).relative_to(root)
        for f in filenames:
            (links if not follow_links and (Path(dirpath) / f).is_symlink() else names).append((rel / f).as_posix())
    return names, links, [Path(p).relative_to(root).as_posix() if Path(p).is_relative_to(root) else p
                          for p in locked]


def _column(header: list[str], wanted: str) -> int | None:
    low = [h.strip().lower() for h in header]
    return low.index(wanted.lower()) if wanted.lower() in low else None


def _csv_labels(source: Source, names: list[str], images: list[str], columns: LabelColumns) -> dict[str, str]:
    """image name -> raw label, from every CSV of the source that has both columns."""
    by_path = set(images)
    by_name: dict[str, list[str]] = {}
    for n in images:
        by_name.setdefault(PurePosixPath(n).name, []).append(n)
    labels: dict[str, str] = {}
    for csv_name in sorted(n for n in names if n.lower().endswith(".csv") and _is_data(n)):
        try:
            text = source.read(csv_name).decode("utf-8-sig", errors="replace")
            rows = list(csv.reader(io.StringIO(text)))
        except (OSError, EmorecError, csv.Error):
            continue
        if not rows:
            continue
        i_img, i_lab = _column(rows[0], columns.image), _column(rows[0], columns.label)
        if i_img is None or i_lab is None:
            continue
        source.label_files.append(csv_name)
        folder = PurePosixPath(csv_name).parent
        for line, row in enumerate(rows[1:], 2):
            if len(row) <= max(i_img, i_lab) or not row[i_img].strip():
                continue
            ref = row[i_img].strip().replace("\\", "/")
            rel = (folder / ref).as_posix() if str(folder) != "." else ref
            hits = [rel] if rel in by_path else [ref] if ref in by_path else by_name.get(PurePosixPath(ref).name, [])
            if len(hits) != 1:
                source.label_rows_unmatched.append(f"{csv_name}:{line}: {ref}")
                continue
            labels[hits[0]] = row[i_lab].strip()
    return labels


def _pattern_entries(source: Source, images: list[str], spec: SourceSpec) -> None:
    """Label (and person) of each image from its file name; names the pattern does not fit are
    reported with the unlabelled ones."""
    rx = re.compile(spec.pattern)
    for n in images:
        m = rx.fullmatch(PurePosixPath(n).stem)
        if m is None:
            source.unlabelled.append(n)
            continue
        raw = m["label"] or ""
        person = m.groupdict().get("person")
        source.entries.append(Entry(source.name, n, raw, spec.label(raw), _split_of(n),
                                    f"{source.name}:{person}" if person else None))


def open_source(spec: str, path: Path, name: str, columns: LabelColumns = LabelColumns(),
                source_spec: SourceSpec | None = None, follow_links: bool = False) -> Source:
    """List one folder or zip. Raises EmorecError when it is missing or has neither class
    folders nor a CSV label file."""
    if not path.exists():
        raise EmorecError(f"dataset not found: {spec}")
    if path.is_dir():
        source = Source(name, spec, path)
        names, source.links_skipped, source.unreadable_folders = _list_folder(path, follow_links)
    elif zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as zf:
                names = [i.filename for i in zf.infolist() if not i.is_dir()]
        except (zipfile.BadZipFile, OSError) as e:
            raise EmorecError(f"{spec}: cannot open zip archive ({e})") from None
        source = Source(name, spec, path, is_zip=True)
    else:
        raise EmorecError(f"{spec}: not a folder or a zip archive")
    images = sorted(filter(_is_image, names))
    ss = source.spec_options = source_spec or SourceSpec(spec)
    columns = LabelColumns(ss.image_column or columns.image, ss.label_column or columns.label)
    if ss.pattern:
        _pattern_entries(source, images, ss)
    else:
        for n in images:
            parsed = parse_path(n)
            if parsed is None:
                source.unlabelled.append(n)
            else:
                raw, _, split = parsed
                source.entries.append(Entry(name, n, raw, ss.label(raw), split))
    if not ss.pattern and not any(e.label for e in source.entries):  # no class folders: a CSV label file?
        table = _csv_labels(source, names, images, columns)
        if table:
            source.entries = [Entry(name, n, raw, ss.label(raw), _split_of(n)) for n, raw in table.items()]
            source.entries.sort(key=lambda e: e.name)
            source.unlabelled = [n for n in images if n not in table]
    if not any(e.label for e in source.entries):
        found = sorted({e.raw_label for e in source.entries})
        hint = f"; found only unknown class names: {', '.join(found[:8])}" if found else ""
        if source.label_files:
            hint = f"; {', '.join(source.label_files)} has no known labels" + hint
        if ss.pattern:
            raise EmorecError(f"{spec}: no file name fits the pattern {ss.pattern!r} with a known label{hint}")
        raise EmorecError(f"{spec}: no class folders with images (expected <class>/ or <split>/<class>/, "
                          f"class names like angry, happy, sad) and no CSV with columns "
                          f"{columns.image!r} and {columns.label!r}{hint}")
    return source


def source_name(spec: SourceSpec) -> str:
    """The name a source gets in manifests and reports (before any -2 suffix of a clash)."""
    if spec.name:
        return spec.name
    if spec.path.lower().startswith("kaggle:"):
        return spec.path.split(":", 1)[1].strip().strip("/").split("/")[-1]
    path = Path(spec.path).expanduser()
    return (path.stem if path.is_file() else path.resolve().name) or "source"


def source_weights(specs: list) -> dict[str, float]:
    """``{source name: sampling weight}`` of the sources whose weight is not 1."""
    parsed = [SourceSpec.parse(s) for s in specs]
    return {source_name(s): float(s.weight) for s in parsed if float(s.weight) != 1.0}


def _kaggle_download(handle: str) -> Path:
    kagglehub = require("kagglehub", "data")
    try:
        return Path(kagglehub.dataset_download(handle))
    except Exception as e:  # network, credentials, unknown dataset: all end the same way for the user
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise EmorecError(f"kaggle:{handle}: download failed ({msg})") from None


def expand_specs(specs: list[str]) -> list[str]:
    """``kaggle:all`` -> the four Kaggle datasets of the original design."""
    out: list[str] = []
    for spec in specs:
        out += [f"kaggle:{h}" for h in KAGGLE_DATASETS] if spec.strip().lower() == "kaggle:all" else [spec]
    return out


def open_sources(specs: list, columns: LabelColumns = LabelColumns(), follow_links: bool = False) -> list[Source]:
    """Open every source (paths, ``kaggle:`` handles, or :class:`SourceSpec` mappings; downloading
    ``kaggle:`` ones); names are made unique per run."""
    sources: list[Source] = []
    parsed = [SourceSpec.parse(s) for s in specs]
    by_path = {s.path: s for s in parsed}
    try:
        for spec in expand_specs([s.path for s in parsed]):
            ss = by_path.get(spec, SourceSpec(spec))
            if spec.lower().startswith("kaggle:"):
                handle = spec.split(":", 1)[1].strip().strip("/")
                if handle.count("/") != 1:
                    raise EmorecError(f"{spec}: expected kaggle:owner/dataset or kaggle:all")
                path = _kaggle_download(handle)
            else:
                path = Path(spec).expanduser()
            base = source_name(ss)
            name, k = base, 2
            while any(s.name == name for s in sources):
                name, k = f"{base}-{k}", k + 1
            sources.append(open_source(spec, path, name, columns, ss, follow_links))
    except BaseException:
        for s in sources:
            s.close()
        raise
    return sources

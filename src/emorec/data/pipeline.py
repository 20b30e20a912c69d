"""Sources -> harmonised labels -> duplicate groups -> split -> ``<out>/{train,val,test}/<class>/``.

Files are copied byte for byte (never re-encoded) as ``<source>__<name>``. Beside them:
``manifest.csv`` (one row per written file, see :data:`MANIFEST_FIELDS`),
``data_report.json`` (what was read, found, dropped and written) and, when a source carries
FER+ annotator votes, ``votes.csv`` (see :mod:`votes`). The split is built in a
sibling folder and moved into place at the end, so a failed run leaves no half-written split.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
import sys
import zipfile
import zlib
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import numpy as np
from tqdm import tqdm

from emorec.config import Config
from emorec.data.dedup import average_hash, decode, find_groups, fingerprint, group_stats, quiet_opencv
from emorec.data.labels import CANONICAL_CLASSES
from emorec.data.faces import face_png, find_faces
from emorec.data.sources import Entry, LabelColumns, Source, SourceSpec, open_sources
from emorec.data.split import SPLITS, assign_splits
from emorec.data.votes import VOTES_FILE, SourceVotes, source_votes, write_votes
from emorec.errors import EmorecError
from emorec.files import display_name
from emorec.provenance import portable_path

MANIFEST_FIELDS = ["path", "split", "label", "source", "source_split", "original", "group", "leak", "conflict",
                   "person"]
# path: relative to the out dir; source_split: the split folder the source had it in ("" if none);
# original: its path inside the source; group: duplicate group number ("" if unique);
# leak: 1 for a val/test file whose duplicate group had a member in some source's train split
# (that copy was dropped, but a model trained on that source has seen the face);
# conflict: 1 when the group's members carry different labels; person: who is shown ("" if the
# source names no one).


MAX_BAD_LINES = 50  # unreadable images named one per line; the rest counted (data_report.json has all)


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


@dataclass
class Scan:
    """Every readable, labelled image of the sources, with its fingerprints."""

    sources: list[Source]
    entries: list[Entry] = field(default_factory=list)
    md5: list[bytes] = field(default_factory=list)
    ahash: np.ndarray = field(default_factory=lambda: np.empty(0, np.uint64))
    bad: list[dict] = field(default_factory=list)  # {"source", "file", "error"}
    boxes: dict[tuple[str, str], tuple] = field(default_factory=dict)  # (source, name) -> face box to crop
    faces: dict[str, dict] = field(default_factory=dict)  # source -> what its face detection found

    def close(self) -> None:
        for s in self.sources:
            s.close()

    def __enter__(self) -> "Scan":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fingerprints(source: Source, entries: list[Entry]) -> list:
    out = []
    for e in entries:
        try:
            out.append(fingerprint(decode(source.read(e.name), e.name)))
        except EmorecError as err:
            out.append(str(err))
        except (OSError, zipfile.BadZipFile, zlib.error, RuntimeError) as err:  # damaged file or zip member
            out.append(f"{e.name}: unreadable ({err})")
    return out


def scan(specs: list, columns: LabelColumns = LabelColumns(), follow_links: bool = False) -> Scan:
    """Open the sources, decode every labelled image once and fingerprint it."""
    result = Scan(open_sources(specs, columns, follow_links))
    try:
        thumbs = []
        for source in result.sources:
            entries = [e for e in source.entries if e.label]
            batches = [entries[i:i + 256] for i in range(0, len(entries), 256)]
            # OpenCV and zlib release the GIL: threads decode in parallel without extra processes
            with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool, quiet_opencv(), \
                    tqdm(total=len(entries), desc=f"reading {source.name}", unit="img", leave=False) as bar:
                for batch, results in zip(batches, pool.map(lambda b: _fingerprints(source, b), batches)):
                    for e, r in zip(batch, results):
                        if isinstance(r, str):
                            result.bad.append({"source": source.name, "file": e.name, "error": r})
                        else:
                            result.entries.append(e)
                            result.md5.append(r[0])
                            thumbs.append(r[1])
                    bar.update(len(batch))
        result.ahash = average_hash(np.array(thumbs, np.float32).reshape(-1, 64))
    except BaseException:
        result.close()
        raise
    return result


def label_columns(cfg: Config) -> LabelColumns:
    return LabelColumns(cfg.labels_image_column, cfg.labels_label_column)


def check_classes(active: list[str]) -> None:
    unknown = [c for c in active if c not in CANONICAL_CLASSES]
    if unknown:
        raise EmorecError(f"ACTIVE_CLASSES: unknown class {unknown[0]!r}; known: {', '.join(CANONICAL_CLASSES)}")


def crop_faces(cfg: Config, sc: Scan) -> None:
    """Find the face of every image of the sources set to ``crop: detect`` or ``redetect`` (see
    :mod:`faces`); ``detect`` images with no face leave the scan, counted."""
    keep = np.ones(len(sc.entries), bool)
    for source in sc.sources:
        mode = source.spec_options.crop
        if mode == "none":
            continue
        at = [i for i, e in enumerate(sc.entries) if e.source == source.name]
        found = find_faces(cfg, source, [sc.entries[i].name for i in at])
        missed = [i for i in at if found[sc.entries[i].name] is None]
        for i in at:
            box = found[sc.entries[i].name]
            if box is not None:
                sc.boxes[(source.name, sc.entries[i].name)] = box
        if mode == "detect":
            keep[missed] = False
        sc.faces[source.name] = {"crop": mode, "images": len(at), "no_face": len(missed),
                                 "no_face_kept_whole" if mode == "redetect" else "no_face_dropped": len(missed),
                                 "first_missed": [sc.entries[i].name for i in missed[:5]]}
        if missed:
            what = "kept whole" if mode == "redetect" else "dropped"
            warn(f"{source.name}: no face found in {len(missed)} of {len(at)} images ({what}; "
                 f"first: {sc.entries[missed[0]].name})")
    if not keep.all():
        sc.entries = [e for e, k in zip(sc.entries, keep) if k]
        sc.md5 = [m for m, k in zip(sc.md5, keep) if k]
        sc.ahash = sc.ahash[keep]


def check_out_dir(out: Path, force: bool, specs: list = ()) -> None:
    """Refuse to mix a new split into an old one, to clear a folder that is not a split,
    or to write over (or inside) a source."""
    if out.exists() and not out.is_dir():
        raise EmorecError(f"output {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not force:
            raise EmorecError(f"output folder {out} is not empty; use --force to replace it")
        if not (out / "manifest.csv").exists() and not (out / "data_report.json").exists():
            raise EmorecError(f"refusing to clear {out}: it is not a data split made by emorec (no manifest.csv)")
    o = out.resolve()
    for spec in specs:
        spec = SourceSpec.parse(spec).path if not isinstance(spec, Path) else spec
        src = Path(str(spec)).expanduser()
        if str(spec).lower().startswith("kaggle:") or not src.exists():
            continue
        src = src.resolve()
        if o == src or o in src.parents or src in o.parents:
            raise EmorecError(f"output folder {out} overlaps the source {spec}")


def prepare(cfg: Config, sources: list[str | os.PathLike] | None = None, out_dir: str | os.PathLike | None = None,
            force: bool = False) -> dict:
    """Build the split from ``sources`` (default ``cfg.sources``) into ``out_dir``
    (default ``cfg.data_dir``); returns the report (also saved as ``data_report.json``)."""
    specs = list(sources or cfg.sources)
    if not specs:
        raise EmorecError("no data sources given (folders, zips or kaggle:owner/name)")
    out = Path(out_dir if out_dir is not None else cfg.data_dir)
    check_classes(cfg.active_classes)
    check_out_dir(out, force, specs)
    with scan(specs, label_columns(cfg), cfg.follow_links) as sc:
        crop_faces(cfg, sc)
        return build_split(cfg, sc, out, force)


def _source_report(source: Source, sc: Scan) -> dict:
    counts: dict[str, Counter] = defaultdict(Counter)
    for e in sc.entries:
        if e.source == source.name:
            counts[e.split or "-"][e.label] += 1
    unknown = Counter(e.raw_label for e in source.entries if e.label is None)
    return {
        "spec": portable_path(source.spec), "path": portable_path(source.path), "has_splits": source.has_splits,
        "images": len(source.entries) + len(source.unlabelled),
        "counts": {split: dict(sorted(c.items())) for split, c in sorted(counts.items())},
        "unknown_labels": dict(unknown.most_common()),
        "unlabelled": len(source.unlabelled),
        "bad_files": sum(1 for b in sc.bad if b["source"] == source.name),
        "label_files": source.label_files,
        "label_rows_unmatched": len(source.label_rows_unmatched),
        "faces": sc.faces.get(source.name, {"crop": "none"}),
        "links_skipped": len(source.links_skipped),
        "unreadable_folders": source.unreadable_folders,
        "people": _people(source, sc),
    }


def _people(source: Source, sc: Scan) -> int:
    return len({e.person for e in sc.entries if e.source == source.name and e.person})


def _warn_inputs(report: dict, sc: Scan) -> None:
    for name, s in report["sources"].items():
        src = next(x for x in sc.sources if x.name == name)
        if s["unknown_labels"]:
            listed = ", ".join(f"{k} ({v})" for k, v in s["unknown_labels"].items())
            warn(f"{name}: skipped {sum(s['unknown_labels'].values())} images with unknown labels: {listed}")
        if s["unlabelled"]:
            where = ("whose file name does not fit the pattern" if src.spec_options.pattern
                     else "in no label file" if s["label_files"] else "outside any class folder")
            warn(f"{name}: skipped {s['unlabelled']} images {where}")
        if src.label_rows_unmatched:
            warn(f"{name}: {len(src.label_rows_unmatched)} label rows name no image of the source "
                 f"(first: {src.label_rows_unmatched[0]})")
        if src.links_skipped:
            warn(f"{name}: skipped {len(src.links_skipped)} file links (first: {src.links_skipped[0]}); "
                 "FOLLOW_LINKS=true reads through them")
        for folder in src.unreadable_folders:
            warn(f"{name}: skipped folder {folder}: cannot be read")
        bad = [b for b in sc.bad if b["source"] == name]
        for b in bad[:MAX_BAD_LINES]:  # one line each, so a damaged member is named
            warn(f"{name}: skipped {b['error']}")
        if len(bad) > MAX_BAD_LINES:
            warn(f"{name}: skipped {len(bad) - MAX_BAD_LINES} more unreadable images (all in data_report.json)")


def _read_votes(sources: list[Source], report: dict) -> dict[str, SourceVotes]:
    votes = {s.name: source_votes(s) for s in sources}
    report["votes"] = {"file": None, "images": 0, "sources": {
        name: {"files": v.files, "rows": len(v.votes), "bad_rows": len(v.bad_rows)}
        for name, v in votes.items() if v.files or v.bad_rows}}
    for name, v in votes.items():
        if v.bad_rows:
            warn(f"{name}: ignored {len(v.bad_rows)} malformed vote row(s) (first: {v.bad_rows[0]})")
    return votes


def _people_per_split(sc: Scan, dest: list) -> dict:
    """source -> split -> people, for the sources that name them (each person in one split)."""
    out: dict[str, dict[str, set]] = defaultdict(lambda: defaultdict(set))
    for e, d in zip(sc.entries, dest):
        if e.person and d:
            out[e.source][d].add(e.person)
    return {src: {s: len(p) for s, p in sorted(per.items())} for src, per in sorted(out.items())}


def _unique_name(used: set, folder: str, source: str, name: str) -> str:
    base = PurePosixPath(display_name(name))  # a name that is not UTF-8 is stored escaped
    candidate, k = f"{source}__{base.name}", 2
    while (folder, candidate.lower()) in used:  # lower(): also unique on case-insensitive disks
        candidate, k = f"{source}__{base.stem}-{k}{base.suffix}", k + 1
    used.add((folder, candidate.lower()))
    return candidate


def build_split(cfg: Config, sc: Scan, out_dir: str | os.PathLike, force: bool = False) -> dict:
    """Deduplicate, split and write a scanned set of sources (see module docstring)."""
    out = Path(out_dir)
    active = list(cfg.active_classes)
    check_classes(active)
    check_out_dir(out, force, [s.path for s in sc.sources])

    labels = [e.label for e in sc.entries]
    splits = [e.split for e in sc.entries]
    by_name = {s.name: s for s in sc.sources}
    if not cfg.split_by_person:
        sc.entries = [dataclasses.replace(e, person=None) for e in sc.entries]
    exact, groups = find_groups(sc.md5, sc.ahash, cfg.near_dup_bits,
                                np.array([e.person is not None for e in sc.entries], bool))
    fractions = {s.name: (s.spec_options.val_fraction, s.spec_options.test_fraction) for s in sc.sources}
    plan = assign_splits(sc.entries, groups, cfg.seed, cfg.val_fraction, cfg.test_fraction, cfg.keep_source_splits,
                         fractions)
    keep = [i for i, d in enumerate(plan.dest) if d is not None and labels[i] in active]
    if not keep:
        raise EmorecError(f"no images of the active classes ({', '.join(active)}) in the sources")

    settings = cfg.to_dict()
    report = {
        "out_dir": portable_path(out),
        "config": {k: settings[k] for k in ("active_classes", "seed", "val_fraction", "test_fraction",
                                             "keep_source_splits", "split_by_person", "follow_links", "near_dup_bits",
                                             "face_margin")},
        "sources": {s.name: _source_report(s, sc) for s in sc.sources},
        "bad_files": sc.bad,
        "duplicates": {
            "exact": group_stats(exact, splits, labels),
            "exact_or_near": group_stats(groups, splits, labels),
            "removed": {k: plan.dropped[k] for k in ("duplicate", "cross_split", "conflict")},
        },
        "inactive": dict(sorted(Counter(labels[i] for i, d in enumerate(plan.dest)
                                        if d is not None and labels[i] not in active).items())),
        "written": {s: {c: 0 for c in active} for s in SPLITS},
        "leak": {s: 0 for s in SPLITS},
        "conflict": {s: 0 for s in SPLITS},
        "people": _people_per_split(sc, plan.dest),
    }
    _warn_inputs(report, sc)
    votes = _read_votes(sc.sources, report)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial"
    shutil.rmtree(tmp, ignore_errors=True)  # left over by an interrupted run
    try:
        for s in SPLITS:
            for c in active:
                (tmp / s / c).mkdir(parents=True)
        rows, vote_rows, used = [], [], set()
        for i in tqdm(keep, desc="writing split", unit="img", leave=False):
            e, split = sc.entries[i], plan.dest[i]
            box = sc.boxes.get((e.source, e.name))
            stored = e.name if box is None else str(PurePosixPath(e.name).with_suffix(".png"))
            name = _unique_name(used, f"{split}/{e.label}", e.source, stored)
            path = f"{split}/{e.label}/{name}"
            data = by_name[e.source].read(e.name)
            (tmp / path).write_bytes(data if box is None else face_png(data, e.name, box, cfg.face_margin))
            rows.append({"path": path, "split": split, "label": e.label, "source": e.source,
                         "source_split": e.split or "", "original": display_name(e.name), "group": plan.group[i] or "",
                         "leak": int(plan.leak[i]), "conflict": int(plan.conflict[i]), "person": e.person or ""})
            counts = votes[e.source].lookup(e.split, e.name)
            if counts is not None:
                vote_rows.append({"path": path, **counts})
            report["written"][split][e.label] += 1
            report["leak"][split] += plan.leak[i]
            report["conflict"][split] += plan.conflict[i]
        with open(tmp / "manifest.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=MANIFEST_FIELDS)
            writer.writeheader()
            writer.writerows(rows)
        if vote_rows:
            write_votes(tmp / VOTES_FILE, vote_rows)
            report["votes"].update(file=VOTES_FILE, images=len(vote_rows))
        (tmp / "data_report.json").write_text(json.dumps(report, indent=2))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise EmorecError(f"writing {out} failed: {e}") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return report

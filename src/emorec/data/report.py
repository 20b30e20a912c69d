"""Human-readable data reports: of a preparation run, and of an existing split on disk."""
from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from emorec.imageio import IMAGE_EXTS
from emorec.data.split import SPLITS
from emorec.errors import EmorecError


def split_counts(data_dir: str | Path) -> dict[str, dict[str, int]]:
    """``{split: {class: images}}`` of a ``<dir>/{train,val,test}/<class>/`` split on disk."""
    root = Path(data_dir)
    if not root.is_dir():
        raise EmorecError(f"data folder not found: {root}")
    counts = {}
    for split in SPLITS:
        if (root / split).is_dir():
            counts[split] = {c.name: sum(1 for f in c.iterdir() if f.suffix.lower() in IMAGE_EXTS)
                             for c in sorted((root / split).iterdir()) if c.is_dir()}
    if not counts:
        raise EmorecError(f"{root} is not a data split (no train/, val/ or test/ folder); "
                          f"make one with: emorec data prepare SOURCE --out {root}")
    return counts


def read_manifest(data_dir: str | Path) -> list[dict[str, str]]:
    """Rows of ``<dir>/manifest.csv`` ([] when there is none)."""
    path = Path(data_dir) / "manifest.csv"
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def format_counts(counts: dict[str, dict[str, int]]) -> str:
    """A split x class table with totals."""
    classes = sorted({c for per in counts.values() for c in per})
    width = max([len(c) for c in classes] + [6])
    lines = ["".join(f"{h:>{width + 2}}" for h in ["", *classes, "total"])]
    for split, per in counts.items():
        cells = [per.get(c, 0) for c in classes]
        lines.append(f"{split:>{width + 2}}" + "".join(f"{v:>{width + 2},}" for v in [*cells, sum(cells)]))
    totals = [sum(per.get(c, 0) for per in counts.values()) for c in classes]
    lines.append(f"{'total':>{width + 2}}" + "".join(f"{v:>{width + 2},}" for v in [*totals, sum(totals)]))
    return "\n".join(lines)


def _dup_line(name: str, s: dict) -> str:
    return (f"  {name}: {s['groups']:,} groups ({s['files']:,} files), {s['train_test']:,} across train/test, "
            f"{s['conflicting']:,} with conflicting labels")


def format_report(report: dict) -> str:
    """The report of :func:`emorec.data.pipeline.prepare` as text."""
    lines = ["sources:"]
    for name, s in report["sources"].items():
        lines.append(f"  {name} ({s['spec']}): {s['images']:,} images"
                     + (f", {s['bad_files']:,} unreadable" if s["bad_files"] else "")
                     + (f", {sum(s['unknown_labels'].values()):,} with unknown labels" if s["unknown_labels"] else "")
                     + (f", {s['unlabelled']:,} without a label (no class folder, label row or fitting name)"
                        if s["unlabelled"] else ""))
        if s["unknown_labels"]:
            lines.append("    unknown labels: " + ", ".join(f"{k!r} {v:,}" for k, v in s["unknown_labels"].items()))
        faces = s.get("faces", {})
        if faces.get("crop", "none") != "none":
            kept = "kept whole" if faces["crop"] == "redetect" else "dropped"
            lines.append(f"    faces ({faces['crop']}): found in {faces['images'] - faces['no_face']:,} of "
                         f"{faces['images']:,}; no face in {faces['no_face']:,} ({kept})")
        for split, per in s["counts"].items():
            split = "(no split)" if split == "-" else split
            lines.append(f"    {split:<10} " + "  ".join(f"{c} {n:,}" for c, n in per.items()))
        people = report.get("people", {}).get(name)
        if people:
            lines.append(f"    people ({s['people']:,}, each in one split): "
                         + ", ".join(f"{k} {v:,}" for k, v in people.items()))
    d = report["duplicates"]
    lines.append(f"duplicates (near_dup_bits={report['config']['near_dup_bits']}):")
    lines.append(_dup_line("exact", d["exact"]))
    lines.append(_dup_line("exact or near", d["exact_or_near"]))
    r = d["removed"]
    lines.append(f"  removed: {r['duplicate']:,} in-split copies, {r['cross_split']:,} copies of val/test faces "
                 f"in other splits, {r['conflict']:,} files of conflicting-label groups (kept out of train/val)")
    if report["inactive"]:
        lines.append("not written (inactive classes): "
                     + ", ".join(f"{c} {n:,}" for c, n in report["inactive"].items()))
    lines.append(f"written to {report['out_dir']}:")
    lines.append(format_counts(report["written"]))
    lines.append(_leak_line(report["leak"]))
    if report.get("votes", {}).get("images"):
        lines.append(f"annotator votes for {report['votes']['images']:,} written files in {report['votes']['file']} "
                     "(SOFT_LABELS can train on them)")
    return "\n".join(lines)


def _leak_line(leak: dict[str, int]) -> str:
    return ("leak (val/test files whose face is also in a source's train split): "
            + ", ".join(f"{s} {leak.get(s, 0):,}" for s in ("val", "test")))


def describe_split(data_dir: str | Path) -> str:
    """`emorec data report DIR`: counts on disk, plus sources and leak flags from the manifest."""
    counts = split_counts(data_dir)
    lines = [f"{data_dir}:", format_counts(counts)]
    rows = read_manifest(data_dir)
    if rows:
        per_source = Counter((r["source"], r["split"]) for r in rows)
        for source in sorted({r["source"] for r in rows}):
            lines.append(f"  from {source}: " + ", ".join(f"{s} {per_source[(source, s)]:,}" for s in SPLITS))
        lines.append(_leak_line(Counter(r["split"] for r in rows if r["leak"] == "1")))
    return "\n".join(lines)

"""Data preparation: sources (folders, zips, Kaggle) -> labels -> duplicates -> split.

``prepare(cfg, sources, out_dir, force)`` does it all; the steps live in ``labels``,
``sources``, ``dedup``, ``split``, ``pipeline`` and ``report``.
"""
from emorec.data.labels import CANONICAL_CLASSES, canonical_label, split_name
from emorec.data.pipeline import MANIFEST_FIELDS, build_split, prepare, scan
from emorec.data.report import describe_split, format_report, read_manifest, split_counts

__all__ = ["CANONICAL_CLASSES", "MANIFEST_FIELDS", "build_split", "canonical_label", "describe_split",
           "format_report", "prepare", "read_manifest", "scan", "split_counts", "split_name"]

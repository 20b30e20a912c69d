"""The validation suite: one model scored on every domain at once, beside a baseline.

A suite file (``benchmarks/suite.yaml``) lists sets, each with a domain:

    sets:
      - {name: muxspace_dev, domain: web photos, photos: ../shared/datasets/muxspace_dev.zip}
      - {name: rafdb_val, domain: web photos, data_dir: data_split_mix7, split: val, source: rafdb_basic}

``photos`` sets are whole photos through the face detector, as ``emorec predict`` sees them; split
sets are the faces of a prepared split (already cropped as predict crops them), optionally only
those of one source (``manifest.csv``). The score of a model is the mean of its domain means of
accuracy, so that no domain counts more because it has more sets. Against a baseline each set and
the whole suite get an exact McNemar test on the items both models answered.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emorec.config import Config
from emorec.errors import EmorecError
from emorec.evaluation.metrics import metrics_of_predictions


@dataclass(frozen=True)
class SuiteSet:
    name: str
    domain: str
    photos: str | None = None  # labelled whole photos (folder or zip), through the detector
    data_dir: str | None = None  # or a prepared split ...
    split: str = "val"
    source: str | None = None  # ... and only the faces of this source


def read_suite(path: str | Path) -> list[SuiteSet]:
    import yaml

    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise EmorecError(f"suite file {path}: cannot read it ({str(e).splitlines()[0]})") from None
    items = data.get("sets") if isinstance(data, dict) else None
    if not isinstance(items, list) or not items:
        raise EmorecError(f"suite file {path}: expected a list under 'sets:'")
    sets = []
    for item in items:
        try:
            s = SuiteSet(**{str(k): (None if v is None else str(v)) for k, v in item.items()})
        except TypeError as e:
            raise EmorecError(f"suite file {path}: bad set {item!r} ({e})") from None
        if (s.photos is None) == (s.data_dir is None):
            raise EmorecError(f"suite file {path}: set {s.name!r} needs one of photos or data_dir")
        sets.append(s)
    return sets


@dataclass
class Answers:
    """One model on one set: item names, true and predicted class names (None: no face found)."""

    names: list[str]
    truth: list[str]
    predicted: list[str | None]


def answer(cfg: Config, model: Path, scorer, s: SuiteSet, out_dir: Path) -> Answers:
    """``model``'s answers on set ``s``; ``scorer`` is the model loaded once (evaluate.load_model)."""
    if s.photos:
        from emorec.evaluation.evaluate import evaluate_photos

        r = evaluate_photos(cfg, model, s.photos, out_dir)
        classes = set(r["classes"])
        return Answers([n for n, _, _ in r["predictions"]], [t for _, t, _ in r["predictions"]],
                       [p if p in classes else None for _, _, p in r["predictions"]])
    from emorec.data.dataset import load_split
    from emorec.data.report import read_manifest

    data_dir = Path(s.data_dir)
    data = load_split(data_dir, s.split, scorer.classes, scorer.img_size, scorer.grayscale, cfg.cache_dir,
                      progress=False, source_size=scorer.source_size)
    rel = [Path(p).relative_to(data_dir).as_posix() for p in data.paths]
    keep = np.ones(len(rel), bool)
    if s.source:
        source_of = {r["path"]: r["source"] for r in read_manifest(data_dir)}
        keep = np.array([source_of.get(r) == s.source for r in rel], bool)
        if not keep.any():
            raise EmorecError(f"suite set {s.name}: no faces of source {s.source!r} in {data_dir}/{s.split}")
    probs = scorer.probs(data.images.numpy()[keep], 256, False)
    y = data.labels.numpy()[keep]
    return Answers([r for r, k in zip(rel, keep) if k], [scorer.classes[i] for i in y],
                   [scorer.classes[i] for i in probs.argmax(1)])


def mcnemar(a_right: np.ndarray, b_right: np.ndarray) -> dict:
    """Exact McNemar test of two models on the same items: only-A right, only-B right, p."""
    from scipy.stats import binomtest

    only_a, only_b = int((a_right & ~b_right).sum()), int((~a_right & b_right).sum())
    p = binomtest(min(only_a, only_b), only_a + only_b).pvalue if only_a + only_b else 1.0
    return {"only_model": only_a, "only_baseline": only_b, "p": float(p)}


def score(ans: Answers, classes: list[str]) -> dict:
    y = np.array([classes.index(t) for t in ans.truth])
    pred = np.array([classes.index(p) if p is not None else len(classes) for p in ans.predicted])
    m = metrics_of_predictions(y, pred, classes)
    present = [c for c in classes if m["per_class"][c]["support"] > 0]
    return {"n": m["n"], "accuracy": m["accuracy"], "macro_f1": m["macro_f1"],
            "recall": {c: m["per_class"][c]["recall"] for c in present},
            "support": {c: int(m["per_class"][c]["support"]) for c in present}}


def domain_means(rows: list[dict], key: str = "accuracy") -> dict[str, float]:
    by: dict[str, list[float]] = {}
    for r in rows:
        by.setdefault(r["domain"], []).append(r[key])
    return {d: float(np.mean(v)) for d, v in by.items()}


def _paired(a: Answers, b: Answers) -> tuple[np.ndarray, np.ndarray]:
    """Right/wrong of both models on the items both answered (the same names)."""
    b_at = {n: i for i, n in enumerate(b.names)}
    common = [(i, b_at[n]) for i, n in enumerate(a.names) if n in b_at]
    ra = np.array([a.predicted[i] == a.truth[i] for i, _ in common], bool)
    rb = np.array([b.predicted[j] == b.truth[j] for _, j in common], bool)
    return ra, rb


def run_suite(cfg: Config, suite: list[SuiteSet], model: Path, baseline: Path | None, out_dir: Path) -> dict:
    """Score ``model`` (and ``baseline``) on every set; the per-set rows, domain means, the suite
    score and the paired tests."""
    from emorec.evaluation.evaluate import load_model

    scorer = load_model(model)
    base_scorer = load_model(baseline) if baseline is not None else None
    classes = scorer.classes
    rows, pooled_a, pooled_b = [], [], []
    for s in suite:
        ans = answer(cfg, model, scorer, s, out_dir / "sets" / s.name / "model")
        row = {"set": s.name, "domain": s.domain, **score(ans, classes)}
        if baseline is not None:
            base = answer(cfg, baseline, base_scorer, s, out_dir / "sets" / s.name / "baseline")
            ra, rb = _paired(ans, base)
            b = score(base, base_scorer.classes)
            row["baseline"] = {"accuracy": b["accuracy"], "macro_f1": b["macro_f1"], "n_paired": int(len(rb)),
                               **mcnemar(ra, rb)}
            pooled_a.append(ra)
            pooled_b.append(rb)
        rows.append(row)
    from emorec.provenance import git_commit, portable_path

    result = {"model": portable_path(model), "baseline": portable_path(baseline) if baseline else None,
              "commit": git_commit(), "classes": classes,
              "sets": rows, "domains": domain_means(rows), "domains_macro_f1": domain_means(rows, "macro_f1")}
    result["score"] = float(np.mean(list(result["domains"].values())))
    pooled = _pooled_recall(rows, classes)
    result["pooled_recall"] = pooled
    if baseline is not None:
        base_rows = [{"domain": r["domain"], "accuracy": r["baseline"]["accuracy"]} for r in rows]
        result["baseline_domains"] = domain_means(base_rows)
        result["baseline_score"] = float(np.mean(list(result["baseline_domains"].values())))
        result["paired_all"] = mcnemar(np.concatenate(pooled_a), np.concatenate(pooled_b))
    return result


def _pooled_recall(rows: list[dict], classes: list[str]) -> dict[str, float]:
    """Recall of each class over every set together (support-weighted)."""
    out = {}
    for c in classes:
        n = sum(r["support"].get(c, 0) for r in rows)
        if n:
            out[c] = sum(r["recall"].get(c, 0.0) * r["support"].get(c, 0) for r in rows) / n
    return out


def format_suite(result: dict) -> str:
    """The suite as a Markdown table: per set, then domain means, the score and the paired test."""
    classes = result["classes"]
    has_base = result["baseline"] is not None
    head = ["set", "domain", "n", "accuracy", "macro-F1", *[f"{c[:4]} R" for c in classes]]
    if has_base:
        head += ["baseline acc", "only model / only baseline right", "p"]
    lines = [f"model: `{result['model']}`" + (f"; baseline: `{result['baseline']}`" if has_base else ""), "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in result["sets"]:
        cells = [r["set"], r["domain"], f"{r['n']:,}", f"{r['accuracy']:.1%}", f"{r['macro_f1']:.3f}",
                 *[f"{r['recall'][c]:.0%}" if c in r["recall"] else "-" for c in classes]]
        if has_base:
            b = r["baseline"]
            cells += [f"{b['accuracy']:.1%}", f"{b['only_model']} / {b['only_baseline']}", f"{b['p']:.2g}"]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "| domain | accuracy" + (" | baseline |" if has_base else " |"), "|---|---|" + ("---|" if has_base else "")]
    for d, v in result["domains"].items():
        lines.append(f"| {d} | {v:.1%}" + (f" | {result['baseline_domains'][d]:.1%} |" if has_base else " |"))
    lines.append(f"| **suite score** (mean of domains) | **{result['score']:.1%}**"
                 + (f" | {result['baseline_score']:.1%} |" if has_base else " |"))
    lines += ["", "pooled recall: " + ", ".join(f"{c} {v:.0%}" for c, v in result["pooled_recall"].items())]
    if has_base:
        p = result["paired_all"]
        lines.append(f"paired over the whole suite: model alone right on {p['only_model']}, baseline alone on "
                     f"{p['only_baseline']}, McNemar p = {p['p']:.2g}")
    return "\n".join(lines)

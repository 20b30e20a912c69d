"""emorec.data: sources and layouts, labels, duplicates, split, manifest, CLI.

Real-data tests share one scan of ../shared/datasets/fer2013.zip and one prepared split;
the Kaggle layouts are mimicked by small folders built here (that path needs credentials).
"""
from __future__ import annotations

import csv
import hashlib
import json
import types
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest

from emorec.cli import main
from emorec.config import FER_CLASSES, Config, load_config
from emorec.data import build_split, canonical_label, prepare, scan, split_counts, split_name
from emorec.data.dedup import average_hash, decode, find_groups, near_pairs
from emorec.data.sources import KAGGLE_DATASETS, parse_path
from emorec.data.split import assign_splits
from emorec.errors import EmorecError


# --- small synthetic faces -------------------------------------------------------------

def face(seed: int, color: bool = False) -> np.ndarray:
    """A 48x48 image whose 8x8 block pattern is its average hash: distinct per seed, and
    the hash survives JPEG re-encoding (blocks are far from the mean)."""
    pattern = (np.random.default_rng(seed).integers(0, 2, (8, 8)) * 170 + 40).astype(np.uint8)
    img = cv2.resize(pattern, (48, 48), interpolation=cv2.INTER_NEAREST)
    return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR) if color else img


def save(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def make_folder(root: Path, layout: dict[str, int], start: int, ext: str = ".png", color: bool = False) -> int:
    """``{"train/angry": 3, ...}`` -> that many distinct images per folder; returns the next seed."""
    for folder, n in layout.items():
        for _ in range(n):
            save(root / folder / f"img{start:05d}{ext}", face(start, color))
            start += 1
    return start


def manifest(out: Path) -> list[dict]:
    with open(out / "manifest.csv", newline="") as f:
        return list(csv.DictReader(f))


def files_on_disk(out: Path) -> set[str]:
    return {p.relative_to(out).as_posix() for s in ("train", "val", "test")
            for p in (out / s).rglob("*") if p.is_file()}


# --- labels and layouts ----------------------------------------------------------------

@pytest.mark.parametrize("name, label", [
    ("angry", "angry"), ("Angry", "angry"), ("anger", "angry"), ("AN", "angry"),
    ("happiness", "happy"), ("Happy", "happy"), ("HA", "happy"),
    ("sadness", "sad"), ("SA", "sad"),
    ("surprised", "surprise"), ("Suprise", "surprise"), ("Surprise", "surprise"), ("SU", "surprise"),
    ("fearful", "fear"), ("Fear", "fear"), ("FE", "fear"),
    ("disgusted", "disgust"), ("DI", "disgust"),
    ("neutrality", "neutral"), ("NE", "neutral"), ("contempt", "contempt"),
    ("1_Angry", "angry"), ("cats", None), ("emotion", None), ("train", None),
])
def test_canonical_label(name, label):
    assert canonical_label(name) == label


def test_layout_discovery():
    assert split_name("Validation") == "val" and split_name("PrivateTest") == "test" and split_name("Data") is None
    assert parse_path("train/angry/x.jpg") == ("angry", "angry", "train")
    assert parse_path("images/validation/Happy/x.jpg") == ("Happy", "happy", "val")
    assert parse_path("test/test/sad/x.jpg") == ("sad", "sad", "test")
    assert parse_path("Data/Suprise/x.jpg") == ("Suprise", "surprise", None)
    assert parse_path("Data/Angry/session1/x.jpg") == ("Angry", "angry", None)  # class above subfolders
    assert parse_path("train/cats/x.jpg") == ("cats", None, "train")  # unknown, reported
    assert parse_path("x.jpg") is None and parse_path("train/x.jpg") is None  # no class folder


def test_near_pairs_match_brute_force():
    rng = np.random.default_rng(0)
    h = rng.integers(0, 2**63, 400, dtype=np.int64).astype(np.uint64) * np.uint64(2) + np.uint64(1)
    flips = np.uint64(1) << rng.integers(0, 64, (200, 3)).astype(np.uint64)
    near = h[:200] ^ flips[:, 0] ^ flips[:, 1] ^ flips[:, 2]  # planted pairs at distance 1-3
    h = np.concatenate([h, near])
    dist = np.unpackbits((h[:, None] ^ h[None, :]).view(np.uint8), axis=-1).reshape(len(h), len(h), 64).sum(-1)
    for bits in (0, 1, 3, 5):
        i, j = np.nonzero(np.triu(dist <= bits, k=1))
        assert sorted(map(tuple, near_pairs(h, bits).tolist())) == sorted(zip(i.tolist(), j.tolist())), bits
    assert len(near_pairs(h, 3)) >= 200


def test_decode_rejects_bad_bytes():
    ok, jpg = cv2.imencode(".jpg", face(1))
    jpg = jpg.tobytes()
    assert decode(jpg, "x").shape == (48, 48)
    for data, why in [(b"", "empty"), (b"hello", "not an image"), (jpg[: len(jpg) // 2], "truncated")]:
        with pytest.raises(EmorecError, match=why):
            decode(data, "x")


# --- FER2013 (real data) ---------------------------------------------------------------

@pytest.fixture(scope="session")
def fer_scan(fer2013_zip):
    with scan([fer2013_zip]) as sc:
        yield sc


@pytest.fixture(scope="session")
def fer_split(fer_scan, tmp_path_factory):
    out = tmp_path_factory.mktemp("fer") / "split"
    return build_split(Config(), fer_scan, out), out


@pytest.fixture(scope="session")
def private_test(fer2013_zip) -> Counter:
    with zipfile.ZipFile(fer2013_zip) as zf:
        return Counter(n.split("/")[1] for n in zf.namelist() if n.rsplit("/", 1)[-1].startswith("PrivateTest_"))


def test_fer2013_duplicate_figures(fer_split):
    report, _ = fer_split
    # exact duplicates over all 7 classes, before class filtering (see ../shared/README.md)
    assert report["duplicates"]["exact"] == {"groups": 1516, "files": 3369, "train_test": 531, "conflicting": 57}
    near = report["duplicates"]["exact_or_near"]
    assert near["groups"] >= 1516 and near["files"] > 3369


def test_fer2013_split(fer_split, private_test):
    report, out = fer_split
    counts = split_counts(out)
    assert set(counts["test"]) == set(Config().active_classes)
    # the standard test set is complete and alone in test/; PublicTest is the val set
    assert counts["test"] == {c: private_test[c] for c in Config().active_classes}
    rows = manifest(out)
    names = defaultdict(set)
    for r in rows:
        names[r["split"]].add(r["original"].rsplit("/", 1)[-1].split("_")[0])
    assert names == {"train": {"Training"}, "val": {"PublicTest"}, "test": {"PrivateTest"}}
    assert report["written"] == counts
    assert report["inactive"].keys() == {"disgust", "neutral"}
    assert report["leak"]["test"] > 0 and report["leak"]["train"] == 0


def test_fer2013_no_duplicate_straddles_splits(fer_split):
    """Independent check on the written files: no pixel md5 and no average hash in two splits."""
    _, out = fer_split
    md5s, hashes = defaultdict(set), defaultdict(set)
    thumbs, splits = [], []
    for r in manifest(out):
        img = cv2.imread(str(out / r["path"]), cv2.IMREAD_GRAYSCALE)
        md5s[hashlib.md5(img.tobytes()).hexdigest()].add(r["split"])
        thumbs.append(cv2.resize(img, (8, 8), interpolation=cv2.INTER_AREA))
        splits.append(r["split"])
    for h, s in zip(average_hash(np.array(thumbs, np.float32)).tolist(), splits):
        hashes[h].add(s)
    assert all(len(s) == 1 for s in md5s.values())
    assert all(len(s) == 1 for s in hashes.values())


def test_fer2013_manifest_matches_files(fer_split, fer_scan, fer2013_zip):
    _, out = fer_split
    rows = manifest(out)
    assert {r["path"] for r in rows} == files_on_disk(out)
    with zipfile.ZipFile(fer2013_zip) as zf:
        for r in rows:
            split, label, name = r["path"].split("/")
            assert (split, label) == (r["split"], r["label"]) and name == f"fer2013__{Path(r['original']).name}"
            assert r["original"].split("/")[:2] == [r["source_split"], r["label"]]
            assert (out / r["path"]).read_bytes() == zf.read(r["original"])  # original bytes, not re-encoded
    # leak flag: a val/test file is flagged when its pixels also occur in the zip's train/
    train_md5 = {m for e, m in zip(fer_scan.entries, fer_scan.md5) if e.split == "train"}
    md5_of = {e.name: m for e, m in zip(fer_scan.entries, fer_scan.md5)}
    for r in rows:
        if r["split"] != "train" and md5_of[r["original"]] in train_md5:
            assert r["leak"] == "1" and r["group"]
        if r["leak"] == "1":
            assert r["split"] != "train" and r["group"]


def test_fer2013_seeded_split(fer_scan):
    """All of FER2013 split by fractions: same seed -> same split, stratified, groups whole."""
    _, roots = find_groups(fer_scan.md5, fer_scan.ahash, 0)
    plan = assign_splits(fer_scan.entries, roots, 7, 0.1, 0.2, keep_source_splits=False)
    again = assign_splits(fer_scan.entries, roots, 7, 0.1, 0.2, keep_source_splits=False)
    other = assign_splits(fer_scan.entries, roots, 8, 0.1, 0.2, keep_source_splits=False)
    assert plan.dest == again.dest and plan.dest != other.dest
    per = defaultdict(Counter)
    for e, d in zip(fer_scan.entries, plan.dest):
        if d:
            per[e.label][d] += 1
    for label, c in per.items():
        total = sum(c.values())
        assert abs(c["test"] / total - 0.2) < 0.01 and abs(c["val"] / total - 0.1) < 0.01, label
    by_group = defaultdict(set)
    for g, d in zip(plan.group, plan.dest):
        if g and d:
            by_group[g].add(d)
    assert by_group and all(len(s) == 1 for s in by_group.values())


def test_fer2013_seven_classes(fer_scan, tmp_path, private_test):
    cfg = load_config(overrides={"active_classes": ",".join(FER_CLASSES)})
    report = build_split(cfg, fer_scan, tmp_path / "split7")
    counts = split_counts(tmp_path / "split7")
    assert counts["test"] == dict(private_test)  # all 3,589 PrivateTest images, 7 classes
    assert report["inactive"] == {} and set(counts["train"]) == set(FER_CLASSES)
    assert counts["train"]["disgust"] > 0 and counts["val"]["neutral"] > 0


# --- the four Kaggle datasets, mimicked --------------------------------------------------

@pytest.fixture
def kaggle_folders(tmp_path, monkeypatch) -> dict[str, Path]:
    """Local stand-ins for the four Kaggle datasets, served by a fake kagglehub."""
    roots = {h: tmp_path / "kaggle" / h.replace("/", "_") for h in KAGGLE_DATASETS}
    seed = 1000
    # samithsachidanandan/human-face-emotions: Data/<Class>, 5 classes, "Suprise" misspelt, colour
    seed = make_folder(roots[KAGGLE_DATASETS[0]],
                       {f"Data/{c}": 10 for c in ["Angry", "Fear", "Happy", "Sad", "Suprise"]}, seed, ".jpg", color=True)
    # aadityasinghal/facial-expression-dataset: train/train/<class>, test/test/<class>, FER's 7
    seed = make_folder(roots[KAGGLE_DATASETS[1]], {f"{s}/{s}/{c}": n for s, n in [("train", 6), ("test", 2)]
                                                   for c in FER_CLASSES}, seed, ".jpg")
    # sudarshanvaidya/random-images-...: dataset/<noun>, 8 classes, plus a class we do not know
    seed = make_folder(roots[KAGGLE_DATASETS[2]], {f"dataset/{c}": 10 for c in [
        "anger", "contempt", "disgust", "fear", "happiness", "neutrality", "sadness", "surprise", "confused"]}, seed)
    # nabilsherif/facial-emotions-recognition-dataset (layout assumed): images/{train,validation}/<code>
    make_folder(roots[KAGGLE_DATASETS[3]], {f"images/{s}/{c}": n for s, n in [("train", 10), ("validation", 2)]
                                            for c in ["AN", "DI", "FE", "HA", "NE", "SA", "SU"]}, seed)
    fake = types.SimpleNamespace(dataset_download=lambda handle: str(roots[handle]))
    monkeypatch.setitem(__import__("sys").modules, "kagglehub", fake)
    return roots


def test_kaggle_layouts_and_labels(kaggle_folders, tmp_path, capsys):
    out = tmp_path / "out"
    report = prepare(Config(), ["kaggle:all"], out)
    src = report["sources"]
    assert list(src) == [h.split("/")[1] for h in KAGGLE_DATASETS]
    five = ["angry", "fear", "happy", "sad", "surprise"]
    assert src["human-face-emotions"]["counts"] == {"-": {c: 10 for c in five}}
    assert src["facial-expression-dataset"]["counts"] == {"test": {c: 2 for c in FER_CLASSES},
                                                          "train": {c: 6 for c in FER_CLASSES}}
    assert src["random-images-for-face-emotion-recognition"]["counts"]["-"] == {
        c: 10 for c in sorted(["angry", "contempt", "disgust", "fear", "happy", "neutral", "sad", "surprise"])}
    assert src["facial-emotions-recognition-dataset"]["counts"] == {"train": {c: 10 for c in FER_CLASSES},
                                                                    "val": {c: 2 for c in FER_CLASSES}}
    # unknown labels: counted and warned about, not merged
    assert src["random-images-for-face-emotion-recognition"]["unknown_labels"] == {"confused": 10}
    assert "confused (10)" in capsys.readouterr().err
    assert report["inactive"] == {"contempt": 10, "disgust": 30, "neutral": 30}
    rows = manifest(out)
    assert {r["label"] for r in rows} == set(five)
    per = Counter((r["source"], r["split"]) for r in rows)
    # a source's own test (val) split is kept; sources without one give 10 % per class to it
    assert per[("facial-expression-dataset", "test")] == 10 and per[("facial-expression-dataset", "val")] == 5
    assert per[("facial-emotions-recognition-dataset", "val")] == 10
    assert per[("facial-emotions-recognition-dataset", "test")] == 5
    assert per[("human-face-emotions", "test")] == 5 and per[("human-face-emotions", "val")] == 5
    assert {r["path"] for r in rows} == files_on_disk(out)


def test_kaggle_download_failure_is_one_line(monkeypatch):
    def boom(handle):
        raise RuntimeError("401 Unauthorized\ndetails")
    monkeypatch.setitem(__import__("sys").modules, "kagglehub", types.SimpleNamespace(dataset_download=boom))
    with pytest.raises(EmorecError, match=r"^kaggle:a/b: download failed \(401 Unauthorized\)$"):
        prepare(Config(), ["kaggle:a/b"], "unused")


# --- duplicates across sources, bad files, determinism ---------------------------------------

def test_cross_source_duplicates(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    make_folder(a, {f"{s}/{c}": 4 for s in ("train", "test") for c in ("happy", "sad")}, 0)
    make_folder(b, {c: 10 for c in ("happy", "sad")}, 100)
    test_face = a / "test/happy/img00008.png"
    ok, jpg = cv2.imencode(".jpg", cv2.imread(str(test_face)), [cv2.IMWRITE_JPEG_QUALITY, 85])
    (b / "happy/copy.jpg").write_bytes(jpg.tobytes())  # near duplicate (re-encoded) of a test face
    (b / "sad/relabelled.png").write_bytes(test_face.read_bytes())  # exact copy, other label
    (b / "happy/again.png").write_bytes((b / "happy/img00100.png").read_bytes())  # in-source copy
    cfg = load_config(overrides={"active_classes": "happy,sad"})
    report = prepare(cfg, [a, b], tmp_path / "out")
    rows = manifest(tmp_path / "out")
    originals = {(r["source"], r["original"]): r for r in rows}
    assert ("b", "happy/copy.jpg") not in originals and ("b", "sad/relabelled.png") not in originals
    kept = originals[("a", "test/happy/img00008.png")]
    assert kept["split"] == "test" and kept["conflict"] == "1" and kept["group"]
    assert report["duplicates"]["exact_or_near"]["groups"] == 2
    assert report["duplicates"]["removed"] == {"duplicate": 1, "cross_split": 2, "conflict": 0}
    assert sum(1 for r in rows if r["original"] in ("happy/img00100.png", "happy/again.png")) == 1


def test_bad_images_are_skipped_and_counted(tmp_path, capsys):
    src = tmp_path / "src"
    make_folder(src, {c: 10 for c in ("happy", "sad")}, 0, ".jpg")
    good = (src / "happy/img00000.jpg").read_bytes()
    (src / "happy/notes.jpg").write_text("not an image")
    (src / "happy/empty.png").write_bytes(b"")
    (src / "sad/cut.jpg").write_bytes(good[: len(good) // 2])
    (src / "sad/readme.txt").write_text("ignored: not an image file name")
    cfg = load_config(overrides={"active_classes": "happy,sad"})
    report = prepare(cfg, [src], tmp_path / "out")
    assert report["sources"]["src"]["bad_files"] == 3
    assert sorted(b["file"] for b in report["bad_files"]) == ["happy/empty.png", "happy/notes.jpg", "sad/cut.jpg"]
    assert sum(sum(c.values()) for c in report["written"].values()) == 20
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 3 and all(w.startswith("warning: src: skipped ") for w in warnings)  # one per file
    saved = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert saved["sources"]["src"]["bad_files"] == 3


def test_prepare_is_seeded(tmp_path):
    src = tmp_path / "src"
    make_folder(src, {c: 30 for c in ("angry", "happy", "sad")}, 0)
    cfg = load_config(overrides={"active_classes": "angry,happy,sad"})
    runs = {}
    for name, seed in [("one", 1), ("two", 1), ("three", 2)]:
        prepare(cfg.with_overrides({"seed": seed}), [src], tmp_path / name)
        runs[name] = sorted((r["path"], r["split"]) for r in manifest(tmp_path / name))
    assert runs["one"] == runs["two"] and runs["one"] != runs["three"]
    assert Counter(s for _, s in runs["one"]) == {"train": 72, "val": 9, "test": 9}


# --- CLI and bad input -------------------------------------------------------------------------

def test_cli_prepare_report_and_force(tmp_path, capsys):
    src, out = tmp_path / "src", tmp_path / "split"
    make_folder(src, {f"{s}/{c}": n for s, n in [("train", 8), ("test", 2)] for c in ("happy", "sad")}, 0)
    args = ["data", "prepare", str(src), "--out", str(out), "--set", "ACTIVE_CLASSES=happy,sad"]
    assert main(args) == 0
    assert "written to" in capsys.readouterr().out
    assert split_counts(out) == {"train": {"happy": 7, "sad": 7}, "val": {"happy": 1, "sad": 1},
                                 "test": {"happy": 2, "sad": 2}}
    assert main(args) == 2  # an existing split is never mixed into
    assert "use --force" in capsys.readouterr().err
    (out / "train/happy/stale.png").write_bytes(b"old")
    assert main(args + ["--force", "--no-source-splits", "--set", "TEST_FRACTION=0.3"]) == 0
    assert not (out / "train/happy/stale.png").exists()
    assert sum(split_counts(out)["test"].values()) == 6  # 30 % of 10 per class, own split ignored
    capsys.readouterr()
    assert main(["data", "report", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "happy" in printed and "from src" in printed


def test_cli_bad_input(tmp_path, capsys):
    assert main(["data", "prepare", str(tmp_path / "missing.zip"), "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err.strip() == f"emorec data: error: dataset not found: {tmp_path / 'missing.zip'}"
    classless = tmp_path / "flat.zip"
    with zipfile.ZipFile(classless, "w") as zf:
        zf.writestr("a.png", cv2.imencode(".png", face(1))[1].tobytes())
        zf.writestr("train/b.png", cv2.imencode(".png", face(2))[1].tobytes())
    assert main(["data", "prepare", str(classless), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("emorec data: error:") and "no class folders" in err and len(err.splitlines()) == 1
    numbered = tmp_path / "numbered"
    make_folder(numbered, {"0": 2, "1": 2}, 0)
    with pytest.raises(EmorecError, match="found only unknown class names: 0, 1"):
        prepare(Config(), [numbered], tmp_path / "o")
    not_split = tmp_path / "home"
    (not_split / "notes.txt").parent.mkdir()
    (not_split / "notes.txt").write_text("keep me")
    make_folder(tmp_path / "ok", {"happy": 2, "sad": 2}, 50)
    assert main(["data", "prepare", str(tmp_path / "ok"), "--out", str(not_split), "--force"]) == 2
    assert "not a data split made by emorec" in capsys.readouterr().err
    assert (not_split / "notes.txt").exists()
    assert main(["data", "report", str(tmp_path / "nowhere")]) == 2
    with pytest.raises(EmorecError, match="ACTIVE_CLASSES: unknown class 'joy'"):
        prepare(load_config(overrides={"active_classes": "joy,sad"}), [tmp_path / "ok"], tmp_path / "o2")


@pytest.mark.slow
def test_mixing_fer2013_and_ferplus_keeps_test_faces_out_of_train(fer2013_zip, ferplus_zip, tmp_path):
    """FER+ holds FER2013's faces as PNG (pixels differ slightly from the JPEGs, so md5 cannot
    match). Ground truth without hashes: a test face's twin is a train image within 2 grey
    levels mean absolute difference (nearest neighbour on 16x16 thumbnails, then full check)."""
    out = tmp_path / "mix"
    report = prepare(Config(), [fer2013_zip, ferplus_zip], out)
    rows = manifest(out)
    imgs = {r["path"]: cv2.imread(str(out / r["path"]), cv2.IMREAD_GRAYSCALE) for r in rows}
    train = [r["path"] for r in rows if r["split"] == "train"]
    test = [r["path"] for r in rows if r["split"] == "test"]
    thumb = {p: cv2.resize(imgs[p], (16, 16), interpolation=cv2.INTER_AREA).astype(np.float32).ravel() for p in imgs}
    a = np.stack([thumb[p] for p in train])
    b = np.stack([thumb[p] for p in test])
    nearest = np.concatenate([((a * a).sum(1)[None] - 2 * chunk @ a.T).argmin(1) for chunk in np.array_split(b, 8)])
    mae = np.array([np.abs(imgs[t].astype(np.int16) - imgs[train[j]]).mean() for t, j in zip(test, nearest)])
    assert (mae <= 2).sum() == 0
    # both standard test sets stay whole; their conflicting copies are flagged for the evaluator
    assert Counter(r["source"] for r in rows if r["split"] == "test").keys() == {"fer2013", "ferplus"}
    assert report["conflict"]["test"] > 0 and report["conflict"]["train"] == 0


# --- CSV label files (muxspace's legend.csv, AffectNet / FER+ CSVs) ---------------------

def make_csv_source(root: Path, rows: list[tuple[str, str]], header=("user.id", "image", "emotion")) -> Path:
    """``root/images/<file>`` for every row whose file is not "missing*", and ``root/legend.csv``."""
    for i, (name, _) in enumerate(rows):
        if not name.startswith("missing"):
            save(root / "images" / name, face(500 + i, color=True))
    with open(root / "legend.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows([("7", name, label) for name, label in rows])
    return root


def test_csv_labelled_source(tmp_path, capsys):
    rows = [("a.jpg", "anger"), ("b.jpg", "ANGER"), ("c.jpg", "happiness"), ("d.jpg", "HAPPINESS"),
            ("e.jpg", "sadness"), ("f.jpg", "Surprise"), ("g.jpg", "confused"), ("missing.jpg", "fear")]
    src = make_csv_source(tmp_path / "photos", rows)
    save(src / "images" / "unlisted.jpg", face(999, color=True))
    cfg = Config(active_classes=["angry", "happy", "sad", "surprise"], val_fraction=0.0, test_fraction=0.0)
    report = prepare(cfg, [src], tmp_path / "out")
    s = report["sources"]["photos"]
    assert s["label_files"] == ["legend.csv"] and s["label_rows_unmatched"] == 1
    assert s["unknown_labels"] == {"confused": 1} and s["unlabelled"] == 1
    assert s["counts"] == {"-": {"angry": 2, "happy": 2, "sad": 1, "surprise": 1}}
    err = capsys.readouterr().err
    assert "unknown labels: confused (1)" in err and "name no image of the source (first: legend.csv:9: missing.jpg)" in err
    assert "1 images in no label file" in err
    assert sorted(p.name for p in (tmp_path / "out/train/angry").iterdir()) == ["photos__a.jpg", "photos__b.jpg"]


def test_csv_columns_are_configurable_and_zips_work(tmp_path):
    src = make_csv_source(tmp_path / "affect", [("x1.png", "happy"), ("x2.png", "sad")], header=("id", "file", "label"))
    with zipfile.ZipFile(tmp_path / "affect.zip", "w") as z:
        for p in src.rglob("*"):
            z.write(p, "affect/" + p.relative_to(src).as_posix())
    with pytest.raises(EmorecError, match="no CSV with columns 'image' and 'emotion'"):
        prepare(Config(val_fraction=0.0, test_fraction=0.0), [tmp_path / "affect.zip"], tmp_path / "o1")
    cfg = load_config(None, {"LABELS_IMAGE_COLUMN": "FILE", "LABELS_LABEL_COLUMN": "Label", "val_fraction": 0,
                             "test_fraction": 0, "active_classes": "happy,sad"})
    report = prepare(cfg, [tmp_path / "affect.zip"], tmp_path / "o2")
    assert report["sources"]["affect"]["counts"] == {"-": {"happy": 1, "sad": 1}}


def test_muxspace_dev_legend(shared_dir):
    from emorec.data.sources import open_sources

    [src] = open_sources([shared_dir / "datasets" / "muxspace_dev.zip"])
    counts = Counter(e.label for e in src.entries)
    assert counts == {"angry": 126, "disgust": 83, "fear": 11, "happy": 200, "neutral": 200, "sad": 134,
                      "surprise": 183}
    assert src.label_files == ["muxspace_dev/legend.csv"] and not src.unlabelled and not src.label_rows_unmatched
    src.close()


def damaged_zip(path: Path) -> Path:
    """A zip of one good photo per class and, beside them, a member with a bad CRC, an encrypted
    one, one in an unknown compression, a truncated one and a 200 MB run of zeros (a zip bomb)."""
    import struct

    with zipfile.ZipFile(path, "w") as z:
        for k, name in enumerate(("happy/a.jpg", "sad/b.jpg", "happy/crc.jpg", "happy/locked.jpg", "sad/method.jpg",
                                  "sad/cut.jpg")):
            z.writestr(name, cv2.imencode(".jpg", face(k, color=True))[1].tobytes())
        z.writestr(zipfile.ZipInfo("sad/bomb.jpg"), bytes(200 * 2**20), compress_type=zipfile.ZIP_DEFLATED)
    data = bytearray(path.read_bytes())
    with zipfile.ZipFile(path) as z:
        infos = {i.filename: i for i in z.infolist()}
    for name, patch in (("happy/crc.jpg", "crc"), ("happy/locked.jpg", "flag"), ("sad/method.jpg", "method"),
                        ("sad/cut.jpg", "cut")):
        local, central = infos[name].header_offset, data.rfind(name.encode()) - 46
        if patch == "crc":  # zipfile checks the data against the central directory's CRC
            data[central + 16] ^= 0xFF
        elif patch == "flag":  # "encrypted": bit 0 of the flags (local header +6, central +8)
            struct.pack_into("<H", data, local + 6, 1)
            struct.pack_into("<H", data, central + 8, 1)
        elif patch == "method":  # compression method 99 (local +8, central +10)
            struct.pack_into("<H", data, local + 8, 99)
            struct.pack_into("<H", data, central + 10, 99)
        else:  # sizes that promise more bytes than the archive holds: a truncated member
            for at in (local + 18, local + 22, central + 20, central + 24):
                struct.pack_into("<I", data, at, 10**6)
    path.write_bytes(bytes(data))
    return path


def test_damaged_zip_members_cost_one_line_each(tmp_path, capsys):
    import resource

    src = damaged_zip(tmp_path / "photos.zip")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    report = prepare(Config(active_classes=["happy", "sad"], val_fraction=0, test_fraction=0), [src], tmp_path / "out")
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    bad = {b["file"]: b["error"] for b in report["bad_files"]}
    assert set(bad) == {"happy/crc.jpg", "happy/locked.jpg", "sad/method.jpg", "sad/cut.jpg", "sad/bomb.jpg"}
    assert "over the 67,108,864 limit" in bad["sad/bomb.jpg"] and grown_mib < 150  # never inflated
    assert all("damaged zip member" in bad[n] for n in bad if n != "sad/bomb.jpg")
    assert sum(sum(c.values()) for c in report["written"].values()) == 2  # the good ones are read
    err = capsys.readouterr().err
    assert "Traceback" not in err and sum(line.startswith("warning: photos: skipped ") for line in err.splitlines()) == 5


def test_file_links_are_not_followed_unless_asked_and_locked_folders_are_said(tmp_path, capsys, monkeypatch):
    import os

    outside = save(tmp_path / "outside" / "secret.png", face(77))
    src = tmp_path / "src"
    make_folder(src, {"happy": 3, "sad": 3, "sad/locked": 1}, 0)
    (src / "happy" / "link.png").symlink_to(outside)
    real_walk = os.walk

    def walk(top, onerror=None, **kw):  # sad/locked cannot be listed (as for a user without the right)
        for dirpath, dirnames, filenames in real_walk(top, onerror=onerror, **kw):
            if "locked" in dirnames:
                dirnames.remove("locked")
                onerror(PermissionError(13, "Permission denied", os.path.join(dirpath, "locked")))
            yield dirpath, dirnames, filenames

    monkeypatch.setattr("emorec.data.sources.os.walk", walk)
    cfg = Config(active_classes=["happy", "sad"], val_fraction=0, test_fraction=0)
    report = prepare(cfg, [src], tmp_path / "out")
    s = report["sources"]["src"]
    assert s["links_skipped"] == 1 and report["written"]["train"] == {"happy": 3, "sad": 3}
    assert s["unreadable_folders"] == ["sad/locked"]
    err = capsys.readouterr().err
    assert "src: skipped 1 file links (first: happy/link.png)" in err
    assert "src: skipped folder sad/locked: cannot be read" in err
    followed = prepare(cfg.with_overrides({"follow_links": True}), [src], tmp_path / "out2")
    assert followed["written"]["train"]["happy"] == 4 and followed["config"]["follow_links"] is True

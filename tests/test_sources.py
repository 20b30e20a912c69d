"""Sources read by configuration (label codes, file-name patterns, people, crops, weights), the
person split, and the validation suite; on small sources built here and on ../shared's four
photo-domain and posed datasets."""
from __future__ import annotations

import csv
import json
import zipfile
from collections import Counter, defaultdict
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from emorec.cli import main
from emorec.config import Config, load_config
from emorec.data import prepare
from emorec.data.dataset import epoch_indices, sample_weights
from emorec.data.sources import SourceSpec, open_sources, source_weights
from emorec.errors import EmorecError
from emorec.preprocess import crop_face

from test_data import face, manifest, save

ROOT = Path(__file__).resolve().parents[1]
KDEF_PATTERN = r"[AB](?P<person>[FM]\d\d)(?P<label>[A-Z]{2})(?P<view>S|HL|HR)"
KDEF_CODES = {"AF": "fear", "AN": "angry", "DI": "disgust", "HA": "happy", "NE": "neutral", "SA": "sad",
              "SU": "surprise"}


def kdef_like(root: Path, people: int) -> Path:
    """``KDEF/<id>/<id><expr><view>.png`` for ``people`` people, 3 expressions, 2 views, plus one
    unknown expression code (XX) and one name no pattern fits."""
    seed = 0
    for k in range(1, people + 1):
        pid = f"A{'F' if k % 2 else 'M'}{k:02d}"
        for expr in ("AN", "HA", "SA"):
            for view in ("S", "HL"):
                save(root / "KDEF" / pid / f"{pid}{expr}{view}.png", face(seed))
                seed += 1
    save(root / "KDEF" / "AF01" / "AF01XXS.png", face(9000))
    save(root / "KDEF" / "AF01" / "notes.png", face(9001))
    return root


def test_file_name_pattern_codes_and_people(tmp_path, capsys):
    src = kdef_like(tmp_path / "kdef", 10)
    spec = {"path": str(src), "pattern": KDEF_PATTERN, "codes": KDEF_CODES, "val_fraction": 0.2, "test_fraction": 0.1}
    cfg = Config(active_classes=["angry", "happy", "sad"], sources=[spec])
    report = prepare(cfg, None, tmp_path / "out")
    s = report["sources"]["kdef"]
    assert s["unknown_labels"] == {"XX": 1} and s["unlabelled"] == 1 and s["people"] == 10
    err = capsys.readouterr().err
    assert "unknown labels: XX (1)" in err and "1 images whose file name does not fit the pattern" in err
    rows = manifest(tmp_path / "out")
    assert Counter(r["label"] for r in rows) == {"angry": 20, "happy": 20, "sad": 20}
    splits_of = defaultdict(set)
    for r in rows:
        splits_of[r["person"]].add(r["split"])
        assert r["person"] == "kdef:" + Path(r["original"]).name[1:4]
    assert all(len(s) == 1 for s in splits_of.values())  # no person in two splits
    assert report["people"]["kdef"] == {"test": 1, "train": 7, "val": 2}
    # the same seed gives the same people; another seed other people
    again = prepare(cfg, None, tmp_path / "again")
    assert sorted(map(tuple, (r.values() for r in manifest(tmp_path / "again")))) == sorted(map(tuple, (r.values() for r in rows)))
    prepare(cfg.with_overrides({"seed": 7}), None, tmp_path / "other")
    assert {r["person"] for r in manifest(tmp_path / "other") if r["split"] == "val"} != \
           {r["person"] for r in rows if r["split"] == "val"}
    # the split tool's option: by image instead (people then straddle splits), said in the report
    import yaml

    (tmp_path / "c.yaml").write_text(yaml.safe_dump({"SOURCES": [spec], "ACTIVE_CLASSES": ["angry", "happy", "sad"]}))
    assert main(["data", "prepare", "--out", str(tmp_path / "by_image"), "--no-person-split",
                 "--config", str(tmp_path / "c.yaml")]) == 0
    by_image = json.loads((tmp_path / "by_image" / "data_report.json").read_text())
    assert by_image["config"]["split_by_person"] is False and report["config"]["split_by_person"] is True
    assert by_image["people"] == {} and report["people"]["kdef"]


def test_numeric_label_codes_in_a_csv_and_own_fractions(tmp_path):
    """RAF-DB's layout: a CSV with numbers for labels; val carved by seed, no test."""
    root = tmp_path / "raf"
    codes = {1: "surprise", 4: "happy", 5: "sad", 6: "angry"}
    rows = []
    for i in range(40):
        name = f"train_{i:05d}_aligned.jpg"
        save(root / "aligned" / name, face(100 + i, color=True))
        rows.append((name, [1, 4, 5, 6][i % 4]))
    rows.append(("train_09999_aligned.jpg", 9))  # a code with no class
    save(root / "aligned" / "train_09999_aligned.jpg", face(99, color=True))
    with open(root / "train_labels.csv", "w", newline="") as f:
        csv.writer(f).writerows([("image", "label"), *rows])
    spec = {"path": str(root), "label_column": "label", "codes": codes, "val_fraction": 0.25, "test_fraction": 0}
    report = prepare(Config(active_classes=["angry", "happy", "sad", "surprise"]), [spec], tmp_path / "out")
    assert report["sources"]["raf"]["unknown_labels"] == {"9": 1}
    assert report["written"]["val"] == {"angry": 2, "happy": 2, "sad": 2, "surprise": 2}
    assert sum(report["written"]["test"].values()) == 0 and sum(report["written"]["train"].values()) == 32


def test_source_spec_errors_are_one_line(tmp_path):
    with pytest.raises(EmorecError, match="unknown key 'crops'"):
        SourceSpec.parse({"path": "x", "crops": "detect"})
    with pytest.raises(EmorecError, match="crop must be one of none, detect, redetect"):
        SourceSpec.parse({"path": "x", "crop": "face"})
    with pytest.raises(EmorecError, match="needs a named group"):
        SourceSpec.parse({"path": "x", "pattern": r"(?P<person>\d+)"})
    with pytest.raises(EmorecError, match="not a regular expression"):
        SourceSpec.parse({"path": "x", "pattern": "(?P<label>"})
    with pytest.raises(EmorecError, match="fractions in"):
        SourceSpec.parse({"path": "x", "val_fraction": 1.5})
    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text(f"SOURCES:\n  - path: {tmp_path}\n    weight: heavy\n")
    assert main(["data", "prepare", "--config", str(cfg_file), "--out", str(tmp_path / "o")]) == 2


def portrait(images_dir: Path, seed: int = 0) -> np.ndarray:
    """The face of single_face.jpg on a background of its own (distinct thumbnails: no duplicates)."""
    img = cv2.imread(str(images_dir / "single_face.jpg"))
    img = cv2.resize(img, (img.shape[1] // 2, img.shape[0] // 2), interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    canvas = cv2.resize(cv2.cvtColor(face(seed), cv2.COLOR_GRAY2BGR), (2 * w, 2 * h), interpolation=cv2.INTER_NEAREST)
    y, x = (seed * 37) % h, (seed * 53) % w
    canvas[y:y + h, x:x + w] = img
    return canvas


def test_portraits_are_cropped_as_predict_crops_them_and_cached(tmp_path, images_dir, monkeypatch, capsys):
    from emorec.detect import make_detector
    from emorec.data.faces import largest_box
    from emorec.imageio import read_image

    src = tmp_path / "posed"
    for k in range(4):
        save(src / "happy" / f"p{k}.jpg", portrait(images_dir, k))
    blank = np.full((200, 200, 3), 128, np.uint8)
    save(src / "sad" / "wall.jpg", blank)
    save(src / "sad" / "p9.jpg", portrait(images_dir, 9))
    spec = {"path": str(src), "crop": "detect"}
    cfg = Config(active_classes=["happy", "sad"], cache_dir=tmp_path / "cache", val_fraction=0, test_fraction=0)
    report = prepare(cfg, [spec], tmp_path / "out")
    faces = report["sources"]["posed"]["faces"]
    assert faces["crop"] == "detect" and faces["no_face"] == 1 and faces["no_face_dropped"] == 1
    assert "no face found in 1 of 6 images (dropped; first: sad/wall.jpg)" in capsys.readouterr().err
    written = sorted((tmp_path / "out/train/happy").iterdir())
    assert [p.suffix for p in written] == [".png"] * 4
    # the stored face is exactly the crop `emorec predict` makes of that photo
    rgb = read_image(src / "happy" / "p0.jpg")
    box = largest_box(make_detector("yunet").detect(rgb))
    want = crop_face(rgb, box, cfg.face_margin)
    got = cv2.cvtColor(cv2.imread(str(written[0])), cv2.COLOR_BGR2RGB)
    assert got.shape == want.shape and np.array_equal(got, want)
    # a second run reads the boxes from the cache: no detector is made
    monkeypatch.setattr("emorec.data.faces.make_detector", lambda *a, **k: pytest.fail("detected again"))
    prepare(cfg, [spec], tmp_path / "out2")
    assert sorted(p.name for p in (tmp_path / "out2/train/happy").iterdir()) == [p.name for p in written]
    # redetect: an aligned crop with no face found is kept whole
    monkeypatch.undo()
    report = prepare(cfg, [{**spec, "crop": "redetect"}], tmp_path / "out3")
    assert report["sources"]["posed"]["faces"]["no_face_kept_whole"] == 1
    assert (tmp_path / "out3/train/sad/posed__wall.jpg").read_bytes() == (src / "sad/wall.jpg").read_bytes()


def test_garbage_face_cache_is_rebuilt(tmp_path, images_dir):
    from emorec.data.faces import _cache_file

    src = tmp_path / "posed"
    save(src / "happy" / "p0.jpg", portrait(images_dir, 0))
    save(src / "sad" / "p1.jpg", portrait(images_dir, 1))
    cfg = Config(active_classes=["happy", "sad"], cache_dir=tmp_path / "cache", val_fraction=0, test_fraction=0)
    spec = {"path": str(src), "crop": "detect"}
    prepare(cfg, [spec], tmp_path / "out")
    [cache] = (tmp_path / "cache" / "faces").iterdir()
    cache.write_bytes(b"\x00garbage")
    report = prepare(cfg, [spec], tmp_path / "out2")
    assert report["sources"]["posed"]["faces"]["no_face"] == 0 and cache.read_text().startswith("{")


def test_source_weights_decide_how_often_images_are_drawn(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root, start in ((a, 0), (b, 100)):
        for k in range(20):
            save(root / ("happy" if k % 2 else "sad") / f"{k}.png", face(start + k))
    specs = [str(a), {"path": str(b), "weight": 3}]
    assert source_weights(specs) == {"b": 3.0}
    cfg = Config(active_classes=["happy", "sad"], val_fraction=0, test_fraction=0)
    prepare(cfg, specs, tmp_path / "out")
    paths = sorted(str(p) for p in (tmp_path / "out" / "train").rglob("*.png"))
    w = sample_weights(tmp_path / "out", paths, {"b": 3.0})
    from_b = torch.tensor(["/b__" in p for p in paths])
    assert w[from_b].eq(3).all() and w[~from_b].eq(1).all()
    labels = torch.zeros(len(paths), dtype=torch.long)
    drawn = torch.cat([epoch_indices(labels, False, e, 0, weights=w) for e in range(50)])
    share = from_b[drawn].float().mean().item()
    assert 0.72 < share < 0.78  # 3 : 1 -> 75 %
    w0 = sample_weights(tmp_path / "out", paths, {"b": 0.0})
    assert not from_b[epoch_indices(labels, False, 0, 0, weights=w0)].any()
    with pytest.raises(EmorecError, match="weight given for 'c', which is not a source"):
        sample_weights(tmp_path / "out", paths, {"c": 2.0})


def test_config_file_takes_source_mappings(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("SOURCES:\n  - plain/folder\n  - {path: x.zip, codes: {1: sad}, weight: 2}\n")
    cfg = load_config(f)
    assert cfg.sources == ["plain/folder", {"path": "x.zip", "codes": {1: "sad"}, "weight": 2}]
    assert SourceSpec.parse(cfg.sources[1]).label("1") == "sad"


# --- the four photo-domain and posed datasets of ../shared, read by configs/sources.yaml ---------

def test_shared_sources_read_by_configuration(shared_dir):
    """Listing only (no detection): every label and person as the datasets' documentation says."""
    cfg = load_config(ROOT / "configs" / "sources.yaml")
    specs = [dict(s, path=str(shared_dir / "datasets" / Path(s["path"]).name)) if isinstance(s, dict)
             else str(shared_dir / "datasets" / Path(s).name) for s in cfg.sources]
    sources = {s.name: s for s in open_sources(specs)}
    try:
        raf = Counter(e.label for e in sources["rafdb_basic"].entries)
        assert raf == {"surprise": 1290, "fear": 281, "disgust": 717, "happy": 4772, "sad": 1982, "angry": 705,
                       "neutral": 2524}
        kdef = sources["kdef"].entries
        assert len(kdef) == 2938 and all(e.label for e in kdef) and len({e.person for e in kdef}) == 70
        assert next(e for e in kdef if e.name.endswith("AF01ANS.JPG")).person == "kdef:F01"
        tw = sources["taiwanese_faces"]
        assert len(tw.entries) == 1223 and len(tw.unlabelled) == 9 and len({e.person for e in tw.entries}) == 29
        assert next(e for e in tw.entries if e.name.endswith("0101a02.jpg")).label == "neutral"
        sfew = Counter((e.split, e.label) for e in sources["sfew"].entries)
        assert sum(n for (s, _), n in sfew.items() if s == "train") == 859
        assert sum(n for (s, _), n in sfew.items() if s == "val") == 405 and sfew[("val", "angry")] == 76
    finally:
        for s in sources.values():
            s.close()


# --- the validation suite --------------------------------------------------------------------

def test_suite_scores_every_set_with_domain_means_and_a_paired_test(tiny_onnx, yunet_path, images_dir, tmp_path,
                                                                     capsys, monkeypatch):
    from emorec.evaluation.suite import mcnemar

    a, b = tmp_path / "a", tmp_path / "b"
    for root, start in ((a, 0), (b, 100)):
        for j, c in enumerate(("angry", "happy", "sad")):
            for k in range(4):
                save(root / c / f"{c}{k}.png", face(start + k + 10 * j))
    cfg = Config(active_classes=["angry", "fear", "happy", "sad", "surprise"], val_fraction=0.5, test_fraction=0)
    prepare(cfg, [str(a), str(b)], tmp_path / "split")
    photos = tmp_path / "photos" / "happy"
    photos.mkdir(parents=True)
    (photos / "multi.jpg").write_bytes((images_dir / "multi_face.jpg").read_bytes())
    suite = tmp_path / "suite.yaml"
    suite.write_text(f"sets:\n"
                     f"  - {{name: pics, domain: web, photos: {tmp_path / 'photos'}}}\n"
                     f"  - {{name: set_a, domain: lab, data_dir: {tmp_path / 'split'}, split: val, source: a}}\n"
                     f"  - {{name: set_b, domain: lab, data_dir: {tmp_path / 'split'}, split: val, source: b}}\n")
    monkeypatch.setenv("EMOREC_YUNET", str(yunet_path))
    out = tmp_path / "rep"
    assert main(["evaluate", "--suite", str(suite), "--model", str(tiny_onnx), "--baseline", str(tiny_onnx),
                 "--out", str(out), "--set", f"CACHE_DIR={tmp_path / 'cache'}"]) == 0
    text = capsys.readouterr().out
    import json

    r = json.loads((out / "suite.json").read_text())
    assert [s["set"] for s in r["sets"]] == ["pics", "set_a", "set_b"]
    assert [s["n"] for s in r["sets"]] == [1, 6, 6]  # val: half of each source's 12
    assert set(r["domains"]) == {"web", "lab"}
    assert r["domains"]["lab"] == pytest.approx((r["sets"][1]["accuracy"] + r["sets"][2]["accuracy"]) / 2)
    assert r["score"] == pytest.approx((r["domains"]["web"] + r["domains"]["lab"]) / 2)
    assert r["paired_all"] == {"only_model": 0, "only_baseline": 0, "p": 1.0}  # a model against itself
    assert "suite score" in text and (out / "suite.md").read_text().startswith("model:")
    # McNemar on its own: 10 items only A gets right, none only B
    right = np.ones(10, bool)
    assert mcnemar(right, ~right)["p"] == pytest.approx(2 * 0.5 ** 10)
    bad = tmp_path / "bad.yaml"
    bad.write_text("sets:\n  - {name: x, domain: y}\n")
    assert main(["evaluate", "--suite", str(bad), "--model", str(tiny_onnx)]) == 2
    assert "needs one of photos or data_dir" in capsys.readouterr().err

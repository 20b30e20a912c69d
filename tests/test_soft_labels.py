"""FER+ soft labels: vote CSVs -> votes.csv of a prepared split -> soft targets -> training."""
from __future__ import annotations

import csv
import io
import json
import shutil
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import tiny_cfg
from emorec.config import DEFAULT_CLASSES, Config, load_config
from emorec.data import CANONICAL_CLASSES, prepare
from emorec.errors import EmorecError
from emorec.data.report import format_report
from emorec.data.dataset import SplitData, load_split
from emorec.train.augment import create_transform
from emorec.train.engine import train_one_epoch
from emorec.train.losses import SoftTargetCrossEntropy

# FER+'s vote columns and the canonical class each one counts for (None: not a class)
FERPLUS = [("neutral", "neutral"), ("happiness", "happy"), ("surprise", "surprise"), ("sadness", "sad"),
           ("anger", "angry"), ("disgust", "disgust"), ("fear", "fear"), ("contempt", "contempt"),
           ("unknown", None), ("NF", None)]
ACTIVE = ["angry", "happy", "sad"]


def canonical_votes(raw: list[int]) -> dict[str, int]:
    out = dict.fromkeys(CANONICAL_CLASSES, 0)
    for (_, label), n in zip(FERPLUS, raw):
        if label:
            out[label] += n
    return out


def read_csv(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- a tiny FER+-style source -----------------------------------------------------------------

# (split, class folder, file) -> raw FER+ votes in column order; None: the file has no vote row
FILES = {
    ("train", "happy", "fer0000001.png"): [1, 6, 0, 2, 1, 0, 0, 0, 0, 0],
    ("train", "happy", "fer0000002.png"): [0, 10, 0, 0, 0, 0, 0, 0, 0, 0],
    ("train", "happy", "fer0000003.png"): None,
    ("train", "sad", "fer0000004.png"): [0, 3, 0, 5, 0, 0, 0, 0, 2, 0],
    ("train", "sad", "fer0000005.png"): [7, 0, 0, 0, 0, 0, 0, 3, 0, 0],  # no vote for an active class
    ("train", "sad", "fer0000006.png"): None,  # its row is malformed
    ("train", "angry", "fer0000007.png"): [0, 0, 0, 0, 4, 0, 2, 0, 0, 4],
    ("train", "angry", "fer0000008.png"): None,  # its row is malformed
    ("train", "angry", "fer0000009.png"): [0, 0, 0, 0, 10, 0, 0, 0, 0, 0],
    ("test", "happy", "fer0000001.png"): [0, 7, 3, 0, 0, 0, 0, 0, 0, 0],  # same name as a train file
    ("test", "sad", "fer0000010.png"): [0, 0, 0, 10, 0, 0, 0, 0, 0, 0],
}
BAD_ROWS = {"train": ['fer0000006.png,"(0, 0, 48, 48)",1,x,0,0,0,0,0,0,0,0',
                      'fer0000008.png,"(0, 0, 48, 48)",1,2,3']}


def face_png(seed: int) -> bytes:
    """48x48 grey PNG whose 8x8 block pattern makes it distinct from every other seed."""
    pattern = (np.random.default_rng(seed).integers(0, 2, (8, 8)) * 170 + 40).astype(np.uint8)
    return cv2.imencode(".png", cv2.resize(pattern, (48, 48), interpolation=cv2.INTER_NEAREST))[1].tobytes()


def vote_csvs() -> dict[str, str]:
    text = {}
    for split in ("train", "test"):
        lines = [f'{f},"(0, 0, 48, 48)",' + ",".join(map(str, v))
                 for (s, _, f), v in FILES.items() if s == split and v is not None]
        lines += BAD_ROWS.get(split, [])
        text[f"{split}_label_votes.csv"] = "\n".join(lines) + "\n"
    return text


def make_source(root: Path, as_zip: bool) -> Path:
    members = {f"{s}/{c}/{f}": face_png(i) for i, (s, c, f) in enumerate(FILES)}
    members.update({k: v.encode() for k, v in vote_csvs().items()})
    if as_zip:
        path = root / "tinyplus.zip"
        with zipfile.ZipFile(path, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        return path
    for name, data in members.items():
        (root / "tinyplus" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "tinyplus" / name).write_bytes(data)
    return root / "tinyplus"


@pytest.mark.parametrize("as_zip", [True, False], ids=["zip", "folder"])
def test_prepare_writes_votes_of_each_file(tmp_path, capsys, as_zip):
    out = tmp_path / "split"
    report = prepare(load_config(overrides={"active_classes": ",".join(ACTIVE)}), [make_source(tmp_path, as_zip)], out)
    manifest = {r["path"]: r for r in read_csv(out / "manifest.csv")}
    assert len(manifest) == len(FILES)
    with open(out / "votes.csv", newline="") as f:
        assert next(csv.reader(f)) == ["path", *CANONICAL_CLASSES]
    rows = read_csv(out / "votes.csv")
    expected = {}
    for path, m in manifest.items():
        raw = FILES[(m["source_split"], m["label"], Path(m["original"]).name)]
        if raw is not None:
            expected[path] = {k: str(v) for k, v in canonical_votes(raw).items()}
    assert {r["path"]: {c: r[c] for c in CANONICAL_CLASSES} for r in rows} == expected
    # the vote row is found by (source split, file name): the test file of the same name has its own votes
    by_original = {(m["source_split"], m["original"]): p for p, m in manifest.items()}
    assert expected[by_original[("test", "test/happy/fer0000001.png")]]["surprise"] == "3"
    assert expected[by_original[("train", "train/happy/fer0000001.png")]]["surprise"] == "0"
    assert report["votes"]["images"] == len(rows) == 8
    assert report["votes"]["sources"]["tinyplus"]["bad_rows"] == 2
    assert json.loads((out / "data_report.json").read_text())["votes"] == report["votes"]
    assert "annotator votes for 8 written files" in format_report(report)
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "ignored 2 malformed vote row(s)" in warnings[0]


def test_no_vote_files_no_votes_csv(tmp_path, capsys):
    src = tmp_path / "plain"
    for i, (s, c, f) in enumerate(FILES):
        (src / s / c).mkdir(parents=True, exist_ok=True)
        (src / s / c / f).write_bytes(face_png(i))
    report = prepare(load_config(overrides={"active_classes": ",".join(ACTIVE)}), [src], tmp_path / "out")
    assert not (tmp_path / "out" / "votes.csv").exists()
    assert report["votes"] == {"file": None, "images": 0, "sources": {}}
    assert "annotator votes" not in format_report(report)
    assert "warning:" not in capsys.readouterr().err


def test_soft_targets_from_votes_csv(tmp_path):
    out, cache = tmp_path / "split", tmp_path / "cache"
    prepare(load_config(overrides={"active_classes": ",".join(ACTIVE)}), [make_source(tmp_path, True)], out)
    manifest = {r["path"]: r for r in read_csv(out / "manifest.csv")}
    load = lambda soft: load_split(out, "train", ACTIVE, 48, True, cache, soft_labels=soft, progress=False)
    data = load(True)
    assert data.soft.dtype == torch.float32 and data.soft.shape == (len(data), len(ACTIVE))
    for path, target, label in zip(data.paths, data.soft, data.labels):
        m = manifest[Path(path).relative_to(out).as_posix()]
        raw = FILES[(m["source_split"], m["label"], Path(m["original"]).name)]
        votes = np.array([canonical_votes(raw)[c] for c in ACTIVE], np.float32) if raw else np.zeros(len(ACTIVE))
        want = votes / votes.sum() if votes.sum() else np.eye(len(ACTIVE))[int(label)]
        assert np.allclose(target.numpy(), want), path
    first_path = next(p for p, m in manifest.items() if m["original"] == "train/happy/fer0000001.png")
    first = data.paths.index(str(out / first_path))
    assert np.allclose(data.soft[first].numpy(), [1 / 9, 6 / 9, 2 / 9])  # neutral's vote dropped

    # soft targets are never cached: the npz is reused, votes.csv is read again
    assert load(False).soft is None
    rows = read_csv(out / "votes.csv")
    for r in rows:
        r.update(angry="1", happy="1", sad="2")
    with open(out / "votes.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["path", *CANONICAL_CLASSES])
        writer.writeheader()
        writer.writerows(rows)
    assert np.allclose(load(True).soft[first].numpy(), [0.25, 0.25, 0.5])
    assert len(list(cache.glob("*.npz"))) == 1

    (out / "votes.csv").write_text("path,angry,happy,sad\ntrain/happy/x.png,1,many,0\n")
    with pytest.raises(EmorecError, match=r"votes.csv:2: vote counts must be numbers >= 0"):
        load(True)
    (out / "votes.csv").unlink()
    with pytest.raises(EmorecError, match="SOFT_LABELS is on but .*votes.csv does not exist"):
        load(True)


# --- the training step ------------------------------------------------------------------------

class Recorder(SoftTargetCrossEntropy):
    def __init__(self):
        super().__init__()
        self.targets = []

    def forward(self, logits, target):
        self.targets.append(target.clone())
        return super().forward(logits, target)


@pytest.mark.parametrize("soft", [True, False])
def test_train_one_epoch_uses_soft_targets(soft):
    """Folder label 1 everywhere, votes favour class 0, the model always says class 0 (lr 0):
    train accuracy counts the target's argmax, so it is 1 with votes and 0 without."""
    n, k = 12, 3
    soft_t = torch.tensor([[0.6, 0.3, 0.1]] * n)
    data = SplitData(torch.randint(0, 256, (n, 1, 32, 32), dtype=torch.uint8), torch.ones(n, dtype=torch.int64),
                     [f"{i}.png" for i in range(n)], ["a", "b", "c"], soft=soft_t if soft else None)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(32 * 32, k))
    torch.nn.init.zeros_(model[1].weight)
    with torch.no_grad():
        model[1].bias.copy_(torch.tensor([5.0, 0.0, 0.0]))
    cfg = Config(use_aug=False, batch_size=4, label_smoothing=0.3)
    kw = dict(transform=create_transform(**cfg.section("augment")), batch_size=4, label_smoothing=0.3,
              show_progress=False)
    loss = Recorder()
    idx = torch.randperm(n)
    stats = train_one_epoch(model, data, idx, torch.optim.SGD(model.parameters(), lr=0.0), loss, **kw)
    base = soft_t if soft else torch.nn.functional.one_hot(data.labels, k).float()
    assert torch.allclose(torch.cat(loss.targets), base[idx] * 0.7 + 0.1)
    assert stats["train_acc"] == (1.0 if soft else 0.0)

    loss.targets.clear()  # HARD_LABEL_WEIGHT: that share of the target is the folder label
    train_one_epoch(model, data, idx, torch.optim.SGD(model.parameters(), lr=0.0), loss, hard_label_weight=0.25,
                    **kw)
    onehot = torch.nn.functional.one_hot(data.labels, k).float()
    blended = soft_t * 0.75 + onehot * 0.25 if soft else onehot
    assert torch.allclose(torch.cat(loss.targets), blended[idx] * 0.7 + 0.1)

    loss.targets.clear()  # MixUp/CutMix blend soft targets like one-hot ones: still distributions
    train_one_epoch(model, data, idx, torch.optim.SGD(model.parameters(), lr=0.0), loss, seed=1,
                    mix={"mixup_alpha": 1.0, "cutmix_alpha": 1.0, "cutmix_prob": 0.5}, **kw)
    assert torch.allclose(torch.cat(loss.targets).sum(1), torch.ones(n))


# --- real FER+ --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def ferplus_split(ferplus_zip, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ferplus") / "split"
    prepare(Config(), [ferplus_zip], out)
    yield out
    shutil.rmtree(out)  # 18k files: not left for pytest's next temp-dir cleanup


def test_ferplus_votes_csv_matches_source(ferplus_split, ferplus_zip):
    manifest = {r["path"]: r for r in read_csv(ferplus_split / "manifest.csv")}
    rows = read_csv(ferplus_split / "votes.csv")
    assert len(rows) == len(manifest)  # every FER+ image has a vote row
    with zipfile.ZipFile(ferplus_zip) as zf:
        text = {s: zf.read(f"{s}_label_votes.csv").decode() for s in ("train", "val", "test")}
    raw = {s: {r[0]: [int(v) for v in r[2:]] for r in csv.reader(io.StringIO(t))} for s, t in text.items()}
    for r in rows[:: len(rows) // 25]:
        m = manifest[r["path"]]
        source_row = raw[m["source_split"]][Path(m["original"]).name]
        assert {c: int(r[c]) for c in CANONICAL_CLASSES} == canonical_votes(source_row), r["path"]


def test_ferplus_soft_targets_follow_the_majority(ferplus_split):
    data = load_split(ferplus_split, "train", DEFAULT_CLASSES, 48, True, max_per_class=60, soft_labels=True,
                      progress=False)
    assert torch.allclose(data.soft.sum(1), torch.ones(len(data)))
    agree = (data.soft.argmax(1) == data.labels).float().mean().item()
    assert agree >= 0.95  # FER+ folders are the majority vote; ties may break the other way
    assert (data.soft.max(1).values < 1).any()  # and the votes are really soft


def test_fit_with_soft_labels(ferplus_split, weights_dir, tmp_path, monkeypatch):
    import emorec.train.loop as loop

    seen = []

    def spy(model, data, *args, **kw):
        seen.append(data.soft)
        return train_one_epoch(model, data, *args, **kw)

    monkeypatch.setattr(loop, "train_one_epoch", spy)
    cfg = tiny_cfg(ferplus_split, tmp_path, weights_dir, soft_labels=True, img_size=32, batch_size=16,
                   max_train_per_class=12, max_eval_per_class=6, epochs_stage1=1, epochs_stage2=0)
    summary = loop.fit(cfg, show_progress=False)
    assert summary["epochs"] == 1 and np.isfinite(summary["best"])
    assert len(seen) == 1 and seen[0].shape == (12 * len(DEFAULT_CLASSES), len(DEFAULT_CLASSES))
    assert json.loads((tmp_path / "reports" / "training_logs.json").read_text())["config"]["soft_labels"] is True

    with pytest.raises(EmorecError, match="SOFT_LABELS"):
        loop.fit(cfg.with_overrides({"data_dir": str(tmp_path / "no_votes")}), show_progress=False)


def test_distill_writes_the_teachers_probabilities_as_votes(trained, tmp_path, capsys):
    from emorec.cli import main
    from emorec.data.votes import read_votes
    from emorec.evaluation.evaluate import load_model

    data = tmp_path / "split"
    shutil.copytree(trained.data_dir, data)
    teacher = Path(trained.models_dir) / "best_model.pt"
    args = ["data", "distill", "--model", str(teacher), "--set", f"data_dir={data}",
            "--set", f"cache_dir={tmp_path / 'cache'}"]
    assert main(args) == 0 and "training faces" in capsys.readouterr().out
    votes = read_votes(data, DEFAULT_CLASSES)
    train = load_split(data, "train", DEFAULT_CLASSES, trained.img_size, True, progress=False)
    assert sorted(votes) == sorted(Path(p).relative_to(data).as_posix() for p in train.paths)
    # the rows are the teacher's flip-averaged probabilities, in the file order
    want = load_model(teacher).probs(train.images.numpy(), 64, True)
    got = np.array([votes[Path(p).relative_to(data).as_posix()] for p in train.paths])
    assert np.allclose(got, want, atol=2e-6) and np.allclose(got.sum(1), 1, atol=1e-4)
    assert main(args) == 2 and "exists" in capsys.readouterr().err  # never overwrites silently
    # a student trains on them
    cfg = tiny_cfg(data, tmp_path / "student", trained.weights_dir, soft_labels=True, epochs_stage1=1,
                   epochs_stage2=0)
    from emorec.train.loop import fit

    assert fit(cfg, show_progress=False)["epochs"] == 1


def test_ferplus_votes_study_pairs_faces_by_pixels(tmp_path):
    """studies/ferplus_votes.py: each FER2013-style JPEG face gets the votes of the FER+ PNG with the
    same pixels, whatever the two files are called; a face FER+ lacks gets no row."""
    import subprocess
    import sys

    rng = np.random.default_rng(0)
    faces = [cv2.GaussianBlur(rng.integers(0, 256, (48, 48), dtype=np.uint8), (7, 7), 0) for _ in range(4)]
    votes = [[0, 8, 0, 2, 0, 0, 0, 0, 0, 0], [1, 0, 0, 9, 0, 0, 0, 0, 0, 0], [0, 0, 1, 0, 7, 0, 2, 0, 0, 0]]
    src = tmp_path / "ferplus.zip"
    with zipfile.ZipFile(src, "w") as zf:
        for i, (face, folder) in enumerate(zip(faces[:3], ["happy", "sad", "angry"])):
            zf.writestr(f"train/{folder}/fer{i:07d}.png", cv2.imencode(".png", face)[1].tobytes())
        zf.writestr("train_label_votes.csv", "".join(f"fer{i:07d}.png,\"(0, 0, 48, 48)\",{','.join(map(str, v))}\n"
                                                     for i, v in enumerate(votes)))
    split = tmp_path / "split"
    names = []
    for i, (face, folder) in enumerate(zip(faces, ["happy", "angry", "angry", "sad"])):  # FER2013's labels
        names.append(f"train/{folder}/Training_{90 - i}.jpg")
        (split / names[-1]).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(split / names[-1]), face, [cv2.IMWRITE_JPEG_QUALITY, 90])
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "studies/ferplus_votes.py", str(split), str(src)], cwd=root,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-500:]
    assert "FER+ votes for 3 of 4 faces" in run.stdout
    rows = {r["path"]: {c: int(r[c]) for c in CANONICAL_CLASSES} for r in read_csv(split / "votes.csv")}
    assert rows == {names[i]: canonical_votes(votes[i]) for i in range(3)}  # the fourth face: FER+ lacks it


def test_gpu_members_cuts_a_seven_class_teacher_out_of_the_ensemble_file(tmp_path):
    """studies/gpu_members.py: the members' heads (linear_1: 7 classes, linear_2: FER+'s 8 with
    contempt second) become one emorec model whose probabilities are their mean over the 7."""
    import subprocess
    import sys

    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from emorec.modelfile import META_KEY, ModelInfo, open_session, read_info, session_probs, softmax

    rng = np.random.default_rng(0)
    weights = {"w": rng.normal(size=(5, 1)), "w_1": rng.normal(size=(7, 1)), "w_2": rng.normal(size=(8, 1))}
    nodes = [helper.make_node("GlobalAveragePool", ["input"], ["pool"]),
             helper.make_node("Flatten", ["pool"], ["view"]),
             helper.make_node("Gemm", ["view", "w"], ["linear"], transB=1),
             helper.make_node("Gemm", ["view", "w_1"], ["linear_1"], transB=1),
             helper.make_node("Gemm", ["view", "w_2"], ["linear_2"], transB=1),
             helper.make_node("Identity", ["linear"], ["logits"])]
    graph = helper.make_graph(
        nodes, "ens", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 160, 160])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 5])],
        [numpy_helper.from_array(w.astype(np.float32), k) for k, w in weights.items()])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    helper.set_model_props(model, {META_KEY: ModelInfo(["angry", "fear", "happy", "sad", "surprise"], 160, True,
                                                       0.0, backbone="ensemble of 3").to_json()})
    src = tmp_path / "ens5.onnx"
    onnx.save(model, src)

    out = tmp_path / "g7+g8.onnx"
    root = Path(__file__).resolve().parents[1]
    run = subprocess.run([sys.executable, "studies/gpu_members.py", str(src), str(out), "--members", "g7", "g8"],
                         cwd=root, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    sess = open_session(out)
    info = read_info(sess, out)
    assert info.classes == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert info.img_size == 160 and info.grayscale and info.face_margin == 0.0  # fed as the ensemble
    faces = rng.integers(0, 256, size=(6, 1, 160, 160), dtype=np.uint8)
    mean = faces.reshape(6, -1).mean(axis=1, keepdims=True) / 255.0
    g7 = softmax(mean @ weights["w_1"].T)
    g8 = softmax((mean @ weights["w_2"].T)[:, [0, 2, 3, 4, 5, 6, 7]])
    np.testing.assert_allclose(session_probs(sess, faces), (g7 + g8) / 2, atol=1e-5)


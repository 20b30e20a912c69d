"""Training stage: config, losses, batch mixing, the two-stage loop, resume after a kill, DDP."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import cli_args, tiny_cfg
from emorec.cli import GLIBC_TUNING, main
from emorec.config import DEFAULT_CLASSES, Config, load_config
from emorec.errors import EmorecError
from emorec.data.dataset import epoch_indices, load_split
from emorec.train.losses import FocalLoss, SoftTargetCrossEntropy
from emorec.train.mix import mix_batch, one_hot

ENV = {**os.environ, "GLIBC_TUNABLES": GLIBC_TUNING}


# --- config ---------------------------------------------------------------------------

def test_config_layers_yaml_cli_and_profiles(tmp_path):
    y = tmp_path / "c.yaml"
    y.write_text("ACTIVE_CLASSES: [angry, disgust, fear, happy, neutral, sad, surprise]\nIMG_SIZE: 96\n"
                 "TRAIN_MODE: FULL_TRAIN\n")
    cfg = load_config(y, {"img_size": "128", "USE_FOCAL": "yes"})
    assert cfg.num_classes == 7 and cfg.img_size == 128 and cfg.use_focal is True
    assert cfg.epochs_stage2 == 40 and cfg.max_train_per_class is None  # from FULL_TRAIN
    fast = cfg.with_overrides({"train_mode": "fast_debug"})
    assert fast.max_train_per_class == 300 and fast.epochs_stage1 == 2
    assert load_config(None, {"train_mode": "FAST_DEBUG", "epochs_stage1": "7"}).epochs_stage1 == 7
    # A profile value written in the file outlives a TRAIN_MODE from the command line.
    y.write_text("TRAIN_MODE: FULL_TRAIN\nEPOCHS_STAGE2: 40\nLR_STAGE1: 0.002\n")
    dev = load_config(y, {"TRAIN_MODE": "DEV_TRAIN"})
    assert (dev.epochs_stage2, dev.lr_stage1, dev.epochs_stage1) == (40, 0.002, 3)
    cfg.save(tmp_path / "saved.yaml")
    assert load_config(tmp_path / "saved.yaml").to_dict() == cfg.to_dict()


@pytest.mark.parametrize("overrides, message", [
    ({"no_such_key": 1}, "unknown config key"),
    ({"img_size": "big"}, "IMG_SIZE"),
    ({"train_mode": "SLOW"}, "TRAIN_MODE"),
    ({"active_classes": "happy"}, "ACTIVE_CLASSES"),
    ({"lr_schedule": "step"}, "LR_SCHEDULE"),
    ({"device": "tpu"}, "DEVICE"),
    ({"soft_labels": True, "hard_label_weight": 1.5}, "HARD_LABEL_WEIGHT must be in"),
    ({"hard_label_weight": 0.5}, "needs SOFT_LABELS"),
    ({"det_min_side": 400}, "DET_MIN_SIDE must be in"),
    ({"aug_erase": 1.5}, "AUG_ERASE must be in \\[0, 1\\]"),
    ({"aug_noise": -0.1}, "AUG_NOISE must be in \\[0, 0.5\\]"),
    ({"source_size": -48}, "SOURCE_SIZE must be in"),
    ({"class_weight_power": 9}, "CLASS_WEIGHT_POWER must be in"),
])
def test_bad_config_is_one_clear_error(overrides, message):
    with pytest.raises(EmorecError, match=message):
        load_config(None, overrides)


def test_bad_yaml_and_missing_config_file(tmp_path):
    with pytest.raises(EmorecError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("img_size: [unclosed")
    with pytest.raises(EmorecError, match="not valid YAML"):
        load_config(bad)


# --- losses and mixing ----------------------------------------------------------------

def test_focal_loss_reduces_to_cross_entropy_and_downweights_easy_examples():
    logits = torch.tensor([[4.0, 0.0, 0.0], [0.2, 0.1, 0.0]])
    target = one_hot(torch.tensor([0, 0]), 3)
    ce = torch.nn.functional.cross_entropy(logits, torch.tensor([0, 0]))
    assert torch.isclose(FocalLoss(gamma=0.0)(logits, target), ce)
    assert torch.isclose(SoftTargetCrossEntropy()(logits, target), ce)
    easy, hard = logits[:1], logits[1:]
    ratio_focal = FocalLoss(2.0)(easy, target[:1]) / FocalLoss(2.0)(hard, target[1:])
    ratio_ce = SoftTargetCrossEntropy()(easy, target[:1]) / SoftTargetCrossEntropy()(hard, target[1:])
    assert ratio_focal < ratio_ce / 10
    alpha = torch.tensor([2.0, 1.0, 1.0])
    assert torch.isclose(FocalLoss(0.0, alpha)(logits, target), 2 * ce)


@pytest.mark.parametrize("cutmix_prob", [0.0, 1.0])
def test_mixup_and_cutmix_keep_targets_consistent_with_pixels(cutmix_prob):
    x = torch.cat([torch.zeros(4, 1, 32, 32), torch.ones(4, 1, 32, 32)])
    t = one_hot(torch.tensor([0] * 4 + [1] * 4), 2)
    mx, mt = mix_batch(x, t, 0.4, 1.0, cutmix_prob, np.random.default_rng(3))
    assert torch.allclose(mt.sum(1), torch.ones(8))
    # Share of "ones" pixels equals the target weight of class 1, for MixUp and CutMix alike.
    assert torch.allclose(mx.mean(dim=(1, 2, 3)), mt[:, 1], atol=1e-6)
    assert not torch.equal(mx, x)


def test_balanced_epoch_indices_even_out_classes_and_split_across_ranks():
    labels = torch.tensor([0] * 900 + [1] * 100)
    idx = epoch_indices(labels, True, epoch=0, seed=1)
    share = (labels[idx] == 1).float().mean().item()
    assert 0.4 < share < 0.6
    plain = epoch_indices(labels, False, epoch=0, seed=1)
    assert sorted(plain.tolist()) == list(range(1000))
    r0 = epoch_indices(labels, False, 0, 1, rank=0, world=2)
    r1 = epoch_indices(labels, False, 0, 1, rank=1, world=2)
    assert len(r0) == len(r1) == 500 and not set(r0.tolist()) & set(r1.tolist())


def test_load_split_skips_bad_images_and_caches(split_dir, tmp_path):
    import shutil

    data = tmp_path / "d"
    shutil.copytree(split_dir / "val", data / "val")
    (data / "val" / "happy" / "broken.jpg").write_bytes(b"not a jpeg")
    a = load_split(data, "val", DEFAULT_CLASSES, 64, True, tmp_path / "cache", progress=False)
    assert a.skipped == 1 and len(a) == 150 and a.images.shape == (150, 1, 64, 64)
    b = load_split(data, "val", DEFAULT_CLASSES, 64, True, tmp_path / "cache", progress=False)
    assert torch.equal(a.images, b.images) and len(list((tmp_path / "cache").glob("*.npz"))) == 1
    with pytest.raises(EmorecError, match="no 'train' split"):
        load_split(data, "train", DEFAULT_CLASSES, 64, True)
    # Same files under a class list with a class that has no folder: labels index the new list.
    wider = ["angry", "disgust", "fear", "happy", "sad", "surprise"]
    c = load_split(data, "val", wider, 64, True, tmp_path / "cache", progress=False)
    assert torch.equal(a.images, c.images)
    assert [wider[i] for i in c.labels] == [DEFAULT_CLASSES[i] for i in a.labels]


# --- the loop -------------------------------------------------------------------------

def test_two_stage_training_writes_checkpoint_logs_and_learns(trained):
    models, reports = Path(trained.models_dir), Path(trained.reports_dir)
    assert (models / "best_model.pt").is_file() and (models / "last.pt").is_file()
    assert (models / "config.yaml").is_file() and (reports / "training_curves.png").stat().st_size > 5000
    log = json.loads((reports / "training_logs.json").read_text())
    hist = log["history"]
    assert [h["stage"] for h in hist] == [1, 1, 2]
    assert log["config"]["img_size"] == 64
    assert log["device"].startswith("cpu") and log["commit"]  # where and from which code it ran
    assert max(h["val_acc"] for h in hist) > 0.3  # 5 classes: chance is 0.2
    ckpt = torch.load(models / "best_model.pt", weights_only=False)
    assert ckpt["classes"] == list(DEFAULT_CLASSES) and ckpt["config"]["backbone"] == "mobilenet_v2"


def test_max_minutes_stops_after_the_epoch_that_passes_it(split_dir, weights_dir, tmp_path, monkeypatch):
    from emorec.train.loop import fit

    monkeypatch.setenv("EMOREC_COMMIT", "abc1234")  # a copy of the tree without .git states its commit
    cfg = tiny_cfg(split_dir, tmp_path, weights_dir, epochs_stage1=3, epochs_stage2=3, max_minutes=1e-6,
                   max_train_per_class=20)
    summary = fit(cfg, show_progress=False)
    log = json.loads((Path(cfg.reports_dir) / "training_logs.json").read_text())
    assert summary["epochs"] == 1 and len(log["history"]) == 1 and log["commit"] == "abc1234"
    assert (Path(cfg.models_dir) / "best_model.pt").is_file()


def test_cuda_device_without_a_gpu_is_one_clear_error():
    from emorec.train.loop import resolve_device

    assert resolve_device("cpu").type == "cpu"
    if torch.cuda.is_available():
        assert resolve_device("auto").type == "cuda"
    else:
        assert resolve_device("auto").type == "cpu"
        with pytest.raises(EmorecError, match="no CUDA GPU"):
            resolve_device("cuda")


def test_augmentation_keeps_the_batch_on_its_device_and_is_seeded():
    from emorec.train.augment import create_transform

    transform = create_transform(**Config().section("augment"))
    x = torch.randint(0, 256, (8, 1, 32, 32), dtype=torch.uint8)
    a = transform(x, torch.Generator().manual_seed(0))
    b = transform(x, torch.Generator().manual_seed(0))
    assert a.device == x.device and a.dtype == torch.float32 and torch.equal(a, b)
    assert 0 <= float(a.min()) and float(a.max()) <= 1 and not torch.equal(a, x.float() / 255)


def test_noise_and_erasing_simulate_sensors_and_occlusion():
    from emorec.train.augment import erase, noise

    x = torch.full((64, 1, 40, 40), 0.5)
    noisy = noise(x, 0.1, torch.Generator().manual_seed(0))
    per_image = (noisy - x).flatten(1).std(dim=1)
    assert 0 <= float(noisy.min()) and float(noisy.max()) <= 1
    assert float(per_image.min()) < 0.03 and 0.07 < float(per_image.max()) < 0.12  # std drawn in [0, 0.1]

    erased = erase(x, 1.0, torch.Generator().manual_seed(0))
    changed = (erased != x).flatten(1).float().mean(dim=1)
    assert 0.005 < float(changed.min()) and float(changed.max()) <= 0.3  # 2-25 % of the area, pixel-rounded
    for img, orig in zip(erased[:8], x[:8]):  # one axis-aligned rectangle of one gray
        ys, xs = torch.nonzero(img[0] != orig[0], as_tuple=True)
        box = img[0, ys.min():ys.max() + 1, xs.min():xs.max() + 1]
        assert len(ys) == box.numel() and torch.unique(box).numel() == 1
    assert torch.equal(erase(x, 0.0, torch.Generator().manual_seed(0)), x)


def test_perspective_turns_the_face_and_jpeg_compresses_it():
    from emorec.train.augment import jpeg, perspective

    size = 48
    x = torch.zeros(16, 1, size, size)
    x[:, :, 8:40, 8:40] = 1.0  # a centred square
    warped = perspective(x, torch.Generator().manual_seed(0), strength=0.3)
    assert torch.equal(warped, perspective(x, torch.Generator().manual_seed(0), strength=0.3))
    # a turned square is a trapezoid: its left and right edges differ in height
    left = (warped[:, 0, :, 12] > 0.5).sum(dim=1).float()
    right = (warped[:, 0, :, 35] > 0.5).sum(dim=1).float()
    assert float((left - right).abs().max()) >= 4
    assert torch.allclose(perspective(x, torch.Generator().manual_seed(0), strength=0.0), x, atol=1e-5)

    g = torch.Generator().manual_seed(0)
    noisy = torch.rand(32, 1, size, size, generator=g)
    out = jpeg(noisy, 0.5, torch.Generator().manual_seed(1))
    changed = (out - noisy).flatten(1).abs().mean(dim=1) > 0.02
    assert 4 <= int(changed.sum()) <= 28  # about half, the others untouched
    assert torch.equal(out[~changed], noisy[~changed])
    assert out.dtype == noisy.dtype and 0 <= float(out.min()) and float(out.max()) <= 1


def test_stage_one_freezes_backbone_and_stage_two_unfreezes_last_blocks(trained):
    from emorec.models import create_model, set_trainable

    model = create_model("mobilenet_v2", num_classes=5, in_chans=1)
    set_trainable(model, 0)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"classifier.1.weight", "classifier.1.bias"}
    set_trainable(model, trained.finetune_layers)
    assert any(n.startswith("features.18") for n, p in model.named_parameters() if p.requires_grad)
    assert not any(n.startswith("features.0.") for n, p in model.named_parameters() if p.requires_grad)


def test_init_from_keeps_a_matching_head_and_only_the_backbone_otherwise(trained, tmp_path):
    """INIT_FROM: fine-tune one label set from a model trained on another (no ImageNet files needed)."""
    from emorec.models import create_model
    from emorec.train.loop import fit, init_weights

    src = torch.load(Path(trained.models_dir) / "best_model.pt", weights_only=False)["model"]
    same = tiny_cfg(trained.data_dir, tmp_path, trained.weights_dir, init_from=str(Path(trained.models_dir) / "best_model.pt"))
    model = create_model("mobilenet_v2", num_classes=5, in_chans=1, pretrained=False)
    assert "all weights" in init_weights(model, same)
    assert all(torch.equal(v, src[k]) for k, v in model.state_dict().items())

    other = Config.from_dict({**same.to_dict(), "active_classes": ["happy", "sad", "angry"], "weights_dir": None,
                              "models_dir": str(tmp_path / "m3"), "reports_dir": str(tmp_path / "r3"),
                              "epochs_stage1": 1, "epochs_stage2": 0})
    model = create_model("mobilenet_v2", num_classes=3, in_chans=1, pretrained=False)
    assert "backbone only" in init_weights(model, other)
    state = model.state_dict()
    assert torch.equal(state["features.18.0.weight"], src["features.18.0.weight"])
    assert state["classifier.1.weight"].shape == (3, 1280)
    fit(other, show_progress=False)  # trains without ImageNet weights: INIT_FROM replaces them
    assert torch.load(tmp_path / "m3" / "best_model.pt", weights_only=False)["classes"] == ["happy", "sad", "angry"]

    rows = Config.from_dict({**other.to_dict(), "init_head_rows": True})
    model = create_model("mobilenet_v2", num_classes=3, in_chans=1, pretrained=False)
    assert "head's rows of happy, sad, angry" in init_weights(model, rows)
    order = [same.active_classes.index(c) for c in ("happy", "sad", "angry")]
    assert torch.equal(model.state_dict()["classifier.1.weight"], src["classifier.1.weight"][order])
    assert torch.equal(model.state_dict()["classifier.1.bias"], src["classifier.1.bias"][order])
    with pytest.raises(EmorecError, match="INIT_HEAD_ROWS.*has no class calm"):
        init_weights(create_model("mobilenet_v2", num_classes=2, in_chans=1, pretrained=False),
                     Config.from_dict({**rows.to_dict(), "active_classes": ["happy", "calm"]}))

    wrong = Config.from_dict({**same.to_dict(), "grayscale": False})
    with pytest.raises(EmorecError, match="cannot initialise"):
        init_weights(create_model("mobilenet_v2", num_classes=5, in_chans=3, pretrained=False), wrong)


@pytest.mark.slow
def test_killed_run_resumes_where_it_stopped(split_dir, weights_dir, tmp_path):
    cfg = tiny_cfg(split_dir, tmp_path, weights_dir, epochs_stage1=2, epochs_stage2=2)
    cmd = [sys.executable, "-m", "emorec", "train", "--profile", "FAST_DEBUG", "--no-progress", *cli_args(cfg)]
    proc = subprocess.Popen(cmd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    last = Path(cfg.models_dir) / "last.pt"
    deadline = time.time() + 240
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert last.exists(), proc.stdout.read() if proc.poll() is not None else "no checkpoint in time"
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    done = len(torch.load(last, weights_only=False)["history"])
    assert 1 <= done < 4
    out = subprocess.run(cmd + ["--resume"], env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert "resuming from" in out.stdout
    hist = json.loads((Path(cfg.reports_dir) / "training_logs.json").read_text())["history"]
    assert [(h["stage"], h["epoch"]) for h in hist] == [(1, 1), (1, 2), (2, 1), (2, 2)]


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(split_dir, weights_dir, tmp_path):
    cfg = tiny_cfg(split_dir, tmp_path, weights_dir, epochs_stage1=1, epochs_stage2=1)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=2", "--rdzv-backend=c10d",
           "--rdzv-endpoint=127.0.0.1:0", "-m", "emorec", "train", "--no-progress", "--profile", "FAST_DEBUG",
           *cli_args(cfg)]
    env = {**ENV, "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    hist = json.loads((Path(cfg.reports_dir) / "training_logs.json").read_text())["history"]
    assert [h["stage"] for h in hist] == [1, 2]
    assert out.stdout.count("done in") == 1  # rank 0 alone reports and writes
    assert (Path(cfg.models_dir) / "best_model.pt").is_file()
    # MAX_MINUTES under DDP: every rank stops after the same epoch, none is left waiting.
    out = subprocess.run(cmd + ["--set", "MAX_MINUTES=1e-6", "--set", f"MODELS_DIR={tmp_path / 'timed'}"],
                         env=env, capture_output=True, text=True, timeout=400)
    assert out.returncode == 0 and "stopped: MAX_MINUTES" in out.stdout, out.stdout[-2000:] + out.stderr[-2000:]
    assert len(torch.load(tmp_path / "timed" / "last.pt", weights_only=False)["history"]) == 1


def test_train_command_reports_missing_data_in_one_line(tmp_path, capsys, weights_dir):
    from emorec.cli import main

    rc = main(["train", "--set", f"data_dir={tmp_path / 'nothing'}", "--set", f"models_dir={tmp_path}",
               "--set", f"weights_dir={weights_dir}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and err.count("\n") == 0 and "emorec data prepare" in err
    rc = main(["train", "--set", "backbone=resnet9000", "--set", f"data_dir={tmp_path}"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and "unknown model 'resnet9000'" in err and err.count("\n") == 0


def test_disk_full_while_saving_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    import shutil

    import torch

    from emorec.models import checkpoint as ck

    path = tmp_path / "last.pt"
    ck.save_atomic({"model": {"w": torch.ones(2)}}, path)
    before = path.read_bytes()

    def full_disk(obj, f):  # what torch raises when the disk fills mid-write, after a partial file
        Path(f).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 123 vs 456")

    monkeypatch.setattr(torch, "save", full_disk)
    monkeypatch.setattr(shutil, "disk_usage", lambda p: types.SimpleNamespace(total=10, used=10, free=0))
    with pytest.raises(EmorecError) as e:
        ck.save_atomic({"model": {}}, path)
    assert str(e.value) == f"cannot write checkpoint {path} (disk full: 0 MB free on {tmp_path}); the previous file is kept"
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.mark.parametrize("content, words", [
    ({"model": {}, "config": {}}, "'classes' is missing"),
    ({"model": {"w": 1}, "config": {}, "classes": ["a", "b"]}, "not a state dict of tensors"),
    ([1, 2], "no model/config inside"),
])
def test_checkpoints_of_the_wrong_shape_are_one_line(tmp_path, content, words):
    import torch

    from emorec.models.checkpoint import load_checkpoint

    torch.save(content, tmp_path / "x.pt")
    with pytest.raises(EmorecError, match=words):
        load_checkpoint(tmp_path / "x.pt")


def test_a_checkpoint_cannot_run_code(tmp_path, capsys):
    """A crafted .pt whose unpickling would run a command: refused by every command that loads one."""
    import torch

    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "evil.pt"
    torch.save({"model": {}, "config": {}, "classes": ["a", "b"], "x": Payload()}, bad)
    runs = [["evaluate", "--model", str(bad)], ["export", "--checkpoint", str(bad), "--out", str(tmp_path / "o.onnx")],
            ["train", "--set", f"INIT_FROM={bad}", "--set", f"MODELS_DIR={tmp_path / 'm'}",
             "--set", f"DATA_DIR={tmp_path / 'none'}"]]
    for args in runs:
        assert main(args) == 2
        err = capsys.readouterr().err
        assert "refused, as loading could run code" in err and len(err.splitlines()) == 1, err
    (tmp_path / "m").mkdir(exist_ok=True)  # the failed run above held (and made) the folder
    (tmp_path / "m" / "last.pt").write_bytes(bad.read_bytes())
    assert main(["train", "--resume", "--set", f"MODELS_DIR={tmp_path / 'm'}"]) == 2
    assert "refused" in capsys.readouterr().err
    assert not marker.exists()


@pytest.mark.parametrize("key, value, words", [
    ("BATCH_SIZE", "0", "BATCH_SIZE must be in"), ("LR_STAGE1", "nan", "finite"), ("DROPOUT", "5", "DROPOUT"),
    ("IMG_SIZE", "100000", "IMG_SIZE must be in"), ("MONITOR", "foo", "MONITOR must be one of"),
])
def test_out_of_range_config_is_refused_when_built(key, value, words):
    with pytest.raises(EmorecError, match=words):
        load_config(None, {key: value})


def test_training_never_writes_into_the_shipped_models(capsys):
    from emorec.config import SHIPPED_MODELS_DIR

    assert Config().models_dir == Path("runs/default/models")  # a run folder by default
    assert main(["train", "--set", f"MODELS_DIR={SHIPPED_MODELS_DIR}"]) == 2
    assert "folder of the shipped models" in capsys.readouterr().err


def test_class_weight_power_softens_inverse_frequency():
    from emorec.data.dataset import class_weights

    counts = np.array([7000, 350, 3500])
    full, root = class_weights(counts).numpy(), class_weights(counts, 0.5).numpy()
    assert full.mean() == pytest.approx(1) and root.mean() == pytest.approx(1)
    assert full[1] / full[0] == pytest.approx(20) and root[1] / root[0] == pytest.approx(20 ** 0.5)
    assert np.allclose(class_weights(counts, 0.0).numpy(), 1.0)

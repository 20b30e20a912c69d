"""``fit(cfg)``: two-stage transfer learning with checkpoints, resume and DDP.

Stage 1 trains the head on a frozen ImageNet backbone; stage 2 unfreezes the last
``finetune_layers`` backbone blocks at a lower learning rate. After every epoch the
full state goes to ``models/last.pt`` (resume point) and, when the monitored validation
metric improves, the weights to ``models/best_model.pt``. Under ``torchrun`` each rank
trains on its stride of the same seeded order; rank 0 writes files.
"""
from __future__ import annotations

import json
import os
import random
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from emorec.config import SHIPPED_MODELS_DIR, Config, class_rows
from emorec.data.dataset import class_weights, epoch_indices, load_split, sample_weights
from emorec.data.sources import source_weights
from emorec.errors import EmorecError
from emorec.files import write_text
from emorec.models import create_model, set_trainable
from emorec.models.checkpoint import load_checkpoint, save_atomic
from emorec.models.weights import load_state
from emorec.provenance import git_commit
from emorec.train.augment import create_transform
from emorec.train.engine import evaluate, train_one_epoch
from emorec.train.losses import build_loss

BEST = "best_model.pt"
LAST = "last.pt"


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@contextmanager
def distributed():
    """(rank, world) from torchrun's environment; a no-op for a plain process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    try:
        yield (dist.get_rank() if world > 1 else 0), world
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _barrier(world: int) -> None:
    if world > 1:
        dist.barrier()


def _any_rank(flag: bool, world: int) -> bool:
    """True on every rank when it is true on one: a stop decided by each rank's own clock
    must be taken by all, or the others wait forever in the next gradient all-reduce."""
    if world == 1:
        return flag
    t = torch.tensor([int(flag)])
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _stages(cfg: Config) -> list[dict]:
    return [
        {"stage": 1, "epochs": cfg.epochs_stage1, "lr": cfg.lr_stage1, "trainable": 0, "mix": cfg.use_mixup_stage1},
        {"stage": 2, "epochs": cfg.epochs_stage2, "lr": cfg.lr_stage2, "trainable": cfg.finetune_layers,
         "mix": cfg.use_mixup_stage2},
    ]


def _scheduler(cfg: Config, optimizer, epochs: int):
    if cfg.lr_schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(epochs, 1), eta_min=optimizer.param_groups[0]["lr"] * 0.01)
    return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="min" if cfg.monitor == "val_loss" else "max",
                                                      factor=0.3, patience=max(1, cfg.patience // 2))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise EmorecError(f"DEVICE {name}: torch sees no CUDA GPU (CPU-only torch?); use DEVICE=cpu")
    return torch.device(name)


def _cpu_state(model: torch.nn.Module) -> dict:
    """Weights on the CPU, so a checkpoint loads anywhere."""
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}


def _score(entry: dict, monitor: str) -> float:
    return -entry["val_loss"] if monitor == "val_loss" else entry[monitor]


def fit(cfg: Config, resume: bool = False, show_progress: bool = True) -> dict:
    """Train and return a summary; files go to ``cfg.models_dir`` and ``cfg.reports_dir``."""
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    models_dir, reports_dir = Path(cfg.models_dir), Path(cfg.reports_dir)
    if models_dir.expanduser().absolute() == SHIPPED_MODELS_DIR:
        raise EmorecError(f"MODELS_DIR {models_dir} is the folder of the shipped models; "
                          "train into a run folder (e.g. runs/<name>/models)")
    with distributed() as (rank, world), run_lock(models_dir, rank == 0):
        main = rank == 0
        say = print if main else (lambda *a, **k: None)
        seed_everything(cfg.seed)

        state = None
        if resume:
            state = load_checkpoint(models_dir / LAST, resume=True)
            if state["classes"] != cfg.active_classes or state["config"].get("backbone") != cfg.backbone:
                raise EmorecError(f"{models_dir / LAST} was trained for other classes/backbone; start without --resume")
            cfg = Config.from_dict(state["config"])  # the run continues with its own settings
            say(f"resuming from {models_dir / LAST}: stage {state['stage']}, epoch {state['epoch'] + 1}")

        # INIT_FROM replaces the ImageNet weights, so they are not needed then.
        model = create_model(cfg.backbone, num_classes=cfg.num_classes, pretrained=not (cfg.init_from or state),
                             in_chans=cfg.in_chans, drop_rate=cfg.dropout, weights_dir=cfg.weights_dir)
        if cfg.init_from and not state:
            say(init_weights(model, cfg))
        device = resolve_device(cfg.device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        model = model.to(device, memory_format=torch.channels_last)
        where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"

        # Rank 0 decodes and caches; the others then read the cache.
        load = lambda split, cap: load_split(cfg.data_dir, split, cfg.active_classes, cfg.img_size, cfg.grayscale,
                                             cfg.cache_dir, cap, cfg.seed, progress=main and show_progress,
                                             soft_labels=cfg.soft_labels and split == "train")
        if not main:
            _barrier(world)
        train_data, val_data = load("train", cfg.max_train_per_class), load("val", cfg.max_eval_per_class)
        if main:
            _barrier(world)
        counts = train_data.counts()
        say(f"train {len(train_data)} images {dict(zip(cfg.active_classes, counts.tolist()))}, val {len(val_data)}, "
            f"device {device}")
        labels_cpu = train_data.labels  # epoch orders are drawn on the CPU, device-independent
        draw_weights = sample_weights(cfg.data_dir, train_data.paths, source_weights(cfg.sources))
        # The whole decoded train split fits on a GPU; batches are then indexed there.
        train_data.images, train_data.labels = train_data.images.to(device), train_data.labels.to(device)
        if train_data.soft is not None:
            train_data.soft = train_data.soft.to(device)
        if (counts == 0).any():
            missing = [c for c, n in zip(cfg.active_classes, counts) if n == 0]
            raise EmorecError(f"no training images for class(es) {', '.join(missing)} in {cfg.data_dir}/train")

        # Balanced sampling already makes classes equally frequent: weights from the
        # *sampled* distribution are then 1, so the two never double-correct.
        weighted = cfg.use_class_weights and not cfg.balanced_sampling
        weights = class_weights(counts, cfg.class_weight_power) if weighted else None
        loss_fn = build_loss(cfg.use_focal, cfg.focal_gamma, weights)
        transform = create_transform(**cfg.section("augment"))
        mix = {k: v for k, v in cfg.section("mix").items() if not k.startswith("use_")}

        history: list[dict] = state["history"] if state else []
        best = state["best"] if state else -float("inf")
        start_stage, start_epoch = (state["stage"], state["epoch"] + 1) if state else (1, 0)
        if state:
            _restore(f"{models_dir / LAST}", lambda: model.load_state_dict(state["model"]))
        commit = git_commit()  # the code this run started from
        t0 = time.perf_counter()
        out_of_time = lambda: bool(cfg.max_minutes) and time.perf_counter() - t0 > cfg.max_minutes * 60
        timed_out = False
        for spec in _stages(cfg):
            if spec["stage"] < start_stage or spec["epochs"] <= 0:
                continue
            set_trainable(model, spec["trainable"])
            params = [p for p in model.parameters() if p.requires_grad]
            optimizer = torch.optim.AdamW(params, lr=spec["lr"], weight_decay=cfg.weight_decay)
            scheduler = _scheduler(cfg, optimizer, spec["epochs"])
            first = start_epoch if spec["stage"] == start_stage else 0
            bad = 0
            if state and spec["stage"] == start_stage:
                _restore(f"{models_dir / LAST}", lambda: (optimizer.load_state_dict(state["optimizer"]),
                                                          scheduler.load_state_dict(state["scheduler"])))
                bad = state["bad_epochs"]
            net = None
            say(f"stage {spec['stage']}: {spec['epochs']} epoch(s), lr {spec['lr']:g}, "
                f"trainable params {sum(p.numel() for p in params):,}")
            for epoch in range(first, spec["epochs"]):
                if history and _any_rank(out_of_time(), world):  # after at least one epoch
                    timed_out = True
                    break
                if bad >= cfg.patience:
                    break
                # Wrapped only when an epoch runs: a stop between stages leaves no unused DDP to tear down.
                if net is None:
                    net = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
                idx = epoch_indices(labels_cpu, cfg.balanced_sampling, len(history), cfg.seed, rank, world,
                                    draw_weights)
                tr = train_one_epoch(net, train_data, idx, optimizer, loss_fn, transform=transform,
                                     batch_size=cfg.batch_size, hard_label_weight=cfg.hard_label_weight,
                                     label_smoothing=cfg.label_smoothing, mix=mix if spec["mix"] else None,
                                     epoch=len(history) + 1, seed=cfg.seed * 1000 + rank * 100_000 + len(history),
                                     show_progress=main and show_progress)
                va = evaluate(model, val_data, tta_flip=False)
                entry = {"stage": spec["stage"], "epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], **tr,
                         "train_images_per_s": tr["train_images_per_s"] * world,
                         "val_loss": va["loss"], "val_acc": va["acc"], "val_macro_f1": va["macro_f1"]}
                if cfg.lr_schedule == "cosine":
                    scheduler.step()
                else:
                    scheduler.step(entry["val_loss"] if cfg.monitor == "val_loss" else entry[cfg.monitor])
                history.append(entry)
                improved = _score(entry, cfg.monitor) > best
                if improved:
                    best, bad = _score(entry, cfg.monitor), 0
                else:
                    bad += 1
                say(f"[stage {spec['stage']} epoch {epoch + 1}/{spec['epochs']}] loss {tr['train_loss']:.3f} "
                    f"acc {tr['train_acc']:.3f} | val loss {va['loss']:.3f} acc {va['acc']:.3f} "
                    f"macro-F1 {va['macro_f1']:.3f} | {entry['train_images_per_s']:.0f} img/s"
                    + ("  * best" if improved else ""))
                if main:
                    meta = {"config": cfg.to_dict(), "classes": cfg.active_classes, "commit": commit}
                    if improved:
                        save_atomic({"model": _cpu_state(model), **meta, "val": {k: entry[k] for k in
                                     ("val_loss", "val_acc", "val_macro_f1")}, "stage": spec["stage"],
                                     "epoch": epoch}, models_dir / BEST)
                    save_atomic({"model": _cpu_state(model), **meta, "optimizer": optimizer.state_dict(),
                                 "scheduler": scheduler.state_dict(), "stage": spec["stage"], "epoch": epoch,
                                 "history": history, "best": best, "bad_epochs": bad}, models_dir / LAST)
                    _write_logs(cfg, history, reports_dir, commit, where)
                _barrier(world)
            start_epoch = 0
        if not history:
            raise EmorecError("nothing to train: both stages have 0 epochs")
        summary = {"epochs": len(history), "best": best, "monitor": cfg.monitor, "seconds": time.perf_counter() - t0,
                   "checkpoint": str(models_dir / BEST), "device": where}
        if timed_out:
            say(f"stopped: MAX_MINUTES {cfg.max_minutes:g} reached")
        if main:
            cfg.save(models_dir / "config.yaml")
            say(f"done in {summary['seconds']:.0f} s; best {cfg.monitor} {best:.4f}; checkpoint {models_dir / BEST}")
        # Ranks tear down together: rank 1 once aborted in its teardown while rank 0 still wrote files.
        _barrier(world)
        return summary


@contextmanager
def run_lock(models_dir: Path, take: bool = True):
    """Hold MODELS_DIR for this run: a second training into the same folder stops with one line
    instead of writing its weights over this one's (the lock goes with the process)."""
    if not take:
        yield
        return
    import fcntl

    try:
        Path(models_dir).mkdir(parents=True, exist_ok=True)
        fd = os.open(Path(models_dir) / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        raise EmorecError(f"cannot use MODELS_DIR {models_dir}: {e.strerror or e}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise EmorecError(f"MODELS_DIR {models_dir} is in use by another training (pid {holder}); "
                              "wait for it or train into another folder (--set MODELS_DIR=...)") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def _restore(path: str, load) -> None:
    """Run a resume's ``load_state_dict`` step; a checkpoint of another shape is one line."""
    try:
        load()
    except (KeyError, ValueError, RuntimeError, TypeError, IndexError) as e:
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        raise EmorecError(f"{path} cannot be resumed: its saved state does not fit this run ({first[:200]}); "
                          "start without --resume") from None


def init_weights(model: torch.nn.Module, cfg: Config) -> str:
    """Load ``cfg.init_from`` into ``model``: all weights when its classes match, else the backbone."""
    ckpt = load_checkpoint(Path(cfg.init_from))
    src = Config.from_dict(ckpt["config"])
    if src.backbone != cfg.backbone or src.grayscale != cfg.grayscale:
        raise EmorecError(f"INIT_FROM {cfg.init_from}: a {src.backbone} checkpoint (grayscale={src.grayscale}) "
                          f"cannot initialise {cfg.backbone} (grayscale={cfg.grayscale})")
    same_classes = ckpt["classes"] == cfg.active_classes
    load_state(model, ckpt["model"], f"INIT_FROM {cfg.init_from}", drop_head=not same_classes)
    kept = "all weights" if same_classes else f"backbone only (classes {ckpt['classes']} -> {cfg.active_classes})"
    if not same_classes and cfg.init_head_rows:
        rows = class_rows(ckpt["classes"], cfg.active_classes, f"INIT_HEAD_ROWS: INIT_FROM {cfg.init_from}")
        name = model.pretrained_cfg["classifier"]
        with torch.no_grad():
            for part, param in model.get_classifier().named_parameters():
                param.copy_(ckpt["model"][f"{name}.{part}"][rows])
        kept = f"backbone and the head's rows of {', '.join(cfg.active_classes)}"
    return f"initialised from {cfg.init_from}: {kept}"


def _write_logs(cfg: Config, history: list[dict], reports_dir: Path, commit: str, device: str) -> None:
    from emorec.plots import training_curves_png

    write_text(reports_dir / "training_logs.json",
               json.dumps({"config": cfg.to_dict(), "commit": commit, "device": device, "history": history}, indent=2))
    training_curves_png(history, reports_dir / "training_curves.png")

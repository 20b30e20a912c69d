"""One epoch of training, one pass of evaluation (torchvision-references style)."""
from __future__ import annotations

import time
from contextlib import nullcontext

import numpy as np
import torch
from tqdm import tqdm

from emorec.data.dataset import SplitData
from emorec.models.predict import predict_probs
from emorec.train.mix import mix_batch, one_hot, smooth


def autocast(device: torch.device):
    """bf16 autocast on a GPU (no loss scaling needed, unlike fp16); plain fp32 on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def train_one_epoch(model, data: SplitData, indices: torch.Tensor, optimizer, loss_fn, *, transform,
                    batch_size: int, hard_label_weight: float = 0.0, label_smoothing: float = 0.0,
                    mix: dict | None = None, epoch: int = 1, seed: int = 0, show_progress: bool = True) -> dict:
    """One pass over ``indices``: ``transform`` (``augment.create_transform``) per batch, targets
    blended and smoothed, ``mix`` (``mix_batch``'s keywords) when MixUp/CutMix is on."""
    model.train()
    device = data.images.device
    g = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    total_loss, seen = torch.zeros((), device=device), 0
    correct = torch.zeros((), dtype=torch.long, device=device)  # summed on the device: no sync per batch
    start = time.perf_counter()
    batches = indices.split(batch_size)
    bar = tqdm(batches, desc=f"epoch {epoch}", unit="batch", disable=not show_progress, leave=False)
    for idx in bar:
        if len(idx) < 2:  # BatchNorm cannot train on a single sample
            continue
        x = transform(data.images[idx], g).contiguous(memory_format=torch.channels_last)
        y = data.labels[idx]
        # annotator vote shares or a teacher's probabilities (SOFT_LABELS), blended with the
        # folder label by HARD_LABEL_WEIGHT, or the folder label alone; smoothed alike
        target = one_hot(y, len(data.classes))
        if data.soft is not None:
            target = torch.lerp(data.soft[idx], target, hard_label_weight)
        target = smooth(target, label_smoothing)
        if mix is not None:
            x, target = mix_batch(x, target, rng=rng, **mix)
        with autocast(device):
            logits = model(x)
        loss = loss_fn(logits.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total_loss += loss.detach() * len(idx)
        correct += (logits.argmax(1) == target.argmax(1)).sum()
        seen += len(idx)
        if show_progress:
            bar.set_postfix(loss=f"{total_loss.item() / seen:.3f}")
    elapsed = time.perf_counter() - start
    return {"train_loss": total_loss.item() / max(seen, 1), "train_acc": correct.item() / max(seen, 1),
            "train_images_per_s": seen / elapsed if elapsed else 0.0, "train_seconds": elapsed}


def evaluate(model, data: SplitData, batch_size: int = 256, tta_flip: bool = False) -> dict:
    from sklearn.metrics import f1_score

    probs = predict_probs(model, data.images, batch_size, tta_flip)
    y = data.labels.numpy()
    pred = probs.argmax(1)
    loss = float(-np.log(np.clip(probs[np.arange(len(y)), y], 1e-12, None)).mean())
    return {"loss": loss, "acc": float((pred == y).mean()),
            "macro_f1": float(f1_score(y, pred, average="macro", labels=range(len(data.classes)), zero_division=0)),
            "probs": probs, "labels": y}

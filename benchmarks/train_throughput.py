"""Training throughput (images/s) per backbone and stage on this machine's CPU.

    GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4294967296:glibc.malloc.trim_threshold=4294967296 \
        python benchmarks/train_throughput.py [--img-size 112] [--batch 64] [--steps 15]

Stage 1 = head only on a frozen backbone; stage 2 = whole network. Synthetic uint8 faces
go through the real training preset (augmentation, MixUp/CutMix in stage 2), forward,
backward and an AdamW step, channels-last. Writes benchmarks/train_throughput.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from emorec.config import Config
from emorec.models import create_model, list_models, set_trainable
from emorec.train.augment import create_transform
from emorec.train.losses import build_loss
from emorec.train.mix import mix_batch, one_hot


def measure(name: str, stage: int, cfg: Config, steps: int, channels_last: bool = True) -> float:
    torch.manual_seed(0)
    model = create_model(name, num_classes=cfg.num_classes, in_chans=cfg.in_chans, drop_rate=cfg.dropout)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    set_trainable(model, 0 if stage == 1 else -1)
    model.train()
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    loss_fn = build_loss(False, 2.0, None)
    g, rng = torch.Generator().manual_seed(0), np.random.default_rng(0)
    x8 = torch.randint(0, 256, (cfg.batch_size, cfg.in_chans, cfg.img_size, cfg.img_size), dtype=torch.uint8)
    y = torch.randint(0, cfg.num_classes, (cfg.batch_size,))

    transform = create_transform(**cfg.section("augment"))

    def step():
        x = transform(x8, g)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        t = one_hot(y, cfg.num_classes, cfg.label_smoothing)
        if stage == 2 and cfg.use_mixup_stage2:
            x, t = mix_batch(x, t, cfg.mixup_alpha, cfg.cutmix_alpha, cfg.cutmix_prob, rng)
        loss = loss_fn(model(x), t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * cfg.batch_size / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--img-size", type=int, default=Config().img_size)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--out", default=str(Path(__file__).with_name("train_throughput.md")))
    args = ap.parse_args()
    cfg = Config(img_size=args.img_size, batch_size=args.batch)
    rows = []
    for name in list_models():
        for stage in (1, 2):
            ips = measure(name, stage, cfg, args.steps)
            rows.append(f"| {name} | {stage} ({'head only' if stage == 1 else 'full fine-tune'}) | {ips:.0f} |")
            print(rows[-1], flush=True)
    ips_nchw = measure("mobilenet_v2", 2, cfg, args.steps, channels_last=False)
    table = "\n".join([
        f"# Training throughput ({platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads)",
        "",
        f"Command: `python benchmarks/train_throughput.py --img-size {args.img_size} --batch {args.batch} "
        f"--steps {args.steps}` with `GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES', '(unset)')}`",
        "",
        f"Grayscale {args.img_size}x{args.img_size} input, batch {args.batch}, augmentation on, channels-last, AdamW.",
        "",
        "| backbone | stage | images/s |",
        "|---|---|---|",
        *rows,
        f"| mobilenet_v2 | 2, without channels-last | {ips_nchw:.0f} |",
        "",
    ])
    Path(args.out).write_text(table)
    print(table)


if __name__ == "__main__":
    main()

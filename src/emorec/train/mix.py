"""MixUp and CutMix at batch level, returning soft targets."""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def smooth(targets: torch.Tensor, smoothing: float) -> torch.Tensor:
    """Label smoothing: move each target row ``smoothing`` of the way towards uniform."""
    return targets * (1.0 - smoothing) + smoothing / targets.shape[1]


def one_hot(y: torch.Tensor, num_classes: int, smoothing: float = 0.0) -> torch.Tensor:
    return smooth(F.one_hot(y, num_classes).float(), smoothing)


def mix_batch(x: torch.Tensor, targets: torch.Tensor, mixup_alpha: float, cutmix_alpha: float,
              cutmix_prob: float, rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend each sample with a shuffled partner; targets are mixed in the same ratio."""
    use_cutmix = cutmix_alpha > 0 and rng.random() < cutmix_prob
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    if alpha <= 0:
        return x, targets
    lam = float(rng.beta(alpha, alpha))
    perm = torch.from_numpy(rng.permutation(x.shape[0]))
    if use_cutmix:
        h, w = x.shape[-2:]
        cut = np.sqrt(1.0 - lam)
        ch, cw = int(h * cut), int(w * cut)
        cy, cx = int(rng.integers(h)), int(rng.integers(w))
        y0, y1 = np.clip([cy - ch // 2, cy + ch // 2], 0, h)
        x0, x1 = np.clip([cx - cw // 2, cx + cw // 2], 0, w)
        x = x.clone()
        x[:, :, y0:y1, x0:x1] = x[perm, :, y0:y1, x0:x1]
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)  # the area actually pasted
    else:
        x = x * lam + x[perm] * (1.0 - lam)
    return x, targets * lam + targets[perm] * (1.0 - lam)

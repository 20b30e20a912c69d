"""Losses on soft targets (MixUp/CutMix, label smoothing) with per-class weights."""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class SoftTargetCrossEntropy(nn.Module):
    def __init__(self, class_weights: torch.Tensor | None = None):
        super().__init__()
        self.register_buffer("w", class_weights if class_weights is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits, dim=1)
        per_class = -target * logp
        if self.w is not None:
            per_class = per_class * self.w
        return per_class.sum(dim=1).mean()


class FocalLoss(nn.Module):
    """Focal loss (Lin et al. 2017) for soft targets; ``alpha`` is the per-class weight."""

    def __init__(self, gamma: float = 2.0, alpha: torch.Tensor | None = None):
        super().__init__()
        self.gamma = gamma
        self.register_buffer("alpha", alpha if alpha is not None else None)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits, dim=1)
        per_class = -target * (1.0 - logp.exp()).pow(self.gamma) * logp
        if self.alpha is not None:
            per_class = per_class * self.alpha
        return per_class.sum(dim=1).mean()


def build_loss(use_focal: bool, gamma: float, class_weights: torch.Tensor | None) -> nn.Module:
    if use_focal:
        return FocalLoss(gamma, class_weights)
    return SoftTargetCrossEntropy(class_weights)

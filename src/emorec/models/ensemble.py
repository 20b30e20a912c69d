"""Several trained models, or several views of a face, as one network: the mean of
their class probabilities.

A member may know more classes than the ensemble (a 7-class FER model in a 5-class
ensemble): its logits for the ensemble's classes are softmaxed on their own, which is its
prediction restricted to those classes. The output is the log of the mean probability, so
it is still a ``logits`` output for inference: softmax(log p) = p.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emorec.config import class_rows
from emorec.errors import EmorecError


def log_mean(probs: list[torch.Tensor]) -> torch.Tensor:
    """Log of the mean of several (N, K) probability tensors: a ``logits`` output again."""
    return torch.log(torch.stack(probs).mean(0).clamp_min(1e-8))


class Ensemble(nn.Module):
    def __init__(self, members: list[nn.Module], member_classes: list[list[str]], classes: list[str]) -> None:
        super().__init__()
        if len(members) != len(member_classes) or not members:
            raise EmorecError("an ensemble needs at least one member, each with its class list")
        self.index = [class_rows(names, classes, f"ensemble member {i + 1}")
                      for i, names in enumerate(member_classes)]
        self.members = nn.ModuleList(members)
        self.classes = list(classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        probs = [F.softmax(m(x)[:, idx], dim=1) for m, idx in zip(self.members, self.index)]
        return log_mean(probs)


class FlipAverage(nn.Module):
    """Flip test-time augmentation inside the model: the mean probability of the face and
    its mirror image, run as one batch of twice the size. Exported to ONNX, every user of
    the file (predict, app, API, another harness) gets the TTA without knowing of it."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.shape[0]
        p = F.softmax(self.model(torch.cat([x, x.flip(3)])), dim=1)
        return log_mean([p[:n], p[n:]])

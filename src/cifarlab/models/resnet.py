"""The CIFAR ResNet of He et al. 2016 (section 4.2) and its plain twin without shortcuts, around any norm."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.config.fields import spec
from cifarlab.errors import CifarlabError
from cifarlab.nn.activations import ActLayer, get_act_layer
from cifarlab.nn.classifier import Classifier, ModelFamily, NormLayer
from cifarlab.nn.norm_registry import get_norm_layer

WIDTHS = (16, 32, 64)  # channels of the stem and of the three stages


@dataclass(frozen=True)
class ResNetOptions:
    n: int = field(metadata=spec(min=1))  # blocks per stage: 6n+2 weighted layers
    shortcut: str = field(metadata=spec(choices=("A", "B")))


@dataclass(frozen=True)
class PlainOptions:
    n: int = field(metadata=spec(min=1))


class PadShortcut(nn.Module):
    """Option A: identity, subsampled by the stride, with the extra channels zero-padded (no parameters)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.extra_channels = out_channels - in_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]
        return F.pad(x, (0, 0, 0, 0, 0, self.extra_channels))  # pads dim 1 (channels) at its end


class ProjectionShortcut(nn.Sequential):
    """Option B: a strided 1x1 convolution and a norm, used only where the shape changes."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), norm_layer(out_channels))


class BasicBlock(nn.Module):
    """Two 3x3 convolutions, each followed by the norm, with a residual connection (`shortcut` A or B;
    None for the plain network's block, which has no residual connection)."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer,
                 shortcut: str | None, act_layer: ActLayer) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = norm_layer(out_channels)
        self.act1 = act_layer()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = norm_layer(out_channels)
        self.act2 = act_layer()
        if shortcut is None:
            self.shortcut: nn.Module | None = None
        elif stride == 1 and in_channels == out_channels:
            self.shortcut = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = ProjectionShortcut(in_channels, out_channels, stride, norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The residual sum is in place, and so is a ReLU: no norm (and no convolution) keeps its output
        # for backward, so both may overwrite it. Fewer activations to allocate, which on a CPU costs
        # more than the arithmetic (freshly mapped memory must be faulted in page by page).
        out = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
        if self.shortcut is not None:
            out = out.add_(self.shortcut(x))
        return self.act2(out)


class CifarResNet(Classifier):
    """6n+2 weighted layers: a 3x3 stem, 3 stages of n blocks at 16/32/64 channels, a linear head.

    With `shortcut=None` it is the plain network of the same depth (He et al. 2016, Figure 6).
    """

    def __init__(self, n: int, num_classes: int = 10, norm_layer: NormLayer | None = None,
                 shortcut: str | None = "A", act_layer: ActLayer | None = None) -> None:
        super().__init__()
        if n < 1:
            raise CifarlabError(f"model.n: expected n >= 1 blocks per stage, got {n}")
        if shortcut not in ("A", "B", None):
            raise CifarlabError(f"model.shortcut: expected A or B, got {shortcut!r}")
        norm_layer = norm_layer or get_norm_layer("bn")  # the paper's choices by default
        act_layer = act_layer or get_act_layer("relu")
        self.stem = nn.Sequential(nn.Conv2d(3, WIDTHS[0], 3, padding=1, bias=False),
                                  norm_layer(WIDTHS[0]), act_layer())
        stages = []
        in_channels = WIDTHS[0]
        for index, width in enumerate(WIDTHS):
            blocks = []
            for block in range(n):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(in_channels, width, stride, norm_layer, shortcut, act_layer))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(in_channels, num_classes)
        self.feature_dim = in_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The globally mean-pooled output of the last stage, (N, 64)."""
        return self.stages(self.stem(x)).mean(dim=(2, 3))


RESNET = ModelFamily(
    options=ResNetOptions,
    build=lambda o, classes, norm, act: CifarResNet(o.n, classes, norm, o.shortcut, act),
    widths=lambda o: WIDTHS,
    label=lambda o: f"ResNet-{6 * o.n + 2} ({o.shortcut})",
)

PLAIN = ModelFamily(
    options=PlainOptions,
    build=lambda o, classes, norm, act: CifarResNet(o.n, classes, norm, None, act),
    widths=lambda o: WIDTHS,
    label=lambda o: f"plain-{6 * o.n + 2}",
)

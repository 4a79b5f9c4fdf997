"""The CIFAR ResNet of He et al. 2016 (section 4.2), built around any norm, and the model registry."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.config import RESNET_WIDTHS, ModelConfig
from cifarlab.errors import CifarlabError
from cifarlab.norms import get_norm_layer

NormLayer = Callable[[int], nn.Module]


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
    """Two 3x3 convolutions, each followed by the norm, with a residual connection."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, norm_layer: NormLayer,
                 shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = norm_layer(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = norm_layer(out_channels)
        if stride == 1 and in_channels == out_channels:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "A":
            self.shortcut = PadShortcut(in_channels, out_channels, stride)
        else:
            self.shortcut = ProjectionShortcut(in_channels, out_channels, stride, norm_layer)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # In place: no norm (and no convolution) keeps its output for backward, so the ReLUs and the
        # residual sum may overwrite it. Two fewer activations per block to allocate, which on a CPU
        # costs more than the arithmetic (freshly mapped memory must be faulted in page by page).
        out = F.relu(self.norm1(self.conv1(x)), inplace=True)
        out = self.norm2(self.conv2(out))
        return F.relu(out.add_(self.shortcut(x)), inplace=True)


class CifarResNet(nn.Module):
    """ResNet with 6n+2 weighted layers: a 3x3 stem, 3 stages of n blocks at 16/32/64 channels, a linear head."""

    def __init__(self, n: int, num_classes: int = 10, norm_layer: NormLayer | None = None,
                 shortcut: str = "A") -> None:
        super().__init__()
        if n < 1:
            raise CifarlabError(f"model.n: expected n >= 1 blocks per stage, got {n}")
        if shortcut not in ("A", "B"):
            raise CifarlabError(f"model.shortcut: expected A or B, got {shortcut!r}")
        norm_layer = norm_layer or get_norm_layer("bn")
        self.stem = nn.Sequential(nn.Conv2d(3, RESNET_WIDTHS[0], 3, padding=1, bias=False),
                                  norm_layer(RESNET_WIDTHS[0]), nn.ReLU(inplace=True))
        stages = []
        in_channels = RESNET_WIDTHS[0]
        for index, width in enumerate(RESNET_WIDTHS):
            blocks = []
            for block in range(n):
                stride = 2 if index > 0 and block == 0 else 1
                blocks.append(BasicBlock(in_channels, width, stride, norm_layer, shortcut))
                in_channels = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.fc = nn.Linear(in_channels, num_classes)
        self.feature_dim = in_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features: the globally mean-pooled output of the last stage, (N, 64)."""
        return self.stages(self.stem(x)).mean(dim=(2, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))


def _resnet(config: ModelConfig) -> nn.Module:
    return CifarResNet(config.n, config.num_classes, get_norm_layer(config.norm, groups=config.groups),
                       config.shortcut)


MODELS: dict[str, Callable[[ModelConfig], nn.Module]] = {"resnet": _resnet}


def build_model(config: ModelConfig) -> nn.Module:
    """Build the model named by `config.arch` from the registry."""
    if config.arch not in MODELS:
        raise CifarlabError(f"model.arch: unknown '{config.arch}'; expected one of: {', '.join(MODELS)}")
    return MODELS[config.arch](config)

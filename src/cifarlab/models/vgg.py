"""VGG for CIFAR-10 (Simonyan & Zisserman 2015, as adapted to 32x32 images), built from its config list."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from cifarlab.config.fields import spec
from cifarlab.nn.activations import ActLayer
from cifarlab.nn.classifier import Classifier, ModelFamily, NormLayer

# Output channels of each 3x3 convolution, "M" a 2x2 max-pool: five pools take 32x32 down to 1x1.
VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


@dataclass(frozen=True)
class VGGOptions:
    """The first convolution's channels; the others keep the config list's ratios to its 64 (a quick profile
    halves them for a quarter of the MACs)."""

    width: int = field(default=64, metadata=spec(min=1))


class VGG(Classifier):
    """3x3 convolutions (padding 1, with bias) each followed by the norm and the activation, max-pools
    where the config says "M", then a linear classifier on the flattened 1x1 output."""

    def __init__(self, config: tuple[int | str, ...], num_classes: int, norm_layer: NormLayer,
                 act_layer: ActLayer) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for item in config:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers += [nn.Conv2d(in_channels, item, 3, padding=1), norm_layer(item), act_layer()]
            in_channels = item
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(in_channels, num_classes)
        self.feature_dim = in_channels
        for module in self.modules():
            if isinstance(module, nn.Conv2d):  # as torchvision's VGG: He init, zero biases
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The last pool's (N, 512, 1, 1) output, flattened."""
        return self.body(x).flatten(1)


def scaled(config: tuple[int | str, ...], width: int) -> tuple[int | str, ...]:
    """The config list with every convolution's channels scaled so that the first has `width`."""
    first = next(item for item in config if item != "M")
    return tuple(item if item == "M" else item * width // first for item in config)


def _widths(config: tuple[int | str, ...]) -> tuple[int, ...]:
    return tuple(sorted({item for item in config if item != "M"}))


VGG11_FAMILY = ModelFamily(
    options=VGGOptions,
    build=lambda o, classes, norm, act: VGG(scaled(VGG11, o.width), classes, norm, act),
    widths=lambda o: _widths(scaled(VGG11, o.width)),
    label=lambda o: "VGG-11" if o.width == VGG11[0] else f"VGG-11 (width {o.width})",
)

"""VGG for CIFAR-10 (Simonyan & Zisserman 2015, as adapted to 32x32 images), built from its config list."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cifarlab.nn.activations import ActLayer
from cifarlab.nn.classifier import Classifier, ModelFamily, NormLayer

# Output channels of each 3x3 convolution, "M" a 2x2 max-pool: five pools take 32x32 down to 1x1.
VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


@dataclass(frozen=True)
class VGGOptions:
    """VGG-11 has no options of its own: its layers are the config list."""


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


def _widths(config: tuple[int | str, ...]) -> tuple[int, ...]:
    return tuple(sorted({item for item in config if item != "M"}))


VGG11_FAMILY = ModelFamily(
    options=VGGOptions,
    build=lambda o, classes, norm, act: VGG(VGG11, classes, norm, act),
    widths=lambda o: _widths(VGG11),
    label=lambda o: "VGG-11",
)

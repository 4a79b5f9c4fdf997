"""SimpleNN: the first CNN of the course labs, a LeNet-5-like network for 32x32 images."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from cifarlab.nn.activations import ActLayer
from cifarlab.nn.classifier import Classifier, ModelFamily, NormLayer

WIDTHS = (8, 16)  # the two convolutions' channels


@dataclass(frozen=True)
class SimpleNNOptions:
    """SimpleNN has no options of its own."""


class SimpleNN(Classifier):
    """conv 5x5 (8) -> [norm] -> act -> max-pool 2 -> conv 3x3 (16) -> [norm] -> act -> max-pool 2, no
    padding (32 -> 28 -> 14 -> 12 -> 6), then fully connected 576 -> 120 -> 84 -> 10 with the activation
    between. The penultimate features are the 84 activations; norm "nn" gives the lab's network exactly."""

    def __init__(self, num_classes: int, norm_layer: NormLayer, act_layer: ActLayer) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(3, WIDTHS[0], 5), norm_layer(WIDTHS[0]), act_layer(), nn.MaxPool2d(2),
            nn.Conv2d(WIDTHS[0], WIDTHS[1], 3), norm_layer(WIDTHS[1]), act_layer(), nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(WIDTHS[1] * 6 * 6, 120), act_layer(),
            nn.Linear(120, 84), act_layer(),
        )
        self.head = nn.Linear(84, num_classes)
        self.feature_dim = 84

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


SIMPLENN = ModelFamily(
    options=SimpleNNOptions,
    build=lambda o, classes, norm, act: SimpleNN(classes, norm, act),
    widths=lambda o: WIDTHS,
    label=lambda o: "SimpleNN",
)

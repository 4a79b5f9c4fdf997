"""What every model honours, and what a family of models declares to the registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from cifarlab.nn.activations import ActLayer

NormLayer = Callable[[int], nn.Module]


class Classifier(nn.Module):
    """The model contract (timm's): `forward_features` gives the penultimate features, (N, feature_dim),
    and `forward_head` the logits from them. Evaluation, the feature quantiles and the profiler use these
    two, never a model's own attribute names."""

    feature_dim: int
    head: nn.Linear

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


@dataclass(frozen=True)
class ModelFamily:
    """One entry of the model registry.

    `options` is the family's own frozen dataclass of params keys (fields with `fields.spec`);
    `build(options, num_classes, norm_layer, act_layer)` makes the model; `widths(options)` lists the
    channel counts that carry a norm (GroupNorm's groups must divide each); `label(options)` names the
    network for tables ("ResNet-20", "VGG-11").
    """

    options: type
    build: Callable[[Any, int, NormLayer, ActLayer], Classifier]
    widths: Callable[[Any], tuple[int, ...]]
    label: Callable[[Any], str]

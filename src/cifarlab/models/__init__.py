"""The model registry: each name maps to a family (its options, builder and widths), one file per family."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cifarlab.activations import get_act_layer
from cifarlab.errors import CifarlabError
from cifarlab.models.base import Classifier, ModelFamily
from cifarlab.models.resnet import PLAIN, RESNET
from cifarlab.models.simplenn import SIMPLENN
from cifarlab.models.vgg import VGG11_FAMILY
from cifarlab.norms import get_norm_layer

if TYPE_CHECKING:
    from cifarlab.config import ModelConfig

MODELS: dict[str, ModelFamily] = {
    "resnet": RESNET,  # He et al. 2016, section 4.2: 6n+2 layers
    "plain": PLAIN,  # the same network without shortcuts
    "vgg11": VGG11_FAMILY,
    "simplenn": SIMPLENN,
}


def build_model(config: ModelConfig) -> Classifier:
    """Build the model `config.arch` names, with its norm and activation resolved from their registries."""
    if config.arch not in MODELS:
        raise CifarlabError(f"model.arch: unknown '{config.arch}'; expected one of: {', '.join(MODELS)}")
    return MODELS[config.arch].build(config.options, config.num_classes,
                                     get_norm_layer(config.norm, groups=config.groups),
                                     get_act_layer(config.activation))


__all__ = ["MODELS", "Classifier", "ModelFamily", "build_model"]

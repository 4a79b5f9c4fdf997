"""The model registry: each arch name maps to its family (options, builder, widths, label), one file per
family, imported only when a run of that family needs it. A train stage thus loads the code of its own
network and no other, and `study.code_hashes` records exactly that code in the run's settings file."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from cifarlab.errors import CifarlabError
from cifarlab.nn.activations import get_act_layer
from cifarlab.nn.norm_registry import get_norm_layer

if TYPE_CHECKING:
    from cifarlab.config.sections import ModelConfig
    from cifarlab.nn.classifier import Classifier, ModelFamily

# arch -> (module, its ModelFamily); plain shares ResNet's blocks, so its module.
MODELS: dict[str, tuple[str, str]] = {
    "resnet": ("cifarlab.models.resnet", "RESNET"),  # He et al. 2016, section 4.2: 6n+2 layers
    "plain": ("cifarlab.models.resnet", "PLAIN"),  # the same network without shortcuts
    "vgg11": ("cifarlab.models.vgg", "VGG11_FAMILY"),
    "simplenn": ("cifarlab.models.simplenn", "SIMPLENN"),
}


def family(arch: str) -> ModelFamily:
    """The family registered as `arch`, its module imported on first use."""
    if arch not in MODELS:
        raise CifarlabError(f"model.arch: unknown '{arch}'; expected one of: {', '.join(MODELS)}")
    module, name = MODELS[arch]
    return getattr(importlib.import_module(module), name)


def family_options(config: ModelConfig) -> Any:
    """The family's own options dataclass, filled from `config.options`."""
    return family(config.arch).options(**config.options)


def build_model(config: ModelConfig) -> Classifier:
    """Build the model `config.arch` names, with its norm and activation resolved from their registries."""
    return family(config.arch).build(family_options(config), config.num_classes,
                                     get_norm_layer(config.norm, groups=config.groups),
                                     get_act_layer(config.activation))


def model_label(config: ModelConfig) -> str:
    """The network in a few words for tables and logs ("ResNet-20 (A)", "VGG-11")."""
    return family(config.arch).label(family_options(config))

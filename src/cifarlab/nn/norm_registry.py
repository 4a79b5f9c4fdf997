"""The norm registry: each norm's name, its layer, and the rules that belong to a norm rather than to a model
(GroupNorm's groups must divide the widths; BIN has gates). Models, the settings check and the report
choose a norm by name here and never name a layer class (timm's `create_norm` beside its `norm`)."""

from __future__ import annotations

import functools
from collections.abc import Callable

from torch import nn

from cifarlab.errors import CifarlabError
from cifarlab.nn.norms import (
    BatchInstanceNorm2d,
    BatchNorm2d,
    GroupNorm2d,
    InstanceNorm2d,
    LayerNorm2d,
    NoNorm,
)

NORM_LAYERS: dict[str, type[nn.Module]] = {
    "torch_bn": nn.BatchNorm2d,  # the built-in, sanity twin of "bn"
    "bn": BatchNorm2d,
    "in": InstanceNorm2d,
    "bin": BatchInstanceNorm2d,
    "ln": LayerNorm2d,
    "gn": GroupNorm2d,
    "nn": NoNorm,
}


def get_norm_layer(name: str, *, groups: int | None = None) -> Callable[[int], nn.Module]:
    """The constructor `norm_layer(num_channels)` for a norm name; binds `groups` for "gn"."""
    if name not in NORM_LAYERS:
        raise CifarlabError(f"unknown norm {name!r}; expected one of: {', '.join(NORM_LAYERS)}")
    cls = NORM_LAYERS[name]
    if takes_groups(name):
        if groups is None:
            raise CifarlabError(f"norm {name!r} needs groups (GroupNorm's number of groups)")
        return functools.partial(cls, groups=groups)
    return cls


def takes_groups(name: str) -> bool:
    """Whether the norm of registry name `name` divides the channels into the model's `groups`."""
    return getattr(NORM_LAYERS[name], "takes_groups", False)


def norm_misfit(name: str, groups: int, widths: tuple[int, ...], network: str) -> str:
    """Why norm `name` cannot normalise `network`, whose normalised widths are `widths`, or "" if it can."""
    if takes_groups(name) and any(width % groups for width in widths):
        return f"GroupNorm groups={groups} must divide the {network} widths {', '.join(map(str, widths))}"
    return ""


def norm_has_gates(name: str) -> bool:
    """Whether the norm of registry name `name` has gates, which `gate_parameters` finds in a model."""
    return issubclass(NORM_LAYERS[name], BatchInstanceNorm2d)

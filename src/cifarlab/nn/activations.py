"""Activations chosen by name, passed to models the way norms are (timm's `act_layer`)."""

from __future__ import annotations

import functools
from collections.abc import Callable

import torch
from torch import nn

from cifarlab.errors import CifarlabError

ActLayer = Callable[[], nn.Module]


class Swish(nn.Module):
    """Swish (Ramachandran et al. 2017), x * sigmoid(x), written out: the same function as torch's SiLU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


ACTIVATIONS: dict[str, ActLayer] = {
    # In place: no layer of ours keeps the tensor a ReLU overwrites for its backward, and on a CPU a
    # fresh activation costs more to allocate than to compute.
    "relu": functools.partial(nn.ReLU, inplace=True),
    "swish": Swish,
}


def get_act_layer(name: str) -> ActLayer:
    """The constructor `act_layer()` for an activation name."""
    if name not in ACTIVATIONS:
        raise CifarlabError(f"unknown activation {name!r}; expected one of: {', '.join(ACTIVATIONS)}")
    return ACTIVATIONS[name]

"""cifarlab.nn.activations: Swish against its definition and torch's SiLU, and the registry by name."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.errors import CifarlabError
from cifarlab.nn.activations import ACTIVATIONS, Swish, get_act_layer


def test_swish_is_x_times_sigmoid_x_and_equals_torchs_silu():
    x = torch.linspace(-6, 6, 101, dtype=torch.float64)
    torch.testing.assert_close(Swish()(x), x / (1 + torch.exp(-x)))
    torch.testing.assert_close(Swish()(x), F.silu(x))


def test_each_name_gives_its_layer_and_an_unknown_name_lists_the_known_ones():
    assert type(get_act_layer("relu")()) is nn.ReLU and type(get_act_layer("swish")()) is Swish
    with pytest.raises(CifarlabError) as info:
        get_act_layer("gelu")
    assert all(name in str(info.value) for name in ACTIVATIONS)

"""The parameter and MAC profiler against counts worked out by hand from each network's description."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from cifarlab.analysis.profiler import layer_macs, profile_model
from cifarlab.config.sections import ModelConfig
from cifarlab.models import build_model, family

# SimpleNN, layer by layer (32 -> conv5 28 -> pool 14 -> conv3 12 -> pool 6):
SIMPLENN_LAYERS = [  # (kind, input, output, weight, parameters, MACs)
    ("Conv2d", (3, 32, 32), (8, 28, 28), (8, 3, 5, 5), 3 * 8 * 25 + 8, 28 * 28 * 8 * 3 * 25),
    ("Conv2d", (8, 14, 14), (16, 12, 12), (16, 8, 3, 3), 8 * 16 * 9 + 16, 12 * 12 * 16 * 8 * 9),
    ("Linear", (576,), (120,), (120, 576), 576 * 120 + 120, 576 * 120),
    ("Linear", (120,), (84,), (84, 120), 120 * 84 + 84, 120 * 84),
    ("Linear", (84,), (10,), (10, 84), 84 * 10 + 10, 84 * 10),
]

# The table of hand counts: (arch, norm, options) -> (parameters, MACs per image).
HAND_COUNTS = {
    "SimpleNN": (("simplenn", "nn", {}), 82_030, 716_328),
    "ResNet-14, option A, BN": (("resnet", "bn", {"n": 2, "shortcut": "A"}), 172_506, 26_395_264),
    "ResNet-20, option A, BN": (("resnet", "bn", {"n": 3, "shortcut": "A"}), 269_722, 40_551_040),
    "ResNet-20, option B, BN": (("resnet", "bn", {"n": 3, "shortcut": "B"}), 272_474, 40_813_184),
    "VGG-11, BN": (("vgg11", "bn", {}), 9_231_114, 152_769_536),
}


def _model(arch: str, norm: str, options: dict) -> nn.Module:
    config = ModelConfig(arch=arch, num_classes=10, norm=norm, groups=8, activation="relu",
                         options=dataclasses.asdict(family(arch).options(**options)))
    return build_model(config)


def test_the_hand_counts_add_up():
    assert sum(layer[4] for layer in SIMPLENN_LAYERS) == 82_030 == 608 + 1_168 + 69_240 + 10_164 + 850
    assert sum(layer[5] for layer in SIMPLENN_LAYERS) == 716_328
    # ResNet-20's convolutions: 32x32 stem and stage 1, 16x16 stage 2, 8x8 stage 3, each 3x3.
    stage1 = 32 * 32 * 16 * (3 * 9 + 6 * 16 * 9)  # the stem, then six 16 -> 16 convolutions
    stage2 = 16 * 16 * 32 * (16 * 9 + 5 * 32 * 9)  # the stride-2 16 -> 32, then five 32 -> 32
    stage3 = 8 * 8 * 64 * (32 * 9 + 5 * 64 * 9)
    assert stage1 + stage2 + stage3 + 64 * 10 == 40_551_040
    assert 40_551_040 + 16 * 16 * 32 * 16 + 8 * 8 * 64 * 32 == 40_813_184  # option B's two 1x1 projections


@pytest.mark.parametrize("name", HAND_COUNTS)
def test_profiled_parameters_and_macs_equal_the_hand_counts(name):
    (arch, norm, options), parameters, macs = HAND_COUNTS[name]
    profile = profile_model(_model(arch, norm, options))
    assert (profile.parameters, profile.macs) == (parameters, macs)
    assert sum(layer.parameters for layer in profile.layers) == parameters  # every parameter sits in a layer


def test_simplenn_layer_table_gives_each_weighted_layers_shapes_parameters_and_macs():
    profile = profile_model(_model("simplenn", "nn", {}))
    weighted = [(layer.kind, layer.input_shape, layer.output_shape, layer.weight_shape, layer.parameters,
                 layer.macs) for layer in profile.layers if layer.weight_shape is not None]
    assert weighted == SIMPLENN_LAYERS
    pools = [layer for layer in profile.layers if layer.kind == "MaxPool2d"]
    assert [(p.input_shape, p.output_shape, p.parameters, p.macs) for p in pools] == [
        ((8, 28, 28), (8, 14, 14), 0, 0), ((16, 12, 12), (16, 6, 6), 0, 0)]
    table = profile.table()
    assert list(table.columns) == ["layer", "kind", "input", "output", "weight", "parameters", "MACs"]
    assert table.loc[0, "input"] == "3 x 32 x 32" and table.loc[0, "weight"] == "8 x 3 x 5 x 5"


def test_grouped_convolution_macs_count_input_channels_per_group():
    conv = nn.Conv2d(8, 16, 3, padding=1, groups=4)
    assert layer_macs(conv, conv(torch.zeros(1, 8, 5, 5))) == 5 * 5 * 16 * 2 * 9  # 8 / 4 inputs per group


def test_profiling_leaves_the_model_in_training_mode_and_removes_its_hooks():
    model = _model("resnet", "bn", {"n": 1, "shortcut": "A"}).train()
    profile_model(model)
    assert model.training
    assert all(not module._forward_hooks for module in model.modules())

"""cifarlab.models: the model contract for every family, the CIFAR ResNet of He et al. 2016 (sec. 4.2)
and its plain twin, VGG-11 and SimpleNN, against their papers' and the labs' descriptions and hand counts.

Parameter counts are written out layer by layer from the paper's description (3x3 stem at 16 channels,
three stages of n basic blocks at 16/32/64 channels, global average pooling, a 10-way linear layer), so
a test fails if the built network differs from that description in any layer.
"""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.config.sections import ModelConfig
from cifarlab.errors import CifarlabError
from cifarlab.models import MODELS, build_model, family
from cifarlab.models.resnet import BasicBlock, CifarResNet, PadShortcut
from cifarlab.nn.activations import ACTIVATIONS, get_act_layer
from cifarlab.nn.classifier import Classifier
from cifarlab.nn.norm_registry import NORM_LAYERS, get_norm_layer

GROUPS = 4  # divides 16, 32 and 64, and every other model's widths
RELU = get_act_layer("relu")


def _config(arch: str = "resnet", *, norm: str = "bn", groups: int = GROUPS, activation: str = "relu",
            **options) -> ModelConfig:
    """A ModelConfig of `arch`; ResNet options default to n=1, shortcut A."""
    defaults = {"resnet": {"n": 1, "shortcut": "A"}, "plain": {"n": 1}}.get(arch, {})
    return ModelConfig(arch=arch, num_classes=10, norm=norm, groups=groups, activation=activation,
                       options=dataclasses.asdict(family(arch).options(**{**defaults, **options})))


def _images(n: int = 2, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def _count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# --- Depth -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shortcut", ["A", "B"])
@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_resnet_has_6n_plus_2_weighted_layers_not_counting_projection_shortcuts(n, shortcut):
    model = build_model(_config(n=n, shortcut=shortcut))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    projections = [m for m in convs if m.kernel_size == (1, 1)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    # The paper counts the 3x3 convolutions and the fc layer; option B's 1x1 projections are extra,
    # one at each of the two stage transitions.
    assert len(projections) == (2 if shortcut == "B" else 0)
    assert all(m.kernel_size == (3, 3) for m in convs if m not in projections)
    assert len(convs) - len(projections) + len(linears) == 6 * n + 2


# --- Parameter counts --------------------------------------------------------------------------------------

# n = 3 (ResNet-20), written out by hand. Convolutions have no bias (a norm follows each).
STEM_CONV = 3 * 16 * 9  # 432
STAGE1_CONVS = 3 * (16 * 16 * 9 + 16 * 16 * 9)  # three blocks of two 16->16 convs: 13_824
STAGE2_CONVS = (16 * 32 * 9 + 32 * 32 * 9) + 2 * (32 * 32 * 9 + 32 * 32 * 9)  # transition + 2 blocks: 50_688
STAGE3_CONVS = (32 * 64 * 9 + 64 * 64 * 9) + 2 * (64 * 64 * 9 + 64 * 64 * 9)  # transition + 2 blocks: 202_752
FC = 64 * 10 + 10  # 650
# Channels that carry a norm: the stem's 16, then two norms per block at 16, 32, 64 channels.
NORM_CHANNELS = 16 + 3 * 2 * 16 + 3 * 2 * 32 + 3 * 2 * 64  # 688
WEIGHTS_N3 = STEM_CONV + STAGE1_CONVS + STAGE2_CONVS + STAGE3_CONVS + FC  # 268_346


def test_resnet20_option_a_with_batchnorm_matches_the_hand_count_and_the_papers_0_27m():
    model = build_model(_config(n=3, shortcut="A", norm="bn"))
    hand_count = WEIGHTS_N3 + 2 * NORM_CHANNELS  # BN: a weight and a bias per channel
    assert hand_count == 269_722
    assert _count(model) == hand_count
    assert round(_count(model) / 1e6, 2) == 0.27  # He et al. 2016, Table 6


def test_option_b_adds_exactly_the_two_projection_convs_and_their_norms():
    a = build_model(_config(n=3, shortcut="A", norm="bn"))
    b = build_model(_config(n=3, shortcut="B", norm="bn"))
    projections = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)  # 1x1 conv + BN weight and bias, twice: 2_752
    assert _count(b) - _count(a) == projections
    assert _count(b) == 269_722 + 2_752


@pytest.mark.parametrize(
    ("norm", "params_per_channel"),
    [("nn", 0), ("bn", 2), ("torch_bn", 2), ("in", 2), ("ln", 2), ("gn", 2), ("bin", 3)],  # bin adds gate rho
)
def test_norm_parameters_per_channel_match_a_hand_count(norm, params_per_channel):
    model = build_model(_config(n=3, norm=norm))
    assert _count(model) == WEIGHTS_N3 + params_per_channel * NORM_CHANNELS


def test_no_norm_model_holds_only_conv_and_fc_weights():
    model = build_model(_config(n=3, norm="nn"))
    assert _count(model) == 268_346
    assert {type(m) for m in model.modules() if any(True for _ in m.parameters(recurse=False))} == {
        nn.Conv2d, nn.Linear}


@pytest.mark.parametrize(("n", "millions"), [(3, 0.27), (5, 0.46), (7, 0.66), (9, 0.85)])
def test_parameter_counts_round_to_he_et_al_table_6(n, millions):
    model = build_model(_config(n=n, shortcut="A", norm="bn"))
    assert round(_count(model) / 1e6, 2) == millions


# --- The contract, for every model x norm x activation ------------------------------------------------------

SMOKE_OPTIONS = {"resnet": [{"shortcut": "A"}, {"shortcut": "B"}], "plain": [{}], "vgg11": [{}], "simplenn": [{}]}
SMOKE_CASES = [(arch, options) for arch, variants in SMOKE_OPTIONS.items() for options in variants]


def test_the_smoke_test_covers_every_registered_model():
    assert set(SMOKE_OPTIONS) == set(MODELS)


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("norm", NORM_LAYERS)
@pytest.mark.parametrize(("arch", "options"), SMOKE_CASES, ids=[f"{a}-{o}" for a, o in SMOKE_CASES])
def test_every_model_norm_and_activation_honours_the_contract_forward_and_backward(arch, options, norm,
                                                                                  activation):
    torch.manual_seed(0)
    model = build_model(_config(arch, norm=norm, activation=activation, **options)).train()
    assert isinstance(model, Classifier)
    x = _images(2)
    features = model.forward_features(x)
    assert features.shape == (2, model.feature_dim)
    logits = model.forward_head(features)
    assert logits.shape == (2, 10)
    assert torch.isfinite(logits).all()
    F.cross_entropy(logits, torch.tensor([3, 7])).backward()
    for name, param in model.named_parameters():
        assert param.grad is not None, name
        assert torch.isfinite(param.grad).all(), name
    model.eval()
    with torch.no_grad():  # forward is the head applied to the features
        torch.testing.assert_close(model(x), model.forward_head(model.forward_features(x)))


def test_features_are_the_mean_pooled_last_stage_and_forward_applies_the_head_to_them():
    torch.manual_seed(0)
    model = build_model(_config(n=1)).eval()
    x = _images(3)
    captured = {}
    model.stages.register_forward_hook(lambda module, inputs, output: captured.update(last=output))
    features = model.forward_features(x)
    assert features.shape == (3, 64)
    assert model.feature_dim == 64
    torch.testing.assert_close(features, captured["last"].mean(dim=(2, 3)))
    torch.testing.assert_close(model(x), features @ model.head.weight.T + model.head.bias)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_the_activation_reaches_every_nonlinearity_of_every_model(activation):
    expected = type(get_act_layer(activation)())
    others = {type(get_act_layer(a)()) for a in ACTIVATIONS} - {expected}
    for arch, variants in SMOKE_OPTIONS.items():
        model = build_model(_config(arch, activation=activation, **variants[0]))
        kinds = {type(m) for m in model.modules()}
        assert expected in kinds and not kinds & others, arch


# --- The plain network, VGG-11 and SimpleNN ------------------------------------------------------------------


def test_plain_network_is_the_resnet_without_shortcuts_and_with_the_same_weights():
    plain = build_model(_config("plain", n=2))
    resnet = build_model(_config("resnet", n=2, shortcut="A"))
    assert all(block.shortcut is None for stage in plain.stages for block in stage)
    assert [p.shape for p in plain.parameters()] == [p.shape for p in resnet.parameters()]
    torch.manual_seed(0)
    block = plain.stages[1][0].eval()
    x = torch.randn(2, 16, 8, 8)
    reference = F.relu(block.norm2(block.conv2(F.relu(block.norm1(block.conv1(x))))))  # no residual sum
    torch.testing.assert_close(block(x), reference)


def test_vgg11_has_the_eight_convolutions_and_five_pools_of_its_config_list():
    model = build_model(_config("vgg11"))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == [64, 128, 256, 256, 512, 512, 512, 512]
    assert all((m.kernel_size, m.padding) == ((3, 3), (1, 1)) for m in convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.modules()) == 5
    assert (model.head.in_features, model.head.out_features) == (512, 10)


def test_simplenn_has_the_labs_layers_without_padding():
    model = build_model(_config("simplenn", norm="nn"))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.padding) for m in convs] == [
        (3, 8, (5, 5), (0, 0)), (8, 16, (3, 3), (0, 0))]
    assert [(m.in_features, m.out_features) for m in linears] == [(576, 120), (120, 84), (84, 10)]
    assert model.feature_dim == 84


@pytest.mark.parametrize(("arch", "widths"), [("resnet", (16, 32, 64)), ("plain", (16, 32, 64)),
                                              ("vgg11", (64, 128, 256, 512)), ("simplenn", (8, 16))])
def test_each_family_reports_the_widths_its_norms_get(arch, widths):
    config = _config(arch, norm="torch_bn")
    assert family(arch).widths(family(arch).options(**config.options)) == widths
    normed = {m.num_features for m in build_model(config).modules() if isinstance(m, nn.BatchNorm2d)}
    assert normed == set(widths)


# --- Shortcuts and downsampling ---------------------------------------------------------------------------


def test_option_a_shortcut_subsamples_by_two_and_appends_zero_channels():
    model = build_model(_config(n=1, shortcut="A"))
    shortcut = model.stages[1][0].shortcut  # the 16 -> 32, stride-2 transition
    assert isinstance(shortcut, PadShortcut)
    assert list(shortcut.parameters()) == []
    x = torch.randn(2, 16, 8, 8, generator=torch.Generator().manual_seed(1))
    expected = torch.cat([x[:, :, ::2, ::2], torch.zeros(2, 16, 4, 4)], dim=1)
    assert torch.equal(shortcut(x), expected)


def test_padshortcut_16_to_32_stride_2_on_a_hand_made_input():
    x = torch.arange(1 * 16 * 4 * 4, dtype=torch.float32).view(1, 16, 4, 4)
    out = PadShortcut(16, 32, stride=2)(x)
    assert out.shape == (1, 32, 2, 2)
    # Channel c keeps pixels (0,0), (0,2), (2,0), (2,2): values 16c + {0, 2, 8, 10}.
    for c in range(16):
        assert out[0, c].tolist() == [[16 * c + 0, 16 * c + 2], [16 * c + 8, 16 * c + 10]]
    assert (out[0, 16:] == 0).all()


def test_basic_block_adds_its_shortcut_before_the_final_relu():
    torch.manual_seed(0)
    block = BasicBlock(16, 32, stride=2, norm_layer=get_norm_layer("nn"), shortcut="A", act_layer=RELU)
    x = torch.randn(2, 16, 8, 8)
    # Reference from the paper's Fig. 2 with the identity norm: relu(W2 relu(W1 x) + shortcut(x)).
    residual = F.conv2d(F.relu(F.conv2d(x, block.conv1.weight, stride=2, padding=1)), block.conv2.weight, padding=1)
    shortcut = torch.cat([x[:, :, ::2, ::2], torch.zeros(2, 16, 4, 4)], dim=1)
    torch.testing.assert_close(block(x), F.relu(residual + shortcut))


def test_identity_shortcut_inside_a_stage_and_projection_only_at_transitions():
    model = build_model(_config(n=2, shortcut="B"))
    kinds = [[type(block.shortcut).__name__ for block in stage] for stage in model.stages]
    assert kinds == [["Identity", "Identity"], ["ProjectionShortcut", "Identity"],
                     ["ProjectionShortcut", "Identity"]]
    projection = model.stages[1][0].shortcut[0]
    assert (projection.kernel_size, projection.stride) == ((1, 1), (2, 2))


@pytest.mark.parametrize("shortcut", ["A", "B"])
def test_downsampling_happens_only_at_the_start_of_stages_2_and_3(shortcut):
    model = build_model(_config(n=2, shortcut=shortcut)).eval()
    shapes = []
    model.stem.register_forward_hook(lambda module, inputs, output: shapes.append(tuple(output.shape[1:])))
    for stage in model.stages:
        for block in stage:
            block.register_forward_hook(lambda module, inputs, output: shapes.append(tuple(output.shape[1:])))
    with torch.no_grad():
        model(_images(2))
    assert shapes == [(16, 32, 32),  # stem
                      (16, 32, 32), (16, 32, 32),  # stage 1
                      (32, 16, 16), (32, 16, 16),  # stage 2: first block halves the size
                      (64, 8, 8), (64, 8, 8)]  # stage 3: first block halves the size


# --- User errors ------------------------------------------------------------------------------------------


def test_build_model_refuses_an_unknown_arch_naming_the_key():
    config = ModelConfig(arch="vgg", num_classes=10, norm="bn", groups=GROUPS, activation="relu", options=None)
    with pytest.raises(CifarlabError, match="model.arch"):
        build_model(config)


@pytest.mark.parametrize("n", [0, -1])
def test_resnet_refuses_fewer_than_one_block_per_stage_naming_model_n(n):
    with pytest.raises(CifarlabError, match=r"model\.n"):
        CifarResNet(n=n)


def test_resnet_refuses_an_unknown_shortcut_naming_model_shortcut():
    with pytest.raises(CifarlabError, match=r"model\.shortcut"):
        CifarResNet(n=1, shortcut="C")


@pytest.mark.parametrize("groups", [3, 32, 64])  # 3 divides none of 16/32/64; 32 and 64 do not divide 16
def test_groupnorm_groups_that_do_not_divide_a_width_are_refused(groups):
    with pytest.raises(CifarlabError, match="groups"):
        build_model(_config(norm="gn", groups=groups))


@pytest.mark.parametrize("groups", [1, 2, 4, 8, 16])
def test_groupnorm_groups_that_divide_every_width_are_accepted(groups):
    model = build_model(_config(norm="gn", groups=groups))
    assert {m.groups for m in model.modules() if hasattr(m, "groups") and not isinstance(m, nn.Conv2d)} == {groups}


@pytest.mark.parametrize("out_channels, stride", [(32, 2), (16, 1)], ids=["transition", "identity-shortcut"])
@pytest.mark.parametrize("shortcut", ["A", "B"])
@pytest.mark.parametrize("norm", NORM_LAYERS)
def test_basic_block_in_place_relu_and_sum_give_the_out_of_place_outputs_and_gradients(norm, shortcut,
                                                                                       out_channels, stride):
    """The block overwrites its norms' outputs; that must not change what autograd computes for any norm,
    nor touch the block's input, which an identity shortcut hands on as it is."""
    torch.manual_seed(0)
    block = BasicBlock(16, out_channels, stride=stride, norm_layer=get_norm_layer(norm, groups=GROUPS),
                       shortcut=shortcut, act_layer=RELU).train()
    twin = copy.deepcopy(block)
    x = torch.randn(4, 16, 8, 8, generator=torch.Generator().manual_seed(2), requires_grad=True)
    x_twin = x.detach().clone().requires_grad_()
    upstream = torch.randn(4, out_channels, 8 // stride, 8 // stride, generator=torch.Generator().manual_seed(3))

    out = block(x)
    out.backward(upstream)
    # The same block written without any in-place op.
    residual = twin.norm2(twin.conv2(F.relu(twin.norm1(twin.conv1(x_twin)))))
    reference = F.relu(residual + twin.shortcut(x_twin))
    reference.backward(upstream)

    torch.testing.assert_close(out, reference, rtol=0, atol=0)
    torch.testing.assert_close(x, x_twin, rtol=0, atol=0)
    torch.testing.assert_close(x.grad, x_twin.grad, rtol=0, atol=0)
    for (name, param), twin_param in zip(block.named_parameters(), twin.parameters()):
        torch.testing.assert_close(param.grad, twin_param.grad, rtol=0, atol=0, msg=name)

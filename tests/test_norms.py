"""cifarlab.nn.norms: the from-scratch norms against torch's built-ins (in float64, and under bf16 against
the rounded float32 result), the BIN gate helpers, and the norm registry.

The twin comparisons run in float64: the norms sum hundreds of values per statistic, and float32 rounding
in those sums (taken in a different order by torch) puts gradient differences near 1e-5, which
would make a 1e-5 tolerance flaky. In float64 the two agree to ~1e-12, so 1e-5 still catches any
real mistake.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.errors import CifarlabError
from cifarlab.nn.norm_registry import NORM_LAYERS, get_norm_layer
from cifarlab.nn.norms import (
    BatchInstanceNorm2d,
    BatchNorm2d,
    GroupNorm2d,
    InstanceNorm2d,
    LayerNorm2d,
    clip_gates_,
    gate_parameters,
)

N, C, H, W = 6, 8, 6, 6
GROUPS = 4
TOL = {"atol": 1e-5, "rtol": 1e-5}

# name -> (ours, torch twin), each a constructor taking num_channels.
TWINS: dict[str, tuple[Callable[[int], nn.Module], Callable[[int], nn.Module]]] = {
    "bn": (BatchNorm2d, nn.BatchNorm2d),
    "in": (InstanceNorm2d, lambda c: nn.InstanceNorm2d(c, affine=True)),
    "ln": (LayerNorm2d, lambda c: nn.GroupNorm(1, c)),
    "gn": (lambda c: GroupNorm2d(c, groups=GROUPS), lambda c: nn.GroupNorm(GROUPS, c)),
}
MEMORY_FORMATS = {"nchw": torch.contiguous_format, "channels_last": torch.channels_last}


def _input(seed: int, memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """A float64 batch whose channels have different means and spreads, so statistics matter."""
    g = torch.Generator().manual_seed(seed)
    offset = torch.randn(1, C, 1, 1, generator=g, dtype=torch.float64) * 2
    spread = torch.rand(1, C, 1, 1, generator=g, dtype=torch.float64) * 3 + 0.5
    x = torch.randn(N, C, H, W, generator=g, dtype=torch.float64) * spread + offset
    return x.contiguous(memory_format=memory_format)


def _twin_modules(name: str) -> tuple[nn.Module, nn.Module]:
    """Ours and torch's twin in float64, sharing one random, non-trivial weight and bias."""
    make_ours, make_ref = TWINS[name]
    return _with_shared_affine(make_ours(C).double(), make_ref(C).double())


def _with_shared_affine(ours: nn.Module, ref: nn.Module) -> tuple[nn.Module, nn.Module]:
    g = torch.Generator().manual_seed(1)
    weight = 1 + 0.5 * torch.randn(C, generator=g, dtype=torch.float64)
    bias = torch.randn(C, generator=g, dtype=torch.float64)
    with torch.no_grad():
        for m in (ours, ref):
            m.weight.copy_(weight)
            m.bias.copy_(bias)
    return ours, ref


def _forward_backward(
    module: nn.Module, x: torch.Tensor, grad: torch.Tensor
) -> dict[str, torch.Tensor]:
    """Output and the gradients of x and of every parameter for upstream gradient `grad`."""
    module.zero_grad(set_to_none=True)
    x = x.detach().clone().requires_grad_()
    y = module(x)
    y.backward(grad)
    results = {"out": y.detach(), "x.grad": x.grad}
    results.update({f"{n}.grad": p.grad for n, p in module.named_parameters()})
    return results


def _assert_same(ours: dict[str, torch.Tensor], ref: dict[str, torch.Tensor]) -> None:
    for key, expected in ref.items():
        torch.testing.assert_close(ours[key], expected, **TOL, msg=lambda m, k=key: f"{k}: {m}")


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS.values(), ids=MEMORY_FORMATS.keys())
@pytest.mark.parametrize("name", TWINS)
def test_forward_and_all_gradients_match_torch_twin_in_train_mode(name, memory_format):
    ours, ref = _twin_modules(name)
    for step in range(3):
        x = _input(seed=10 + step, memory_format=memory_format)
        grad = _input(seed=100 + step, memory_format=memory_format)  # a random upstream gradient
        _assert_same(_forward_backward(ours, x, grad), _forward_backward(ref, x, grad))


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS.values(), ids=MEMORY_FORMATS.keys())
@pytest.mark.parametrize("name", TWINS)
def test_forward_and_all_gradients_match_torch_twin_in_eval_mode(name, memory_format):
    ours, ref = _twin_modules(name)
    # Train steps first, so that BN's running statistics differ from their initial 0 and 1.
    with torch.no_grad():
        for step in range(3):
            x = _input(seed=20 + step, memory_format=memory_format)
            ours(x)
            ref(x)
    ours.eval()
    ref.eval()
    x = _input(seed=30, memory_format=memory_format)
    grad = _input(seed=31, memory_format=memory_format)
    _assert_same(_forward_backward(ours, x, grad), _forward_backward(ref, x, grad))
    # Eval must neither use nor update batch statistics.
    for buffer_name, expected in ref.named_buffers():
        torch.testing.assert_close(ours.get_buffer(buffer_name), expected, **TOL)


# One group is LayerNorm by another name and one group per channel is InstanceNorm; with one group
# the pooled statistics are a stride-0 view, which an in-place write in backward used to trip over.
GN_GROUPINGS = {"one-group": 1, "two-groups": 2, "group-per-channel": C}


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS.values(), ids=MEMORY_FORMATS.keys())
@pytest.mark.parametrize("groups", GN_GROUPINGS.values(), ids=GN_GROUPINGS.keys())
def test_groupnorm_forward_and_all_gradients_match_torch_at_every_grouping(groups, memory_format):
    ours, ref = _with_shared_affine(GroupNorm2d(C, groups=groups).double(), nn.GroupNorm(groups, C).double())
    for mode in ("train", "eval"):
        ours.train(mode == "train")
        ref.train(mode == "train")
        x = _input(seed=130, memory_format=memory_format)
        grad = _input(seed=131, memory_format=memory_format)
        _assert_same(_forward_backward(ours, x, grad), _forward_backward(ref, x, grad))


GRADCHECK_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "bn": BatchNorm2d, "in": InstanceNorm2d, "bin": BatchInstanceNorm2d, "ln": LayerNorm2d,
    **{f"gn-{label}": functools.partial(GroupNorm2d, groups=groups)
       for label, groups in {"one-group": 1, "two-groups": 2, "group-per-channel": 4}.items()},
}


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("name", GRADCHECK_NORMS)
def test_hand_written_backward_passes_gradcheck_in_float64(name, mode):
    """Finite differences of the forward against the hand-derived backward, for x and every parameter."""
    norm = GRADCHECK_NORMS[name](4).double().train(mode == "train")
    g = torch.Generator().manual_seed(3)
    names = [n for n, _ in norm.named_parameters()]
    # Weights away from 1, biases away from 0 and BIN gates strictly inside (0, 1), so no term vanishes.
    values = [torch.rand(4, generator=g, dtype=torch.float64).mul(0.8).add(0.1).requires_grad_() for _ in names]
    x = torch.randn(3, 4, 3, 3, generator=g, dtype=torch.float64, requires_grad=True)
    if mode == "eval" and isinstance(norm, BatchNorm2d | BatchInstanceNorm2d):
        with torch.no_grad():
            norm.running_mean.uniform_(-1, 1, generator=g)
            norm.running_var.uniform_(0.5, 2, generator=g)

    def normalized(x: torch.Tensor, *params: torch.Tensor) -> torch.Tensor:
        return torch.func.functional_call(norm, dict(zip(names, params)), (x,))

    assert torch.autograd.gradcheck(normalized, (x, *values))


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS.values(), ids=MEMORY_FORMATS.keys())
def test_batchnorm_running_stats_match_torch_unbiased_update_after_several_steps(memory_format):
    ours, ref = _twin_modules("bn")
    for step in range(5):
        x = _input(seed=40 + step, memory_format=memory_format)
        ours(x)
        ref(x)
    # torch folds the unbiased batch variance into running_var; with n = N*H*W = 216 a biased one
    # would be off by a factor 215/216 in each step's share, far beyond the tolerance.
    torch.testing.assert_close(ours.running_mean, ref.running_mean, **TOL)
    torch.testing.assert_close(ours.running_var, ref.running_var, **TOL)
    assert ours.num_batches_tracked.dtype == torch.long
    assert ours.num_batches_tracked.item() == ref.num_batches_tracked.item() == 5


def test_batchnorm_state_dict_loads_into_torch_batchnorm_and_back():
    ours, ref = BatchNorm2d(C), nn.BatchNorm2d(C)
    ours(_input(seed=50).float())
    ref.load_state_dict(ours.state_dict())  # strict: the same keys
    BatchNorm2d(C).load_state_dict(ref.state_dict())
    torch.testing.assert_close(ref.running_var, ours.running_var)


def test_batchnorm_rejects_one_value_per_channel_in_training_like_torch():
    with pytest.raises(ValueError):
        nn.BatchNorm2d(C)(torch.randn(1, C, 1, 1))
    with pytest.raises(ValueError):
        BatchNorm2d(C)(torch.randn(1, C, 1, 1))


@pytest.mark.parametrize("name", TWINS)
def test_norm_output_keeps_channels_last_layout(name):
    ours, _ = _twin_modules(name)
    y = ours(_input(seed=60, memory_format=torch.channels_last))
    assert y.is_contiguous(memory_format=torch.channels_last)


# --- Batch-instance normalization ---------------------------------------------------------------


def _bin_with_affine_of(ref: nn.Module, rho: float) -> BatchInstanceNorm2d:
    """A float64 BIN with `ref`'s weight and bias and every gate entry set to `rho`."""
    bin_ = BatchInstanceNorm2d(C).double()
    with torch.no_grad():
        bin_.weight.copy_(ref.weight)
        bin_.bias.copy_(ref.bias)
        bin_.rho.fill_(rho)
    return bin_


def test_bin_gate_rho_starts_at_one():
    bin_ = BatchInstanceNorm2d(C)
    assert isinstance(bin_.rho, nn.Parameter)
    assert bin_.rho.shape == (C,)
    assert torch.equal(bin_.rho.detach(), torch.ones(C))


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS.values(), ids=MEMORY_FORMATS.keys())
def test_bin_with_rho_one_equals_torch_batchnorm_in_train_and_eval(memory_format):
    _, ref = _twin_modules("bn")
    bin_ = _bin_with_affine_of(ref, 1.0)
    for step in range(4):
        x = _input(seed=70 + step, memory_format=memory_format)
        grad = _input(seed=170 + step, memory_format=memory_format)
        _assert_same(_forward_backward(bin_, x, grad), _forward_backward(ref, x, grad))
    torch.testing.assert_close(bin_.running_mean, ref.running_mean, **TOL)
    torch.testing.assert_close(bin_.running_var, ref.running_var, **TOL)
    assert bin_.num_batches_tracked.item() == ref.num_batches_tracked.item()
    bin_.eval()
    ref.eval()
    x = _input(seed=80, memory_format=memory_format)
    grad = _input(seed=81, memory_format=memory_format)
    _assert_same(_forward_backward(bin_, x, grad), _forward_backward(ref, x, grad))


@pytest.mark.parametrize("memory_format", MEMORY_FORMATS.values(), ids=MEMORY_FORMATS.keys())
def test_bin_with_rho_zero_equals_torch_instancenorm_in_train_and_eval(memory_format):
    _, ref = _twin_modules("in")
    bin_ = _bin_with_affine_of(ref, 0.0)
    for mode in ("train", "eval"):
        bin_.train(mode == "train")
        x = _input(seed=90, memory_format=memory_format)
        grad = _input(seed=91, memory_format=memory_format)
        _assert_same(_forward_backward(bin_, x, grad), _forward_backward(ref, x, grad))


def _gated_reference(
    bn: nn.BatchNorm2d, in_: nn.InstanceNorm2d, weight, bias, rho, x: torch.Tensor
) -> torch.Tensor:
    """Nam & Kim's BIN from torch's affine-free BN and IN: w * (rho x_bn + (1-rho) x_in) + b."""
    view = (1, -1, 1, 1)
    mixed = rho.view(view) * bn(x) + (1 - rho.view(view)) * in_(x)
    return weight.view(view) * mixed + bias.view(view)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_bin_with_mixed_rho_equals_gated_sum_of_torch_bn_and_in(mode):
    g = torch.Generator().manual_seed(2)
    weight = (1 + 0.5 * torch.randn(C, generator=g, dtype=torch.float64)).requires_grad_()
    bias = torch.randn(C, generator=g, dtype=torch.float64).requires_grad_()
    rho = torch.rand(C, generator=g, dtype=torch.float64).requires_grad_()
    bn = nn.BatchNorm2d(C, affine=False).double()
    in_ = nn.InstanceNorm2d(C, affine=False).double()
    bin_ = BatchInstanceNorm2d(C).double()
    with torch.no_grad():
        bin_.weight.copy_(weight)
        bin_.bias.copy_(bias)
        bin_.rho.copy_(rho)
        for step in range(3):  # non-trivial running statistics for eval
            x = _input(seed=110 + step)
            bin_(x)
            bn(x)
    for module in (bin_, bn, in_):
        module.train(mode == "train")

    x = _input(seed=120)
    grad = _input(seed=121)
    ours = _forward_backward(bin_, x, grad)
    x_ref = x.clone().requires_grad_()
    y_ref = _gated_reference(bn, in_, weight, bias, rho, x_ref)
    y_ref.backward(grad)
    ref = {
        "out": y_ref.detach(),
        "x.grad": x_ref.grad,
        "weight.grad": weight.grad,
        "bias.grad": bias.grad,
        "rho.grad": rho.grad,
    }
    _assert_same(ours, ref)
    torch.testing.assert_close(bin_.running_mean, bn.running_mean, **TOL)
    torch.testing.assert_close(bin_.running_var, bn.running_var, **TOL)


def _model_with_two_bins() -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(3, C, 3, padding=1),
        BatchInstanceNorm2d(C),
        nn.ReLU(),
        nn.Sequential(nn.Conv2d(C, C, 3, padding=1), BatchNorm2d(C), BatchInstanceNorm2d(C)),
    )


def test_gate_parameters_returns_every_bin_rho_and_nothing_else():
    model = _model_with_two_bins()
    gates = gate_parameters(model)
    assert len(gates) == 2
    assert gates[0] is model[1].rho
    assert gates[1] is model[3][2].rho


def test_clip_gates_after_sgd_step_brings_rho_into_unit_interval_and_keeps_in_range_entries():
    model = _model_with_two_bins()
    gates = gate_parameters(model)
    with torch.no_grad():
        for gate in gates:
            gate.copy_(torch.linspace(0.1, 0.9, C))
    opt = torch.optim.SGD(gates, lr=1.0)
    # Upstream gradients of +-0.5 and 0: some gates leave [0, 1], some move inside it, some stay.
    pattern = torch.tensor([0.5, -0.5, 0.0, 0.2, -0.2, 0.5, -0.5, 0.0])
    for gate in gates:
        gate.grad = pattern.clone()
    opt.step()
    stepped = [gate.detach().clone() for gate in gates]
    assert any(((s < 0) | (s > 1)).any() for s in stepped), "the step should leave [0, 1]"

    clip_gates_(gates)

    for gate, before in zip(gates, stepped):
        after = gate.detach()
        assert ((after >= 0) & (after <= 1)).all()
        inside = (before >= 0) & (before <= 1)
        assert torch.equal(after[inside], before[inside])
        assert torch.equal(after[~inside], before[~inside].clamp(0, 1))
    other = model[1].weight.detach()
    assert torch.equal(other, torch.ones(C)), "clipping must touch the gates only"


def test_clip_gates_accepts_a_model_without_gates_and_changes_nothing():
    model = nn.Sequential(BatchNorm2d(C))
    before = copy.deepcopy(model.state_dict())
    assert gate_parameters(model) == []
    clip_gates_(gate_parameters(model))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


# --- Registry -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", NORM_LAYERS)
def test_every_registered_norm_builds_from_its_name_and_keeps_shape(name):
    norm = get_norm_layer(name, groups=2)(8)
    x = torch.randn(2, 8, 4, 4, requires_grad=True)
    y = norm(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    y.square().sum().backward()
    assert torch.isfinite(x.grad).all()


def test_get_norm_layer_binds_groups_for_groupnorm():
    norm = get_norm_layer("gn", groups=4)(16)
    assert isinstance(norm, GroupNorm2d)
    assert norm.groups == 4


def test_unknown_norm_name_raises_with_the_known_names():
    with pytest.raises(CifarlabError) as err:
        get_norm_layer("xyz")
    message = str(err.value)
    assert "'xyz'" in message
    assert "torch_bn, bn, in, bin, ln, gn, nn" in message


def test_groupnorm_by_name_without_groups_raises():
    with pytest.raises(CifarlabError, match="groups"):
        get_norm_layer("gn")


@pytest.mark.parametrize("groups", [5, 0])
def test_groupnorm_with_groups_not_dividing_channels_raises(groups):
    with pytest.raises(CifarlabError, match=f"groups={groups} does not divide num_channels=16"):
        GroupNorm2d(16, groups=groups)


# --- Under bf16 ---------------------------------------------------------------------------------

BF16_BATCH = 4
EPS = 1e-5
BF16_NORMS: dict[str, Callable[[int], nn.Module]] = {
    "bn": BatchNorm2d, "in": InstanceNorm2d, "bin": BatchInstanceNorm2d, "ln": LayerNorm2d,
    "gn": lambda c: GroupNorm2d(c, groups=GROUPS),
}


def _reference_norm(name: str, x: torch.Tensor, module: nn.Module, training: bool) -> torch.Tensor:
    """torch's functional norms in float64; BIN as rho * BN + (1 - rho) * IN under one affine."""
    x = x.double()
    w, b = module.weight.detach().double(), module.bias.detach().double()
    running = (module.running_mean.double(), module.running_var.double()) if hasattr(module, "running_mean") else None
    if name == "in":
        return F.instance_norm(x, weight=w, bias=b, eps=EPS)
    if name in ("ln", "gn"):
        return F.group_norm(x, 1 if name == "ln" else GROUPS, w, b, eps=EPS)
    bn = F.batch_norm(x, *(running if not training else (None, None)), training=training, eps=EPS)
    if name == "bn":
        return bn * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)
    rho = module.rho.detach().double().view(1, -1, 1, 1)
    mixed = rho * bn + (1 - rho) * F.instance_norm(x, eps=EPS)
    return mixed * w.view(1, -1, 1, 1) + b.view(1, -1, 1, 1)


@pytest.mark.parametrize("autocast", [False, True], ids=["plain", "autocast"])
@pytest.mark.parametrize("name", list(BF16_NORMS))
def test_norm_of_a_bf16_input_is_bf16_and_equals_the_rounded_norm_of_the_float32_upcast(name, autocast):
    g = torch.Generator().manual_seed(5)
    # A large offset next to a small spread: statistics taken in bf16 (8 bits of mantissa, a step of
    # 0.5 near 100) would be off by ~0.1 standard deviations.
    offset = 100 + torch.randn(1, C, 1, 1, generator=g) * 20
    x16 = (offset + torch.randn(BF16_BATCH, C, H, W, generator=g) * 3).bfloat16().requires_grad_()
    x32 = x16.detach().float().requires_grad_()  # exact: every bf16 value is a float32
    module = BF16_NORMS[name](C)
    with torch.no_grad():
        module.weight.copy_(torch.rand(C, generator=g) + 0.5)
        module.bias.copy_(torch.randn(C, generator=g))
        if name == "bin":
            module.rho.copy_(torch.rand(C, generator=g))
    twin = copy.deepcopy(module)
    context = torch.autocast("cpu", dtype=torch.bfloat16) if autocast else torch.autocast("cpu", enabled=False)

    for training in (True, False):
        module.train(training), twin.train(training)
        with context:
            out16 = module(x16)
        out32 = twin(x32)
        assert out16.dtype == torch.bfloat16, training
        # Computed in float32 exactly as from the upcast, then rounded once.
        torch.testing.assert_close(out16, out32.bfloat16(), rtol=0, atol=0, msg=f"training={training}")
        reference = _reference_norm(name, x32.detach(), twin, training)
        torch.testing.assert_close(out16.detach().double(), reference, rtol=2 ** -8, atol=1e-4,
                                   msg=f"training={training}")
        if training:
            for buffer in ("running_mean", "running_var"):
                if hasattr(module, buffer):
                    torch.testing.assert_close(getattr(module, buffer), getattr(twin, buffer), rtol=1e-6, atol=1e-6)
            grad = torch.randn(BF16_BATCH, C, H, W, generator=g).bfloat16()  # what a bf16 layer above sends back
            out16.backward(grad)
            out32.backward(grad.float())
            assert x16.grad.dtype == torch.bfloat16
            torch.testing.assert_close(x16.grad, x32.grad.bfloat16(), rtol=0, atol=0)
            for (pname, p), q in zip(module.named_parameters(), twin.parameters()):
                torch.testing.assert_close(p.grad, q.grad, rtol=1e-6, atol=1e-6, msg=pname)

"""cifarlab.train.optim: the optimizer registry, BIN's gate group, the L1 penalty and the after-step hooks,
through the training step."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from cifarlab.models import build_model
from cifarlab.nn.norms import gate_parameters
from cifarlab.train.optim import (
    OPTIMIZERS,
    after_step_hooks,
    build_optimizer,
    loss_penalty,
    penalized_weights,
)
from cifarlab.train.schedules import lr_factor
from cifarlab.train.step import Stepper

CPU = torch.device("cpu")


def _simplenn(tiny_run, **train):
    run = tiny_run(arch="simplenn", norm="nn", **train)
    torch.manual_seed(0)
    return build_model(run.model), run.train


def _batch(n: int = 8):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize(("name", "kind"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam)])
def test_the_optimizer_is_chosen_by_name_with_the_weights_group(tiny_run, name, kind):
    assert set(OPTIMIZERS) == {"sgd", "adam"}
    model, train = _simplenn(tiny_run, optimizer=name, lr=0.01, lr_scaling="none", weight_decay=1e-3)
    optimizer = build_optimizer(model, train)
    assert type(optimizer) is kind
    (group,) = optimizer.param_groups
    assert (group["name"], group["lr"], group["weight_decay"]) == ("weights", 0.01, 1e-3)
    if name == "sgd":
        assert group["momentum"] == train.momentum == 0.9
    else:
        assert group["betas"] == (0.9, 0.999)


# --- Batch-Instance Norm's gates in the optimizer ----------------------------------------------------------


def test_bin_gates_form_their_own_group_at_the_multiplied_lr_without_weight_decay(tiny_run):
    run = tiny_run(norm="bin", lr=0.05, lr_scaling="none", weight_decay=3e-4, gate_lr_multiplier=7)
    model = build_model(run.model)
    groups = {group["name"]: group for group in build_optimizer(model, run.train).param_groups}
    gates = {id(p) for p in gate_parameters(model)}
    assert gates and {id(p) for p in groups["gates"]["params"]} == gates
    assert groups["gates"]["lr"] == pytest.approx(0.35)
    assert groups["gates"]["weight_decay"] == 0.0
    assert groups["weights"]["lr"] == pytest.approx(0.05)
    assert groups["weights"]["weight_decay"] == pytest.approx(3e-4)
    grouped = [id(p) for group in groups.values() for p in group["params"]]
    assert sorted(grouped) == sorted(id(p) for p in model.parameters())  # each parameter exactly once


def test_the_schedule_scales_the_gate_group_with_the_weights(tiny_run):
    run = tiny_run(norm="bin", schedule="multistep", milestones=[2, 3], warmup_epochs=1)
    optimizer = build_optimizer(build_model(run.model), run.train)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(run.train, steps_per_epoch=4))
    for _ in range(13):  # through the warm-up and both milestones
        optimizer.step()
        scheduler.step()
        weights, gates = (group["lr"] for group in optimizer.param_groups)
        assert gates == pytest.approx(run.train.gate_lr_multiplier * weights)


def test_a_model_without_gates_has_the_weights_group_only(tiny_run):
    run = tiny_run(norm="bn")
    groups = build_optimizer(build_model(run.model), run.train).param_groups
    assert [group["name"] for group in groups] == ["weights"]


# --- the L1 penalty and the after-step hooks ---------------------------------------------------------------


def test_the_penalty_acts_on_conv_and_linear_weights_only(tiny_run):
    model, _ = _simplenn(tiny_run)
    weights = penalized_weights(model)
    assert [tuple(w.shape) for w in weights] == [(8, 3, 5, 5), (16, 8, 3, 3), (120, 576), (84, 120), (10, 84)]


def test_no_penalty_without_l1(tiny_run):
    model, train = _simplenn(tiny_run, l1=0)
    assert loss_penalty(model, train) is None


def test_l1_adds_its_coefficient_times_the_sign_of_each_weight_to_the_gradient(tiny_run):
    """The penalty is part of the loss (unlike an L1 computed on `param.data`, which has no gradient):
    one plain SGD step moves every weight by lr * (its cross-entropy gradient + l1 * sign(w))."""
    l1, lr = 0.01, 0.5
    model, train = _simplenn(tiny_run, l1=l1, lr=lr, lr_scaling="none", momentum=0.0, weight_decay=0.0)
    twin = copy.deepcopy(model)
    images, labels = _batch()
    optimizer = build_optimizer(model, train)
    stepper = Stepper(model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0),
                      device=CPU, penalty=loss_penalty(model, train))
    loss_sum, _, seen, _ = stepper.run([(images, labels)])

    cross_entropy = F.cross_entropy(twin(images), labels)
    cross_entropy.backward()
    assert loss_sum / seen == pytest.approx(cross_entropy.item(), rel=1e-6)  # the logged loss is the data loss
    for (name, after), before in zip(model.named_parameters(), twin.parameters()):
        penalty_grad = l1 * before.detach().sign() if before.dim() > 1 else 0.0
        expected = before.detach() - lr * (before.grad + penalty_grad)
        torch.testing.assert_close(after.detach(), expected, rtol=1e-5, atol=1e-6, msg=name)


def test_only_a_model_with_gates_gets_an_after_step_hook(tiny_run):
    assert after_step_hooks(_simplenn(tiny_run)[0]) == []
    bin_model = build_model(tiny_run(norm="bin").model)
    (hook,) = after_step_hooks(bin_model)
    gate = next(m.rho for m in bin_model.modules() if hasattr(m, "rho"))
    with torch.no_grad():
        gate.copy_(torch.linspace(-1.0, 3.0, gate.numel()))
    inside = (gate > 0) & (gate < 1)
    expected = gate.detach().clamp(0, 1)
    hook()
    assert torch.equal(gate.detach(), expected)
    assert inside.any() and (gate.detach() == 0).any() and (gate.detach() == 1).any()

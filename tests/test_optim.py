"""The optimizer registry, the L1 penalty and the after-step hooks, through the training step."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from runs import run_config

from cifarlab.models import build_model
from cifarlab.optim import OPTIMIZERS, after_step_hooks, build_optimizer, loss_penalty, penalized_weights
from cifarlab.training import Stepper

CPU = torch.device("cpu")
UNUSED = "unused.tar.gz"


def _simplenn(**train):
    run = run_config(UNUSED, arch="simplenn", norm="nn", **train)
    torch.manual_seed(0)
    return build_model(run.model), run.train


def _batch(n: int = 8):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


@pytest.mark.parametrize(("name", "kind"), [("sgd", torch.optim.SGD), ("adam", torch.optim.Adam)])
def test_the_optimizer_is_chosen_by_name_with_the_weights_group(name, kind):
    assert set(OPTIMIZERS) == {"sgd", "adam"}
    model, train = _simplenn(optimizer=name, lr=0.01, lr_scaling="none", weight_decay=1e-3)
    optimizer = build_optimizer(model, train)
    assert type(optimizer) is kind
    (group,) = optimizer.param_groups
    assert (group["name"], group["lr"], group["weight_decay"]) == ("weights", 0.01, 1e-3)
    if name == "sgd":
        assert group["momentum"] == train.momentum == 0.9
    else:
        assert group["betas"] == (0.9, 0.999)


def test_the_penalty_acts_on_conv_and_linear_weights_only():
    model, _ = _simplenn()
    weights = penalized_weights(model)
    assert [tuple(w.shape) for w in weights] == [(8, 3, 5, 5), (16, 8, 3, 3), (120, 576), (84, 120), (10, 84)]


def test_no_penalty_without_l1():
    model, train = _simplenn(l1=0)
    assert loss_penalty(model, train) is None


def test_l1_adds_its_coefficient_times_the_sign_of_each_weight_to_the_gradient():
    """The penalty is part of the loss (unlike an L1 computed on `param.data`, which has no gradient):
    one plain SGD step moves every weight by lr * (its cross-entropy gradient + l1 * sign(w))."""
    l1, lr = 0.01, 0.5
    model, train = _simplenn(l1=l1, lr=lr, lr_scaling="none", momentum=0.0, weight_decay=0.0)
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


def test_only_a_model_with_gates_gets_an_after_step_hook():
    assert after_step_hooks(_simplenn()[0]) == []
    bin_model = build_model(run_config(UNUSED, norm="bin").model)
    (hook,) = after_step_hooks(bin_model)
    gate = next(m.rho for m in bin_model.modules() if hasattr(m, "rho"))
    with torch.no_grad():
        gate.copy_(torch.linspace(-1.0, 3.0, gate.numel()))
    inside = (gate > 0) & (gate < 1)
    expected = gate.detach().clamp(0, 1)
    hook()
    assert torch.equal(gate.detach(), expected)
    assert inside.any() and (gate.detach() == 0).any() and (gate.detach() == 1).any()

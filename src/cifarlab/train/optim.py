"""The optimizer by name with its parameter groups, the loss penalties, and the hooks run after each step."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

import torch
from torch import nn

from cifarlab.nn.norms import clip_gates_, gate_parameters

if TYPE_CHECKING:
    from cifarlab.config.sections import TrainConfig

Groups = list[dict]

OPTIMIZERS: dict[str, Callable[[Groups, TrainConfig], torch.optim.Optimizer]] = {
    "sgd": lambda groups, train: torch.optim.SGD(groups, lr=train.effective_lr, momentum=train.momentum),
    "adam": lambda groups, train: torch.optim.Adam(groups, lr=train.effective_lr),  # betas (0.9, 0.999)
}


def build_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """The named optimizer over two parameter groups: "weights" (every parameter but the gates, with
    weight decay, which is L2 coupled to the gradient) and "gates" (Batch-Instance Norm's rho, if any:
    `gate_lr_multiplier` times the lr and no weight decay, as in Nam & Kim's code). The schedule scales
    both groups alike."""
    gates = gate_parameters(model)
    gate_ids = {id(p) for p in gates}
    groups = [{"name": "weights", "params": [p for p in model.parameters() if id(p) not in gate_ids],
               "weight_decay": train.weight_decay}]
    if gates:
        groups.append({"name": "gates", "params": gates, "weight_decay": 0.0,
                       "lr": train.effective_lr * train.gate_lr_multiplier})
    return OPTIMIZERS[train.optimizer](groups, train)


def penalized_weights(model: nn.Module) -> list[nn.Parameter]:
    """The weights a penalty acts on: those of convolutions and linear layers (every parameter with
    two or more dimensions), not biases, norm affines or gates."""
    return [p for p in model.parameters() if p.dim() > 1]


def l1_penalty(weights: list[torch.Tensor], coefficient: float) -> torch.Tensor:
    """coefficient * the sum of |w| over `weights`: added to the loss, so it has a gradient (sign(w)).
    One foreach kernel for all weights, so no Python loop over them in every step."""
    return coefficient * torch.stack(torch._foreach_norm(weights, 1)).sum()


def loss_penalty(model: nn.Module, train: TrainConfig) -> Callable[[], torch.Tensor] | None:
    """The penalty the loss adds for `train` (`l1` on the weights), or None when there is none."""
    if not train.l1:
        return None
    return functools.partial(l1_penalty, penalized_weights(model), train.l1)


def after_step_hooks(model: nn.Module) -> list[Callable[[], None]]:
    """What runs after every optimizer step: Batch-Instance Norm's gates clipped back into [0, 1]."""
    gates = gate_parameters(model)
    return [functools.partial(clip_gates_, gates)] if gates else []

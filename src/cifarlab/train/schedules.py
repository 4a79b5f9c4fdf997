"""Learning-rate schedules by name: a multiplier of the base lr per optimizer step, after a linear warm-up.

Each schedule also says the epoch of its last decay, after which early stopping may end a run
(`training.stops_early`): a plateau before a decay says nothing about what the lower lr will reach.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

from cifarlab.errors import CifarlabError

if TYPE_CHECKING:
    from cifarlab.config.sections import TrainConfig


class Schedule(NamedTuple):
    """`factor(step, steps_per_epoch, train)`: the lr multiplier at optimizer step `step` (from 0);
    `last_decay_epoch(train)`: the epoch during or at whose end the last decay takes effect (0: none);
    `describe(train)`: the schedule in a few words for tables."""

    factor: Callable[[int, int, TrainConfig], float]
    last_decay_epoch: Callable[[TrainConfig], int]
    describe: Callable[[TrainConfig], str]


def _step_factor(step: int, steps_per_epoch: int, train: TrainConfig) -> float:
    return train.gamma ** (step // (train.step_epochs * steps_per_epoch))


def _multistep_factor(step: int, steps_per_epoch: int, train: TrainConfig) -> float:
    return train.gamma ** sum(step >= milestone * steps_per_epoch for milestone in train.milestones)


def _cosine_factor(step: int, steps_per_epoch: int, train: TrainConfig) -> float:
    """Cosine annealing to zero (Loshchilov & Hutter 2017), without restarts."""
    return 0.5 * (1.0 + math.cos(math.pi * step / (train.epochs * steps_per_epoch)))


SCHEDULES: dict[str, Schedule] = {
    "constant": Schedule(lambda step, steps_per_epoch, train: 1.0, lambda train: 0, lambda train: "constant"),
    # x gamma after every `step_epochs` epochs
    "step": Schedule(_step_factor, lambda train: (train.epochs - 1) // train.step_epochs * train.step_epochs,
                     lambda train: f"step x{train.gamma:g} every {train.step_epochs}"),
    # x gamma after each epoch in `milestones` (He et al. 2016: x0.1 at 50% and 75% of training)
    "multistep": Schedule(_multistep_factor, lambda train: max(train.milestones, default=0),
                          lambda train: f"multistep x{train.gamma:g} after {', '.join(map(str, train.milestones))}"),
    "cosine": Schedule(_cosine_factor, lambda train: train.epochs, lambda train: "cosine"),  # decays to the end
}


def lr_factor(train: TrainConfig, steps_per_epoch: int) -> Callable[[int], float]:
    """Multiplier of the base lr at optimizer step `step`: linear warm-up over `warmup_epochs` from
    1/warm-up steps to 1, then the named schedule (counted from the start of training)."""
    warmup = train.warmup_epochs * steps_per_epoch
    schedule = SCHEDULES[train.schedule].factor

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return schedule(step, steps_per_epoch, train)

    return factor


def last_decay_epoch(train: TrainConfig) -> int:
    return SCHEDULES[train.schedule].last_decay_epoch(train)


def describe_schedule(train: TrainConfig) -> str:
    return SCHEDULES[train.schedule].describe(train)


def check_schedule(train: TrainConfig, key: str) -> None:
    """What the field checks cannot see: multistep's milestones must rise and fall inside training."""
    if train.schedule != "multistep":
        return
    milestones = train.milestones
    if not milestones or list(milestones) != sorted(set(milestones)):
        raise CifarlabError(f"{key}.milestones: expected rising epochs for the multistep schedule, got "
                            f"{list(milestones)}")
    if milestones[0] < 1 or milestones[-1] >= train.epochs:
        raise CifarlabError(f"{key}.milestones: expected epochs from 1 to {train.epochs - 1} "
                            f"(epochs is {train.epochs}), got {list(milestones)}")

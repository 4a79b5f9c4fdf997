"""cifarlab.train.schedules: every learning-rate schedule against values worked out by hand, with and without
warm-up."""

from __future__ import annotations

import math

import pytest

from cifarlab.errors import CifarlabError
from cifarlab.train.schedules import (
    SCHEDULES,
    describe_schedule,
    last_decay_epoch,
    lr_factor,
)

STEPS = 2  # optimizer steps per epoch


def _factors(tiny_run, epochs: int, **train) -> list[float]:
    cfg = tiny_run(warmup_epochs=0, **train, profile={"epochs": epochs}).train
    factor = lr_factor(cfg, STEPS)
    return [factor(step) for step in range(epochs * STEPS)]


def test_constant_keeps_the_lr(tiny_run):
    assert _factors(tiny_run, 3, schedule="constant") == [1.0] * 6


def test_step_multiplies_by_gamma_every_step_epochs(tiny_run):
    factors = _factors(tiny_run, 5, schedule="step", step_epochs=2, gamma=0.5)
    assert factors == pytest.approx([1, 1, 1, 1, 0.5, 0.5, 0.5, 0.5, 0.25, 0.25])


def test_multistep_multiplies_by_gamma_after_each_milestone_epoch(tiny_run):
    factors = _factors(tiny_run, 4, schedule="multistep", milestones=[1, 3], gamma=0.1)
    assert factors == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.1, 0.01, 0.01])


def test_cosine_anneals_from_one_towards_zero_over_every_step(tiny_run):
    factors = _factors(tiny_run, 2, schedule="cosine")
    assert factors == pytest.approx([0.5 * (1 + math.cos(math.pi * step / 4)) for step in range(4)])
    assert factors[0] == 1.0 and factors[-1] > 0


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_warmup_rises_linearly_then_hands_over_to_the_schedule(tiny_run, schedule):
    cfg = tiny_run(schedule=schedule, warmup_epochs=2, step_epochs=3, milestones=[3], profile={"epochs": 4}).train
    factor = lr_factor(cfg, STEPS)
    assert [factor(step) for step in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    unwarmed = lr_factor(tiny_run(schedule=schedule, warmup_epochs=0, step_epochs=3, milestones=[3],
                                  profile={"epochs": 4}).train, STEPS)
    assert [factor(step) for step in range(4, 8)] == [unwarmed(step) for step in range(4, 8)]


@pytest.mark.parametrize(("schedule", "expected"), [("constant", 0), ("step", 90), ("multistep", 75),
                                                     ("cosine", 100)])
def test_last_decay_epoch_of_each_schedule(tiny_run, schedule, expected):
    cfg = tiny_run(schedule=schedule, step_epochs=30, profile={"epochs": 100, "milestones": [50, 75]}).train
    assert last_decay_epoch(cfg) == expected


@pytest.mark.parametrize(("milestones", "message"), [
    ([75, 50], "expected rising epochs"), ([50, 50], "expected rising epochs"), ([], "expected rising epochs"),
    ([50, 100], "expected epochs from 1 to 99"), ([0, 50], "expected a value >= 1"),
])
def test_multistep_milestones_must_rise_inside_training(tiny_run, milestones, message):
    with pytest.raises(CifarlabError, match=f"runs.x.milestones.*{message}"):
        tiny_run(schedule="multistep", milestones=milestones, profile={"epochs": 100})


def test_each_schedule_describes_itself_for_the_parameters_table(tiny_run):
    def described(**train) -> str:
        return describe_schedule(tiny_run(**train, profile={"epochs": 100}).train)

    assert described(schedule="multistep", milestones=[50, 75]) == "multistep x0.1 after 50, 75"
    assert described(schedule="step", step_epochs=10, gamma=0.5) == "step x0.5 every 10"
    assert described(schedule="cosine") == "cosine" and described(schedule="constant") == "constant"


def test_a_step_decay_due_at_the_very_end_does_not_count_as_the_last_decay(tiny_run):
    # 30 epochs, a decay every 10: decays take effect after epochs 10 and 20; one after epoch 30 never trains.
    cfg = tiny_run(schedule="step", step_epochs=10, profile={"epochs": 30}).train
    assert last_decay_epoch(cfg) == 20

"""The training loop's schedule-facing behaviour: the logged lr, the optimizer's gate group, early stopping.

Expected values are worked out by hand from the schedule's definition, not from the code under test.
"""

from __future__ import annotations

import io
import math
from types import SimpleNamespace

import pytest
import torch
import yaml
from runs import ROOT, run_config

from cifarlab import training
from cifarlab.config import load_study
from cifarlab.inference import Predictions, predict
from cifarlab.loader import Normalizer, ResidentDataset
from cifarlab.models import build_model
from cifarlab.norms import gate_parameters
from cifarlab.optim import build_optimizer
from cifarlab.schedules import lr_factor
from cifarlab.training import show_progress, stops_early, train_run

CPU = torch.device("cpu")
UNUSED = "unused.tar.gz"  # run_config needs a data source; these tests train on `tiny_split`


def _train(run, split, tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return train_run(run, split, CPU, resume_path=tmp_path / "resume.pt", on_epoch=lambda state: None).state


# --- the lr each epoch logs ------------------------------------------------------------------------------


def test_each_epoch_logs_the_mean_lr_its_steps_trained_with_under_warmup_and_step_decay(tiny_split, tmp_path):
    # 30 train images in batches of 8: 4 steps per epoch, 16 in all; milestones after epochs 2 and 3.
    run = run_config(tmp_path / UNUSED, lr=0.1, lr_scaling="none", schedule="multistep", milestones=[2, 3],
                     warmup_epochs=1)
    history = _train(run, tiny_split, tmp_path).history
    warmup = 0.1 * (1 + 2 + 3 + 4) / 4 / 4  # steps 0-3 at 1/4, 2/4, 3/4, 4/4 of the lr
    assert [row["lr"] for row in history] == pytest.approx([warmup, 0.1, 0.01, 0.001])


def test_the_last_cosine_epoch_logs_the_lr_it_trained_with_not_the_final_zero(tiny_split, tmp_path):
    run = run_config(tmp_path / UNUSED, lr=0.1, lr_scaling="none", schedule="cosine", warmup_epochs=0)
    history = _train(run, tiny_split, tmp_path).history
    last_epoch = [0.1 * 0.5 * (1 + math.cos(math.pi * step / 16)) for step in (12, 13, 14, 15)]
    assert history[-1]["lr"] == pytest.approx(sum(last_epoch) / 4)
    assert history[-1]["lr"] > 0.001


# --- Batch-Instance Norm's gates in the optimizer ----------------------------------------------------------


def test_bin_gates_form_their_own_group_at_the_multiplied_lr_without_weight_decay(tmp_path):
    run = run_config(tmp_path / UNUSED, norm="bin", lr=0.05, lr_scaling="none", weight_decay=3e-4,
                     gate_lr_multiplier=7)
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


def test_the_schedule_scales_the_gate_group_with_the_weights(tmp_path):
    run = run_config(tmp_path / UNUSED, norm="bin", schedule="multistep", milestones=[2, 3], warmup_epochs=1)
    optimizer = build_optimizer(build_model(run.model), run.train)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(run.train, steps_per_epoch=4))
    for _ in range(13):  # through the warm-up and both milestones
        optimizer.step()
        scheduler.step()
        weights, gates = (group["lr"] for group in optimizer.param_groups)
        assert gates == pytest.approx(run.train.gate_lr_multiplier * weights)


def test_a_model_without_gates_has_the_weights_group_only(tmp_path):
    run = run_config(tmp_path / UNUSED, norm="bn")
    groups = build_optimizer(build_model(run.model), run.train).param_groups
    assert [group["name"] for group in groups] == ["weights"]


def test_the_default_gate_lr_multiplier_is_ten_as_in_the_authors_code():
    study = load_study(yaml.safe_load((ROOT / "params.yaml").read_text()))
    assert study.runs["bin-128"].train.gate_lr_multiplier == 10


# --- early stopping and the schedule -----------------------------------------------------------------------


def test_multistep_schedule_patience_counts_only_after_the_last_decay(tmp_path):
    # 100 epochs, milestones at 50% and 75%: the last decay takes effect after epoch 75.
    train = run_config(tmp_path / UNUSED, schedule="multistep",
                       profile={"epochs": 100, "patience": 20, "milestones": [50, 75]}).train
    assert not stops_early(epoch=49, best_epoch=10, train=train)  # a plateau at lr 0.1
    assert not stops_early(epoch=74, best_epoch=10, train=train)  # a plateau at lr 0.01
    assert not stops_early(epoch=94, best_epoch=10, train=train)
    assert stops_early(epoch=95, best_epoch=10, train=train)  # 20 epochs at lr 0.001 without progress
    assert not stops_early(epoch=99, best_epoch=80, train=train)  # progress after the decay restarts the count


def test_step_schedule_patience_counts_after_its_last_decay_and_constant_from_the_start(tmp_path):
    step = run_config(tmp_path / UNUSED, schedule="step", step_epochs=30, profile={"epochs": 100, "patience": 5}).train
    assert not stops_early(epoch=94, best_epoch=1, train=step)  # the last decay is after epoch 90
    assert stops_early(epoch=95, best_epoch=1, train=step)
    constant = run_config(tmp_path / UNUSED, schedule="constant", profile={"epochs": 100, "patience": 5}).train
    assert stops_early(epoch=6, best_epoch=1, train=constant)


def test_cosine_schedule_never_stops_early(tmp_path):
    train = run_config(tmp_path / UNUSED, schedule="cosine", profile={"epochs": 100, "patience": 5}).train
    assert not any(stops_early(epoch=epoch, best_epoch=1, train=train) for epoch in range(1, 100))


@pytest.mark.parametrize(("schedule", "status", "epochs_run"),
                         [("multistep", "early_stopped", 7), ("cosine", "completed", 8)])
def test_a_run_without_progress_trains_past_every_decay_before_it_stops(tiny_split, tmp_path, monkeypatch,
                                                                        schedule, status, epochs_run):
    # Validation never improves after epoch 1. With milestones after epochs 4 and 6, patience 1 ends the
    # run after epoch 7, not after epoch 2; cosine decays to the last step, so its run completes.
    monkeypatch.setattr(Predictions, "loss_and_error", lambda self: (1.0, 0.5))
    run = run_config(tmp_path / UNUSED, schedule=schedule, warmup_epochs=0,
                     profile={"epochs": 8, "patience": 1, "milestones": [4, 6]})
    state = _train(run, tiny_split, tmp_path)
    assert (state.status, state.epoch, state.best_epoch) == (status, epochs_run, 1)
    assert min(row["lr"] for row in state.history) < 0.05 * run.train.effective_lr  # trained past the decays


# --- the loss before training ----------------------------------------------------------------------------


def _curves(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if not k.endswith(("time_s", "per_s"))} for row in history]


def test_the_loss_before_training_is_the_fresh_models_and_changes_nothing_after_it(tiny_split, tmp_path,
                                                                                   monkeypatch):
    run = run_config(tmp_path / UNUSED)
    measured = _train(run, tiny_split, tmp_path / "measured")
    torch.manual_seed(run.seed)
    fresh = build_model(run.model)
    normalize = Normalizer(tiny_split.mean, tiny_split.std, CPU, channels_last=run.performance.channels_last)
    expected = predict(fresh, ResidentDataset(tiny_split.x_val, tiny_split.y_val, CPU), normalize, 64)
    assert measured.initial_val_loss == pytest.approx(expected.loss_and_error()[0], rel=1e-5)

    real_predict, calls = training.predict, []

    def skip_the_first(*args, **kwargs):  # the measurement before training, replaced by nothing at all
        calls.append(1)
        return SimpleNamespace(loss_and_error=lambda: (0.0, 0.0)) if len(calls) == 1 else real_predict(*args, **kwargs)

    monkeypatch.setattr(training, "predict", skip_the_first)
    skipped = _train(run, tiny_split, tmp_path / "skipped")
    assert skipped.initial_val_loss == 0.0
    assert _curves(skipped.history) == _curves(measured.history)


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_within_an_epoch_rewrites_one_terminal_line_and_clears_it_at_the_end():
    stream = FakeTerminal()
    batches = list(show_progress(iter("abc"), total=3, label="bn-8 epoch 2/5", stream=stream, every_s=0.0))
    assert batches == ["a", "b", "c"]
    shown = stream.getvalue().split("\r")
    assert [part.split(",")[0] for part in shown[1:4]] == [f"bn-8 epoch 2/5: step {k}/3" for k in (1, 2, 3)]
    assert shown[-1] == "\033[K"  # the last write clears the line for the epoch's summary
    assert "\n" not in stream.getvalue()


def test_progress_writes_nothing_when_output_is_not_a_terminal():
    stream = io.StringIO()  # a log file or a pipe
    assert list(show_progress(iter(range(5)), total=5, label="x", stream=stream, every_s=0.0)) == list(range(5))
    assert stream.getvalue() == ""


def test_the_start_line_names_a_replicate_its_original_and_its_seed():
    study = load_study(yaml.safe_load((ROOT / "params.yaml").read_text()))
    line = training.start_line(study.runs["gn-8-r1"], torch.device("cpu"), 40000, 10000, 5000)
    assert line.startswith("gn-8-r1 (replicate 1 of gn-8): ResNet-14")
    assert "5000 steps of 8 per epoch, 100 epochs, seed 1 |" in line
    assert "seed 0 |" in training.start_line(study.runs["gn-8"], torch.device("cpu"), 40000, 10000, 5000)


# --- the model file ---------------------------------------------------------------------------------------


def test_equal_weights_give_byte_identical_model_files_that_load_back(tmp_path):
    """DVC hashes the model file: equal weights saved twice must hash alike, or evaluate reruns for nothing."""
    from cifarlab.checkpoints import load_model, save_model

    run = run_config(tmp_path / UNUSED)
    torch.manual_seed(0)
    model = build_model(run.model)
    paths = [tmp_path / "first" / "x.pt", tmp_path / "second" / "x.pt"]
    for path in paths:
        save_model(path, model, run, summary={"best_epoch": 1}, data={"train_images": 30})
    assert paths[0].read_bytes() == paths[1].read_bytes()
    loaded, saved = load_model(paths[1], CPU)
    assert saved["summary"] == {"best_epoch": 1}
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))

"""cifarlab.train.loop: the lr each epoch logs, early stopping against the schedule, the loss before training,
an interrupt during a save, and divergence.

Expected values are worked out by hand from the schedule's definition, not from the code under test.
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from cifarlab.config.sections import RunConfig
from cifarlab.data.loader import Normalizer, ResidentDataset
from cifarlab.errors import Interrupted
from cifarlab.models import build_model
from cifarlab.train import loop
from cifarlab.train.device import configure_torch
from cifarlab.train.inference import FEATURE_QUANTILES, Predictions, predict
from cifarlab.train.loop import stops_early, train_run
from cifarlab.train.step import Stepper

CPU = torch.device("cpu")
EPOCHS = 4  # of tiny_run


def _train(run, split, tmp_path):
    tmp_path.mkdir(parents=True, exist_ok=True)
    return train_run(run, split, CPU, resume_path=tmp_path / "resume.pt", on_epoch=lambda state: None).state


# --- the lr each epoch logs ------------------------------------------------------------------------------


def test_each_epoch_logs_the_mean_lr_its_steps_trained_with_under_warmup_and_step_decay(tiny_run, tiny_split,
                                                                                        tmp_path):
    # 30 train images in batches of 8: 4 steps per epoch, 16 in all; milestones after epochs 2 and 3.
    run = tiny_run(lr=0.1, lr_scaling="none", schedule="multistep", milestones=[2, 3], warmup_epochs=1)
    history = _train(run, tiny_split, tmp_path).history
    warmup = 0.1 * (1 + 2 + 3 + 4) / 4 / 4  # steps 0-3 at 1/4, 2/4, 3/4, 4/4 of the lr
    assert [row["lr"] for row in history] == pytest.approx([warmup, 0.1, 0.01, 0.001])


def test_the_last_cosine_epoch_logs_the_lr_it_trained_with_not_the_final_zero(tiny_run, tiny_split, tmp_path):
    run = tiny_run(lr=0.1, lr_scaling="none", schedule="cosine", warmup_epochs=0)
    history = _train(run, tiny_split, tmp_path).history
    last_epoch = [0.1 * 0.5 * (1 + math.cos(math.pi * step / 16)) for step in (12, 13, 14, 15)]
    assert history[-1]["lr"] == pytest.approx(sum(last_epoch) / 4)
    assert history[-1]["lr"] > 0.001


# --- early stopping and the schedule -----------------------------------------------------------------------


def test_multistep_schedule_patience_counts_only_after_the_last_decay(tiny_run):
    # 100 epochs, milestones at 50% and 75%: the last decay takes effect after epoch 75.
    train = tiny_run(schedule="multistep", profile={"epochs": 100, "patience": 20, "milestones": [50, 75]}).train
    assert not stops_early(epoch=49, best_epoch=10, train=train)  # a plateau at lr 0.1
    assert not stops_early(epoch=74, best_epoch=10, train=train)  # a plateau at lr 0.01
    assert not stops_early(epoch=94, best_epoch=10, train=train)
    assert stops_early(epoch=95, best_epoch=10, train=train)  # 20 epochs at lr 0.001 without progress
    assert not stops_early(epoch=99, best_epoch=80, train=train)  # progress after the decay restarts the count


def test_step_schedule_patience_counts_after_its_last_decay_and_constant_from_the_start(tiny_run):
    step = tiny_run(schedule="step", step_epochs=30, profile={"epochs": 100, "patience": 5}).train
    assert not stops_early(epoch=94, best_epoch=1, train=step)  # the last decay is after epoch 90
    assert stops_early(epoch=95, best_epoch=1, train=step)
    constant = tiny_run(schedule="constant", profile={"epochs": 100, "patience": 5}).train
    assert stops_early(epoch=6, best_epoch=1, train=constant)


def test_cosine_schedule_never_stops_early(tiny_run):
    train = tiny_run(schedule="cosine", profile={"epochs": 100, "patience": 5}).train
    assert not any(stops_early(epoch=epoch, best_epoch=1, train=train) for epoch in range(1, 100))


@pytest.mark.parametrize(("schedule", "status", "epochs_run"),
                         [("multistep", "early_stopped", 7), ("cosine", "completed", 8)])
def test_a_run_without_progress_trains_past_every_decay_before_it_stops(tiny_run, tiny_split, tmp_path, monkeypatch,
                                                                        schedule, status, epochs_run):
    # Validation never improves after epoch 1. With milestones after epochs 4 and 6, patience 1 ends the
    # run after epoch 7, not after epoch 2; cosine decays to the last step, so its run completes.
    monkeypatch.setattr(Predictions, "loss_and_error", lambda self: (1.0, 0.5))
    run = tiny_run(schedule=schedule, warmup_epochs=0, profile={"epochs": 8, "patience": 1, "milestones": [4, 6]})
    state = _train(run, tiny_split, tmp_path)
    assert (state.status, state.epoch, state.best_epoch) == (status, epochs_run, 1)
    assert min(row["lr"] for row in state.history) < 0.05 * run.train.effective_lr  # trained past the decays


# --- the loss before training ----------------------------------------------------------------------------


def _curves(history: list[dict[str, float]]) -> list[dict[str, float]]:
    return [{k: v for k, v in row.items() if not k.endswith(("time_s", "per_s"))} for row in history]


def test_the_loss_before_training_is_the_fresh_models_and_changes_nothing_after_it(tiny_run, tiny_split, tmp_path,
                                                                                   monkeypatch):
    run = tiny_run()
    measured = _train(run, tiny_split, tmp_path / "measured")
    torch.manual_seed(run.seed)
    fresh = build_model(run.model)
    normalize = Normalizer(tiny_split.mean, tiny_split.std, CPU, channels_last=run.performance.channels_last)
    expected = predict(fresh, ResidentDataset(tiny_split.x_val, tiny_split.y_val, CPU), normalize, 64)
    assert measured.initial_val_loss == pytest.approx(expected.loss_and_error()[0], rel=1e-5)

    real_predict, calls = loop.predict, []

    def skip_the_first(*args, **kwargs):  # the measurement before training, replaced by nothing at all
        calls.append(1)
        return SimpleNamespace(loss_and_error=lambda: (0.0, 0.0)) if len(calls) == 1 else real_predict(*args, **kwargs)

    monkeypatch.setattr(loop, "predict", skip_the_first)
    skipped = _train(run, tiny_split, tmp_path / "skipped")
    assert skipped.initial_val_loss == 0.0
    assert _curves(skipped.history) == _curves(measured.history)


# --- an interrupt, and divergence -------------------------------------------------------------------------


def saved_epoch(path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state"]


def interrupt_the_save_of_epoch(monkeypatch, epoch: int):
    """Make the save of `epoch`'s resume state raise KeyboardInterrupt, as a SIGTERM there would; returns
    the function that restores the real save."""
    real_save = loop.save_resume_state

    def interrupted(path, fingerprint, state, *args):
        if state.epoch == epoch:
            raise KeyboardInterrupt
        real_save(path, fingerprint, state, *args)

    monkeypatch.setattr(loop, "save_resume_state", interrupted)
    return lambda: monkeypatch.setattr(loop, "save_resume_state", real_save)


def test_an_interrupt_during_the_save_of_an_epoch_names_the_epoch_on_disk(tiny_run, tiny_split, tmp_path,
                                                                          monkeypatch):
    # A SIGTERM raises KeyboardInterrupt wherever the process is; here, as the save of epoch 2 begins.
    # The save is atomic, so the file still holds epoch 1, and the message must say so.
    interrupt_the_save_of_epoch(monkeypatch, 2)
    resume = tmp_path / "resume.pt"
    with pytest.raises(Interrupted) as info:
        train_run(tiny_run(), tiny_split, CPU, resume_path=resume, on_epoch=lambda state: None)
    on_disk = saved_epoch(resume)["epoch"]
    assert on_disk == 1
    assert f"after epoch {on_disk} " in str(info.value)


def test_a_huge_lr_diverges_and_stops_at_the_first_non_finite_epoch(tiny_run, tiny_split, tmp_path):
    run = tiny_run(lr=1.0e6, lr_scaling="none", warmup_epochs=0)
    result = train_run(run, tiny_split, CPU, resume_path=tmp_path / "resume.pt", on_epoch=lambda state: None)
    state = result.state
    assert state.status == "diverged"
    last = state.history[-1]
    assert not (math.isfinite(last["train_loss"]) and math.isfinite(last["val_loss"]))
    assert all(math.isfinite(r["train_loss"]) and math.isfinite(r["val_loss"]) for r in state.history[:-1])
    assert len(state.history) == state.epoch < EPOCHS  # stopped there, did not train on
    assert f"epoch {state.epoch}" in state.stopped_reason


def test_divergence_keeps_the_best_model_of_the_epochs_before_it(tiny_run, tiny_split, tmp_path, monkeypatch):
    # Epoch 2's training loss is made NaN (the weights stay finite): the run must stop at epoch 2 and
    # hand back epoch 1's weights, which the resume file of epoch 1 holds too.
    real_run = Stepper.run
    calls = []

    def nan_on_second_epoch(self, batches):
        totals = real_run(self, batches)
        calls.append(1)
        return totals._replace(loss_sum=math.nan) if len(calls) == 2 else totals

    monkeypatch.setattr(Stepper, "run", nan_on_second_epoch)
    resume = tmp_path / "resume.pt"
    saved = {}

    def keep_model(state):
        saved[state.epoch] = torch.load(resume, map_location="cpu", weights_only=False)["model"]

    run = tiny_run()
    result = loop.train_run(run, tiny_split, CPU, resume_path=resume, on_epoch=keep_model)
    state = result.state
    assert (state.status, state.epoch, len(state.history)) == ("diverged", 2, 2)
    assert state.stopped_reason == "non-finite loss at epoch 2"
    assert state.best_epoch == 1
    final = result.model.state_dict()
    assert all(torch.equal(final[k], saved[1][k]) for k in saved[1])
    assert not all(torch.equal(saved[2][k], saved[1][k]) for k in saved[1])  # epoch 2 did change the model


# --- resuming a CPU run on a GPU host ----------------------------------------------------------------------


def test_a_cpu_run_on_a_gpu_host_saves_and_resumes_without_touching_cuda(tiny_run, tiny_split, tmp_path, monkeypatch,
                                                                          capsys):
    reference = _train(tiny_run(), tiny_split, tmp_path / "reference")

    def cuda_touched(*args, **kwargs):
        raise AssertionError("a CPU run used CUDA")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for name in ("get_rng_state", "set_rng_state", "get_rng_state_all", "set_rng_state_all", "init"):
        monkeypatch.setattr(torch.cuda, name, cuda_touched)
    restore_the_save = interrupt_the_save_of_epoch(monkeypatch, 3)
    resume = tmp_path / "resumed" / "resume.pt"
    resume.parent.mkdir()
    with pytest.raises(Interrupted):
        train_run(tiny_run(), tiny_split, CPU, resume_path=resume, on_epoch=lambda state: None)
    restore_the_save()
    capsys.readouterr()
    resumed = train_run(tiny_run(), tiny_split, CPU, resume_path=resume, on_epoch=lambda state: None).state
    assert f"resuming after epoch 2/{EPOCHS}" in capsys.readouterr().out
    assert saved_epoch(resume)["epoch"] == EPOCHS
    assert _curves(resumed.history) == _curves(reference.history)


# --- on a GPU --------------------------------------------------------------------------------------------

CUDA = torch.device("cuda")
QUANTILE_KEYS = [f"feature_q{round(p * 100):02d}" for p in FEATURE_QUANTILES]


def _with_performance(run: RunConfig, **performance) -> RunConfig:
    return dataclasses.replace(run, performance=dataclasses.replace(run.performance, **performance))


@pytest.mark.gpu
@pytest.mark.parametrize("compile_mode", ["none", "reduce-overhead"])
def test_a_tiny_run_trains_on_cuda_in_bf16_and_tracks_the_same_run_on_the_cpu(tiny_run, tiny_split, tmp_path,
                                                                               compile_mode):
    # bn in batches of 8: 30 images leave a last batch of 6 each epoch, which a compiled step runs eagerly.
    run = _with_performance(tiny_run(), compile=compile_mode)
    assert run.performance.bf16 and run.performance.channels_last
    (tmp_path / "cuda").mkdir()
    torch._dynamo.reset()
    try:
        result = train_run(run, tiny_split, CUDA, resume_path=tmp_path / "cuda" / "resume.pt",
                           on_epoch=lambda state: None)
    finally:
        torch._dynamo.reset()
    on_cpu = _train(_with_performance(run, compile="none"), tiny_split, tmp_path / "cpu")
    state = result.state
    assert (state.status, state.epoch) == ("completed", EPOCHS)
    assert all(p.device.type == CUDA.type for p in result.model.parameters())
    # The same initial weights (drawn on the CPU) and the same batches; bf16 rounding apart, the same run.
    assert state.initial_val_loss == pytest.approx(on_cpu.initial_val_loss, abs=5e-2)
    assert [row["lr"] for row in state.history] == pytest.approx([row["lr"] for row in on_cpu.history])
    assert [row["train_loss"] for row in state.history] == pytest.approx(
        [row["train_loss"] for row in on_cpu.history], abs=0.1)
    for row in state.history:
        assert math.isfinite(row["train_loss"]) and math.isfinite(row["val_loss"]) and 0 <= row["val_error"] <= 1
        quantiles = [row[key] for key in QUANTILE_KEYS]
        assert all(map(math.isfinite, quantiles)) and quantiles == sorted(quantiles)


@pytest.mark.gpu
def test_feature_quantiles_on_cuda_are_the_cpus(monkeypatch):
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(10_000, 10, generator=g), torch.randint(0, 10, (10_000,), generator=g)
    features = torch.randn(10_000, 64, generator=g).relu().to(torch.bfloat16)  # as under autocast, after a ReLU
    on_cpu = Predictions(logits, features, labels).feature_quantiles()
    on_gpu = Predictions(logits.to(CUDA), features.to(CUDA), labels.to(CUDA)).feature_quantiles()
    assert list(on_gpu) == [key.removeprefix("feature_") for key in QUANTILE_KEYS]
    assert on_gpu == pytest.approx(on_cpu, rel=1e-6, abs=1e-7)


@pytest.fixture
def deterministic_torch(monkeypatch):
    """CUBLAS_WORKSPACE_CONFIG deterministic for the test; it, torch's determinism and cuDNN autotuning as they
    were after it."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    yield
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.benchmark = benchmark


@pytest.mark.gpu
def test_a_deterministic_cuda_run_interrupted_and_resumed_equals_an_uninterrupted_one_bit_for_bit(
        tiny_run, tiny_split, tmp_path, monkeypatch, capsys, deterministic_torch):
    run = _with_performance(tiny_run(), deterministic=True)
    configure_torch(run.performance)

    def on_cuda(folder: str, **kwargs):
        (tmp_path / folder).mkdir(exist_ok=True)
        return train_run(run, tiny_split, CUDA, resume_path=tmp_path / folder / "resume.pt",
                         on_epoch=lambda state: None, **kwargs)

    straight, again = on_cuda("straight"), on_cuda("again")
    assert _curves(again.state.history) == _curves(straight.state.history)  # deterministic: the same bits

    restore_the_save = interrupt_the_save_of_epoch(monkeypatch, 3)
    with pytest.raises(Interrupted):
        on_cuda("resumed")
    restore_the_save()
    saved = torch.load(tmp_path / "resumed" / "resume.pt", map_location="cpu", weights_only=False)
    assert saved["state"]["epoch"] == 2
    assert isinstance(saved["rng"]["cuda"], torch.Tensor)  # the training GPU's generator, not a list of every GPU's
    momentum = [s["momentum_buffer"] for s in saved["optimizer"]["state"].values()]
    assert momentum and all(m is not None for m in momentum)
    capsys.readouterr()
    resumed = on_cuda("resumed")
    assert f"resuming after epoch 2/{EPOCHS}" in capsys.readouterr().out
    assert _curves(resumed.state.history) == _curves(straight.state.history)
    theirs = straight.model.state_dict()
    assert all(torch.equal(value, theirs[key]) for key, value in resumed.model.state_dict().items())

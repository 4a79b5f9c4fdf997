"""The one training loop: a named optimizer and schedule, early stopping on validation accuracy, resumable.

Every option changes behaviour through a small named piece (a schedule, the optimizer and its parameter
groups, a loss penalty, augmentation on or off, the hooks after each step such as the gate clipping of
Batch-Instance Norm), never through a branch on the run's name.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cifarlab.config.sections import RunConfig, TrainConfig
from cifarlab.data.loader import Normalizer, ResidentDataset
from cifarlab.data.split import Split
from cifarlab.errors import Interrupted
from cifarlab.models import build_model
from cifarlab.train.console import clear_progress, show_progress, start_line
from cifarlab.train.inference import eval_batch_size_for, predict
from cifarlab.train.optim import build_optimizer, loss_penalty
from cifarlab.train.resume import (
    TrainState,
    load_resume_state,
    save_resume_state,
    set_rng_states,
    snapshot,
)
from cifarlab.train.schedules import last_decay_epoch, lr_factor
from cifarlab.train.step import Stepper, amp_dtype_for


@dataclass(frozen=True)
class TrainResult:
    state: TrainState
    model: nn.Module
    train_images: int  # the images it trained on and validated with
    val_images: int


def train_run(run: RunConfig, split: Split, device: torch.device, *, resume_path: Path,
              on_epoch: Callable[[TrainState], None], data_hash: str = "") -> TrainResult:
    """Train `run` on `split`, resuming from `resume_path` when it holds this run's state.

    `on_epoch` sees the state after every completed epoch (for logs and progress). The returned state
    holds the best model (by validation accuracy) and why training stopped.
    """
    cfg = run.train
    torch.manual_seed(run.seed)
    model = build_model(run.model).to(device)
    train_images = cfg.train_images or len(split.y_train)
    val_images = cfg.val_images or len(split.y_val)
    train_data = ResidentDataset(split.x_train[:train_images], split.y_train[:train_images], device)
    val_data = ResidentDataset(split.x_val[:val_images], split.y_val[:val_images], device)
    perf = run.performance
    normalize = Normalizer(split.mean, split.std, device, channels_last=perf.channels_last)
    steps_per_epoch = math.ceil(len(train_data) / cfg.batch_size)
    optimizer = build_optimizer(model, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_factor(cfg, steps_per_epoch))
    stepper = Stepper(model, optimizer, scheduler, device=device, channels_last=perf.channels_last,
                      amp_dtype=amp_dtype_for(perf, device), compile_mode=perf.compile,
                      penalty=loss_penalty(model, cfg))
    fingerprint = f"{run.fingerprint()}-{data_hash}"
    print(start_line(run, device, len(train_data), len(val_data), steps_per_epoch), flush=True)

    start = TrainState()
    saved = load_resume_state(resume_path, fingerprint)
    if saved is not None and saved["state"].get("delivered"):
        # The stage already delivered this run; DVC runs it again only when forced (`-f`) or when its
        # inputs changed, code included, and either way the old result is not the answer.
        print(f"{run.name}: {resume_path} holds this run finished and delivered "
              f"({saved['state']['status'].replace('_', ' ')} after epoch {saved['state']['epoch']}); "
              "training it again from the start")
        saved = None
    if saved is not None:
        start = TrainState(**saved["state"])
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        set_rng_states(saved["rng"], device)
        if start.status == "running":
            print(f"{run.name}: resuming after epoch {start.epoch}/{cfg.epochs} from {resume_path} "
                  "(delete it to start over)")
        else:  # finished, but stopped before its outputs were saved: they are made from the state on disk
            print(f"{run.name}: {resume_path} holds this run finished; saving its outputs without training")

    if start.epoch == 0:  # the model as initialised; a resumed run keeps the value it saved
        with stepper.autocast():  # eval mode, no randomness: training goes on exactly as without it
            start.initial_val_loss = predict(model, val_data, normalize,
                                             eval_batch_size_for(cfg.eval_batch_size, device)).loss_and_error()[0]
    state = start  # advances only to states already on disk, so an interruption names a saved epoch
    try:
        for state in _saved_epochs(run, start, stepper, train_data, val_data, normalize, resume_path, fingerprint):
            on_epoch(state)
    except KeyboardInterrupt:
        clear_progress(sys.stdout)
        raise Interrupted(f"{run.name} stopped during epoch {state.epoch + 1}; its state after epoch "
                          f"{state.epoch} is in {resume_path}, and the next run continues from there") from None
    if state.best_model:
        model.load_state_dict(state.best_model)
    return TrainResult(state=state, model=model, train_images=len(train_data), val_images=len(val_data))


def _saved_epochs(run: RunConfig, state: TrainState, stepper: Stepper, train_data: ResidentDataset,
                  val_data: ResidentDataset, normalize: Normalizer, resume_path: Path,
                  fingerprint: str) -> Iterator[TrainState]:
    """Train until the run completes, stops early or diverges, yielding each epoch's state once saved.

    The caller's state only ever advances to one that is on disk, so an interruption can name it.
    """
    cfg, model = run.train, stepper.model
    eval_batch_size = eval_batch_size_for(cfg.eval_batch_size, stepper.device)
    while state.status == "running":
        epoch = state.epoch + 1
        started = time.perf_counter()
        batches = train_data.train_batches(cfg.batch_size, run.seed, epoch, normalize, augment=cfg.augment)
        train_loss, train_correct, seen, mean_lr = stepper.run(
            show_progress(batches, total=math.ceil(len(train_data) / cfg.batch_size),
                          label=f"{run.name} epoch {epoch}/{cfg.epochs}", stream=sys.stdout))
        train_seconds = time.perf_counter() - started
        with stepper.autocast():
            val = predict(model, val_data, normalize, eval_batch_size)
        val_loss, val_error = val.loss_and_error()
        quantiles = val.feature_quantiles()
        row = {"epoch": epoch, "train_loss": train_loss / seen, "train_error": 1.0 - train_correct / seen,
               "val_loss": val_loss, "val_error": val_error, "lr": mean_lr,
               "epoch_time_s": train_seconds, "images_per_s": seen / train_seconds,
               "eval_time_s": time.perf_counter() - started - train_seconds,
               **{f"feature_{k}": v for k, v in quantiles.items()}}
        state = dataclasses.replace(state, epoch=epoch, history=[*state.history, row],
                                    train_time_s=state.train_time_s + time.perf_counter() - started)
        _update_status(state, row, model, cfg)
        save_resume_state(resume_path, fingerprint, state, model, stepper.optimizer, stepper.scheduler,
                          stepper.device)
        yield state


def _update_status(state: TrainState, row: dict[str, float], model: nn.Module, cfg: TrainConfig) -> None:
    """Keep the best model, and decide whether training goes on."""
    if not math.isfinite(row["train_loss"]) or not math.isfinite(row["val_loss"]):
        state.status = "diverged"
        state.stopped_reason = f"non-finite loss at epoch {row['epoch']}"
        return
    accuracy = 1.0 - row["val_error"]
    if accuracy > state.best_accuracy:
        state.best_accuracy, state.best_epoch = accuracy, int(row["epoch"])
        state.best_model = snapshot(model)
    if state.epoch >= cfg.epochs:
        state.status = "completed"
    elif stops_early(state.epoch, state.best_epoch, cfg):
        state.status = "early_stopped"
        state.stopped_reason = (f"no better validation accuracy for {cfg.patience} epochs since the last lr "
                                f"decay (epoch {last_decay_epoch(cfg)}) or the best epoch")


def stops_early(epoch: int, best_epoch: int, train: TrainConfig) -> bool:
    """Whether a run ends after `epoch` for lack of progress: patience counts only epochs after the
    schedule's last lr decay, since a plateau at a high lr says nothing about what a lower one will
    reach. Runs under the cosine schedule, which decays to the last step, therefore always complete."""
    return epoch - max(best_epoch, last_decay_epoch(train)) >= train.patience

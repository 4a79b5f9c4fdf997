"""The one training loop: a named optimizer and schedule, early stopping on validation accuracy, resumable.

Every option changes behaviour through a small named piece (a schedule, the optimizer and its parameter
groups, a loss penalty, augmentation on or off, the hooks after each step such as the gate clipping of
Batch-Instance Norm), never through a branch on the run's name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, TextIO

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cifarlab.checkpoints import save_model
from cifarlab.config import PerformanceConfig, RunConfig, TrainConfig
from cifarlab.data import Split, load_split
from cifarlab.errors import Interrupted
from cifarlab.inference import eval_batch_size_for, predict
from cifarlab.io import atomic_path
from cifarlab.loader import Normalizer, ResidentDataset
from cifarlab.models import MODELS, build_model
from cifarlab.optim import after_step_hooks, build_optimizer, loss_penalty
from cifarlab.schedules import describe_schedule, last_decay_epoch, lr_factor
from cifarlab.tracking import LiveHistory

PROGRESS_EVERY_S = 2.0  # a terminal's progress line within an epoch is rewritten at most this often


class EpochTotals(NamedTuple):
    """What `Stepper.run` measured over its batches."""

    loss_sum: float  # the summed per-image cross-entropy (without any penalty)
    correct: float  # correct predictions
    seen: int  # images
    mean_lr: float  # the base ("weights" group) lr averaged over the optimizer steps taken


class Stepper:
    """The training step: forward and loss (optionally autocast and compiled) plus `penalty`, backward,
    optimizer, schedule and the model's after-step hooks; shared by the training loop and the benchmark.

    Losses and correct counts accumulate on the device and `run` reads them once at its end, so the
    host never waits for the device inside an epoch.
    """

    def __init__(self, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: Any, *,
                 device: torch.device, channels_last: bool = False, amp_dtype: torch.dtype | None = None,
                 compile_mode: str = "none", penalty: Callable[[], torch.Tensor] | None = None) -> None:
        self.model = model.to(memory_format=torch.channels_last) if channels_last else model
        self.optimizer, self.scheduler, self.penalty = optimizer, scheduler, penalty
        self.after_step = after_step_hooks(model)
        self.device, self.channels_last, self.amp_dtype = device, channels_last, amp_dtype
        self.forward = self._forward if compile_mode == "none" else torch.compile(self._forward, mode=compile_mode)

    def autocast(self) -> contextlib.AbstractContextManager:
        """The precision context of this step, for evaluation between epochs too."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _forward(self, images: torch.Tensor,
                 labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(objective to minimise, cross-entropy, logits)."""
        with self.autocast():
            logits = self.model(images)
        loss = F.cross_entropy(logits.float(), labels)
        return (loss if self.penalty is None else loss + self.penalty()), loss, logits

    def run(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> EpochTotals:
        """Train on every batch; return the summed loss, correct predictions, images seen and mean lr."""
        self.model.train()
        loss_sum = torch.zeros((), device=self.device)
        correct = torch.zeros((), device=self.device)
        seen = steps = 0
        lr_sum = 0.0
        for images, labels in batches:
            objective, loss, logits = self.forward(images, labels)
            self.optimizer.zero_grad(set_to_none=True)
            objective.backward()
            lr_sum += self.optimizer.param_groups[0]["lr"]  # a host float: what this step uses
            steps += 1
            self.optimizer.step()
            self.scheduler.step()
            for hook in self.after_step:
                hook()
            loss_sum += loss.detach() * labels.numel()
            correct += (logits.detach().argmax(1) == labels).sum()
            seen += labels.numel()
        total_loss, total_correct = torch.stack([loss_sum, correct]).tolist()  # the one host sync
        return EpochTotals(total_loss, total_correct, seen, lr_sum / max(steps, 1))


def amp_dtype_for(performance: PerformanceConfig, device: torch.device) -> torch.dtype | None:
    """bfloat16 autocast where it pays (CUDA) and the params ask for it; full precision elsewhere."""
    return torch.bfloat16 if performance.bf16 and device.type == "cuda" else None


@dataclass
class TrainState:
    """Everything a run needs to continue after the last completed epoch."""

    epoch: int = 0  # completed epochs
    best_accuracy: float = -1.0
    best_epoch: int = 0
    best_model: dict[str, torch.Tensor] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    train_time_s: float = 0.0
    status: str = "running"  # running | completed | early_stopped | diverged
    stopped_reason: str = ""
    initial_val_loss: float | None = None  # before any step: near ln(num_classes) for a sane initialisation
    delivered: bool = False  # the stage saved this finished run's model and logs


@dataclass(frozen=True)
class TrainResult:
    state: TrainState
    model: nn.Module
    train_images: int  # the images it trained on and validated with
    val_images: int


def _rng_states() -> dict[str, Any]:
    states: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                              "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def save_resume_state(path: Path, fingerprint: str, state: TrainState, model: nn.Module,
                      optimizer: torch.optim.Optimizer, scheduler: Any) -> None:
    """Write the full training state atomically, so a kill never leaves a half-written checkpoint."""
    with atomic_path(path) as tmp:
        torch.save({"fingerprint": fingerprint, "state": state.__dict__, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": _rng_states()}, tmp)


def mark_delivered(path: Path) -> None:
    """Record in the resume state that the stage saved the finished run's outputs, so that the next time DVC
    runs the stage (forced, or because its inputs changed) the run trains again rather than being reused."""
    saved = torch.load(path, map_location="cpu", weights_only=False)
    saved["state"]["delivered"] = True
    with atomic_path(path) as tmp:
        torch.save(saved, tmp)


def load_resume_state(path: Path, fingerprint: str) -> dict[str, Any] | None:
    """The saved state if it belongs to this exact configuration and data, else None."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a checkpoint we cannot read is restarted from, never trusted
        print(f"{path}: unreadable resume state ({exc.__class__.__name__}); starting the run afresh")
        return None
    if not isinstance(saved, dict) or saved.get("fingerprint") != fingerprint:
        print(f"{path}: resume state is from a different configuration or data; starting the run afresh")
        return None
    return saved


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
        _set_rng_states(saved["rng"])
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
        save_resume_state(resume_path, fingerprint, state, model, stepper.optimizer, stepper.scheduler)
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
        state.best_model = _snapshot(model)
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


def describe_device(device: torch.device) -> str:
    """The hardware a run trained on, for the metrics and the report."""
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} threads)"


def start_line(run: RunConfig, device: torch.device, train_images: int, val_images: int,
               steps_per_epoch: int) -> str:
    """What a run is about to do, before its first (possibly long) epoch."""
    m, t = run.model, run.train
    lr_rule = (f"{t.lr:g} x {t.batch_size}/{t.lr_reference_batch}, linear scaling" if t.lr_scaling == "linear"
               else "as given")
    replicate = f" (replicate {run.replicate} of {run.replicate_of})" if run.replicate_of else ""
    line = (f"{run.name}{replicate}: {MODELS[m.arch].label(m.options)}, norm {m.norm}, {m.activation}, on "
            f"{describe_device(device)} | {train_images:,} train and {val_images:,} val images, "
            f"{steps_per_epoch} steps of {t.batch_size} per epoch, {t.epochs} epochs, seed {run.seed} | "
            f"{t.optimizer} lr "
            f"{t.effective_lr:g} ({lr_rule}), {describe_schedule(t)}")
    if run.profile_overrides:
        line += f" | profile {run.profile} overrides {run.describe_overrides()}"
    return line


def show_progress(batches: Iterable[Any], *, total: int, label: str, stream: TextIO,
                  every_s: float = PROGRESS_EVERY_S) -> Iterator[Any]:
    """Yield `batches`, showing the steps done on one line of `stream` rewritten at most every `every_s`
    seconds, when `stream` is a terminal; a log (not a terminal) gets nothing, so it holds whole lines only."""
    if not stream.isatty():
        yield from batches
        return
    started = last = time.monotonic()
    shown = False
    for step, batch in enumerate(batches, 1):
        yield batch
        now = time.monotonic()
        if now - last >= every_s:
            left = (now - started) / step * (total - step)
            stream.write(f"\r{label}: step {step}/{total}, about {left:.0f} s left\033[K")
            stream.flush()
            last, shown = now, True
    if shown:
        clear_progress(stream)  # so the epoch's own line takes its place


def clear_progress(stream: TextIO) -> None:
    """Blank a terminal's progress line, so the next line starts at the left on a clean line."""
    if stream.isatty():
        stream.write("\r\033[K")
        stream.flush()


def progress_line(run: str, state: TrainState, epochs: int) -> str:
    row = state.history[-1]
    return (f"{run} epoch {state.epoch}/{epochs}: train loss {row['train_loss']:.3f} "
            f"error {row['train_error']:.1%} | val loss {row['val_loss']:.3f} error {row['val_error']:.1%} | "
            f"lr {row['lr']:.3g} | {row['images_per_s']:.0f} img/s, {row['epoch_time_s']:.1f}s + eval "
            f"{row['eval_time_s']:.1f}s"
            + (f" | {state.status.replace('_', ' ')}" if state.status != "running" else ""))


def train_and_save(run: RunConfig, split_dir: Path, device: torch.device, *, model_path: Path,
                   live_dir: Path, resume_path: Path) -> TrainState:
    """The train stage: train (or resume) a run, log its curves, save its best model."""
    split = load_split(split_dir)
    content_sha256 = split.content_sha256  # load_split verified it, so it is not hashed again
    live: LiveHistory | None = None

    def on_epoch(state: TrainState) -> None:
        nonlocal live
        live = live or LiveHistory(live_dir, [])
        live.extend(state.history)
        print(progress_line(run.name, state, run.train.epochs), flush=True)

    result = train_run(run, split, device, resume_path=resume_path, on_epoch=on_epoch,
                       data_hash=content_sha256[:16])
    state = result.state
    live = live or LiveHistory(live_dir, [])
    live.extend(state.history)  # a run finished before this process started still gets its logs
    live.record_run({"run": run.to_record(),
                     "data": {"train_images": result.train_images, "val_images": result.val_images,
                              "test_images": len(split.y_test), "content_sha256": content_sha256}})
    live.close({"train_time_s": state.train_time_s, "device": describe_device(device)})
    # Only what identical runs share goes with the model, so equal runs give equal metrics files.
    summary = {"status": state.status, "stopped_reason": state.stopped_reason, "best_epoch": state.best_epoch,
               "epochs_run": state.epoch,
               # None, not a placeholder, when the run diverged before any epoch could be kept.
               "best_val_accuracy": state.best_accuracy if state.best_epoch else None,
               "initial_val_loss": state.initial_val_loss}
    save_model(model_path, result.model, run, summary,
               {"mean": list(split.mean), "std": list(split.std), "content_sha256": content_sha256})
    mark_delivered(resume_path)
    return state

"""What a run prints: its start line, a terminal's progress line within an epoch, a line per epoch."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

import torch

from cifarlab.config.sections import RunConfig
from cifarlab.models import model_label
from cifarlab.train.resume import TrainState
from cifarlab.train.schedules import describe_schedule

PROGRESS_EVERY_S = 2.0  # a terminal's progress line within an epoch is rewritten at most this often


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
    line = (f"{run.name}{replicate}: {model_label(m)}, norm {m.norm}, {m.activation}, on "
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

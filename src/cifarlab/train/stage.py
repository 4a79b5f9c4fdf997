"""The train stage's work: train (or resume) a run, log its curves, save its best model."""

from __future__ import annotations

from pathlib import Path

import torch

from cifarlab.config.sections import RunConfig
from cifarlab.data.split import load_split
from cifarlab.models.checkpoints import save_model
from cifarlab.train.console import describe_device, progress_line
from cifarlab.train.loop import train_run
from cifarlab.train.resume import TrainState, mark_delivered
from cifarlab.train.tracking import LiveHistory


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

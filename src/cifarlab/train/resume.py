"""A run's state after each epoch, saved atomically so that a stopped run continues where it was."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from cifarlab.io import atomic_path


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


def rng_states(device: torch.device) -> dict[str, Any]:
    """The generators a run draws from: Python's, NumPy's, torch's CPU one and, on CUDA, the training
    device's alone; a CPU run leaves CUDA untouched (reading a GPU's state would initialise CUDA)."""
    states: dict[str, Any] = {"python": random.getstate(), "numpy": np.random.get_state(),
                              "torch": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def set_rng_states(states: dict[str, Any], device: torch.device) -> None:
    """Restore `rng_states` for a run on `device`. The CUDA generator saved is the training GPU's, and it
    goes to the GPU the run trains on now, whatever its index and however many GPUs either process saw:
    under a scheduler a resumed run may get another GPU, or see one where it saw eight. A run that moved
    between a CPU and a GPU (the device is no part of its fingerprint) restores the generators both have.
    An older file's list of every GPU's state is skipped, since which of them the run used is unrecorded."""
    random.setstate(states["python"])
    np.random.set_state(states["numpy"])
    torch.set_rng_state(states["torch"])
    if device.type == "cuda" and isinstance(states.get("cuda"), torch.Tensor):
        torch.cuda.set_rng_state(states["cuda"], device)


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def save_resume_state(path: Path, fingerprint: str, state: TrainState, model: nn.Module,
                      optimizer: torch.optim.Optimizer, scheduler: Any, device: torch.device) -> None:
    """Write the full training state atomically, so a kill never leaves a half-written checkpoint."""
    with atomic_path(path) as tmp:
        torch.save({"fingerprint": fingerprint, "state": state.__dict__, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                    "rng": rng_states(device)}, tmp)


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

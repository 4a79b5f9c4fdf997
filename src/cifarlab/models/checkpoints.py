"""Self-describing model files: the weights with the model config and the run summary beside them."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifarlab.config.sections import ModelConfig, RunConfig
from cifarlab.errors import CifarlabError, one_line
from cifarlab.io import atomic_path
from cifarlab.models import build_model


def save_model(path: Path, model: nn.Module, run: RunConfig, summary: dict[str, Any],
               data: dict[str, Any]) -> None:
    """Write the best weights with everything evaluation needs, atomically."""
    # Saved through a file object: given a path, torch names the archive's records after the (random)
    # temporary file, and equal weights would hash differently, so evaluate would rerun for nothing.
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        torch.save({"model_state": model.state_dict(), "run": dataclasses.asdict(run),
                    "summary": summary, "data": data}, out)


def load_model(path: Path, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from its file alone; returns it in eval mode with the file's contents. A file that
    is not one the train stage wrote (truncated, foreign, empty) is a user error naming it."""
    if not Path(path).exists():
        raise CifarlabError(f"{path}: no model file; run the train stage first")
    not_ours = f"{path}: not a cifarlab model file"
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before refusing them
            warnings.simplefilter("ignore")
            saved = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any byte string reaches the unpickler; each failure means the same)
        raise CifarlabError(f"{not_ours} ({exc.__class__.__name__}: {one_line(exc)})") from None
    if not (isinstance(saved, dict) and isinstance(saved.get("run"), dict) and "model" in saved["run"]
            and isinstance(saved.get("model_state"), dict)):
        raise CifarlabError(f"{not_ours} (expected the train stage's record of model_state and run)")
    try:
        model = build_model(ModelConfig.from_dict(saved["run"]["model"])).to(device)
        model.load_state_dict(saved["model_state"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CifarlabError(f"{not_ours} ({exc.__class__.__name__}: {one_line(exc)})") from None
    return model.eval(), saved

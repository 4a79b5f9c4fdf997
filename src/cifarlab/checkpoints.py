"""Self-describing model files: the weights with the model config and the run summary beside them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifarlab.config import ModelConfig, RunConfig
from cifarlab.errors import CifarlabError
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
    """Rebuild the model from its file alone; returns it in eval mode with the file's contents."""
    if not Path(path).exists():
        raise CifarlabError(f"{path}: no model file; run the train stage first")
    try:
        saved = torch.load(path, map_location=device, weights_only=True)
        model = build_model(ModelConfig.from_dict(saved["run"]["model"])).to(device)
        model.load_state_dict(saved["model_state"])
    except (RuntimeError, KeyError, TypeError, EOFError) as exc:
        raise CifarlabError(f"{path}: not a cifarlab model file ({exc.__class__.__name__}: {exc})") from exc
    return model.eval(), saved

"""What every stage entry point shares: reading params.yaml, choosing the device, one-line user errors."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from cifarlab.config import Study, load_study
from cifarlab.errors import CifarlabError

PARAMS_FILE = Path("params.yaml")


def read_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """The raw params as a dict; YAML errors name the file and line."""
    try:
        with open(path) as f:
            params = yaml.safe_load(f)
    except FileNotFoundError:
        raise CifarlabError(f"{path}: not found; run the stages from the project root") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise CifarlabError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    return params


def read_study(path: Path = PARAMS_FILE) -> Study:
    """The validated study: every stage checks all of params.yaml before doing any work."""
    return load_study(read_params(path))


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU; anything else must be a device torch knows."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CifarlabError(f"device: expected auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CifarlabError(f"device: {name!r} asked for, but no CUDA device is available (use auto or cpu)")
    return device


def run_stage(body: Callable[[list[str]], None]) -> None:
    """Run a stage's body; a user error becomes one line on stderr and exit status 2."""
    try:
        body(sys.argv[1:])
    except CifarlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)

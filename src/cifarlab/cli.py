"""What every stage entry point shares: reading params.yaml, choosing the device, one-line user errors."""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

from cifarlab.config import PerformanceConfig, Study, load_study
from cifarlab.errors import CifarlabError, Interrupted

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


def configure_torch(performance: PerformanceConfig) -> None:
    """Process-wide choices a stage makes before any CUDA work: determinism, cuDNN autotuning."""
    if performance.deterministic:
        # cuBLAS needs a fixed workspace to be deterministic, and reads it when it starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(performance.deterministic)
    # Autotuning picks the fastest convolution per shape, which may differ between runs.
    torch.backends.cudnn.benchmark = not performance.deterministic


def check_compile_toolchain(performance: PerformanceConfig, device: torch.device) -> None:
    """torch.compile on a CPU builds C++ kernels with the compiler inductor looks for ($CXX, else g++, or
    clang++ on macOS); without one it fails mid-run with a long traceback, so say so before any work."""
    if performance.compile == "none" or device.type != "cpu":
        return
    compiler = os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++")
    if shutil.which(compiler) is None:
        raise CifarlabError(f"performance.compile: {performance.compile!r} on a CPU needs the C++ compiler "
                            f"{compiler!r} (or $CXX) on PATH, and there is none; install one or use compile: none")


def _interrupt_on_sigterm(signum: int, frame: object) -> None:
    # SIGTERM (a scheduler's preemption, `kill`) takes the same path as Ctrl-C.
    raise KeyboardInterrupt


def run_stage(body: Callable[[list[str]], None]) -> None:
    """Run a stage's body; a user error or an interruption becomes one line on stderr and a non-zero exit."""
    signal.signal(signal.SIGTERM, _interrupt_on_sigterm)
    try:
        body(sys.argv[1:])
    except CifarlabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except Interrupted as exc:
        print(f"interrupted: {exc}", file=sys.stderr)
        sys.exit(130)
    except KeyboardInterrupt:
        print("interrupted: stopped before finishing; every file it wrote is complete", file=sys.stderr)
        sys.exit(130)

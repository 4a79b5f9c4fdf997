"""The device and the process-wide torch settings a stage chooses before any work."""

from __future__ import annotations

import os
import shutil
import sys

import torch

from cifarlab.config.sections import PerformanceConfig
from cifarlab.errors import CifarlabError


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

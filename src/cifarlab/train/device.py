"""The device and the process-wide torch settings a stage chooses before any work."""

from __future__ import annotations

import os
import shutil
import sys
import sysconfig
from importlib.util import find_spec
from pathlib import Path

import torch

from cifarlab.config.sections import PerformanceConfig
from cifarlab.errors import CifarlabError

# The two values cuBLAS documents as deterministic; torch refuses any other under deterministic algorithms.
DETERMINISTIC_CUBLAS_WORKSPACES = (":4096:8", ":16:8")
TRITON_MIN_CAPABILITY = (7, 0)  # Triton generates no kernels for older GPUs (Pascal and before)


def resolve_device(name: str) -> torch.device:
    """`auto` picks CUDA when present, else the CPU; anything else must be a device torch knows and this
    process sees."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise CifarlabError(f"device: expected auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise CifarlabError(f"device: {name!r} asked for, but no CUDA device is available (use auto or cpu)")
    if device.type == "cuda" and device.index is not None and device.index >= (count := torch.cuda.device_count()):
        # A scheduler (the sweep, a cluster) shows each task only its own GPUs, numbered from 0.
        raise CifarlabError(f"device: {name!r} asked for, but this process sees {count} CUDA device(s), "
                            f"cuda:0 to cuda:{count - 1} (use auto or cuda)")
    return device


def check_cublas_workspace(performance: PerformanceConfig) -> None:
    """Refuse `deterministic: true` under a CUBLAS_WORKSPACE_CONFIG that is not deterministic.

    Such a value was set on purpose (a smaller workspace to save memory, a site default), so it is not
    overwritten behind the user's back; and under deterministic algorithms torch would raise at the first
    cuBLAS call, mid-run.
    """
    preset = os.environ.get("CUBLAS_WORKSPACE_CONFIG")
    if performance.deterministic and preset is not None and preset not in DETERMINISTIC_CUBLAS_WORKSPACES:
        raise CifarlabError(f"performance.deterministic: true needs CUBLAS_WORKSPACE_CONFIG unset or one of "
                            f"{', '.join(DETERMINISTIC_CUBLAS_WORKSPACES)}, and the environment sets it to "
                            f"{preset!r}; unset it or use deterministic: false")


def configure_torch(performance: PerformanceConfig) -> None:
    """Process-wide choices a stage makes before any CUDA work: determinism, cuDNN autotuning."""
    check_cublas_workspace(performance)
    if performance.deterministic:
        # cuBLAS needs a fixed workspace to be deterministic, and reads it when it starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", DETERMINISTIC_CUBLAS_WORKSPACES[0])
    torch.use_deterministic_algorithms(performance.deterministic)
    # Autotuning picks the fastest convolution per shape, which may differ between runs.
    torch.backends.cudnn.benchmark = not performance.deterministic


def check_compile_toolchain(performance: PerformanceConfig, device: torch.device) -> None:
    """What torch.compile builds its kernels with, checked before any work, since a missing piece fails at
    the first compiled step with a long traceback.

    On a CPU inductor builds C++ kernels with the compiler it looks for ($CXX, else g++, or clang++ on
    macOS); on CUDA it writes Triton kernels, and Triton builds its launcher with a C compiler ($CC, else
    gcc, else clang) on a GPU of compute capability 7.0 or later. Both load what they build as Python
    extensions, which needs Python's headers.
    """
    if performance.compile == "none":
        return
    mode = f"performance.compile: {performance.compile!r}"
    use_none = "or use compile: none"
    if device.type == "cpu":
        compiler = os.environ.get("CXX", "clang++" if sys.platform == "darwin" else "g++")
        if shutil.which(compiler) is None:
            raise CifarlabError(f"{mode} on a CPU needs the C++ compiler {compiler!r} (or $CXX) on PATH, and "
                                f"there is none; install one {use_none}")
    elif device.type == "cuda":
        if find_spec("triton") is None:
            raise CifarlabError(f"{mode} on CUDA needs the triton package, and it is not installed; install the "
                                f"one that goes with torch {torch.__version__} {use_none}")
        capability = torch.cuda.get_device_capability(device)
        if capability < TRITON_MIN_CAPABILITY:
            raise CifarlabError(f"{mode} on CUDA needs a GPU of compute capability 7.0 or later for Triton, and "
                                f"{torch.cuda.get_device_name(device)} has {capability[0]}.{capability[1]}; "
                                "use compile: none")
        chosen = os.environ.get("CC")  # Triton takes $CC as it is, so it must exist
        if not (shutil.which(chosen) if chosen else shutil.which("gcc") or shutil.which("clang")):
            raise CifarlabError(f"{mode} on CUDA needs a C compiler for Triton ($CC, gcc or clang) on PATH, and "
                                f"there is {f'no {chosen!r}' if chosen else 'none'}; install one {use_none}")
    headers = _python_include_dir()
    if not (headers / "Python.h").exists():
        raise CifarlabError(f"{mode} needs Python's C headers (Python.h in {headers}), and there are none; install "
                            f"Python's development package (e.g. python3-dev or python3-devel) {use_none}")


def _python_include_dir() -> Path:
    """Where Triton and inductor look for Python.h: the default install scheme's, except Debian's
    `posix_local`, whose include folder is empty, for which both use `posix_prefix`."""
    scheme = sysconfig.get_default_scheme()
    return Path(sysconfig.get_paths(scheme="posix_prefix" if scheme == "posix_local" else scheme)["include"])

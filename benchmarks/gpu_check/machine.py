"""The machine and software a check ran on, the checkout it measured, and what it needs before it starts."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import re
import shlex
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import throughput
import torch

from cifarlab.errors import one_line
from cifarlab.train.device import configure_torch
from gpu_check import ROOT
from gpu_check.project import default_study


def gpu_driver() -> str:
    if shutil.which("nvidia-smi") is None:
        return "unknown (no nvidia-smi)"
    result = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                            capture_output=True, text=True, check=False)
    return result.stdout.strip().splitlines()[0] if result.returncode == 0 and result.stdout.strip() else "unknown"


def version_of(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def release(version: str) -> tuple[int, ...]:
    """A version's release numbers (3.49.1 -> (3, 49, 1)), enough to compare with a minimum."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def required_version(distribution: str) -> str | None:
    """The least version of `distribution` that pyproject.toml's dependencies ask for."""
    found = re.search(rf'"{re.escape(distribution)}\s*>=\s*([\d.]+)', (ROOT / "pyproject.toml").read_text())
    return found.group(1) if found else None


def dvclive_refusal() -> str | None:
    """Why the check must not start with this DVCLive, or None: an older one than the project needs takes no
    `Live(dir=...)`, and every train stage would crash after its first epoch, parts into the slot."""
    installed, needed = version_of("dvclive"), required_version("dvclive")
    if installed == "not installed" or needed is None or release(installed) >= release(needed):
        return None
    return (f"DVCLive {installed} is installed, and the train stage needs dvclive>={needed} (pyproject.toml); "
            f"install DVCLive {needed} or later (benchmarks/README.md says how, offline)")


def configure_like_the_stages() -> None:
    """cuDNN autotuning and determinism as the train stage sets them from params.yaml's performance, so that
    the steps measured here run the kernels the runs do."""
    configure_torch(next(iter(default_study().runs.values())).performance)


def checkout_commit(commit_file: Path | None) -> str:
    """The commit measured: from `commit_file` (a copy without .git, as a device gets it), else from git."""
    if commit_file is not None:
        lines = commit_file.read_text().split("\n")
        return f"{one_line(lines[0]) or 'unknown (an empty commit file)'} (from {commit_file.name})"
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return "unknown (not a git checkout, and no --commit-file)"
    result = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                            text=True, check=False)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    if result.returncode != 0:
        return "unknown"
    return result.stdout.strip() + (" with uncommitted changes" if dirty else "")


def hardware(device: torch.device) -> tuple[str, str]:
    """(the device's name, a line on it)."""
    if device.type != "cuda":
        name = throughput.hardware(device)
        return name, f"{name} (no GPU)"
    name = torch.cuda.get_device_name(device)
    memory = torch.cuda.get_device_properties(device).total_memory / 2**30
    return name, (f"{name}, {memory:.0f} GiB; driver {gpu_driver()}; CUDA {torch.version.cuda}; "
                  f"cuDNN {torch.backends.cudnn.version()}")


def machine_lines(device: torch.device, rehearsal: bool, argv: list[str],
                  commit_file: Path | None) -> tuple[str, list[str], str]:
    """(heading, the machine as Markdown lines, a short name for the results file)."""
    name, line = hardware(device)
    heading = f"GPU check{' rehearsal on a CPU' if rehearsal else ''}: {name}"
    lines = [f"- machine: {line}; {os.cpu_count()} CPUs",
             (f"- software: Python {platform.python_version()}, torch {torch.__version__}, "
              f"torchvision {version_of('torchvision')}, DVCLive {version_of('dvclive')}, "
              f"pytest {version_of('pytest')}"),
             (f"- torch as the train stage sets it (params.yaml's performance): cuDNN autotuning "
              f"{'on' if torch.backends.cudnn.benchmark else 'off'}, deterministic algorithms "
              f"{'on' if torch.are_deterministic_algorithms_enabled() else 'off'}"),
             f"- checkout: {checkout_commit(commit_file)}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- command: `python benchmarks/gpu_check {shlex.join(argv)}`"]
    if rehearsal:
        lines.append("- a rehearsal: the check's code paths on the CPU with tiny sizes and a tiny archive; its "
                     "figures say that every part runs, not how fast anything is")
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return heading, lines, slug

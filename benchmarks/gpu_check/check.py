"""The check's state: its settings, its clock, the results file, and what the parts measured, which later
parts (the projection, the goals) read."""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from gpu_check import ROOT
from gpu_check.compiling import CompileCounts
from gpu_check.results import Results
from gpu_check.sizes import Sizes

if TYPE_CHECKING:
    import throughput

    from gpu_check.project import Project


@dataclass
class TrainTiming:
    """One run of the train part: what it trained, and how long each piece took."""

    run: str
    compile_mode: str
    epochs_planned: int
    train_images: int
    val_images: int
    wall_s: float
    epoch_s: list[float]
    eval_s: list[float]
    startup_s: float  # from the stage's start to its first epoch: imports, data, the initial validation
    finished: bool

    @property
    def steady_epoch_s(self) -> float | None:
        """The median epoch (training and validation) after the first, which pays compilation and warm-up."""
        both = [a + b for a, b in zip(self.epoch_s, self.eval_s)]
        return statistics.median(both[1:] or both) if both else None

    @property
    def first_epoch_extra_s(self) -> float:
        """What the first epoch took beyond a steady one: compilation and warm-up."""
        steady = self.steady_epoch_s
        return max(0.0, self.epoch_s[0] + self.eval_s[0] - steady) if steady and len(self.epoch_s) > 1 else 0.0

    @property
    def full_length_s(self) -> float | None:
        """The run's time to its last epoch: measured if it finished, else what it took so far plus the
        steady epoch for every epoch left."""
        if self.finished:
            return self.wall_s
        steady = self.steady_epoch_s
        return None if steady is None else self.wall_s + (self.epochs_planned - len(self.epoch_s)) * steady


@dataclass
class KRate:
    """K runs at once: the sum of their steady-state images/s while all of them overlapped."""

    k: int
    rate: float | None
    epochs: int  # the steady epochs it was computed from, over all runs
    threads: int
    wall_s: float
    status: str


@dataclass
class Check:
    args: argparse.Namespace
    sizes: Sizes
    device: torch.device
    results: Results
    workdir: Path
    deadline: float  # time.monotonic() at which the budget ends
    archive: Path | None = None
    project: Project | None = None
    preflight: dict[tuple[str, int], CompileCounts] = field(default_factory=dict)
    paths: dict[tuple[str, int, str], throughput.Rounds] = field(default_factory=dict)  # (norm, batch, step)
    first_steps_s: dict[tuple[str, int, str], float] = field(default_factory=dict)  # warm-up, compile included
    step_rates: dict[tuple[str, int, str], float] = field(default_factory=dict)  # (network, batch, step): (a)
    rate_sources: dict[tuple[str, int, str], str] = field(default_factory=dict)
    train_timings: dict[str, TrainTiming] = field(default_factory=dict)
    k_rates: dict[int, KRate] = field(default_factory=dict)
    projected: dict[str, float] | None = None  # the study's minutes, by how it runs

    def env(self, src: Path = ROOT / "src") -> dict[str, str]:
        """The environment of every child process: `src` as its library, no DVC telemetry."""
        env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p)}
        if self.args.rehearsal:
            env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU, even on a machine with a GPU
            env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def box(self, part: str) -> float:
        """The part's time box: its own, or what is left of the budget where that is less (or it has none)."""
        planned = self.args.box.get(part, self.sizes.boxes[part])
        left = self.deadline - time.monotonic()
        return left if planned is None else min(planned, left)

    def write(self) -> None:
        self.results.write()

    def compile_s(self, norm: str, batch: int, mode: str) -> float | None:
        """Part 2's compile time of the step: its compiled warm-up beyond its eager one."""
        compiled, eager = self.first_steps_s.get((norm, batch, mode)), self.first_steps_s.get((norm, batch, "eager"))
        return None if compiled is None else max(0.0, compiled - (eager or 0.0))

    def k_gain(self, k: int) -> float | None:
        """K runs' summed steady images/s over one run's."""
        base, top = self.k_rates.get(1), self.k_rates.get(k)
        if not base or not top or not base.rate or top.rate is None:
            return None
        return top.rate / base.rate

    def best_k(self) -> tuple[int | None, float | None]:
        gains = {k: g for k in self.k_rates if k != 1 and (g := self.k_gain(k)) is not None and math.isfinite(g)}
        if not gains:
            return None, None
        k = max(gains, key=gains.get)
        return (k, gains[k]) if gains[k] > 1 else (None, None)

"""One GPU check: the CUDA tests, training throughput, two full-length runs, several runs per GPU and the
default study's projected time, written to one results file in minutes of GPU time.

    python benchmarks/gpu_check.py --archive SUBSET [--out FILE] [--parts LIST] [--budget S] [--box PART=S]
                                   [--sweep-without-ray]
    python benchmarks/gpu_check.py --rehearsal [--archive SUBSET] [--out FILE]

The parts, in order, each in its own time box, all within --budget seconds (480 by default):
  tests       `python -m pytest -m gpu -q`
  throughput  ResNet-14 training images/s for bn, torch_bn and gn at batch 128 and 8 along the paths of
              benchmarks/throughput.py ((a) ours, (b) the usual DataLoader pipeline, (b') its loader with our
              step, (c) the model alone), eager and then compiled (default at 128, reduce-overhead at 8), our
              step in bf16
  rates       path (a), eager, for every other network and batch size among params.yaml's runs
  train       one full-length run of bn-128 and one of bn-8 (the norm study's settings) on SUBSET through the
              train stage, in a temporary copy of the project, without DVC or git
  sweep       `python -m cifarlab.tools.sweep --runs-per-gpu K`, K = 8, 4, 2, 1, on eight runs of the norm
              study on SUBSET (a few epochs each), in a temporary git and DVC repository; where Ray, DVC or git
              is missing (or with --sweep-without-ray), the same K measured without them: the eight train
              stages in waves of K processes at once on the GPU, in a temporary copy as in part 4
  projection  the full default study's time on this GPU, from the rates measured above
A part that fails, or that DVCLive or pytest is missing for, is recorded as such and the check goes on. The
results file is rewritten, atomically, after every measurement: a check stopped early (Ctrl-C, SIGTERM, a
scheduler's time limit) leaves what it measured. --rehearsal runs the same code on the CPU with tiny sizes
(a generated archive unless --archive is given, 2 epochs, K = 2, 1 on a logical GPU, or on the CPU without Ray)
in about three minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import importlib.util
import itertools
import json
import math
import os
import platform
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# The checkout's own library, as the stages import it: an offline GPU node has no install of cifarlab.
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np
import throughput
import torch
import yaml

from cifarlab.config.resolve import load_study
from cifarlab.config.sections import ModelConfig, RunConfig
from cifarlab.data.loader import Normalizer, ResidentDataset
from cifarlab.models import model_label
from cifarlab.nn.norms import takes_groups

PARTS = ("tests", "throughput", "rates", "train", "sweep", "projection")
TITLES = {
    "tests": "1. The CUDA tests",
    "throughput": "2. Training throughput of ResNet-14",
    "rates": "3. Step rates of the study's other networks",
    "train": "4. Full-length runs through the train stage",
    "sweep": "5. Runs per GPU: the sweep",
    "projection": "6. The full default study on this GPU, projected",
}
NORMS = ("bn", "torch_bn", "gn")
FULL_TRAIN_IMAGES = 50_000  # CIFAR-10's training images, before the validation split
FULL_TEST_IMAGES = 10_000
FULL_RUNS = ("bn-128", "bn-8")
SWEEP_RUNS = ("bn-128", "torch_bn-128", "in-128", "bin-128", "ln-128", "gn-128", "nn-128", "bn-128-r1")
STAGES_AFTER_TRAINING = ("aggregate", "curves", "quantile-plots", "report")  # not what the sweep measures
GIT_IDENTITY = {"GIT_AUTHOR_NAME": "gpu-check", "GIT_AUTHOR_EMAIL": "gpu-check@cifarlab.invalid",
                "GIT_COMMITTER_NAME": "gpu-check", "GIT_COMMITTER_EMAIL": "gpu-check@cifarlab.invalid"}
STOP_GRACE_S = {"tests": 15, "train": 20, "sweep": 75}  # sweep: its own grace for runs to save, and more
# The rehearsal's sweep: Ray given one logical GPU, so that each task gets CUDA_VISIBLE_DEVICES as on a GPU node.
LOGICAL_GPU_SWEEP = ("import os, sys, ray\nfrom cifarlab.tools import sweep\n"
                     "sys.exit(sweep.main(sys.argv[1:], ray_init=lambda **kw: ray.init(num_gpus=1, "
                     "num_cpus=os.cpu_count(), include_dashboard=False, **kw)))")


@dataclass(frozen=True)
class Sizes:
    """How much each part measures: a GPU's worth, or the rehearsal's tiny one."""

    budget_s: float
    boxes: dict[str, float]
    batches: tuple[int, ...]
    steps: dict[int, int]  # timed steps per measurement, by batch size
    warmup: int
    rounds: int
    workers: int  # DataLoader workers of the usual pipeline
    compile_modes: dict[int, str]  # the compiled step's mode, by batch size
    compile_priority: tuple[tuple[str, int], ...]  # (norm, batch) compiled first to last: the goals' first
    rate_steps: dict[int, int]
    rate_warmup: int
    train_profile: dict  # overrides of the full profile for the train part's runs ({}: the study's own)
    train_compile: dict[str, str]  # run -> performance.compile, where it differs from params.yaml's
    sweep_runs: tuple[str, ...]
    sweep_epochs: int
    sweep_k: tuple[int, ...]


def scaled_train(epochs: int) -> dict:
    """Train keys for `epochs` epochs with the norm study's schedule shape (decays at 50% and 75%)."""
    milestones = sorted({max(1, epochs // 2), max(1, 3 * epochs // 4)} - {epochs}) or [1]
    return {"epochs": epochs, "milestones": milestones, "patience": epochs}


GPU = Sizes(budget_s=480, boxes={"tests": 90, "throughput": 150, "rates": 25, "train": 100, "sweep": 110,
                                 "projection": 5},
            batches=(128, 8), steps={128: 30, 8: 150}, warmup=3, rounds=3, workers=2,
            compile_modes={128: "default", 8: "reduce-overhead"},
            compile_priority=(("bn", 8), ("torch_bn", 8), ("bn", 128), ("torch_bn", 128), ("gn", 8), ("gn", 128)),
            rate_steps={128: 20, 8: 100}, rate_warmup=3, train_profile={}, train_compile={"bn-8": "reduce-overhead"},
            sweep_runs=SWEEP_RUNS, sweep_epochs=5, sweep_k=(8, 4, 2, 1))
# Every code path once: each compile mode on one norm, which the other norms would only repeat.
REHEARSAL = Sizes(budget_s=300, boxes={"tests": 60, "throughput": 60, "rates": 30, "train": 60, "sweep": 120,
                                       "projection": 5},
                  batches=(128, 8), steps={128: 1, 8: 2}, warmup=1, rounds=1, workers=0,
                  compile_modes={128: "default", 8: "reduce-overhead"},
                  compile_priority=(("bn", 8), ("torch_bn", 128)),
                  rate_steps={128: 1, 8: 1}, rate_warmup=0, train_profile={"train": scaled_train(2)},
                  train_compile={"bn-8": "none"},  # the GPU's second settings folder, without its compilation
                  sweep_runs=SWEEP_RUNS[:2], sweep_epochs=2, sweep_k=(2, 1))


class PartTimeout(Exception):
    """A part reached its time box."""


class SetupFailed(Exception):
    """A stage before training failed in a temporary project; the message says which, and how."""


# --- the results file -----------------------------------------------------------------------------------

@dataclass
class Section:
    """One part's figures: a status line, how they were obtained, a table, and notes."""

    title: str
    status: str = "not run: the check stopped before this part"
    intro: list[str] = field(default_factory=list)
    header: list[str] = field(default_factory=list)
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def markdown(self) -> list[str]:
        lines = [f"## {self.title}", "", f"status: {self.status}", ""]
        if self.intro:
            lines += [*self.intro, ""]
        if self.rows:
            numeric = [all(re.match(r"[\d.,]+( |$)|n/a", row[i]) for row in self.rows if len(row) > i and row[i])
                       for i in range(len(self.header))]
            lines += ["| " + " | ".join(self.header) + " |",
                      "| " + " | ".join("---:" if right else "---" for right in numeric) + " |",
                      *("| " + " | ".join(row) + " |" for row in self.rows), ""]
        if self.notes:
            lines += [*self.notes, ""]
        return lines


@dataclass
class Results:
    path: Path
    heading: str
    machine: list[str]
    sections: dict[str, Section] = field(default_factory=lambda: {part: Section(TITLES[part]) for part in PARTS})
    goals: list[str] = field(default_factory=list)

    def write(self) -> None:
        """Replace the file in one step, so that a reader (or a kill) never sees half of it."""
        lines = [f"# {self.heading}", "", *self.machine, ""]
        for section in self.sections.values():
            lines += section.markdown()
        lines += ["## Against the goals of the issue", "", *(self.goals or ["not computed yet"]), ""]
        self.path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.path.with_name(f".{self.path.name}.partial")
        partial.write_text("\n".join(lines))
        os.replace(partial, self.path)


def number(value: float | None, digits: int = 0) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:,.{digits}f}"


def one_line(text: str, limit: int = 300) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


# --- the machine ------------------------------------------------------------------------------------------

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


def checkout_commit() -> str:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        return "unknown (not a git checkout)"
    result = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short=12", "HEAD"], capture_output=True,
                            text=True, check=False)
    dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return result.stdout.strip() + (" with uncommitted changes" if dirty else "") if result.returncode == 0 \
        else "unknown"


def machine_lines(device: torch.device, rehearsal: bool, argv: list[str]) -> tuple[str, list[str], str]:
    """(heading, the machine as Markdown lines, a short name for the results file)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        memory = torch.cuda.get_device_properties(device).total_memory / 2**30
        hardware = f"{name}, {memory:.0f} GiB; driver {gpu_driver()}; CUDA {torch.version.cuda}; " \
                   f"cuDNN {torch.backends.cudnn.version()}"
    else:
        name = throughput.hardware(device)
        hardware = f"{name} (no GPU)"
    heading = f"GPU check{' rehearsal on a CPU' if rehearsal else ''}: {name}"
    lines = [f"- machine: {hardware}; {os.cpu_count()} CPUs",
             (f"- software: Python {platform.python_version()}, torch {torch.__version__}, "
             f"torchvision {version_of('torchvision')}, DVC {version_of('dvc')}, DVCLive {version_of('dvclive')}, "
             f"Ray {version_of('ray')}, pytest {version_of('pytest')}"),
             f"- checkout: {checkout_commit()}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC",
             f"- command: `python benchmarks/gpu_check.py {shlex.join(argv)}`"]
    if rehearsal:
        lines.append("- a rehearsal: the check's code paths on the CPU with tiny sizes and a tiny archive; its "
                     "figures say that every part runs, not how fast anything is")
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return heading, lines, slug


# --- child processes --------------------------------------------------------------------------------------

@dataclass
class Finished:
    returncode: int
    seconds: float
    timed_out: bool


def stop(*procs: subprocess.Popen, grace_s: float) -> None:
    """Interrupt each of `procs` as Ctrl-C would (a stage saves its state, the sweep cancels its runs), and kill
    the whole session of any that has not ended within `grace_s`: one grace for all, however many."""
    running = [proc for proc in procs if proc.poll() is None]
    for proc in running:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGINT)
    grace_end = time.monotonic() + grace_s
    for proc in running:
        try:
            proc.wait(timeout=max(grace_end - time.monotonic(), 0.01))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def run_boxed(cmd: list[str], cwd: Path, env: dict[str, str], box_s: float, log: Path, grace_s: float) -> Finished:
    """Run `cmd`, its output appended to `log`; past `box_s` seconds, or if this check is interrupted, stop it."""
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    with open(log, "ab") as out:
        out.write(f"$ {shlex.join(cmd)}\n".encode())
        out.flush()
        # A session of its own: a Ctrl-C meant for this check reaches the child only through `stop`.
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            proc.wait(timeout=max(box_s, 0.1))
            timed_out = False
        except subprocess.TimeoutExpired:
            timed_out = True
            stop(proc, grace_s=grace_s)
        except BaseException:
            stop(proc, grace_s=grace_s)
            raise
    return Finished(proc.returncode, time.perf_counter() - started, timed_out)


def run_together(jobs: list[tuple[list[str], dict[str, str], Path]], cwd: Path, box_s: float,
                 grace_s: float) -> list[Finished]:
    """Start every job (a command, its environment, its log) at once and wait for all; past `box_s` seconds,
    or if this check is interrupted, stop those still running. Each one's seconds run to its own end."""
    started = time.perf_counter()
    procs: list[subprocess.Popen] = []
    ended: dict[int, float] = {}
    try:
        for cmd, env, log in jobs:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "ab") as out:
                out.write(f"$ {shlex.join(cmd)}\n".encode())
                out.flush()
                procs.append(subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                              start_new_session=True))
        deadline = started + max(box_s, 0.1)
        while True:
            for index, proc in enumerate(procs):
                if index not in ended and proc.poll() is not None:
                    ended[index] = time.perf_counter() - started
            if len(ended) == len(procs) or time.perf_counter() >= deadline:
                break
            time.sleep(0.05)
    except BaseException:
        stop(*procs, grace_s=grace_s)
        raise
    stop(*procs, grace_s=grace_s)
    return [Finished(proc.returncode, ended.get(index, time.perf_counter() - started), index not in ended)
            for index, proc in enumerate(procs)]


def last_lines(log: Path, count: int = 1, pattern: str = "") -> str:
    lines = [line for line in log.read_text(errors="replace").splitlines() if line.strip() and re.search(pattern, line)]
    return one_line(" / ".join(lines[-count:])) if lines else "(no output)"


@contextlib.contextmanager
def alarm(seconds: float) -> Iterator[None]:
    """Raise PartTimeout in this thread after `seconds`: the hard edge of an in-process part's box."""
    def expire(signum: int, frame: Any) -> None:
        raise PartTimeout

    before = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, max(seconds, 0.01))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, before)


def eager_compile(compile_: Callable) -> Callable:
    """torch.compile with dynamo's eager backend: the rehearsal's stand-in for inductor, which takes a minute
    per model on a small CPU; the step, its graph capture and guards run as on the GPU."""
    def compiled(model: Any = None, **kwargs: Any) -> Any:
        kwargs.pop("mode", None)
        return compile_(model, backend="eager", **kwargs)

    return compiled


# --- the check --------------------------------------------------------------------------------------------

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
    finished: bool

    @property
    def steady_epoch_s(self) -> float | None:
        """The median epoch (training and validation) after the first, which pays compilation and warm-up."""
        both = [a + b for a, b in zip(self.epoch_s, self.eval_s)]
        return statistics.median(both[1:] or both) if both else None

    @property
    def full_length_s(self) -> float | None:
        """The run's time to its last epoch: measured if it finished, else what it took so far plus the
        steady epoch for every epoch left."""
        if self.finished:
            return self.wall_s
        steady = self.steady_epoch_s
        return None if steady is None else self.wall_s + (self.epochs_planned - len(self.epoch_s)) * steady

    @property
    def startup_s(self) -> float:
        """The stage's time outside its epochs: start-up, data, the initial validation."""
        return max(0.0, self.wall_s - sum(self.epoch_s) - sum(self.eval_s)) if self.finished else math.nan


@dataclass
class SweepTiming:
    k: int
    wall_s: float
    runs_done: int
    runs: int
    images: int
    window_s: float | None  # from the first run's start to the last one's end
    status: str


class Check:
    """The parts, one method each, and what they measured, which later parts (the projection) use."""

    def __init__(self, args: argparse.Namespace, sizes: Sizes, device: torch.device, results: Results,
                 workdir: Path) -> None:
        self.args, self.sizes, self.device, self.results, self.workdir = args, sizes, device, results, workdir
        self.deadline = time.monotonic() + (args.budget if args.budget is not None else sizes.budget_s)
        self.boxes = {**sizes.boxes, **args.box}
        self.step_rates: dict[tuple[str, int, str], float] = {}  # (network, batch, step mode) -> img/s, path (a)
        self.rate_sources: dict[tuple[str, int, str], str] = {}  # the part that measured each
        self.projected: tuple[dict[str, float], float | None] | None = None  # minutes, and the sweep's speed-up
        self.paths: dict[tuple[str, int, str], throughput.Rounds] = {}
        self.train_timings: dict[str, TrainTiming] = {}
        self.sweep_timings: dict[int, SweepTiming] = {}
        self.k_without_ray = False  # part 5 measured K with train processes at once, not through the sweep
        self.archive: Path | None = None
        self.train_project: Path | None = None
        # `python` for the stages' command lines in dvc.yaml: a node may have only `python3`. A script, not a
        # link: a link's own path would hide the virtual environment that sys.executable belongs to.
        self.bin = workdir / "bin"
        self.bin.mkdir(parents=True, exist_ok=True)
        (self.bin / "python").write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} "$@"\n')
        (self.bin / "python").chmod(0o755)

    # the environment of every child process
    def env(self, src: Path = ROOT / "src") -> dict[str, str]:
        env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
               "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', '')}",
               "PYTHONPATH": os.pathsep.join(p for p in (str(src), os.environ.get("PYTHONPATH", "")) if p)}
        for key, value in GIT_IDENTITY.items():
            env.setdefault(key, value)
        if self.args.rehearsal:
            env["CUDA_VISIBLE_DEVICES"] = ""  # the CPU, even on a machine with a GPU
            env.setdefault("OMP_NUM_THREADS", "1")
        return env

    def box(self, part: str) -> float:
        return min(self.boxes[part], self.deadline - time.monotonic())

    def write(self) -> None:
        self.results.write()

    # ----- 1. tests
    def tests(self, section: Section, box: float) -> None:
        cmd = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider"]
        section.intro = [("`python -m pytest -m gpu -q` in the checkout: every test marked `gpu` (they skip without "
                         "CUDA); its summary line:")]
        if importlib.util.find_spec("pytest") is None:
            section.status = "skipped: pytest is not installed (add its wheel to the ones copied to this machine)"
            return
        log = self.workdir / "logs" / "tests.log"
        done = run_boxed(cmd, ROOT, self.env(), box, log, STOP_GRACE_S["tests"])
        summary = last_lines(log, 1, r"\d+ (passed|failed|skipped|deselected|error)")
        section.header = ["command", "summary", "seconds"]
        section.rows = [["`python -m pytest -m gpu -q`", summary, number(done.seconds)]]
        if done.timed_out:
            section.status = f"partial: stopped at its {box:.0f} s time box (the summary counts the tests run)"
        elif done.returncode in (0, 5):  # 5: no test selected
            section.status = f"done in {done.seconds:.0f} s"
        else:
            section.status = f"failed: pytest exited {done.returncode}; see the summary (log: {log.name})"
            section.notes = [f"last lines: {last_lines(log, 6)}"]

    # ----- 2. throughput
    def throughput(self, section: Section, box: float) -> None:
        sizes, device = self.sizes, self.device
        part_end = time.monotonic() + box
        data = self.synthetic_data(max((sizes.warmup + sizes.steps[b]) * b for b in sizes.batches))
        section.intro = [
            (f"`python benchmarks/gpu_check.py --parts throughput` (the functions of benchmarks/throughput.py): "
            f"{sizes.rounds} alternated rounds of {', '.join(f'{sizes.steps[b]} steps at batch {b}' for b in sizes.batches)}"
            f" after {sizes.warmup} warm-up steps; images/s are medians over the rounds, ratios the median of the "
            f"rounds' ratios. (a) ours: the split resident on the device, our step in bf16 "
            f"{'(on CUDA) ' if device.type != 'cuda' else ''}with channels_last; (b) the usual pipeline: PIL "
            f"images through torchvision transforms in a DataLoader with {sizes.workers} workers and the textbook "
            f"loop (float32, NCHW, loss read every step); (b') that loader feeding our step; (c) our step alone on "
            f"one resident batch. `first steps s`: the warm-up, which includes compiling.")]
        if self.args.rehearsal:
            section.intro.append("Rehearsal: compiled with dynamo's eager backend in place of inductor.")
        section.header = ["norm", "batch", "step", "(a) ours img/s", "(b) usual img/s", "(b') usual loader img/s",
                          "(c) model img/s", "(a)/(b)", "(a)/(b')", "(a)/(c)", "first steps s"]
        plan = [(norm, batch, "none") for batch in sizes.batches for norm in NORMS] + \
               [(norm, batch, sizes.compile_modes[batch]) for norm, batch in sizes.compile_priority]
        measured = 0
        compile_ = torch.compile
        try:
            if self.args.rehearsal:
                torch.compile = eager_compile(compile_)
            with alarm(box):
                for norm, batch, mode in plan:
                    if time.monotonic() > part_end:
                        raise PartTimeout
                    self.measure_paths(section, norm, batch, mode, data)
                    measured += 1
                    self.write()
        except PartTimeout:
            section.status = f"partial: stopped at its {box:.0f} s time box after {measured} of {len(plan)} " \
                             "measurements (eager first, then compiled by priority)"
            return
        finally:
            torch.compile = compile_
            torch._dynamo.reset()
        section.status = f"done: {measured} measurements"

    def synthetic_data(self, images: int) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(0)
        return (rng.integers(0, 256, (images, 3, 32, 32), dtype=np.uint8),
                rng.integers(0, 10, images).astype(np.int64))

    def measure_paths(self, section: Section, norm: str, batch: int, mode: str,
                      data: tuple[np.ndarray, np.ndarray]) -> None:
        sizes, device = self.sizes, self.device
        torch._dynamo.reset()  # each model compiles afresh, never against another's cache limit
        options = throughput.step_options(device, mode, bf16=True)
        paths = throughput.training_paths(norm, batch, device, data, sizes.workers, options)
        train, batches = paths["ours"]
        started = time.perf_counter()
        train(itertools.islice(batches(), sizes.warmup))  # compiles here, if compiled
        first_steps = time.perf_counter() - started
        rounds = throughput.alternated(paths, sizes.steps[batch], batch, sizes.rounds, device, sizes.warmup)
        step = "eager" if mode == "none" else mode
        self.paths[(norm, batch, step)] = rounds
        key = (network(throughput.resnet14_config(norm)), batch, step)
        self.step_rates[key], self.rate_sources[key] = rounds.median("ours"), "part 2"
        section.rows.append([norm, str(batch), step,
                             *(number(rounds.median(p)) for p in ("ours", "usual", "usual_loader", "model")),
                             *(str(rounds.ratio("ours", p)) for p in ("usual", "usual_loader", "model")),
                             number(first_steps, 1)])

    # ----- 3. rates
    def rates(self, section: Section, box: float) -> None:
        sizes = self.sizes
        part_end = time.monotonic() + box
        study = default_study()
        wanted: dict[tuple[str, int], tuple[ModelConfig, list[str]]] = {}
        for run in study.runs.values():
            key = (network(run.model), run.train.batch_size)
            wanted.setdefault(key, (run.model, []))[1].append(run.name)
        todo = [(key, config, names) for key, (config, names) in wanted.items()
                if (*key, "eager") not in self.step_rates]
        section.intro = [(f"`python benchmarks/gpu_check.py --parts rates`: path (a), eager, bf16 on CUDA, "
                         f"{', '.join(f'{n} steps at batch {b}' for b, n in sizes.rate_steps.items())} after "
                         f"{sizes.rate_warmup} warm-up steps, one round, for "
                         "each network and batch size of params.yaml's runs that part 2 did not measure.")]
        section.header = ["network", "batch", "(a) ours img/s", "runs"]
        data = self.synthetic_data(max((sizes.rate_warmup + sizes.rate_steps[b]) * b for _, b in wanted))
        measured = 0
        try:
            with alarm(box):
                for (label, batch), config, names in todo:
                    if time.monotonic() > part_end:
                        raise PartTimeout
                    rate = self.measure_rate(config, batch, data)
                    self.step_rates[(label, batch, "eager")] = rate
                    self.rate_sources[(label, batch, "eager")] = "part 3"
                    section.rows.append([label, str(batch), number(rate), ", ".join(names)])
                    measured += 1
                    self.write()
        except PartTimeout:
            section.status = f"partial: stopped at its {box:.0f} s time box after {measured} of {len(todo)} " \
                             "networks; the projection uses a stated substitute for the rest"
            return
        section.status = f"done: {measured} networks"

    def measure_rate(self, config: ModelConfig, batch: int, data: tuple[np.ndarray, np.ndarray]) -> float:
        device, sizes = self.device, self.sizes
        stepper = throughput.make_stepper(throughput.seeded_model(config), batch, device,
                                          throughput.step_options(device, "none", bf16=True))
        resident = ResidentDataset(*data, device)
        normalize = Normalizer(throughput.MEAN, throughput.STD, device, channels_last=stepper.channels_last)
        epochs = itertools.count()
        return throughput.images_per_s(stepper.run,
                                       lambda: resident.train_batches(batch, 0, next(epochs), normalize),
                                       sizes.rate_steps[batch], batch, device, sizes.rate_warmup)

    # ----- the temporary projects of parts 4 and 5
    def project(self, name: str, params: dict, claims: Path | None, drop_stages: tuple[str, ...] = ()) -> Path:
        """A copy of the project's pipeline under the work folder, with `params`."""
        where = self.workdir / name
        if where.exists():
            shutil.rmtree(where)
        where.mkdir(parents=True)
        for folder in ("stages", "src"):
            shutil.copytree(ROOT / folder, where / folder,
                            ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc"))
        spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())
        for stage in drop_stages:
            spec["stages"].pop(stage, None)
        (where / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False) if drop_stages
                                        else (ROOT / "dvc.yaml").read_text())
        for file in (".gitignore", ".dvcignore"):
            if (ROOT / file).exists():
                shutil.copy(ROOT / file, where / file)
        (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        if claims is not None:
            shutil.copy(claims, where / "claims.yaml")
        else:
            (where / "claims.yaml").write_text("claims: {}\n")
        return where

    def direct_project(self, name: str, params: Callable[[str | None], dict], modes: list[str],
                       claims: Path | None, end: float) -> tuple[Path, list[str]]:
        """A copy of the project (see `project`) whose stages up to the split ran as scripts, without DVC or git,
        by time.monotonic() `end`: a settings folder data/runs-<mode> for each performance.compile of `modes`
        from `params(mode)`, the study's own data/runs from `params(None)` (the params.yaml left there), the
        fetch and the split. Returns the copy and a note for each mode refused (a toolchain check, say), whose
        runs then train as data/runs says; raises SetupFailed for any other failure."""
        project = self.project(name, params(None), claims)
        env = self.env(project / "src")
        log = self.workdir / "logs" / f"{name}-setup.log"
        refused = []
        setup: list[tuple[str | None, list[str]]] = [
            *((mode, [sys.executable, "stages/check_params.py", "--runs", f"data/runs-{mode}", "--claims",
                      "claims.yaml", f"data/study-{mode}.json"]) for mode in modes),
            (None, self.stage_command("check-params")), (None, self.stage_command("fetch")),
            (None, self.stage_command("split"))]
        for mode, cmd in setup:
            (project / "params.yaml").write_text(yaml.safe_dump(params(mode), sort_keys=False))
            done = run_boxed(cmd, project, env, end - time.monotonic(), log, STOP_GRACE_S["train"])
            if done.returncode != 0 and mode is not None and not done.timed_out:
                refused.append(f"performance.compile: {mode} refused, so its runs train as params.yaml says: "
                               f"{last_lines(log, 1)}")
            elif done.returncode != 0:
                raise SetupFailed(f"`{shlex.join(cmd[1:])}` exited {done.returncode}"
                                  + (" (time box)" if done.timed_out else "") + f": {last_lines(log, 2)}")
        return project, refused

    def study_params(self, *, runs: tuple[str, ...] | None = None, profile: dict | None = None,
                     compile_mode: str | None = None) -> dict:
        """params.yaml under the full profile on the archive, optionally with fewer runs, a profile's overrides
        and another performance.compile."""
        params = yaml.safe_load((ROOT / "params.yaml").read_text())
        params["profile"] = "full"
        params["data"]["source"] = str(self.archive)
        if self.args.rehearsal:
            params["device"] = "cpu"
        if runs is not None:
            params["runs"] = {name: params["runs"][name] for name in runs}
        if profile:
            params["profiles"]["full"] = profile
        if compile_mode is not None:
            params["performance"]["compile"] = compile_mode
        return params

    def stage_command(self, stage: str, key: str | None = None) -> list[str]:
        """The stage's command line as dvc.yaml gives it, run by this interpreter."""
        spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
        cmd = (spec["do"] if "foreach" in spec else spec)["cmd"]
        words = shlex.split(cmd.replace("${key}", key or ""))
        return [sys.executable if words[0] == "python" else words[0], *words[1:]]

    # ----- 4. train
    def train(self, section: Section, box: float) -> None:
        part_end = time.monotonic() + box
        sizes = self.sizes
        section.intro = [
            f"Each run's train stage, run directly (no DVC, no git) in a temporary copy of the project whose "
            f"params.yaml is the checkout's with `profile: full` and `data.source: {self.archive.name}`"
            + (f" and the rehearsal's `profiles.full: {json.dumps(sizes.train_profile)}`" if sizes.train_profile
               else "") + ". The commands, from the copy's root:",
            "", "```", "python " + shlex.join(self.stage_command("check-params")[1:]),
            *(f"# and with performance.compile: {mode}: python stages/check_params.py --runs data/runs-{mode} "
              f"--claims claims.yaml data/study-{mode}.json" for mode in sorted(set(sizes.train_compile.values()))),
            "python " + shlex.join(self.stage_command("fetch")[1:]),
            "python " + shlex.join(self.stage_command("split")[1:]),
            *("python " + shlex.join(self.train_command(run)[1:]) for run in FULL_RUNS), "```",
            ("A run that does not finish inside its box is stopped (as Ctrl-C stops it: its state saved) and its "
            "length projected from the epochs it trained: the time so far plus its median epoch (after the "
            "first, which compiles) for every epoch left. Early stopping may end a run before its last epoch.")]
        section.header = ["run", "compile", "epochs trained", "stage s", "median epoch s (train + val)",
                          "train img/s (median epoch)", "full length s", "how"]
        if importlib.util.find_spec("dvclive") is None:
            section.status = "skipped: DVCLive is not installed (the train stage logs with it)"
            return
        try:
            project, refused = self.direct_project(
                "train", lambda mode: self.study_params(profile=sizes.train_profile, compile_mode=mode),
                sorted(set(sizes.train_compile.values())), ROOT / "claims.yaml", part_end)
        except SetupFailed as exc:
            section.status = f"failed: {exc}"
            return
        section.notes += refused
        env = self.env(project / "src")
        self.train_project = project
        split_sizes = json.loads((project / "data" / "split" / "meta.json").read_text())["sizes"]
        stopped = []
        for index, run in enumerate(FULL_RUNS):
            left = part_end - time.monotonic()
            run_box = left / (len(FULL_RUNS) - index)  # an equal share of what is left, which a fast run frees
            if run_box < 1:
                section.rows.append([run, "", "", "", "", "", "", "not run: the part's time box was spent"])
                continue
            try:
                timing = self.train_run(project, env, run, run_box, split_sizes)
            except RuntimeError as exc:
                section.rows.append([run, "", "", "", "", "", "", f"failed: {one_line(exc)}"])
                continue
            self.train_timings[run] = timing
            if not timing.finished:
                stopped.append(run)
            steady = timing.steady_epoch_s
            rates = [timing.train_images / s for s in timing.epoch_s[1:] or timing.epoch_s]
            section.rows.append([run, timing.compile_mode, f"{len(timing.epoch_s)} of {timing.epochs_planned}",
                                 number(timing.wall_s), number(steady, 2),
                                 number(statistics.median(rates)) if rates else "n/a", number(timing.full_length_s),
                                 "measured" if timing.finished else f"projected (stopped at its {run_box:.0f} s box)"])
            self.write()
        section.notes.append(f"The archive's split: {split_sizes['train']:,} train and {split_sizes['val']:,} "
                             "validation images.")
        failed = [row[0] for row in section.rows if row[-1].startswith(("failed", "not run"))]
        if len(failed) == len(FULL_RUNS):
            section.status = "failed: " + "; ".join(row[-1] for row in section.rows)
        elif failed or stopped:
            section.status = f"partial: {', '.join(failed + stopped)} did not finish (see each run's row)"
        else:
            section.status = "done"

    def train_command(self, run: str) -> list[str]:
        """dvc.yaml's train command, with the settings file of the run's compile mode where it has one."""
        cmd = self.stage_command("train", run)
        mode = self.sizes.train_compile.get(run)
        settings = f"data/runs-{mode}/{run}.json"
        if mode is None or (self.train_project and not (self.train_project / settings).exists()):
            return cmd
        return [cmd[0], cmd[1], settings, *cmd[3:]]

    def train_run(self, project: Path, env: dict[str, str], run: str, box: float,
                  split_sizes: dict[str, int]) -> TrainTiming:
        cmd = self.train_command(run)
        settings = json.loads((project / cmd[2]).read_text())
        config = RunConfig.from_record(settings["run"])
        done = run_boxed(cmd, project, env, box, self.workdir / "logs" / f"train-{run}.log", STOP_GRACE_S["train"])
        live = project / "plots" / "live" / run
        epoch_s, eval_s = live_column(live, "epoch_time_s"), live_column(live, "eval_time_s")
        train_images = config.train.train_images or split_sizes["train"]
        val_images = config.train.val_images or split_sizes["val"]
        finished = done.returncode == 0 and not done.timed_out
        if done.returncode != 0 and not done.timed_out:
            raise RuntimeError(f"the train stage of {run} exited {done.returncode}: "
                               f"{last_lines(self.workdir / 'logs' / f'train-{run}.log', 2)}")
        return TrainTiming(run=run, compile_mode=config.performance.compile, epochs_planned=config.train.epochs,
                           train_images=min(train_images, split_sizes["train"]),
                           val_images=min(val_images, split_sizes["val"]), wall_s=done.seconds,
                           epoch_s=epoch_s, eval_s=eval_s, finished=finished)

    # ----- 5. sweep
    def sweep(self, section: Section, box: float) -> None:
        part_end = time.monotonic() + box
        sizes = self.sizes
        command = "python -m cifarlab.tools.sweep --study norm --runs-per-gpu K"
        section.intro = [
            (f"`{command}` in a temporary git and DVC repository holding the project with `profile: full` on "
            f"`{self.archive.name}`, the runs {', '.join(sizes.sweep_runs)} and "
            f"`profiles.full: {json.dumps({'train': scaled_train(sizes.sweep_epochs)})}`, without the stages after "
            "training; the upstream stages ran once before, so each K times only the runs. Aggregate images/s: "
            "every run's training images over the sweep's wall time (its start-up, Ray's and DVC's included); "
            "over the runs' window: from the first run's start to the last one's end. The largest K runs first; "
            "a K stopped at its box counts the epochs its runs finished.")]
        if self.args.rehearsal:
            section.intro.append("Rehearsal: Ray is given one logical GPU, which the runs share on the CPU "
                                 "(`device: cpu`).")
        section.header = ["K", "wall s", "runs done", "training images", "aggregate img/s", "over the runs' window",
                          "x K=1", "status"]
        missing = [what for what, module in (("Ray", "ray"), ("DVC", "dvc")) if importlib.util.find_spec(module) is None]
        if shutil.which("git") is None:
            missing.append("git")
        if missing or self.args.sweep_without_ray:
            # An offline GPU node has no room for Ray's wheel, yet what K runs per GPU gain needs neither Ray nor
            # DVC to measure.
            why = f"{' and '.join(missing)} not installed" if missing else "--sweep-without-ray was given"
            self.runs_per_gpu_without_ray(section, part_end, why)
            return
        params = self.study_params(runs=sizes.sweep_runs, profile={"train": scaled_train(sizes.sweep_epochs)})
        template = self.project("sweep-template", params, None, drop_stages=STAGES_AFTER_TRAINING)
        env = self.env(template / "src")
        log = self.workdir / "logs" / "sweep-setup.log"
        for cmd in (["git", "init", "-q"], [sys.executable, "-m", "dvc", "init", "-q"], ["git", "add", "-A"],
                    ["git", "commit", "-q", "-m", "gpu check"],
                    [sys.executable, "-m", "dvc", "repro", "check-params", "split"]):
            done = run_boxed(cmd, template, env, part_end - time.monotonic(), log, STOP_GRACE_S["sweep"])
            if done.returncode != 0:
                section.status = f"failed: `{shlex.join(cmd)}` exited {done.returncode}" + \
                                 (" (time box)" if done.timed_out else "") + f": {last_lines(log, 2)}"
                return
        train_images = json.loads((template / "data" / "split" / "meta.json").read_text())["sizes"]["train"]
        section.status = self.each_k(section, part_end,
                                     lambda k, k_box: self.sweep_once(template, k, k_box, train_images))

    def each_k(self, section: Section, part_end: float, once: Callable[[int, float], SweepTiming]) -> str:
        """`once(K, box)` for each K, the largest first, each in an equal share of the part's time left, the
        table rewritten after each; returns the part's status."""
        sizes = self.sizes
        failures = []
        for index, k in enumerate(sizes.sweep_k):
            k_box = (part_end - time.monotonic()) / (len(sizes.sweep_k) - index)
            if k_box < 5:
                section.rows.append([str(k), "", "", "", "", "", "", "not run: the part's time box was spent"])
                continue
            timing = once(k, k_box)
            self.sweep_timings[k] = timing
            if timing.status.startswith("failed"):
                failures.append(f"K={k}")
            self.write_sweep_rows(section)
            self.write()
        ran = [t for t in self.sweep_timings.values() if t.runs_done or t.images]
        if failures and not ran:
            return f"failed: {self.sweep_timings[sizes.sweep_k[0]].status.removeprefix('failed: ')}"
        if failures or any(t.status != "done" for t in self.sweep_timings.values()):
            return "partial: see each K's status"
        return "done"

    def sweep_once(self, template: Path, k: int, box: float, train_images: int) -> SweepTiming:
        repo = self.workdir / f"sweep-k{k}"
        if repo.exists():
            shutil.rmtree(repo)
        shutil.copytree(template, repo, symlinks=True)
        args = ["--study", "norm", "--runs-per-gpu", str(k)]
        cmd = [sys.executable, *(["-c", LOGICAL_GPU_SWEEP] if self.args.rehearsal else ["-m", "cifarlab.tools.sweep"]),
               *args]
        log = self.workdir / "logs" / f"sweep-k{k}.log"
        env = self.env(repo / "src")
        env.pop("CUDA_VISIBLE_DEVICES", None)  # Ray hands each task its GPU
        done = run_boxed(cmd, repo, env, box, log, STOP_GRACE_S["sweep"])
        epochs = {run: len(live_column(repo / "plots" / "live" / run, "epoch_time_s")) for run in self.sizes.sweep_runs}
        outcomes_file = repo / "logs" / "sweep" / "outcomes.json"
        outcomes = json.loads(outcomes_file.read_text()) if outcomes_file.exists() else []
        window = None
        if outcomes and all("started_at" in o for o in outcomes):
            window = max(o["started_at"] + o["seconds"] for o in outcomes) - min(o["started_at"] for o in outcomes)
        if done.timed_out:
            status = f"stopped at its {box:.0f} s box"
        elif done.returncode != 0:
            status = f"failed: exited {done.returncode}: {last_lines(log, 2)}"
        else:
            status = "done"
        # A stopped sweep's time runs to the stop, not through the seconds its runs took to save their state.
        wall = min(done.seconds, box) if done.timed_out else done.seconds
        return SweepTiming(k=k, wall_s=wall, runs_done=sum(n >= self.sizes.sweep_epochs for n in epochs.values()),
                           runs=len(self.sizes.sweep_runs), images=sum(epochs.values()) * train_images,
                           window_s=window, status=status)

    def runs_per_gpu_without_ray(self, section: Section, part_end: float, why: str) -> None:
        """Part 5 where the sweep cannot run: for each K, the sweep's runs as train stages in waves of K
        processes started together on the one GPU, each with its share of the CPU threads, as the sweep places
        them, in a copy of the project built as in part 4."""
        sizes = self.sizes
        cpus = os.cpu_count() or 1
        params = self.study_params(runs=sizes.sweep_runs, profile={"train": scaled_train(sizes.sweep_epochs)})
        one_run = " ".join(["OMP_NUM_THREADS=<CPUs/K>", "python", *self.runs_per_gpu_command("<run>", "<K>")[1:],
                            "  # each run, K at once"])
        section.intro = [
            ("**K train processes at once on one GPU, no Ray: the sweep's placement without its scheduler**, "
             f"measured so ({why}; with Ray, DVC and git the check runs `python -m cifarlab.tools.sweep "
             f"--runs-per-gpu K`). The runs {', '.join(sizes.sweep_runs)} with `profiles.full: "
             f"{json.dumps({'train': scaled_train(sizes.sweep_epochs)})}` (the sweep's settings) in a temporary "
             f"copy of the project with `profile: full` on `{self.archive.name}`, its stages up to the split run "
             "directly as in part 4, once; then for each K, from the copy's root, every run's train stage in waves "
             f"of K processes started together, each with MKL_NUM_THREADS and OMP_NUM_THREADS = {cpus} CPUs / K "
             "(at least 1), as the sweep gives each of its runs:"),
            "", "```", "python " + shlex.join(self.stage_command("check-params")[1:]),
            "python " + shlex.join(self.stage_command("fetch")[1:]),
            "python " + shlex.join(self.stage_command("split")[1:]), one_run, "```",
            ("Aggregate images/s: every run's training images x its epochs over the K's wall time, from the first "
             "wave's start to the last one's end (each process's start-up included; nothing runs outside the "
             "runs, so their window is that same time). Unlike the sweep's tasks, a run trains only (no evaluate "
             "stage). The largest K runs first; a K stopped at its box counts the epochs its runs finished.")]
        if self.args.rehearsal:
            section.intro.append("Rehearsal: the K processes share the CPU (`device: cpu`).")
        if importlib.util.find_spec("dvclive") is None:
            section.status = f"skipped: {why}, and DVCLive neither (the train stage logs with it)"
            return
        try:
            project, _ = self.direct_project("runs-per-gpu", lambda mode: params, [], None, part_end)
        except SetupFailed as exc:
            section.status = f"failed without Ray ({why}): {exc}"
            return
        train_images = json.loads((project / "data" / "split" / "meta.json").read_text())["sizes"]["train"]
        self.k_without_ray = True
        status = self.each_k(section, part_end, lambda k, k_box: self.runs_per_gpu_once(project, k, k_box,
                                                                                       train_images))
        kind, _, rest = status.partition(":")
        section.status = f"{kind} without Ray ({why}): " + (rest.strip() or "K train processes at once on one GPU")

    def runs_per_gpu_command(self, run: str, k: int | str) -> list[str]:
        """dvc.yaml's train command for `run`, its outputs in a folder of K's own (k<K>/), so that no K
        resumes or overwrites another's."""
        cmd = self.stage_command("train", run)
        return [f"k{k}/{word}" if before in ("--model", "--live", "--checkpoint") else word
                for before, word in zip(["", *cmd], cmd)]

    def runs_per_gpu_once(self, project: Path, k: int, box: float, train_images: int) -> SweepTiming:
        runs = self.sizes.sweep_runs
        if (project / f"k{k}").exists():
            shutil.rmtree(project / f"k{k}")
        threads = str(max(1, (os.cpu_count() or 1) // k))
        env = {**self.env(project / "src"), "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        logs = self.workdir / "logs"
        started = time.perf_counter()
        failures, stopped = [], False
        for first in range(0, len(runs), k):
            left = box - (time.perf_counter() - started)
            if left <= 0:
                stopped = True
                break
            wave = runs[first:first + k]
            jobs = [(self.runs_per_gpu_command(run, k), env, logs / f"runs-per-gpu-k{k}-{run}.log") for run in wave]
            for run, (_, _, log), done in zip(wave, jobs, run_together(jobs, project, left, STOP_GRACE_S["train"])):
                if done.timed_out:
                    stopped = True
                elif done.returncode != 0:
                    failures.append(f"{run} exited {done.returncode}: {last_lines(log, 1)}")
            if stopped:
                break
        # A stopped K's time runs to the stop, not through the seconds its runs took to save their state.
        wall = min(time.perf_counter() - started, box) if stopped else time.perf_counter() - started
        epochs = [len(live_column(project / f"k{k}" / "plots" / "live" / run, "epoch_time_s")) for run in runs]
        if stopped:
            status = f"stopped at its {box:.0f} s box"
        elif failures:
            status = "failed: " + "; ".join(failures)
        else:
            status = "done"
        return SweepTiming(k=k, wall_s=wall, runs_done=sum(n >= self.sizes.sweep_epochs for n in epochs),
                           runs=len(runs), images=sum(epochs) * train_images, window_s=wall, status=status)

    def write_sweep_rows(self, section: Section) -> None:
        base = self.sweep_timings.get(1)
        rows = []
        for k in self.sizes.sweep_k:
            t = self.sweep_timings.get(k)
            if t is None:
                continue
            rate = t.images / t.wall_s if t.wall_s else None
            base_rate = base.images / base.wall_s if base and base.wall_s and base.images else None
            rows.append([str(k), number(t.wall_s), f"{t.runs_done} of {t.runs}", f"{t.images:,}", number(rate),
                         number(t.images / t.window_s) if t.window_s else "n/a",
                         number(rate / base_rate, 2) if rate and base_rate else "n/a", t.status])
        section.rows = rows

    # ----- 6. projection
    def projection(self, section: Section, box: float) -> None:
        study = default_study()
        split = 1 - study.data.val_fraction
        full_train = round(FULL_TRAIN_IMAGES * split)
        full_val = FULL_TRAIN_IMAGES - full_train
        reference = self.train_timings.get("bn-128")
        val_s_per_image = startup_s = None
        if reference and reference.eval_s:
            val_s_per_image = statistics.median(reference.eval_s[1:] or reference.eval_s) / reference.val_images
        if reference and reference.finished:
            startup_s = reference.startup_s
        compiled_modes = self.sizes.compile_modes
        section.intro = [
            f"Every run of params.yaml under `profile: full`: {full_train:,} training images x its epochs (early "
            f"stopping ignored, so an upper bound; runs that stop early take less), at the path (a) rate of its "
            f"network and batch size (eager, bf16: params.yaml's `performance`), plus per epoch the validation of "
            f"{full_val:,} images at the rate of the bn-128 run of part 4"
            f" ({number(val_s_per_image * 1e6, 1) if val_s_per_image else 'n/a'} us per image), plus once its "
            f"stage's start-up ({number(startup_s, 1) if startup_s is not None else 'n/a'} s, measured there). "
            f"`compiled`: the same with the compiled step's rate where part 2 measured it ("
            + ", ".join(f"{mode} at batch {b}" for b, mode in compiled_modes.items()) + ")."]
        section.header = ["run", "network", "batch", "epochs", "training images", "rate used img/s", "rate from",
                          "eager min", "compiled min"]
        section.rows = []
        totals = {"eager": 0.0, "compiled": 0.0}
        missing = []
        for run in study.runs.values():
            label, batch = network(run.model), run.train.batch_size
            rate, source = self.rate_for(label, batch, "eager")
            compiled = self.step_rates.get((label, batch, compiled_modes.get(batch, "")))
            images = (min(run.train.train_images, full_train) or full_train) * run.train.epochs
            val = (min(run.train.val_images, full_val) or full_val) * run.train.epochs
            if rate is None:
                missing.append(run.name)
                section.rows.append([run.name, label, str(batch), str(run.train.epochs), f"{images:,}", "n/a",
                                     source, "n/a", "n/a"])
                continue
            overhead = (startup_s or 0.0) + val * (val_s_per_image or 0.0)
            minutes = {"eager": (images / rate + overhead) / 60,
                       "compiled": (images / (compiled or rate) + overhead) / 60}
            for kind in totals:
                totals[kind] += minutes[kind]
            section.rows.append([run.name, label, str(batch), str(run.train.epochs), f"{images:,}", number(rate),
                                 source, number(minutes["eager"], 1),
                                 number(minutes["compiled"], 1) + ("" if compiled else " (eager)")])
            self.write()
        speedup, best_k = self.best_sweep_speedup()
        notes = [f"**Serial (`dvc repro`, one run at a time): {number(totals['eager'], 1)} min eager, "
                 f"{number(totals['compiled'], 1)} min compiled**, the train stages alone (each run's evaluate "
                 "stage and the report add their start-ups)" + (f"; runs without a rate: {', '.join(missing)}"
                                                               if missing else "") + "."]
        if speedup:
            how = "K train processes at once, without Ray" if self.k_without_ray else "the sweep"
            notes.append(f"**With K = {best_k} runs per GPU** ({how}: its measured {speedup:.2f}x the aggregate "
                         f"images/s of K = 1, part 5): {number(totals['eager'] / speedup, 1)} min eager, "
                         f"{number(totals['compiled'] / speedup, 1)} min compiled.")
        else:
            notes.append("With several runs per GPU: not projected, part 5 measured no speed-up.")
        if val_s_per_image is None or startup_s is None:
            notes.append("Part 4's bn-128 run did not finish: validation and start-up are left out (counted as 0).")
        section.notes = notes
        self.projected = (totals, speedup) if not missing else None  # a total without some runs is no study's
        section.status = "done" if not missing else f"partial: no rate for {len(missing)} runs"

    def rate_for(self, label: str, batch: int, step: str) -> tuple[float | None, str]:
        """The measured rate of this network at this batch size, else a stated substitute."""
        if (label, batch, step) in self.step_rates:
            return self.step_rates[(label, batch, step)], self.rate_sources[(label, batch, step)]
        substitute = network(throughput.resnet14_config("bn"))
        if (substitute, batch, step) in self.step_rates:
            return self.step_rates[(substitute, batch, step)], f"not measured: {substitute}'s"
        return None, "not measured"

    def best_sweep_speedup(self) -> tuple[float | None, int | None]:
        base = self.sweep_timings.get(1)
        if not base or not base.images:
            return None, None
        base_rate = base.images / base.wall_s
        speedups = {k: (t.images / t.wall_s) / base_rate for k, t in self.sweep_timings.items()
                    if k != 1 and t.images and t.wall_s}
        if not speedups:
            return None, None
        k = max(speedups, key=speedups.get)
        return (speedups[k], k) if speedups[k] > 1 else (None, None)

    # ----- the goals
    def goals(self) -> list[str]:
        def verdict(value: float | None, ok: Callable[[float], bool], shown: str) -> str:
            if value is None:
                return "not measured"
            return f"{shown}: {'met' if ok(value) else 'not met'}"

        lines = []
        ours = self.paths.get(("bn", 128, "eager"))
        ratio = ours.ratio("ours", "usual").median if ours else None
        lines.append("- our path >= 3x the usual pipeline, ResNet-14 bn at batch 128: "
                     + verdict(ratio, lambda r: r >= 3, f"{ratio:.2f}x" if ratio else ""))
        for batch, mode in self.sizes.compile_modes.items():
            bn, twin = self.paths.get(("bn", batch, mode)), self.paths.get(("torch_bn", batch, mode))
            slower = twin.median("model") / bn.median("model") if bn and twin else None
            lines.append(f"- compiled bn's step <= 1.2x torch_bn's (path c, {mode}, batch {batch}): "
                         + verdict(slower, lambda r: r <= 1.2, f"{slower:.2f}x" if slower else ""))
        base, top = self.sweep_timings.get(1), self.sweep_timings.get(max(self.sizes.sweep_k))
        gain = (top.images / top.wall_s) / (base.images / base.wall_s) if base and top and base.images and \
            top.wall_s and base.wall_s else None
        lines.append(f"- K = {max(self.sizes.sweep_k)} runs per GPU >= 4x the aggregate images/s of K = 1"
                     + (" (measured without Ray: K train processes at once)" if self.k_without_ray else "") + ": "
                     + verdict(gain, lambda g: g >= 4, f"{gain:.2f}x" if gain else ""))
        bn8 = self.train_timings.get("bn-8")
        full_bn8 = None
        if bn8 and bn8.steady_epoch_s:
            # The subset's epoch scaled to CIFAR-10's 40,000 training and 10,000 validation images.
            per_epoch = bn8.steady_epoch_s * FULL_TRAIN_IMAGES / (bn8.train_images + bn8.val_images)
            full_bn8 = bn8.epochs_planned * per_epoch / 60
        lines.append(f"- a full-length bn-8 run (compile {bn8.compile_mode if bn8 else 'n/a'}) on CIFAR-10 <= 10 "
                     "min, its subset epochs scaled to 50,000 images: "
                     + verdict(full_bn8, lambda m: m <= 10, f"{full_bn8:.1f} min" if full_bn8 else ""))
        if self.projected:
            totals, speedup = self.projected
            study_min = totals["compiled"] / (speedup or 1)
            lines.append("- the projected full default study <= 15 min on one GPU (compiled, with the best K): "
                         + verdict(study_min, lambda m: m <= 15, f"{study_min:.1f} min"))
        else:
            lines.append("- the projected full default study <= 15 min on one GPU: not measured")
        return lines


def network(model: ModelConfig) -> str:
    """The network, norm and activation in a few words: what decides a step's cost."""
    extras = [f"{model.groups} groups"] if takes_groups(model.norm) else []
    if model.activation != "relu":
        extras.append(model.activation)
    return ", ".join([model_label(model), model.norm, *extras])


def default_study():
    """params.yaml's runs under the full profile, as the default study trains them."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["profile"] = "full"
    return load_study(params)


def live_column(live_dir: Path, column: str) -> list[float]:
    """A history column of a run's DVCLive directory, one value per epoch trained."""
    # Here, not at the top: it imports DVCLive, which only parts 4 and 5 need.
    from cifarlab.train.tracking import live_plot_file

    path = live_plot_file(live_dir, column)
    if not path.exists():
        return []
    rows = path.read_text().splitlines()[1:]
    return [float(row.split("\t")[-1]) for row in rows if row.strip()]


def parse_box(text: str) -> tuple[str, float]:
    part, _, seconds = text.partition("=")
    if part not in PARTS or not seconds:
        raise argparse.ArgumentTypeError(f"expected PART=SECONDS with PART one of {', '.join(PARTS)}, got {text!r}")
    return part, float(seconds)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--archive", type=Path, help="the CIFAR-10 subset archive (cifar-10-subset-python.tar.gz); "
                                                     "the rehearsal generates a tiny one without it")
    parser.add_argument("--out", type=Path, help="the results file (default: benchmarks/results/gpu-check-<GPU>.md; "
                                                 "the rehearsal's: rehearsal.md in the work folder)")
    parser.add_argument("--rehearsal", action="store_true", help="the same code on the CPU with tiny sizes")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"a comma-separated subset of {', '.join(PARTS)}")
    parser.add_argument("--budget", type=float, help="seconds for the whole check (480; the rehearsal 300)")
    parser.add_argument("--box", type=parse_box, action="append", default=[], metavar="PART=S",
                        help="one part's time box in seconds (repeatable)")
    parser.add_argument("--workdir", type=Path, help="where the temporary projects and logs go (default: a new "
                                                     "temporary folder, removed at the end unless --keep)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--sweep-without-ray", action="store_true",
                        help="part 5 measures K runs per GPU with K train processes at once, as it does where Ray, "
                             "DVC or git is missing, instead of through the sweep")
    args = parser.parse_args(argv)
    args.box = dict(args.box)
    parts = [part for part in args.parts.split(",") if part]
    if unknown := [part for part in parts if part not in PARTS]:
        parser.error(f"--parts: unknown {', '.join(unknown)}; expected some of {', '.join(PARTS)}")
    if args.archive is not None and not args.archive.is_file():
        parser.error(f"--archive: {args.archive} is not a file")
    if args.rehearsal:
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        parser.error("no CUDA device here: the check measures a GPU (--rehearsal runs it on the CPU)")
    else:
        device = torch.device("cuda")
    if not args.rehearsal and args.archive is None and {"train", "sweep"} & set(parts):
        parser.error("--archive: the train and sweep parts need the CIFAR-10 subset archive")
    sizes = REHEARSAL if args.rehearsal else GPU

    workdir = (args.workdir or Path(tempfile.mkdtemp(prefix="gpu-check-"))).resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    heading, machine, slug = machine_lines(device, args.rehearsal, argv)
    out = args.out or (workdir / "rehearsal.md" if args.rehearsal else ROOT / "benchmarks" / "results" /
                       f"gpu-check-{slug}.md")
    results = Results(out.resolve(), heading, machine)
    check = Check(args, sizes, device, results, workdir)
    if args.archive is not None:
        check.archive = args.archive.resolve()
    elif args.rehearsal:
        sys.path.insert(0, str(ROOT / "tests"))
        from archives import make_cifar_archive

        check.archive = make_cifar_archive(workdir / "tiny-cifar.tar.gz", per_batch=12, test_size=20)
    for part in PARTS:
        if part not in parts:
            results.sections[part].status = "not run: not among --parts"
    # A scheduler's SIGTERM stops the check as Ctrl-C does: what is measured is written.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    print(f"gpu check: {heading}; results -> {out}; work folder {workdir}", flush=True)
    status = 0
    current = None
    try:
        check.write()
        for part in [p for p in PARTS if p in parts]:
            current = part
            section = results.sections[part]
            box = check.box(part) if part != "projection" else sizes.boxes[part]  # arithmetic only: always
            if box < 1:
                section.status = "not run: the check's time budget was spent"
                continue
            section.status = "running"
            started = time.monotonic()
            print(f"== {part} (time box {box:.0f} s)", flush=True)
            try:
                getattr(check, part)(section, box)
            except PartTimeout:
                section.status = f"partial: stopped at its {box:.0f} s time box"
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # noqa: BLE001  (a part's failure is a finding; the next part still runs)
                section.status = f"failed: {type(exc).__name__}: {one_line(exc)}"
                (workdir / "logs").mkdir(exist_ok=True)
                (workdir / "logs" / f"{part}.traceback").write_text(traceback.format_exc())
            print(f"-- {part}: {section.status} ({time.monotonic() - started:.0f} s)", flush=True)
            check.write()
        current = None
    except KeyboardInterrupt:
        if current is not None:
            results.sections[current].status = f"stopped early (interrupted): {results.sections[current].status}"
        status = 130
        print("gpu check: interrupted; writing what was measured", file=sys.stderr, flush=True)
    finally:
        if "projection" in parts and results.sections["projection"].status.startswith(("not run", "running",
                                                                                         "stopped early")):
            with contextlib.suppress(Exception):  # stopped early: project from what was measured
                check.projection(results.sections["projection"], 1.0)
                results.sections["projection"].status += " (from what was measured before the check stopped)"
        with contextlib.suppress(Exception):
            results.goals = check.goals()
        check.write()
        if not args.keep and args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print(f"gpu check: results in {out}", flush=True)
    return status


if __name__ == "__main__":
    sys.exit(main())

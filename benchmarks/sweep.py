"""The study through `python -m cifarlab.tools.sweep` against plain `dvc repro`, and what Ray adds per task.

In two fresh clones of this repository's last commit, with the same params (the profile and archive
given), it times `dvc repro` in one and the sweep in the other, one after the other on this machine, then
compares every run's metrics file. Then, in this process, it times what Ray adds to a run: starting a
local Ray, an empty task's round trip, and the process that watches each run's `dvc repro`.
Usage:
python benchmarks/sweep.py --data ARCHIVE [--workdir DIR] [--profile quick] [--runs-per-gpu K | --slots N]
                           [--study NAME] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]


def clone_with(params_update: dict, where: Path) -> Path:
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(where)], check=True)
    params = yaml.safe_load((where / "params.yaml").read_text())
    params.update({**params_update, "data": {**params["data"], **params_update.get("data", {})}})
    (where / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return where


def timed(cmd: list[str], cwd: Path, log: Path) -> float:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.perf_counter()
    with open(log, "w") as out:
        result = subprocess.run(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} in {cwd} exited {result.returncode}; see {log}")
    return seconds


def test_accuracies(repo: Path, runs: list[str]) -> dict[str, float]:
    return {run: json.loads((repo / "metrics" / f"{run}.json").read_text())["test"]["accuracy"] for run in runs}


def ray_overheads(tasks: int) -> dict[str, float]:
    """Seconds: a local Ray's start, an empty task's round trip, and the watching process's extra start-up."""
    import ray

    from cifarlab.tools.sweep import run_stopping_on_cancel

    start = time.perf_counter()
    ray.init(include_dashboard=False)
    started = time.perf_counter() - start

    @ray.remote(num_cpus=1)
    def empty() -> None:
        return None

    ray.get(empty.remote())  # the first task starts a worker process
    trips = []
    for _ in range(tasks):
        start = time.perf_counter()
        ray.get(empty.remote())
        trips.append(time.perf_counter() - start)
    ray.shutdown()
    noop = [sys.executable, "-c", "pass"]
    direct, watched = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(tasks):
            start = time.perf_counter()
            subprocess.run(noop, check=True)
            direct.append(time.perf_counter() - start)
            start = time.perf_counter()
            run_stopping_on_cancel(noop, Path(tmp) / "log", Path(tmp), dict(os.environ))
            watched.append(time.perf_counter() - start)
    return {"ray_start_s": started, "task_round_trip_s": statistics.median(trips),
            "watcher_s": statistics.median(watched) - statistics.median(direct)}


def cpu_name() -> str:
    cpuinfo = Path("/proc/cpuinfo")
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
             if line.startswith("model name")] if cpuinfo.exists() else []
    return names[0] if names else (platform.processor() or platform.machine())


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", required=True,
                        help="data.source of both clones: a URL, an absolute path, or one relative to a clone")
    parser.add_argument("--workdir", type=Path, help="where the two clones go (default: a new temporary folder)")
    parser.add_argument("--profile", default="quick")
    parser.add_argument("--runs-per-gpu", type=int, help="the sweep's --runs-per-gpu (where there are GPUs)")
    parser.add_argument("--slots", type=int, help="the sweep's --slots (where there is no GPU)")
    parser.add_argument("--study", help="the sweep's --study; plain `dvc repro` then runs that study's runs")
    parser.add_argument("--tasks", type=int, default=20, help="empty tasks and watched processes to time")
    parser.add_argument("--out", type=Path)
    return parser.parse_args()


def _timed_phases(work: Path, phases: list[tuple[str, list[str], Path]]) -> dict[str, float]:
    """Each phase's wall time; a phase timed before in this workdir is not run again, so that a failure later
    costs no rerun of an hour."""
    timings_file = work / "timings.json"
    timings = json.loads(timings_file.read_text()) if timings_file.exists() else {}
    for phase, cmd, repo in phases:
        if phase not in timings:
            print(f"{phase}: {' '.join(cmd)} in {repo}", flush=True)
            timings[phase] = timed(cmd, repo, work / f"{phase}.log")
            timings_file.write_text(json.dumps(timings) + "\n")
        print(f"  {phase}: {timings[phase]:.0f} s", flush=True)
    return timings


def _summary(args: argparse.Namespace, runs: list[str], plain: Path, swept: Path, plain_cmd: list[str],
             sweep_cmd: list[str], sweep_options: list[str], timings: dict[str, float]) -> str:
    """The results file: both wall times, whether the runs agree, and what Ray adds."""
    plain_s, sweep_s = timings["plain"], timings["sweep"]
    a, b = test_accuracies(plain, runs), test_accuracies(swept, runs)
    identical = [run for run in runs if (plain / "metrics" / f"{run}.json").read_bytes()
                 == (swept / "metrics" / f"{run}.json").read_bytes()]
    gaps = {run: abs(a[run] - b[run]) for run in runs}
    outcomes = json.loads((swept / "logs" / "sweep" / "outcomes.json").read_text())
    overheads = ray_overheads(args.tasks)
    plain_device, sweep_device = (json.loads((repo / "plots" / "live" / runs[0] / "metrics.json").read_text())["device"]
                                  for repo in (plain, swept))
    shown = ["--data", args.data, "--profile", args.profile, *sweep_options]
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    lines = [
        f"# The sweep against plain `dvc repro`: {gpu or cpu_name()}, {os.cpu_count()} CPUs",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; torch {torch.__version__}; profile `{args.profile}` on "
        f"`{Path(args.data).name}`; {len(runs)} trainings" + (f" of study `{args.study}`" if args.study else "") + ".",
        f"`python benchmarks/sweep.py {' '.join(shown)}`",
        "",
        "| | wall time | |",
        "| --- | ---: | --- |",
        f"| `{' '.join(plain_cmd)}` | {plain_s:.0f} s | one run after another; torch: {plain_device} |",
        f"| `python -m cifarlab.tools.sweep{''.join(' ' + x for x in sweep_cmd[3:])}` | {sweep_s:.0f} s | "
        f"{plain_s / sweep_s:.2f}x faster; torch: {sweep_device} per run |",
        "",
        f"Metrics files byte-identical: {len(identical)} of {len(runs)}. Test accuracy, largest difference "
        f"{100 * max(gaps.values()):.2f} points, median {100 * statistics.median(gaps.values()):.2f} "
        f"(runs differ where their torch thread counts differ: convolutions sum in another order).",
        "",
        f"Sweep tasks: {len(outcomes)}, each `dvc repro` of a run's train and evaluate stages: "
        f"median {statistics.median(o['seconds'] for o in outcomes):.1f} s "
        f"({min(o['seconds'] for o in outcomes):.1f}-{max(o['seconds'] for o in outcomes):.1f}); first task "
        f"started {min(o['queued_s'] for o in outcomes):.1f} s after submission.",
        "",
        "What Ray adds, measured here after the runs:",
        "",
        f"- starting a local Ray: {overheads['ray_start_s']:.1f} s, once per sweep;",
        f"- an empty task's round trip (submit, run in a warm worker, result): "
        f"{1000 * overheads['task_round_trip_s']:.1f} ms (median of {args.tasks});",
        f"- starting each run's `dvc repro` in a process group of its own and polling it, so that a stopped "
        f"sweep can interrupt it: {1000 * overheads['watcher_s']:.0f} ms per run (median of {args.tasks}, over "
        f"a plain `subprocess.run` of a bare Python start).",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    args = _arguments()
    update = {"profile": args.profile, "data": {"source": args.data}}
    work = args.workdir or Path(tempfile.mkdtemp(prefix="sweep-benchmark-"))
    plain, swept = (work / name if (work / name).exists() else clone_with(update, work / name)
                    for name in ("plain", "sweep"))
    params = yaml.safe_load((plain / "params.yaml").read_text())
    runs = [name for name, entry in params["runs"].items() if args.study in (None, entry.get("study"))]
    plain_cmd = ["dvc", "repro"] if args.study is None else \
        ["dvc", "repro", *(f"evaluate@{run}" for run in runs)]
    sweep_options = (["--runs-per-gpu", str(args.runs_per_gpu)] if args.runs_per_gpu else []) \
        + (["--slots", str(args.slots)] if args.slots else []) + (["--study", args.study] if args.study else [])
    sweep_cmd = [sys.executable, "-m", "cifarlab.tools.sweep", *sweep_options]
    timings = _timed_phases(work, [("plain", plain_cmd, plain), ("sweep", sweep_cmd, swept)])
    text = _summary(args, runs, plain, swept, plain_cmd, sweep_cmd, sweep_options, timings)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
    print(f"clones kept in {work}")


if __name__ == "__main__":
    main()

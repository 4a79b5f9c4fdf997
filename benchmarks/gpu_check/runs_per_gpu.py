"""Part 4, runs per GPU: K train processes at once on the one GPU, each with its share of the CPUs, as the
sweep places K runs on a GPU. What K buys is measured in steady state: the sum over the K runs of each
one's images/s over its epochs from the second on, while all K overlap, so that neither the processes'
start-ups nor their first epochs (compilation, warm-up) count, and every K trains the same run (bn-128 and
its replicates), like for like. Each K stops once every run has its steady epochs in."""

from __future__ import annotations

import json
import os
import shutil
import time

from gpu_check.check import Check, KRate
from gpu_check.children import last_lines, run_together
from gpu_check.project import (
    Project,
    SetupFailed,
    ensure_project,
    lacks_dvclive,
    run_config,
    split_sizes,
    study_params,
    train_command,
)
from gpu_check.results import Section, number
from gpu_check.sizes import K_RUN, STOP_GRACE_S, scaled_train
from gpu_check.watch import EpochWatch, steady_rate

HEADER = ["K", "threads each", "steady img/s (sum)", "per run img/s", "steady epochs", "x K=1", "wall s", "status"]


def k_runs(check: Check) -> dict[str, dict]:
    """params.yaml's entry of K_RUN and replicates of it, enough for the largest K."""
    entry = study_params(check)["runs"][K_RUN]
    replicates = {f"{K_RUN}-r{i}": {**entry, "replicate_of": K_RUN, "replicate": i}
                  for i in range(1, max(check.sizes.k_values))}
    return {K_RUN: entry, **replicates}


def run(check: Check, section: Section, box: float) -> None:
    part_end = time.monotonic() + box - STOP_GRACE_S["runs-per-gpu"]
    sizes = check.sizes
    section.intro = intro(check)
    section.header = HEADER
    if lacks_dvclive(section):
        return
    try:
        project = ensure_project(check, part_end)
        params = study_params(check, runs=k_runs(check), profile={"train": scaled_train(sizes.k_epochs)})
        folder, why = project.settings_folder("k", params, part_end)
    except SetupFailed as exc:
        section.status = f"failed: {exc}"
        return
    if folder is None:
        section.status = f"failed: check-params refused the runs: {why}"
        return
    images = min(run_config(project, f"{folder}/{K_RUN}.json").train.train_images or split_sizes(project)["train"],
                 split_sizes(project)["train"])
    for index, k in enumerate(sizes.k_values):
        k_box = (part_end - time.monotonic()) / (len(sizes.k_values) - index)  # a K stopped early frees time
        if k_box < 5:
            check.k_rates[k] = KRate(k, None, 0, 0, 0.0, "not run: the part's time box was spent")
        else:
            check.k_rates[k] = once(check, project, folder, k, k_box, images)
        section.rows = rows(check)
        check.write()
    section.status = status(check)


def thread_env(env: dict[str, str], k: int, cpus: int) -> dict[str, str]:
    """`env` with one of K runs' share of the CPUs, as the sweep gives it: for torch's threads, and for
    inductor's compile pool, which would otherwise start a worker per CPU in each of the K processes."""
    threads = str(max(1, cpus // k))
    return {**env, **dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCHINDUCTOR_COMPILE_THREADS"), threads)}


def once(check: Check, project: Project, folder: str, k: int, box: float, images: int) -> KRate:
    """K runs started together, stopped once each has its steady epochs in (or at `box`)."""
    names = list(k_runs(check))[:k]
    env = thread_env(project.env, k, os.cpu_count() or 1)
    threads = int(env["OMP_NUM_THREADS"])
    outputs = f"k{k}"
    shutil.rmtree(project.root / outputs, ignore_errors=True)
    logs = [check.workdir / "logs" / f"runs-per-gpu-k{k}-{name}.log" for name in names]
    jobs = [(train_command(name, folder, outputs), env, log) for name, log in zip(names, logs)]
    watch = EpochWatch([project.root / outputs / "plots" / "live" / name for name in names],
                       enough=check.sizes.k_min_steady)
    done = run_together(jobs, project.root, box, STOP_GRACE_S["runs-per-gpu"], poll=watch)
    rate, epochs = steady_rate([watch.epochs(i) for i in range(k)], images, watch.until())
    failures = [f"{name} exited {d.returncode}: {last_lines(log, 1)}"
                for name, d, log in zip(names, done, logs) if d.returncode != 0 and not d.timed_out]
    if failures:
        state = "failed: " + "; ".join(failures)
    elif watch.stopped_at is None:
        state = f"stopped at its {box:.0f} s box before {check.sizes.k_min_steady} steady epochs of every run"
    else:
        state = "done"
    return KRate(k, rate, epochs, threads, max(d.seconds for d in done), state)


def rows(check: Check) -> list[list[str]]:
    table = []
    for k, measured in check.k_rates.items():
        gain = check.k_gain(k)
        table.append([str(k), str(measured.threads or ""), number(measured.rate),
                      number(measured.rate / k if measured.rate else None), str(measured.epochs),
                      number(gain, 2) if gain else "n/a", number(measured.wall_s), measured.status])
    return table


def status(check: Check) -> str:
    measured = [m for m in check.k_rates.values() if m.rate is not None]
    if not measured:
        return "failed: " + "; ".join(f"K={m.k}: {m.status}" for m in check.k_rates.values())
    if len(measured) < len(check.k_rates) or any(m.status != "done" for m in check.k_rates.values()):
        return "partial: see each K's status"
    return "done"


def intro(check: Check) -> list[str]:
    sizes = check.sizes
    cpus = os.cpu_count() or 1
    command = " ".join(train_command("<run>", "data/runs-k", "k<K>")[1:])
    return [
        (f"For K = {', '.join(map(str, sizes.k_values))}: the train stages of {K_RUN} and its first K - 1 "
         f"replicates (`profiles.full: {json.dumps({'train': scaled_train(sizes.k_epochs)})}`) started together "
         f"in the temporary project of part 3, each with OMP_NUM_THREADS, MKL_NUM_THREADS and "
         f"TORCHINDUCTOR_COMPILE_THREADS = {cpus} CPUs / K (at least 1), as the sweep gives each of its runs; "
         "from the copy's root:"),
        "", "```", f"python {command}   # K at once", "```",
        ("`steady img/s (sum)`: over the K runs, each one's training images over its epochs' seconds (training "
         "and validation), counting its epochs after the first that lie inside the window where all K are past "
         f"their first epoch; a K is stopped once every run has {sizes.k_min_steady} such epochs. Start-ups, "
         "first epochs and the sweep's own scheduler (Ray, DVC: benchmarks/sweep.py measures what they add per "
         "run) are left out. The largest K runs first.")]

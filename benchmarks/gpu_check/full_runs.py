"""Part 3: one full-length run of bn-8 (compiled, as on a GPU) and one of bn-128 through the train stage, on
the archive, in the temporary project. A run that outlives its share of the box is stopped as Ctrl-C stops
it and its length projected from its steady epochs."""

from __future__ import annotations

import json
import math
import statistics
import time

from gpu_check.check import Check, TrainTiming
from gpu_check.children import last_lines, run_together
from gpu_check.project import (
    Project,
    SetupFailed,
    ensure_project,
    lacks_dvclive,
    live_column,
    run_config,
    split_sizes,
    stage_command,
    study_params,
    train_command,
)
from gpu_check.results import Section, number
from gpu_check.sizes import FULL_RUNS, STOP_GRACE_S
from gpu_check.watch import EpochWatch

HEADER = ["run", "compile", "epochs trained", "stage s", "start-up s", "first epoch s", "median epoch s (train + val)",
          "train img/s (median epoch)", "full length s", "how"]


def run(check: Check, section: Section, box: float) -> None:
    part_end = time.monotonic() + box - STOP_GRACE_S["train"]
    section.intro = intro(check)
    section.header = HEADER
    if lacks_dvclive(section):
        return
    try:
        project = ensure_project(check, part_end)
        folders = settings_by_run(check, project, section, part_end)
    except SetupFailed as exc:
        section.status = f"failed: {exc}"
        return
    for index, name in enumerate(FULL_RUNS):
        shares = [check.sizes.train_shares[r] for r in FULL_RUNS[index:]]
        run_box = (part_end - time.monotonic()) * shares[0] / sum(shares)  # a fast run frees time for the next
        if run_box < 1:
            section.rows.append([name, *[""] * (len(HEADER) - 2), "not run: the part's time box was spent"])
            continue
        try:
            timing = train_once(check, project, name, folders[name], run_box)
        except RuntimeError as exc:
            section.rows.append([name, *[""] * (len(HEADER) - 2), f"failed: {exc}"])
            continue
        check.train_timings[name] = timing
        section.rows.append(row(timing, run_box))
        check.write()
    sizes = split_sizes(project)
    section.notes.append(f"The archive's split: {sizes['train']:,} train and {sizes['val']:,} validation images.")
    section.status = status(section.rows, check)


def settings_by_run(check: Check, project: Project, section: Section, end: float) -> dict[str, str]:
    """Each run's settings folder: params.yaml's, or with the performance.compile the GPU runs it with;
    where check-params refuses that (a toolchain check, say), params.yaml's, with a note why."""
    default = study_params(check)["performance"]["compile"]
    folders = {}
    for name in FULL_RUNS:
        for mode in dict.fromkeys([check.sizes.train_compile.get(name, default), default]):
            params = study_params(check, profile=check.sizes.train_profile, compile_mode=mode)
            folder, why = project.settings_folder(f"train-{mode}", params, end)
            if folder is not None:
                folders[name] = folder
                break
            section.notes.append(f"performance.compile: {mode} refused, so {name} trains as params.yaml says: {why}")
        else:
            raise SetupFailed(f"check-params refused the settings of {name}: {why}")
    return folders


def train_once(check: Check, project: Project, name: str, folder: str, box: float) -> TrainTiming:
    cmd = train_command(name, folder, "train")
    config = run_config(project, cmd[2])
    live = project.root / "train" / "plots" / "live" / name
    log = check.workdir / "logs" / f"train-{name}.log"
    watch = EpochWatch([live])
    started = time.monotonic()
    (done,) = run_together([(cmd, project.env, log)], project.root, box, STOP_GRACE_S["train"], poll=watch)
    if done.returncode != 0 and not done.timed_out:
        raise RuntimeError(f"the train stage of {name} exited {done.returncode}: {last_lines(log, 2)}")
    epoch_s, eval_s = live_column(live, "epoch_time_s"), live_column(live, "eval_time_s")
    startup = watch.ends[0][0] - epoch_s[0] - eval_s[0] - started if watch.ends[0] and epoch_s else math.nan
    split = split_sizes(project)
    return TrainTiming(run=name, compile_mode=config.performance.compile, epochs_planned=config.train.epochs,
                       train_images=min(config.train.train_images or split["train"], split["train"]),
                       val_images=min(config.train.val_images or split["val"], split["val"]), wall_s=done.seconds,
                       epoch_s=epoch_s, eval_s=eval_s, startup_s=startup, finished=not done.timed_out)


def row(timing: TrainTiming, box: float) -> list[str]:
    rates = [timing.train_images / s for s in timing.epoch_s[1:] or timing.epoch_s]
    first = timing.epoch_s[0] + timing.eval_s[0] if timing.epoch_s else None
    return [timing.run, timing.compile_mode, f"{len(timing.epoch_s)} of {timing.epochs_planned}",
            number(timing.wall_s), number(timing.startup_s, 1), number(first, 2), number(timing.steady_epoch_s, 2),
            number(statistics.median(rates)) if rates else "n/a", number(timing.full_length_s),
            "measured" if timing.finished else f"projected (stopped at its {box:.0f} s box)"]


def status(rows: list[list[str]], check: Check) -> str:
    failed = [row[0] for row in rows if row[-1].startswith(("failed", "not run"))]
    stopped = [name for name, timing in check.train_timings.items() if not timing.finished]
    if len(failed) == len(FULL_RUNS):
        return "failed: " + "; ".join(row[-1] for row in rows)
    if failed or stopped:
        return f"partial: {', '.join(failed + stopped)} did not finish (see each run's row)"
    return "done"


def intro(check: Check) -> list[str]:
    sizes = check.sizes
    modes = sorted(set(sizes.train_compile.values()))
    return [
        (f"Each run's train stage, run directly (no DVC, no git) in a temporary copy of the project whose "
         f"params.yaml is the checkout's with `profile: full` and `data.source: {check.archive.name}`"
         + (f" and the rehearsal's `profiles.full: {json.dumps(sizes.train_profile)}`" if sizes.train_profile
            else "") + ", bn-8 with `performance.compile: " + ", ".join(modes) + "`. The commands, from the copy's "
         "root (the settings folder of each compile mode written by check-params with `--runs data/runs-<name>`):"),
        "", "```", *("python " + " ".join(stage_command(stage)[1:]) for stage in ("fetch", "split")),
        *("python " + " ".join(train_command(run, "data/runs-<name>", "train")[1:]) for run in FULL_RUNS), "```",
        ("`start-up s`: from the stage's start to its first epoch (imports, data, the initial validation); "
         "`first epoch s` against the median one shows compilation. A run that does not finish inside its "
         "share of the box is stopped (as Ctrl-C stops it: its state saved) and its length projected: the time "
         "so far plus its median epoch for every epoch left. Early stopping may end a run before its last epoch.")]

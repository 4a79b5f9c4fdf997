"""Part 7: the full default study's time on this GPU, from the rates measured before, like for like: eager
runs at eager rates, compiled runs at compiled rates plus their compile time, and K runs per GPU at the
gain that K eager runs of the study's kind measured."""

from __future__ import annotations

import math
import statistics

import throughput

from cifarlab.config.sections import RunConfig
from gpu_check.check import Check
from gpu_check.project import default_study, network
from gpu_check.results import Section, number
from gpu_check.sizes import FULL_TRAIN_IMAGES

HEADER = ["run", "network", "batch", "epochs", "training images", "eager img/s", "rate from", "compiled img/s",
          "compile s", "eager min", "compiled min"]


def reference(check: Check) -> tuple[float | None, float | None]:
    """(validation seconds per image, a stage's start-up seconds), from part 3's bn-128 run."""
    timing = check.train_timings.get("bn-128")
    if not timing or not timing.eval_s:
        return None, None
    val = statistics.median(timing.eval_s[1:] or timing.eval_s) / timing.val_images
    return val, timing.startup_s if math.isfinite(timing.startup_s) else None


def rate_for(check: Check, label: str, batch: int) -> tuple[float | None, str]:
    """The measured eager rate of this network at this batch size, else a stated substitute."""
    if (label, batch, "eager") in check.step_rates:
        return check.step_rates[(label, batch, "eager")], check.rate_sources[(label, batch, "eager")]
    substitute = network(throughput.resnet14_config("bn"))
    if (substitute, batch, "eager") in check.step_rates:
        return check.step_rates[(substitute, batch, "eager")], f"not measured: {substitute}'s"
    return None, "not measured"


def project_run(check: Check, run: RunConfig, full: tuple[int, int],
                overheads: tuple[float, float]) -> tuple[list[str], float | None, float | None]:
    """One run's row, and its minutes eager and compiled (None without a rate)."""
    (full_train, full_val), (val_s_per_image, startup_s) = full, overheads
    label, batch = network(run.model), run.train.batch_size
    rate, source = rate_for(check, label, batch)
    mode = check.sizes.compile_modes.get(batch, "")
    compiled = check.step_rates.get((label, batch, mode))
    compile_s = (check.compile_s(run.model.norm, batch, mode) or 0.0) if compiled else 0.0
    images = (min(run.train.train_images, full_train) or full_train) * run.train.epochs
    cells = [run.name, label, str(batch), str(run.train.epochs), f"{images:,}", number(rate), source,
             number(compiled) if compiled else "(eager)", number(compile_s, 1)]
    if rate is None:
        return [*cells, "n/a", "n/a"], None, None
    overhead = startup_s + (min(run.train.val_images, full_val) or full_val) * run.train.epochs * val_s_per_image
    eager = (images / rate + overhead) / 60
    both = eager, (images / compiled + compile_s + overhead) / 60 if compiled else eager
    return [*cells, *(number(minutes, 1) for minutes in both)], *both


def run(check: Check, section: Section, box: float) -> None:
    study = default_study()
    full_train = round(FULL_TRAIN_IMAGES * (1 - study.data.val_fraction))
    val_s_per_image, startup_s = reference(check)
    section.intro = [(
        f"Every run of params.yaml under `profile: full`: {full_train:,} training images x its epochs (early "
        "stopping ignored, so an upper bound) at the path (a) rate of its network and batch size (bf16: "
        f"params.yaml's `performance`), plus per epoch the validation of {FULL_TRAIN_IMAGES - full_train:,} images "
        f"at part 3's bn-128 rate ({number(val_s_per_image * 1e6 if val_s_per_image else None, 1)} us per image), "
        f"plus once its stage's start-up ({number(startup_s, 1)} s, measured there). `compiled`: the compiled "
        "step's rate where part 2 measured it, plus that step's compile time there (its compiled warm-up less its "
        "eager one), once per run; other runs stay eager.")]
    section.header = HEADER
    projected = [project_run(check, run, (full_train, FULL_TRAIN_IMAGES - full_train),
                             (val_s_per_image or 0.0, startup_s or 0.0)) for run in study.runs.values()]
    section.rows = [row for row, _, _ in projected]
    missing = [row[0] for row, eager, _ in projected if eager is None]
    serial = {"eager": sum(eager or 0.0 for _, eager, _ in projected),
              "compiled": sum(compiled or 0.0 for _, _, compiled in projected)}
    section.notes = notes(check, serial, missing, val_s_per_image is None or startup_s is None)
    check.projected = None if missing else {"serial, eager": serial["eager"], "serial, compiled": serial["compiled"]}
    k, gain = check.best_k()
    if check.projected and gain:
        check.projected[f"K = {k} runs per GPU, eager"] = serial["eager"] / gain
    section.status = "done" if not missing else f"partial: no rate for {len(missing)} runs"


def notes(check: Check, serial: dict[str, float], missing: list[str], no_reference: bool) -> list[str]:
    lines = [f"**Serial (`dvc repro`, one run at a time): {number(serial['eager'], 1)} min eager, "
             f"{number(serial['compiled'], 1)} min compiled**, the train stages alone (each run's evaluate stage and "
             "the report add their start-ups)" + (f"; runs without a rate: {', '.join(missing)}" if missing else "")
             + "."]
    k, gain = check.best_k()
    if gain:
        lines.append(f"**With K = {k} runs per GPU, eager: {number(serial['eager'] / gain, 1)} min** (part 4's "
                     f"steady-state gain, {gain:.2f}x the images/s of one run, measured on eager runs and so applied "
                     "to the eager total only; compiled runs at K were not measured).")
    else:
        lines.append("With several runs per GPU: not projected, part 4 measured no gain.")
    if no_reference:
        lines.append("Part 3's bn-128 run gave no validation rate or start-up: they are left out (counted as 0).")
    return lines

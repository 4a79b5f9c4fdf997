"""Part 2, training throughput of ResNet-14 along the paths of benchmarks/throughput.py: batch 8 first, eager
then compiled for bn, torch_bn and gn (the goals' comparison), then batch 128 likewise. Each compiled
measurement has a box of its own inside the part's, so that one compile that outlives it leaves the rest
their turn."""

from __future__ import annotations

import itertools
import time

import numpy as np
import throughput

from gpu_check.boxes import PartTimeout, box_ended, time_box
from gpu_check.check import Check
from gpu_check.compiling import (
    compile_counts,
    compiling_with,
    fresh_compile,
    release_compile,
)
from gpu_check.project import network
from gpu_check.results import Section, number
from gpu_check.sizes import CLEANUP_S, NORMS, Sizes

HEADER = ["norm", "batch", "step", "first steps s", "(a) ours img/s", "(b) usual img/s", "(b') usual loader img/s",
          "(c) model img/s", "(a)/(b)", "(a)/(b')", "(a)/(c)", "graphs / breaks / CUDA-graph skips", "note"]


def plan(sizes: Sizes) -> list[tuple[str, int, str]]:
    """(norm, batch, step) in the order measured: per batch size, every norm eager, then compiled."""
    return [entry for batch in sizes.batches
            for entry in [*((norm, batch, "eager") for norm in NORMS),
                          *((norm, batch, sizes.compile_modes[batch]) for norm in sizes.compiled_norms[batch])]]


def run(check: Check, section: Section, box: float) -> None:
    sizes = check.sizes
    section.intro = intro(check)
    section.header = HEADER
    entries = plan(sizes)
    data = synthetic_data(max((sizes.warmup + sizes.steps[b]) * b for b in sizes.batches))
    measured = 0
    try:
        with time_box(box - CLEANUP_S) as part_end:
            for norm, batch, step in entries:
                measured += measure_in_box(check, section, (norm, batch, step), data, part_end)
                check.write()
    except PartTimeout:
        section.status = f"partial: stopped at its {box:.0f} s time box after {len(section.rows)} of " \
                         f"{len(entries)} measurements (in the order of the table)"
        return
    finally:
        release_compile()
    stopped = len(section.rows) - measured
    section.status = f"done: {measured} measurements" + (f", {stopped} stopped at their box" if stopped else "")


def measure_in_box(check: Check, section: Section, entry: tuple[str, int, str], data: tuple[np.ndarray, np.ndarray],
                   part_end: float) -> bool:
    """One row of the table, a compiled one inside its own box; whether it was measured."""
    sizes = check.sizes
    norm, batch, step = entry
    stall = sizes.stall if step != "eager" and sizes.stall and (sizes.stall.norm, sizes.stall.batch) == (norm, batch) \
        else None
    box = stall.box_s if stall else sizes.compile_box_s if step != "eager" else float("inf")
    phase = ["compiling"]
    try:
        with time_box(box), compiling_with(sizes.stand_in, stalled=stall is not None):
            section.rows.append(measure(check, entry, data, phase))
        return True
    except PartTimeout:
        if box_ended(part_end):
            raise
        left = release_compile()
        note = f"stopped at its {box:.0f} s box while {phase[0]}; compile workers left after the stop: {left}"
        section.rows.append([norm, str(batch), step, *[""] * (len(HEADER) - 4), note])
        return False


def measure(check: Check, entry: tuple[str, int, str], data: tuple[np.ndarray, np.ndarray],
            phase: list[str]) -> list[str]:
    """The four paths (three when compiled: the textbook loop compiles nothing, its eager row stands)."""
    sizes, device = check.sizes, check.device
    norm, batch, step = entry
    fresh_compile()
    options = throughput.step_options(device, "none" if step == "eager" else step, bf16=True)
    paths = throughput.training_paths(norm, batch, device, data, sizes.workers, options)
    if step != "eager":
        del paths["usual"]
    train, batches = paths["ours"]
    started = time.perf_counter()
    train(itertools.islice(batches(), sizes.warmup))  # compiles here, if compiled
    first_steps = time.perf_counter() - started
    counts = "" if step == "eager" else str(compile_counts())
    phase[0] = "measuring"
    rounds = throughput.alternated(paths, sizes.steps[batch], batch, sizes.rounds, device, sizes.warmup)
    check.paths[entry], check.first_steps_s[entry] = rounds, first_steps
    key = (network(throughput.resnet14_config(norm)), batch, step)
    check.step_rates[key], check.rate_sources[key] = rounds.median("ours"), "part 2"
    rates = [number(rounds.median(p)) if p in rounds else "" for p in ("ours", "usual", "usual_loader", "model")]
    ratios = [str(rounds.ratio("ours", p)) if p in rounds else "" for p in ("usual", "usual_loader", "model")]
    return [norm, str(batch), step, number(first_steps, 1), *rates, *ratios, counts, ""]


def intro(check: Check) -> list[str]:
    sizes, device = check.sizes, check.device
    lines = [
        (f"`python benchmarks/gpu_check --parts throughput` (the functions of benchmarks/throughput.py): "
         f"{sizes.rounds} alternated rounds of "
         f"{', '.join(f'{sizes.steps[b]} steps at batch {b}' for b in sizes.batches)} after {sizes.warmup} warm-up "
         "steps; images/s are medians over the rounds, ratios the median of the rounds' ratios. (a) ours: the "
         f"split resident on the device, our step in bf16 {'(on CUDA) ' if device.type != 'cuda' else ''}with "
         "channels_last; (b) the usual pipeline: PIL images through torchvision transforms in a DataLoader "
         f"with {sizes.workers} workers and the textbook loop (float32, NCHW, loss read every step); (b') that "
         "loader feeding our step: the fair measure of the input path; (c) our step alone on one resident "
         "batch. Compiled rows: `default` at batch 128, `reduce-overhead` (CUDA graphs) at batch 8, each in a "
         f"box of {sizes.compile_box_s:.0f} s; their (b) is the eager row's. `first steps s`: the warm-up, which "
         "includes compiling (after part 1, from inductor's cache for the step it compiled).")]
    if sizes.stand_in:
        lines.append(f"Rehearsal: compiled with dynamo's `{sizes.stand_in}` backend in place of inductor"
                     + (f"; {sizes.stall.norm}'s compile at batch {sizes.stall.batch} stalls inside the compile "
                        f"until its {sizes.stall.box_s:.0f} s box ends" if sizes.stall else "") + ".")
    return lines


def synthetic_data(images: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return (rng.integers(0, 256, (images, 3, 32, 32), dtype=np.uint8),
            rng.integers(0, 10, images).astype(np.int64))


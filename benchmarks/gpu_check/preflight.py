"""Part 1, the CUDA preflight: before minutes go into measuring, the step that the batch-8 goals compile,
compiled once in bf16 as a run on a GPU compiles it. One graph, no graph break and no CUDA-graph skip say
that the compiled figures after it measure what they claim; its compile also fills inductor's cache, so
part 2 pays for that step's compile once."""

from __future__ import annotations

import itertools
import time

import throughput
import torch

from gpu_check.boxes import PartTimeout, time_box
from gpu_check.check import Check
from gpu_check.compiling import (
    compile_counts,
    compiling_with,
    fresh_compile,
    release_compile,
)
from gpu_check.results import Section, number
from gpu_check.sizes import CLEANUP_S


def run(check: Check, section: Section, box: float) -> None:
    sizes = check.sizes
    section.intro = [
        ("`python benchmarks/gpu_check --parts preflight`: ResNet-14's training step (forward, loss, backward, "
         "optimizer) under bf16 autocast with channels_last, compiled in the mode of its batch size, "
         f"{sizes.warmup} warm-up steps (compiling, then recording CUDA graphs), then "
         f"{', '.join(f'{sizes.steps[b]} steps at batch {b}' for _, b in sizes.preflight)} of the step alone "
         "(path c). `graphs`: dynamo's graphs; `CUDA-graph skips`: compiled graphs run without CUDA graphs "
         "(`TORCH_LOGS=cudagraphs` tells why).")]
    if sizes.preflight_stand_in:
        section.intro.append(f"Rehearsal: compiled with dynamo's `{sizes.preflight_stand_in}` backend in place "
                             "of inductor, bf16 autocast on the CPU: the same graph capture, no CUDA graphs.")
    section.header = ["norm", "batch", "compile", "graphs", "graph breaks", "CUDA-graph skips", "first steps s",
                      "(c) img/s"]
    try:
        with time_box(box - CLEANUP_S), compiling_with(sizes.preflight_stand_in):
            for norm, batch in sizes.preflight:
                compile_once(check, section, norm, batch)
                check.write()
    except PartTimeout:
        release_compile()
        section.status = f"partial: stopped at its {box:.0f} s time box after {len(section.rows)} of " \
                         f"{len(sizes.preflight)} compiles"
        return
    clean = all(counts.clean for counts in check.preflight.values())
    section.status = "done: " + ("one graph, no graph break, no CUDA-graph skip" if clean
                                 else "not clean (see the table): the compiled figures below are not one graph's")


def compile_once(check: Check, section: Section, norm: str, batch: int) -> None:
    """Compile the bf16 step of ResNet-14 with `norm` at `batch`, run it, and record what the compile made."""
    device, sizes = check.device, check.sizes
    mode = sizes.compile_modes[batch]
    fresh_compile()
    stepper = throughput.make_stepper(throughput.resnet14(norm), batch, device,
                                      {"channels_last": True, "compile_mode": mode, "amp_dtype": torch.bfloat16})
    batches = throughput.one_batch(stepper, batch, device)
    started = time.perf_counter()
    stepper.run(itertools.islice(batches(), max(sizes.warmup, 3)))  # CUDA graphs record at the second call
    first_steps = time.perf_counter() - started
    counts = compile_counts()
    rate = throughput.images_per_s(stepper.run, batches, sizes.steps[batch], batch, device, warmup=0)
    check.preflight[(norm, batch)] = counts
    section.rows.append([norm, str(batch), mode, str(counts.graphs), str(counts.breaks), str(counts.cudagraph_skips),
                         number(first_steps, 1), number(rate)])

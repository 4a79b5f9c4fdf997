"""Part 5: path (a)'s eager rate for every network and batch size among params.yaml's runs that part 2 did
not measure, so that the projection has a measured rate for every run."""

from __future__ import annotations

import itertools

import numpy as np
import throughput

from cifarlab.config.sections import ModelConfig
from cifarlab.data.loader import Normalizer, ResidentDataset
from gpu_check.boxes import PartTimeout, time_box
from gpu_check.check import Check
from gpu_check.paths import synthetic_data
from gpu_check.project import default_study, network
from gpu_check.results import Section, number
from gpu_check.sizes import CLEANUP_S


def wanted_networks(check: Check) -> dict[tuple[str, int], tuple[ModelConfig, list[str]]]:
    """(network, batch) -> its model and the runs that train it, for those part 2 did not measure."""
    wanted: dict[tuple[str, int], tuple[ModelConfig, list[str]]] = {}
    for run in default_study().runs.values():
        key = (network(run.model), run.train.batch_size)
        wanted.setdefault(key, (run.model, []))[1].append(run.name)
    return {key: value for key, value in wanted.items() if (*key, "eager") not in check.step_rates}


def run(check: Check, section: Section, box: float) -> None:
    sizes = check.sizes
    todo = wanted_networks(check)
    section.intro = [(f"`python benchmarks/gpu_check --parts rates`: path (a), eager, bf16 on CUDA, "
                      f"{', '.join(f'{n} steps at batch {b}' for b, n in sizes.rate_steps.items())} after "
                      f"{sizes.rate_warmup} warm-up steps, one round, for each network and batch size of "
                      "params.yaml's runs that part 2 did not measure.")]
    section.header = ["network", "batch", "(a) ours img/s", "runs"]
    data = synthetic_data(max([(sizes.rate_warmup + sizes.rate_steps[b]) * b for _, b in todo] or [1]))
    measured = 0
    try:
        with time_box(box - CLEANUP_S):
            for (label, batch), (config, names) in todo.items():
                rate = measure_rate(check, config, batch, data)
                check.step_rates[(label, batch, "eager")] = rate
                check.rate_sources[(label, batch, "eager")] = "part 5"
                section.rows.append([label, str(batch), number(rate), ", ".join(names)])
                measured += 1
                check.write()
    except PartTimeout:
        section.status = f"partial: stopped at its {box:.0f} s time box after {measured} of {len(todo)} " \
                         "networks; the projection uses a stated substitute for the rest"
        return
    section.status = f"done: {measured} networks"


def measure_rate(check: Check, config: ModelConfig, batch: int, data: tuple[np.ndarray, np.ndarray]) -> float:
    device, sizes = check.device, check.sizes
    stepper = throughput.make_stepper(throughput.seeded_model(config), batch, device,
                                      throughput.step_options(device, "none", bf16=True))
    resident = ResidentDataset(*data, device)
    normalize = Normalizer(throughput.MEAN, throughput.STD, device, channels_last=stepper.channels_last)
    epochs = itertools.count()
    return throughput.images_per_s(stepper.run, lambda: resident.train_batches(batch, 0, next(epochs), normalize),
                                   sizes.rate_steps[batch], batch, device, sizes.rate_warmup)


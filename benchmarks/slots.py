"""How to spread training runs over a machine's cores: K runs at once with T torch threads each.

A long study on a few cores can run one training after another with every core's thread, or several at
once with fewer threads each (`python -m cifarlab.tools.sweep --slots K`, with `OMP_NUM_THREADS=T`). This
measures the images/s that the whole machine trains at under each layout, on the norm study's ResNet-14
(n=2) through the training loop's own step and input path (the split resident as uint8, batched crop and
flip), at the batch sizes its runs use. Each layout's K processes start together, warm up, then train side
by side for the same seconds; their images/s are summed. Each round measures every layout back to back,
so a ratio is taken within a round, where a shared machine's drift moves both of its terms alike; the
table gives the median over rounds with the lowest and highest round. Usage:

python benchmarks/slots.py [--layouts 1x2,2x1,2x2] [--batches 8,128] [--norm bn] [--seconds 20]
    [--rounds 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import itertools
import multiprocessing
import statistics
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from throughput import MEAN, STD, Ratio, hardware, make_stepper, publish, resnet14, step_options

from cifarlab.data.loader import Normalizer, ResidentDataset

TRAIN_IMAGES = 4_000  # the subset's training split: an epoch of batch 8 is 500 steps, of batch 128 31


def _train(threads: int, batch_size: int, norm: str, seconds: float, start, results) -> None:
    """One run's training for `seconds` once every process of the layout is ready; puts its images/s, or
    what went wrong (and breaks the barrier, so that the layout's other processes do not wait for it)."""
    try:
        results.put(_images_per_s(threads, batch_size, norm, seconds, start))
    except BaseException as error:
        start.abort()
        results.put(f"{type(error).__name__}: {error}")  # the parent waits for one answer per run


def _images_per_s(threads: int, batch_size: int, norm: str, seconds: float, start) -> float:
    torch.set_num_threads(threads)
    device = torch.device("cpu")
    rng = np.random.default_rng(0)
    split = ResidentDataset(rng.integers(0, 256, (TRAIN_IMAGES, 3, 32, 32), dtype=np.uint8),
                            rng.integers(0, 10, TRAIN_IMAGES), device)
    stepper = make_stepper(resnet14(norm), batch_size, device, step_options(device))
    normalize = Normalizer(MEAN, STD, device, channels_last=stepper.channels_last)
    batches = itertools.chain.from_iterable(split.train_batches(batch_size, 0, epoch, normalize)
                                            for epoch in itertools.count())
    chunk = max(1, 256 // batch_size)  # steps between looks at the clock
    stepper.run(itertools.islice(batches, 3))
    start.wait(timeout=600)  # a layout whose other runs never got here
    began, images = time.perf_counter(), 0
    while time.perf_counter() - began < seconds:
        images += stepper.run(itertools.islice(batches, chunk)).seen
    return images / (time.perf_counter() - began)


def machine_rate(runs: int, threads: int, batch_size: int, norm: str, seconds: float) -> float:
    """The images/s of `runs` processes of `threads` torch threads each, training side by side."""
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(runs), context.Queue()
    processes = [context.Process(target=_train, args=(threads, batch_size, norm, seconds, start, results))
                 for _ in range(runs)]
    for process in processes:
        process.start()
    rates = [results.get() for _ in processes]
    for process in processes:
        process.join()
    failed = [rate for rate in rates if isinstance(rate, str)]
    if failed:
        raise RuntimeError(f"{runs}x{threads} at batch {batch_size}: {failed[0]}")
    return sum(rates)


def _layout(text: str) -> tuple[int, int]:
    runs, threads = (int(part) for part in text.split("x"))
    return runs, threads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--layouts", default="1x2,2x1,2x2",
                        help="RUNSxTHREADS per layout, comma-separated; the first is the one the others are "
                             "compared with")
    parser.add_argument("--batches", default="8,128")
    parser.add_argument("--norm", default="bn")
    parser.add_argument("--seconds", type=float, default=20, help="training time of each measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--out", type=Path, help="also write the table (Markdown) here")
    args = parser.parse_args()
    layouts = [_layout(text) for text in args.layouts.split(",")]
    base = layouts[0]
    lines = [f"# Spreading runs over the cores: {hardware(torch.device('cpu'))}", "",
             (f"torch {torch.__version__}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; ResNet-14 (n=2) with "
              f"`{args.norm}`, the training loop's step and input path; {args.rounds} rounds of {args.seconds:.0f} s "
              "per layout; images/s summed over a layout's runs, medians over rounds; ratios against "
              f"{base[0]} run of {base[1]} threads, the median of the rounds' ratios (lowest-highest round)."), "",
             f"`python benchmarks/slots.py --layouts {args.layouts} --batches {args.batches} --norm {args.norm} "
             f"--seconds {args.seconds:g} --rounds {args.rounds}`", "",
             "| batch | runs at once | torch threads each | machine img/s | against the first layout |",
             "| ---: | ---: | ---: | ---: | ---: |"]
    for batch_size in (int(text) for text in args.batches.split(",")):
        rates: dict[tuple[int, int], list[float]] = {layout: [] for layout in layouts}
        for _ in range(args.rounds):
            for runs, threads in layouts:
                rates[(runs, threads)].append(machine_rate(runs, threads, batch_size, args.norm, args.seconds))
        for layout, measured in rates.items():
            ratios = [a / b for a, b in zip(measured, rates[base])]
            lines.append(f"| {batch_size} | {layout[0]} | {layout[1]} | {statistics.median(measured):.0f} | "
                         f"{Ratio(statistics.median(ratios), min(ratios), max(ratios))} |")
            print(lines[-1], flush=True)
    publish(lines, args.out)


if __name__ == "__main__":
    main()

"""Training throughput of ResNet-14 per norm and batch size: our input path vs the usual one vs the model alone.

(a)  ours:   the split resident on the device as uint8, batched crop/flip, the training loop's own step
            (channels_last, losses and correct counts read once per epoch);
(b)  usual:  the pipeline as tutorials write it: a torchvision-style Dataset of PIL images with
            RandomCrop/RandomHorizontalFlip/ToTensor/Normalize behind a DataLoader, and the textbook loop
            (default NCHW layout, loss and accuracy read every step);
(b') usual loader, our step: (b)'s DataLoader feeding (a)'s step, which isolates the input path;
(c)  model:  (a)'s step on one resident, already-normalized batch (the compute limit).
A second table times each from-scratch norm's step against its built-in twin on the path (c).

Every figure is measured in this one process. Each round takes every path of a comparison back to
back, so a ratio is computed within a round, where the machine's drift (tens of percent between minutes
on a shared virtual machine) moves both of its terms alike; the tables give the median of the rounds'
ratios with their range, and the median images/s of each path. benchmarks/gpu_check measures with
these functions too. Usage:
python benchmarks/throughput.py [--device auto] [--rounds N] [--norms LIST] [--compile MODE]
    [--step-compile MODE] [--bf16] [--out FILE]
"""

from __future__ import annotations

import argparse
import itertools
import platform
import statistics
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms

from cifarlab.config.fields import build_section
from cifarlab.config.sections import ModelConfig, PerformanceConfig, TrainConfig
from cifarlab.data.loader import Normalizer, ResidentDataset
from cifarlab.models import build_model
from cifarlab.models.resnet import CifarResNet
from cifarlab.nn.norms import clip_gates_, gate_parameters
from cifarlab.nn.norm_registry import NORM_LAYERS, get_norm_layer
from cifarlab.train.device import resolve_device
from cifarlab.train.optim import build_optimizer
from cifarlab.train.step import Stepper, amp_dtype_for

MEAN, STD = (0.49, 0.48, 0.45), (0.25, 0.24, 0.26)
GROUPS = 8


class PilCifar(Dataset):
    """What torchvision.datasets.CIFAR10 does per item: an HWC uint8 array to a PIL image, then transforms."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform: Callable) -> None:
        self.images = np.ascontiguousarray(images.transpose(0, 2, 3, 1))  # (N, H, W, C)
        self.labels = labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[index])), int(self.labels[index])


def usual_loader(images: np.ndarray, labels: np.ndarray, batch_size: int, workers: int,
                 pin: bool) -> DataLoader:
    transform = transforms.Compose([transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(),
                                    transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    return DataLoader(PilCifar(images, labels, transform), batch_size=batch_size, shuffle=True,
                      num_workers=workers, pin_memory=pin, drop_last=True, persistent_workers=workers > 0)


def train_config(batch_size: int) -> TrainConfig:
    """The study's `train:` defaults from params.yaml at `batch_size`."""
    defaults = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())["train"]
    return build_section(TrainConfig, {**defaults, "batch_size": batch_size}, "train")


Train = Callable[[Iterable[tuple[torch.Tensor, torch.Tensor]]], object]


def images_per_s(train: Train, batches: Callable[[], Iterable], steps: int, batch_size: int,
                 device: torch.device, warmup: int = 3) -> float:
    """Train on `steps` batches after `warmup` steps from the same epoch, and return images per second.

    One iterator for both, so that a DataLoader's start-up (workers filling their first batches), which
    a real epoch of hundreds of steps amortizes, is not charged to a short measurement.
    """
    epoch = iter(batches())
    train(itertools.islice(epoch, warmup))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    started = time.perf_counter()
    train(itertools.islice(epoch, steps))  # both loops read the device before they return
    return steps * batch_size / (time.perf_counter() - started)


TrainingPath = tuple[Train, Callable[[], Iterable]]  # a way to train and the batches it trains on


class Rounds(dict[str, list[float]]):
    """Images/s of each path in every round, the paths of a round measured back to back."""

    def median(self, path: str) -> float:
        return statistics.median(self[path])

    def ratio(self, numerator: str, denominator: str) -> Ratio:
        per_round = [a / b for a, b in zip(self[numerator], self[denominator])]
        return Ratio(statistics.median(per_round), min(per_round), max(per_round))


class Ratio(NamedTuple):
    """The median over rounds of a within-round ratio, and its lowest and highest round."""

    median: float
    low: float
    high: float

    def __str__(self) -> str:
        return f"{self.median:.2f} ({self.low:.2f}-{self.high:.2f})"


def alternated(paths: dict[str, TrainingPath], steps: int, batch_size: int, rounds: int,
               device: torch.device, warmup: int = 3) -> Rounds:
    """Images/s of each path, round by round, the paths of a round taken back to back so that the
    machine's drift between rounds cancels in each round's ratios."""
    samples = Rounds({name: [] for name in paths})
    for _ in range(rounds):
        for name, (train, batches) in paths.items():
            samples[name].append(images_per_s(train, batches, steps, batch_size, device, warmup))
    return samples


def one_batch(stepper: Stepper, batch_size: int, device: torch.device) -> Callable[[], Iterable]:
    """One synthetic, already-normalized batch in the stepper's layout, repeated: the model alone."""
    memory_format = torch.channels_last if stepper.channels_last else torch.contiguous_format
    x = torch.randn(batch_size, 3, 32, 32, device=device).contiguous(memory_format=memory_format)
    y = torch.randint(0, 10, (batch_size,), device=device)
    return lambda: itertools.repeat((x, y))


class TextbookLoop:
    """The training loop as tutorials write it, on the model as built: NCHW, loss and accuracy read every step."""

    def __init__(self, model: nn.Module, batch_size: int, device: torch.device) -> None:
        self.model, self.device = model.to(device), device
        self.optimizer = build_optimizer(model, train_config(batch_size))
        self.gates = gate_parameters(model)

    def __call__(self, batches: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[float, int]:
        self.model.train()
        running_loss, correct = 0.0, 0
        for images, labels in batches:
            images, labels = images.to(self.device), labels.to(self.device)
            logits = self.model(images)
            loss = F.cross_entropy(logits, labels)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            clip_gates_(self.gates)  # BIN's rule, so that its step does the same work as ours
            running_loss += loss.item() * labels.size(0)
            correct += int((logits.argmax(1) == labels).sum().item())
        return running_loss, correct


def resnet14_config(norm: str) -> ModelConfig:
    """The benchmarked network: the norm study's ResNet-14 with `norm`."""
    return ModelConfig(arch="resnet", num_classes=10, norm=norm, groups=GROUPS, activation="relu",
                       options={"n": 2, "shortcut": "A"})


def seeded_model(config: ModelConfig) -> nn.Module:
    """`config`'s network initialised from seed 0, so that every path starts from the same weights."""
    torch.manual_seed(0)
    return build_model(config)


def resnet14(norm: str) -> nn.Module:
    return seeded_model(resnet14_config(norm))


def step_options(device: torch.device, compile_mode: str = "none", bf16: bool = False) -> dict:
    """Our step's options as a run's `performance:` would give them: channels_last, and bf16 autocast where
    the run would use it (CUDA)."""
    performance = PerformanceConfig(channels_last=True, bf16=bf16, deterministic=False, compile=compile_mode)
    return {"channels_last": True, "compile_mode": compile_mode, "amp_dtype": amp_dtype_for(performance, device)}


def make_stepper(model: nn.Module, batch_size: int, device: torch.device, options: dict) -> Stepper:
    model = model.to(device)
    train = train_config(batch_size)
    optimizer = build_optimizer(model, train)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    return Stepper(model, optimizer, scheduler, device=device, **options)


def training_paths(norm: str, batch_size: int, device: torch.device, data: tuple[np.ndarray, np.ndarray],
                   workers: int, options: dict) -> dict[str, TrainingPath]:
    """The four paths, by name: ours (a), usual (b), usual_loader (b') and model (c)."""
    images, labels = data
    stepper = make_stepper(resnet14(norm), batch_size, device, options)
    textbook = TextbookLoop(resnet14(norm), batch_size, device)
    resident = ResidentDataset(images, labels, device)
    normalize = Normalizer(MEAN, STD, device, channels_last=stepper.channels_last)
    loader = usual_loader(images, labels, batch_size, workers, device.type == "cuda")
    fixed = next(resident.train_batches(batch_size, 0, 0, normalize))
    epochs = itertools.count()

    def ours():
        return resident.train_batches(batch_size, 0, next(epochs), normalize)

    def usual_for_our_step():
        return ((x.to(device, non_blocking=True).contiguous(memory_format=normalize.memory_format),
                 y.to(device, non_blocking=True)) for x, y in loader)

    def model_only():
        return itertools.repeat(fixed)

    return {"ours": (stepper.run, ours), "usual": (textbook, lambda: iter(loader)),
            "usual_loader": (stepper.run, usual_for_our_step), "model": (stepper.run, model_only)}


def bench_paths(norm: str, batch_size: int, steps: int, rounds: int, device: torch.device,
                data: tuple[np.ndarray, np.ndarray], workers: int, options: dict) -> Rounds:
    return alternated(training_paths(norm, batch_size, device, data, workers, options), steps, batch_size, rounds,
                      device)


class TorchBatchInstanceNorm(nn.Module):
    """BIN assembled from the built-in BN and IN: the closest built-in equivalent of `bin`."""

    def __init__(self, num_channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2d(num_channels, affine=False)
        self.inorm = nn.InstanceNorm2d(num_channels, affine=False)
        self.rho = nn.Parameter(torch.ones(num_channels))
        self.weight = nn.Parameter(torch.ones(num_channels))
        self.bias = nn.Parameter(torch.zeros(num_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rho = self.rho.view(1, -1, 1, 1)
        y = rho * self.bn(x) + (1 - rho) * self.inorm(x)
        return y * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


BUILTIN_TWINS: dict[str, Callable[[int], nn.Module]] = {
    "bn": nn.BatchNorm2d,
    "in": lambda c: nn.InstanceNorm2d(c, affine=True),
    "bin": TorchBatchInstanceNorm,
    "ln": lambda c: nn.GroupNorm(1, c),
    "gn": lambda c: nn.GroupNorm(GROUPS, c),
}


def bench_twins(norm: str, batch_size: int, steps: int, rounds: int, device: torch.device,
                options: dict) -> Ratio:
    """Step time of the from-scratch norm over its built-in twin, same model, same batch."""
    steppers = {}
    for name, layer in (("ours", get_norm_layer(norm, groups=GROUPS)), ("twin", BUILTIN_TWINS[norm])):
        torch.manual_seed(0)
        steppers[name] = make_stepper(CifarResNet(2, 10, layer), batch_size, device, options)
    batches = one_batch(steppers["ours"], batch_size, device)
    rates = alternated({name: (stepper.run, batches) for name, stepper in steppers.items()},
                       steps, batch_size, rounds, device)
    return rates.ratio("twin", "ours")  # = ours' step time / twin's


def bench_compile(norm: str, batch_size: int, steps: int, rounds: int, device: torch.device, options: dict,
                  mode: str) -> tuple[Rounds, float]:
    """(eager and compiled img/s, seconds to compile) of the step alone (path c)."""
    steppers = {name: make_stepper(resnet14(norm), batch_size, device, {**options, "compile_mode": compile_mode})
                for name, compile_mode in (("eager", "none"), ("compiled", mode))}
    batches = one_batch(steppers["eager"], batch_size, device)
    torch._dynamo.reset()
    started = time.perf_counter()
    steppers["compiled"].run(itertools.islice(batches(), 3))  # compiles, then warms up (CUDA graphs record later)
    compile_seconds = time.perf_counter() - started
    rates = alternated({name: (stepper.run, batches) for name, stepper in steppers.items()},
                       steps, batch_size, rounds, device)
    return rates, compile_seconds


def hardware(device: torch.device) -> str:
    if device.type == "cuda":
        return f"{torch.cuda.get_device_name(device)} (CUDA {torch.version.cuda})"
    model = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        names = [line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines()
                 if line.startswith("model name")]
        model = names[0] if names else model
    # The vector ISA PyTorch's kernels run with: CPUs under one marketing name differ in it (AVX2 vs
    # AVX-512), and it decides how fast convolutions and bf16 are.
    return f"{model}, {torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()}"


def publish(lines: list[str], out: Path | None) -> None:
    """Print a benchmark's tables, and write them to `out` (Markdown) when given."""
    text = "\n".join(lines) + "\n"
    print(text)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=5, help="alternated rounds per comparison")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader workers for the usual path")
    parser.add_argument("--norms", default=",".join(NORM_LAYERS))
    parser.add_argument("--compile", default="none", choices=("none", "default", "reduce-overhead"),
                        help="also time the step alone under torch.compile in this mode (each compile "
                             "takes tens of seconds on a CPU)")
    parser.add_argument("--step-compile", default="none", choices=("none", "default", "reduce-overhead"),
                        help="our step's performance.compile in every table: (a), (b'), (c) and both norms "
                             "of the twin table (one compile per model and batch size)")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast in our step on CUDA, as a run with "
                                                            "performance.bf16 has it (the textbook loop stays float32)")
    parser.add_argument("--out", type=Path, help="also write the tables (Markdown) here")
    return parser.parse_args()


def _paths_table(args, norms, steps, device, data, options) -> list[str]:
    """(a) ours, (b) usual, (b') usual loader with our step, (c) the model alone, per norm and batch size."""
    lines = [("| norm | batch | (a) ours img/s | (b) usual img/s | (b') usual loader, our step img/s | "
              "(c) model alone img/s | (a)/(b) | (a)/(b') | (a)/(c) |"),
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for batch_size in (128, 8):
        for norm in norms:
            r = bench_paths(norm, batch_size, steps[batch_size], args.rounds, device, data, args.workers, options)
            rates = " | ".join(f"{r.median(path):.0f}" for path in ("ours", "usual", "usual_loader", "model"))
            ratios = " | ".join(str(r.ratio("ours", path)) for path in ("usual", "usual_loader", "model"))
            lines.append(f"| {norm} | {batch_size} | {rates} | {ratios} |")
            print(lines[-1], flush=True)
    return lines


def _twins_table(args, norms, steps, device, options) -> list[str]:
    lines = ["", "Step time of each from-scratch norm over its built-in twin (same model and batch; path c):", "",
             "| norm | built-in twin | batch 128 | batch 8 |", "| --- | --- | ---: | ---: |"]
    twin_names = {"bn": "nn.BatchNorm2d", "in": "nn.InstanceNorm2d(affine)", "bin": "nn.BatchNorm2d + nn.InstanceNorm2d",
                  "ln": "nn.GroupNorm(1, C)", "gn": f"nn.GroupNorm({GROUPS}, C)"}
    for norm in [n for n in norms if n in BUILTIN_TWINS]:
        ratios = [bench_twins(norm, bs, steps[bs], args.rounds, device, options) for bs in (128, 8)]
        lines.append(f"| {norm} | {twin_names[norm]} | {ratios[0]} | {ratios[1]} |")
        print(lines[-1], flush=True)
    return lines


def _compile_table(args, norms, steps, device, options) -> list[str]:
    lines = ["", f"The step alone (path c), eager vs torch.compile(mode={args.compile!r}):", "",
             "| norm | batch | eager img/s | compiled img/s | compiled/eager | compile s |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for batch_size in (128, 8):
        for norm in norms:
            rates, seconds = bench_compile(norm, batch_size, steps[batch_size], args.rounds, device, options,
                                           args.compile)
            lines.append(f"| {norm} | {batch_size} | {rates.median('eager'):.0f} | {rates.median('compiled'):.0f} "
                         f"| {rates.ratio('compiled', 'eager')} | {seconds:.0f} |")
            print(lines[-1], flush=True)
    return lines


def main() -> None:
    args = _arguments()
    device = resolve_device(args.device)
    options = step_options(device, args.step_compile, args.bf16)
    steps = {128: 10, 8: 50} if device.type == "cpu" else {128: 100, 8: 400}
    images = max((3 + n) * batch_size for batch_size, n in steps.items())  # one epoch holds every measurement
    rng = np.random.default_rng(0)
    data = (rng.integers(0, 256, (images, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, images).astype(np.int64))
    norms = args.norms.split(",")
    lines = [f"# Training throughput, ResNet-14 (n=2), {device.type}: {hardware(device)}", "",
             (f"torch {torch.__version__}; {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; "
              f"{args.rounds} alternated rounds; images/s are medians over the rounds, ratios the median "
              f"of the rounds' ratios (lowest-highest round in brackets); (b) and (b') use a DataLoader with "
              f"{args.workers} workers; options {options}."), "",
             *_paths_table(args, norms, steps, device, data, options),
             *_twins_table(args, norms, steps, device, options),
             *(_compile_table(args, norms, steps, device, options) if args.compile != "none" else [])]
    publish(lines, args.out)


if __name__ == "__main__":
    main()

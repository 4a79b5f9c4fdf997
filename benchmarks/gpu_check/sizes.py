"""What each part measures and how long it may take: a GPU's worth, or the rehearsal's tiny one."""

from __future__ import annotations

from dataclasses import dataclass

# The order the parts run in: the figures the goals need first (the compiled batch-8 step, then the runs
# that decide the study's time), the CUDA tests, which decide no goal, last with what is left.
PARTS = ("preflight", "throughput", "train", "runs-per-gpu", "rates", "tests", "projection")
TITLES = {
    "preflight": "1. CUDA preflight: the compiled bf16 step",
    "throughput": "2. Training throughput of ResNet-14",
    "train": "3. Full-length runs through the train stage",
    "runs-per-gpu": "4. Runs per GPU, in steady state",
    "rates": "5. Step rates of the study's other networks",
    "tests": "6. The CUDA tests",
    "projection": "7. The full default study on this GPU, projected",
}
NORMS = ("bn", "torch_bn", "gn")
FULL_TRAIN_IMAGES = 50_000  # CIFAR-10's training images, before the validation split
FULL_RUNS = ("bn-8", "bn-128")  # bn-8 first: a goal names it, and it compiles
K_RUN = "bn-128"  # runs per GPU are this run and its replicates: like-for-like at every K
# Seconds a stopped child gets to save its state and exit, inside its part's box.
STOP_GRACE_S = {"train": 15, "runs-per-gpu": 15, "tests": 10}
CLEANUP_S = 5  # an in-process part's share of its box for dynamo's reset and stopping compile workers


@dataclass(frozen=True)
class Stall:
    """The rehearsal's stand-in for a cold compile that outlives its box: this compile starts inductor's
    compile workers, as a real one does, then waits inside the compile until a box of `box_s` ends."""

    norm: str
    batch: int
    box_s: float


@dataclass(frozen=True)
class Sizes:
    """How much each part measures and its time box."""

    budget_s: float
    boxes: dict[str, float | None]  # None: what is left of the budget
    batches: tuple[int, ...]  # in the order measured
    steps: dict[int, int]  # timed steps per measurement, by batch size
    warmup: int
    rounds: int
    workers: int  # DataLoader workers of the usual pipeline
    compile_modes: dict[int, str]  # the compiled step's mode, by batch size
    compiled_norms: dict[int, tuple[str, ...]]  # compiled after that batch's eager rows, in this order
    compile_box_s: float  # one compiled measurement's box, so that one slow compile leaves the rest a chance
    stand_in: str | None  # the compile backend in place of inductor (None: inductor)
    preflight: tuple[tuple[str, int], ...]  # (norm, batch), compiled in that batch's mode
    preflight_stand_in: str | None
    rate_steps: dict[int, int]
    rate_warmup: int
    train_profile: dict  # overrides of the full profile for the train part's runs ({}: the study's own)
    train_compile: dict[str, str]  # run -> performance.compile, where it differs from params.yaml's
    train_shares: dict[str, float]  # each run's share of the train part's box
    k_values: tuple[int, ...]  # runs per GPU, measured in this order
    k_epochs: int  # each run's planned epochs: more than the part stops them at
    k_min_steady: int  # steady epochs of every run, all overlapping, before a K is stopped
    stall: Stall | None = None
    hidden_packages: tuple[str, ...] = ()  # the tests part runs without these, as a GPU node has none


def scaled_train(epochs: int) -> dict:
    """Train keys for `epochs` epochs with the norm study's schedule shape (decays at 50% and 75%)."""
    milestones = sorted({max(1, epochs // 2), max(1, 3 * epochs // 4)} - {epochs}) or [1]
    return {"epochs": epochs, "milestones": milestones, "patience": epochs}


# A 600 s command holds the wheels' install (~30 s), Python's start and this budget. The compiled step
# starts at batch 8, where CUDA graphs pay; the eager bn-128 run is short and gets the smaller share.
GPU = Sizes(budget_s=480, boxes={"preflight": 30, "throughput": 170, "train": 100, "runs-per-gpu": 90, "rates": 30,
                                 "tests": None, "projection": 5},
            batches=(8, 128), steps={8: 80, 128: 30}, warmup=3, rounds=3, workers=8,
            compile_modes={8: "reduce-overhead", 128: "default"}, compiled_norms={8: NORMS, 128: NORMS},
            compile_box_s=70, stand_in=None, preflight=(("bn", 8),), preflight_stand_in=None,
            rate_steps={128: 20, 8: 100}, rate_warmup=3, train_profile={},
            train_compile={"bn-8": "reduce-overhead"}, train_shares={"bn-8": 0.65, "bn-128": 0.35},
            k_values=(8, 4, 2, 1), k_epochs=100, k_min_steady=3)
# Every code path once, in the GPU's order: the stand-ins trace and run the step as inductor would, the
# preflight's through AOT autograd in bf16 (CPU autocast), and gn's compile stalls past its box.
REHEARSAL = Sizes(budget_s=300, boxes={"preflight": 40, "throughput": 60, "train": 60, "runs-per-gpu": 60,
                                       "rates": 30, "tests": None, "projection": 5},
                  batches=(8, 128), steps={8: 2, 128: 1}, warmup=1, rounds=1, workers=0,
                  compile_modes={8: "reduce-overhead", 128: "default"},
                  compiled_norms={8: ("bn", "gn"), 128: ("torch_bn",)},
                  compile_box_s=30, stand_in="eager", preflight=(("bn", 8),), preflight_stand_in="aot_eager",
                  rate_steps={128: 1, 8: 1}, rate_warmup=0, train_profile={"train": scaled_train(2)},
                  train_compile={"bn-8": "none"},  # the GPU's second settings folder, without its compilation
                  train_shares={"bn-8": 0.5, "bn-128": 0.5}, k_values=(2, 1), k_epochs=40, k_min_steady=2,
                  stall=Stall("gn", 8, box_s=4), hidden_packages=("vl_convert", "ray"))

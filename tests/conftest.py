"""Shared fixtures: every input the tests need, built here (params, archives, splits), so that no test reads
the repository's `params.yaml` or the real data set.

`study_params` is a whole params file written for the tests: the project's five studies, each with the few
runs that tests name. `tiny_params` turns it into a pipeline that runs in seconds on a generated archive,
and `tiny_run` resolves one run of that for library-level training.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from archives import make_cifar_archive

from cifarlab.config.sections import RunConfig
from cifarlab.data.archive import read_archive
from cifarlab.data.split import Split, make_split
from cifarlab.study.resolve import load_study

# Every section a params file has; runs named by tests (the norm study's second seeds pair bn with torch_bn).
STUDY_PARAMS = {
    "seed": 0,
    "profile": "full",
    "device": "auto",
    "performance": {"channels_last": True, "bf16": True, "compile": "none", "deterministic": False},
    "data": {"source": "cifar-10-python.tar.gz", "md5": None, "val_fraction": 0.2},
    "model": {"arch": "resnet", "n": 2, "num_classes": 10, "shortcut": "A", "width": 64, "groups": 8,
              "activation": "relu"},
    "train": {"epochs": 100, "batch_size": 128, "lr": 0.1, "lr_scaling": "linear", "lr_reference_batch": 128,
              "optimizer": "sgd", "momentum": 0.9, "weight_decay": 1.0e-4, "l1": 0, "gate_lr_multiplier": 10,
              "augment": True, "schedule": "multistep", "gamma": 0.1, "step_epochs": 30, "milestones": [50, 75],
              "warmup_epochs": 1, "patience": 20, "train_images": 0, "val_images": 0, "eval_batch_size": 0},
    "studies": {
        "norm": {"section": "norm"},
        "lab": {"section": "lab", "arch": "simplenn", "norm": "nn", "epochs": 30, "lr": 0.01, "augment": False,
                "schedule": "constant", "warmup_epochs": 0, "patience": 30},
        "resnet20": {"section": "recipe", "n": 3, "epochs": 200, "schedule": "cosine", "weight_decay": 5.0e-4,
                     "patience": 200},
        "arch": {"section": "arch", "norm": "bn", "epochs": 30, "schedule": "cosine", "patience": 30},
        "vggnorm": {"section": "comparisons", "title": "No norm vs BatchNorm vs GroupNorm on VGG-11", "arch": "vgg11",
                    "epochs": 30, "lr": 0.05, "schedule": "cosine", "patience": 30},
    },
    "profiles": {
        "full": {},
        "subset": {},
        "quick": {"verdicts": False, "model": {"n": 1},
                  "train": {"epochs": 5, "train_images": 1024, "val_images": 512, "patience": 5},
                  "studies": {"norm": {"train": {"schedule": "cosine"}},
                              "lab": {"train": {"step_epochs": 2}},
                              "resnet20": {"train": {"epochs": 5}},
                              "vggnorm": {"train": {"train_images": 256, "epochs": 3}}}},
    },
    "runs": {
        "bn-128": {"study": "norm", "norm": "bn"},
        "torch_bn-128": {"study": "norm", "norm": "torch_bn"},
        "in-128": {"study": "norm", "norm": "in"},
        "bin-128": {"study": "norm", "norm": "bin"},
        "ln-128": {"study": "norm", "norm": "ln"},
        "gn-128": {"study": "norm", "norm": "gn"},
        "bn-8": {"study": "norm", "norm": "bn", "batch_size": 8},
        "gn-8": {"study": "norm", "norm": "gn", "batch_size": 8},
        "bn-128-r1": {"study": "norm", "norm": "bn", "replicate_of": "bn-128", "replicate": 1},
        "torch_bn-128-r1": {"study": "norm", "norm": "torch_bn", "replicate_of": "torch_bn-128", "replicate": 1},
        "gn-8-r1": {"study": "norm", "norm": "gn", "batch_size": 8, "replicate_of": "gn-8", "replicate": 1},
        "lab-base": {"study": "lab"},
        "lab-decay": {"study": "lab", "schedule": "step", "step_epochs": 10},
        "lab-bn": {"study": "lab", "norm": "bn"},
        "lab-bn-lr-1e-1": {"study": "lab", "norm": "bn", "lr": 0.1},
        "lab-lr-1": {"study": "lab", "lr": 1.0},
        "lab-l1": {"study": "lab", "weight_decay": 0, "l1": 1.0e-5},
        "resnet20": {"study": "resnet20", "norm": "bn"},
        "arch-plain20": {"study": "arch", "arch": "plain", "n": 3},
        "arch-vgg11": {"study": "arch", "arch": "vgg11"},
        "arch-simplenn": {"study": "arch", "arch": "simplenn"},
        "vgg-bn": {"study": "vggnorm", "norm": "bn"},
        "vgg-gn32": {"study": "vggnorm", "norm": "gn", "groups": 32},
    },
}


def new_study_params() -> dict:
    """A fresh copy of `STUDY_PARAMS`, to edit."""
    return copy.deepcopy(STUDY_PARAMS)


def new_tiny_params(archive: Path, runs: dict | None = None, *, epochs: int = 4) -> dict:
    """`STUDY_PARAMS` under its quick profile, made tiny: every run a ResNet-8 (where a ResNet) for `epochs`
    epochs on every image of `archive`, its lr decaying after each epoch from the middle one on (a default,
    so a run entry can set its own milestones). `runs` replaces the runs when given."""
    params = new_study_params()
    params["profile"] = "quick"
    params["data"]["source"] = str(archive)
    params["train"]["milestones"] = list(range(epochs // 2, epochs)) or [1]
    params["profiles"]["quick"] = {"model": {"n": 1},
                                   "train": {"epochs": epochs, "train_images": 0, "val_images": 0,
                                             "patience": epochs, "eval_batch_size": 64}}
    if runs is not None:
        params["runs"] = copy.deepcopy(runs)
    return params


@pytest.fixture
def study_params() -> dict:
    """A whole params file of the project's studies with a few runs each, under the full profile; edit freely."""
    return new_study_params()


@pytest.fixture(scope="session")
def make_study_params() -> Callable[[], dict]:
    """For module-scoped fixtures: each call gives a fresh `study_params`."""
    return new_study_params


@pytest.fixture(scope="session")
def tiny_params() -> Callable[..., dict]:
    """`tiny_params(archive, runs=None, *, epochs=4)`: a whole params file for a pipeline that runs in seconds
    on `archive` (see `new_tiny_params`)."""
    return new_tiny_params


@pytest.fixture(scope="session")
def tiny_run() -> Callable[..., RunConfig]:
    """`tiny_run(profile=None, **overrides)`: run `x` of the tiny params (bn, batch size 8: 4 steps per epoch
    on `tiny_split`, 4 epochs), with `overrides` of its entry and, if given, `profile` overrides of the quick
    profile's train keys (applied last)."""

    def resolve(profile: dict | None = None, **overrides) -> RunConfig:
        params = new_tiny_params(Path("unused.tar.gz"), {"x": {"study": "norm", "norm": "bn", "batch_size": 8,
                                                                **overrides}})
        params["profiles"]["quick"]["train"].update(profile or {})
        return load_study(params).runs["x"]

    return resolve


@pytest.fixture
def tiny_archive(tmp_path: Path) -> Path:
    """A generated archive in the official layout: 5 x 12 train images, 15 test images."""
    return make_cifar_archive(tmp_path / "cifar-10-python.tar.gz")


@pytest.fixture
def tiny_split(tmp_path: Path) -> Split:
    """For library-level training: 30 train and 10 validation images, in memory."""
    archive = make_cifar_archive(tmp_path / "cifar.tar.gz", per_batch=8, test_size=10)
    return make_split(read_archive(archive), 0.25, 0)


@pytest.fixture(autouse=True, scope="session")
def _one_thread():
    """One intra-op thread: on tiny tensors a thread pool only adds contention on a small machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)

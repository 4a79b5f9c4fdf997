"""Shared fixtures: every input the tests need, built here (params, archives, splits), so that no test reads
the real data set.

`study_params` is the repository's params.yaml with the few runs that tests name in place of its own, so the
tests follow the project's studies, profiles and defaults as they change. `tiny_params` turns it into a pipeline that runs in seconds on a generated archive,
and `tiny_run` resolves one run of that for library-level training.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import yaml
from archives import make_cifar_archive
from checkout import ROOT

from cifarlab.config.sections import RunConfig
from cifarlab.data.archive import read_archive
from cifarlab.data.split import Split, make_split
from cifarlab.study.resolve import load_study

# The repository's params.yaml, every section as the project defines it, with the runs that tests name in
# place of its own (the norm study's second seeds pair bn with torch_bn) and a local archive's name.
STUDY_PARAMS = {
    **{key: value for key, value in yaml.safe_load((ROOT / "params.yaml").read_text()).items() if key != "runs"},
    "profile": "full",
    "device": "auto",
    "data": {"source": "cifar-10-python.tar.gz", "md5": None, "val_fraction": 0.2},
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


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """`@pytest.mark.gpu` is the one hardware condition: such a test skips itself where CUDA is absent."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if item.get_closest_marker("gpu"):
            item.add_marker(skip)


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

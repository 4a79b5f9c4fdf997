"""Shared fixtures: small generated inputs, so tests never need the real data set."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from archives import make_cifar_archive

from cifarlab.data import Split, make_split, read_archive


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

"""Shared fixtures: small generated inputs, so tests never need the real data set."""

from __future__ import annotations

from pathlib import Path

import pytest
from archives import make_cifar_archive


@pytest.fixture
def tiny_archive(tmp_path: Path) -> Path:
    """A generated archive in the official layout: 5 x 12 train images, 15 test images."""
    return make_cifar_archive(tmp_path / "cifar-10-python.tar.gz")

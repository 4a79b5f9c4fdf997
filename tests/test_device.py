"""cifarlab.train.device: the device a setting names, the compiler torch.compile needs on a CPU, and the
process-wide switches of configure_torch."""

from __future__ import annotations

import os

import pytest
import torch

from cifarlab.config.sections import PerformanceConfig
from cifarlab.errors import CifarlabError
from cifarlab.train.device import (
    check_compile_toolchain,
    configure_torch,
    resolve_device,
)

CPU = torch.device("cpu")


def test_auto_is_the_cpu_without_cuda_and_a_device_that_is_not_there_is_one_line(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == CPU
    assert resolve_device("cpu") == CPU
    with pytest.raises(CifarlabError, match=r"^device: expected auto, cpu, cuda or cuda:N, got 'gpu'$"):
        resolve_device("gpu")
    with pytest.raises(CifarlabError, match=r"^device: 'cuda:1' asked for, but no CUDA device is available"):
        resolve_device("cuda:1")


def test_only_compiling_on_a_cpu_needs_a_cxx_compiler(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-cxx")
    compiled = PerformanceConfig(channels_last=True, bf16=False, deterministic=False, compile="default")
    with pytest.raises(CifarlabError, match=r"^performance.compile: 'default' on a CPU needs .*'no-such-cxx'"):
        check_compile_toolchain(compiled, CPU)
    check_compile_toolchain(compiled, torch.device("cuda"))  # inductor builds GPU kernels with Triton
    check_compile_toolchain(_performance(deterministic=False), CPU)  # compile: none


@pytest.fixture
def torch_globals(monkeypatch):
    """Restore determinism, cuDNN autotuning and CUBLAS_WORKSPACE_CONFIG after the test."""
    deterministic = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    benchmark = torch.backends.cudnn.benchmark
    monkeypatch.delenv("CUBLAS_WORKSPACE_CONFIG", raising=False)  # monkeypatch puts it back afterwards
    yield
    torch.use_deterministic_algorithms(deterministic, warn_only=warn_only)
    torch.backends.cudnn.benchmark = benchmark


def _performance(deterministic: bool) -> PerformanceConfig:
    return PerformanceConfig(channels_last=True, bf16=True, deterministic=deterministic, compile="none")


def test_configure_torch_deterministic_turns_on_deterministic_algorithms_and_fixes_the_cublas_workspace(
        torch_globals):
    torch.use_deterministic_algorithms(False)
    torch.backends.cudnn.benchmark = True
    configure_torch(_performance(deterministic=True))
    assert torch.are_deterministic_algorithms_enabled()
    assert not torch.backends.cudnn.benchmark
    # The two settings cuBLAS documents as deterministic.
    assert os.environ.get("CUBLAS_WORKSPACE_CONFIG") in (":4096:8", ":16:8")


def test_configure_torch_keeps_a_cublas_workspace_the_user_set(torch_globals, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    configure_torch(_performance(deterministic=True))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_configure_torch_not_deterministic_turns_determinism_off_and_cudnn_autotuning_on(torch_globals):
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    configure_torch(_performance(deterministic=False))
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark

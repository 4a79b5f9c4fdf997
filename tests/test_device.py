"""cifarlab.train.device: the device a setting names, what torch.compile needs to build kernels on a CPU and on
CUDA, and the process-wide switches of configure_torch. CUDA is mocked where the test needs a GPU host."""

from __future__ import annotations

import os
import shutil
import sysconfig
from pathlib import Path

import pytest
import torch

from cifarlab.config.sections import PerformanceConfig
from cifarlab.errors import CifarlabError
from cifarlab.train import device as device_module
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


def test_cuda_n_must_be_a_device_this_process_sees(monkeypatch):
    # Under the sweep (or any scheduler) a task sees only its own GPU, as cuda:0.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("cuda:0") == torch.device("cuda:0")
    with pytest.raises(CifarlabError, match=r"^device: 'cuda:1' asked for, but this process sees 1 CUDA device\(s\), "
                                            r"cuda:0 to cuda:0 \(use auto or cuda\)$"):
        resolve_device("cuda:1")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert resolve_device("cuda:7") == torch.device("cuda:7")
    with pytest.raises(CifarlabError, match=r"^device: 'cuda:8' .* sees 8 CUDA device"):
        resolve_device("cuda:8")


COMPILED = PerformanceConfig(channels_last=True, bf16=False, deterministic=False, compile="default")
CUDA = torch.device("cuda")


def test_compiling_on_a_cpu_needs_a_cxx_compiler(monkeypatch):
    monkeypatch.setenv("CXX", "no-such-cxx")
    with pytest.raises(CifarlabError, match=r"^performance.compile: 'default' on a CPU needs .*'no-such-cxx'"):
        check_compile_toolchain(COMPILED, CPU)
    check_compile_toolchain(_performance(deterministic=False), CPU)  # compile: none needs nothing


@pytest.fixture
def gpu_host(monkeypatch):
    """A host with a compute capability 9.0 GPU, triton installed, gcc on PATH and no $CC; a test changes
    what it needs missing."""
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "H200")
    monkeypatch.setattr(device_module, "find_spec", lambda name: object() if name == "triton" else None)
    monkeypatch.delenv("CC", raising=False)
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}" if name in ("gcc", "cc") else None)
    monkeypatch.setattr(device_module, "_python_include_dir", lambda: Path(sysconfig.get_paths()["include"]))
    if not (device_module._python_include_dir() / "Python.h").exists():
        pytest.skip("this Python has no C headers")


def test_compiling_on_cuda_checks_triton_the_gpu_and_a_c_compiler(gpu_host, monkeypatch):
    check_compile_toolchain(COMPILED, CUDA)  # everything there
    monkeypatch.setattr(device_module, "find_spec", lambda name: None)
    with pytest.raises(CifarlabError, match=r"^performance.compile: 'default' on CUDA needs the triton package"):
        check_compile_toolchain(COMPILED, CUDA)


def test_compiling_on_cuda_refuses_a_gpu_triton_cannot_compile_for(gpu_host, monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (6, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla P100-PCIE-16GB")
    reduce_overhead = PerformanceConfig(channels_last=True, bf16=True, deterministic=False, compile="reduce-overhead")
    with pytest.raises(CifarlabError, match=r"^performance.compile: 'reduce-overhead' on CUDA needs a GPU of compute "
                                            r"capability 7.0 or later for Triton, and Tesla P100-PCIE-16GB has 6.0"):
        check_compile_toolchain(reduce_overhead, CUDA)
    check_compile_toolchain(_performance(deterministic=False), CUDA)  # eager runs on any GPU


def test_compiling_on_cuda_needs_a_c_compiler_for_triton_as_triton_looks_for_it(gpu_host, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: "/usr/bin/clang" if name == "clang" else None)
    check_compile_toolchain(COMPILED, CUDA)  # Triton falls back to clang
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(CifarlabError, match=r"^performance.compile: 'default' on CUDA needs a C compiler for Triton "
                                            r"\(\$CC, gcc or clang\) on PATH, and there is none; install one or use "
                                            r"compile: none$"):
        check_compile_toolchain(COMPILED, CUDA)
    monkeypatch.setenv("CC", "no-such-cc")  # Triton takes $CC as it is, so it must exist
    with pytest.raises(CifarlabError, match=r"and there is no 'no-such-cc'"):
        check_compile_toolchain(COMPILED, CUDA)
    monkeypatch.setattr(shutil, "which", lambda name: f"/opt/bin/{name}" if name == "my-cc" else None)
    monkeypatch.setenv("CC", "my-cc")
    check_compile_toolchain(COMPILED, CUDA)
    check_compile_toolchain(_performance(deterministic=False), CUDA)  # compile: none needs none


@pytest.mark.parametrize("device", [CPU, CUDA], ids=["cpu", "cuda"])
def test_compiling_needs_pythons_c_headers_on_either_device(gpu_host, monkeypatch, tmp_path, device):
    monkeypatch.setenv("CXX", "g++")
    monkeypatch.setattr(shutil, "which", lambda name: f"/usr/bin/{name}")
    check_compile_toolchain(COMPILED, device)
    monkeypatch.setattr(device_module, "_python_include_dir", lambda: tmp_path)  # a folder without Python.h
    with pytest.raises(CifarlabError, match=rf"^performance.compile: 'default' needs Python's C headers \(Python.h in "
                                            rf"{tmp_path}\), and there are none; install Python's development "
                                            r"package .* or use compile: none$"):
        check_compile_toolchain(COMPILED, device)


def test_pythons_headers_are_looked_for_where_triton_looks_even_on_debians_posix_local(monkeypatch):
    assert device_module._python_include_dir() == Path(sysconfig.get_paths()["include"])
    monkeypatch.setattr(sysconfig, "get_default_scheme", lambda: "posix_local")
    assert device_module._python_include_dir() == Path(sysconfig.get_paths(scheme="posix_prefix")["include"])


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


def test_configure_torch_keeps_a_deterministic_cublas_workspace_the_user_set(torch_globals, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":16:8")
    configure_torch(_performance(deterministic=True))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":16:8"


def test_deterministic_under_a_cublas_workspace_that_is_not_deterministic_is_one_line_and_changes_nothing(
        torch_globals, monkeypatch):
    monkeypatch.setenv("CUBLAS_WORKSPACE_CONFIG", ":0:0")  # torch would raise at the first cuBLAS call
    torch.use_deterministic_algorithms(False)
    with pytest.raises(CifarlabError, match=r"^performance.deterministic: true needs CUBLAS_WORKSPACE_CONFIG unset "
                                            r"or one of :4096:8, :16:8, and the environment sets it to ':0:0'; "
                                            r"unset it or use deterministic: false$"):
        configure_torch(_performance(deterministic=True))
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":0:0"
    assert not torch.are_deterministic_algorithms_enabled()
    configure_torch(_performance(deterministic=False))  # without determinism the value is the user's business
    assert os.environ["CUBLAS_WORKSPACE_CONFIG"] == ":0:0"


def test_configure_torch_not_deterministic_turns_determinism_off_and_cudnn_autotuning_on(torch_globals):
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    configure_torch(_performance(deterministic=False))
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.backends.cudnn.benchmark

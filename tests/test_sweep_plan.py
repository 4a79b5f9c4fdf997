"""The sweep's decisions before any run: GPU shares, slots and threads from the cluster's resources, and the
refusals that come before any stage runs. No Ray needed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from cifarlab.errors import CifarlabError
from cifarlab.tools import sweep


@pytest.fixture
def project(tmp_path: Path, study_params: dict, monkeypatch) -> Path:
    """A folder holding a params file of the five studies, where the sweep runs; no stage may run."""
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(study_params, sort_keys=False))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sweep, "run_checked", lambda *a, **k: pytest.fail("a stage ran"))
    return tmp_path


def test_one_task_per_gpu_with_the_cpus_shared_among_them():
    assert sweep.slot_plan({"CPU": 32.0, "GPU": 4.0}, None) == ({"num_gpus": 1, "num_cpus": 1}, 8, "a GPU")
    assert sweep.slot_plan({"CPU": 2.0, "GPU": 4.0}, None)[1] == 1  # never below one thread


@pytest.mark.parametrize("runs_per_gpu, gpu_share, threads", [(1, 1, 8), (2, 0.5, 4), (3, 0.3333, 2), (8, 0.125, 1)])
def test_k_runs_per_gpu_each_ask_for_a_kth_of_it_and_share_its_cpus(runs_per_gpu, gpu_share, threads):
    resources, torch_threads, share = sweep.slot_plan({"CPU": 32.0, "GPU": 4.0}, None, runs_per_gpu)
    assert resources == {"num_gpus": gpu_share, "num_cpus": 1}
    assert torch_threads == threads  # the 8 CPUs per GPU over the runs sharing it
    assert share == ("a GPU" if runs_per_gpu == 1 else f"1/{runs_per_gpu} of a GPU")


@pytest.mark.parametrize("runs_per_gpu", [3, 6, 7, 9, 10, 11, 12, 13, 17, 100])
def test_k_shares_fit_in_one_gpu_and_a_further_one_does_not(runs_per_gpu):
    steps = round(sweep.gpu_share(runs_per_gpu) * sweep.RAY_RESOURCE_STEPS)  # as Ray counts them
    assert steps == sweep.gpu_share(runs_per_gpu) * sweep.RAY_RESOURCE_STEPS  # a whole number of Ray's steps
    assert runs_per_gpu * steps <= sweep.RAY_RESOURCE_STEPS < (runs_per_gpu + 1) * steps


def test_without_gpus_slots_default_to_one_per_core_up_to_eight_and_split_the_threads():
    assert sweep.slot_plan({"CPU": 2.0}, None) == ({"num_cpus": 1.0}, 1, "a CPU slot")
    assert sweep.slot_plan({"CPU": 64.0}, None) == ({"num_cpus": 8.0}, 8, "a CPU slot")
    assert sweep.slot_plan({"CPU": 6.0}, 4) == ({"num_cpus": 1.5}, 1, "a CPU slot")


@pytest.mark.parametrize("resources, slots, runs_per_gpu, message", [
    ({"CPU": 2.0}, 3, None, "--slots: expected 1 to 2 (the cluster's CPUs), got 3"),
    ({"CPU": 8.0, "GPU": 2.0}, 2, None, ("--slots: the cluster has GPUs, and the sweep runs --runs-per-gpu "
                                         "tasks on each (default 1)")),
    ({"CPU": 8.0}, None, 2, "--runs-per-gpu: the cluster has no GPU; use --slots N for N runs at once on its CPUs"),
    ({"CPU": 8.0}, 2, 1, "--runs-per-gpu: the cluster has no GPU"),
    ({"CPU": 8.0, "GPU": 2.0}, None, 5, ("--runs-per-gpu: expected 1 to 4 (the cluster's 8 CPUs over its 2 "
                                         "GPUs: each run needs a CPU of its own), got 5")),
])
def test_slots_and_shares_the_cluster_cannot_give_are_refused(resources, slots, runs_per_gpu, message):
    with pytest.raises(CifarlabError, match="^" + re.escape(message)):
        sweep.slot_plan(resources, slots, runs_per_gpu)


@pytest.mark.parametrize("argv, message", [
    (["--slots", "0"], "error: --slots: expected 1 or more runs at once, got 0"),
    (["--runs-per-gpu", "0"], "error: --runs-per-gpu: expected 1 or more runs on each GPU, got 0"),
    (["--runs-per-gpu", "-2"], "error: --runs-per-gpu: expected 1 or more runs on each GPU, got -2"),
    (["--study", "nope"], "error: --study: no run of params.yaml is in study 'nope' (studies: arch, lab, norm, "
                          "resnet20, vggnorm)"),
])
def test_bad_arguments_get_one_line_and_exit_2_before_any_stage_runs(project, argv, message, capsys):
    assert sweep.main(argv) == 2
    assert capsys.readouterr().err.strip() == message


def test_without_ray_the_sweep_says_how_to_install_it(project, monkeypatch, capsys):
    monkeypatch.setattr(sweep.importlib.util, "find_spec", lambda name: None)
    assert sweep.main([]) == 2
    assert capsys.readouterr().err.strip() == \
        'error: the sweep runs on Ray, which is not installed: pip install -e ".[ray]"'

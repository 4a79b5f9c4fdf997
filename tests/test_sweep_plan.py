"""The sweep's decisions before any run: slots and threads from the cluster's resources, and the refusals
that come before any stage runs. No Ray needed."""

from __future__ import annotations

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
    assert sweep.slot_plan({"CPU": 32.0, "GPU": 4.0}, None) == ({"num_gpus": 1, "num_cpus": 1}, 8, "GPU")
    assert sweep.slot_plan({"CPU": 2.0, "GPU": 4.0}, None)[1] == 1  # never below one thread


def test_without_gpus_slots_default_to_one_per_core_up_to_eight_and_split_the_threads():
    assert sweep.slot_plan({"CPU": 2.0}, None) == ({"num_cpus": 1.0}, 1, "CPU slot")
    assert sweep.slot_plan({"CPU": 64.0}, None) == ({"num_cpus": 8.0}, 8, "CPU slot")
    assert sweep.slot_plan({"CPU": 6.0}, 4) == ({"num_cpus": 1.5}, 1, "CPU slot")


@pytest.mark.parametrize("resources, slots, message", [
    ({"CPU": 2.0}, 3, "--slots: expected 1 to 2 (the cluster's CPUs), got 3"),
    ({"CPU": 8.0, "GPU": 2.0}, 2, "--slots: the cluster has GPUs, and the sweep runs one task per GPU"),
])
def test_slots_the_cluster_cannot_give_are_refused(resources, slots, message):
    with pytest.raises(CifarlabError, match="^" + message.replace("(", r"\(").replace(")", r"\)")):
        sweep.slot_plan(resources, slots)


@pytest.mark.parametrize("argv, message", [
    (["--slots", "0"], "error: --slots: expected 1 or more runs at once, got 0"),
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

"""dvc.yaml says what each stage reads, and lists every run of params.yaml where DVC cannot loop."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "cifarlab"
DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
RUNS = list(PARAMS["runs"])


def cifarlab_imports(path: Path) -> set[str]:
    """Module names under cifarlab that `path` imports, directly (any scope)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cifarlab"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("cifarlab"))
    return found


def module_path(module: str) -> Path:
    """The file of a cifarlab module: a package's __init__.py, or a module's .py."""
    relative = Path(*module.split(".")[1:])
    package = PACKAGE / relative / "__init__.py"
    return package if package.exists() else PACKAGE / relative.with_suffix(".py")


def library_closure(script: Path) -> set[str]:
    """Repository paths of every cifarlab module `script` imports, transitively; importing a module of a
    package runs the package's __init__.py too."""
    seen: set[str] = set()
    todo = list(cifarlab_imports(script))
    while todo:
        module = todo.pop()
        if module in seen or module == "cifarlab":
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(2, len(parts)))  # its enclosing packages
        todo.extend(cifarlab_imports(module_path(module)))
    return {str(module_path(m).relative_to(ROOT)) for m in seen}


def stage_definitions() -> dict[str, dict]:
    return {name: spec.get("do", spec) for name, spec in DVC_YAML["stages"].items()}


@pytest.mark.parametrize("stage", list(stage_definitions()))
def test_stage_deps_list_exactly_the_library_modules_its_script_imports(stage):
    spec = stage_definitions()[stage]
    script = re.search(r"stages/\S+\.py", spec["cmd"]).group(0)
    declared = {d for d in spec["deps"] if isinstance(d, str) and d.startswith("src/")}
    assert script in spec["deps"]
    assert "stages/_checkout.py" in spec["deps"]  # it decides which library the script runs
    assert declared == library_closure(ROOT / script)


def test_every_stage_script_exists_and_every_stage_has_a_script():
    scripts = {re.search(r"stages/\S+\.py", s["cmd"]).group(0) for s in stage_definitions().values()}
    assert scripts == {str(p.relative_to(ROOT)) for p in (ROOT / "stages").glob("[a-z]*.py")}


def test_pipeline_has_the_stages_of_the_study_in_order():
    assert list(DVC_YAML["stages"]) == ["check-params", "fetch", "split", "train", "evaluate", "aggregate", "curves",
                                        "quantile-plots", "report"]


def test_params_are_checked_as_a_whole_before_any_train_stage_can_clear_its_outputs():
    assert "params.yaml" in DVC_YAML["stages"]["check-params"]["deps"]  # every key, a misspelt new one too
    checked = next(iter(DVC_YAML["stages"]["check-params"]["outs"][0]))
    assert checked in DVC_YAML["stages"]["train"]["do"]["deps"]
    assert DVC_YAML["stages"]["train"]["foreach"] == "${runs}"
    assert DVC_YAML["stages"]["evaluate"]["foreach"] == "${runs}"


def test_train_declares_its_own_run_entry_and_the_sections_it_merges():
    params = DVC_YAML["stages"]["train"]["do"]["params"]
    assert "runs.${key}" in params
    assert "studies.${item.study}" in params  # its study's shared keys, and no other study's
    assert {"seed", "device", "profile", "profiles.${profile}", "model", "train"} <= set(params)
    assert "runs" not in params, "declaring all runs would retrain every run when one entry changes"


def test_the_report_declares_every_section_it_reads_runs_from():
    assert {"studies", "runs", "model", "train", "profiles", "profile"} <= set(DVC_YAML["stages"]["report"]["params"])


def _declared(stage: str, section: str = "outs") -> dict[str, dict]:
    """The stage's outputs of one section (outs, metrics, plots), each with its options."""
    entries = stage_definitions()[stage].get(section, [])
    return {next(iter(o)) if isinstance(o, dict) else o: (next(iter(o.values())) if isinstance(o, dict) else {})
            for o in entries}


def _outputs(stage: str) -> set[str]:
    return {path for section in ("outs", "metrics", "plots") for path in _declared(stage, section)}


def test_top_level_metrics_and_plots_are_folders_that_hold_every_run_without_listing_it():
    """A new run adds files to these folders; nothing in dvc.yaml names a run."""
    assert DVC_YAML["metrics"] == ["metrics", "aggregates"]
    assert "metrics/${key}.json" in _outputs("evaluate")
    assert _outputs("aggregate") == {"aggregates"}  # one file per original run, replicates folded in
    plots = {name: spec for entry in DVC_YAML["plots"] for name, spec in entry.items()}
    assert set(plots) == {"plots/curves", "plots/curves-by-time"}
    assert {"plots/curves", "plots/curves-by-time"} <= _outputs("curves")
    assert _declared("evaluate", "plots")["plots/confusion/${key}.csv"]["template"] == "confusion_counts"
    assert all(run not in (ROOT / "dvc.yaml").read_text() for run in RUNS)


def test_train_and_evaluate_can_be_restored_from_the_run_cache():
    """DVC saves no run cache for a stage with a persist output, or an uncached output that is neither a
    metric nor a plot; the sweep's separate machines need it for both stages."""
    for stage in ("train", "evaluate"):
        outs = _declared(stage, "outs")
        assert not any(options.get("persist") for options in outs.values())
        assert all(options.get("cache", True) for options in outs.values())
    assert "models/resume/${key}.pt" not in _outputs("train")  # scratch that DVC does not track
    assert _declared("evaluate", "metrics") == {"metrics/${key}.json": {"cache": False}}  # kept in git


def test_the_curve_plots_use_the_project_templates_that_colour_by_run_and_dash_by_revision():
    plots = {name: spec for entry in DVC_YAML["plots"] for name, spec in entry.items()}
    by_time = json.loads((ROOT / ".dvc" / "plots" / f"{plots['plots/curves-by-time']['template']}.json").read_text())
    assert by_time["encoding"]["color"]["field"] == "run"
    assert by_time["encoding"]["strokeDash"]["field"] == "rev"
    bands = json.loads((ROOT / ".dvc" / "plots" / f"{plots['plots/curves']['template']}.json").read_text())
    assert bands["encoding"]["color"]["field"] == "run"
    band, line = bands["layer"]
    assert (band["mark"]["type"], band["encoding"]["y"]["field"], band["encoding"]["y2"]["field"]) == \
        ("area", "low", "high")
    assert line["encoding"]["strokeDash"]["field"] == "rev"

"""dvc.yaml says what each stage reads: its script, the library files that script imports, its inputs and its
own params keys; only check-params reads params.yaml as a whole, and nothing in dvc.yaml names a run."""

from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from archives import make_cifar_archive
from checkout import ROOT

from cifarlab.models import MODELS
from cifarlab.report.sections import SECTIONS
from cifarlab.study.code_hashes import library_closure
from cifarlab.study.resolve import TOP_LEVEL_KEYS

PACKAGE = ROOT / "src" / "cifarlab"
DVC_YAML = yaml.safe_load((ROOT / "dvc.yaml").read_text())
STUDY_STAGES = ("aggregate", "curves", "quantile-plots", "report")  # they read the study's settings file
FAMILIES = sorted({module for module, _ in MODELS.values()})
SECTION_MODULES = sorted({module for _, module, _ in SECTIONS.values()})


def stage_definitions() -> dict[str, dict]:
    return {name: spec.get("do", spec) for name, spec in DVC_YAML["stages"].items()}


def script_of(stage: str) -> str:
    return re.search(r"stages/\S+\.py", stage_definitions()[stage]["cmd"]).group(0)


# --- the library files each stage lists ------------------------------------------------------------------


def imports_name(path: Path, module: str, name: str) -> bool:
    """Whether `path` has `from <module> import <name>` (in any scope)."""
    return any(isinstance(node, ast.ImportFrom) and node.module == module and name in {a.name for a in node.names}
               for node in ast.walk(ast.parse(path.read_text())))


def closure(*scripts: str, modules: list[str] = ()) -> set[Path]:
    """The library files `scripts` and `modules` import, with what the registries import by name (reading the
    imports cannot see it): every model family where the model registry is imported, and every report section
    where the section loader is."""
    files = library_closure(scripts=[ROOT / s for s in scripts], modules=modules)
    lazy = []
    if PACKAGE / "models" / "__init__.py" in files:
        lazy += FAMILIES
    if any(imports_name(f, "cifarlab.report.sections", "section") for f in files):
        lazy += SECTION_MODULES
    return files | library_closure(modules=lazy) if lazy else files


def expected_library_files(stage: str) -> set[Path]:
    """The rule: a stage lists the files its script imports. A run's stages read its settings file instead,
    which holds the hashes of its training code (the train closure and its family): train lists none,
    evaluate what lies beyond them. check-params writes those hashes, so it lists them all besides its own."""
    hashed = closure("stages/train.py", modules=FAMILIES)
    if stage == "train":
        return set()
    if stage == "evaluate":
        return closure(script_of(stage)) - hashed
    if stage == "check-params":
        return closure(script_of(stage)) | hashed
    return closure(script_of(stage))


def coarsened(files: set[Path], directory: Path = PACKAGE) -> set[str]:
    """`files` as dvc.yaml lists them: a package directory whose .py files are all among them, else each file."""
    if set(directory.rglob("*.py")) <= files:
        return {directory.relative_to(ROOT).as_posix()}
    listed = set()
    for child in sorted(directory.iterdir()):
        if child.is_dir() and any(child.rglob("*.py")):
            listed |= coarsened(files, child)
        elif child in files:
            listed.add(child.relative_to(ROOT).as_posix())
    return listed


def library_deps(stage: str) -> list[str]:
    return [d for d in stage_definitions()[stage]["deps"] if d.startswith("src/")]


def expanded(deps: list[str]) -> set[Path]:
    """The files the deps stand for: a directory, its .py files."""
    paths = [ROOT / d for d in deps]
    return {f for p in paths for f in (p.rglob("*.py") if p.is_dir() else [p])}


@pytest.mark.parametrize("stage", list(stage_definitions()))
def test_a_stage_lists_exactly_the_library_files_it_runs_and_no_other(stage):
    declared, expected = expanded(library_deps(stage)), expected_library_files(stage)
    missing = sorted(f.relative_to(ROOT).as_posix() for f in expected - declared)
    extra = sorted(f.relative_to(ROOT).as_posix() for f in declared - expected)
    assert (missing, extra) == ([], []), f"{stage}: missing {missing}, not imported {extra}"


@pytest.mark.parametrize("stage", list(stage_definitions()))
def test_a_stage_lists_a_package_as_its_folder_when_it_runs_all_of_it_and_nothing_twice(stage):
    deps = library_deps(stage)
    assert len(deps) == len(set(deps))
    assert set(deps) == coarsened(expected_library_files(stage))


def test_the_rule_adds_what_the_registries_import_by_name_where_they_are_used():
    # The registries import a model family or a report section by name, which reading imports cannot see:
    # without them, the train stage would hash no network code and the report would list no section.
    assert PACKAGE / "models" / "vgg.py" in closure("stages/train.py")
    assert PACKAGE / "report" / "sections" / "lab.py" in closure("stages/report.py")
    assert PACKAGE / "report" / "sections" / "lab.py" not in closure("stages/check_params.py")  # names only


@pytest.mark.parametrize("stage", list(stage_definitions()))
def test_a_stage_lists_its_script_and_the_checkout_switch(stage):
    scripts = {d for d in stage_definitions()[stage]["deps"] if d.startswith("stages/")}
    own = {script_of(stage), "stages/_checkout.py"}  # _checkout decides which library the script runs
    # check-params hashes the training code that stages/train.py imports
    assert scripts == (own | {"stages/train.py"} if stage == "check-params" else own)


def test_every_stage_script_exists_and_every_stage_has_a_script():
    scripts = {script_of(stage) for stage in stage_definitions()}
    assert scripts == {str(p.relative_to(ROOT)) for p in (ROOT / "stages").glob("[a-z]*.py")}


def test_pipeline_has_the_stages_of_the_study_in_order():
    assert list(DVC_YAML["stages"]) == ["check-params", "fetch", "split", "train", "evaluate", "aggregate", "curves",
                                        "quantile-plots", "report"]


# --- params: read as a whole by check-params only --------------------------------------------------------


def test_only_check_params_reads_params_yaml_and_it_declares_every_top_level_key():
    check = stage_definitions()["check-params"]
    assert "params.yaml" in check["deps"]  # every key, a misspelt new one too
    assert sorted(check["params"]) == sorted(TOP_LEVEL_KEYS)  # shown by `dvc params diff`
    others = {name: spec for name, spec in stage_definitions().items() if name != "check-params"}
    assert not [name for name, spec in others.items() if "params.yaml" in spec["deps"]]


def test_fetch_and_split_declare_only_the_params_keys_they_use():
    assert stage_definitions()["fetch"]["params"] == ["data.source", "data.md5"]
    assert stage_definitions()["split"]["params"] == ["seed", "data.val_fraction"]


def run_data_stage(cwd: Path, data: dict, script: str, *args: str) -> dict[str, bytes]:
    """Stage `script` in `cwd` with a params file of `seed` and `data` alone (no model, train or runs key that
    a stage reading them would need); the files it wrote under its output folder `args[-1]`."""
    (cwd / "params.yaml").write_text(yaml.safe_dump({"seed": 0, "data": data}))
    result = subprocess.run([sys.executable, str(ROOT / "stages" / f"{script}.py"), *args], cwd=cwd,
                            capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert result.returncode == 0, result.stderr
    out = cwd / args[-1]
    return {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def test_fetch_and_split_read_no_other_params_and_their_outputs_ignore_the_keys_they_do_not_declare(tmp_path):
    archive = make_cifar_archive(tmp_path / "cifar.tar.gz")
    declared = {"source": str(archive), "md5": None, "val_fraction": 0.2}
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    fetched = run_data_stage(tmp_path / "a", declared, "fetch", "raw")
    assert run_data_stage(tmp_path / "b", {**declared, "val_fraction": 0.5}, "fetch", "raw") == fetched
    split = run_data_stage(tmp_path / "a", declared, "split", "raw/cifar-10-python.tar.gz", "split")
    moved = {**declared, "source": "elsewhere.tar.gz", "md5": "0" * 32}
    assert run_data_stage(tmp_path / "c", moved, "split", str(tmp_path / "a/raw/cifar-10-python.tar.gz"),
                          "split") == split


def test_a_run_depends_on_its_settings_file_that_check_params_writes_before_any_train_stage_clears_its_outputs():
    outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage_definitions()["check-params"]["outs"]]
    assert outs == ["data/runs", "data/study.json"]
    for stage in ("train", "evaluate"):
        assert DVC_YAML["stages"][stage]["foreach"] == "${runs}"
        spec = stage_definitions()[stage]
        assert "params" not in spec, "a params key would rerun every run when it changes"
        assert spec["cmd"].startswith(f"python {script_of(stage)} data/runs/${{key}}.json ")  # the settings first
    assert stage_definitions()["train"]["deps"] == ["data/runs/${key}.json", "data/split", "stages/train.py",
                                                    "stages/_checkout.py"]


@pytest.mark.parametrize("stage", STUDY_STAGES)
def test_the_stages_after_the_runs_read_the_studys_settings_file_not_params(stage):
    spec = stage_definitions()[stage]
    assert "--study data/study.json" in spec["cmd"]
    assert "data/study.json" in spec["deps"]
    assert "params" not in spec


def _declared(stage: str, section: str = "outs") -> dict[str, dict]:
    """The stage's outputs of one section (outs, metrics, plots), each with its options."""
    entries = stage_definitions()[stage].get(section, [])
    return {next(iter(o)) if isinstance(o, dict) else o: (next(iter(o.values())) if isinstance(o, dict) else {})
            for o in entries}


def _outputs(stage: str) -> set[str]:
    return {path for section in ("outs", "metrics", "plots") for path in _declared(stage, section)}


def test_top_level_plots_are_folders_that_hold_every_run_without_listing_it():
    """A new run adds files to these folders."""
    assert "metrics/${key}.json" in _outputs("evaluate")
    assert _outputs("aggregate") == {"aggregates"}  # one file per original run, replicates folded in
    plots = {name: spec for entry in DVC_YAML["plots"] for name, spec in entry.items()}
    assert set(plots) == {"plots/curves", "plots/curves-by-time", "report/findings.csv"}
    assert {"plots/curves", "plots/curves-by-time"} <= _outputs("curves")
    assert "report" in _outputs("report")  # the Findings' rows, one per claim, inside the report's folder
    assert _declared("evaluate", "plots")["plots/confusion/${key}.csv"]["template"] == "confusion_counts"


def test_dvc_yaml_names_no_run(study_params):
    # A new run is one params entry: dvc.yaml loops over `runs:` and its outputs are folders.
    text = (ROOT / "dvc.yaml").read_text()
    assert [run for run in study_params["runs"] if run in text] == []


def test_train_and_evaluate_can_be_restored_from_the_run_cache():
    """DVC saves no run cache for a stage with a persist output, or an uncached output that is neither a
    metric nor a plot; the sweep's separate machines need it for both stages."""
    for stage in ("train", "evaluate"):
        for section in ("outs", "metrics", "plots"):
            assert not any(options.get("persist") for options in _declared(stage, section).values())
        assert all(options.get("cache", True) for options in _declared(stage, "outs").values())
    assert "models/resume/${key}.pt" not in _outputs("train")  # scratch that DVC does not track


def test_what_the_stages_after_the_runs_read_of_them_is_kept_in_git():
    """A clone without the models and the data reruns the stages after training (`dvc repro --allow-missing`)
    only if every file they read of a run is in git: an uncached output of train or evaluate."""
    kept = {path: options.get("cache", True) for stage in ("train", "evaluate")
            for section in ("outs", "metrics", "plots") for path, options in _declared(stage, section).items()}
    for stage in STUDY_STAGES:
        read = [path for path in kept for dep in stage_definitions()[stage]["deps"]
                if path == dep or path.startswith(dep + "/")]
        assert read, stage
        assert [path for path in read if kept[path]] == [], f"{stage} reads these from DVC's cache"
    assert not kept["plots/live/${key}"] and not kept["plots/predictions/${key}.csv"]


def test_dvc_metrics_show_lists_one_headline_per_training_and_nothing_else():
    # DVC shows every metric, top-level or a stage's: the detailed files, 30-odd numbers each, and the
    # aggregates, 150, are read by their paths (`dvc metrics show metrics aggregates`) and kept as plots.
    assert "metrics" not in DVC_YAML
    metrics = {stage: _declared(stage, "metrics") for stage in stage_definitions() if _declared(stage, "metrics")}
    assert metrics == {"evaluate": {"metrics/headline/${key}.json": {"cache": False}}}
    assert "--headline metrics/headline/${key}.json" in stage_definitions()["evaluate"]["cmd"]


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

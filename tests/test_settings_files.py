"""The settings files that check-params writes (`study.publish`) and the later stages read (`config.records`),
and the code closure whose hashes they carry (`study.code_hashes`)."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

import pytest
from checkout import ROOT

from cifarlab.config.records import read_run_settings, read_study_settings
from cifarlab.errors import CifarlabError
from cifarlab.study.code_hashes import library_closure
from cifarlab.study.publish import training_code, write_settings
from cifarlab.study.resolve import load_study

PACKAGE = ROOT / "src" / "cifarlab"
FAMILIES = ("models/resnet.py", "models/vgg.py", "models/simplenn.py")


def small_params() -> dict:
    """A whole params.yaml as a dict: a ResNet run and its replicate in one study, a VGG run in another."""
    return {
        "seed": 0,
        "profile": "quick",
        "device": "cpu",
        "performance": {"channels_last": False, "bf16": False, "compile": "none", "deterministic": False},
        "data": {"source": "cifar.tar.gz", "md5": None, "val_fraction": 0.2},
        "model": {"arch": "resnet", "n": 2, "num_classes": 10, "shortcut": "A", "width": 64, "groups": 8,
                  "activation": "relu"},
        "train": {"epochs": 4, "batch_size": 16, "lr": 0.05, "lr_scaling": "none", "lr_reference_batch": 128,
                  "optimizer": "sgd", "momentum": 0.9, "weight_decay": 1.0e-4, "l1": 0,
                  "gate_lr_multiplier": 10, "augment": True, "schedule": "multistep", "gamma": 0.1,
                  "step_epochs": 2, "milestones": [2, 3], "warmup_epochs": 0, "patience": 4, "train_images": 0,
                  "val_images": 0, "eval_batch_size": 32},
        "studies": {"norm": {"section": "comparisons"},
                    "vgg": {"section": "comparisons", "title": "VGG", "arch": "vgg11", "epochs": 3,
                            "milestones": [2]}},
        "profiles": {"full": {}, "quick": {"model": {"n": 1}}},
        "runs": {"bn": {"study": "norm", "norm": "bn"},
                 "bn-r1": {"study": "norm", "norm": "bn", "replicate_of": "bn", "replicate": 1},
                 "vgg-gn": {"study": "vgg", "norm": "gn", "groups": 32}},
    }


def files(paths: set[Path]) -> set[str]:
    """Paths under the package, relative to it."""
    return {p.relative_to(PACKAGE).as_posix() for p in paths}


def test_the_train_stage_imports_the_norms_and_the_loop_but_no_family_and_no_report():
    closure = files(library_closure(scripts=[ROOT / "stages" / "train.py"]))
    assert {"nn/norms.py", "train/loop.py", "train/stage.py", "config/records.py", "models/__init__.py"} <= closure
    assert not closure & set(FAMILIES)  # the registry imports a family by name, when a run needs it
    assert [f for f in closure if f.startswith(("report/", "analysis/", "tools/"))] == []


def test_the_closure_of_a_module_holds_its_enclosing_packages():
    assert files(library_closure(modules=["cifarlab.models.vgg"])) >= {
        "__init__.py", "models/__init__.py", "models/vgg.py", "nn/__init__.py", "nn/classifier.py"}


@pytest.mark.parametrize(("arch", "own", "foreign"), [
    ("vgg11", "models/vgg.py", ("models/resnet.py", "models/simplenn.py")),
    ("resnet", "models/resnet.py", ("models/vgg.py", "models/simplenn.py")),
    ("plain", "models/resnet.py", ("models/vgg.py", "models/simplenn.py")),  # plain is ResNet's module
    ("simplenn", "models/simplenn.py", ("models/resnet.py", "models/vgg.py")),
])
def test_training_code_holds_the_runs_family_and_no_other(arch, own, foreign):
    code = training_code(arch, ROOT)
    assert f"src/cifarlab/{own}" in code
    assert not {f"src/cifarlab/{f}" for f in foreign} & set(code)
    for name in (own, "nn/norms.py", "train/loop.py"):
        path = f"src/cifarlab/{name}"
        assert code[path] == hashlib.sha256((ROOT / path).read_bytes()).hexdigest()
    assert list(code) == sorted(code)


def write(params: dict, out: Path) -> tuple[Path, Path]:
    runs, study = out / "runs", out / "study.json"
    write_settings(load_study(params), runs, study, root=ROOT)
    return runs, study


def test_settings_files_read_back_as_the_study_they_were_written_from(tmp_path):
    study = load_study(small_params())
    runs_dir, study_file = write(small_params(), tmp_path)
    assert sorted(p.name for p in runs_dir.iterdir()) == ["bn-r1.json", "bn.json", "vgg-gn.json"]
    for name, run in study.runs.items():
        assert read_run_settings(runs_dir / f"{name}.json") == (run, "cpu")
    read = read_study_settings(study_file)
    assert read == study
    assert list(read.runs) == ["bn", "bn-r1", "vgg-gn"]  # params order: a study's first run is its baseline
    assert read.runs["bn-r1"].seed == 1 and read.runs["vgg-gn"].train.epochs == 3
    assert read.runs["bn"].train.milestones == (2, 3)  # a tuple again, as the frozen config has it


def test_a_run_settings_file_carries_its_run_device_and_training_code(tmp_path):
    runs_dir, _ = write(small_params(), tmp_path)
    record = json.loads((runs_dir / "vgg-gn.json").read_text())
    assert set(record) == {"run", "device", "code"}
    assert record["device"] == "cpu"
    assert record["code"] == training_code("vgg11", ROOT)


def test_settings_files_are_byte_identical_when_written_again(tmp_path):
    first, first_study = write(small_params(), tmp_path / "first")
    second, second_study = write(small_params(), tmp_path / "second")
    for name in ("bn", "bn-r1", "vgg-gn"):
        assert (first / f"{name}.json").read_bytes() == (second / f"{name}.json").read_bytes()
    assert first_study.read_bytes() == second_study.read_bytes()


def test_changing_one_runs_key_changes_only_that_runs_settings_file(tmp_path):
    before, before_study = write(small_params(), tmp_path / "before")
    params = copy.deepcopy(small_params())
    params["runs"]["vgg-gn"]["lr"] = 0.01
    after, after_study = write(params, tmp_path / "after")
    changed = [name for name in ("bn", "bn-r1", "vgg-gn")
               if (before / f"{name}.json").read_bytes() != (after / f"{name}.json").read_bytes()]
    assert changed == ["vgg-gn"]
    assert before_study.read_bytes() != after_study.read_bytes()  # the study file holds every run


def test_a_missing_settings_file_names_itself_and_the_stage_that_writes_it(tmp_path):
    for read in (read_run_settings, read_study_settings):
        path = tmp_path / "absent.json"
        with pytest.raises(CifarlabError, match="check-params") as error:
            read(path)
        assert str(path) in str(error.value)


@pytest.mark.parametrize("text", [
    "{not json",
    "",
    "[]",
    "{}",
    '{"run": {}, "device": "cpu"}',
    '{"run": "bn", "device": "cpu"}',
    '{"seed": 0, "runs": 3}',
])
def test_an_invalid_settings_file_gives_one_user_error_naming_it(tmp_path, text):
    path = tmp_path / "settings.json"
    path.write_text(text)
    for read in (read_run_settings, read_study_settings):
        with pytest.raises(CifarlabError) as error:
            read(path)
        assert str(path) in str(error.value)


def set_key(record: dict, keys: str, value: object) -> None:
    *parents, last = keys.split(".")
    for key in parents:
        record = record[key]
    record[last] = value


@pytest.mark.parametrize(("keys", "value"), [
    ("train.lrr", 0.1),  # a key the config does not have
    ("model", None),
    ("train", []),
    ("performance", "fast"),
    ("profile_overrides", [5]),
])
def test_a_run_settings_file_wrong_inside_gives_one_user_error_naming_it(tmp_path, keys, value):
    runs_dir, _ = write(small_params(), tmp_path)
    record = json.loads((runs_dir / "bn.json").read_text())
    set_key(record["run"], keys, value)
    (runs_dir / "bn.json").write_text(json.dumps(record))
    with pytest.raises(CifarlabError, match="bn.json: not a run settings file"):
        read_run_settings(runs_dir / "bn.json")


@pytest.mark.parametrize(("keys", "value"), [
    ("runs.bn.model", None),
    ("runs.bn", "bn"),
    ("runs", ["bn"]),
    ("data", [0.2]),
    ("reports", ["norm"]),
])
def test_a_study_settings_file_wrong_inside_gives_one_user_error_naming_it(tmp_path, keys, value):
    _, study_file = write(small_params(), tmp_path)
    record = json.loads(study_file.read_text())
    set_key(record, keys, value)
    study_file.write_text(json.dumps(record))
    with pytest.raises(CifarlabError, match="study.json: not a study settings file"):
        read_study_settings(study_file)

"""params.yaml survives DVC's rewrite: `dvc exp run -S key=value` loads the file with ruamel.yaml, sets the
value and writes the whole file back, so any formatting it does not keep shows up as a diff of an experiment."""

from __future__ import annotations

import copy
import difflib
import shutil

import pytest
import yaml
from checkout import ROOT, committed_project, run

pytestmark = pytest.mark.slow

# `dvc exp run -S` overrides, one per kind of place a value sits in: a top-level scalar with a comment and its
# continuation line, a string, a key of a block mapping, of a run's entry, and one deep in a profile.
OVERRIDES = {
    "seed": 1,
    "data.source": "elsewhere/cifar-10-python.tar.gz",
    "train.lr": 0.2,
    "runs.lab2c-lr-5e-2.lr": 0.04,
    "profiles.quick.train.epochs": 3,
}


def with_overrides(params: dict) -> dict:
    changed = copy.deepcopy(params)
    for dotted, value in OVERRIDES.items():
        *parents, key = dotted.split(".")
        node = changed
        for parent in parents:
            node = node[parent]
        node[key] = value
    return changed


def old_value(params: dict, dotted: str):
    for key in dotted.split("."):
        params = params[key]
    return params


def code_and_comment(line: str) -> tuple[str, str]:
    code, _, comment = line.partition(" #")
    return code.rstrip(), comment


def test_dvc_exp_run_set_param_changes_only_the_line_of_each_value_it_sets(tmp_path):
    repo = committed_project(tmp_path, {})
    # The repository's own files, text and all: their formatting is what DVC rewrites.
    for name in ("params.yaml", "claims.yaml"):
        shutil.copy(ROOT / name, repo / name)
    run(["git", "commit", "-q", "-am", "the real params"], repo)
    before = (repo / "params.yaml").read_text()

    # Only check-params: it is enough for DVC to rewrite the file, and it refuses a file it cannot read.
    sets = [arg for dotted, value in OVERRIDES.items() for arg in ("-S", f"{dotted}={value}")]
    run(["dvc", "exp", "run", *sets, "check-params"], repo)

    after = (repo / "params.yaml").read_text()
    params = yaml.safe_load(before)
    assert yaml.safe_load(after) == with_overrides(params)
    old_lines, new_lines = before.splitlines(), after.splitlines()
    shown = "\n".join(difflib.unified_diff(old_lines, new_lines, lineterm="", n=0))
    assert len(new_lines) == len(old_lines), shown
    changed = [(old, new) for old, new in zip(old_lines, new_lines) if old != new]
    # Each changed line is one value replaced in place, its key and its comment as they were.
    expected = {}
    for dotted, value in OVERRIDES.items():
        key, was = dotted.split(".")[-1], old_value(params, dotted)
        expected[dotted] = lambda old, key=key, was=was, value=value: (
            code_and_comment(old)[0].replace(f"{key}: {was}", f"{key}: {value}"), code_and_comment(old)[1])
    matched = sorted(dotted for old, new in changed for dotted, edit in expected.items()
                     if code_and_comment(new) == edit(old) and code_and_comment(new) != code_and_comment(old))
    assert matched == sorted(OVERRIDES) and len(changed) == len(OVERRIDES), shown

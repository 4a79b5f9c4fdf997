"""Mistakes in the project's own params.yaml and claims.yaml: each edit is either accepted or refused with one
line of `CifarlabError`, never a traceback.

Every mapping is replaced in turn by a number, a string, a list and null; then a few hundred random edits (a
key deleted, renamed or added; a value replaced by another type or nudged) are drawn from a fixed seed, so a
failure names an edit that reproduces. The files are the checkout's, so a key added to either is fuzzed
without editing this test.
"""

from __future__ import annotations

import copy
import json
import random
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from checkout import ROOT

from cifarlab.config.params import read_params
from cifarlab.errors import CifarlabError
from cifarlab.study.resolve import load_study
from cifarlab.train.device import resolve_device

RANDOM_EDITS = 300  # about 1 s for params.yaml on one core; a claims file is written and read for each
NOT_MAPPINGS = (3, "x", [1, "a"], None)
# What a value becomes: every YAML type, and numbers at the edges that ranges check.
REPLACEMENTS = (0, 1, -1, 3, 2.5, 1.0e9, float("nan"), "", "x", "none", [], [1, "a"], {}, {"zz": 1}, None, True)
DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's: the pure-Python one took most of the time
COLLECTION = 8  # a mapping of more entries than this, all mappings, is a list of alike entries (runs, claims)

KeyPath = tuple[Any, ...]  # the keys (and list indices) from the document's root to a node


def children(node: Any) -> list[Any]:
    return list(node) if isinstance(node, dict) else list(range(len(node))) if isinstance(node, list) else []


def node_paths(node: Any, path: KeyPath = ()) -> Iterator[KeyPath]:
    """The path of every node under `node`, at any depth."""
    for key in children(node):
        yield (*path, key)
        yield from node_paths(node[key], (*path, key))


def shapes(document: Any) -> dict[KeyPath, list[KeyPath]]:
    """Every node's path, grouped by its shape: the entries of a collection (forty runs, thirty claims) are one
    shape, so that a random draw reaches every section as often as the run entries."""
    groups: dict[KeyPath, list[KeyPath]] = {}
    for path in node_paths(document):
        shape = tuple("*" if is_collection(at(document, path[:i])) else key for i, key in enumerate(path))
        groups.setdefault(shape, []).append(path)
    return groups


def is_collection(node: Any) -> bool:
    return isinstance(node, dict) and len(node) > COLLECTION and all(isinstance(v, dict) for v in node.values())


def at(document: Any, path: KeyPath) -> Any:
    for key in path:
        document = document[key]
    return document


def typo(name: str, rng: random.Random) -> str:
    """`name` with one letter dropped, doubled or two swapped: the mistakes a hand makes."""
    if len(name) < 2:
        return name + "x"
    i = rng.randrange(len(name) - 1)
    return rng.choice([name[:i] + name[i + 1:], name[:i] + name[i] + name[i:],
                       name[:i] + name[i + 1] + name[i] + name[i + 2:]])


def mutate(document: Any, rng: random.Random) -> str:
    """Apply one random edit to `document` in place; returns what it did, to name a failing case."""
    path = rng.choice(rng.choice(list(shapes(document).values())))
    parent, key, value = at(document, path[:-1]), path[-1], at(document, path)
    where = ".".join(map(str, path))
    kind = rng.choice(["delete", "replace", "replace", "nudge", "rename", "add"])
    if kind == "delete":
        del parent[key]
        return f"deleted {where}"
    if kind == "rename" and isinstance(parent, dict) and isinstance(key, str):
        parent[typo(key, rng)] = parent.pop(key)
        return f"renamed {where}"
    if kind == "add" and isinstance(value, dict) and value:
        value[typo(rng.choice(list(value)), rng)] = rng.choice(REPLACEMENTS)
        return f"added a key under {where}"
    if kind == "nudge" and isinstance(value, (int, float)) and not isinstance(value, bool):
        parent[key] = rng.choice([value * 2, value + 1, value - 1, int(value), -value])  # often still valid
        return f"set {where} from {value!r} to {parent[key]!r}"
    parent[key] = copy.deepcopy(rng.choice(REPLACEMENTS))
    return f"set {where} to {parent[key]!r}"


def outcome(check: Callable[[Any], object], document: Any, edits: str) -> str | None:
    """None if `check` accepts `document` or refuses it in one line; else a line saying what went wrong."""
    try:
        check(document)
    except CifarlabError as err:
        if "\n" in str(err) or not str(err).strip():
            return f"{edits}: not one line: {str(err)!r}"
    except Exception as err:  # noqa: BLE001  (what the fuzz is looking for)
        last = traceback.extract_tb(err.__traceback__)[-1]
        return f"{edits}: {type(err).__name__}: {err} at {Path(last.filename).name}:{last.lineno}"
    return None


def every_mapping_replaced(original: Any, check: Callable[[Any], object]) -> list[str]:
    """`outcome` of every mapping of `original` replaced in turn by each of NOT_MAPPINGS; the failures."""
    failures = []
    for path in [p for p in node_paths(original) if isinstance(at(original, p), dict)]:
        for value in NOT_MAPPINGS:
            document = copy.deepcopy(original)
            at(document, path[:-1])[path[-1]] = value
            failures.append(outcome(check, document, f"set {'.'.join(map(str, path))} to {value!r}"))
    return [failure for failure in failures if failure]


def fuzz(original: Any, check: Callable[[Any], object], seed: int, count: int = RANDOM_EDITS) -> list[str]:
    """`outcome` of `count` random edits of `original` (one or two each); the failures."""
    rng = random.Random(seed)
    failures = []
    for case in range(count):
        document = copy.deepcopy(original)
        edits = [mutate(document, rng) for _ in range(rng.choice([1, 1, 1, 2])) if children(document)]
        failures.append(outcome(check, document, f"case {case} ({'; '.join(edits)})"))
    return [failure for failure in failures if failure]


def check_params(params: Any) -> None:
    """What check-params does with the file before it writes anything."""
    study = load_study(params)
    resolve_device(study.device)
    json.dumps(study.to_record())


@pytest.fixture(scope="module")
def real_params() -> dict:
    return read_params(ROOT / "params.yaml")


def test_each_mapping_of_params_yaml_as_a_number_string_list_or_null_is_accepted_or_refused_in_one_line(
        real_params):
    failures = every_mapping_replaced(real_params, check_params)
    assert not failures, "\n".join(failures)


def test_random_edits_of_params_yaml_are_accepted_or_refused_in_one_line(real_params):
    failures = fuzz(real_params, check_params, seed=0)
    assert not failures, "\n".join(failures)


def test_the_fuzz_reports_a_traceback_and_reaches_past_the_checks(real_params):
    # Power: a check that crashes after accepting is caught, and enough edits pass validation to reach it.
    accepted = []

    def crashes_once_valid(params: Any) -> None:
        check_params(params)
        accepted.append(params)
        raise KeyError("a bug behind the checks")

    failures = fuzz(real_params, crashes_once_valid, seed=0, count=100)
    assert len(failures) == len(accepted) >= 20
    assert all("KeyError: 'a bug behind the checks'" in line for line in failures)


def test_a_number_for_a_profiles_studies_is_refused_naming_the_key(real_params):
    params = copy.deepcopy(real_params)
    params["profiles"]["quick"]["studies"] = 3
    with pytest.raises(CifarlabError, match=r"^profiles\.quick\.studies: expected a mapping"):
        load_study(params)


@pytest.fixture(scope="module")
def check_claims(real_params, tmp_path_factory) -> Callable[[Any], object]:
    """The claims' public reader on a document, written as a file, against the real params' study."""
    from cifarlab.config.claims import (
        read_claims,  # here, so the params fuzz runs whatever claims.py holds
    )

    study = load_study(real_params)
    path = tmp_path_factory.mktemp("claims") / "claims.yaml"

    def check(claims: Any) -> None:
        path.write_text(yaml.dump(claims, Dumper=DUMPER, sort_keys=False))
        read_claims(path, study)

    return check


def test_each_mapping_of_claims_yaml_as_a_number_string_list_or_null_is_accepted_or_refused_in_one_line(
        check_claims):
    failures = every_mapping_replaced(yaml.safe_load((ROOT / "claims.yaml").read_text()), check_claims)
    assert not failures, "\n".join(failures)


def test_random_edits_of_claims_yaml_are_accepted_or_refused_in_one_line(check_claims):
    failures = fuzz(yaml.safe_load((ROOT / "claims.yaml").read_text()), check_claims, seed=0, count=200)
    assert not failures, "\n".join(failures)

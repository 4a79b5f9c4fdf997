"""cifarlab.config.yaml_file.read_yaml: a key given twice, at any depth, is refused with the file, the key and
the line of the second; what PyYAML reads otherwise comes back unchanged; a file that cannot be read is one
line naming it."""

from __future__ import annotations

import re

import pytest
import yaml
from checkout import ROOT

from cifarlab.config.params import read_params
from cifarlab.config.yaml_file import read_yaml
from cifarlab.errors import CifarlabError

KEY_LINE = re.compile(r"^( *)([\w-]+):")


def block_keys(text: str) -> list[tuple[int, str]]:
    """(line index, dotted key) of every line that starts a key of a block mapping, told by indentation alone
    (an independent reading of the file): the keys a paste could repeat."""
    found, parents, depth = [], [], 0  # parents: (indent, key); depth: open { and [ of flow collections
    for i, line in enumerate(text.splitlines()):
        code = line.split(" #")[0] if not line.lstrip().startswith("#") else ""
        match = KEY_LINE.match(code)
        if match and depth == 0:
            indent = len(match.group(1))
            parents = [(n, k) for n, k in parents if n < indent]
            found.append((i, ".".join([k for _, k in parents] + [match.group(2)])))
            parents.append((indent, match.group(2)))
        depth += code.count("{") + code.count("[") - code.count("}") - code.count("]")
    return found


def test_every_key_line_of_params_yaml_pasted_twice_is_refused_naming_the_key_and_the_copys_line(tmp_path):
    lines = (ROOT / "params.yaml").read_text().splitlines()
    keys = block_keys("\n".join(lines))
    assert len(keys) > 60  # every section, run and profile
    path = tmp_path / "params.yaml"
    for i, dotted in keys:
        path.write_text("\n".join([*lines[:i + 1], lines[i], *lines[i + 1:]]) + "\n")
        with pytest.raises(CifarlabError) as info:
            read_yaml(path, missing="")
        assert str(info.value).startswith(f"{path} line {i + 2}: {dotted} given twice (first on line {i + 1})")


@pytest.mark.parametrize(("text", "expected"), [
    ("runs:\n  bn-128: {study: norm}\n  gn-8: {}\n  bn-128: {study: lab}\n",
     "line 4: runs.bn-128 given twice (first on line 2)"),
    ("runs:\n  x: {study: norm, norm: bn, norm: gn}\n", "line 2: runs.x.norm given twice (both on it)"),
    ("profiles:\n  quick:\n    studies:\n      norm:\n        train: {epochs: 3}\n        train: {epochs: 4}\n",
     "line 6: profiles.quick.studies.norm.train given twice (first on line 5)"),
    ("runs:\n  - {a: 1}\n  - {a: 2,\n     a: 3}\n", "line 4: runs[1].a given twice (first on line 3)"),
    ("seed: 1\nseed: 0x1\n", "line 2: seed given twice"),
    ('"seed": 1\nseed: 2\n', "line 2: seed given twice"),
], ids=["run", "flow", "deep", "list", "int-spelling", "quoted"])
def test_a_key_given_twice_is_refused_with_the_file_the_key_and_the_second_line(tmp_path, text, expected):
    path = tmp_path / "params.yaml"
    path.write_text(text)
    with pytest.raises(CifarlabError) as info:
        read_yaml(path, missing="")
    assert str(info.value).startswith(f"{path} {expected}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("text", [
    "base: &b {x: 1, y: 2}\nm:\n  <<: *b\n  x: 3\n",  # a merge's keys may be overridden: that is what it is for
    "a: &a {k: 1}\nb: *a\nc: [*a, *a]\n",  # an alias repeats a mapping, not its keys
    "a: {k: 1}\nb: {k: 1}\n",  # the same key in two mappings
    "",
])
def test_what_has_no_key_twice_reads_as_pyyaml_reads_it(tmp_path, text):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    assert read_yaml(path, missing="") == yaml.safe_load(text)


def test_the_real_params_read_as_pyyaml_reads_them():
    assert read_params(ROOT / "params.yaml") == yaml.safe_load((ROOT / "params.yaml").read_text())


@pytest.mark.parametrize(("make", "expected"), [
    (lambda path: None, ": not found; run it from the root"),
    (lambda path: path.mkdir(), ": a folder; expected a YAML file"),
    (lambda path: path.write_text("a: [1\n"), " line 2: not valid YAML"),
    (lambda path: path.write_bytes(b"a: \xff\xfe\x00\x01"), ": not valid YAML"),
], ids=["missing", "folder", "unclosed", "not text"])
def test_a_file_that_cannot_be_read_is_one_line_naming_it(tmp_path, make, expected):
    path = tmp_path / "params.yaml"
    make(path)
    with pytest.raises(CifarlabError) as info:
        read_yaml(path, missing="run it from the root")
    assert str(info.value).startswith(f"{path}{expected}")
    assert "\n" not in str(info.value)

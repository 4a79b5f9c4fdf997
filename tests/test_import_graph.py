"""The package's layers, read from its source: no import circle, and lower layers import nothing above them.

An import is module-level when it runs as the module is imported: imports inside functions run later, and
those under `if TYPE_CHECKING:` never; both are left out of the graph.
"""

from __future__ import annotations

import ast
import functools
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from archives import make_cifar_archive
from checkout import ROOT

PACKAGE = ROOT / "src" / "cifarlab"

# Layers, lowest first: a module imports nothing from a layer above its own.
UPPER = ("nn", "models", "train", "analysis", "report", "study", "tools")
# The base, each folder whole: settings types, params and claims files, data on disk, errors and file
# output. The data stages and every settings reader stand on it alone, so it imports neither torch nor any
# layer of UPPER.
BASE = ("config", "data", "errors", "io", "cli")
# data.loader turns the split into tensors for training and evaluation: the one data module that needs torch.
TORCH_IN_BASE = ("cifarlab.data.loader",)


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def module_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """The import statements that run when the module is imported: every one outside a function body and
    outside the body of `if TYPE_CHECKING:` (its else branch runs)."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(statements: list[ast.stmt]) -> None:
        for node in statements:
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                found.append(node)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            elif isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
            else:  # if, try, with, for, class bodies: run at import
                for child in ast.iter_child_nodes(node):
                    if isinstance(child, ast.stmt):
                        visit([child])
                    elif isinstance(child, (ast.ExceptHandler, ast.match_case)):
                        visit(child.body)

    visit(tree.body)
    return found


def imported_names(module: str) -> set[str]:
    """Every module (cifarlab's or not) that `module` imports at module level, by full dotted name."""
    path = MODULES[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in module_level_imports(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
            continue
        base = node.module or ""
        if node.level:  # relative: from package, up level - 1
            anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
            base = ".".join([*anchor, *([base] if base else [])])
        names.add(base)
        names.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES)
    return names


@functools.cache
def graph() -> dict[str, set[str]]:
    """cifarlab module -> the cifarlab modules its import runs first: each it imports, and the packages
    that enclose those (their `__init__.py` runs), except packages enclosing the importer itself, which
    Python has initialised before it."""
    edges: dict[str, set[str]] = {}
    for module in MODULES:
        own = {".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)}
        targets = set()
        for name in imported_names(module):
            parts = name.split(".")
            targets.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        edges[module] = {t for t in targets if t in MODULES and t not in own and t != module}
    return edges


def third_party(module: str) -> set[str]:
    """The top-level names of what `module` imports at module level from outside cifarlab."""
    return {name.split(".")[0] for name in imported_names(module) if name.split(".")[0] != "cifarlab"}


def closure(module: str, edges: dict[str, set[str]]) -> set[str]:
    """`module` and every cifarlab module its import runs, transitively."""
    seen, todo = set(), [module]
    while todo:
        current = todo.pop()
        if current not in seen:
            seen.add(current)
            todo.extend(edges[current])
    return seen


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One import circle as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" after
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(edges[node]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state:
                found = visit(target)
                if found:
                    return found
        path.pop()
        state[node] = "done"
        return None

    for node in sorted(edges):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def in_layer(module: str, layer: str) -> bool:
    name = f"cifarlab.{layer}"
    return module == name or module.startswith(name + ".")


def test_the_module_list_is_read_from_the_source():
    assert {"cifarlab.config.sections", "cifarlab.data.fetch", "cifarlab.nn.norms", "cifarlab.models.vgg",
            "cifarlab.train.loop"} <= set(MODULES)


def test_module_level_imports_leave_out_functions_and_type_checking_blocks():
    tree = ast.parse("import os\n"
                     "from typing import TYPE_CHECKING\n"
                     "if TYPE_CHECKING:\n    import torch\nelse:\n    import json\n"
                     "try:\n    import numpy\nexcept ImportError:\n    import math\n"
                     "class A:\n    import re\n"
                     "def f():\n    import yaml\n")
    assert [ast.unparse(node) for node in module_level_imports(tree)] == [
        "import os", "from typing import TYPE_CHECKING", "import json", "import numpy", "import math",
        "import re"]


def test_the_package_has_no_import_circle():
    cycle = find_cycle(graph())
    assert cycle is None, f"import circle at module level: {' -> '.join(cycle)}"


def test_a_circle_is_found_and_named():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


@pytest.mark.parametrize("layer", BASE)
def test_the_base_imports_neither_torch_nor_any_upper_layer(layer):
    edges = graph()
    modules = [m for m in MODULES if in_layer(m, layer)]
    assert modules, layer
    for module in modules:
        reached = closure(module, edges)
        above = sorted(m for m in reached if any(in_layer(m, upper) for upper in UPPER))
        assert not above, f"{module} imports, at module level: {', '.join(above)}"
        if module not in TORCH_IN_BASE:
            with_torch = sorted(m for m in reached if "torch" in third_party(m))
            assert not with_torch, f"{module} imports torch at module level through {', '.join(with_torch)}"


@pytest.mark.parametrize(("layer", "above"), [
    ("nn", ("models", "train", "analysis", "report", "study", "tools")),
    ("models", ("train", "analysis", "report", "study", "tools")),
    ("train", ("analysis", "report", "study", "tools")),
    ("analysis", ("report", "study", "tools")),
    ("report", ("study", "tools")),
    ("study", ("tools",)),
])
def test_each_layer_imports_nothing_from_the_layers_above_it(layer, above):
    edges = graph()
    for module in (m for m in MODULES if in_layer(m, layer)):
        reached = sorted(m for m in closure(module, edges) if any(in_layer(m, upper) for upper in above))
        assert not reached, f"{module} imports, at module level: {', '.join(reached)}"


def loaded_modules(script: str, argv: list[str], cwd: Path) -> list[str]:
    """Run stages/<script> in a fresh interpreter in `cwd`; the torch and cifarlab modules loaded by the end.
    A fresh process, so that this test process's own imports do not count."""
    code = (
        "import json, runpy, sys\n"
        f"sys.path.insert(0, {str(ROOT / 'stages')!r})\n"
        f"sys.argv = [{script!r}, *{argv!r}]\n"
        f"runpy.run_path({str(ROOT / 'stages' / script)!r}, run_name='__main__')\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'cifarlab'))))\n")
    result = subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_the_data_stages_run_without_torch_or_any_upper_layer(tmp_path):
    archive = make_cifar_archive(tmp_path / "source.tar.gz")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"seed": 0, "data": {"source": str(archive), "md5": None, "val_fraction": 0.2}}))
    for script, argv in (("fetch.py", ["data/raw"]),
                         ("split.py", ["data/raw/cifar-10-python.tar.gz", "data/split"])):
        loaded = loaded_modules(script, argv, tmp_path)
        assert "cifarlab.config.params" in loaded  # it ran, and read its keys
        assert [m for m in loaded if m.split(".")[0] == "torch"] == [], script
        assert [m for m in loaded if any(in_layer(m, upper) for upper in UPPER)] == [], script
    assert (tmp_path / "data" / "split").is_dir()

"""The library files that a script imports, transitively, and their hashes.

A run's settings file (`config.records`) carries the hash of every library file its training runs, so
that DVC retrains a run exactly when that code changed: editing VGG's file retrains the VGG runs only,
editing a norm retrains every run, editing the report retrains none. Imports are read from the source
(any scope), not executed; the model registry imports a family only when a run needs it, so a run's
family module is added by name.
"""

from __future__ import annotations

import ast
import hashlib
from collections.abc import Iterable
from pathlib import Path

import cifarlab

PACKAGE_DIR = Path(cifarlab.__file__).resolve().parent


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of `tree` but those under `if TYPE_CHECKING:`, which never run."""
    skipped = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
               for stmt in block.body for n in ast.walk(stmt)}
    return [n for n in ast.walk(tree) if id(n) not in skipped]


def imported_modules(path: Path) -> set[str]:
    """Names of the cifarlab modules that `path` imports directly, in any scope that runs."""
    found = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("cifarlab"):
            found.add(node.module)
            # `from cifarlab.pkg import module` imports a module, not a name
            found.update(f"{node.module}.{a.name}" for a in node.names
                         if _module_file(f"{node.module}.{a.name}").exists())
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("cifarlab"))
    return found


def _module_file(module: str) -> Path:
    """The file of a cifarlab module: a package's __init__.py, or a module's .py."""
    relative = Path(*module.split(".")[1:])
    package = PACKAGE_DIR / relative / "__init__.py"
    return package if package.exists() else PACKAGE_DIR / relative.with_suffix(".py")


def library_closure(scripts: Iterable[Path] = (), modules: Iterable[str] = ()) -> set[Path]:
    """Every library file that `scripts` and `modules` import, transitively, with the `__init__.py` of
    each enclosing package (importing a module runs them), `modules` themselves included."""
    seen: set[str] = set()
    todo = [m for script in scripts for m in imported_modules(script)] + list(modules)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parts = module.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # its enclosing packages
        todo.extend(imported_modules(_module_file(module)))
    return {_module_file(m) for m in seen}


def file_hashes(files: Iterable[Path], root: Path) -> dict[str, str]:
    """SHA-256 of each file's bytes, keyed by its path relative to `root`, sorted."""
    return {str(f.relative_to(root)): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(files, key=lambda f: str(f.relative_to(root)))}

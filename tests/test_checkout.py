"""Every stage runs the cifarlab library of the checkout it belongs to, whatever the environment installed."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from checkout import ROOT, copy_code

STAGE_SCRIPTS = sorted(p.name for p in (ROOT / "stages").glob("[a-z]*.py"))


def checkout_copy(root: Path, name: str) -> Path:
    """A copy of this repository's stages and library whose cifarlab stops at import, saying which copy it is."""
    copy_code(root)
    init = root / "src" / "cifarlab" / "__init__.py"
    init.write_text(init.read_text() + f"\nraise SystemExit('the cifarlab of copy {name}')\n")
    return root


@pytest.fixture(scope="module")
def two_copies(tmp_path_factory) -> dict[str, Path]:
    return {name: checkout_copy(tmp_path_factory.mktemp(name), name) for name in ("a", "b")}


@pytest.mark.parametrize("script", STAGE_SCRIPTS)
def test_a_stage_imports_the_library_of_its_own_checkout_not_the_installed_one(two_copies, script):
    # This interpreter's cifarlab is the installed one; each copy's stage must import its own instead.
    for name, root in two_copies.items():
        result = subprocess.run([sys.executable, f"stages/{script}", "--help"], cwd=root,
                                capture_output=True, text=True, timeout=60)
        assert result.stderr.strip().splitlines()[-1:] == [f"the cifarlab of copy {name}"], result.stderr

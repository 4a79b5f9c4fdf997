"""The checkout under test, and copies of its pipeline in which tests run DVC.

Tests read the checkout's code, stage scripts and `dvc.yaml` through `ROOT`, never its `params.yaml` or
`claims.yaml` (but for the tests of the studies' protocols): the fixtures build the params each test needs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_FILES = ("dvc.yaml", ".gitignore", ".dvcignore")  # besides stages/, src/ and the plot templates


def run(cmd: list[str], cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    """`cmd` in `cwd` with that folder's library, this interpreter's `python` and `dvc`, no DVC telemetry and
    a git identity; a failure (when `check`) raises with its output."""
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "1",
           "PYTHONPATH": str(cwd / "src"), "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
           "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.invalid",
           "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.invalid"}
    result = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if check and result.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def copy_code(root: Path) -> Path:
    """The checkout's stage scripts and library, as they are in the working tree, under `root`."""
    for name in ("stages", "src"):
        shutil.copytree(ROOT / name, root / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return root


def committed_project(repo: Path, params: dict, claims: dict | None = None) -> Path:
    """The checkout's pipeline, library and plot templates in `repo` with `params` and `claims` (none by
    default: the checkout's name runs that tests do not have), in a new git and DVC repository whose branch
    `main` holds it all."""
    for name in PIPELINE_FILES:
        shutil.copy(ROOT / name, repo / name)
    copy_code(repo)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (repo / "claims.yaml").write_text(yaml.safe_dump({"claims": claims or {}}, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["dvc", "init", "-q"], repo)
    shutil.copytree(ROOT / ".dvc" / "plots", repo / ".dvc" / "plots")
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "study"], repo)
    return repo

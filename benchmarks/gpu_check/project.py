"""The temporary copy of the project that parts 3 and 4 train in: its stages run directly as scripts,
without DVC or git, on the archive, with params.yaml's own settings."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shlex
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from cifarlab.config.sections import ModelConfig, RunConfig
from cifarlab.models import model_label
from cifarlab.nn.norm_registry import takes_groups
from cifarlab.study.resolve import load_study
from gpu_check import ROOT
from gpu_check.children import last_lines, run_boxed

if TYPE_CHECKING:
    from gpu_check.check import Check

SETUP_GRACE_S = 10


class SetupFailed(Exception):
    """A stage before training failed in the temporary project; the message says which, and how."""


@dataclass
class Project:
    """The copy, its split made, and the settings folders written so far: name -> (the folder, or None
    where check-params refused those settings, with its last line)."""

    root: Path
    env: dict[str, str]
    log: Path
    settings: dict[str, tuple[str | None, str]] = field(default_factory=dict)

    def setup(self, cmd: list[str], params: dict, end: float) -> tuple[int, bool]:
        """`cmd` (a stage before training) with `params` as params.yaml, by time.monotonic() `end`."""
        (self.root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        done = run_boxed(cmd, self.root, self.env, end - time.monotonic(), self.log, SETUP_GRACE_S)
        return done.returncode, done.timed_out

    def settings_folder(self, name: str, params: dict, end: float) -> tuple[str | None, str]:
        """check-params into data/runs-<name> from `params`, once per name: (the folder, or None with why
        check-params refused them). A time box or any other failure raises SetupFailed."""
        if name not in self.settings:
            folder = f"data/runs-{name}"
            cmd = [word.replace("data/runs", folder).replace("data/study.json", f"data/study-{name}.json")
                   for word in stage_command("check-params")]
            returncode, timed_out = self.setup(cmd, params, end)
            if timed_out:
                raise SetupFailed(f"`{shlex.join(cmd[1:])}` reached its time box")
            self.settings[name] = (folder, "") if returncode == 0 else (None, last_lines(self.log, 1))
        return self.settings[name]


def lacks_dvclive(section) -> bool:
    """Whether the train stage cannot run here (it logs with DVCLive); marks `section` skipped if so."""
    if importlib.util.find_spec("dvclive") is None:
        section.status = "skipped: DVCLive is not installed (the train stage logs with it)"
        return True
    return False


def ensure_project(check: Check, end: float) -> Project:
    """The copy with the archive fetched and split, made once for parts 3 and 4."""
    if check.project is not None:
        return check.project
    root = copy_project(check.workdir / "project")
    project = Project(root, check.env(root / "src"), check.workdir / "logs" / "project-setup.log")
    for stage in ("fetch", "split"):
        returncode, timed_out = project.setup(stage_command(stage), study_params(check), end)
        if returncode != 0:
            raise SetupFailed(f"`{shlex.join(stage_command(stage)[1:])}` exited {returncode}"
                              + (" (time box)" if timed_out else "") + f": {last_lines(project.log, 2)}")
    check.project = project
    return project


def copy_project(where: Path) -> Path:
    """The project's pipeline under `where`: stages, library, dvc.yaml, and no claims to check."""
    if where.exists():
        shutil.rmtree(where)
    where.mkdir(parents=True)
    for folder in ("stages", "src"):
        shutil.copytree(ROOT / folder, where / folder, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info",
                                                                                    "*.pyc"))
    for file in ("dvc.yaml", ".gitignore", ".dvcignore"):
        if (ROOT / file).exists():
            shutil.copy(ROOT / file, where / file)
    (where / "claims.yaml").write_text("claims: {}\n")
    return where


def study_params(check: Check, *, runs: dict | None = None, profile: dict | None = None,
                 compile_mode: str | None = None) -> dict:
    """params.yaml under the full profile on the archive, optionally with other runs, a profile's overrides
    and another performance.compile."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["profile"] = "full"
    params["data"]["source"] = str(check.archive)
    if check.args.rehearsal:
        params["device"] = "cpu"
    if runs is not None:
        params["runs"] = runs
    if profile:
        params["profiles"]["full"] = profile
    if compile_mode is not None:
        params["performance"]["compile"] = compile_mode
    return params


def stage_command(stage: str, key: str | None = None) -> list[str]:
    """The stage's command line as dvc.yaml gives it, run by this interpreter."""
    spec = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"][stage]
    cmd = (spec["do"] if "foreach" in spec else spec)["cmd"]
    words = shlex.split(cmd.replace("${key}", key or ""))
    return [sys.executable if words[0] == "python" else words[0], *words[1:]]


def train_command(run: str, settings: str, outputs: str) -> list[str]:
    """dvc.yaml's train command for `run`, its settings file from the folder `settings`, its outputs under
    the folder `outputs`, so that no part resumes or overwrites another's run."""
    cmd = stage_command("train", run)
    cmd[2] = f"{settings}/{run}.json"
    return [f"{outputs}/{word}" if before in ("--model", "--live", "--checkpoint") else word
            for before, word in zip(["", *cmd], cmd)]


def default_study():
    """params.yaml's runs under the full profile, as the default study trains them."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["profile"] = "full"
    return load_study(params)


def network(model: ModelConfig) -> str:
    """The network, norm and activation in a few words: what decides a step's cost."""
    extras = [f"{model.groups} groups"] if takes_groups(model.norm) else []
    if model.activation != "relu":
        extras.append(model.activation)
    return ", ".join([model_label(model), model.norm, *extras])


def live_column(live_dir: Path, column: str) -> list[float]:
    """A history column of a run's DVCLive directory, one value per epoch trained."""
    # Here, not at the top: it imports DVCLive, which only parts 3 and 4 need.
    from cifarlab.train.tracking import live_plot_file

    path = live_plot_file(live_dir, column)
    if not path.exists():
        return []
    rows = path.read_text().splitlines()[1:]
    return [float(row.split("\t")[-1]) for row in rows if row.strip()]


def epochs_logged(live_dir: Path) -> int:
    """How many epochs a running stage has logged so far: cheap enough to poll."""
    from cifarlab.train.tracking import live_plot_file

    with contextlib.suppress(OSError):
        return max(0, live_plot_file(live_dir, "eval_time_s").read_bytes().count(b"\n") - 1)
    return 0


def split_sizes(project: Project) -> dict[str, int]:
    """The archive's split: train, val and test images."""
    return json.loads((project.root / "data" / "split" / "meta.json").read_text())["sizes"]


def run_config(project: Project, settings_file: str) -> RunConfig:
    """The run a settings file describes."""
    return RunConfig.from_record(json.loads((project.root / settings_file).read_text())["run"])

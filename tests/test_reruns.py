"""Exact reruns: after an edit to one kind of file in a finished tiny pipeline, `dvc status` lists exactly the
stages whose own dependencies changed, and DVC reruns exactly those and what their new outputs reach.

One tiny project is reproduced once per module (a ResNet-8, a VGG-11 and a SimpleNN run, each in its own study,
one epoch on a generated archive); each edit is tried on a copy of it, DVC cache included. Where an edit
retrains runs, `dvc repro check-params` then `dvc status` names the stages a full `dvc repro` would run next
(what the pipeline's docs tell a user to do), which costs one stage instead of every retraining; the edit to
one model family is reproduced to the end.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from archives import make_cifar_archive
from checkout import ROOT, run

from cifarlab.study.code_hashes import library_closure

pytestmark = pytest.mark.slow

# One run of each model family, each in its own study: the families' files are what the edits tell apart.
RESNET, VGG, SIMPLENN = "res-bn", "vgg-bn", "simple-nn"
RUNS = (RESNET, VGG, SIMPLENN)
TRAINS = {f"train@{run}" for run in RUNS}
EVALUATES = {f"evaluate@{run}" for run in RUNS}
# The stages after the runs: each reads the study's settings file and the outputs of every run.
STUDY_STAGES = {"aggregate", "curves", "quantile-plots", "report"}
# What the project's pipeline needs from the checkout (the rest of it, tests and docs, is not copied).
PROJECT_FILES = ("dvc.yaml", ".gitignore", ".dvcignore")
PROJECT_DIRS = ("stages/", "src/", ".dvc/plots/")


def three_family_params(archive: Path) -> dict:
    """A whole params.yaml: one epoch on every image of `archive`, small enough for a test's minute."""
    return {
        "seed": 0,
        "profile": "quick",
        "device": "cpu",
        "performance": {"channels_last": False, "bf16": False, "compile": "none", "deterministic": False},
        "data": {"source": str(archive), "md5": None, "val_fraction": 0.2},
        "model": {"arch": "resnet", "n": 2, "num_classes": 10, "shortcut": "A", "width": 64, "groups": 8,
                  "activation": "relu"},
        "train": {"epochs": 10, "batch_size": 16, "lr": 0.05, "lr_scaling": "none", "lr_reference_batch": 128,
                  "optimizer": "sgd", "momentum": 0.9, "weight_decay": 1.0e-4, "l1": 0,
                  "gate_lr_multiplier": 10, "augment": True, "schedule": "constant", "gamma": 0.1,
                  "step_epochs": 5, "milestones": [5], "warmup_epochs": 0, "patience": 10, "train_images": 0,
                  "val_images": 0, "eval_batch_size": 32},
        "studies": {
            "norm": {"section": "comparisons", "title": "A ResNet"},
            "vgg": {"section": "comparisons", "title": "A VGG", "arch": "vgg11"},
            "simple": {"section": "comparisons", "title": "A SimpleNN", "arch": "simplenn"},
        },
        "profiles": {"full": {},
                     "quick": {"model": {"n": 1}, "train": {"epochs": 1, "patience": 1}}},  # a ResNet-8
        "runs": {RESNET: {"study": "norm", "norm": "bn"},
                 VGG: {"study": "vgg", "norm": "bn"},
                 SIMPLENN: {"study": "simple", "norm": "nn"}},
    }


def checkout_files() -> list[str]:
    """The pipeline's files in this checkout as they are now: what git tracks and what it would track
    (new files not yet committed), less what was deleted."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split("\0")
    return sorted(name for name in listed if (name in PROJECT_FILES or name.startswith(PROJECT_DIRS))
                  and (ROOT / name).is_file())


def stage_status(repo: Path) -> set[str]:
    return set(json.loads(run(["dvc", "status", "--json"], repo).stdout))


def repro(repo: Path, *targets: str) -> set[str]:
    """`dvc repro`; the stages it ran."""
    output = run(["dvc", "repro", *targets], repo).stdout
    return set(re.findall(r"^Running stage '([^']+)'", output, flags=re.MULTILINE))


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    """The tiny project, reproduced to the end with its results committed (module-scoped: slow)."""
    archive = make_cifar_archive(tmp_path_factory.mktemp("archive") / "cifar.tar.gz", per_batch=12, test_size=20)
    repo = tmp_path_factory.mktemp("finished")
    (repo / "params.yaml").write_text(yaml.safe_dump(three_family_params(archive), sort_keys=False))
    (repo / "claims.yaml").write_text("claims: {}\n")
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["dvc", "init", "-q"], repo)
    for name in checkout_files():  # .dvc/plots/ after `dvc init`, which wants no .dvc folder yet
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, repo / name)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "tiny study"], repo)  # DVCLive needs a commit to start from
    ran = repro(repo)
    assert ran == {"check-params", "fetch", "split", *TRAINS, *EVALUATES, *STUDY_STAGES}
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "results"], repo)
    assert stage_status(repo) == set()
    return repo


@pytest.fixture
def project(finished, tmp_path) -> Path:
    """A copy of the finished project to edit: its git history, outputs and DVC cache with it."""
    return Path(shutil.copytree(finished, tmp_path / "project", symlinks=True))


def append_comment(path: Path) -> None:
    with path.open("a") as f:
        f.write("# an edit that changes no behaviour\n")


def changed_settings(repo: Path, before: dict[str, bytes]) -> list[str]:
    """The runs whose settings file differs from `before` (run -> bytes)."""
    return [run for run in RUNS if (repo / "data" / "runs" / f"{run}.json").read_bytes() != before[run]]


def settings_files(repo: Path) -> dict[str, bytes]:
    return {run: (repo / "data" / "runs" / f"{run}.json").read_bytes() for run in RUNS}


def stale_after_check_params(repo: Path) -> set[str]:
    """Run check-params alone, as a user who wants to see what an edit costs before paying it; then the
    stages that `dvc status` lists: those whose settings file it rewrote, and any other whose deps changed."""
    assert repro(repo, "check-params") == {"check-params"}
    return stage_status(repo)


def test_editing_one_model_family_retrains_only_its_runs(project):
    append_comment(project / "src/cifarlab/models/vgg.py")
    # check-params hashes every family into the settings files; the report counts each run's parameters
    # and MACs with its model code, so it depends on the families too. No train stage depends on vgg.py
    # itself: each depends on its run's settings file, which check-params has not rewritten yet.
    assert stage_status(project) == {"check-params", "report"}
    # check-params rewrites the VGG run's settings file alone (the new hash of vgg.py): train and
    # evaluate of that run are out of date, no other run's, and nothing depends on the settings of the study.
    settings = settings_files(project)
    assert stale_after_check_params(project) == {f"train@{VGG}", f"evaluate@{VGG}", "report"}
    assert changed_settings(project, settings) == [VGG]
    model, metrics = (project / "models" / f"{VGG}.pt").read_bytes(), (project / "metrics" / f"{VGG}.json").read_bytes()
    # A comment does not change training (deterministic on a CPU): the model and its metrics come out
    # byte-identical, so aggregate, which reads only the metrics and the study's settings, does not rerun.
    # The run's DVCLive folder records training seconds, so the curves and quantile plots do. fetch and
    # split never run.
    assert repro(project) == {f"train@{VGG}", f"evaluate@{VGG}", "curves", "quantile-plots", "report"}
    assert (project / "models" / f"{VGG}.pt").read_bytes() == model
    assert (project / "metrics" / f"{VGG}.json").read_bytes() == metrics
    assert stage_status(project) == set()


def test_editing_the_norms_retrains_every_run_but_fetches_and_splits_nothing(project):
    append_comment(project / "src/cifarlab/nn/norms.py")
    assert stage_status(project) == {"check-params", "report"}  # the report builds models to count their costs
    settings = settings_files(project)
    assert stale_after_check_params(project) == {*TRAINS, *EVALUATES, "report"}
    assert changed_settings(project, settings) == list(RUNS)


def test_editing_the_training_loop_retrains_every_run(project):
    append_comment(project / "src/cifarlab/train/loop.py")
    assert stage_status(project) == {"check-params"}
    settings = settings_files(project)
    assert stale_after_check_params(project) == {*TRAINS, *EVALUATES}
    assert changed_settings(project, settings) == list(RUNS)


def report_only_file() -> Path:
    """A report file that the report stage's script imports and no other stage's script does: found from
    the imports, so that it is still one when the report's code moves."""
    stages = ROOT / "stages"
    others = library_closure(scripts=[p for p in stages.glob("*.py") if p.name not in ("report.py", "_checkout.py")])
    package = ROOT / "src" / "cifarlab"
    mine = {p for p in library_closure(scripts=[stages / "report.py"]) - others
            if p.relative_to(package).parts[0] == "report"}
    assert mine, "the report stage imports no report file of its own"
    return min(mine)


def test_editing_report_code_reruns_only_the_report(project):
    edited = report_only_file().relative_to(ROOT / "src").as_posix()
    append_comment(project / "src" / edited)
    assert stage_status(project) == {"report"}, edited
    assert repro(project) == {"report"}, edited


def test_editing_the_fetch_code_fetches_again_and_nothing_after_it(project):
    append_comment(project / "src/cifarlab/data/fetch.py")
    assert stage_status(project) == {"fetch"}
    # The archive fetched again is byte-identical, so DVC reruns neither split nor anything after it.
    assert repro(project) == {"fetch"}


def test_changing_one_runs_params_retrains_only_that_run(project):
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["runs"][SIMPLENN]["lr"] = 0.01
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    settings = settings_files(project)
    assert stage_status(project) == {"check-params"}  # only check-params reads params.yaml as a whole
    # The run's settings file changes, and the study's (every run's settings), which the stages after
    # the runs read.
    assert stale_after_check_params(project) == {f"train@{SIMPLENN}", f"evaluate@{SIMPLENN}", *STUDY_STAGES}
    assert changed_settings(project, settings) == [SIMPLENN]

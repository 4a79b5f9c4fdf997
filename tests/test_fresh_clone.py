"""A fresh clone extends the committed results without the models or the data: the README's recipes with
`--allow-missing`, in a `git clone` of a tiny project whose results were made and committed elsewhere."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from archives import make_cifar_archive
from checkout import ROOT, committed_project, run

pytestmark = pytest.mark.slow

ARCHIVE = "data/cifar-10-subset-python.tar.gz"  # as params.yaml names it: inside the project, ignored by git
STUDY_STAGES = {"aggregate", "curves", "quantile-plots", "report"}


@pytest.fixture(scope="module")
def origin(tmp_path_factory, tiny_params) -> Path:
    """A tiny project with one run reproduced and everything DVC leaves to git committed; its DVC cache (the
    model, the archive's copy, the split) stays here, as it stays on the machine that trained."""
    archive = make_cifar_archive(tmp_path_factory.mktemp("archive") / "cifar.tar.gz", per_batch=12, test_size=20)
    params = tiny_params(archive, {"bn-128": {"study": "norm", "norm": "bn"}}, epochs=2)
    params["data"]["source"] = ARCHIVE
    repo = committed_project(tmp_path_factory.mktemp("origin"), params)
    place_archive(archive, repo)
    run(["dvc", "repro"], repo)
    run(["git", "add", "-A"], repo)
    run(["git", "commit", "-q", "-m", "results"], repo)
    return repo


def place_archive(archive: Path, repo: Path) -> None:
    (repo / ARCHIVE).parent.mkdir(exist_ok=True)
    shutil.copy(archive, repo / ARCHIVE)


def fresh_clone(origin: Path, where: Path) -> Path:
    run(["git", "clone", "-q", str(origin), str(where)], origin)
    assert not (where / "models" / "bn-128.pt").exists() and not (where / ARCHIVE).exists()
    return where


def ran(output: str) -> set[str]:
    return set(re.findall(r"^Running stage '([^']+)'", output, flags=re.MULTILINE))


def nothing_to_run(repo: Path) -> bool:
    """What the README has a user check after a recipe: every stage unchanged but for its missing data."""
    dry = run(["dvc", "repro", "--allow-missing", "--dry"], repo).stdout
    return not ran(dry) and "Data and pipelines are up to date." in dry


def test_a_claim_added_in_a_fresh_clone_reruns_only_check_params_and_the_report(origin, tmp_path):
    clone = fresh_clone(origin, tmp_path / "clone")
    assert nothing_to_run(clone)  # the committed params, lock and results agree
    settings = {p.name: p.read_bytes() for p in (clone / "data" / "runs").iterdir()}
    claims = {"claims": {"initial-loss": {"source": "s", "says": "ln 10 before training",
                                          "metric": "initial_val_loss", "expect": "near", "runs": "all",
                                          "value": "ln-classes", "margin": 0.25}}}
    (clone / "claims.yaml").write_text(yaml.safe_dump(claims, sort_keys=False))

    # No archive, no model: what the report reads of the run is in git.
    assert ran(run(["dvc", "repro", "--allow-missing"], clone).stdout) == {"check-params", "report"}
    assert "`initial-loss`" in (clone / "report" / "report.md").read_text()
    assert {p.name: p.read_bytes() for p in (clone / "data" / "runs").iterdir()} == settings
    assert nothing_to_run(clone)


def test_a_run_added_in_a_fresh_clone_trains_alone_and_updates_the_report(origin, tmp_path):
    clone = fresh_clone(origin, tmp_path / "clone")
    committed_lock = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    place_archive(origin / ARCHIVE, clone)
    run(["dvc", "repro", "split"], clone)  # the archive's copy and the split, as the committed lock has them
    lock = yaml.safe_load((clone / "dvc.lock").read_text())["stages"]
    assert {name: lock[name] for name in ("fetch", "split")} == {name: committed_lock[name] for name in ("fetch", "split")}
    with open(clone / "params.yaml", "a") as params:
        params.write("  gn-128:\n    study: norm\n    norm: gn\n")

    output = run(["dvc", "repro", "--allow-missing"], clone).stdout
    assert ran(output) == {"check-params", "train@gn-128", "evaluate@gn-128"} | STUDY_STAGES
    assert "`gn-128`" in (clone / "report" / "report.md").read_text()
    assert nothing_to_run(clone)
    # `dvc metrics show`: one short row per training, the new one included
    shown = next(iter(json.loads(run(["dvc", "metrics", "show", "--json"], clone).stdout).values()))["data"]
    assert set(shown) == {"metrics/headline/bn-128.json", "metrics/headline/gn-128.json"}

    # What git keeps of the new run is in the run cache too: another checkout of this commit gets it back
    # from there (the sweep's way) instead of training again.
    kept = [clone / "plots" / "live" / "gn-128", clone / "metrics" / "gn-128.json",
            clone / "plots" / "predictions" / "gn-128.csv"]
    before = files(kept)
    for path in kept:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    (clone / "models" / "gn-128.pt").unlink()
    restored = run(["dvc", "repro", "evaluate@gn-128"], clone).stdout
    assert "Stage 'train@gn-128' is cached - skipping run" in restored and not ran(restored)
    assert files(kept) == before


def files(paths: list[Path]) -> dict[Path, bytes]:
    """Every file at or under `paths`, with its bytes."""
    return {f: f.read_bytes() for path in paths for f in ([path] if path.is_file() else path.rglob("*"))
            if f.is_file()}


def test_this_projects_committed_lock_and_results_are_what_its_code_and_params_make():
    """A clone of this repository has nothing to rerun: a change to the code or params that a stage reads
    comes with the stages it reruns (the quick study's metrics, curves and report, and dvc.lock)."""
    assert nothing_to_run(ROOT)

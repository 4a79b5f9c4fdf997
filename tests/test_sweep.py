"""`python -m cifarlab.tools.sweep` on a local Ray cluster that the tests start with two logical GPUs: runs at once,
a failing run, a rerun, the state plain `dvc repro` leaves, and separate machines through git and DVC remotes;
and with one logical GPU that two runs share (`--runs-per-gpu 2`).

The logical GPUs let Ray hand each task its own CUDA_VISIBLE_DEVICES on a machine without one; torch then
finds no CUDA device, and the runs train on the CPU with one thread each, as the plain reference does.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from archives import make_cifar_archive
from checkout import committed_project, run

ray = pytest.importorskip("ray")

from cifarlab.tools import sweep  # noqa: E402  (after the skip: the module is for installs with Ray)

pytestmark = pytest.mark.slow
RUNS = ("bn-128", "gn-128")


def two_logical_gpus(**kwargs):
    return ray.init(num_cpus=2, num_gpus=2, include_dashboard=False, **kwargs)


def one_logical_gpu(**kwargs):
    return ray.init(num_cpus=2, num_gpus=1, include_dashboard=False, **kwargs)


def stage_names() -> set[str]:
    return {"check-params", "fetch", "split", "aggregate", "curves", "quantile-plots", "report",
            *(f"{stage}@{name}" for name in RUNS for stage in ("train", "evaluate"))}


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_params) -> Path:
    """The project with two runs of the norm study on a generated archive, two epochs each, committed, not yet
    run."""
    archive = make_cifar_archive(tmp_path_factory.mktemp("archive") / "cifar.tar.gz", per_batch=12, test_size=20)
    params = tiny_params(archive, epochs=2)
    params["runs"] = {name: params["runs"][name] for name in RUNS}
    return committed_project(tmp_path_factory.mktemp("project"), params)


def copy_of(project: Path, where: Path) -> Path:
    shutil.copytree(project, where, symlinks=True)
    return where


def training_only(repo: Path) -> Path:
    """The copy without the stages after training, for a test about training alone (they cost a minute;
    `swept` and `plain` run them), committed."""
    spec = yaml.safe_load((repo / "dvc.yaml").read_text())
    for name in ("aggregate", "curves", "quantile-plots", "report"):
        del spec["stages"][name]
    (repo / "dvc.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    run(["git", "commit", "-q", "-am", "training only"], repo)
    return repo


def metrics_files(repo: Path) -> dict[str, bytes]:
    return {name: (repo / "metrics" / f"{name}.json").read_bytes() for name in RUNS}


def sweep_in(repo: Path, monkeypatch: pytest.MonkeyPatch, *args: str, ray_init=two_logical_gpus) -> int:
    monkeypatch.chdir(repo)
    monkeypatch.setenv("DVC_NO_ANALYTICS", "1")
    monkeypatch.setenv("DVC_STUDIO_OFFLINE", "1")
    monkeypatch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")  # `python` of a stage
    return sweep.main(list(args), ray_init=ray_init)


@pytest.fixture(scope="module")
def plain(project, tmp_path_factory) -> Path:
    """The reference: `dvc repro` of the same project's runs, one torch thread, as each sweep task has."""
    repo = copy_of(project, tmp_path_factory.mktemp("plain") / "repo")
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        run(["dvc", "repro", *(f"evaluate@{name}" for name in RUNS)], repo)
    return repo


@pytest.fixture(scope="module")
def swept(project, tmp_path_factory):
    """A sweep in which gn-128 cannot save its resume state (a folder sits where the file goes), then, with
    the folder gone, a second sweep; the outcomes of both."""
    repo = copy_of(project, tmp_path_factory.mktemp("swept") / "repo")
    blocker = repo / "models" / "resume" / "gn-128.pt"
    (blocker / "in-the-way").mkdir(parents=True)
    with pytest.MonkeyPatch.context() as monkeypatch:
        first = sweep_in(repo, monkeypatch)
        first_outcomes = json.loads((repo / sweep.OUTCOMES_FILE).read_text())
        first_status = json.loads(run(["dvc", "status", "--json"], repo).stdout)
        shutil.rmtree(blocker)
        second = sweep_in(repo, monkeypatch)
        second_outcomes = json.loads((repo / sweep.OUTCOMES_FILE).read_text())
    return {"repo": repo, "first": first, "first_outcomes": first_outcomes, "first_status": first_status,
            "second": second, "second_outcomes": second_outcomes}


@pytest.mark.cluster
def test_two_runs_train_at_once_each_on_its_own_gpu(swept):
    outcomes = {o["run"]: o for o in swept["first_outcomes"]}
    assert set(outcomes) == set(RUNS)
    assert {o["cuda_visible_devices"] for o in outcomes.values()} == {"0", "1"}
    assert {o["device"] for o in outcomes.values()} == {"GPU 0", "GPU 1"}
    starts = [o["started_at"] for o in outcomes.values()]
    ends = [o["started_at"] + o["seconds"] for o in outcomes.values()]
    assert max(starts) < min(ends)  # the two tasks overlapped in time


def trained_on(repo: Path, name: str) -> str:
    return json.loads((repo / "plots" / "live" / name / "metrics.json").read_text())["device"]


def test_two_runs_share_one_gpu_at_once_and_equal_serial_runs(project, plain, tmp_path, monkeypatch, capfd):
    """K = 2 on one logical GPU: both runs hold half of it at the same time, each with one of the two CPUs as
    its torch thread, and train exactly as `dvc repro` trains them one after the other on one thread. (CI runs
    this test: it is the shortest that takes the sweep end to end.)"""
    repo = training_only(copy_of(project, tmp_path / "repo"))
    status = sweep_in(repo, monkeypatch, "--runs-per-gpu", "2", ray_init=one_logical_gpu)
    out, err = capfd.readouterr()

    assert status == 0, out + err
    assert "each run on 1/2 of a GPU, 1 torch threads" in out
    outcomes = {o["run"]: o for o in json.loads((repo / sweep.OUTCOMES_FILE).read_text())}
    assert set(outcomes) == set(RUNS) and {o["status"] for o in outcomes.values()} == {"done"}
    assert [o["cuda_visible_devices"] for o in outcomes.values()] == ["0", "0"]  # the same GPU
    starts = [o["started_at"] for o in outcomes.values()]
    ends = [o["started_at"] + o["seconds"] for o in outcomes.values()]
    assert max(starts) < min(ends)  # the two tasks overlapped in time
    # A logical GPU has no CUDA behind it: `device: auto` must fall back to the CPU, on the task's thread share.
    assert {trained_on(where, name) for where in (repo, plain) for name in RUNS} == {"cpu (1 threads)"}
    assert metrics_files(repo) == metrics_files(plain)


@pytest.mark.cluster
def test_a_failing_run_is_named_and_the_other_finishes(swept):
    assert swept["first"] == 1
    outcomes = {o["run"]: o for o in swept["first_outcomes"]}
    assert outcomes["gn-128"]["status"] == "failed" and outcomes["bn-128"]["status"] == "done"
    assert "models/resume/gn-128.pt" in Path(outcomes["gn-128"]["log"]).read_text()
    pending = set(swept["first_status"])
    assert "train@gn-128" in pending and "train@bn-128" not in pending and "evaluate@bn-128" not in pending
    assert "report" in pending  # nothing downstream ran on a partial study


@pytest.mark.cluster
def test_the_next_sweep_trains_only_the_failed_run(swept):
    assert swept["second"] == 0
    assert [o["run"] for o in swept["second_outcomes"]] == ["gn-128"]


@pytest.mark.cluster
def test_the_sweep_leaves_the_state_plain_dvc_repro_leaves(swept, plain):
    repo = swept["repo"]
    assert json.loads(run(["dvc", "status", "--json"], repo).stdout) == {}
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert set(lock) == stage_names()
    assert metrics_files(repo) == metrics_files(plain)
    plain_lock = yaml.safe_load((plain / "dvc.lock").read_text())["stages"]
    for name in RUNS:  # hash for hash: the model, and all that evaluate wrote (the logs hold times)
        assert lock[f"train@{name}"]["outs"][0] == plain_lock[f"train@{name}"]["outs"][0]
        assert lock[f"evaluate@{name}"]["outs"] == plain_lock[f"evaluate@{name}"]["outs"]
    assert (repo / "report" / "report.md").read_text().count("bn-128") > 0


@pytest.mark.cluster
def test_separate_machines_share_a_git_and_a_dvc_remote_and_the_head_does_not_train(
        project, plain, tmp_path, monkeypatch, capfd):
    origin = tmp_path / "origin.git"
    run(["git", "init", "-q", "--bare", "-b", "main", str(origin)], tmp_path)
    source = training_only(copy_of(project, tmp_path / "source"))
    run(["dvc", "remote", "add", "-d", "store", str(tmp_path / "dvc-store")], source)
    run(["git", "commit", "-q", "-am", "a DVC remote"], source)
    run(["git", "push", "-q", str(origin), "main"], source)
    head = tmp_path / "head"
    run(["git", "clone", "-q", str(origin), str(head)], tmp_path)

    status = sweep_in(head, monkeypatch, "--clones", str(tmp_path / "nodes"))
    out, err = capfd.readouterr()

    assert status == 0, out + err
    outcomes = json.loads((head / sweep.OUTCOMES_FILE).read_text())
    assert {o["run"] for o in outcomes} == set(RUNS) and {o["status"] for o in outcomes} == {"done"}
    (node,) = [p for p in (tmp_path / "nodes").iterdir() if p.is_dir()]
    assert {p.name for p in (node / "models" / "resume").iterdir()} == {f"{name}.pt" for name in RUNS}
    assert not (head / "models" / "resume").exists()  # the head trained nothing
    assert "Running stage 'train@" not in out and "Running stage 'evaluate@" not in out
    assert json.loads(run(["dvc", "status", "--json"], head).stdout) == {}
    assert metrics_files(head) == metrics_files(node) == metrics_files(plain)


@pytest.mark.cluster
def test_clones_refuse_uncommitted_changes_before_any_work(project, tmp_path, monkeypatch, capfd):
    repo = copy_of(project, tmp_path / "repo")
    edited = yaml.safe_load((repo / "params.yaml").read_text())
    edited["profiles"]["quick"]["train"]["epochs"] = 3
    (repo / "params.yaml").write_text(yaml.safe_dump(edited, sort_keys=False))
    status = sweep_in(repo, monkeypatch, "--clones", str(tmp_path / "nodes"))
    out, err = capfd.readouterr()
    assert status == 2  # a user error, as at every entry point
    assert err.strip() == ("error: --clones: the clones check out the last commit, and these files differ from "
                           "it: params.yaml; commit and push first")
    assert not (repo / "data" / "split").exists() and not (tmp_path / "nodes").exists()


def trainings_in(repo: Path) -> list[str]:
    """Command lines of live processes training in `repo`."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(proc / "cwd")
        except (OSError, ValueError):
            continue
        if "stages/train.py" in cmdline and cwd == str(repo):
            found.append(cmdline)
    return found


@pytest.mark.cluster
@pytest.mark.skipif(not Path("/proc").exists(), reason="finds the training processes through /proc")
def test_a_stopped_sweep_stops_its_runs_and_the_next_one_resumes_them(project, tmp_path):
    repo = training_only(copy_of(project, tmp_path / "repo"))
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["profiles"]["quick"]["train"].update(epochs=60, patience=60, milestones=[30])
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    command = [sys.executable, "-m", "cifarlab.tools.sweep", "--slots", "2"]  # no GPU: Ray's CPU slots
    sweeping = subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                text=True)
    resume = [repo / "models" / "resume" / f"{name}.pt" for name in RUNS]
    deadline = time.monotonic() + 300
    while not all(path.exists() for path in resume):  # each run has saved an epoch
        assert sweeping.poll() is None and time.monotonic() < deadline, sweeping.stdout.read()
        time.sleep(0.5)
    sweeping.send_signal(signal.SIGTERM)  # as a scheduler ends a job; Ctrl-C takes the same path
    output = sweeping.communicate(timeout=120)[0]
    assert sweeping.returncode == 130, output
    assert "stopped: each run in training saved its last epoch" in output
    time.sleep(2)
    assert trainings_in(repo) == []  # no training left behind, holding a DVC lock
    saved = {name: torch.load(path, weights_only=False)["state"]["epoch"] for name, path in zip(RUNS, resume)}
    assert all(0 < epoch < 60 for epoch in saved.values())

    finished = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True, timeout=600)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    for name in RUNS:
        log = (repo / sweep.LOG_DIR / f"{name}.log").read_text()
        assert f"resuming after epoch {saved[name]}/" in log

"""Resumable training through the stage scripts: kills, SIGTERM, stale or corrupt resume state, determinism,
a diverged run, and resume files that cannot be used.

The stage scripts run in subprocesses, in a temporary copy of the project, on a tiny generated archive: a
ResNet-8 (n=1), 4 epochs of 128 train images in batches of 16 (8 steps per epoch). Each work folder holds the
run's settings file, written as check-params writes it.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from archives import make_cifar_archive
from checkout import ROOT, copy_code

from cifarlab.analysis.replicates import write_aggregates
from cifarlab.report.document import write_report
from cifarlab.report.inputs import load_metrics
from cifarlab.report.plots import write_quantile_figures
from cifarlab.report.tables import metrics_table
from cifarlab.study.publish import write_settings
from cifarlab.study.resolve import load_study
from cifarlab.tools.results import resumed_after
from cifarlab.train.resume import load_resume_state, rng_states, set_rng_states

RUN = "bn-128"
EPOCHS = 4
POLL_TIMEOUT_S = 300  # a safety net against a hung child, not a timing assertion
# every DVCLive curve whose values are a pure function of the run (timings are not)
DETERMINISTIC_CURVES = ("train/loss", "train/error", "val/loss", "val/error", "lr",
                        "features/q01", "features/q20", "features/q80", "features/q99")


class Project:
    """A copy of the project's code with a split made once; each test writes under its own folder."""

    def __init__(self, root: Path, params: dict) -> None:
        self.root = root
        self.params = params  # the tiny params of the split and of every work folder unless it has its own
        self.split = root / "data" / "split"

    def env(self) -> dict[str, str]:
        return {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "1",
                "PYTHONPATH": str(self.root / "src"), "OMP_NUM_THREADS": "1"}

    def workdir(self, name: str, params: dict | None = None) -> Path:
        """A folder holding the settings file of every run of `params` (the project's unless given), from
        which the stages run."""
        cwd = self.root / "work" / name
        cwd.mkdir(parents=True)
        write_settings(load_study(params or self.params), cwd / "runs", cwd / "study.json", root=ROOT)
        return cwd

    def train_cmd(self, cwd: Path, run: str = RUN) -> list[str]:
        return [sys.executable, str(self.root / "stages" / "train.py"), str(cwd / "runs" / f"{run}.json"),
                "--split", str(self.split), "--model", str(cwd / "model.pt"), "--live", str(cwd / "live"),
                "--checkpoint", str(cwd / "resume.pt")]

    def evaluate_cmd(self, cwd: Path, run: str = RUN) -> list[str]:
        return [sys.executable, str(self.root / "stages" / "evaluate.py"), str(cwd / "runs" / f"{run}.json"),
                "--split", str(self.split), "--model", str(cwd / "model.pt"), "--metrics", str(cwd / "metrics.json"),
                "--headline", str(cwd / "headline.json"), "--predictions", str(cwd / "predictions.csv"),
                "--confusion", str(cwd / "confusion.csv"), "--weights", str(cwd / "weights.csv")]

    def run(self, cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
        result = subprocess.run(cmd, cwd=cwd, env=self.env(), capture_output=True, text=True)
        assert result.returncode == 0, f"{cmd} exited {result.returncode}\n{result.stdout}\n{result.stderr}"
        return result

    def start(self, cmd: list[str], cwd: Path) -> subprocess.Popen:
        # output goes to files, so a child never blocks on a full pipe while the test polls
        with open(cwd / "stdout.txt", "w") as out, open(cwd / "stderr.txt", "w") as err:
            return subprocess.Popen(cmd, cwd=cwd, env=self.env(), text=True, stdout=out, stderr=err)


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_params) -> Project:
    root = copy_code(tmp_path_factory.mktemp("resume"))
    archive = make_cifar_archive(root / "cifar.tar.gz", per_batch=32, test_size=20)  # 128 train, 32 val
    params = tiny_params(archive, {RUN: {"study": "norm", "norm": "bn", "batch_size": 16}}, epochs=EPOCHS)
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))  # the split stage reads its keys
    proj = Project(root, params)
    proj.run([sys.executable, str(root / "stages" / "split.py"), str(archive), str(proj.split)], root)
    return proj


@pytest.fixture(scope="module")
def straight(project: Project) -> tuple[Path, Path]:
    """Two uninterrupted train+evaluate runs of the same params, side by side (two cores)."""
    dirs = (project.workdir("straight-a"), project.workdir("straight-b"))
    for make_cmd in (project.train_cmd, project.evaluate_cmd):
        procs = [project.start(make_cmd(cwd), cwd) for cwd in dirs]
        for cwd, proc in zip(dirs, procs):
            assert proc.wait() == 0, (cwd / "stdout.txt").read_text() + (cwd / "stderr.txt").read_text()
    return dirs


def saved_epoch(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=False)["state"]


def wait_for_epoch(proc: subprocess.Popen, resume: Path, epoch: int) -> int:
    """Poll the resume state until it records `epoch` completed epochs; return the epoch seen."""
    deadline = time.monotonic() + POLL_TIMEOUT_S
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"train.py exited ({proc.returncode}) before epoch {epoch} was saved"
        if resume.exists():
            seen = saved_epoch(resume)["epoch"]  # written atomically, so always a whole file
            if seen >= epoch:
                return seen
        time.sleep(0.02)
    proc.kill()
    raise AssertionError(f"no epoch {epoch} in {resume} after {POLL_TIMEOUT_S}s")


def model_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model_state"]


def last_weights(resume: Path) -> dict[str, torch.Tensor]:
    """The weights after the last epoch (the best model may be an earlier epoch's)."""
    return torch.load(resume, map_location="cpu", weights_only=False)["model"]


def assert_same_weights(a: Path, b: Path, load=model_weights) -> None:
    wa, wb = load(a), load(b)
    assert wa.keys() == wb.keys()
    unequal = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert unequal == []


def read_tsv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def curve(live: Path, name: str) -> list[tuple[int, float]]:
    rows = read_tsv(live / "plots" / "metrics" / f"{name}.tsv")
    column = name.split("/")[-1]
    return [(int(r["step"]), float(r[column])) for r in rows]


# --- 1. SIGKILL mid-run, then resume -----------------------------------------------------------


@pytest.mark.slow
def test_a_killed_run_resumes_to_the_same_metrics_weights_and_gapless_curves(project, straight):
    cwd = project.workdir("killed")
    proc = project.start(project.train_cmd(cwd), cwd)
    wait_for_epoch(proc, cwd / "resume.pt", 2)
    proc.kill()  # SIGKILL: no handler runs, only what was already on disk survives
    proc.wait()
    state = saved_epoch(cwd / "resume.pt")
    assert state["status"] == "running" and 2 <= state["epoch"] < EPOCHS, "the kill came too late to test resuming"
    assert not (cwd / "model.pt").exists()

    resumed = project.run(project.train_cmd(cwd), cwd)
    assert f"resuming after epoch {state['epoch']}/{EPOCHS}" in resumed.stdout
    assert resumed_after(resumed.stdout, RUN) == [state["epoch"]]  # as a results bundle records it
    assert "epoch 1/" not in resumed.stdout  # epochs already saved are not trained again
    project.run(project.evaluate_cmd(cwd), cwd)

    reference = straight[0]
    assert (cwd / "metrics.json").read_bytes() == (reference / "metrics.json").read_bytes()
    assert_same_weights(cwd / "model.pt", reference / "model.pt")
    # The best epoch may come before the kill; the last epoch's weights show a resume that lost the
    # optimizer's momentum or the RNG state.
    assert_same_weights(cwd / "resume.pt", reference / "resume.pt", load=last_weights)
    # The killed process had logged epochs 1..k already: appending to them gives 1, 2, 1, 2, 3, 4, and
    # logging only the epochs of the second process gives a gap (3, 4).
    tsvs = sorted((cwd / "live" / "plots" / "metrics").rglob("*.tsv"))
    assert tsvs, "no DVCLive curves written"
    for tsv in tsvs:
        steps = [int(r["step"]) for r in read_tsv(tsv)]
        assert steps == list(range(1, EPOCHS + 1)), f"{tsv.relative_to(cwd)}: steps {steps}"
    # the resumed curves are the uninterrupted run's, value for value (rebuilt from the saved history)
    for name in DETERMINISTIC_CURVES:
        assert curve(cwd / "live", name) == curve(reference / "live", name), name


# --- 2. SIGTERM: one line, exit 130, then resume -----------------------------------------------


@pytest.mark.slow
def test_sigterm_stops_with_one_line_naming_the_saved_epoch_and_the_rerun_resumes(project, straight):
    cwd = project.workdir("terminated")
    proc = project.start(project.train_cmd(cwd), cwd)
    wait_for_epoch(proc, cwd / "resume.pt", 1)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait() == 130
    state = saved_epoch(cwd / "resume.pt")
    assert state["status"] == "running", "SIGTERM came too late to test resuming"
    stderr = (cwd / "stderr.txt").read_text()
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("interrupted:"), stderr
    assert f"after epoch {state['epoch']} " in lines[0]  # the epoch the resume file really holds

    resumed = project.run(project.train_cmd(cwd), cwd)
    assert f"resuming after epoch {state['epoch']}/{EPOCHS}" in resumed.stdout
    assert f"epoch {EPOCHS}/{EPOCHS}" in resumed.stdout and "completed" in resumed.stdout
    assert_same_weights(cwd / "model.pt", straight[0] / "model.pt")
    assert_same_weights(cwd / "resume.pt", straight[0] / "resume.pt", load=last_weights)


# --- 3. stale or corrupt resume state is not reused --------------------------------------------


@pytest.mark.slow
def test_resume_state_of_another_lr_is_not_reused(project, straight):
    params = copy.deepcopy(project.params)
    params["runs"][RUN]["lr"] = 0.05
    cwd = project.workdir("other-lr", params)
    shutil.copy(straight[0] / "resume.pt", cwd / "resume.pt")  # a completed run of lr 0.1
    result = project.run(project.train_cmd(cwd), cwd)
    # Reused, the completed state would print no epoch at all (and an unfinished one "resuming").
    for epoch in range(1, EPOCHS + 1):
        assert f"epoch {epoch}/{EPOCHS}" in result.stdout
    assert "resuming" not in result.stdout
    assert "afresh" in result.stdout  # and it says why
    assert saved_epoch(cwd / "resume.pt")["epoch"] == EPOCHS


@pytest.mark.slow
def test_a_rerun_of_a_finished_run_trains_it_again_and_says_so(project, straight):
    # What `dvc repro -f -s train@<run>` does: the finished run's resume state is still on disk.
    cwd = project.workdir("forced")
    shutil.copy(straight[0] / "resume.pt", cwd / "resume.pt")
    result = project.run(project.train_cmd(cwd), cwd)
    assert f"{RUN}: {cwd / 'resume.pt'} holds this run finished and delivered (completed after epoch {EPOCHS}); " \
           "training it again from the start" in result.stdout
    for epoch in range(1, EPOCHS + 1):
        assert f"epoch {epoch}/{EPOCHS}" in result.stdout
    assert_same_weights(cwd / "model.pt", straight[0] / "model.pt")


@pytest.mark.slow
def test_a_run_finished_but_stopped_before_its_outputs_were_saved_saves_them_without_training(project, straight):
    # What an interrupt between the last epoch's state and the model file leaves behind.
    cwd = project.workdir("undelivered")
    saved = torch.load(straight[0] / "resume.pt", map_location="cpu", weights_only=False)
    assert saved["state"]["delivered"] is True  # the uninterrupted run marked its state after saving
    saved["state"]["delivered"] = False
    torch.save(saved, cwd / "resume.pt")
    result = project.run(project.train_cmd(cwd), cwd)
    assert "holds this run finished; saving its outputs without training" in result.stdout
    assert "epoch 1/" not in result.stdout
    assert_same_weights(cwd / "model.pt", straight[0] / "model.pt")
    assert curve(cwd / "live", "val/error") == curve(straight[0] / "live", "val/error")


def test_the_start_line_says_what_the_run_does_and_what_the_profile_overrode(project):
    params = copy.deepcopy(project.params)
    params["runs"][RUN]["epochs"] = 50  # the quick profile trains EPOCHS whatever the run says
    cwd = project.workdir("start-line", params)
    first = project.run(project.train_cmd(cwd), cwd).stdout.splitlines()[0]
    assert first.startswith(f"{RUN}: ResNet-8")
    for part in ("norm bn", "on cpu (", "128 train and 32 val images", "8 steps of 16 per epoch",
                 f"{EPOCHS} epochs", "sgd lr 0.0125 (0.1 x 16/128, linear scaling)",
                 f"profile quick overrides epochs 50 (runs.{RUN}) -> {EPOCHS}"):
        assert part in first, first
    recorded = json.loads((cwd / "live" / "run.json").read_text())
    assert recorded["run"]["profile_overrides"] == [
        {"key": "epochs", "own": 50, "set_by": f"runs.{RUN}", "value": EPOCHS}]
    assert recorded["data"]["train_images"] == 128 and recorded["data"]["val_images"] == 32


@pytest.mark.slow
def test_a_truncated_resume_file_starts_the_run_afresh(project, straight):
    cwd = project.workdir("truncated")
    data = (straight[0] / "resume.pt").read_bytes()
    (cwd / "resume.pt").write_bytes(data[: len(data) // 2])
    result = project.run(project.train_cmd(cwd), cwd)
    assert f"epoch 1/{EPOCHS}" in result.stdout and "resuming" not in result.stdout
    assert "afresh" in result.stdout  # and it says why
    assert_same_weights(cwd / "model.pt", straight[0] / "model.pt")  # a full fresh run of the same params


@pytest.mark.parametrize("content", [
    pytest.param(b"", id="empty"),
    pytest.param(b"PK\x03\x04 not really a zip", id="garbage"),
    pytest.param(None, id="dict-without-fingerprint"),
])
def test_an_unusable_resume_file_is_ignored(tmp_path, content):
    path = tmp_path / "resume.pt"
    if content is None:
        torch.save({"state": {"epoch": 3}}, path)
    else:
        path.write_bytes(content)
    assert load_resume_state(path, "fingerprint-of-this-run") is None


def test_a_resume_file_that_is_not_a_dict_is_ignored(tmp_path):
    path = tmp_path / "resume.pt"
    torch.save(torch.zeros(3), path)  # a readable torch file, but not a resume state
    assert load_resume_state(path, "fingerprint-of-this-run") is None


# --- 4. determinism ----------------------------------------------------------------------------


@pytest.mark.slow
def test_two_uninterrupted_runs_give_byte_identical_metrics_and_predictions(straight):
    a, b = straight
    assert json.loads((a / "metrics.json").read_text())["epochs_run"] == EPOCHS
    assert (a / "metrics.json").read_bytes() == (b / "metrics.json").read_bytes()
    assert (a / "predictions.csv").read_bytes() == (b / "predictions.csv").read_bytes()
    assert_same_weights(a / "model.pt", b / "model.pt")


# --- 5. divergence -----------------------------------------------------------------------------


@pytest.mark.slow
def test_the_stages_evaluate_and_report_a_diverged_run(project):
    params = copy.deepcopy(project.params)
    params["runs"] = {"boom": {"study": "norm", "norm": "bn", "batch_size": 16, "lr": 1.0e6, "warmup_epochs": 0}}
    cwd = project.workdir("diverged", params)
    trained = project.run(project.train_cmd(cwd, "boom"), cwd)
    assert "diverged" in trained.stdout
    evaluated = project.run(project.evaluate_cmd(cwd, "boom"), cwd)
    assert "(diverged)" in evaluated.stdout
    metrics = json.loads((cwd / "metrics.json").read_text())
    assert metrics["status"] == "diverged"
    assert metrics["epochs_run"] < EPOCHS
    assert metrics["stopped_reason"] == f"non-finite loss at epoch {metrics['epochs_run']}"
    for split in ("train", "val", "test"):
        assert 0.0 <= metrics[split]["accuracy"] <= 1.0
    # the report reads the metrics file and the curves the stages wrote
    (cwd / "metrics").mkdir()
    shutil.copy(cwd / "metrics.json", cwd / "metrics" / "boom.json")
    (cwd / "live-root").mkdir()
    shutil.copytree(cwd / "live", cwd / "live-root" / "boom")
    shown = f"**diverged** (non-finite loss at epoch {metrics['epochs_run']})"
    assert shown in metrics_table(load_metrics(cwd / "metrics", cwd / "live-root", ["boom"]))
    write_quantile_figures({"norm": ["boom"]}, cwd / "live-root", cwd / "quantiles")
    (cwd / "confusion").mkdir()
    shutil.copy(cwd / "confusion.csv", cwd / "confusion" / "boom.csv")
    (cwd / "predictions").mkdir()
    shutil.copy(cwd / "predictions.csv", cwd / "predictions" / "boom.csv")
    write_aggregates({"boom": ["boom"]}, {"boom": 0}, cwd / "metrics", cwd / "aggregates")
    report = write_report(load_study(params), [], metrics_dir=cwd / "metrics", aggregates_dir=cwd / "aggregates",
                          live_root=cwd / "live-root", quantile_dir=cwd / "quantiles", weights_dir=cwd,
                          confusion_dir=cwd / "confusion", predictions_dir=cwd / "predictions",
                          out_dir=cwd / "report").read_text()
    assert shown in report and "diverged: `boom`" in report


# --- 6. the RNG state: the training device's generator only -----------------------------------------------


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), float(torch.rand(()))


@pytest.fixture
def gpu_host(monkeypatch) -> list[tuple]:
    """A host with CUDA, where any use of CUDA's generators is recorded (as (function, device)) and reading
    every GPU's state, as older code did, fails."""
    calls: list[tuple] = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)

    def get_rng_state(device="cuda"):
        calls.append(("get", torch.device(device)))
        return torch.full((16,), 7, dtype=torch.uint8)

    def set_rng_state(state, device="cuda"):
        calls.append(("set", torch.device(device), state.tolist()))

    def every_gpu(*args):
        raise AssertionError("the state of every visible GPU was read or written")

    monkeypatch.setattr(torch.cuda, "get_rng_state", get_rng_state)
    monkeypatch.setattr(torch.cuda, "set_rng_state", set_rng_state)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", every_gpu)
    monkeypatch.setattr(torch.cuda, "set_rng_state_all", every_gpu)
    return calls


def test_a_cpu_run_on_a_gpu_host_saves_and_restores_its_generators_without_touching_cuda(gpu_host):
    cpu = torch.device("cpu")
    states = rng_states(cpu)
    assert "cuda" not in states
    expected = _draws()
    set_rng_states(states, cpu)
    assert _draws() == expected
    set_rng_states({**states, "cuda": torch.zeros(16, dtype=torch.uint8)}, cpu)  # saved on a GPU, resumed on a CPU
    assert gpu_host == []


def test_a_cuda_run_saves_its_own_gpus_generator_and_restores_it_on_whichever_gpu_it_resumes(gpu_host):
    states = rng_states(torch.device("cuda:5"))  # one of eight visible GPUs
    assert gpu_host == [("get", torch.device("cuda:5"))]
    assert torch.equal(states["cuda"], torch.full((16,), 7, dtype=torch.uint8))
    gpu_host.clear()
    set_rng_states(states, torch.device("cuda:0"))  # resumed where the process sees one GPU
    assert gpu_host == [("set", torch.device("cuda:0"), [7] * 16)]


def test_an_older_resume_files_list_of_every_gpus_state_is_skipped(gpu_host):
    states = {**rng_states(torch.device("cpu")), "cuda": [torch.zeros(16, dtype=torch.uint8)] * 8}
    expected = _draws()
    set_rng_states(states, torch.device("cuda:0"))
    assert _draws() == expected  # the host generators are restored all the same
    assert gpu_host == []

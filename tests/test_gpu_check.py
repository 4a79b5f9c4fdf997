"""benchmarks/gpu_check.py: its rehearsal on the CPU fills every section of the results file with figures,
runs per GPU are measured through the sweep and, without Ray, as train processes started together, a check
stopped by SIGTERM keeps what it measured, and a child process that outlives its time box is stopped.

The rehearsal is the check's own code with tiny sizes, so that the check cannot rot between the rare
visits to a GPU.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from checkout import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import gpu_check  # the script as a module, found through the line above

pytestmark = pytest.mark.slow
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"
NUMBER = re.compile(r"^\d[\d,]*(\.\d+)?$")


def check_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "1"}


def sections(text: str) -> dict[str, str]:
    """The results file's sections by title."""
    parts = re.split(r"^## ", text, flags=re.MULTILINE)[1:]
    return {part.splitlines()[0]: part for part in parts}


def status(section: str) -> str:
    return re.search(r"^status: (.*)$", section, flags=re.MULTILINE).group(1)


def table(section: str) -> list[dict[str, str]]:
    """The section's table rows, by column name."""
    lines = [line for line in section.splitlines() if line.startswith("|")]
    if not lines:
        return []
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    return [dict(zip(header, (cell.strip() for cell in line.strip("|").split("|")))) for line in lines[2:]]


def is_number(cell: str) -> bool:
    return bool(NUMBER.match(cell))


def sweep_can_run() -> bool:
    return all(importlib.util.find_spec(name) for name in ("ray", "dvc")) and shutil.which("git") is not None


def rehearse(work: Path, *options: str) -> dict[str, str]:
    """The results file of a rehearsal with `options`, by section; its work folder is `work`/work."""
    out = work / "results.md"
    result = subprocess.run([sys.executable, str(SCRIPT), "--rehearsal", *options, "--workdir", str(work / "work"),
                             "--out", str(out)], env=check_env(), capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return sections(out.read_text())


@pytest.fixture(scope="module")
def rehearsal_work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gpu-check")


@pytest.fixture(scope="module")
def rehearsal(rehearsal_work) -> dict[str, str]:
    """The rehearsal's results file, by section."""
    return rehearse(rehearsal_work)


@pytest.fixture(scope="module")
def without_ray(rehearsal, rehearsal_work, tmp_path_factory) -> tuple[dict[str, str], Path]:
    """A results file whose part 5 measured runs per GPU without Ray, by section, and the check's work folder:
    the rehearsal's own where the sweep cannot run here, else a rehearsal of part 5 alone with
    --sweep-without-ray."""
    if not sweep_can_run():
        return rehearsal, rehearsal_work / "work"
    work = tmp_path_factory.mktemp("gpu-check-without-ray")
    return rehearse(work, "--parts", "sweep", "--sweep-without-ray"), work / "work"


def test_the_rehearsal_writes_every_part_and_the_goals(rehearsal):
    assert set(rehearsal) == {*gpu_check.TITLES.values(), "Against the goals of the issue"}


def test_the_tests_part_gives_pytests_summary(rehearsal):
    section = rehearsal[gpu_check.TITLES["tests"]]
    assert status(section).startswith("done")
    (row,) = table(section)
    assert re.search(r"\d+ (skipped|deselected|passed)", row["summary"])


def test_throughput_measures_each_norm_and_batch_eager_and_compiled(rehearsal):
    section = rehearsal[gpu_check.TITLES["throughput"]]
    assert status(section).startswith("done")
    rows = table(section)
    measured = {(row["norm"], int(row["batch"]), row["step"]) for row in rows}
    sizes = gpu_check.REHEARSAL
    assert {(norm, batch, "eager") for norm in gpu_check.NORMS for batch in sizes.batches} <= measured
    assert {(norm, batch, sizes.compile_modes[batch]) for norm, batch in sizes.compile_priority} <= measured
    for row in rows:
        for path in ("(a) ours img/s", "(b) usual img/s", "(b') usual loader img/s", "(c) model img/s"):
            assert is_number(row[path]) and float(row[path].replace(",", "")) > 0, row


def test_every_network_and_batch_of_the_study_has_a_measured_rate(rehearsal):
    assert status(rehearsal[gpu_check.TITLES["rates"]]).startswith("done")
    assert all(is_number(row["(a) ours img/s"]) for row in table(rehearsal[gpu_check.TITLES["rates"]]))
    projected = table(rehearsal[gpu_check.TITLES["projection"]])
    assert projected and {row["rate from"] for row in projected} <= {"part 2", "part 3"}


def test_both_full_length_runs_train_through_the_stage(rehearsal):
    section = rehearsal[gpu_check.TITLES["train"]]
    assert status(section) == "done"
    rows = {row["run"]: row for row in table(section)}
    assert set(rows) == set(gpu_check.FULL_RUNS)
    epochs = gpu_check.REHEARSAL.train_profile["train"]["epochs"]
    for row in rows.values():
        assert row["epochs trained"] == f"{epochs} of {epochs}" and row["how"] == "measured"
        assert is_number(row["stage s"]) and is_number(row["train img/s (median epoch)"])


def test_the_sweep_runs_each_k(rehearsal):
    if not sweep_can_run():
        pytest.skip("the sweep needs Ray, DVC and git; the check measured K without them (the test below)")
    section = rehearsal[gpu_check.TITLES["sweep"]]
    assert status(section) == "done", status(section)
    rows = {int(row["K"]): row for row in table(section)}
    assert set(rows) == set(gpu_check.REHEARSAL.sweep_k)
    runs = len(gpu_check.REHEARSAL.sweep_runs)
    for row in rows.values():
        assert row["runs done"] == f"{runs} of {runs}"
        assert is_number(row["aggregate img/s"]) and is_number(row["x K=1"])


def test_without_ray_each_k_trains_every_run_in_waves_of_k_processes(without_ray):
    results, work = without_ray
    section = results[gpu_check.TITLES["sweep"]]
    assert status(section).startswith("done without Ray"), status(section)
    assert "K train processes at once on one GPU, no Ray: the sweep's placement without its scheduler" in section
    sizes = gpu_check.REHEARSAL
    rows = {int(row["K"]): row for row in table(section)}
    assert set(rows) == set(sizes.sweep_k)
    runs = len(sizes.sweep_runs)
    for k, row in rows.items():
        assert row["runs done"] == f"{runs} of {runs}" and row["status"] == "done"
        assert is_number(row["aggregate img/s"]) and is_number(row["x K=1"])
        for run in sizes.sweep_runs:  # every K trained every run from scratch, in a folder of its own
            live = work / "runs-per-gpu" / f"k{k}" / "plots" / "live" / run
            assert len(gpu_check.live_column(live, "epoch_time_s")) == sizes.sweep_epochs, (k, run)
    assert rows[1]["x K=1"] == "1.00"
    goals = results["Against the goals of the issue"]
    assert re.search(rf"K = {max(sizes.sweep_k)} runs per GPU .*measured without Ray.*: [\d.]+x: (met|not met)", goals)


def test_jobs_run_together_start_at_once(tmp_path):
    # Each job waits until both have started: run one after the other, the first would wait out the box.
    barrier = ("import pathlib, sys, time\nhere = pathlib.Path(sys.argv[1])\n(here / sys.argv[2]).touch()\n"
               "while len(list(here.glob('started-*'))) < 2:\n    time.sleep(0.05)\nprint('both started')")
    jobs = [([sys.executable, "-c", barrier, str(tmp_path), f"started-{index}"], dict(os.environ),
             tmp_path / f"job-{index}.log") for index in range(2)]
    done = gpu_check.run_together(jobs, tmp_path, 120, grace_s=10)
    assert [(d.returncode, d.timed_out) for d in done] == [(0, False), (0, False)]
    assert all("both started" in (tmp_path / f"job-{index}.log").read_text() for index in range(2))


def test_jobs_run_together_past_their_box_are_stopped_and_the_others_kept(tmp_path):
    jobs = [([sys.executable, "-c", "print('quick')"], dict(os.environ), tmp_path / "quick.log"),
            ([sys.executable, "-c", "import time; time.sleep(600)"], dict(os.environ), tmp_path / "slow.log")]
    quick, slow = gpu_check.run_together(jobs, tmp_path, 5, grace_s=10)
    assert (quick.returncode, quick.timed_out) == (0, False) and "quick" in (tmp_path / "quick.log").read_text()
    assert slow.timed_out and slow.returncode != 0


def test_the_projection_covers_every_run_of_the_default_study(rehearsal):
    section = rehearsal[gpu_check.TITLES["projection"]]
    assert status(section) == "done"
    rows = table(section)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert [row["run"] for row in rows] == list(params["runs"])
    assert all(is_number(row["eager min"]) for row in rows)
    assert re.search(r"\*\*Serial .*: [\d,.]+ min eager", section)


def test_a_check_stopped_by_sigterm_keeps_what_it_measured(tmp_path):
    out = tmp_path / "results.md"
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--rehearsal", "--parts", "throughput,projection",
                             "--workdir", str(tmp_path / "work"), "--out", str(out)], env=check_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and table(sections(out.read_text())[gpu_check.TITLES["throughput"]]):
                break  # one measurement written
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, output
    written = sections(out.read_text())
    throughput = written[gpu_check.TITLES["throughput"]]
    assert status(throughput).startswith("stopped early") and table(throughput)
    # The projection, never reached, is made from the rates measured before the stop.
    assert "before the check stopped" in status(written[gpu_check.TITLES["projection"]])
    assert status(written[gpu_check.TITLES["tests"]]).startswith("not run")


def test_a_child_past_its_time_box_is_stopped(tmp_path):
    log = tmp_path / "child.log"
    done = gpu_check.run_boxed([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(600)"],
                               tmp_path, dict(os.environ), 2, log, grace_s=10)
    assert done.timed_out and done.returncode != 0
    assert "started" in log.read_text()

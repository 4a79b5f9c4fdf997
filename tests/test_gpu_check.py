"""benchmarks/gpu_check.py: its rehearsal on the CPU fills every section of the results file with figures
(or, for the sweep without Ray, a reason), a check stopped by SIGTERM keeps what it measured, and a child
process that outlives its time box is stopped.

The rehearsal is the check's own code with tiny sizes, so that the check cannot rot between the rare
visits to a GPU.
"""

from __future__ import annotations

import importlib.util
import os
import re
import signal
import subprocess
import sys
import time

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


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory) -> dict[str, str]:
    """The rehearsal's results file, by section."""
    work = tmp_path_factory.mktemp("gpu-check")
    out = work / "results.md"
    result = subprocess.run([sys.executable, str(SCRIPT), "--rehearsal", "--workdir", str(work / "work"),
                             "--out", str(out)], env=check_env(), capture_output=True, text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return sections(out.read_text())


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


def test_the_sweep_runs_each_k_or_says_what_is_missing(rehearsal):
    section = rehearsal[gpu_check.TITLES["sweep"]]
    missing = [name for name in ("ray", "dvc") if importlib.util.find_spec(name) is None]
    if missing:
        assert status(section).startswith("skipped:") and "not installed" in status(section)
        return
    assert status(section) == "done", status(section)
    rows = {int(row["K"]): row for row in table(section)}
    assert set(rows) == set(gpu_check.REHEARSAL.sweep_k)
    runs = len(gpu_check.REHEARSAL.sweep_runs)
    for row in rows.values():
        assert row["runs done"] == f"{runs} of {runs}"
        assert is_number(row["aggregate img/s"]) and is_number(row["x K=1"])


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

"""benchmarks/gpu_check: its rehearsal on the CPU runs every part in the GPU's order and fills each with
figures; a box that ends inside a compile stops that measurement, leaves no compile worker and the part goes
on; the gpu tests collect without the packages a GPU node lacks; runs per GPU are steady-state rates of
overlapping runs; the projection adds compile time; the check measures with the train stage's torch
settings, reads its commit from a file, refuses an old DVCLive before any part, keeps what it measured when
stopped, and stops a child past its box.

The rehearsal is the check's own code with tiny sizes, so that the check cannot rot between the rare
visits to a GPU.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from checkout import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))
import throughput  # the line above finds it
from gpu_check import boxes, children, cli, machine, paths, runs_per_gpu
from gpu_check.check import Check
from gpu_check.project import default_study, live_column, network
from gpu_check.projection import project_run
from gpu_check.results import GOALS_TITLE
from gpu_check.sizes import FULL_RUNS, GPU, K_RUN, NORMS, PARTS, REHEARSAL, TITLES
from gpu_check.watch import Epoch, steady_rate

PACKAGE = ROOT / "benchmarks" / "gpu_check"
NUMBER = re.compile(r"^\d[\d,]*(\.\d+)?$")
COMMIT = "0123456789ab with uncommitted changes"


def check_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "1"}


def sections(text: str) -> dict[str, str]:
    """The results file's sections by title, in the file's order."""
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


def value(cell: str) -> float:
    assert NUMBER.match(cell), cell
    return float(cell.replace(",", ""))


@pytest.fixture(scope="module")
def rehearsal_work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("gpu-check")


@pytest.fixture(scope="module")
def rehearsal_text(rehearsal_work) -> str:
    """The rehearsal's results file; its work folder is rehearsal_work/work, kept."""
    out, commit = rehearsal_work / "results.md", rehearsal_work / "commit.txt"
    commit.write_text(f"{COMMIT}\n")
    result = subprocess.run([sys.executable, str(PACKAGE), "--rehearsal", "--workdir", str(rehearsal_work / "work"),
                             "--out", str(out), "--commit-file", str(commit)], env=check_env(), capture_output=True,
                            text=True, timeout=900, check=False)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return out.read_text()


@pytest.fixture(scope="module")
def rehearsal(rehearsal_text) -> dict[str, str]:
    """The rehearsal's results file, by section."""
    return sections(rehearsal_text)


@pytest.mark.slow
def test_the_rehearsal_writes_every_part_in_the_gpus_order_then_the_goals(rehearsal):
    assert list(rehearsal) == [*(TITLES[part] for part in PARTS), GOALS_TITLE]


@pytest.mark.slow
def test_the_gpu_tests_collect_and_run_without_the_packages_a_gpu_node_lacks(rehearsal):
    assert "vl_convert" in REHEARSAL.hidden_packages
    section = rehearsal[TITLES["tests"]]
    (row,) = table(section)
    assert status(section).startswith("done"), row["summary"]
    assert re.search(r"\d+ skipped", row["summary"]) and "error" not in row["summary"]


@pytest.mark.slow
def test_the_preflight_compiles_the_bf16_step_into_one_graph_without_a_break(rehearsal):
    section = rehearsal[TITLES["preflight"]]
    assert status(section).startswith("done: one graph")
    rows = table(section)
    assert [(row["norm"], int(row["batch"])) for row in rows] == list(REHEARSAL.preflight)
    assert all((row["graphs"], row["graph breaks"], row["CUDA-graph skips"]) == ("1", "0", "0") for row in rows)


@pytest.mark.slow
def test_throughput_measures_batch_8_eager_then_compiled_before_batch_128(rehearsal):
    rows = table(rehearsal[TITLES["throughput"]])
    order = [(row["norm"], int(row["batch"]), row["step"]) for row in rows]
    assert order == paths.plan(REHEARSAL)
    assert order[:len(NORMS)] == [(norm, 8, "eager") for norm in NORMS]
    assert {batch for _, batch, _ in order[:len(NORMS) + len(REHEARSAL.compiled_norms[8])]} == {8}
    stalled = (REHEARSAL.stall.norm, REHEARSAL.stall.batch, REHEARSAL.compile_modes[REHEARSAL.stall.batch])
    for row, (norm, batch, step) in zip(rows, order):
        if (norm, batch, step) == stalled:
            continue
        measured = ["(a) ours img/s", "(b') usual loader img/s", "(c) model img/s"]
        assert all(value(row[path]) > 0 for path in measured + (["(b) usual img/s"] if step == "eager" else [])), row
        assert row["graphs / breaks / CUDA-graph skips"] == ("" if step == "eager" else "1 / 0 / 0"), row


@pytest.mark.slow
def test_a_box_that_ends_inside_a_compile_stops_that_measurement_with_no_worker_left_and_the_part_goes_on(
        rehearsal):
    section = rehearsal[TITLES["throughput"]]
    assert status(section).startswith("done"), status(section)
    rows = table(section)
    stall = REHEARSAL.stall
    (index,) = [i for i, row in enumerate(rows) if (row["norm"], int(row["batch"])) == (stall.norm, stall.batch)
                and row["step"] != "eager"]
    assert rows[index]["note"] == (f"stopped at its {stall.box_s:.0f} s box while compiling; compile workers left "
                                   "after the stop: 0")
    assert rows[index + 1:] and all(NUMBER.match(row["(a) ours img/s"]) for row in rows[index + 1:])


def test_a_time_box_ending_inside_torch_compile_raises_its_own_timeout():
    def stalled_backend(gm, example_inputs):
        time.sleep(30)

    # Dynamo imports much of inductor on a first compile; a box ending inside those imports would leave a
    # module half-registered for every later compile in this process, so they happen before the box.
    torch.compile(lambda x: x + 1, backend=lambda gm, example_inputs: gm.forward)(torch.ones(1))
    torch._dynamo.reset()
    try:
        with pytest.raises(boxes.PartTimeout), boxes.time_box(0.5):
            torch.compile(lambda x: x.sin() + 1, backend=stalled_backend)(torch.ones(3))
    finally:
        torch._dynamo.reset()


def test_an_inner_time_box_ends_first_and_the_enclosing_one_still_ends_on_time():
    started = time.monotonic()
    with pytest.raises(boxes.PartTimeout), boxes.time_box(0.6) as outer_end:
        with pytest.raises(boxes.PartTimeout), boxes.time_box(0.2):
            time.sleep(5)
        assert not boxes.box_ended(outer_end)
        time.sleep(5)
    assert 0.55 < time.monotonic() - started < 2


@pytest.mark.slow
def test_every_network_and_batch_of_the_study_has_a_measured_rate(rehearsal):
    assert status(rehearsal[TITLES["rates"]]).startswith("done")
    assert all(NUMBER.match(row["(a) ours img/s"]) for row in table(rehearsal[TITLES["rates"]]))
    projected = table(rehearsal[TITLES["projection"]])
    assert projected and {row["rate from"] for row in projected} <= {"part 2", "part 5"}


@pytest.mark.slow
def test_both_full_length_runs_train_through_the_stage(rehearsal):
    section = rehearsal[TITLES["train"]]
    assert status(section) == "done"
    rows = {row["run"]: row for row in table(section)}
    assert list(rows) == list(FULL_RUNS)
    epochs = REHEARSAL.train_profile["train"]["epochs"]
    for row in rows.values():
        assert row["epochs trained"] == f"{epochs} of {epochs}" and row["how"] == "measured"
        assert value(row["stage s"]) >= value(row["start-up s"]) > 0 and value(row["train img/s (median epoch)"]) > 0


def test_steady_rate_sums_each_runs_images_per_second_over_its_epochs_inside_the_overlap():
    # Run a's first epoch ends at 10, run b's at 11: the window opens at 11. a's epoch ending at 12 began at 10,
    # before it, so a counts two epochs (200 images in 4 s), b two (200 images in 6 s): 50 + 33.3 images/s.
    a = [Epoch(10, 2), Epoch(12, 2), Epoch(14, 2), Epoch(16, 2)]
    b = [Epoch(11, 3), Epoch(14, 3), Epoch(17, 3), Epoch(20, 3)]
    rate, epochs = steady_rate([a, b], images=100, until=17)  # b's epoch ending at 20 is after the overlap
    assert epochs == 4 and rate == pytest.approx(100 * 2 / 4 + 100 * 2 / 6)
    assert steady_rate([a, [Epoch(16, 3)]], images=100, until=17) == (None, 0)  # b never past its first epoch


def test_each_of_k_runs_gets_its_share_of_the_cpus_for_torch_and_inductors_compile_workers():
    env = runs_per_gpu.thread_env({"PATH": "/bin"}, k=4, cpus=16)
    assert {key: env[key] for key in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCHINDUCTOR_COMPILE_THREADS")} == \
        dict.fromkeys(("OMP_NUM_THREADS", "MKL_NUM_THREADS", "TORCHINDUCTOR_COMPILE_THREADS"), "4")
    assert runs_per_gpu.thread_env({}, k=8, cpus=2)["TORCHINDUCTOR_COMPILE_THREADS"] == "1"


@pytest.mark.slow
def test_runs_per_gpu_are_the_summed_steady_rates_of_k_runs_stopped_once_their_steady_epochs_are_in(
        rehearsal, rehearsal_work):
    section = rehearsal[TITLES["runs-per-gpu"]]
    assert status(section) == "done", status(section)
    rows = {int(row["K"]): row for row in table(section)}
    assert list(rows) == list(REHEARSAL.k_values)
    for k, row in rows.items():
        assert row["status"] == "done" and value(row["steady img/s (sum)"]) > 0
        assert int(row["steady epochs"]) >= k * REHEARSAL.k_min_steady
        names = [K_RUN, *(f"{K_RUN}-r{i}" for i in range(1, k))]
        for name in names:  # K runs of one kind, each in K's own folder
            trained = live_column(rehearsal_work / "work" / "project" / f"k{k}" / "plots" / "live" / name,
                                  "epoch_time_s")
            # Stopped once the steady epochs are in, which on a loaded machine can be the last epoch: how
            # early is a matter of the clock, which a test does not assert.
            assert REHEARSAL.k_min_steady < len(trained) <= REHEARSAL.k_epochs, (k, name)
    assert rows[1]["x K=1"] == "1.00"
    top = max(REHEARSAL.k_values)
    assert re.search(rf"K = {top} runs per GPU >= 4x the steady-state images/s of K = 1.*: [\d.]+x: (met|not met)",
                     rehearsal[GOALS_TITLE])


@pytest.mark.slow
def test_the_projection_covers_every_run_and_takes_each_compile_time_from_part_2(rehearsal):
    section = rehearsal[TITLES["projection"]]
    assert status(section) == "done"
    rows = table(section)
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    assert [row["run"] for row in rows] == list(params["runs"])
    first_steps = {(row["norm"], row["batch"], row["step"]): row["first steps s"]
                   for row in table(rehearsal[TITLES["throughput"]])}
    compiled = [row for row in rows if row["compiled img/s"] != "(eager)"]
    assert compiled
    for row in compiled:  # the compiled warm-up less the eager one
        norm, mode = row["network"].split(", ")[1], REHEARSAL.compile_modes[int(row["batch"])]
        compile_s = value(first_steps[(norm, row["batch"], mode)]) - value(first_steps[(norm, row["batch"], "eager")])
        assert value(row["compile s"]) == pytest.approx(compile_s, abs=0.11)
    assert re.search(r"\*\*Serial .*: [\d,.]+ min eager", section)


def test_a_compiled_run_is_projected_at_its_compiled_rate_plus_its_compile_time_once():
    check = Check(args=None, sizes=GPU, device=torch.device("cpu"), results=None, workdir=Path("."), deadline=0)
    label = network(throughput.resnet14_config("bn"))
    check.step_rates = {(label, 8, "eager"): 1000.0, (label, 8, "reduce-overhead"): 2000.0}
    check.rate_sources = {(label, 8, "eager"): "part 2"}
    check.first_steps_s = {("bn", 8, "eager"): 1.0, ("bn", 8, "reduce-overhead"): 61.0}
    run = default_study().runs["bn-8"]
    images = 40_000 * run.train.epochs
    _, eager, compiled = project_run(check, run, (40_000, 10_000), (0.0, 0.0))
    assert eager == pytest.approx(images / 1000 / 60)
    assert compiled == pytest.approx((images / 2000 + 60) / 60)


@pytest.mark.slow
def test_the_check_measures_with_the_train_stages_cudnn_settings_and_names_the_commit_from_its_file(
        rehearsal_text):
    deterministic = yaml.safe_load((ROOT / "params.yaml").read_text())["performance"]["deterministic"]
    assert f"cuDNN autotuning {'off' if deterministic else 'on'}," in rehearsal_text
    assert f"- checkout: {COMMIT} (from commit.txt);" in rehearsal_text


def test_an_older_dvclive_than_the_project_needs_is_refused_in_one_line_before_any_part(tmp_path, monkeypatch,
                                                                                       capsys):
    needed = re.search(r'"dvclive>=([\d.]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    monkeypatch.setattr(machine, "version_of", lambda name: "0.11.0" if name == "dvclive" else "1.0")
    out = tmp_path / "results.md"
    assert cli.main(["--rehearsal", "--out", str(out), "--workdir", str(tmp_path / "work")]) == 2
    captured = capsys.readouterr()
    assert captured.err.splitlines() == [
        (f"gpu check: DVCLive 0.11.0 is installed, and the train stage needs dvclive>={needed} (pyproject.toml); "
         f"install DVCLive {needed} or later (benchmarks/README.md says how, offline)")]
    assert not out.exists() and not (tmp_path / "work").exists() and captured.out == ""


@pytest.mark.slow
def test_a_check_stopped_by_sigterm_keeps_what_it_measured(tmp_path):
    out = tmp_path / "results.md"
    proc = subprocess.Popen([sys.executable, str(PACKAGE), "--rehearsal", "--parts", "throughput,projection",
                             "--workdir", str(tmp_path / "work"), "--out", str(out)], env=check_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and table(sections(out.read_text())[TITLES["throughput"]]):
                break  # one measurement written
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        output, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, output
    written = sections(out.read_text())
    throughput = written[TITLES["throughput"]]
    assert status(throughput).startswith("stopped early") and table(throughput)
    # The projection, never reached, is made from the rates measured before the stop.
    assert "before the check stopped" in status(written[TITLES["projection"]])
    assert status(written[TITLES["preflight"]]).startswith("not run")


def test_jobs_run_together_start_at_once(tmp_path):
    # Each job waits until both have started: run one after the other, the first would wait out the box.
    barrier = ("import pathlib, sys, time\nhere = pathlib.Path(sys.argv[1])\n(here / sys.argv[2]).touch()\n"
               "while len(list(here.glob('started-*'))) < 2:\n    time.sleep(0.05)\nprint('both started')")
    jobs = [([sys.executable, "-c", barrier, str(tmp_path), f"started-{index}"], dict(os.environ),
             tmp_path / f"job-{index}.log") for index in range(2)]
    done = children.run_together(jobs, tmp_path, 120, grace_s=10)
    assert [(d.returncode, d.timed_out) for d in done] == [(0, False), (0, False)]
    assert all("both started" in (tmp_path / f"job-{index}.log").read_text() for index in range(2))


def test_jobs_run_together_past_their_box_are_stopped_and_the_others_kept(tmp_path):
    jobs = [([sys.executable, "-c", "print('quick')"], dict(os.environ), tmp_path / "quick.log"),
            ([sys.executable, "-c", "import time; time.sleep(600)"], dict(os.environ), tmp_path / "slow.log")]
    quick, slow = children.run_together(jobs, tmp_path, 5, grace_s=10)
    assert (quick.returncode, quick.timed_out) == (0, False) and "quick" in (tmp_path / "quick.log").read_text()
    assert slow.timed_out and slow.returncode != 0


def test_a_child_past_its_time_box_is_stopped(tmp_path):
    log = tmp_path / "child.log"
    done = children.run_boxed([sys.executable, "-c", "import time; print('started', flush=True); time.sleep(600)"],
                              tmp_path, dict(os.environ), 2, log, grace_s=10)
    assert done.timed_out and done.returncode != 0
    assert "started" in log.read_text()

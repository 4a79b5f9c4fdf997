"""Failure paths without training: a full disk, bad params, bad settings files and hostile archives at the
stage entry points, and the split as a pure function of its seed."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import runpy
import signal
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from archives import file_entry, make_cifar_archive
from checkout import ROOT, copy_code

from cifarlab.errors import one_line
from cifarlab.io import atomic_path, write_json, write_text
from cifarlab.study.publish import write_settings
from cifarlab.study.resolve import load_study

TRAIN_OUTPUTS = ["--split", "x", "--model", "y", "--live", "z", "--checkpoint", "w"]
EVALUATE_OUTPUTS = ["--split", "x", "--model", "y", "--metrics", "m", "--headline", "h", "--predictions", "p",
                    "--confusion", "c", "--weights", "v"]
CHECK_PARAMS_OUTPUTS = ["--runs", "runs", "--claims", "claims.yaml", "study.json"]


def stage(name: str, *args: str) -> list[str]:
    return [sys.executable, str(ROOT / "stages" / f"{name}.py"), *args]


def run_in(cwd: Path, cmd: list[str], **extra_env: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_STUDIO_OFFLINE": "1", "PYTHONPATH": str(ROOT / "src"),
           "OMP_NUM_THREADS": "1", **extra_env}
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


def run_many(jobs: list[tuple[Path, list[str]]]) -> list[subprocess.CompletedProcess]:
    """Run independent stage invocations two at a time (the machine has two cores)."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(lambda job: run_in(*job), jobs))


@pytest.fixture
def run_here(monkeypatch, capsys) -> Callable[..., subprocess.CompletedProcess]:
    """`run_here(cwd, name, *args)`: stage script `name` run in this process as `python stages/<name>.py args`
    runs it in `cwd`, from its `__main__` block (torch is imported once, not once per case). A real process
    adds only its exit status and what imports print: a few cases run as one (`run_in`) to show those."""

    def run(cwd: Path, name: str, *args: str) -> subprocess.CompletedProcess:
        script = str(ROOT / "stages" / f"{name}.py")
        capsys.readouterr()
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", [script, *args])
        monkeypatch.setattr(sys, "path", [str(ROOT / "stages"), *sys.path])  # as Python puts the script's folder
        sigterm = signal.getsignal(signal.SIGTERM)  # run_stage turns SIGTERM into an interrupt
        try:
            runpy.run_path(script, run_name="__main__")
            status = 0
        except SystemExit as exit_:  # sys.exit(None) is status 0, sys.exit("message") status 1
            status = 0 if exit_.code is None else exit_.code if isinstance(exit_.code, int) else 1
        finally:
            signal.signal(signal.SIGTERM, sigterm)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess([script, *args], status, out, err)

    return run


def write_params(cwd: Path, params: dict) -> None:
    (cwd / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def assert_one_line_user_error(result: subprocess.CompletedProcess, *names: str) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), result.stderr
    for name in names:
        assert name in lines[0], f"{name!r} not named in: {lines[0]}"
    return lines[0]


# --- 1. disk full ------------------------------------------------------------------------------


def disk_full() -> OSError:
    return OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_inside_atomic_path_leaves_the_old_target_and_no_temporary_file(tmp_path):
    target = tmp_path / "model.pt"
    target.write_text("the previous, complete file\n")
    with pytest.raises(OSError) as info:
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("half of the new")
            raise disk_full()
    assert info.value.errno == errno.ENOSPC  # the error reaches the caller unchanged
    assert target.read_text() == "the previous, complete file\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_disk_full_on_a_new_target_creates_nothing(tmp_path):
    target = tmp_path / "out" / "new.json"
    with pytest.raises(OSError):
        with atomic_path(target) as tmp:
            tmp.write_text("{")
            raise disk_full()
    assert list(target.parent.iterdir()) == []


def test_write_json_that_cannot_serialise_leaves_the_target_untouched(tmp_path):
    # Fails for a write_json that streams into the target (json.dump(data, open(path, "w"))): the
    # error comes after the target was truncated and partly written.
    target = tmp_path / "metrics.json"
    target.write_text('{"old": true}\n')
    with pytest.raises(TypeError):
        write_json(target, {"accuracy": 0.5, "model": object()})
    assert target.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_write_json_hitting_a_full_disk_midway_leaves_the_target_untouched(tmp_path, monkeypatch):
    # The write itself fails after half the text is on disk: written in place, the target would be
    # left holding half a JSON document.
    target = tmp_path / "metrics.json"
    target.write_text('{"old": true}\n')
    real_write_text = Path.write_text

    def write_half_then_fail(self, data, *args, **kwargs):
        real_write_text(self, data[: len(data) // 2], *args, **kwargs)
        raise disk_full()

    monkeypatch.setattr(Path, "write_text", write_half_then_fail)
    with pytest.raises(OSError) as info:
        write_json(target, {"accuracy": 0.5, "classes": list(range(100))})
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert target.read_text() == '{"old": true}\n'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)],
                         ids=["umask 022", "umask 027", "umask 077"])
def test_files_written_atomically_get_the_mode_of_any_new_file_under_the_umask(tmp_path, umask, mode):
    # A temporary file made 0600 (mkstemp's mode) and renamed into place kept 0600: the report, the settings
    # files and predictions were readable by their owner alone.
    old = tmp_path / "old.json"
    old.write_text("{}\n")
    old.chmod(0o600)  # replaced, a file takes the new one's mode
    before = os.umask(umask)
    try:
        write_json(tmp_path / "new.json", {"a": 1})
        write_json(old, {"a": 2})
        write_text(tmp_path / "report" / "report.md", "# Report\n")
        with atomic_path(tmp_path / "model.pt") as tmp, open(tmp, "wb") as out:  # as torch.save and pandas write
            out.write(b"weights")
    finally:
        os.umask(before)
    written = ["new.json", "old.json", "report/report.md", "model.pt"]
    modes = {name: oct((tmp_path / name).stat().st_mode & 0o777) for name in written}
    assert modes == dict.fromkeys(written, oct(mode))


def test_one_line_makes_hostile_text_one_line_of_plain_text():
    # A file's own text reaches the message (PyTorch's advice came in bold): a terminal must show it as text.
    assert one_line("a \x1b[1mbold\x1b[0m word\x07\nand\ta\rline") == "a bold word and a line"
    assert one_line("x" * 300) == "x" * 197 + "..."


# --- 2. bad params: one line, exit 2, before any work ------------------------------------------


def _set(path: str, value) -> Callable[[dict], None]:
    def edit(params: dict) -> None:
        *parents, last = path.split(".")
        node = params
        for key in parents:
            node = node[key]
        node[last] = value
    return edit


def _delete(section: str, key: str) -> Callable[[dict], None]:
    return lambda params: params[section].pop(key)


# case -> (edit of params.yaml, names the error line must contain); check-params reads the whole file
PARAMS_CASES = {
    "typo key in a run": (_set("runs.bn-128.batchsize", 64), ["runs.bn-128.batchsize"]),
    "zero epochs": (_set("train.epochs", 0), ["train.epochs"]),
    "negative lr": (_set("train.lr", -1), ["train.lr"]),
    "zero batch size in a run": (_set("runs.bn-8.batch_size", 0), ["runs.bn-8.batch_size"]),
    "groups not dividing the widths": (_set("runs.gn-128.groups", 5), ["runs.gn-128.groups", "5"]),
    "epochs of the wrong type": (_set("train.epochs", "ten"), ["train.epochs", "ten"]),
    "missing key": (_delete("train", "momentum"), ["train.momentum"]),
    "unknown top-level key": (_set("optimiser", {"name": "sgd"}), ["optimiser"]),
    "a run's study a list": (_set("runs.gn-8.study", ["norm"]), ["runs.gn-8.study"]),
    "a run's study a mapping": (_set("runs.gn-8.study", {"norm": 1}), ["runs.gn-8.study"]),
}
BROKEN_YAML_LINE = "  n: 2: 3"  # replaces the `n:` line of `model:`; "mapping values are not allowed here"


def _broken_yaml(params: dict) -> tuple[str, int]:
    lines = yaml.safe_dump(params, sort_keys=False).splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("  n: "))
    lines[index] = BROKEN_YAML_LINE
    return "\n".join(lines) + "\n", index + 1


@pytest.mark.parametrize("case", PARAMS_CASES)
def test_a_bad_params_file_stops_check_params_with_one_line_naming_the_key_before_any_work(
        tmp_path, study_params, run_here, case):
    edit, names = PARAMS_CASES[case]
    edit(study_params)
    write_params(tmp_path, study_params)
    # Naming the key is what fails if validation goes: check-params would then fail later, or not at all.
    assert_one_line_user_error(run_here(tmp_path, "check_params", *CHECK_PARAMS_OUTPUTS), *names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]  # no settings files: no work done


def test_a_params_file_that_is_not_yaml_stops_check_params_with_one_line_naming_the_line(
        tmp_path, study_params, run_here):
    text, line = _broken_yaml(study_params)
    (tmp_path / "params.yaml").write_text(text)
    assert_one_line_user_error(run_here(tmp_path, "check_params", *CHECK_PARAMS_OUTPUTS), "params.yaml",
                               f"line {line}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_a_run_named_twice_stops_check_params_with_one_line_naming_the_second(tmp_path, study_params, run_here):
    # PyYAML would keep the second entry: the first run's settings would be lost without a word.
    lines = yaml.safe_dump(study_params, sort_keys=False).splitlines()
    first = lines.index("  gn-8:")
    (tmp_path / "params.yaml").write_text("\n".join([*lines, "  gn-8:", "    study: norm"]) + "\n")
    assert_one_line_user_error(run_here(tmp_path, "check_params", *CHECK_PARAMS_OUTPUTS), "params.yaml",
                               f"line {len(lines) + 1}: runs.gn-8 given twice (first on line {first + 1})")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


# case -> (the settings file's text, or None for no file; the stage; names the error line must contain)
SETTINGS_CASES = {
    "train: no settings file for the run": (None, "train", ["runs/bn-129.json", "check-params"]),
    "train: settings that are not JSON": ('{"run": {', "train", ["runs/bn-129.json", "not valid JSON"]),
    "train: a file that is not a run's settings": ('{"seed": 0}', "train",
                                                   ["runs/bn-129.json", "not a run settings file"]),
    "evaluate: no settings file for the run": (None, "evaluate", ["runs/bn-129.json", "check-params"]),
    "evaluate: a file that is not a run's settings": ('[]', "evaluate",
                                                      ["runs/bn-129.json", "not a run settings file"]),
}


@pytest.mark.parametrize("case", SETTINGS_CASES)
def test_a_missing_or_bad_settings_file_stops_the_stage_with_one_line_naming_it_before_any_work(
        tmp_path, run_here, case):
    text, script, names = SETTINGS_CASES[case]
    (tmp_path / "runs").mkdir()
    if text is not None:
        (tmp_path / "runs" / "bn-129.json").write_text(text)
    outputs = TRAIN_OUTPUTS if script == "train" else EVALUATE_OUTPUTS
    # Without the check, the stage would fail later on the missing split `x`, naming x/arrays.npz instead.
    assert_one_line_user_error(run_here(tmp_path, script, "runs/bn-129.json", *outputs), *names)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs"]  # no outputs written


@pytest.mark.parametrize(("content", "expected"), [
    (None, "y: no model file; run the train stage first"),
    (b"", "y: an empty file, not a cifarlab model file"),
    (b"PK\x03\x04 a zip that is no model", "y: not a cifarlab model file"),
], ids=["missing", "empty", "garbage"])
def test_a_file_that_is_not_a_model_stops_evaluate_with_one_line_naming_it(tmp_path, study_params, run_here, content,
                                                                           expected):
    write_settings(load_study(study_params), tmp_path / "runs", tmp_path / "study.json", root=ROOT)
    if content is not None:
        (tmp_path / "y").write_bytes(content)  # the --model of EVALUATE_OUTPUTS
    assert_one_line_user_error(run_here(tmp_path, "evaluate", "runs/bn-128.json", *EVALUATE_OUTPUTS), expected)
    assert not {"m", "p", "c", "v"} & {p.name for p in tmp_path.iterdir()}  # no metrics or predictions


def _compile_on_cpu(params: dict) -> dict:
    params["device"] = "cpu"
    params["performance"]["compile"] = "default"
    return params


def test_compile_on_a_cpu_without_a_cxx_compiler_stops_check_params_with_one_line(
        tmp_path, study_params, run_here, monkeypatch):
    write_params(tmp_path, _compile_on_cpu(study_params))
    monkeypatch.setenv("CXX", "no-such-cxx")
    assert_one_line_user_error(run_here(tmp_path, "check_params", *CHECK_PARAMS_OUTPUTS), "performance.compile",
                               "no-such-cxx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_compile_on_a_cpu_without_a_cxx_compiler_stops_a_run_with_one_line_before_any_work(
        tmp_path, study_params, run_here, monkeypatch):
    # Settings written where a compiler was: the train stage checks again on the machine it runs on.
    write_settings(load_study(_compile_on_cpu(study_params)), tmp_path / "runs", tmp_path / "study.json", root=ROOT)
    monkeypatch.setenv("CXX", "no-such-cxx")
    assert_one_line_user_error(run_here(tmp_path, "train", "runs/bn-128.json", *TRAIN_OUTPUTS),
                               "performance.compile", "no-such-cxx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["runs", "study.json"]


@pytest.fixture(scope="module")
def real_processes(tmp_path_factory, make_study_params) -> dict[str, tuple[Path, subprocess.CompletedProcess]]:
    """As real processes (two at a time): check-params on a bad params file, fetch on a missing source, and
    the control for every case above, check-params on a valid file from a project root."""
    jobs = {}
    cwd = tmp_path_factory.mktemp("bad")
    params = make_study_params()
    params["runs"]["bn-128"]["batchsize"] = 64
    write_params(cwd, params)
    jobs["bad params"] = (cwd, stage("check_params", *CHECK_PARAMS_OUTPUTS))

    cwd = tmp_path_factory.mktemp("fetch")
    params = make_study_params()
    params["data"]["source"] = str(cwd / "nowhere" / "cifar-10-python.tar.gz")
    write_params(cwd, params)
    jobs["fetch"] = (cwd, stage("fetch", "raw"))

    # check-params runs from the project root, which holds the stage scripts whose imports it hashes.
    cwd = copy_code(tmp_path_factory.mktemp("valid"))
    write_params(cwd, make_study_params())
    (cwd / "claims.yaml").write_text("claims: {}\n")
    jobs["valid params"] = (cwd, [sys.executable, "stages/check_params.py", *CHECK_PARAMS_OUTPUTS])
    return {name: (cwd, result) for (name, (cwd, _)), result in zip(jobs.items(), run_many(list(jobs.values())))}


def test_a_bad_params_file_stops_the_check_params_process_with_one_line_and_exit_2(real_processes):
    cwd, result = real_processes["bad params"]
    assert_one_line_user_error(result, "runs.bn-128.batchsize")
    assert sorted(p.name for p in cwd.iterdir()) == ["params.yaml"]


def test_a_missing_local_source_stops_the_fetch_process_with_one_line_naming_data_source(real_processes):
    cwd, result = real_processes["fetch"]
    assert_one_line_user_error(result, "data.source", str(cwd / "nowhere" / "cifar-10-python.tar.gz"))
    assert sorted(p.name for p in cwd.iterdir()) == ["params.yaml"]  # no raw: no work done


def test_valid_params_give_every_run_a_settings_file_that_gets_the_run_past_its_checks(real_processes,
                                                                                    study_params):
    cwd, checked = real_processes["valid params"]
    assert checked.returncode == 0, checked.stderr
    written = sorted(p.name for p in (cwd / "runs").iterdir())
    assert written == sorted(f"{run}.json" for run in study_params["runs"])
    assert list(json.loads((cwd / "study.json").read_text())["runs"]) == list(study_params["runs"])
    # The train stage, a real process too, then fails only later: on the missing split.
    line = assert_one_line_user_error(run_in(cwd, stage("train", "runs/bn-128.json", *TRAIN_OUTPUTS)),
                                      "arrays.npz")
    assert "params" not in line and "runs/bn-128.json" not in line


# --- 3. hostile archives through the split stage -----------------------------------------------

OLD_META = '{"content_sha256": "from an earlier split"}\n'


def _truncated(path: Path) -> Path:
    good = make_cifar_archive(path.with_name("good.tar.gz"), per_batch=12)
    data = good.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _escaping(path: Path) -> Path:
    return make_cifar_archive(path, per_batch=12, extra=[file_entry("../escape", b"written outside")])


@pytest.mark.parametrize("make", [_truncated, _escaping], ids=["truncated", "dotdot-member"])
def test_the_split_stage_refuses_a_hostile_archive_and_keeps_the_previous_split(tmp_path, study_params, make):
    cwd = tmp_path / "project"
    cwd.mkdir()
    write_params(cwd, study_params)
    (tmp_path / "archive").mkdir()
    archive = make(tmp_path / "archive" / "cifar-10-python.tar.gz")
    out = cwd / "data" / "split"
    out.mkdir(parents=True)
    (out / "meta.json").write_text(OLD_META)

    result = run_in(cwd, stage("split", str(archive), str(out)))

    assert_one_line_user_error(result, str(archive))
    assert (out / "meta.json").read_text() == OLD_META
    assert sorted(p.name for p in out.iterdir()) == ["meta.json"]  # no arrays.npz, no temporary file
    assert not any(p.name == "escape" for p in tmp_path.rglob("*"))


# --- 4. the split is a pure function of its seed -----------------------------------------------


def test_the_split_stage_is_a_pure_function_of_its_seed(tmp_path, make_study_params):
    archive = make_cifar_archive(tmp_path / "cifar-10-python.tar.gz", per_batch=12)
    jobs = []
    for name, seed in (("first", 0), ("again", 0), ("other-seed", 1)):
        cwd = tmp_path / name
        cwd.mkdir()
        params = make_study_params()
        params["seed"] = seed
        write_params(cwd, params)
        jobs.append((cwd, stage("split", str(archive), "split")))
    for (cwd, _), result in zip(jobs, run_many(jobs)):
        assert result.returncode == 0, f"{cwd.name}: {result.stderr}"

    def meta(name: str) -> dict:
        return json.loads((tmp_path / name / "split" / "meta.json").read_text())

    def arrays_sha(name: str) -> str:
        return hashlib.sha256((tmp_path / name / "split" / "arrays.npz").read_bytes()).hexdigest()

    assert meta("first")["content_sha256"] == meta("again")["content_sha256"]
    assert arrays_sha("first") == arrays_sha("again")  # the file, not only its contents: no timestamps
    assert meta("first")["content_sha256"] != meta("other-seed")["content_sha256"]
    assert arrays_sha("first") != arrays_sha("other-seed")

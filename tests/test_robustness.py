"""Failure paths without training: a full disk, bad params and hostile archives at the stage entry
points, and the split as a pure function of its seed."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from archives import file_entry, make_cifar_archive

from cifarlab.io import atomic_path, write_json

ROOT = Path(__file__).resolve().parents[1]
TRAIN_OUTPUTS = ["--split", "x", "--model", "y", "--live", "z", "--checkpoint", "w"]


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


def repo_params() -> dict:
    return yaml.safe_load((ROOT / "params.yaml").read_text())


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


# case -> (edit of params.yaml, run name given to train.py, names the error line must contain)
PARAMS_CASES = {
    "unknown run": (lambda p: None, "bn-129", ["bn-129"]),
    "typo key in a run": (_set("runs.bn-128.batchsize", 64), "bn-128", ["runs.bn-128.batchsize"]),
    "zero epochs": (_set("train.epochs", 0), "bn-128", ["train.epochs"]),
    "negative lr": (_set("train.lr", -1), "bn-128", ["train.lr"]),
    # in another run than the one trained: the whole file is validated
    "zero batch size in a run": (_set("runs.bn-8.batch_size", 0), "bn-128", ["runs.bn-8.batch_size"]),
    "groups not dividing the widths": (_set("runs.gn-128.groups", 5), "bn-128", ["runs.gn-128.groups", "5"]),
    "epochs of the wrong type": (_set("train.epochs", "ten"), "bn-128", ["train.epochs", "ten"]),
    "missing key": (_delete("train", "momentum"), "bn-128", ["train.momentum"]),
    "unknown top-level key": (_set("optimiser", {"name": "sgd"}), "bn-128", ["optimiser"]),
}
BROKEN_YAML_LINE = "  n: 2: 3"  # replaces the `n:` line of `model:`; "mapping values are not allowed here"


def _broken_yaml() -> tuple[str, int]:
    lines = (ROOT / "params.yaml").read_text().splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith("  n: "))
    lines[index] = BROKEN_YAML_LINE
    return "\n".join(lines) + "\n", index + 1


@pytest.fixture(scope="module")
def params_errors(tmp_path_factory) -> dict[str, tuple[Path, subprocess.CompletedProcess, list[str]]]:
    """Every bad-params case run through its stage script, in a folder of its own (two at a time)."""
    jobs, expected = {}, {}
    for name, (edit, run, names) in PARAMS_CASES.items():
        cwd = tmp_path_factory.mktemp("params")
        params = repo_params()
        edit(params)
        (cwd / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        jobs[name] = (cwd, stage("train", run, *TRAIN_OUTPUTS))
        expected[name] = names

    cwd = tmp_path_factory.mktemp("params")
    text, line = _broken_yaml()
    (cwd / "params.yaml").write_text(text)
    jobs["not valid YAML"] = (cwd, stage("train", "bn-128", *TRAIN_OUTPUTS))
    expected["not valid YAML"] = ["params.yaml", f"line {line}"]

    cwd = tmp_path_factory.mktemp("params")
    params = repo_params()
    missing = cwd / "nowhere" / "cifar-10-python.tar.gz"
    params["data"]["source"] = str(missing)
    (cwd / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    jobs["fetch: missing local source"] = (cwd, stage("fetch", "raw"))
    expected["fetch: missing local source"] = ["data.source", str(missing)]

    results = run_many(list(jobs.values()))
    return {name: (cwd, result, expected[name]) for (name, (cwd, _)), result in zip(jobs.items(), results)}


@pytest.mark.parametrize("case", [*PARAMS_CASES, "not valid YAML", "fetch: missing local source"])
def test_a_bad_params_file_stops_the_stage_with_one_line_naming_the_key(params_errors, case):
    cwd, result, names = params_errors[case]
    # Naming the key is what fails if validation goes: train.py would then stop later, on the
    # missing split `x`, with a line about x/arrays.npz instead.
    assert_one_line_user_error(result, *names)
    assert sorted(p.name for p in cwd.iterdir()) == ["params.yaml"]  # no x, y, z, w, raw: no work done


def test_compile_on_a_cpu_without_a_cxx_compiler_stops_with_one_line_before_any_work(tmp_path):
    params = repo_params()
    params["device"] = "cpu"
    params["performance"]["compile"] = "default"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    result = run_in(tmp_path, stage("train", "bn-128", *TRAIN_OUTPUTS), CXX="no-such-cxx")
    assert_one_line_user_error(result, "performance.compile", "no-such-cxx")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["params.yaml"]


def test_the_valid_params_file_gets_past_validation(tmp_path):
    # The control for the cases above: the unedited file fails only later, on the missing split.
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    line = assert_one_line_user_error(run_in(tmp_path, stage("train", "bn-128", *TRAIN_OUTPUTS)), "arrays.npz")
    assert "params" not in line


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
def test_the_split_stage_refuses_a_hostile_archive_and_keeps_the_previous_split(tmp_path, make):
    cwd = tmp_path / "project"
    cwd.mkdir()
    (cwd / "params.yaml").write_text((ROOT / "params.yaml").read_text())
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


def test_the_split_stage_is_a_pure_function_of_its_seed(tmp_path):
    archive = make_cifar_archive(tmp_path / "cifar-10-python.tar.gz", per_batch=12)
    jobs = []
    for name, seed in (("first", 0), ("again", 0), ("other-seed", 1)):
        cwd = tmp_path / name
        cwd.mkdir()
        params = repo_params()
        params["seed"] = seed
        (cwd / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
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

"""cifarlab.tools.learned: every run above the majority-class rate but those an at-chance claim names, with
each run's margin printed; a missing metrics file is one line and exit status 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from checkout import ROOT
from conftest import new_study_params
from scipy import stats

from cifarlab.errors import CifarlabError
from cifarlab.study.resolve import load_study
from cifarlab.tools.learned import main

RUNS = {
    "bn-128": {"study": "norm", "norm": "bn"},
    "bn-128-r1": {"study": "norm", "norm": "bn", "replicate_of": "bn-128", "replicate": 1},
    "lab-base": {"study": "lab"},
    "lab-lr-1": {"study": "lab", "lr": 1.0},
    "lab-lr-1-r1": {"study": "lab", "lr": 1.0, "replicate_of": "lab-lr-1", "replicate": 1},
}
AT_CHANCE = {"source": "HW2 Lab 2 (c) i", "says": "lr 1.0 stays at chance", "study": "lab",
             "metric": "test.accuracy", "expect": "at-chance", "a": "lab-lr-1", "margin": 0.02}
IMAGES = 1000
# The fewest right of 1,000 whose exact 95% interval lies above a 10% majority-class rate (120).
LEARNED = next(k for k in range(100, 200) if stats.binomtest(k, IMAGES).proportion_ci(0.95).low > 0.1)


def _project(tmp_path: Path, right: dict[str, int], claims: dict | None = None) -> list[str]:
    """The tool's arguments for RUNS, each with `right` of 1,000 test images right (the learned boundary by
    default) and a 10% majority-class rate, and `claims` (the at-chance claim on lab-lr-1 by default)."""
    study = load_study({**new_study_params(), "runs": RUNS})
    (tmp_path / "study.json").write_text(json.dumps(study.to_record()))
    (tmp_path / "claims.yaml").write_text(yaml.safe_dump({"claims": {"lr-1": AT_CHANCE} if claims is None
                                                          else claims}))
    metrics = tmp_path / "metrics"
    metrics.mkdir(exist_ok=True)
    for name in RUNS:
        test = {"accuracy": right.get(name, LEARNED) / IMAGES, "images": IMAGES, "majority_rate": 0.1}
        (metrics / f"{name}.json").write_text(json.dumps({"test": test}))
    return ["--study", str(tmp_path / "study.json"), "--claims", str(tmp_path / "claims.yaml"),
            "--metrics", str(metrics)]


def _lines(output: str) -> dict[str, str]:
    """The printed table's line of each run, by run."""
    return {line.split()[0]: line for line in output.splitlines() if line.split() and line.split()[0] in RUNS}


def test_every_run_above_chance_but_those_an_at_chance_claim_names_passes(tmp_path, capsys):
    main(_project(tmp_path, {"lab-lr-1": 100, "lab-lr-1-r1": LEARNED - 1}))
    out = capsys.readouterr().out
    lines = _lines(out)
    assert list(lines) == list(RUNS)
    for name in ("bn-128", "bn-128-r1", "lab-base"):
        assert lines[name].endswith(f"{100 * (LEARNED / IMAGES - 0.1):+7.2f}  learned")
    # a replicate of the run the claim names is expected to stay at chance too
    assert lines["lab-lr-1"].endswith("+0.00  not above chance (a claim expects it)")
    assert lines["lab-lr-1-r1"].endswith("not above chance (a claim expects it)")
    assert out.splitlines()[-1] == "learned: every run above chance but those a claim expects to fail (5 runs)"


def test_a_run_at_chance_fails_naming_it_one_image_below_the_boundary(tmp_path, capsys):
    with pytest.raises(SystemExit) as caught:
        main(_project(tmp_path, {"lab-base": LEARNED - 1, "bn-128-r1": 50}))
    assert caught.value.code == 1
    out = capsys.readouterr().out
    lines = _lines(out)
    ci = stats.binomtest(LEARNED - 1, IMAGES).proportion_ci(0.95)
    assert lines["lab-base"] == (f"{'lab-base':24s} {100 * (LEARNED - 1) / IMAGES:7.2f}% [{100 * ci.low:6.2f}, "
                                 f"{100 * ci.high:6.2f}] {10:8.2f}% {100 * ((LEARNED - 1) / IMAGES - 0.1):+7.2f}  "
                                 "NOT LEARNED")
    assert lines["bn-128-r1"].endswith("-5.00  NOT LEARNED")  # below chance is not above it either
    assert out.splitlines()[-1] == "learned: 2 of 5 runs not above chance: bn-128-r1, lab-base"


def test_only_an_at_chance_claim_exempts_a_run(tmp_path, capsys):
    other = {**{k: v for k, v in AT_CHANCE.items() if k != "margin"}, "expect": "more", "b": "lab-base"}
    with pytest.raises(SystemExit) as caught:
        main(_project(tmp_path, {"lab-lr-1": 100, "lab-lr-1-r1": 100}, claims={"lr-1": other}))
    assert caught.value.code == 1
    assert capsys.readouterr().out.splitlines()[-1] == "learned: 2 of 5 runs not above chance: lab-lr-1, lab-lr-1-r1"


def test_a_missing_metrics_file_is_one_line_and_exit_status_2(tmp_path):
    argv = _project(tmp_path, {})
    (tmp_path / "metrics" / "lab-base.json").unlink()
    with pytest.raises(CifarlabError, match="lab-base.json: missing; run the evaluate stage for lab-base first"):
        main(argv)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    result = subprocess.run([sys.executable, "-m", "cifarlab.tools.learned", *argv], check=False, env=env,
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [(f"error: {tmp_path / 'metrics' / 'lab-base.json'}: missing; run the "
                                          "evaluate stage for lab-base first")]

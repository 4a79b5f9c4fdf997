"""The committed results: the README's headline and docs/results/README.md are what the results bundles
give, so that no figure quoted there is typed in or stale."""

from __future__ import annotations

import json
import shutil
import sys

import pytest
from checkout import ROOT

from cifarlab.cli import run_stage
from cifarlab.study.resolve import read_study
from cifarlab.tools.results import (
    FULL_TRAIN_IMAGES,
    bundles,
    cost_rows,
    headline_lines,
    judge_bundles,
    main,
    results_page,
    run_times,
)

RESULTS = ROOT / "docs" / "results"


@pytest.fixture(scope="module")
def judged():
    found = bundles(RESULTS)
    assert found, "no results bundle is committed"
    return judge_bundles(found, ROOT / "claims.yaml")


def test_the_readme_headline_is_what_the_bundles_give(judged):
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- results:begin -->\n", 1)[1].split("<!-- results:end -->", 1)[0]
    assert block.splitlines() == headline_lines(judged, ROOT)


def test_the_results_page_is_what_the_bundles_give(judged):
    page = (RESULTS / "README.md").read_text().splitlines()
    assert page == "\n".join(results_page(judged, ROOT / "claims.yaml", RESULTS)).splitlines()


@pytest.mark.parametrize("bundle", bundles(RESULTS), ids=lambda bundle: bundle.name)
def test_a_bundles_params_file_resolves_to_the_settings_its_runs_trained_with(bundle):
    """The bundle's params.yaml is what reruns its study: this code resolves it to the study's runs and
    settings as the bundle recorded them when they trained."""
    recorded = json.loads((bundle / "study.json").read_text())
    resolved = read_study(bundle / "params.yaml").to_record()
    study = next(iter(recorded["runs"].values()))["study"]
    assert {name: run for name, run in resolved["runs"].items() if run["study"] == study} == recorded["runs"]
    assert {key: value for key, value in resolved.items() if key != "runs"} == \
        {key: value for key, value in recorded.items() if key != "runs"}


def test_two_slots_halve_a_studys_projected_time_but_never_split_one_run(tmp_path):
    bundle = tmp_path / "subset-resnet20"
    shutil.copytree(RESULTS / "subset-resnet20", bundle)
    live = bundle / "live" / "resnet20"
    trained = json.loads((live / "metrics.json").read_text())["train_time_s"]
    images = json.loads((live / "run.json").read_text())["data"]["train_images"]
    alone = trained * FULL_TRAIN_IMAGES / images / 3600
    assert cost_rows([bundle], "unmeasured")[0]["full CIFAR-10 here, two runs at a time"] == f"{alone:.0f} h"
    study = json.loads((bundle / "study.json").read_text())  # a second run as long: two slots, the same time
    study["runs"]["resnet20-r1"] = {**study["runs"]["resnet20"], "name": "resnet20-r1", "seed": 1,
                                    "replicate_of": "resnet20", "replicate": 1}
    (bundle / "study.json").write_text(json.dumps(study))
    shutil.copytree(live, bundle / "live" / "resnet20-r1")
    assert cost_rows([bundle], "unmeasured")[0]["full CIFAR-10 here, two runs at a time"] == f"{alone:.0f} h"


def test_a_runs_wall_clock_spans_its_attempts_up_to_its_first_ok_and_not_the_reruns_that_skipped_it(tmp_path):
    log = tmp_path / "times.tsv"
    log.write_text("vgg-nn\t100\t900\tok\tslot1\n"
                   "vgg-bn\t100\t400\tfailed\tslot2\n"    # stopped, then resumed in another slot
                   "other-study\t100\t200\tok\tslot2\n"
                   "vgg-bn\t1000\t1300\tok\tslot1\n"
                   "vgg-nn\t2000\t2003\tok\tslot2\n"      # a later start of the queue found it done
                   "queue empty 2026-12-07T06:00:00Z\n")
    assert run_times(log, ["vgg-nn", "vgg-bn"]) == {
        "vgg-nn": {"start": 100, "end": 900, "outcome": "ok", "slot": "slot1", "attempts": 1},
        "vgg-bn": {"start": 100, "end": 1300, "outcome": "ok", "slot": "slot1", "attempts": 2}}


def _error(argv: list[str], capsys, monkeypatch) -> str:
    """The one line `python -m cifarlab.tools.results ARGV` says, with exit status 2."""
    monkeypatch.setattr(sys, "argv", ["results", *argv])
    with pytest.raises(SystemExit) as exit_:
        run_stage(main)
    assert exit_.value.code == 2
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_collect_and_report_refuse_what_is_not_theirs_in_one_line_before_writing(tmp_path, capsys, monkeypatch):
    out = tmp_path / "bundle"
    assert "data/study.json: missing; expected a checkout" in _error(
        ["collect", str(tmp_path), "--study", "norm", "--out", str(out)], capsys, monkeypatch)
    assert "--times " in _error(["collect", str(tmp_path), "--study", "norm", "--out", str(out), "--times",
                                 str(tmp_path / "none.tsv")], capsys, monkeypatch)
    assert "--logs " in _error(["collect", str(tmp_path), "--study", "norm", "--out", str(out), "--logs",
                                str(tmp_path / "no-logs")], capsys, monkeypatch)
    assert "not a results bundle" in _error(["report", str(tmp_path)], capsys, monkeypatch)
    assert not out.exists()

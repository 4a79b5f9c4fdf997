"""Report tables and verdicts: numbers appear exactly as formatted from the metrics files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from cifarlab.config import RunConfig, load_study
from cifarlab.evaluation import confusion_table
from cifarlab.plots import confusion_counts
from cifarlab.report import changed_settings, metrics_table, outcome, parameters_section, provenance_notes

ROOT = Path(__file__).resolve().parents[1]


def test_metrics_table_keeps_two_decimals_for_round_percentages():
    scores = {"accuracy": 0.5, "micro_f1": 0.5, "macro_f1": 0.05}
    metrics = {"run": {"status": "completed", "stopped_reason": "", "best_epoch": 2, "epochs_run": 2,
                       "train": scores, "val": scores, "test": {**scores, "accuracy": 1.0},
                       "train_time_s": 3.0}}
    row = metrics_table(metrics).splitlines()[-1]  # header, rule, then the one run
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2:5] == ["50.00", "50.00", "5.00"]  # train accuracy, micro-F1, macro-F1
    assert cells[8] == "100.00"  # test accuracy


def _scores(accuracy: float, images: int = 1000) -> dict:
    return {"accuracy": accuracy, "micro_f1": accuracy, "macro_f1": accuracy, "loss": 2.3, "images": images}


@pytest.mark.parametrize(("status", "accuracy", "expected"), [
    ("diverged", 0.5, "**diverged** (non-finite loss at epoch 3)"),
    ("completed", 0.1189, "**at chance**"),  # 10% + 2 x sqrt(0.1 x 0.9 / 1000) = 11.90%
    ("completed", 0.1191, "learned"),
])
def test_outcome_says_diverged_at_chance_or_learned(status, accuracy, expected):
    metrics = {"status": status, "stopped_reason": "non-finite loss at epoch 3", "test": _scores(accuracy)}
    assert outcome(metrics, num_classes=10) == expected


def test_changed_settings_names_each_key_that_differs_from_the_baseline():
    study = load_study(yaml.safe_load((ROOT / "params.yaml").read_text()))
    base = study.runs["lab-base"]
    assert changed_settings(study.runs["lab-bn-lr-1e-1"], base) == "norm=bn, lr=0.1"
    assert changed_settings(study.runs["lab-l1"], base) == "weight_decay=0.0, l1=1e-05"
    assert changed_settings(base, base) == "(the baseline)"


def _study(profile: str = "full", **run_entry_edits):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["profile"] = profile
    for run, edits in run_entry_edits.items():
        params["runs"][run].update(edits)
    return load_study(params)


def _records(study, sha: str = "a" * 64) -> dict:
    return {name: {"run": cfg.to_record(), "data": {"train_images": 40000, "val_images": 10000,
                                                   "test_images": 10000, "content_sha256": sha}}
            for name, cfg in study.runs.items()}


def _configs(records: dict) -> dict:
    return {name: RunConfig.from_record(record["run"]) for name, record in records.items()}


def test_a_report_of_runs_made_as_params_say_has_no_provenance_note():
    study = _study()
    assert provenance_notes(study, _configs(_records(study)), _records(study)) == []


def test_the_report_names_runs_trained_under_other_settings_than_params_now_give():
    trained = _study()
    records = _records(trained)
    now = _study(**{"gn-8": {"lr": 0.05}})  # edited after gn-8 trained
    notes = provenance_notes(now, _configs(records), records)
    assert notes == ["**Trained under other settings than `params.yaml` now gives: `gn-8`.** The tables show what "
                     "they trained with; `dvc repro` retrains them.", ""]


def test_the_report_says_when_it_mixes_profiles_and_data_splits():
    full, quick = _study(), _study("quick")
    records = {**_records(full), "bn-8": _records(quick, sha="b" * 64)["bn-8"]}
    notes = " ".join(provenance_notes(full, _configs(records), records))
    assert "**Profile `quick`: runs trained under that profile's overrides" in notes
    assert "**This report mixes runs of the profiles `full`, `quick`**" in notes
    assert "`bn-8`" in notes and "**The runs trained on 2 different data splits**" in notes


def test_the_parameters_table_shows_what_each_run_recorded_and_what_the_profile_overrode():
    quick = _study("quick")
    records = _records(quick)
    records["resnet20"]["data"]["train_images"] = 1024
    table = parameters_section(_configs(records), records, _study())  # today's params say full: ignored
    row = next(line for line in table.splitlines() if line.startswith("| resnet20 "))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    header = [cell.strip() for cell in next(line for line in table.splitlines() if line.startswith("| run "))
              .strip("|").split("|")]
    shown = dict(zip(header, cells))
    assert shown["profile"] == "quick" and shown["epochs"] == "5" and shown["train images"] == "1,024"
    assert shown["overridden by the profile"] == ("n 3 (studies.resnet20) -> 1, epochs 200 (studies.resnet20) -> 5, "
                                                  "patience 200 (studies.resnet20) -> 5")
    bin_row = dict(zip(header, [c.strip() for c in next(line for line in table.splitlines()
                                                         if line.startswith("| bin-128 ")).strip("|").split("|")]))
    assert bin_row["gate lr"].startswith("1 (10x")  # the gates' lr: 10 x 0.1


def test_a_confusion_table_holds_every_pair_of_classes_and_reads_back_as_the_matrix(tmp_path):
    labels, predicted = np.array([0, 0, 1, 0, 1]), np.array([0, 1, 1, 0, 2])
    table = confusion_table(labels, predicted, ["cat", "dog", "ship"])
    assert len(table) == 9  # zeros included: two revisions' grids line up cell for cell
    assert table.iloc[0].tolist() == ["cat", "cat", 2]
    table.to_csv(tmp_path / "r.csv", index=False)
    matrix = confusion_counts(tmp_path, "r")
    assert list(matrix.index) == list(matrix.columns) == ["cat", "dog", "ship"]
    assert matrix.to_numpy().tolist() == [[2, 1, 0], [0, 1, 1], [0, 0, 0]]  # rows actual, columns predicted

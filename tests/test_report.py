"""Report tables and verdicts: numbers appear exactly as formatted from the metrics files."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cifarlab.config import load_study
from cifarlab.report import changed_settings, metrics_table, outcome

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

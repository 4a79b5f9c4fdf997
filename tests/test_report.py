"""Report tables: numbers appear exactly as formatted from the metrics files."""

from __future__ import annotations

from cifarlab.report import metrics_table


def test_metrics_table_keeps_two_decimals_for_round_percentages():
    scores = {"accuracy": 0.5, "micro_f1": 0.5, "macro_f1": 0.05}
    metrics = {"run": {"status": "completed", "stopped_reason": "", "best_epoch": 2, "epochs_run": 2,
                       "train": scores, "val": scores, "test": {**scores, "accuracy": 1.0},
                       "train_time_s": 3.0}}
    row = metrics_table(metrics).splitlines()[-1]  # header, rule, then the one run
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[2:5] == ["50.00", "50.00", "5.00"]  # train accuracy, micro-F1, macro-F1
    assert cells[8] == "100.00"  # test accuracy

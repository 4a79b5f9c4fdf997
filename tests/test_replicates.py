"""cifarlab.analysis.replicates: a run's replicates summarized per metric, and the mean curve with its band."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from cifarlab.analysis.replicates import aggregate_metrics, band


def test_an_aggregate_summarizes_every_metric_any_replicate_has_and_counts_the_diverged():
    first = {"status": "diverged", "best_val_accuracy": None, "test": {"accuracy": 0.1, "loss": math.inf}}
    second = {"status": "completed", "best_val_accuracy": 0.5, "test": {"accuracy": 0.3, "loss": 2.0}}
    aggregate = aggregate_metrics([first, second], seeds=[0, 1])
    assert (aggregate["replicates"], aggregate["seeds"], aggregate["diverged"]) == (2, [0, 1], 1)
    assert aggregate["best_val_accuracy"] == {"mean": 0.5, "std": None, "low": None, "high": None, "count": 1}
    assert aggregate["test"]["loss"]["count"] == 1  # the infinite loss is not averaged in
    accuracy = aggregate["test"]["accuracy"]
    assert (accuracy["mean"], accuracy["count"]) == (pytest.approx(0.2), 2)
    assert accuracy["std"] == pytest.approx(math.sqrt(0.02))


@pytest.mark.parametrize("null", [None, math.nan])
def test_a_metric_null_in_every_replicate_stays_with_count_zero_while_text_stays_out(null):
    diverged = {"status": "diverged", "stopped_reason": "loss", "best_val_accuracy": null, "test": {"accuracy": 0.1}}
    aggregate = aggregate_metrics([diverged, dict(diverged, test={"accuracy": 0.2})], seeds=[0, 1])
    assert aggregate["best_val_accuracy"] == {"mean": None, "std": None, "low": None, "high": None, "count": 0}
    assert aggregate["test"]["accuracy"]["count"] == 2
    assert "status" not in aggregate and "stopped_reason" not in aggregate


def test_a_band_is_the_mean_with_one_standard_deviation_and_none_where_one_replicate_is_left():
    long, short = pd.DataFrame({"val_error": [0.6, 0.4, 0.3]}), pd.DataFrame({"val_error": [0.4, 0.2]})
    curve = band([long, short], "val_error")
    assert curve["value"].tolist() == pytest.approx([0.5, 0.3, 0.3])
    assert curve["high"].iloc[:2].tolist() == pytest.approx([0.5 + math.sqrt(0.02), 0.3 + math.sqrt(0.02)])
    assert curve["replicates"].tolist() == [2, 2, 1]
    assert math.isnan(curve["low"].iloc[2]) and math.isnan(curve["high"].iloc[2])

"""The report's tables and cells: Markdown and number formatting, the metrics and cost tables of every
run, and the scores and comparison tables of a study's original runs."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from cifarlab.analysis.stats import Estimate, accuracy_interval, against_rate
from cifarlab.report.view import StudyView, accuracy_estimate, difference, mean

SPLITS = ("train", "val", "test")
SCORES = {"accuracy": "accuracy", "micro_f1": "micro-F1", "macro_f1": "macro-F1"}


def markdown(rows: list[dict[str, Any]]) -> str:
    """A Markdown table that prints each cell as formatted here: tabulate would re-read "5.00" as 5."""
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def pct(value: float) -> str:
    return f"{100 * value:.2f}"


def signed_points(value: float) -> str:
    return f"{100 * value:+.2f}"


def interval(diff: Estimate) -> str:
    return "[no interval]" if diff.missing else f"[{100 * diff.low:+.2f}, {100 * diff.high:+.2f}]"


def comparison_verdict(view: StudyView, diff: Estimate, a: str, b: str) -> str:
    """'within noise', '<a> better' or '<b> better' at 95% on its own; none under a pipeline-check profile,
    and none without an interval."""
    if diff.missing:
        return f"no verdict ({diff.no_interval})"
    if not view.verdicts:
        return "no verdict (a pipeline-check profile)"
    return {0: "within noise", 1: f"{a} better", -1: f"{b} better"}[diff.better]


def _status(m: Mapping[str, Any]) -> str:
    if m["status"] == "diverged":
        return f"**diverged** ({m['stopped_reason']})"
    return m["status"].replace("_", " ")


def metrics_table(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """Runs x (split x score), in percent, each split with the images it was scored on: train on those the
    run trained on, val on those that selected its checkpoint."""
    rows = []
    for run, m in metrics.items():
        row: dict[str, Any] = {"run": run, "status": _status(m)}
        for split in SPLITS:
            row[f"{split} images"] = f"{m[split]['images']:,}"
            for key, label in SCORES.items():
                row[f"{split} {label}"] = pct(m[split][key])
        row["best epoch"] = m["best_epoch"]
        row["epochs run"] = m["epochs_run"]
        row["train time (s)"] = f"{m['train_time_s']:.1f}"
        rows.append(row)
    return markdown(rows)


def cost_table(metrics: Mapping[str, Mapping[str, Any]], histories: Mapping[str, pd.DataFrame]) -> str:
    """What each run cost: throughput, epoch time, and the share of each epoch spent on evaluation."""
    rows = []
    for run, history in histories.items():
        epoch_total = history["epoch_time_s"] + history["eval_time_s"]
        rows.append({"run": run, "device": metrics[run]["device"],
                     "training img/s (median)": f"{history['images_per_s'].median():.0f}",
                     "epoch s (median)": f"{epoch_total.median():.1f}",
                     "evaluation share of epoch": f"{100 * (history['eval_time_s'] / epoch_total).median():.1f}%",
                     "total s": f"{metrics[run]['train_time_s']:.0f}"})
    return markdown(rows)


ACCURACY_INTERVALS = ("test accuracy [95% interval]: the mean over seeds, its interval holding seed-to-seed and "
                      "test-image noise (a run of one seed borrows its study's pooled seed variance; with none to "
                      "borrow, the exact binomial interval on the test images, test-image noise only)")


def accuracy_cell(view: StudyView, run: str) -> str:
    """Test accuracy in percent with a 95% interval (see ACCURACY_INTERVALS)."""
    estimate = accuracy_estimate(view, run)
    if estimate.missing:
        if len(view.replicates[run]) == 1 and math.isfinite(estimate.mean):
            low, high = accuracy_interval(estimate.mean, view.metrics[run]["test"]["images"])
            return f"{pct(estimate.mean)} [{pct(low)}, {pct(high)}] (images only)"
        return f"{pct(estimate.mean)} [no interval]"
    # clipped: a t interval from few seeds can reach past 0 or 100%
    return f"{pct(estimate.mean)} [{pct(max(estimate.low, 0.0))}, {pct(min(estimate.high, 1.0))}]"


def mean_text(view: StudyView, run: str, key: str) -> str:
    """A mean over replicates that is a whole number when every replicate agrees, e.g. the best epoch."""
    value = mean(view, run, key)
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


OUTCOME_RULE = ("A run **learned** when the exact 95% binomial interval of its test accuracy lies above the test "
                "set's majority-class rate (what always answering the most frequent class scores), is **at "
                "chance** when the interval holds that rate, and **below chance** when it lies below it; a run "
                "**diverged** when a non-finite loss stopped it.")


def outcome(m: Mapping[str, Any]) -> str:
    """diverged, learned, at chance or below chance (see OUTCOME_RULE)."""
    if m["status"] == "diverged":
        return f"**diverged** ({m['stopped_reason']})"
    test = m["test"]
    return {1: "learned", 0: "**at chance**", -1: "**below chance**"}[
        against_rate(test["accuracy"], test["images"], test["majority_rate"])]


def outcomes(view: StudyView, run: str) -> str:
    """The distinct outcomes of an original run's replicates, in replicate order."""
    found = [outcome(view.metrics[name]) for name in view.replicates[run]]
    return ", ".join(dict.fromkeys(found))


def scores_table(view: StudyView) -> str:
    """A study's original runs: seeds, outcome, validation and test accuracy, test loss and macro-F1
    (percent; means over replicates, test accuracy with its interval or standard error)."""
    rows = []
    for run in view.originals:
        rows.append({"run": run, "seeds": len(view.replicates[run]), "outcome": outcomes(view, run),
                     "val accuracy": pct(mean(view, run, "val", "accuracy")),
                     "test accuracy [95% interval]": accuracy_cell(view, run),
                     "test loss": f"{mean(view, run, 'test', 'loss'):.3f}",
                     "test macro-F1": pct(mean(view, run, "test", "macro_f1")),
                     "best epoch": mean_text(view, run, "best_epoch"),
                     "train time (s)": f"{mean(view, run, 'train_time_s'):.0f}"})
    return markdown(rows)


def comparison_rows(view: StudyView, pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Per pair (A, B) of original runs: their test accuracies, A - B with its 95% interval, the test
    and the verdict."""
    rows = []
    for a, b in pairs:
        diff = difference(view, a, b)
        rows.append({"A": f"`{a}`", "B": f"`{b}`", "A test accuracy [95% interval]": accuracy_cell(view, a),
                     "B test accuracy [95% interval]": accuracy_cell(view, b),
                     "A - B (points) [95% interval]": f"{signed_points(diff.mean)} {interval(diff)}",
                     "test": diff.test, "verdict": comparison_verdict(view, diff, f"`{a}`", f"`{b}`")})
    return rows


def comparison_table(view: StudyView, pairs: list[tuple[str, str]]) -> str:
    return markdown(comparison_rows(view, pairs))


def baseline_comparisons(view: StudyView, runs: list[str] | None = None) -> list[str]:
    """Every original run of the study (or `runs`) against the study's first run, its baseline."""
    baseline = view.originals[0]
    pairs = [(run, baseline) for run in (runs if runs is not None else view.originals[1:])]
    if not pairs:
        return []
    return [f"### Against the baseline `{baseline}`", "", comparison_table(view, pairs), ""]

"""What the report reads: each run's scores, curves and settings as it recorded them, and each original
run's scores over its replicates as the aggregate stage wrote them."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cifarlab.config.sections import RunConfig, replicate_groups
from cifarlab.io import require_input
from cifarlab.report.plots import read_history
from cifarlab.train.tracking import read_live_summary, read_run_record


@dataclass(frozen=True)
class ReportInputs:
    """Everything the runs recorded, by run name (every replicate), and their aggregates by original run."""

    metrics: dict[str, dict[str, Any]]  # the evaluate stage's scores, with training time and device
    histories: dict[str, pd.DataFrame]  # per-epoch curves (index: epoch)
    records: dict[str, dict[str, Any]]  # run.json: {run: its settings, data: the images it saw}
    configs: dict[str, RunConfig]  # the settings each run trained with, from its record
    replicates: dict[str, list[str]]  # original run -> itself and its replicates
    aggregates: dict[str, dict[str, Any]]  # original run -> its metrics over its replicates
    correct: dict[str, dict[str, np.ndarray]]  # run -> split (val, test) -> 1.0 per image it got right


def load_metrics(metrics_dir: Path, live_root: Path, runs: list[str]) -> dict[str, dict[str, Any]]:
    """Every run's metrics file, with its training time and device from its DVCLive summary."""
    metrics = {}
    for run in runs:
        path = require_input(metrics_dir / f"{run}.json", f"the evaluate stage for {run}")
        live = read_live_summary(live_root / run)
        metrics[run] = {**json.loads(path.read_text()), "train_time_s": live["train_time_s"],
                        "device": live["device"]}
    return metrics


def load_aggregates(aggregates_dir: Path, originals: list[str]) -> dict[str, dict[str, Any]]:
    """Every original run's metrics over its replicates, as the aggregate stage wrote them."""
    return {run: json.loads(require_input(aggregates_dir / f"{run}.json", "the aggregate stage").read_text())
            for run in originals}


def load_correct(predictions_dir: Path, run: str) -> dict[str, np.ndarray]:
    """Per split, 1.0 for each image the run's best checkpoint got right, in the split's order, from the
    evaluate stage's predictions (`split,index,predicted,actual`; a file without `split` holds test only)."""
    table = pd.read_csv(require_input(predictions_dir / f"{run}.csv", f"the evaluate stage for {run}"))
    if "split" not in table:
        table = table.assign(split="test")
    return {split: (rows.sort_values("index")["predicted"] == rows.sort_values("index")["actual"]).to_numpy(float)
            for split, rows in table.groupby("split", sort=False)}


def read_inputs(runs: list[str], *, metrics_dir: Path, aggregates_dir: Path, live_root: Path,
                predictions_dir: Path) -> ReportInputs:
    """What `runs` recorded: scores, curves and settings; replicates grouped by the settings they recorded."""
    metrics = load_metrics(metrics_dir, live_root, runs)
    histories = {run: read_history(live_root / run) for run in runs}
    records = {run: read_run_record(live_root / run) for run in runs}
    configs = {run: RunConfig.from_record(records[run]["run"]) for run in runs}
    replicates = replicate_groups(configs.values())
    aggregates = load_aggregates(aggregates_dir, list(replicates))
    correct = {run: load_correct(predictions_dir, run) for run in runs}
    return ReportInputs(metrics, histories, records, configs, replicates, aggregates, correct)

"""What a report section sees of its study (`StudyView`), and the numbers it draws from it: an original
run's mean over its replicates, each replicate's test accuracy by seed, and A - B between two runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from cifarlab.analysis.stats import Difference, compare
from cifarlab.config.sections import RunConfig


@dataclass(frozen=True)
class StudyView:
    """What a report section sees: its study's runs (every replicate), each original run's replicates and
    their aggregate, configs, scores and curves, and where to draw."""

    name: str
    runs: list[str]
    replicates: Mapping[str, list[str]]  # original run -> itself and its replicates
    configs: Mapping[str, RunConfig]
    metrics: Mapping[str, Any]
    aggregates: Mapping[str, Any]
    histories: Mapping[str, pd.DataFrame]
    weights_dir: Path
    quantile_dir: Path
    out_dir: Path

    @property
    def originals(self) -> list[str]:
        return list(self.replicates)

    def grouped_histories(self) -> dict[str, list[pd.DataFrame]]:
        return {run: [self.histories[name] for name in names] for run, names in self.replicates.items()}


def mean(view: StudyView, run: str, *key: str) -> float:
    """A metric of an original run over its replicates, from its aggregate (train time from the histories)."""
    if key == ("train_time_s",):
        return sum(view.metrics[name]["train_time_s"] for name in view.replicates[run]) / len(view.replicates[run])
    node = view.aggregates[run]
    for part in key:
        node = node[part]
    return node["mean"]


def accuracy_by_seed(view: StudyView, run: str) -> dict[int, float]:
    """The test accuracy of each replicate of `run`, by its seed."""
    return {view.configs[name].seed: view.metrics[name]["test"]["accuracy"] for name in view.replicates[run]}


def difference(view: StudyView, a: str, b: str) -> Difference:
    """A - B in test accuracy over the replicates of each (see `stats.compare`)."""
    return compare(accuracy_by_seed(view, a), accuracy_by_seed(view, b), images=view.metrics[a]["test"]["images"])

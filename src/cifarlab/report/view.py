"""What a report section sees of its study (`StudyView`), and the numbers it draws from it: an original
run's mean over its replicates, each replicate's test accuracy by seed, and A - B between two runs."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from cifarlab.analysis.stats import (
    Estimate,
    PooledSeedVariance,
    RunSample,
    contrast,
    score_sample,
)
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
    correct: Mapping[str, Mapping[str, np.ndarray]]  # run -> split -> 1.0 where its prediction was right
    verdicts: bool  # False under a profile that checks the pipeline: its tables call no run better
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


def accuracy_sample(view: StudyView, run: str) -> RunSample:
    """Test accuracy of each replicate of `run` by seed, with its per-image right answers."""
    names = view.replicates[run]
    seed = {name: view.configs[name].seed for name in names}
    kept = all("test" in view.correct.get(name, {}) for name in names)
    right = {seed[n]: view.correct[n]["test"] for n in names} if kept else None
    return score_sample(accuracy_by_seed(view, run), right, view.metrics[run]["test"]["images"])


def pooled(view: StudyView) -> PooledSeedVariance | None:
    """Test accuracy's seed-to-seed variance pooled over the study's replicated runs, for its runs of one."""
    return PooledSeedVariance.of([accuracy_sample(view, run) for run in view.originals])


def accuracy_estimate(view: StudyView, run: str) -> Estimate:
    """A run's mean test accuracy over its seeds, with seed and test-image noise."""
    return contrast([accuracy_sample(view, run)], [1], pooled(view))


def difference(view: StudyView, a: str, b: str) -> Estimate:
    """A - B in test accuracy over the replicates of each, with seed and test-image noise."""
    return contrast([accuracy_sample(view, a), accuracy_sample(view, b)], [1, -1], pooled(view))


def changes(view: StudyView, a: str, a_base: str, b: str, b_base: str) -> Estimate:
    """(A - A base) - (B - B base) in test accuracy."""
    return contrast([accuracy_sample(view, run) for run in (a, a_base, b, b_base)], [1, -1, -1, 1], pooled(view))

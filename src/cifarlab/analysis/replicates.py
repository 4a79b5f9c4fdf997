"""A run and its replicates as one sample: metrics summarized over seeds, curves as a mean with a band.

The aggregate stage writes `aggregates/<run>.json` for every original run (its replicates folded in);
the curves stage and the report draw each run's curves as the mean over its replicates with a band of
one standard deviation either side (seed-to-seed spread), where two replicates or more reached the epoch.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from cifarlab.analysis.stats import summarize
from cifarlab.io import require_input, write_json


def numeric_metrics(metrics: Mapping[str, Any]) -> dict[str, float]:
    """Every numeric leaf of a metrics file, by its dotted key (`test.accuracy`), and every null one as NaN
    (a score the run could not have is still a metric: a run that diverged before its first epoch has no
    best validation accuracy); text (status) is left out."""
    row = pd.json_normalize(dict(metrics)).iloc[0]
    return {key: math.nan if value is None else float(value) for key, value in row.items()
            if value is None or (pd.api.types.is_number(value) and not pd.api.types.is_bool(value))}


def _finite_or_none(value: float) -> float | None:
    return value if math.isfinite(value) else None  # JSON has no NaN; DVC shows null as "-"


def aggregate_metrics(per_replicate: Sequence[Mapping[str, Any]], seeds: Sequence[int]) -> dict[str, Any]:
    """One run's metrics over its replicates: per metric its mean, standard deviation (ddof=1), count and
    95% t interval of the mean over the replicates that have a finite value (a run that diverged before
    its first epoch has no best validation accuracy; with none, count 0 and null statistics), nested like
    the metrics files (`test.accuracy.mean`); and how many replicates diverged, since their scores are
    averaged in with the others'."""
    flat = [numeric_metrics(m) for m in per_replicate]
    aggregate: dict[str, Any] = {"replicates": len(flat), "seeds": list(seeds),
                                 "diverged": sum(m.get("status") == "diverged" for m in per_replicate)}
    for key in dict.fromkeys(key for values in flat for key in values):
        present = [values[key] for values in flat if math.isfinite(values.get(key, math.nan))]
        summary = summarize(present) if present else None
        node = aggregate
        for part in key.split("."):
            node = node.setdefault(part, {})
        node.update(dict.fromkeys(("mean", "std", "low", "high")), count=len(present))
        if summary:
            node.update(mean=summary.mean, std=_finite_or_none(summary.std), low=_finite_or_none(summary.low),
                        high=_finite_or_none(summary.high))
    return aggregate


def write_aggregates(replicates: Mapping[str, Sequence[str]], seeds: Mapping[str, int], metrics_dir: Path,
                     out_dir: Path) -> list[Path]:
    """The aggregate stage: `out_dir/<run>.json` for every original run, from its replicates' metrics."""
    written = []
    for original, names in replicates.items():
        per_replicate = [json.loads(require_input(metrics_dir / f"{name}.json", f"the evaluate stage for {name}")
                                    .read_text()) for name in names]
        path = out_dir / f"{original}.json"
        write_json(path, aggregate_metrics(per_replicate, [seeds[name] for name in names]))
        written.append(path)
    return written


def band(histories: Sequence[pd.DataFrame], column: str) -> pd.DataFrame:
    """One curve over replicates, per epoch: value (the mean), low and high (one standard deviation either
    side; NaN, no band, where fewer than two replicates have the epoch) and replicates (how many reached
    that epoch: early stopping may end some sooner)."""
    table = pd.concat([history[column] for history in histories], axis=1)
    mean, std = table.mean(axis=1), table.std(axis=1, ddof=1)
    return pd.DataFrame({"epoch": table.index, "value": mean.values, "low": (mean - std).values,
                         "high": (mean + std).values, "replicates": table.count(axis=1).values})

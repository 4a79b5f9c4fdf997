"""Is a difference real? Summaries of repeated runs and comparisons of two runs, with 95% intervals.

Replicates of a run differ only in their seed (initialisation, data order, augmentation); the split is
the same for all. Intervals are Student t (SciPy): over a run's replicates for its mean, over the
per-seed differences when two runs share seeds (paired), Welch's otherwise. With one replicate there is
no spread to estimate, and a score's binomial standard error is the only yardstick.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95


@dataclass(frozen=True)
class Summary:
    """A metric over a run's replicates."""

    mean: float
    std: float  # sample standard deviation (ddof=1); nan for one replicate
    count: int
    low: float  # the 95% t interval of the mean; nan for one replicate
    high: float


def summarize(values: Sequence[float]) -> Summary:
    """Mean, standard deviation and 95% t interval of the mean over replicates."""
    x = np.asarray(values, dtype=float)
    if x.size == 0:
        raise ValueError("no replicates to summarize")
    if x.size == 1:
        return Summary(float(x[0]), math.nan, 1, math.nan, math.nan)
    std = float(x.std(ddof=1))
    if std == 0.0:  # identical replicates: the interval is the value itself
        return Summary(float(x.mean()), 0.0, int(x.size), float(x.mean()), float(x.mean()))
    low, high = stats.t.interval(CONFIDENCE, x.size - 1, loc=x.mean(), scale=std / math.sqrt(x.size))
    return Summary(float(x.mean()), std, int(x.size), float(low), float(high))


@dataclass(frozen=True)
class Difference:
    """A minus B, with its 95% interval and the test that gave it."""

    mean: float
    low: float
    high: float
    test: str  # "paired t", "Welch t", or "binomial SE" (one replicate each)

    def verdict(self, a: str, b: str) -> str:
        """'within noise' when the interval holds 0, else which run is better (higher is better)."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low <= 0.0 <= self.high:
            return "within noise"
        return f"{a} better" if self.low > 0 else f"{b} better"


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Difference:
    """A - B over replicates that share seeds, pair by pair (the i-th of each has the same seed)."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    if d.size < 2:
        raise ValueError("a paired interval needs two pairs or more")
    if np.all(d == d[0]):
        return Difference(float(d[0]), float(d[0]), float(d[0]), "paired t")
    interval = stats.ttest_rel(a, b).confidence_interval(CONFIDENCE)
    return Difference(float(d.mean()), float(interval.low), float(interval.high), "paired t")


def welch_difference(a: Sequence[float], b: Sequence[float]) -> Difference:
    """A - B over replicates that do not share seeds (Welch's unequal-variance t)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if x.size < 2 or y.size < 2:
        raise ValueError("Welch's interval needs two replicates of each run or more")
    if x.std(ddof=1) == 0.0 and y.std(ddof=1) == 0.0:
        diff = float(x.mean() - y.mean())
        return Difference(diff, diff, diff, "Welch t")
    interval = stats.ttest_ind(x, y, equal_var=False).confidence_interval(CONFIDENCE)
    return Difference(float(x.mean() - y.mean()), float(interval.low), float(interval.high), "Welch t")


def binomial_se(accuracy: float, images: int) -> float:
    """The standard error of an accuracy measured on `images` independent images."""
    return math.sqrt(accuracy * (1.0 - accuracy) / images)


def single_run_difference(a: float, b: float, images: int) -> Difference:
    """A - B of two single runs' accuracies on the same `images`: +-2 binomial standard errors of the
    difference (independent errors assumed), the yardstick when there are no replicates."""
    se = math.sqrt(binomial_se(a, images) ** 2 + binomial_se(b, images) ** 2)
    return Difference(a - b, a - b - 2 * se, a - b + 2 * se, "binomial SE")


def compare(a: Mapping[int, float], b: Mapping[int, float], images: int) -> Difference:
    """A - B of one accuracy of two runs, each given per seed of its replicates, by the strongest test the
    replicates allow: paired t over the seeds both have (two or more), else Welch's t (two replicates or
    more of each), else +-2 binomial standard errors of the difference of their means on `images`."""
    shared = sorted(set(a) & set(b))
    if len(shared) >= 2:
        difference = paired_difference([a[seed] for seed in shared], [b[seed] for seed in shared])
        return dataclasses.replace(difference, test=f"paired t, {len(shared)} seeds")
    if len(a) >= 2 and len(b) >= 2:
        difference = welch_difference(list(a.values()), list(b.values()))
        return dataclasses.replace(difference, test=f"Welch t, {len(a)} and {len(b)} seeds")
    return single_run_difference(float(np.mean(list(a.values()))), float(np.mean(list(b.values()))), images)


def compare_changes(a_changed: Mapping[int, float], a_base: Mapping[int, float], b_changed: Mapping[int, float],
                    b_base: Mapping[int, float], images: int) -> Difference:
    """How much more A's accuracy moves than B's under the same change (A changed - A base) - (B changed -
    B base), each given per seed: paired t over the seeds all four runs have (two or more), else +-2
    binomial standard errors of the four means (independent errors assumed)."""
    shared = sorted(set(a_changed) & set(a_base) & set(b_changed) & set(b_base))
    if len(shared) >= 2:
        difference = paired_difference([a_changed[s] - a_base[s] for s in shared],
                                       [b_changed[s] - b_base[s] for s in shared])
        return dataclasses.replace(difference, test=f"paired t, {len(shared)} seeds")
    means = [float(np.mean(list(runs.values()))) for runs in (a_changed, a_base, b_changed, b_base)]
    change = (means[0] - means[1]) - (means[2] - means[3])
    se = math.sqrt(sum(binomial_se(m, images) ** 2 for m in means))
    return Difference(change, change - 2 * se, change + 2 * se, "binomial SE")

"""Is a difference real? Summaries of repeated runs and comparisons of two runs, with 95% intervals.

Replicates of a run differ only in their seed (initialisation, data order, augmentation); the split is
the same for all. Intervals are Student t (SciPy): over a run's replicates for its mean, over the
per-seed differences when two runs share seeds (paired), Welch's otherwise. With one replicate there is
no spread to estimate, and a score's binomial standard error is the only yardstick. A missing score (NaN)
is refused by the interval functions and labelled by the comparisons: it is never "within noise".
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
# Values this close are one value written twice with different rounding (a mean, a difference of sums),
# not seeds that differ: one test image in a million is 1e-6.
ROUNDING_TOLERANCE = 1e-9


def _equal_but_for_rounding(values: np.ndarray) -> bool:
    """No spread but float rounding. SciPy's t interval there is NaN or a few ulps wide (with a warning of
    precision loss), where the t interval of values without spread is the value itself."""
    return math.isclose(float(values.min()), float(values.max()), rel_tol=ROUNDING_TOLERANCE,
                        abs_tol=ROUNDING_TOLERANCE)


def _finite(values: Sequence[float], what: str) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: a value is NaN or infinite ({x.tolist()}); leave missing scores out")
    return x


@dataclass(frozen=True)
class Summary:
    """A metric over a run's replicates."""

    mean: float
    std: float  # sample standard deviation (ddof=1); nan for one replicate
    count: int
    low: float  # the 95% t interval of the mean; nan for one replicate
    high: float


def summarize(values: Sequence[float]) -> Summary:
    """Mean, standard deviation and 95% t interval of the mean over replicates; values that differ only by
    rounding have no spread. A non-finite value is refused: the count would include a missing score."""
    x = _finite(values, "summarize")
    if x.size == 0:
        raise ValueError("no replicates to summarize")
    if x.size == 1:
        return Summary(float(x[0]), math.nan, 1, math.nan, math.nan)
    if _equal_but_for_rounding(x):  # the interval is the value itself
        return Summary(float(x.mean()), 0.0, int(x.size), float(x.mean()), float(x.mean()))
    std = float(x.std(ddof=1))
    low, high = stats.t.interval(CONFIDENCE, x.size - 1, loc=x.mean(), scale=std / math.sqrt(x.size))
    return Summary(float(x.mean()), std, int(x.size), float(low), float(high))


@dataclass(frozen=True)
class Difference:
    """A minus B, with its 95% interval and the test that gave it."""

    mean: float
    low: float
    high: float
    test: str  # e.g. "paired t, 2 seeds", "Welch t, 3 and 2 seeds", "binomial SE"

    @property
    def missing(self) -> bool:
        """A score is missing (NaN), so there is no difference to judge."""
        return not all(math.isfinite(value) for value in (self.mean, self.low, self.high))

    @property
    def better(self) -> int:
        """1 when A is better (the interval lies above 0), -1 when B is, 0 when the interval holds 0."""
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low <= 0.0 <= self.high:
            return 0
        return 1 if self.low > 0 else -1

    def verdict(self, a: str, b: str) -> str:
        """'within noise', '<a> better' or '<b> better' (higher is better); 'no verdict (a score is missing)'
        when one is."""
        if self.missing:
            return "no verdict (a score is missing)"
        return {0: "within noise", 1: f"{a} better", -1: f"{b} better"}[self.better]


MISSING = Difference(math.nan, math.nan, math.nan, "none (a score is missing)")


def paired_difference(a: Sequence[float], b: Sequence[float]) -> Difference:
    """A - B over replicates that share seeds, pair by pair (the i-th of each has the same seed); a missing
    score is refused (`compare` labels it instead)."""
    d = _finite(a, "paired_difference") - _finite(b, "paired_difference")
    if d.size < 2:
        raise ValueError("a paired interval needs two pairs or more")
    if _equal_but_for_rounding(d):
        return Difference(float(d.mean()), float(d.mean()), float(d.mean()), "paired t")
    interval = stats.ttest_rel(a, b).confidence_interval(CONFIDENCE)
    return Difference(float(d.mean()), float(interval.low), float(interval.high), "paired t")


def welch_difference(a: Sequence[float], b: Sequence[float]) -> Difference:
    """A - B over replicates that do not share seeds (Welch's unequal-variance t); a missing score is
    refused (`compare` labels it instead)."""
    x, y = _finite(a, "welch_difference"), _finite(b, "welch_difference")
    if x.size < 2 or y.size < 2:
        raise ValueError("Welch's interval needs two replicates of each run or more")
    if _equal_but_for_rounding(x) and _equal_but_for_rounding(y):
        diff = float(x.mean() - y.mean())
        return Difference(diff, diff, diff, "Welch t")
    interval = stats.ttest_ind(x, y, equal_var=False).confidence_interval(CONFIDENCE)
    return Difference(float(x.mean() - y.mean()), float(interval.low), float(interval.high), "Welch t")


def binomial_se(accuracy: float, images: int) -> float:
    """The standard error of an accuracy measured on `images` independent images."""
    return math.sqrt(accuracy * (1.0 - accuracy) / images)


def se_difference(difference: float, standard_errors: Sequence[float], test: str) -> Difference:
    """`difference` (a sum of +- independent estimates) +- 2 standard errors, from the estimates' own."""
    se = math.sqrt(sum(error ** 2 for error in standard_errors))
    return Difference(difference, difference - 2 * se, difference + 2 * se, test)


def binomial_difference(difference: float, accuracies: Sequence[float], images: int,
                        test: str = "binomial SE") -> Difference:
    """`difference` (a sum of +-`accuracies`) +- 2 standard errors, from the binomial errors of the
    accuracies on `images` test images. It measures test-set noise only, not seed noise; and it treats
    the runs' errors as independent, which overstates the noise of runs scored on the same images."""
    return se_difference(difference, [binomial_se(accuracy, images) for accuracy in accuracies], test)


def accuracy_interval(accuracy: float, images: int) -> tuple[float, float]:
    """The exact (Clopper-Pearson) 95% interval of an accuracy measured on `images` images."""
    result = stats.binomtest(round(accuracy * images), images).proportion_ci(CONFIDENCE)
    return float(result.low), float(result.high)


def against_rate(accuracy: float, images: int, rate: float) -> int:
    """Two-sided: 1 when the accuracy's exact 95% interval lies above `rate`, -1 below, 0 when it holds it."""
    low, high = accuracy_interval(accuracy, images)
    return 1 if low > rate else -1 if high < rate else 0


def single_run_difference(a: float, b: float, images: int) -> Difference:
    """A - B of two single runs' accuracies on the same `images`: the yardstick without replicates."""
    return binomial_difference(a - b, [a, b], images)


def _score_missing(*runs: Mapping[int, float]) -> bool:
    """A seed's score is NaN, or null in its metrics file (None)."""
    return any(not np.isfinite(np.asarray(list(run.values()), dtype=float)).all() for run in runs)


def _mean(values: Mapping[int, float]) -> float:
    return float(np.mean(list(values.values())))


def within_one_image(spread: float, images: int) -> bool:
    """A spread of accuracies (range or standard deviation) below one test image's worth: the seeds
    measured no spread, and a t interval from it would be a point that claims certainty."""
    return spread < 0.5 / images


def _no_spread(values: Sequence[float], images: int) -> bool:
    return within_one_image(float(np.ptp(values)), images)


SEEDS_AGREE = "binomial SE (the seeds agree)"


def compare(a: Mapping[int, float], b: Mapping[int, float], images: int) -> Difference:
    """A - B of one accuracy of two runs, each given per seed of its replicates, by the strongest test the
    replicates allow: paired t when both have the same two or more seeds, else Welch's t when each has
    two or more, else (or when the seeds agree to within an image) +-2 binomial standard errors of the
    difference of their means on `images`. A seed's missing score (NaN or None) gives `MISSING`: a NaN
    difference with no verdict, not "within noise"."""
    if _score_missing(a, b):
        return MISSING
    means = [_mean(a), _mean(b)]
    if set(a) == set(b) and len(a) >= 2:
        seeds = sorted(a)
        if _no_spread([a[seed] - b[seed] for seed in seeds], images):
            return binomial_difference(means[0] - means[1], means, images, SEEDS_AGREE)
        difference = paired_difference([a[seed] for seed in seeds], [b[seed] for seed in seeds])
        return dataclasses.replace(difference, test=f"paired t, {len(seeds)} seeds")
    if len(a) >= 2 and len(b) >= 2:
        if _no_spread(list(a.values()), images) and _no_spread(list(b.values()), images):
            return binomial_difference(means[0] - means[1], means, images, SEEDS_AGREE)
        difference = welch_difference(list(a.values()), list(b.values()))
        return dataclasses.replace(difference, test=f"Welch t, {len(a)} and {len(b)} seeds")
    return binomial_difference(means[0] - means[1], means, images)


def compare_changes(a_changed: Mapping[int, float], a_base: Mapping[int, float], b_changed: Mapping[int, float],
                    b_base: Mapping[int, float], images: int) -> Difference:
    """How much more A's accuracy moves than B's under the same change, (A changed - A base) - (B changed
    - B base), each given per seed: paired t when all four runs have the same two or more seeds, else
    +-2 binomial standard errors of the four means; `MISSING` when a seed's score is missing, as in `compare`."""
    runs = (a_changed, a_base, b_changed, b_base)
    if _score_missing(*runs):
        return MISSING
    means = [_mean(run) for run in runs]
    change = (means[0] - means[1]) - (means[2] - means[3])
    seeds = sorted(a_changed)
    if len(seeds) >= 2 and all(set(run) == set(seeds) for run in runs):
        changes_a = [a_changed[s] - a_base[s] for s in seeds]
        changes_b = [b_changed[s] - b_base[s] for s in seeds]
        if _no_spread([x - y for x, y in zip(changes_a, changes_b)], images):
            return binomial_difference(change, means, images, SEEDS_AGREE)
        return dataclasses.replace(paired_difference(changes_a, changes_b), test=f"paired t, {len(seeds)} seeds")
    return binomial_difference(change, means, images)

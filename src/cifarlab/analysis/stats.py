"""Is a difference real? Estimates over training seeds and test images, with their intervals and tests.

A run's score is one draw twice over: of its training seed (initialisation, data order, augmentation) and
of the test images it is scored on (Bouthillier et al. 2021). Every estimate here is a contrast of runs,
sum_r w_r * (run r's metric), whose variance holds both sources:

    var = var_seed / k  +  var_image / n

where var_seed is the spread over seeds of the per-seed contrast (paired, when every run has the same
seeds) or of each run's own seeds (otherwise), and var_image the spread over the n shared images of the
per-image contrast of seed means. Both sample variances also hold the seed-by-image interaction, once
each, so the sum is slightly conservative. The interval is Student t with Satterthwaite's degrees of
freedom. A run with one seed borrows its study's pooled seed variance (`PooledSeedVariance`); where there
is none, the estimate has no interval and says why. docs/statistics.md derives it; a simulation test
checks its coverage.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
CONFIDENCE = 1 - ALPHA


def _finite(values: Sequence[float], what: str) -> np.ndarray:
    x = np.asarray(values, dtype=float)
    if not np.isfinite(x).all():
        raise ValueError(f"{what}: a value is NaN or infinite ({x.tolist()}); leave missing scores out")
    return x


@dataclass(frozen=True)
class Summary:
    """A metric over a run's replicates, seed noise only (the aggregate stage's per-metric summary)."""

    mean: float
    std: float  # sample standard deviation (ddof=1); nan for one replicate
    count: int
    low: float  # the 95% t interval of the mean over seeds; nan for one replicate
    high: float


def summarize(values: Sequence[float]) -> Summary:
    """Mean, standard deviation and 95% t interval of the mean over replicates. A non-finite value is
    refused: the count would include a missing score."""
    x = _finite(values, "summarize")
    if x.size == 0:
        raise ValueError("no replicates to summarize")
    if x.size == 1:
        return Summary(float(x[0]), math.nan, 1, math.nan, math.nan)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(1 - ALPHA / 2, x.size - 1)) * std / math.sqrt(x.size)
    return Summary(float(x.mean()), std, int(x.size), float(x.mean() - half), float(x.mean() + half))


def accuracy_interval(accuracy: float, images: int) -> tuple[float, float]:
    """The exact (Clopper-Pearson) 95% interval of an accuracy measured on `images` images."""
    result = stats.binomtest(round(accuracy * images), images).proportion_ci(CONFIDENCE)
    return float(result.low), float(result.high)


def against_rate(accuracy: float, images: int, rate: float) -> int:
    """Two-sided: 1 when the accuracy's exact 95% interval lies above `rate`, -1 below, 0 when it holds it."""
    low, high = accuracy_interval(accuracy, images)
    return 1 if low > rate else -1 if high < rate else 0


@dataclass(frozen=True)
class RunSample:
    """One run's metric by seed of its replicates, with what the test images contribute to its noise:
    `per_image` (seed -> the metric's per-image values, on the same images in the same order for every run
    of a contrast, e.g. 1.0 for a right answer) or `image_se` (seed -> the metric's standard error from its
    images). With neither, the metric is a property of the training alone (a time, a share of weights)."""

    by_seed: Mapping[int, float]
    per_image: Mapping[int, np.ndarray] | None = None
    image_se: Mapping[int, float] | None = None

    @property
    def missing(self) -> bool:
        """A seed's value is NaN (or null in its metrics file)."""
        return any(value is None or not math.isfinite(value) for value in self.by_seed.values())

    def seed_variance(self) -> float:
        return float(np.var(list(self.by_seed.values()), ddof=1))


def score_sample(by_seed: Mapping[int, float], right: Mapping[int, np.ndarray] | None, images: int) -> RunSample:
    """A share of images right, by seed: with each seed's per-image right answers where they were kept,
    else each seed's binomial standard error on `images`."""
    if right is not None:
        return RunSample(by_seed, right)
    return RunSample(by_seed, image_se={seed: math.sqrt(max(v, 0) * max(1 - v, 0) / images)
                                        for seed, v in by_seed.items()})


@dataclass(frozen=True)
class PooledSeedVariance:
    """The seed-to-seed variance of a metric pooled over a study's replicated runs, for its runs of one
    seed: sum_r (k_r - 1) s_r^2 / sum_r (k_r - 1), with that many degrees of freedom."""

    variance: float
    df: int
    runs: int

    @staticmethod
    def of(samples: Sequence[RunSample]) -> PooledSeedVariance | None:
        replicated = [s for s in samples if len(s.by_seed) >= 2 and not s.missing]
        df = sum(len(s.by_seed) - 1 for s in replicated)
        if not df:
            return None
        variance = sum((len(s.by_seed) - 1) * s.seed_variance() for s in replicated) / df
        return PooledSeedVariance(variance, df, len(replicated))


@dataclass(frozen=True)
class Estimate:
    """A contrast of runs with its standard error and degrees of freedom, or the reason it has none."""

    mean: float
    se: float
    df: float
    test: str  # how the noise was measured, e.g. "3 paired seeds + 1,017 images, t(2.3)"
    no_interval: str = ""  # why there is no interval (a score missing, no estimate of seed variance)

    @property
    def missing(self) -> bool:
        return bool(self.no_interval)

    def interval(self, confidence: float = CONFIDENCE) -> tuple[float, float]:
        if self.missing:
            return math.nan, math.nan
        half = 0.0 if self.se == 0 else float(stats.t.ppf(0.5 + confidence / 2, self.df)) * self.se
        return self.mean - half, self.mean + half

    @property
    def low(self) -> float:
        return self.interval()[0]

    @property
    def high(self) -> float:
        return self.interval()[1]

    def p_above(self, null: float) -> float:
        """One-sided p of "the contrast is above `null`" (small when the data say so)."""
        if self.missing:
            return math.nan
        if self.se == 0:
            return 0.0 if self.mean > null else 1.0
        return float(stats.t.sf((self.mean - null) / self.se, self.df))

    def p_below(self, null: float) -> float:
        """One-sided p of "the contrast is below `null`"."""
        if self.missing:
            return math.nan
        if self.se == 0:
            return 0.0 if self.mean < null else 1.0
        return float(stats.t.cdf((self.mean - null) / self.se, self.df))

    def p_two_sided(self, null: float = 0.0) -> float:
        return min(1.0, 2 * min(self.p_above(null), self.p_below(null)))

    @property
    def better(self) -> int:
        """1 when the interval lies above 0, -1 below, 0 when it holds 0 or there is none."""
        low, high = self.interval()
        if not (math.isfinite(low) and math.isfinite(high)) or low <= 0.0 <= high:
            return 0
        return 1 if low > 0 else -1


def no_estimate(mean: float, why: str) -> Estimate:
    return Estimate(mean, math.nan, math.nan, "none", why)


def satterthwaite(components: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """The variance of a sum of independent variance estimates (variance, df) and its Welch-Satterthwaite
    degrees of freedom; a component of zero variance adds nothing. A negative component is an estimate
    subtracted (an interaction counted twice); should it outweigh the rest, the sum is floored at its size,
    the variance were there no other source."""
    total = max(sum(v for v, _ in components), sum(-v for v, _ in components if v < 0))
    denominator = sum(v * v / df for v, df in components if v != 0)
    return total, (total * total / denominator if denominator > 0 else math.inf)


def contrast(samples: Sequence[RunSample], weights: Sequence[float],
             pooled: PooledSeedVariance | None = None) -> Estimate:
    """sum_r w_r * mean_r of the runs' metrics, with seed and image noise (see the module's docstring).

    Paired over seeds when every run has the same two seeds or more; else each run's own seed variance, a
    run of one seed taking `pooled`'s; no interval when a run of one seed has no pooled variance to take,
    or a value is missing."""
    if len(samples) != len(weights) or not samples:
        raise ValueError("one weight per run")
    if any(sample.missing for sample in samples):
        return no_estimate(math.nan, "a score is missing")
    estimate = float(sum(w * np.mean(list(s.by_seed.values())) for w, s in zip(weights, samples)))
    seeds = sorted(samples[0].by_seed)
    paired = len(seeds) >= 2 and all(sorted(s.by_seed) == seeds for s in samples)
    counts = sorted({len(s.by_seed) for w, s in zip(weights, samples) if w})
    if not paired and 1 in counts and pooled is None:
        return no_estimate(estimate, "a run of one seed, and no replicated run in its study to estimate seed-to-seed "
                                     "variance from")
    per_image = all(s.per_image is not None and sorted(s.per_image) == sorted(s.by_seed) for s in samples)
    if per_image:
        components = _crossed_components(samples, weights, pooled, paired)
    else:
        components = _seed_components(samples, weights, pooled, paired) + _image_se_components(samples, weights)
    variance, df = satterthwaite(components)
    parts = [f"{len(seeds)} {'paired ' if len(samples) > 1 else ''}seeds" if paired else
             f"{' and '.join(str(c) for c in counts)} seed{'s' if counts != [1] else ''}"]
    if not paired and 1 in counts:
        parts[0] += f" (one seed's variance pooled over {pooled.runs} replicated runs, {pooled.df} df)"
    if per_image:
        parts.append(f"{_images(samples):,} paired images")
    elif any(s.image_se is not None for s in samples):
        parts.append("each run's image SE")
    return Estimate(estimate, math.sqrt(variance), df, " + ".join(parts) + f", t({_df_text(df)})")


def _seed_components(samples: Sequence[RunSample], weights: Sequence[float], pooled: PooledSeedVariance | None,
                     paired: bool) -> list[tuple[float, float]]:
    """The seed-to-seed part: of the per-seed contrast when paired, else of each run's own seeds (or the
    pooled variance for a run of one)."""
    if paired:
        seeds = sorted(samples[0].by_seed)
        per_seed = [sum(w * s.by_seed[seed] for w, s in zip(weights, samples)) for seed in seeds]
        return [(float(np.var(per_seed, ddof=1)) / len(seeds), len(seeds) - 1)]
    components = [(w * w * s.seed_variance() / len(s.by_seed), len(s.by_seed) - 1)
                  for w, s in zip(weights, samples) if w and len(s.by_seed) >= 2]
    return components + _pooled_component(samples, weights, pooled)


def _pooled_component(samples: Sequence[RunSample], weights: Sequence[float],
                      pooled: PooledSeedVariance | None) -> list[tuple[float, float]]:
    """The runs of one seed take the one pooled estimate, so together they are one component of its df."""
    borrowed = sum(w * w for w, s in zip(weights, samples) if w and len(s.by_seed) == 1)
    return [(borrowed * pooled.variance, pooled.df)] if borrowed else []


def _image_se_components(samples: Sequence[RunSample], weights: Sequence[float]) -> list[tuple[float, float]]:
    """Without per-image values: each run's mean square standard error over its seeds (the seeds share their
    images, so that noise does not average out), summed over runs as if independent, which ignores their
    correlation on shared images and counts the seed-by-image interaction twice: conservative."""
    variance = sum(w * w * float(np.mean(np.square(list(s.image_se.values()))))
                   for w, s in zip(weights, samples) if s.image_se is not None)
    return [(variance, math.inf)] if variance else []


def _images(samples: Sequence[RunSample]) -> int:
    sizes = {np.asarray(v).size for s in samples for v in s.per_image.values()}
    if len(sizes) != 1:
        raise ValueError(f"per-image values of different lengths: {sorted(sizes)}")
    return sizes.pop()


def _crossed_components(samples: Sequence[RunSample], weights: Sequence[float], pooled: PooledSeedVariance | None,
                        paired: bool) -> list[tuple[float, float]]:
    """Seeds crossed with images. For a k x n table of per-seed, per-image values (the contrast's when
    paired, each run's own otherwise) the variance of its grand mean is (MS_seed + MS_image - MS_residual)
    / (nk), unbiased for the seed, image and interaction components; unpaired, each run contributes its
    seed and interaction terms and the contrast of seed means one image term."""
    n = _images(samples)
    if paired:
        tables = [(sum(w * _matrix(s) for w, s in zip(weights, samples)), 1.0)]
    else:
        tables = [(_matrix(s), w) for w, s in zip(weights, samples) if w]
    components = [] if paired else _pooled_component(samples, weights, pooled)
    for table, w in tables:
        k = table.shape[0]
        if k == 1:
            continue
        rows, cols = table.mean(axis=1), table.mean(axis=0)
        residual = table - rows[:, None] - cols[None, :] + table.mean()
        ms_residual = float(np.sum(residual ** 2)) / ((k - 1) * (n - 1))
        components += [(w * w * float(np.var(rows, ddof=1)) / k, k - 1),
                       (-w * w * ms_residual / (n * k), (k - 1) * (n - 1))]
    columns = sum(w * table.mean(axis=0) for table, w in tables)
    components.append((float(np.var(columns, ddof=1)) / n, n - 1))
    return components


def _matrix(sample: RunSample) -> np.ndarray:
    return np.stack([np.asarray(sample.per_image[seed], dtype=float) for seed in sorted(sample.per_image)])


def _df_text(df: float) -> str:
    return "inf" if math.isinf(df) else f"{df:.1f}" if df < 100 else f"{df:,.0f}"

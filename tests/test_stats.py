"""cifarlab.analysis.stats: estimates over seeds and test images, against SciPy, sums of squares written out
by hand, and simulated studies whose true effect is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from cifarlab.analysis.stats import (
    Estimate,
    PooledSeedVariance,
    RunSample,
    contrast,
    satterthwaite,
    summarize,
)


def test_summary_of_three_replicates_is_mean_sample_std_and_the_t_interval():
    s = summarize([0.5, 0.6, 0.7])
    assert (s.mean, s.count) == (pytest.approx(0.6), 3) and s.std == pytest.approx(0.1)
    low, high = stats.t.interval(0.95, 2, loc=0.6, scale=0.1 / math.sqrt(3))
    assert (s.low, s.high) == (pytest.approx(low), pytest.approx(high))


def test_one_replicate_has_a_mean_and_no_spread():
    s = summarize([0.4])
    assert s.mean == 0.4 and s.count == 1 and all(math.isnan(v) for v in (s.std, s.low, s.high))


def test_summaries_refuse_a_missing_score():
    with pytest.raises(ValueError, match="NaN"):
        summarize([0.5, math.nan])


def test_a_training_metric_paired_over_seeds_is_scipys_paired_t():
    a, b = [10.0, 12.0, 11.5], [9.0, 9.5, 10.5]
    estimate = contrast([RunSample(dict(enumerate(a))), RunSample(dict(enumerate(b)))], [1, -1])
    reference = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert estimate.interval() == (pytest.approx(reference.low), pytest.approx(reference.high))
    assert estimate.df == 2 and "3 paired seeds" in estimate.test


def test_a_training_metric_over_different_seeds_is_scipys_welch_t():
    a, b = {0: 10.0, 1: 12.0, 2: 11.5}, {3: 9.0, 4: 9.5}
    estimate = contrast([RunSample(a), RunSample(b)], [1, -1])
    reference = stats.ttest_ind(list(a.values()), list(b.values()), equal_var=False).confidence_interval(0.95)
    assert estimate.interval() == (pytest.approx(reference.low), pytest.approx(reference.high))


def test_one_run_over_its_seeds_is_the_t_interval_of_its_mean():
    values = [0.5, 0.55, 0.61, 0.58]
    estimate = contrast([RunSample(dict(enumerate(values)))], [1])
    summary = summarize(values)
    assert estimate.interval() == (pytest.approx(summary.low), pytest.approx(summary.high))


def _crossed_by_hand(table: np.ndarray) -> float:
    """Var of the grand mean of a seeds x images table: (MS_seed + MS_image - MS_residual) / (nk), with each
    mean square summed out in loops."""
    k, n = table.shape
    grand = sum(sum(row) for row in table) / (k * n)
    rows = [sum(row) / n for row in table]
    cols = [sum(table[s][i] for s in range(k)) / k for i in range(n)]
    ms_seed = n * sum((r - grand) ** 2 for r in rows) / (k - 1)
    ms_image = k * sum((c - grand) ** 2 for c in cols) / (n - 1)
    ms_residual = sum((table[s][i] - rows[s] - cols[i] + grand) ** 2 for s in range(k) for i in range(n)) \
        / ((k - 1) * (n - 1))
    return (ms_seed + ms_image - ms_residual) / (n * k)


def test_a_paired_accuracy_difference_has_the_crossed_variance_of_its_per_seed_per_image_table():
    rng = np.random.default_rng(0)
    a = (rng.random((3, 40)) < 0.7).astype(float)
    b = (rng.random((3, 40)) < 0.5).astype(float)
    samples = [RunSample({s: a[s].mean() for s in range(3)}, {s: a[s] for s in range(3)}),
               RunSample({s: b[s].mean() for s in range(3)}, {s: b[s] for s in range(3)})]
    estimate = contrast(samples, [1, -1])
    assert estimate.mean == pytest.approx(a.mean() - b.mean())
    assert estimate.se ** 2 == pytest.approx(_crossed_by_hand(a - b))
    assert "3 paired seeds + 40 paired images" in estimate.test


def test_a_difference_of_changes_is_the_crossed_variance_of_the_four_runs_contrast():
    rng = np.random.default_rng(1)
    tables = [(rng.random((2, 30)) < p).astype(float) for p in (0.6, 0.5, 0.55, 0.45)]
    samples = [RunSample({s: t[s].mean() for s in range(2)}, {s: t[s] for s in range(2)}) for t in tables]
    estimate = contrast(samples, [1, -1, -1, 1])
    combined = tables[0] - tables[1] - tables[2] + tables[3]
    assert estimate.mean == pytest.approx(combined.mean())
    assert estimate.se ** 2 == pytest.approx(_crossed_by_hand(combined))


def test_swapping_a_and_b_negates_the_estimate_and_keeps_its_noise():
    rng = np.random.default_rng(2)
    a, b = ((rng.random((3, 2000)) < p).astype(float) for p in (0.7, 0.4))
    sa = RunSample({s: a[s].mean() for s in range(3)}, {s: a[s] for s in range(3)})
    sb = RunSample({s: b[s].mean() for s in range(3)}, {s: b[s] for s in range(3)})
    ab, ba = contrast([sa, sb], [1, -1]), contrast([sb, sa], [1, -1])
    assert ba.mean == pytest.approx(-ab.mean) and ba.se == pytest.approx(ab.se)
    assert ab.better == 1 and ba.better == -1


def test_one_seed_without_pooled_seed_variance_gets_no_interval_and_says_why():
    one = RunSample({0: 0.5}, {0: np.array([1.0, 0.0, 1.0, 0.0])})
    estimate = contrast([one, one], [1, -1])
    assert estimate.missing and "no replicated run" in estimate.no_interval
    assert math.isnan(estimate.low) and estimate.better == 0


def test_one_seed_borrows_the_pooled_seed_variance_and_says_so():
    pooled = PooledSeedVariance.of([RunSample({0: 0.50, 1: 0.54, 2: 0.52}), RunSample({0: 0.30, 1: 0.36})])
    assert pooled.df == 3 and pooled.runs == 2
    assert pooled.variance == pytest.approx((2 * 0.0004 + 1 * 0.0018) / 3)
    estimate = contrast([RunSample({0: 0.6}), RunSample({0: 0.5})], [1, -1], pooled)
    assert estimate.se ** 2 == pytest.approx(2 * pooled.variance)
    assert estimate.df == pytest.approx(3) and "pooled over 2 replicated runs, 3 df" in estimate.test


def test_image_standard_errors_add_each_runs_mean_square_error():
    a = RunSample({0: 1.0, 1: 1.2}, image_se={0: 0.03, 1: 0.05})
    b = RunSample({0: 0.9, 1: 1.0}, image_se={0: 0.04, 1: 0.04})
    estimate = contrast([a, b], [1, -1])
    seed_part = np.var([0.1, 0.2], ddof=1) / 2
    image_part = (0.03 ** 2 + 0.05 ** 2) / 2 + 0.04 ** 2
    assert estimate.se ** 2 == pytest.approx(seed_part + image_part)


def test_a_missing_score_gives_no_interval_rather_than_within_noise():
    estimate = contrast([RunSample({0: 0.5, 1: math.nan}), RunSample({0: 0.4, 1: 0.5})], [1, -1])
    assert estimate.missing and estimate.no_interval == "a score is missing" and estimate.better == 0


def test_satterthwaite_degrees_of_freedom_match_welchs_formula():
    v1, v2 = 0.3 / 4, 0.5 / 6
    total, df = satterthwaite([(v1, 3), (v2, 5)])
    assert total == pytest.approx(v1 + v2)
    assert df == pytest.approx((v1 + v2) ** 2 / (v1 ** 2 / 3 + v2 ** 2 / 5))


def test_a_subtracted_component_never_leaves_a_variance_below_its_own_size():
    total, _ = satterthwaite([(0.1, 2), (0.05, 9), (-0.3, 18)])
    assert total == pytest.approx(0.3)


@pytest.mark.parametrize("mean, se, null, above, below", [
    (1.0, 0.5, 0.0, stats.t.sf(2.0, 4), stats.t.cdf(2.0, 4)),
    (-0.2, 0.1, -0.5, stats.t.sf(3.0, 4), stats.t.cdf(3.0, 4)),
])
def test_one_sided_p_values_are_students_t_tails(mean, se, null, above, below):
    estimate = Estimate(mean, se, 4, "")
    assert estimate.p_above(null) == pytest.approx(above) and estimate.p_below(null) == pytest.approx(below)
    assert estimate.p_two_sided(null) == pytest.approx(2 * min(above, below))


def test_an_estimate_without_noise_is_certain_on_either_side_of_its_mean():
    estimate = Estimate(0.3, 0.0, math.inf, "")
    assert estimate.interval() == (0.3, 0.3)
    assert (estimate.p_above(0.2), estimate.p_below(0.2), estimate.p_above(0.4)) == (0.0, 1.0, 1.0)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 1), st.floats(0, 1)), min_size=2, max_size=5))
def test_swapping_a_and_b_mirrors_every_training_metric_comparison(pairs):
    a = RunSample({s: x for s, (x, _) in enumerate(pairs)})
    b = RunSample({s: y for s, (_, y) in enumerate(pairs)})
    ab, ba = contrast([a, b], [1, -1]), contrast([b, a], [1, -1])
    assert ba.mean == pytest.approx(-ab.mean, abs=1e-12)
    if not ab.missing:
        assert ba.low == pytest.approx(-ab.high, abs=1e-9) and ba.better == -ab.better


def _simulated_study(rng: np.random.Generator, seeds: int, images: int, effect: float, seed_sd: float,
                     image_sd: float) -> list[RunSample]:
    """Two runs scored on a fresh test set: image i's chance of a right answer is its difficulty, plus the
    run's effect and an image-specific part of it, plus a seed's offset; the true A - B is `effect`."""
    difficulty = rng.uniform(0.25, 0.75, images)
    specific = rng.normal(0, image_sd, images)
    samples = []
    for run_effect in (effect + specific, 0.0):
        right = {s: (rng.random(images) < np.clip(difficulty + run_effect + rng.normal(0, seed_sd), 0, 1))
                 .astype(float) for s in range(seeds)}
        samples.append(RunSample({s: v.mean() for s, v in right.items()}, right))
    return samples


@pytest.mark.parametrize("seed_sd, image_sd", [(0.03, 0.0), (0.01, 0.15), (0.0, 0.0)])
def test_intervals_of_simulated_studies_cover_the_true_effect_95_percent_of_the_time(seed_sd, image_sd):
    """400 studies of three seeds on 600 images: coverage within three binomial standard errors of 95%
    (+-3.3 points) below, and at most 99.5% (the estimator is conservative where seeds barely differ)."""
    rng = np.random.default_rng(7)
    studies, effect = 400, 0.03
    covered = sum(low <= effect <= high for low, high in
                  (contrast(_simulated_study(rng, 3, 600, effect, seed_sd, image_sd), [1, -1]).interval()
                   for _ in range(studies)))
    tolerance = 3 * math.sqrt(0.95 * 0.05 / studies)
    assert 0.95 - tolerance <= covered / studies <= 0.995


def test_intervals_of_test_noise_alone_would_miss_the_effect_when_seeds_differ():
    """The yardstick this replaces: +-2 binomial standard errors of the test images. Where seeds move
    accuracy by 3 points it covers the true effect far less than 95% of the time; ours does not."""
    rng = np.random.default_rng(8)
    studies, effect, misses_binomial, misses_ours = 300, 0.03, 0, 0
    for _ in range(studies):
        a, b = _simulated_study(rng, 1, 600, effect, 0.03, 0.0)
        diff = a.by_seed[0] - b.by_seed[0]
        se = math.sqrt(sum(p * (1 - p) / 600 for p in (a.by_seed[0], b.by_seed[0])))
        misses_binomial += not (diff - 2 * se <= effect <= diff + 2 * se)
        low, high = contrast(_simulated_study(rng, 3, 600, effect, 0.03, 0.0), [1, -1]).interval()
        misses_ours += not (low <= effect <= high)
    assert misses_binomial / studies > 0.15 and misses_ours / studies < 0.085

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
    _df_text,
    accuracy_interval,
    against_rate,
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


# Exact intervals of one accuracy, and a run's place against the majority-class rate

def test_an_accuracys_interval_is_clopper_pearsons_from_the_beta_quantiles():
    low, high = accuracy_interval(0.7, 10)
    assert (low, high) == (pytest.approx(stats.beta.ppf(0.025, 7, 4)), pytest.approx(stats.beta.ppf(0.975, 8, 3)))


def test_a_run_is_above_or_below_a_rate_only_when_its_exact_interval_clears_it():
    low, high = accuracy_interval(0.3, 200)
    assert [against_rate(0.3, 200, rate) for rate in (low - 1e-9, low, high, high + 1e-9)] == [1, 0, 0, -1]
    assert against_rate(0.3, 200, 0.1) == 1 and against_rate(0.3, 200, 0.5) == -1


# summarize and the one-sided tests at their edges

def test_two_replicates_are_enough_for_a_spread_and_none_are_refused():
    s = summarize([0.5, 0.7])
    assert s.count == 2 and s.std == pytest.approx(math.sqrt(0.02))
    assert s.high - s.mean == pytest.approx(stats.t.ppf(0.975, 1) * math.sqrt(0.02) / math.sqrt(2))
    with pytest.raises(ValueError, match="no replicates"):
        summarize([])


def test_a_null_score_is_refused_as_a_missing_one():
    with pytest.raises(ValueError, match="NaN"):
        summarize([0.5, None])


def test_a_noiseless_estimate_at_its_null_is_neither_above_nor_below_it():
    estimate = Estimate(0.3, 0.0, math.inf, "")
    assert (estimate.p_above(0.3), estimate.p_below(0.3), estimate.p_two_sided(0.3)) == (1.0, 1.0, 1.0)
    assert (estimate.p_below(0.4), estimate.p_above(0.2)) == (0.0, 0.0)


def test_the_two_sided_p_is_against_zero_by_default_and_a_unit_se_still_has_a_width():
    estimate = Estimate(0.2, 1.0, 10, "")
    assert estimate.p_two_sided() == pytest.approx(2 * stats.t.sf(0.2, 10))
    half = stats.t.ppf(0.975, 10)
    assert estimate.interval() == (pytest.approx(0.2 - half), pytest.approx(0.2 + half))


def test_a_missing_estimate_has_no_mean_se_or_degrees_of_freedom():
    estimate = contrast([RunSample({0: 0.5, 1: math.nan}), RunSample({0: 0.4, 1: 0.5})], [1, -1])
    assert all(math.isnan(v) for v in (estimate.mean, estimate.se, estimate.df)) and estimate.test == "none"
    assert all(math.isnan(v) for v in (estimate.p_above(0), estimate.p_below(0)))


def test_a_contrast_needs_one_weight_per_run_and_equally_long_per_image_values():
    a = RunSample({0: 0.5, 1: 0.6})
    with pytest.raises(ValueError, match="one weight per run"):
        contrast([a], [1, -1])
    with pytest.raises(ValueError, match="one weight per run"):
        contrast([], [])
    short = RunSample({0: 0.5, 1: 0.5}, {0: np.array([1.0, 0.0]), 1: np.array([0.0, 1.0])})
    long = RunSample({0: 0.5, 1: 0.5}, {0: np.array([1.0, 0.0, 1.0, 0.0]), 1: np.array([0.0, 1.0, 0.0, 1.0])})
    with pytest.raises(ValueError, match=r"different lengths: \[2, 4\]"):
        contrast([short, long], [1, -1])


def test_satterthwaite_counts_a_component_of_exactly_one():
    total, df = satterthwaite([(1.0, 4), (0.5, 2)])
    assert (total, df) == (pytest.approx(1.5), pytest.approx(1.5 ** 2 / (1.0 / 4 + 0.25 / 2)))


def test_pooling_leaves_out_a_run_with_a_missing_score_and_a_run_of_one_seed():
    pooled = PooledSeedVariance.of([RunSample({0: 0.50, 1: 0.54, 2: 0.52}), RunSample({0: 0.3, 1: math.nan}),
                                    RunSample({0: 0.9})])
    assert (pooled.df, pooled.runs) == (2, 1) and pooled.variance == pytest.approx(0.0004)
    assert PooledSeedVariance.of([RunSample({0: 0.9}), RunSample({1: 0.8})]) is None


# How each estimate says what its noise rests on

def _per_image(table: np.ndarray, seeds: list[int] | None = None) -> RunSample:
    seeds = list(range(len(table))) if seeds is None else seeds
    return RunSample({s: float(row.mean()) for s, row in zip(seeds, table)}, dict(zip(seeds, table)))


def test_the_test_column_names_seeds_images_and_degrees_of_freedom():
    a, b = [10.0, 12.0, 11.5], [9.0, 9.5, 10.5]
    paired = contrast([RunSample(dict(enumerate(a))), RunSample(dict(enumerate(b)))], [1, -1])
    assert paired.test == "3 paired seeds, t(2.0)"
    assert contrast([RunSample(dict(enumerate(a)))], [1]).test == "3 seeds, t(2.0)"
    welch = contrast([RunSample(dict(enumerate(a))), RunSample({5: 9.0, 6: 9.5})], [1, -1])
    assert welch.test == f"2 and 3 seeds, t({welch.df:.1f})"
    with_se = contrast([RunSample({0: 1.0, 1: 1.2}, image_se={0: 0.03, 1: 0.05}),
                        RunSample({0: 0.9, 1: 1.0}, image_se={0: 0.04, 1: 0.04})], [1, -1])
    assert with_se.test == f"2 paired seeds + each run's image SE, t({with_se.df:.1f})"
    rng = np.random.default_rng(4)
    one = contrast([_per_image((rng.random((3, 1200)) < 0.6).astype(float))], [1])
    assert one.test == f"3 seeds + 1,200 paired images, t({one.df:.1f})"


@pytest.mark.parametrize(("df", "text"), [(math.inf, "inf"), (2.44, "2.4"), (99.94, "99.9"), (100.0, "100"),
                                          (1017.4, "1,017")])
def test_degrees_of_freedom_read_to_a_tenth_below_100_and_whole_above(df, text):
    assert _df_text(df) == text


def _mean_squares(table: np.ndarray) -> tuple[float, float]:
    """(MS_seed, MS_residual) of a seeds x images table, summed out in loops."""
    k, n = table.shape
    grand = sum(sum(row) for row in table) / (k * n)
    rows = [sum(row) / n for row in table]
    cols = [sum(table[s][i] for s in range(k)) / k for i in range(n)]
    ms_seed = n * sum((r - grand) ** 2 for r in rows) / (k - 1)
    ms_residual = sum((table[s][i] - rows[s] - cols[i] + grand) ** 2 for s in range(k) for i in range(n)) \
        / ((k - 1) * (n - 1))
    return ms_seed, ms_residual


def _satterthwaite_by_hand(components: list[tuple[float, float]]) -> tuple[float, float]:
    total = sum(v for v, _ in components)
    return total, total ** 2 / sum(v ** 2 / df for v, df in components)


def test_a_paired_accuracy_differences_degrees_of_freedom_are_satterthwaites_for_its_three_mean_squares():
    rng = np.random.default_rng(8)  # seeds that differ enough that the interaction needs no floor
    a, b = ((rng.random((3, 50)) < p).astype(float) for p in (0.7, 0.5))
    d = a - b
    k, n = d.shape
    ms_seed, ms_residual = _mean_squares(d)
    cols = d.mean(axis=0)
    ms_image = k * sum((c - cols.mean()) ** 2 for c in cols) / (n - 1)
    components = [(ms_seed / (n * k), k - 1), (ms_image / (n * k), n - 1), (-ms_residual / (n * k), (k - 1) * (n - 1))]
    variance, df = _satterthwaite_by_hand(components)
    estimate = contrast([_per_image(a), _per_image(b)], [1, -1])
    assert (estimate.se ** 2, estimate.df) == (pytest.approx(variance), pytest.approx(df))


def test_a_run_of_one_seed_against_a_replicated_run_on_the_same_images_borrows_the_pooled_variance():
    """Unpaired: the run of one seed takes the pooled seed variance; the replicated run its own seed and
    interaction terms; the contrast of their seed means one image term."""
    rng = np.random.default_rng(6)
    one = (rng.random((1, 40)) < 0.6).astype(float)
    three = (rng.random((3, 40)) < 0.5).astype(float)
    pooled = PooledSeedVariance(0.0004, 4, 2)
    estimate = contrast([_per_image(one, [0]), _per_image(three, [0, 1, 2])], [1, -1], pooled)
    ms_seed, ms_residual = _mean_squares(three)
    columns = one[0] - three.mean(axis=0)
    image = sum((c - columns.mean()) ** 2 for c in columns) / 39 / 40
    variance, df = _satterthwaite_by_hand([(0.0004, 4), (ms_seed / 120, 2), (-ms_residual / 120, 2 * 39), (image, 39)])
    assert estimate.mean == pytest.approx(one.mean() - three.mean())
    assert (estimate.se ** 2, estimate.df) == (pytest.approx(variance), pytest.approx(df))
    assert estimate.test == (f"1 and 3 seeds (one seed's variance pooled over 2 replicated runs, 4 df) + 40 paired "
                             f"images, t({df:.1f})")


# Properties every contrast keeps, on each path the noise can take

def _samples(path: str, rng: np.random.Generator) -> tuple[list[RunSample], PooledSeedVariance | None]:
    """Two runs of made-up scores whose noise takes `path`: paired per-image answers, a run of one seed
    against three on the same images, image standard errors, or a training metric over different seeds."""
    if path == "paired images":
        return [_per_image((rng.random((3, 30)) < p).astype(float)) for p in (0.6, 0.4)], None
    if path == "one seed pooled":
        return [_per_image((rng.random((1, 30)) < 0.6).astype(float), [0]),
                _per_image((rng.random((3, 30)) < 0.4).astype(float), [0, 1, 2])], PooledSeedVariance(0.001, 4, 2)
    if path == "image se":
        return [RunSample({s: float(v) for s, v in enumerate(rng.uniform(1, 2, 3))},
                          image_se={s: float(v) for s, v in enumerate(rng.uniform(0.01, 0.05, 3))})
                for _ in range(2)], None
    return [RunSample({s: float(v) for s, v in zip(seeds, rng.uniform(5, 10, len(seeds)))})
            for seeds in ([0, 1, 2], [3, 4])], None


PATHS = ["paired images", "one seed pooled", "image se", "welch"]


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2 ** 32 - 1), st.floats(0.25, 4).filter(lambda x: abs(x - 1) > 0.1), st.sampled_from([1, -1]))
def test_a_contrasts_estimate_and_standard_error_scale_with_its_weights(path, seed, scale, sign):
    samples, pooled = _samples(path, np.random.default_rng(seed))
    base, scaled = contrast(samples, [1, -1], pooled), contrast(samples, [sign * scale, -sign * scale], pooled)
    assert scaled.mean == pytest.approx(sign * scale * base.mean, rel=1e-9, abs=1e-12)
    assert scaled.se == pytest.approx(scale * base.se, rel=1e-9) and scaled.df == pytest.approx(base.df, rel=1e-9)


@pytest.mark.parametrize("path", PATHS)
@settings(max_examples=5, deadline=None)
@given(st.integers(0, 2 ** 32 - 1))
def test_swapping_a_and_b_negates_the_estimate_on_every_path_and_keeps_its_noise(path, seed):
    (a, b), pooled = _samples(path, np.random.default_rng(seed))
    ab, ba = contrast([a, b], [1, -1], pooled), contrast([b, a], [1, -1], pooled)
    assert ba.mean == pytest.approx(-ab.mean, abs=1e-12)
    assert (ba.se, ba.df) == (pytest.approx(ab.se), pytest.approx(ab.df)) and ba.test == ab.test


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 100), st.floats(0, 100), st.floats(-50, 50)), min_size=2, max_size=5))
def test_a_seeds_luck_shared_by_both_runs_leaves_their_paired_difference_unchanged(rows):
    """Adding a seed's own constant to both runs (a faster machine for that seed, say) changes nothing."""
    a = RunSample({s: x for s, (x, _, _) in enumerate(rows)})
    b = RunSample({s: y for s, (_, y, _) in enumerate(rows)})
    shifted_a = RunSample({s: x + c for s, (x, _, c) in enumerate(rows)})
    shifted_b = RunSample({s: y + c for s, (_, y, c) in enumerate(rows)})
    plain, shifted = contrast([a, b], [1, -1]), contrast([shifted_a, shifted_b], [1, -1])
    assert shifted.mean == pytest.approx(plain.mean, abs=1e-9)
    assert shifted.se == pytest.approx(plain.se, rel=1e-6, abs=1e-9)

"""cifarlab.analysis.stats: replicate statistics against hand-computed values (t quantiles from tables) and
SciPy's formulas."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from cifarlab.analysis.stats import (
    Difference,
    binomial_se,
    compare,
    compare_changes,
    paired_difference,
    single_run_difference,
    summarize,
    welch_difference,
)

T_975_2 = 4.302653  # Student t, 97.5% quantile, 2 degrees of freedom (table value)


def test_summary_of_three_replicates_is_mean_sample_std_and_the_t_interval():
    s = summarize([0.5, 0.6, 0.7])
    assert (s.mean, s.count) == (pytest.approx(0.6), 3)
    assert s.std == pytest.approx(0.1)  # ddof=1: sqrt((0.01 + 0 + 0.01) / 2)
    half = T_975_2 * 0.1 / math.sqrt(3)
    assert (s.low, s.high) == (pytest.approx(0.6 - half, abs=1e-6), pytest.approx(0.6 + half, abs=1e-6))


def test_one_replicate_has_a_mean_and_no_spread():
    s = summarize([0.42])
    assert s.mean == 0.42 and s.count == 1
    assert math.isnan(s.std) and math.isnan(s.low) and math.isnan(s.high)


def test_identical_replicates_have_zero_spread_and_a_point_interval():
    s = summarize([0.3, 0.3, 0.3])
    assert (s.mean, s.std, s.low, s.high) == (pytest.approx(0.3), 0.0, pytest.approx(0.3), pytest.approx(0.3))


def test_paired_difference_uses_the_per_seed_differences():
    d = paired_difference([0.6, 0.7, 0.8], [0.5, 0.65, 0.7])  # differences 0.1, 0.05, 0.1
    half = T_975_2 * (0.05 / math.sqrt(3)) / math.sqrt(3)  # their std is 0.05/sqrt(3)
    assert d.mean == pytest.approx(0.25 / 3)
    assert (d.low, d.high) == (pytest.approx(0.25 / 3 - half, abs=1e-6), pytest.approx(0.25 / 3 + half, abs=1e-6))
    assert d.test == "paired t" and d.verdict("A", "B") == "A better"


def test_pairing_finds_a_consistent_gap_that_seed_to_seed_spread_would_hide():
    a, b = [0.50, 0.60, 0.70], [0.49, 0.59, 0.69]  # B always 1 point lower, seeds vary by 10 points
    assert paired_difference(a, b).verdict("A", "B") == "A better"
    assert welch_difference(a, b).verdict("A", "B") == "within noise"


def test_welch_difference_matches_its_formula():
    x, y = [0.5, 0.6, 0.7], [0.4, 0.45, 0.5]
    vx, vy = 0.01 / 3, 0.0025 / 3  # variance of each mean
    df = (vx + vy) ** 2 / (vx ** 2 / 2 + vy ** 2 / 2)  # Welch-Satterthwaite
    half = stats.t.ppf(0.975, df) * math.sqrt(vx + vy)
    d = welch_difference(x, y)
    assert d.mean == pytest.approx(0.15)
    assert (d.low, d.high) == (pytest.approx(0.15 - half), pytest.approx(0.15 + half))
    assert d.test == "Welch t"


def test_identical_replicates_give_a_point_difference():
    assert paired_difference([0.3, 0.3], [0.3, 0.3]).verdict("A", "B") == "within noise"
    d = welch_difference([0.4, 0.4], [0.3, 0.3])
    assert (d.low, d.high) == (pytest.approx(0.1), pytest.approx(0.1)) and d.verdict("A", "B") == "A better"


def test_one_replicate_each_falls_back_to_twice_the_binomial_standard_error():
    assert binomial_se(0.5, 1000) == pytest.approx(math.sqrt(0.25 / 1000))
    d = single_run_difference(0.52, 0.50, 1000)
    se = math.sqrt(0.52 * 0.48 / 1000 + 0.25 / 1000)  # 0.0223
    assert (d.low, d.high) == (pytest.approx(0.02 - 2 * se), pytest.approx(0.02 + 2 * se))
    assert d.test == "binomial SE" and d.verdict("A", "B") == "within noise"  # 2 points on 1,000 images


@pytest.mark.parametrize(("low", "high", "expected"), [(-0.01, 0.02, "within noise"), (0.01, 0.02, "A better"),
                                                        (-0.02, -0.01, "B better")])
def test_the_verdict_reads_the_interval(low, high, expected):
    assert Difference(0.0, low, high, "paired t").verdict("A", "B") == expected


@pytest.mark.parametrize(("mean", "low", "high"), [(math.nan, math.nan, math.nan), (0.0, math.nan, math.nan),
                                                   (math.nan, -0.01, 0.02)])
def test_a_difference_with_a_missing_number_has_no_verdict_rather_than_within_noise(mean, low, high):
    d = Difference(mean, low, high, "paired t")
    assert d.verdict("A", "B") == "no verdict (a score is missing)"
    assert d.missing and d.better == 0


def test_too_few_replicates_for_an_interval_are_refused():
    with pytest.raises(ValueError):
        paired_difference([0.5], [0.4])
    with pytest.raises(ValueError):
        welch_difference([0.5], [0.4, 0.3])


def test_compare_pairs_replicates_that_have_the_same_seeds():
    a, b = {0: 0.50, 1: 0.60, 2: 0.70}, {2: 0.69, 0: 0.48, 1: 0.59}
    d = compare(a, b, images=1000)
    reference = stats.ttest_rel([0.50, 0.60, 0.70], [0.48, 0.59, 0.69]).confidence_interval(0.95)
    assert (d.low, d.high) == (pytest.approx(reference.low), pytest.approx(reference.high))
    assert d.test == "paired t, 3 seeds" and d.verdict("A", "B") == "within noise"  # 2, 1, 1 points: t is wide


def test_compare_uses_welch_when_the_seed_sets_differ():
    a, b = {0: 0.5, 1: 0.6, 2: 0.7}, {0: 0.4, 1: 0.45, 5: 0.5}  # two shared seeds are not a pairing of all
    d = compare(a, b, images=1000)
    reference = stats.ttest_ind([0.5, 0.6, 0.7], [0.4, 0.45, 0.5], equal_var=False).confidence_interval(0.95)
    assert (d.mean, d.low, d.high) == (pytest.approx(0.15), pytest.approx(reference.low), pytest.approx(reference.high))
    assert d.test == "Welch t, 3 and 3 seeds"


def test_compare_of_single_runs_gives_the_binomial_interval_of_the_difference():
    d = compare({0: 0.52}, {0: 0.50}, images=1000)
    assert d == single_run_difference(0.52, 0.50, 1000)
    assert compare({0: 0.52, 1: 0.54}, {0: 0.50}, images=1000) == single_run_difference(0.53, 0.50, 1000)


def test_seeds_that_agree_to_the_image_fall_back_to_the_binomial_interval_instead_of_a_certain_verdict():
    # one image in 100 better on both seeds: a paired t interval would be the point +1.00 and say "A better"
    d = compare({0: 0.61, 1: 0.71}, {0: 0.60, 1: 0.70}, images=100)
    assert d.test == "binomial SE (the seeds agree)" and d.verdict("A", "B") == "within noise"
    se = math.sqrt(0.66 * 0.34 / 100 + 0.65 * 0.35 / 100)
    assert (d.low, d.high) == (pytest.approx(0.01 - 2 * se), pytest.approx(0.01 + 2 * se))
    assert compare({0: 0.6, 1: 0.6}, {2: 0.5, 3: 0.5}, images=100).test == "binomial SE (the seeds agree)"


def test_a_change_compared_across_two_runs_is_paired_by_seed():
    # batch 8 vs 128: gn moves by +1 and +3 points, bn by -5 and -2
    gn8, gn128, bn8, bn128 = {0: 0.56, 1: 0.60}, {0: 0.55, 1: 0.57}, {0: 0.50, 1: 0.56}, {0: 0.55, 1: 0.58}
    d = compare_changes(gn8, gn128, bn8, bn128, images=1000)
    reference = stats.ttest_rel([0.01, 0.03], [-0.05, -0.02]).confidence_interval(0.95)
    assert d.mean == pytest.approx(0.055)
    assert (d.low, d.high) == (pytest.approx(reference.low), pytest.approx(reference.high))
    assert d.test == "paired t, 2 seeds"


def test_a_change_of_single_runs_has_the_binomial_error_of_all_four():
    accuracies = (0.54, 0.55, 0.50, 0.60)
    d = compare_changes(*({0: a} for a in accuracies), images=1000)
    se = math.sqrt(sum(a * (1 - a) / 1000 for a in accuracies))
    assert d.mean == pytest.approx(0.09)
    assert (d.low, d.high, d.test) == (pytest.approx(0.09 - 2 * se), pytest.approx(0.09 + 2 * se), "binomial SE")


ROUNDED = [0.09999999999999998, 0.10000000000000003]  # 0.1 twice, rounded two ways by float arithmetic


@pytest.mark.filterwarnings("error")  # asked, SciPy warns of precision loss and returns an interval 7e-16 wide
def test_paired_differences_that_differ_only_by_rounding_give_the_point_interval():
    a, b = [0.7, 0.4], [0.6, 0.3]
    assert [x - y for x, y in zip(a, b)] == ROUNDED
    d = paired_difference(a, b)
    assert d.low == d.high == d.mean == pytest.approx(0.1)


@pytest.mark.filterwarnings("error")
def test_welch_samples_that_differ_only_by_rounding_give_the_point_interval():
    d = welch_difference(ROUNDED, [0.05, 0.05])
    assert d.low == d.high == d.mean == pytest.approx(0.05)


def test_replicates_that_differ_only_by_rounding_have_zero_spread():
    s = summarize([*ROUNDED, 0.1])
    assert s.std == 0.0 and s.low == s.high == s.mean == pytest.approx(0.1)


def test_a_spread_of_one_image_in_ten_thousand_is_not_rounding():
    assert paired_difference([0.7, 0.4001], [0.6, 0.3]).low < 0.1
    assert summarize([0.1, 0.1001]).std > 0.0
    assert welch_difference([0.1, 0.1001], [0.05, 0.0501]).low < 0.05


@pytest.mark.parametrize(("a", "b"), [({0: math.nan, 1: 0.5}, {0: 0.4, 1: 0.41}),  # would be paired
                                      ({0: 0.5, 1: 0.6}, {2: 0.4, 3: math.nan}),  # would be Welch
                                      ({0: math.nan}, {0: 0.4}),  # would be binomial
                                      ({0: None, 1: 0.5}, {0: 0.4, 1: 0.41})])  # null in the metrics file
def test_a_comparison_with_a_missing_score_says_so_instead_of_within_noise(a, b):
    d = compare(a, b, images=1000)
    assert math.isnan(d.mean) and d.test == "none (a score is missing)"
    assert d.verdict("A", "B") == "no verdict (a score is missing)"


@pytest.mark.parametrize("seeds", [[0], [0, 1]])
def test_a_change_with_a_missing_score_says_so_instead_of_within_noise(seeds):
    runs = [{seed: 0.5 + 0.01 * seed + 0.02 * i for seed in seeds} for i in range(4)]
    runs[2][0] = math.nan
    d = compare_changes(*runs, images=1000)
    assert math.isnan(d.mean) and d.verdict("A", "B") == "no verdict (a score is missing)"


@pytest.mark.parametrize("missing", [math.nan, math.inf])
def test_the_interval_functions_refuse_a_missing_score(missing):
    with pytest.raises(ValueError, match="NaN or infinite"):
        paired_difference([0.5, missing], [0.4, 0.3])
    with pytest.raises(ValueError, match="NaN or infinite"):
        welch_difference([0.5, 0.6], [missing, 0.3])
    with pytest.raises(ValueError, match="NaN or infinite"):
        summarize([0.5, missing, 0.6])

"""cifarlab.report.findings and config.relations: each verdict rule at its boundaries, Holm's correction
against hand values, and judged claims on metrics and per-image answers made up for the test params' runs;
and the curve figures those claims compare (analysis.curves) on histories worked by hand."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from conftest import new_study_params
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from scipy import stats
from statsmodels.stats.multitest import multipletests

from cifarlab.analysis.curves import curve_metric, overfit, val_fluctuation, val_gain_after
from cifarlab.analysis.stats import ALPHA, Estimate, RunSample, contrast
from cifarlab.config import relations
from cifarlab.config.claims import Claim
from cifarlab.config.relations import AGAINST, FOR, RELATIONS, Decision
from cifarlab.config.sections import RunConfig, Study, replicate_groups
from cifarlab.report.findings import (
    CONTRADICTED,
    DOES_NOT_HOLD,
    HOLDS,
    NOT_SHOWN,
    REPRODUCED,
    Finding,
    expected_text,
    findings_section,
    holm,
    judge,
    judge_all,
)
from cifarlab.report.inputs import ReportInputs
from cifarlab.study.resolve import load_study

# Single runs (no replicates) of four studies of the test params.
SINGLES = {
    "bn-128": {"study": "norm", "norm": "bn"},
    "gn-128": {"study": "norm", "norm": "gn"},
    "in-128": {"study": "norm", "norm": "in"},
    "bn-8": {"study": "norm", "norm": "bn", "batch_size": 8},
    "gn-8": {"study": "norm", "norm": "gn", "batch_size": 8},
    "lab-base": {"study": "lab"},
    "lab-lr-1": {"study": "lab", "lr": 1.0},
    "resnet20": {"study": "resnet20", "norm": "bn"},
    "arch-plain20": {"study": "arch", "arch": "plain", "n": 3},
    "arch-vgg11": {"study": "arch", "arch": "vgg11"},
}
PIPELINE_CHECK = ("profile `quick` checks the pipeline (smaller models, a slice of the images for a few epochs); it "
                  "cannot settle a claim on what the studies find")


def _study(runs: dict | None = None, profile: str = "full", pipeline_check: bool = True) -> Study:
    """The test params with `runs` (the single runs by default); their quick profile marked `verdicts: false`
    unless not `pipeline_check`."""
    params = new_study_params()
    params["runs"] = runs if runs is not None else SINGLES
    params["profile"] = profile
    params["profiles"]["quick"]["verdicts"] = not pipeline_check
    return load_study(params)


def _replicated(*runs: str, copies: int = 1) -> dict:
    """Run entries: the single runs named, each with `copies` replicates (seeds 1, 2, ...)."""
    entries = {}
    for run in runs:
        entries[run] = SINGLES[run]
        entries |= {f"{run}-r{k}": {**SINGLES[run], "replicate_of": run, "replicate": k} for k in range(1, copies + 1)}
    return entries


def _inputs(study: Study, values: dict[str, dict] | None = None, *, images: int = 1000,
            train_images: int = 40000, right: dict[str, np.ndarray] | None = None,
            histories: dict[str, pd.DataFrame] | None = None) -> ReportInputs:
    """What the report reads for every run of `study`: every split 50% right of `images` with a loss of 1.0
    (SE 0.01) and a majority-class rate of 10%, then `values` (run -> {dotted metric key: value}); `right`
    (run -> per-image right answers on test) sets a run's test answers and accuracy; `histories` its curves."""
    metrics = {}
    for name in study.runs:
        def split() -> dict:
            return {"accuracy": 0.5, "macro_f1": 0.5, "micro_f1": 0.5, "loss": 1.0, "loss_se": 0.01,
                    "majority_rate": 0.1, "images": images}

        metrics[name] = {"status": "completed", "stopped_reason": "", "epochs_run": 30, "train_time_s": 60.0,
                         "initial_val_loss": 2.3, "train": split(), "val": split(), "test": split(),
                         "model": {"parameters": 1000, "macs_per_image": 5000},
                         "weights": {"small_threshold": 1e-3, "fraction_small": 0.1}}
        for key, value in (values or {}).get(name, {}).items():
            *path, last = key.split(".")
            node = metrics[name]
            for part in path:
                node = node[part]
            node[last] = value
    records = {name: {"run": config.to_record(), "data": {"train_images": train_images, "val_images": images,
                                                          "test_images": images}}
               for name, config in study.runs.items()}
    configs = {name: RunConfig.from_record(record["run"]) for name, record in records.items()}
    correct = {}
    for name in study.runs:
        answers = (right or {}).get(name, np.arange(images) % 2 == 0).astype(float)
        metrics[name]["test"]["accuracy"] = float(answers.mean())
        correct[name] = {"test": answers}
    return ReportInputs(metrics, histories or {}, records, configs, replicate_groups(configs.values()), {}, correct)


def _claim(expect: str, metric: str = "test.accuracy", **keys) -> Claim:
    return Claim(name="c", source="a handout", says="it holds", metric=metric, expect=expect, **keys)


def _decide(expect: str, mean: float, se: float = 0.01, df: float = 1e9, **keys):
    return RELATIONS[expect].judge(Estimate(mean, se, df, ""), _claim(expect, **keys))


Z = stats.norm.ppf(0.975)  # the 95% half-width in standard errors at df -> infinity


# Each rule at its boundaries: an interval (mean +- Z se) just inside, then just outside, its region.

@pytest.mark.parametrize(("expect", "keys"), [("more", {}), ("less", {})])
def test_a_direction_is_decided_when_the_interval_clears_zero(expect, keys):
    sign = 1 if expect == "more" else -1
    assert _decide(expect, sign * 0.0101 * Z).side == FOR and _decide(expect, sign * 0.0101 * Z).p < 0.05
    assert _decide(expect, sign * 0.0099 * Z).p > 0.05
    assert _decide(expect, -sign * 0.0101 * Z).side == AGAINST and _decide(expect, -sign * 0.0101 * Z).p < 0.05


def test_not_below_is_contradicted_only_below_minus_the_margin():
    m = 0.02
    assert _decide("not-below", -m + 0.0101 * Z, margin=m).side == FOR
    assert _decide("not-below", -m + 0.0101 * Z, margin=m).p < 0.05
    assert _decide("not-below", -m + 0.0099 * Z, margin=m).p > 0.05
    # wholly below 0 but not below -m: no verdict (the old rule contradicted it)
    assert _decide("not-below", -0.0101 * Z - 0.001, margin=m).p > 0.05
    against = _decide("not-below", -m - 0.0101 * Z, margin=m)
    assert against.side == AGAINST and against.p < 0.05


@pytest.mark.parametrize("expect", ["same", "at-chance"])
def test_an_equivalence_is_shown_only_when_the_interval_lies_within_the_margin(expect):
    m = 0.05
    inside = _decide(expect, m - 0.0101 * Z, margin=m)
    assert inside.side == FOR and inside.p < 0.05
    assert _decide(expect, m - 0.0099 * Z, margin=m).p > 0.05
    near_minus = _decide(expect, -m + 0.0101 * Z, margin=m)
    assert near_minus.side == FOR and near_minus.p < 0.05
    # an interval holding 0 but reaching past the margin shows nothing: failing to reject is not equivalence
    assert _decide(expect, 0.0, se=0.03, margin=m).p > 0.05
    outside = _decide(expect, m + 0.0101 * Z, margin=m)
    assert outside.side == AGAINST and outside.p < 0.05


@pytest.mark.parametrize(("expect", "sign"), [("at-least", 1), ("at-most", -1)])
def test_a_threshold_is_judged_against_its_value(expect, sign):
    value = 0.9
    assert _decide(expect, sign * 0.0101 * Z, value=value).side == FOR
    assert _decide(expect, sign * 0.0101 * Z, value=value).p < 0.05
    assert _decide(expect, sign * 0.0099 * Z, value=value).p > 0.05


def test_holm_adjusts_the_family_as_statsmodels_does_and_the_verdict_follows_the_adjusted_p():
    decisions = [0.01, 0.04, 0.03, 0.005]
    findings = [Finding(_claim("more", a="x", b="y"), "", "", NOT_SHOWN, "", Estimate(1, 1, 1, ""),
                        RELATIONS["more"].judge(Estimate(1, 1, 1, ""), None).__class__(p, FOR)) for p in decisions]
    adjusted = holm(findings)
    # by hand: sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1, made monotone
    assert [f.adjusted_p for f in adjusted] == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert [f.adjusted_p for f in adjusted] == pytest.approx(list(multipletests(decisions, method="holm")[1]))
    assert [f.verdict for f in adjusted] == [REPRODUCED, NOT_SHOWN, NOT_SHOWN, REPRODUCED]
    assert adjusted[1].why == "p = 0.04 alone (leaning for the claim), 0.06 after Holm over 4 claims"


def test_a_family_member_leaning_against_the_claim_is_contradicted():
    finding = Finding(_claim("more", a="x", b="y"), "", "", NOT_SHOWN, "", Estimate(-1, 0.1, 1e9, ""),
                      RELATIONS["more"].judge(Estimate(-1, 0.1, 1e9, ""), _claim("more")))
    assert holm([finding])[0].verdict == CONTRADICTED


# Claims judged on made-up runs

def _answers(rng: np.random.Generator, rate: float, images: int = 1000) -> np.ndarray:
    return rng.random(images) < rate


def test_a_paired_accuracy_claim_holds_seed_and_image_noise_and_shows_validation_beside():
    study = _study(_replicated("gn-128", "in-128", copies=2))
    rng = np.random.default_rng(0)
    right = {name: _answers(rng, 0.7 if name.startswith("gn") else 0.5) for name in study.runs}
    inputs = _inputs(study, right=right)
    finding = judge_all([_claim("more", a="gn-128", b="in-128", study="norm")], inputs, study)[0]
    assert finding.verdict == REPRODUCED and "3 paired seeds + 1,000 paired images" in finding.measured
    assert "validation (chose the checkpoint): `gn-128` 50.00%, `in-128` 50.00%" in finding.measured
    swapped = judge_all([_claim("more", a="in-128", b="gn-128", study="norm")], inputs, study)[0]
    assert swapped.verdict == CONTRADICTED


def test_a_training_metric_over_seeds_is_paired_and_swapping_a_and_b_mirrors_the_verdict():
    study = _study(_replicated("bn-8", "bn-128", copies=2))
    times = {"bn-8": 200.0, "bn-8-r1": 210.0, "bn-8-r2": 190.0, "bn-128": 60.0, "bn-128-r1": 65.0, "bn-128-r2": 58.0}
    inputs = _inputs(study, {run: {"train_time_s": t} for run, t in times.items()})
    more = judge_all([_claim("more", "seconds_per_epoch", a="bn-8", b="bn-128", study="norm")], inputs, study)[0]
    less = judge_all([_claim("more", "seconds_per_epoch", a="bn-128", b="bn-8", study="norm")], inputs, study)[0]
    assert (more.verdict, less.verdict) == (REPRODUCED, CONTRADICTED)
    assert (more.claim.a, more.expected) == ("bn-8", "`bn-8` > `bn-128` in seconds_per_epoch")
    reference = stats.ttest_rel([200 / 30, 210 / 30, 190 / 30], [60 / 30, 65 / 30, 58 / 30]).pvalue
    assert more.decision.p == pytest.approx(reference)


def test_one_seed_without_a_replicated_run_in_its_study_is_not_shown_and_says_why():
    study = _study()
    claim = _claim("more", "seconds_per_epoch", a="bn-8", b="bn-128", study="norm")
    finding = judge_all([claim], _inputs(study, {"bn-8": {"train_time_s": 200.0}}), study)[0]
    assert finding.verdict == NOT_SHOWN and finding.decision is None and finding.estimate.missing
    assert (finding.claim, finding.expected) == (claim, "`bn-8` > `bn-128` in seconds_per_epoch")
    assert finding.measured.startswith("`bn-8` 6.7 s, `bn-128` 2.0 s; A - B +4.7 s")
    assert finding.why.startswith("no interval: a run of one seed, and no replicated run")


def test_a_model_property_holds_or_not_without_a_test_and_outside_the_family():
    study = _study()
    inputs = _inputs(study, {"arch-vgg11": {"model.macs_per_image": 9000}})
    finding = judge_all([_claim("less", "model.macs_per_image", a="arch-plain20", b="arch-vgg11", study="arch")],
                        inputs, study)[0]
    assert (finding.verdict, finding.decision) == (HOLDS, None)


def test_a_pipeline_check_profile_or_too_few_training_images_settles_no_claim_on_training():
    study = _study(profile="quick")
    inputs = _inputs(study, right={"gn-128": np.ones(1000, bool), "in-128": np.zeros(1000, bool)})
    finding = judge_all([_claim("more", a="gn-128", b="in-128", study="norm")], inputs, study)[0]
    assert (finding.verdict, finding.why, finding.decision) == (NOT_SHOWN, PIPELINE_CHECK, None)
    full = _study()
    fewer = judge(_claim("at-least", a="resnet20", value=0.9, min_train_images=40000, study="resnet20"),
                  _inputs(full, train_images=4068), full)
    assert fewer.verdict == NOT_SHOWN and fewer.why.startswith("the claim is about 40,000 training images")


def test_at_chance_compares_with_the_majority_class_rate_within_its_margin():
    """A run stuck at chance answers one class for every image, whatever its seed."""
    study = _study(_replicated("lab-lr-1", copies=2))
    rng = np.random.default_rng(3)
    one_class = np.arange(4000) % 10 == 0
    inputs = _inputs(study, right={name: one_class for name in study.runs}, images=4000)
    finding = judge_all([_claim("at-chance", a="lab-lr-1", margin=0.02, study="lab")], inputs, study)[0]
    assert finding.verdict == REPRODUCED
    # every seed alike: only the images' noise, 400 right of 4,000 (sample variance 0.09 x 4,000 / 3,999)
    half = stats.t.ppf(0.975, 3999) * math.sqrt(0.09 / 3999)
    assert finding.measured == (f"`lab-lr-1` 10.00% [{100 * (0.1 - half):.2f}%, {100 * (0.1 + half):.2f}%]; "
                                "majority-class rate 10.00% (3 seeds + 4,000 paired images, t(3,999)); "
                                "validation (chose the checkpoint): `lab-lr-1` 50.00%")
    learned = _inputs(study, right={name: _answers(rng, 0.4, 4000) for name in study.runs}, images=4000)
    assert judge_all([_claim("at-chance", a="lab-lr-1", margin=0.02, study="lab")], learned, study)[0].verdict \
        == CONTRADICTED


def test_the_section_shows_raw_and_adjusted_p_and_the_figure():
    study = _study(_replicated("gn-128", "in-128", copies=2))
    rng = np.random.default_rng(0)
    inputs = _inputs(study, right={n: _answers(rng, 0.7 if n.startswith("gn") else 0.5) for n in study.runs})
    findings = judge_all([_claim("more", a="gn-128", b="in-128", study="norm")], inputs, study)
    lines = findings_section(findings, None)
    assert lines[0] == "## Findings" and "| p " in "\n".join(lines) and "p (Holm)" in "\n".join(lines)
    assert "1 claims with a test are one family" in lines[2]


# Each rule is the place of the 95% interval, at every estimate

def _place(expect: str, low: float, high: float, m: float) -> str:
    """Where the docs' table puts an interval: FOR, AGAINST, or "" (no verdict)."""
    inside, above, below = {
        "more": (low > 0, False, high < 0), "less": (high < 0, False, low > 0),
        "same": (-m < low and high < m, low > m, high < -m), "at-chance": (-m < low and high < m, low > m, high < -m),
        "not-below": (low > -m, False, high < -m), "at-least": (low > 0, False, high < 0),
        "at-most": (high < 0, False, low > 0)}[expect]
    return FOR if inside else AGAINST if above or below else ""


@pytest.mark.parametrize("expect", ["more", "less", "same", "at-chance", "not-below", "at-least", "at-most"])
@settings(max_examples=50, deadline=None)
@given(st.floats(-0.2, 0.2), st.floats(0.001, 0.1), st.floats(1, 200), st.floats(0.005, 0.1))
def test_every_rule_reproduces_or_contradicts_exactly_where_its_interval_lies(expect, mean, se, df, m):
    estimate = Estimate(mean, se, df, "")
    low, high = estimate.interval()
    assume(min(abs(x - edge) for x in (low, high) for edge in (0, m, -m)) > 1e-9)
    decision = RELATIONS[expect].judge(estimate, _claim(expect, margin=m, value=0.5))
    assert (decision.side if decision.p < 0.05 else "") == _place(expect, low, high, m)


@settings(max_examples=100, deadline=None)
@given(st.floats(-0.2, 0.2), st.floats(0.001, 0.1), st.floats(1, 200), st.floats(0.005, 0.1))
def test_swapping_a_and_b_mirrors_every_verdict(mean, se, df, m):
    """A > B read on B - A is A < B; A - B within +-m is B - A within +-m."""
    ab, ba = Estimate(mean, se, df, ""), Estimate(-mean, se, df, "")
    assert RELATIONS["more"].judge(ab, _claim("more")) == pytest.approx(RELATIONS["less"].judge(ba, _claim("less")))
    assert RELATIONS["same"].judge(ab, _claim("same", margin=m)) == \
        pytest.approx(RELATIONS["same"].judge(ba, _claim("same", margin=m)))


def test_a_rule_built_on_a_null_tests_the_estimate_against_that_null():
    """The registry's builders, called as the registry calls them at import: above or below the claim's null."""
    estimate = Estimate(0.1, 0.05, 10, "")
    claim = _claim("not-below", margin=0.02)
    above = relations._above(lambda c: -c.margin)(estimate, claim)
    below = relations._below(lambda c: -c.margin)(estimate, claim)
    p = 2 * stats.t.sf(0.12 / 0.05, 10)  # 0.1 is 0.12 above the null of -0.02
    assert above == Decision(pytest.approx(p), FOR) and below == Decision(pytest.approx(p), AGAINST)
    assert relations._below(lambda c: c.margin)(Estimate(-0.1, 0.05, 10, ""), claim) == Decision(pytest.approx(p), FOR)


def test_a_tie_or_a_noiseless_estimate_at_its_null_gives_p_one():
    claim = _claim("more")
    assert RELATIONS["more"].judge(Estimate(0.0, 0.0, math.inf, ""), claim).p == 1.0
    assert RELATIONS["same"].judge(Estimate(0.05, 0.0, math.inf, ""), _claim("same", margin=0.05)).p == 1.0


# What each kind of metric reads, and the noise it carries

def test_seconds_per_epoch_is_training_time_over_the_epochs_run_as_measured():
    study = _study(_replicated("bn-8", "bn-128", copies=2))
    runs = {"bn-8": (100.0, 1), "bn-8-r1": (220.0, 2), "bn-8-r2": (330.0, 3),  # 100, 110, 110 s per epoch
            "bn-128": (60.0, 1), "bn-128-r1": (100.0, 2), "bn-128-r2": (150.0, 3)}  # 60, 50, 50
    inputs = _inputs(study, {run: {"train_time_s": t, "epochs_run": e} for run, (t, e) in runs.items()})
    finding = judge_all([_claim("more", "seconds_per_epoch", a="bn-8", b="bn-128", study="norm")], inputs, study)[0]
    low, high = stats.ttest_rel([100, 110, 110], [60, 50, 50]).confidence_interval(0.95)
    assert finding.measured == (f"`bn-8` 106.7 s, `bn-128` 53.3 s; A - B +53.3 s [{low:+.1f}, {high:+.1f}] "
                                "(3 paired seeds, t(2.0))")
    assert finding.verdict == REPRODUCED


def test_a_train_accuracy_carries_each_runs_binomial_image_noise():
    """No per-image answers on the training images (or none kept for a run): each run adds its mean
    p(1 - p) / n over seeds."""
    study = _study(_replicated("gn-128", "in-128", copies=2))
    acc = {"gn-128": 0.80, "gn-128-r1": 0.84, "gn-128-r2": 0.78, "in-128": 0.70, "in-128-r1": 0.71, "in-128-r2": 0.75}
    inputs = _inputs(study, {run: {"train.accuracy": v} for run, v in acc.items()}, images=500)
    estimate = judge(_claim("more", "train.accuracy", a="gn-128", b="in-128", study="norm"), inputs, study).estimate
    seed_part = np.var([0.80 - 0.70, 0.84 - 0.71, 0.78 - 0.75], ddof=1) / 3
    image_part = sum(np.mean([p * (1 - p) / 500 for p in ps]) for ps in ((0.80, 0.84, 0.78), (0.70, 0.71, 0.75)))
    assert estimate.mean == pytest.approx(0.8066667 - 0.72)
    assert estimate.se ** 2 == pytest.approx(seed_part + image_part)
    assert estimate.test.endswith("+ each run's image SE, t(" + f"{estimate.df:.1f})")
    kept_none = dataclasses.replace(_inputs(study, images=500), correct={})
    for run, v in acc.items():
        kept_none.metrics[run]["test"]["accuracy"] = v
    on_test = judge(_claim("more", a="gn-128", b="in-128", study="norm"), kept_none, study).estimate
    assert on_test.se ** 2 == pytest.approx(seed_part + image_part)


def test_a_loss_carries_each_runs_per_image_standard_error():
    study = _study(_replicated("gn-128", "in-128", copies=2))
    losses = {"gn-128": (0.9, 0.02), "gn-128-r1": (0.95, 0.03), "gn-128-r2": (0.8, 0.02),
              "in-128": (1.1, 0.04), "in-128-r1": (1.2, 0.03), "in-128-r2": (1.0, 0.03)}
    inputs = _inputs(study, {run: {"test.loss": v, "test.loss_se": se} for run, (v, se) in losses.items()})
    estimate = judge(_claim("less", "test.loss", a="gn-128", b="in-128", study="norm"), inputs, study).estimate
    seed_part = np.var([0.9 - 1.1, 0.95 - 1.2, 0.8 - 1.0], ddof=1) / 3
    image_part = np.mean([0.02 ** 2, 0.03 ** 2, 0.02 ** 2]) + np.mean([0.04 ** 2, 0.03 ** 2, 0.03 ** 2])
    assert estimate.mean == pytest.approx(-0.2166667) and estimate.se ** 2 == pytest.approx(seed_part + image_part)
    low, high = estimate.interval()
    finding = judge(_claim("less", "test.loss", a="gn-128", b="in-128", study="norm"), inputs, study)
    assert finding.measured.startswith(f"`gn-128` 0.8833, `in-128` 1.1000; A - B -0.2167 [{low:+.4f}, {high:+.4f}] (")


def test_a_score_null_in_a_metrics_file_gives_no_interval():
    study = _study(_replicated("gn-128", "in-128", copies=2))
    inputs = _inputs(study, {"gn-128-r1": {"test.loss": None}})
    finding = judge_all([_claim("less", "test.loss", a="gn-128", b="in-128", study="norm")], inputs, study)[0]
    assert (finding.verdict, finding.why, finding.decision) == (NOT_SHOWN, "no interval: a score is missing", None)


def _history(train_accuracy: list[float], val_accuracy: list[float], train_loss: list[float] | None = None
             ) -> pd.DataFrame:
    epochs = pd.RangeIndex(1, len(train_accuracy) + 1, name="epoch")
    return pd.DataFrame({"train_error": 1 - np.asarray(train_accuracy), "val_error": 1 - np.asarray(val_accuracy),
                         "train_loss": train_loss or [1.0] * len(train_accuracy)}, index=epochs)


TRAIN = [.10, .20, .30, .40, .45, .50, .55, .60, .65, .70, .80, .90]
VAL = [.10, .20, .25, .30, .32, .34, .35, .36, .36, .37, .36, .38]


def test_a_claim_on_a_curve_figure_reads_each_replicates_history():
    study = _study(_replicated("lab-base", "lab-lr-1", copies=2))
    flat = [.5] * 12
    histories = {name: _history(TRAIN, VAL) if name.startswith("lab-base") else _history(flat, flat)
                 for name in study.runs}
    inputs = _inputs(study, histories=histories)
    finding = judge(_claim("more", "curve.overfit", a="lab-base", b="lab-lr-1", study="lab"), inputs, study)
    assert finding.estimate.mean == pytest.approx(0.30)  # (0.80 - 0.45) - (0.37 - 0.32), against 0
    assert finding.measured == ("`lab-base` 30.00 points, `lab-lr-1` 0.00 points; A - B +30.00 points "
                                "[+30.00, +30.00] (3 paired seeds, t(inf))")  # every seed alike: no noise


def test_a_run_of_one_seed_borrows_the_seed_variance_of_its_studys_replicated_runs_or_of_every_run():
    study = _study({**_replicated("bn-128", "lab-base", copies=2), "bn-8": SINGLES["bn-8"], "gn-8": SINGLES["gn-8"]})
    times = {"bn-128": 60.0, "bn-128-r1": 66.0, "bn-128-r2": 63.0, "lab-base": 30.0, "lab-base-r1": 36.0,
             "lab-base-r2": 45.0, "bn-8": 300.0, "gn-8": 150.0}
    inputs = _inputs(study, {run: {"train_time_s": t} for run, t in times.items()})
    norm = np.var([2.0, 2.2, 2.1], ddof=1)  # bn-128's seconds per epoch over its 3 seeds: 2 df
    every = (2 * norm + 2 * np.var([1.0, 1.2, 1.5], ddof=1)) / 4  # and lab-base's: 4 df
    for study_name, pooled, df, runs in (("norm", norm, 2, 1), (None, every, 4, 2)):
        finding = judge(_claim("more", "seconds_per_epoch", a="bn-8", b="gn-8", study=study_name), inputs, study)
        assert finding.estimate.se ** 2 == pytest.approx(2 * pooled) and finding.estimate.df == pytest.approx(df)
        assert f"(one seed's variance pooled over {runs} replicated runs, {df} df)" in finding.estimate.test
    at_most = judge(_claim("at-most", "seconds_per_epoch", a="bn-8", value=12.0, study="norm"), inputs, study)
    assert (at_most.estimate.mean, at_most.estimate.se ** 2) == (pytest.approx(-2.0), pytest.approx(norm))
    measured = judge(_claim("measured", "seconds_per_epoch", runs=("bn-8",), b="gn-8", study="norm"), inputs, study)
    low, high = stats.t.interval(0.95, 2, loc=5.0, scale=math.sqrt(2 * norm))
    assert measured.measured.startswith(f"`bn-8` 10.0 s (+5.0 s [{low:+.1f}, {high:+.1f}], 1 seed (one seed's variance")


def test_a_difference_of_changes_is_the_one_sample_t_of_each_seeds_difference_of_changes():
    study = _study(_replicated("gn-8", "gn-128", "bn-8", "bn-128", copies=2))
    times = {"gn-8": (90.0, 96.0, 105.0), "gn-128": (30.0, 36.0, 30.0), "bn-8": (60.0, 63.0, 72.0),
             "bn-128": (30.0, 30.0, 33.0)}  # per epoch: gn 3.0, 3.2, 3.5 and 1, 1.2, 1; bn 2, 2.1, 2.4 and 1, 1, 1.1
    names = {run: [run, f"{run}-r1", f"{run}-r2"] for run in times}
    inputs = _inputs(study, {name: {"train_time_s": t} for run in times for name, t in zip(names[run], times[run])})
    claim = _claim("more", "seconds_per_epoch", a="gn-8", a_base="gn-128", b="bn-8", b_base="bn-128", study="norm")
    finding = judge(claim, inputs, study)
    changes = [(3.0 - 1.0) - (2.0 - 1.0), (3.2 - 1.2) - (2.1 - 1.0), (3.5 - 1.0) - (2.4 - 1.1)]
    reference = stats.ttest_1samp(changes, 0.0)
    low, high = reference.confidence_interval(0.95)
    assert finding.estimate.mean == pytest.approx(np.mean(changes))
    assert finding.estimate.interval() == (pytest.approx(low), pytest.approx(high))
    assert f"difference of the changes +{np.mean(changes):.1f} s [{low:+.1f}, {high:+.1f}]" in finding.measured
    assert finding.decision.p == pytest.approx(reference.pvalue)


def test_a_threshold_claim_is_the_runs_estimate_less_its_value_and_reads_as_the_run():
    study = _study(_replicated("resnet20", copies=2))
    rng = np.random.default_rng(9)
    right = {name: _answers(rng, 0.6) for name in study.runs}
    inputs = _inputs(study, right=right)
    finding = judge(_claim("at-least", a="resnet20", value=0.5, study="resnet20"), inputs, study)
    table = np.stack([right[name] for name in ("resnet20", "resnet20-r1", "resnet20-r2")]).astype(float)
    alone = contrast([RunSample({s: row.mean() for s, row in enumerate(table)}, dict(enumerate(table)))], [1])
    assert finding.estimate.mean == pytest.approx(table.mean() - 0.5) and finding.estimate.se == pytest.approx(alone.se)
    low, high = alone.interval()
    assert finding.measured.startswith(f"`resnet20` {100 * table.mean():.2f}% [{100 * low:.2f}%, {100 * high:.2f}%] (")
    at_most = judge(_claim("at-most", a="resnet20", value=0.5, study="resnet20"), inputs, study)
    assert at_most.estimate.mean == pytest.approx(table.mean() - 0.5)


def test_a_claim_about_as_many_training_images_as_the_runs_saw_is_settled():
    study = _study()
    claim = _claim("at-least", a="resnet20", value=0.9, min_train_images=40000, study="resnet20")
    assert not judge(claim, _inputs(study, train_images=40000), study).why.startswith("the claim is about")
    fewer = judge(claim, _inputs(study, train_images=39999), study)
    assert fewer.why == "the claim is about 40,000 training images; these runs trained on 39,999"


def test_a_model_property_holds_only_when_strictly_so_and_says_the_ratio():
    study = _study()
    inputs = _inputs(study, {"arch-vgg11": {"model.macs_per_image": 9000}})
    less = judge(_claim("less", "model.macs_per_image", a="arch-plain20", b="arch-vgg11", study="arch"), inputs, study)
    assert (less.measured, less.why) == ("`arch-plain20` 5,000, `arch-vgg11` 9,000 (0.56x)",
                                         "a property of the model, the same for every seed")
    assert (less.claim.name, less.expected) == ("c", "`arch-plain20` < `arch-vgg11` in model.macs_per_image")
    more = judge(_claim("more", "model.macs_per_image", a="arch-vgg11", b="arch-plain20", study="arch"), inputs, study)
    assert more.verdict == HOLDS
    even = _inputs(study, {"arch-vgg11": {"model.macs_per_image": 5000}})
    for expect in ("more", "less"):
        claim = _claim(expect, "model.macs_per_image", a="arch-plain20", b="arch-vgg11", study="arch")
        assert judge(claim, even, study).verdict == DOES_NOT_HOLD
    zero = _inputs(study, {"arch-vgg11": {"model.macs_per_image": 0}})
    assert judge(_claim("more", "model.macs_per_image", a="arch-plain20", b="arch-vgg11", study="arch"), zero,
                 study).measured == "`arch-plain20` 5,000, `arch-vgg11` 0"


def test_a_pipeline_check_profile_settles_no_claim_on_a_models_size_it_shrank():
    study = _study(profile="quick")
    inputs = _inputs(study, {"arch-vgg11": {"model.macs_per_image": 9000}})
    size = _claim("less", "model.macs_per_image", a="arch-plain20", b="arch-vgg11", study="arch")
    for claim, measured in ((size, "`arch-plain20` 5,000, `arch-vgg11` 9,000 (0.56x)"), (_claim("equals", "model.parameters", a="lab-base", value=1000, study="lab"),
                                         "`lab-base` 1,000")):
        finding = judge_all([claim], inputs, study)[0]
        assert (finding.claim, finding.measured, finding.verdict, finding.why) == (
            claim, measured, NOT_SHOWN, PIPELINE_CHECK)
        assert finding.expected == expected_text(claim, 10)


# Relations stated without a test

def test_near_holds_when_every_training_is_within_the_margin_its_edge_included():
    study = _study(_replicated("lab-base", copies=2))
    values = {"lab-base": 2.0, "lab-base-r1": 2.25, "lab-base-r2": 1.9}
    inputs = _inputs(study, {run: {"initial_val_loss": v} for run, v in values.items()})
    claim = _claim("near", "initial_val_loss", runs=("lab-base",), value=2.0, margin=0.25, study="lab")
    finding = judge_all([claim], inputs, study)[0]
    assert (finding.claim, finding.expected) == (claim, "every run within 0.25 of 2.0000 in initial_val_loss")
    assert (finding.measured, finding.verdict, finding.why, finding.decision) == (
        "3 trainings from 1.900 to 2.250", HOLDS, "as measured, no test", None)
    outside = _inputs(study, {run: {"initial_val_loss": v} for run, v in
                              {"lab-base": 2.0, "lab-base-r1": 2.26, "lab-base-r2": 1.5}.items()})
    finding = judge_all([claim], outside, study)[0]
    assert (finding.measured, finding.verdict) == (
        "3 trainings from 1.500 to 2.260; outside: `lab-base-r1` 2.260, `lab-base-r2` 1.500", DOES_NOT_HOLD)
    missing = _inputs(study, {"lab-base-r2": {"initial_val_loss": None}})
    assert (judge(claim, missing, study).measured, judge(claim, missing, study).why) == ("", "a value is missing")


def test_near_ln_classes_is_the_log_of_the_number_of_classes():
    study = _study(_replicated("lab-base", copies=2))
    inputs = _inputs(study, {run: {"initial_val_loss": 2.30} for run in study.runs})
    claim = _claim("near", "initial_val_loss", runs=("lab-base",), value="ln-classes", margin=0.01, study="lab")
    finding = judge(claim, inputs, study)
    assert finding.verdict == HOLDS and finding.expected == "every run within 0.01 of ln 10 = 2.303 in initial_val_loss"


def test_equals_holds_only_for_the_exact_value():
    study = _study()
    claim = _claim("equals", "model.parameters", a="lab-base", value=1000, study="lab")
    finding = judge(claim, _inputs(study), study)
    assert (finding.measured, finding.verdict, finding.why) == (
        "`lab-base` 1,000", HOLDS, "a property of the model, the same for every seed")
    assert judge(claim, _inputs(study, {"lab-base": {"model.parameters": 1001}}), study).verdict == DOES_NOT_HOLD


def test_measured_gives_each_run_and_its_difference_from_b_without_a_verdict_even_on_a_pipeline_check():
    runs = _replicated("bn-8", "bn-128", copies=2)
    times = {"bn-8": 200.0, "bn-8-r1": 210.0, "bn-8-r2": 190.0, "bn-128": 60.0, "bn-128-r1": 66.0, "bn-128-r2": 57.0}
    claim = _claim("measured", "seconds_per_epoch", runs=("bn-8", "bn-128"), b="bn-128", study="norm")
    low, high = stats.ttest_rel([200 / 30, 210 / 30, 190 / 30], [2.0, 2.2, 1.9]).confidence_interval(0.95)
    for profile in ("full", "quick"):
        study = _study(runs, profile=profile)
        finding = judge_all([claim], _inputs(study, {run: {"train_time_s": t} for run, t in times.items()}), study)[0]
        assert (finding.verdict, finding.why, finding.decision) == ("measured", "", None)
        assert finding.measured == (f"`bn-8` 6.7 s (+4.6 s [{low:+.1f}, {high:+.1f}], 3 paired seeds, t(2.0) against "
                                    "`bn-128`); `bn-128` 2.0 s")


def test_measured_names_no_test_for_a_difference_without_an_interval():
    study = _study()
    claim = _claim("measured", "seconds_per_epoch", runs=("bn-8",), b="gn-8", study="norm")
    finding = judge(claim, _inputs(study, {"bn-8": {"train_time_s": 300.0}}), study)
    assert finding.verdict == "measured" and finding.measured.startswith("`bn-8` 10.0 s (+8.0 s [")
    assert finding.measured.endswith("] against `gn-8`)") and "seeds" not in finding.measured


def test_near_on_training_is_not_shown_on_a_pipeline_check():
    study = _study(_replicated("lab-base", copies=2), profile="quick")
    claim = _claim("near", "seconds_per_epoch", runs=("lab-base",), value=2.0, margin=0.25, study="lab")
    finding = judge(claim, _inputs(study), study)
    assert (finding.verdict, finding.why) == (NOT_SHOWN, PIPELINE_CHECK)


# The table's words

@pytest.mark.parametrize(("expect", "keys", "metric", "text"), [
    ("more", {"a": "x", "b": "y"}, "test.accuracy", "`x` > `y` in test.accuracy"),
    ("less", {"a": "x", "b": "y"}, "test.loss", "`x` < `y` in test.loss"),
    ("more", {"a": "x", "a_base": "xb", "b": "y", "b_base": "yb"}, "test.accuracy",
     "(`x` - `xb`) > (`y` - `yb`) in test.accuracy"),
    ("less", {"a": "x", "a_base": "xb", "b": "y", "b_base": "yb"}, "test.accuracy",
     "(`x` - `xb`) < (`y` - `yb`) in test.accuracy"),
    ("same", {"a": "x", "b": "y", "margin": 0.02}, "test.accuracy", "`x` - `y` within +-2 points in test.accuracy"),
    ("same", {"a": "x", "b": "y", "margin": 0.05}, "test.loss", "`x` - `y` within +-0.05 in test.loss"),
    ("not-below", {"a": "x", "b": "y", "margin": 0.01}, "test.accuracy", "`x` >= `y` - 1 points in test.accuracy"),
    ("at-least", {"a": "x", "value": 0.65}, "test.accuracy", "`x` >= 65.00% in test.accuracy"),
    ("at-most", {"a": "x", "value": 2.5}, "seconds_per_epoch", "`x` <= 2.5 s in seconds_per_epoch"),
    ("at-most", {"a": "x", "value": 0.4}, "test.loss", "`x` <= 0.4000 in test.loss"),
    ("at-chance", {"a": "x", "margin": 0.02}, "test.accuracy",
     "`x` within +-2 points of the majority-class rate in test.accuracy"),
    ("near", {"runs": ("x",), "value": 0.05, "margin": 0.01}, "curve.val_gain_after_10",
     "every run within 0.01 of 5.00 points in curve.val_gain_after_10"),
    ("equals", {"a": "x", "value": 82030}, "model.parameters", "`x` is 82,030 in model.parameters"),
    ("measured", {"runs": ("x",)}, "weights.fraction_small", "weights.fraction_small, as measured"),
    ("measured", {"runs": ("x",), "b": "y"}, "model.macs_per_image",
     "model.macs_per_image, as measured, each against `y`"),
])
def test_the_expected_column_states_each_relation_in_the_claims_terms(expect, keys, metric, text):
    assert expected_text(_claim(expect, metric, **keys), 10) == text


def _family_member(expect: str, p: float, side: str = FOR, estimate: Estimate | None = None, **keys) -> Finding:
    return Finding(_claim(expect, **keys), "", "", NOT_SHOWN, "", estimate or Estimate(0.01, 0.01, 1e9, ""),
                   Decision(p, side))


def test_a_verdict_needs_its_adjusted_p_strictly_below_alpha():
    at, below = holm([_family_member("more", ALPHA)]), holm([_family_member("more", ALPHA * 0.999)])
    assert (at[0].verdict, at[0].why) == (NOT_SHOWN, "the interval holds 0")
    assert (below[0].verdict, below[0].why) == (REPRODUCED, "")


def test_a_claim_significant_alone_but_not_after_holm_says_which_way_it_leaned():
    findings = holm([_family_member("more", 0.03, AGAINST), _family_member("more", 0.04)])
    assert findings[0].why == "p = 0.03 alone (leaning against the claim), 0.06 after Holm over 2 claims"
    assert findings[1].why == "p = 0.04 alone (leaning for the claim), 0.06 after Holm over 2 claims"


SEVEN_POINTS = "the interval reaches past +-5 points; these runs could have shown +-7 points at most"


@pytest.mark.parametrize(("expect", "keys", "metric", "why"), [
    ("same", {"margin": 0.05}, "test.accuracy", SEVEN_POINTS),
    ("at-chance", {"margin": 0.05}, "test.accuracy", SEVEN_POINTS),
    ("same", {"margin": 0.5}, "test.loss",
     "the interval reaches past +-0.5; these runs could have shown +-0.07 at most"),
    ("not-below", {"margin": 0.02}, "test.accuracy", "the interval holds -2 points"),
    ("at-least", {"value": 0.5}, "test.accuracy", "the interval holds the threshold"),
    ("at-most", {"value": 0.5}, "test.accuracy", "the interval holds the threshold"),
    ("less", {}, "test.accuracy", "the interval holds 0"),
])
def test_an_undecided_claim_says_what_its_interval_holds(expect, keys, metric, why):
    """An interval of [-0.07, +0.03]: for an equivalence, its largest reach from 0."""
    estimate = Estimate(-0.02, 0.05 / 1.959963984540054, math.inf, "")
    finding = Finding(_claim(expect, metric, **keys), "", "", NOT_SHOWN, "", estimate, Decision(0.5, FOR))
    assert holm([finding])[0].why == why


def test_a_row_gives_the_claim_its_source_expectation_measurement_p_values_and_verdict():
    claim = Claim(name="bn-helps", source="HW2", says="BN helps", metric="test.accuracy", expect="more", a="x", b="y",
                  reported="70% vs 60%")
    finding = holm([Finding(claim, "`x` > `y`", "x 70%", NOT_SHOWN, "", Estimate(0.1, 0.01, 1e9, ""),
                            Decision(0.001, FOR))])[0]
    assert finding.row() == {"claim": "`bn-helps`: BN helps (reported: 70% vs 60%)", "source": "HW2",
                             "expected": "`x` > `y`", "measured": "x 70%", "p": "0.001", "p (Holm)": "0.001",
                             "verdict": "**reproduced**"}
    tiny = dataclasses.replace(finding, decision=Decision(0.00099, FOR), adjusted_p=0.00099, verdict=NOT_SHOWN,
                               why="a reason", claim=dataclasses.replace(claim, reported=None))
    assert tiny.row() == {"claim": "`bn-helps`: BN helps", "source": "HW2", "expected": "`x` > `y`",
                          "measured": "x 70%", "p": "9.9e-04", "p (Holm)": "9.9e-04", "verdict": "not shown: a reason"}
    untested = Finding(claim, "e", "m", HOLDS, "as measured, no test")
    assert (untested.row()["p"], untested.row()["p (Holm)"], untested.row()["verdict"]) == (
        "", "", "holds: as measured, no test")


def test_the_section_counts_the_verdicts_and_shows_the_figure_by_its_name(tmp_path):
    claim = _claim("more", a="x", b="y")
    findings = [Finding(claim, "", "", REPRODUCED, ""), Finding(claim, "", "", NOT_SHOWN, "why"),
                Finding(claim, "", "", NOT_SHOWN, "why")]
    lines = findings_section(findings, tmp_path / "findings.png")
    assert lines[:2] == ["## Findings", ""]
    assert "claims.yaml` tested against the runs (1 reproduced, 2 not shown)" in lines[2]
    assert lines[3:6] == ["", "![Findings: each claim's 95% interval against its reference](findings.png)", ""]
    assert lines[-1] == "" and lines[-2].startswith("| claim") and findings_section([], None) == []


# The curve figures (analysis.curves) on histories worked by hand

def test_overfit_is_trainings_gain_over_the_second_half_less_validations_each_end_a_mean_of_three_epochs():
    # epochs 10-12 against 4-6: training (0.80 - 0.45) less validation (0.37 - 0.32)
    assert overfit(_history(TRAIN, VAL)) == pytest.approx(0.30)
    # six epochs is the fewest with two windows: 4-6 against 1-3, (0.45 - 0.20) - (0.32 - 0.55 / 3)
    assert overfit(_history(TRAIN[:6], VAL[:6])) == pytest.approx(0.25 - (0.32 - 0.55 / 3))
    assert math.isnan(overfit(_history(TRAIN[:5], VAL[:5])))
    # eleven epochs: the middle is epoch 5, so 9-11 against 3-5
    assert overfit(_history(TRAIN[:11], VAL[:11])) == pytest.approx((0.7166667 - 0.3833333) - (0.3633333 - 0.29))


def test_val_fluctuation_is_the_sample_deviation_of_validations_epoch_to_epoch_change():
    # changes 0.10, 0.05, 0.05: mean 1/15, squared deviations 1/900 + 2/3600, over 2
    assert val_fluctuation(_history(TRAIN[:4], VAL[:4])) == pytest.approx(math.sqrt((1 / 900 + 2 / 3600) / 2))
    assert val_fluctuation(_history(TRAIN[:3], VAL[:3])) == pytest.approx(math.sqrt(0.05 ** 2 / 2))
    assert math.isnan(val_fluctuation(_history(TRAIN[:2], VAL[:2])))


def test_val_gain_after_10_is_the_best_later_validation_less_epoch_10s():
    assert val_gain_after(_history(TRAIN, VAL)) == pytest.approx(0.38 - 0.37)
    assert val_gain_after(_history(TRAIN[:11], VAL[:11])) == pytest.approx(0.36 - 0.37)
    assert math.isnan(val_gain_after(_history(TRAIN[:10], VAL[:10])))
    assert math.isnan(val_gain_after(_history(TRAIN, VAL).loc[11:]))  # epoch 10 not recorded


def test_train_loss_mean_is_the_mean_of_its_epochs_losses_and_each_figure_is_found_by_its_name():
    history = _history(TRAIN[:3], VAL[:3], [2.0, 1.0, 0.6])
    assert curve_metric(history, "curve.train_loss_mean") == pytest.approx(1.2)
    assert curve_metric(_history(TRAIN, VAL), "curve.overfit") == pytest.approx(0.30)


def test_a_pipeline_check_profile_settles_no_claim_on_a_models_size_which_it_shrinks():
    study = _study(profile="quick")
    inputs = _inputs(study, {"arch-vgg11": {"model.macs_per_image": 9000}})
    finding = judge_all([_claim("less", "model.macs_per_image", a="arch-plain20", b="arch-vgg11", study="arch")],
                        inputs, study)[0]
    assert (finding.verdict, finding.why) == (NOT_SHOWN, PIPELINE_CHECK)

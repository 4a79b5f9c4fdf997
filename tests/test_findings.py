"""cifarlab.report.findings: each verdict rule at its boundaries, against intervals computed here with SciPy
and by hand, on metrics made up for the test params' runs."""

from __future__ import annotations

import math

import pytest
from conftest import new_study_params
from scipy import stats

from cifarlab.config.claims import Claim, read_claims
from cifarlab.config.resolve import load_study
from cifarlab.config.sections import RunConfig, Study, replicate_groups
from cifarlab.errors import CifarlabError
from cifarlab.report.findings import (
    CONTRADICTED,
    NOT_SHOWN,
    REPRODUCED,
    findings_section,
    judge,
)
from cifarlab.report.inputs import ReportInputs

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
            train_images: int = 40000) -> ReportInputs:
    """What the report reads for every run of `study`: every split 50% right of `images` with a loss of 1.0
    (SE 0.01) and a majority-class rate of 10%, then `values` (run -> {dotted metric key: value})."""
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
    return ReportInputs(metrics, {}, records, configs, replicate_groups(configs.values()), {})


def _claim(expect: str, metric: str = "test.accuracy", **keys) -> Claim:
    return Claim(name="c", source="a handout", says="it holds", metric=metric, expect=expect, **keys)


def _accuracies(**by_run: float) -> dict[str, dict]:
    """Test accuracies by run, each run's name spelt with _ for - (gn_128_r1=0.7)."""
    return {run.replace("_", "-"): {"test.accuracy": accuracy} for run, accuracy in by_run.items()}


def _binomial(difference: float, accuracies: list[float], images: int) -> tuple[float, float]:
    """The difference +-2 binomial standard errors of its accuracies, independent."""
    se = math.sqrt(sum(p * (1 - p) / images for p in accuracies))
    return difference - 2 * se, difference + 2 * se


def _points(low: float, high: float) -> str:
    return f"[{100 * low:+.2f}, {100 * high:+.2f}]"


# Direction (more / less)

def test_single_runs_differ_by_twice_the_binomial_se_and_one_image_turns_the_verdict():
    study = _study()
    more = _claim("more", a="gn-128", b="in-128")
    low, high = _binomial(0.045, [0.545, 0.5], 1000)
    assert low > 0  # 545 of 1,000 right against 500: the interval just clears 0
    finding = judge(more, _inputs(study, _accuracies(gn_128=0.545, in_128=0.5)), study)
    assert (finding.verdict, finding.why) == (REPRODUCED, "")
    assert finding.measured == f"`gn-128` 54.50%, `in-128` 50.00%; A - B +4.50 points {_points(low, high)} (binomial SE)"
    assert finding.expected == "`gn-128` > `in-128` in test.accuracy"
    assert judge(_claim("less", a="gn-128", b="in-128"), _inputs(study, _accuracies(gn_128=0.545, in_128=0.5)),
                 study).verdict == CONTRADICTED

    assert _binomial(0.044, [0.544, 0.5], 1000)[0] < 0  # one image fewer: it holds 0
    finding = judge(more, _inputs(study, _accuracies(gn_128=0.544, in_128=0.5)), study)
    assert (finding.verdict, finding.why) == (NOT_SHOWN, "the interval holds 0")

    below = _inputs(study, _accuracies(gn_128=0.455, in_128=0.5))
    assert judge(more, below, study).verdict == CONTRADICTED
    assert judge(_claim("less", a="gn-128", b="in-128"), below, study).verdict == REPRODUCED


def test_a_less_claim_whose_interval_holds_zero_is_not_shown():
    study = _study()
    for accuracy in (0.544, 0.456, 0.5):
        finding = judge(_claim("less", a="gn-128", b="in-128"),
                        _inputs(study, _accuracies(gn_128=accuracy, in_128=0.5)), study)
        assert (finding.verdict, finding.why) == (NOT_SHOWN, "the interval holds 0"), accuracy


def test_replicates_sharing_seeds_are_compared_by_paired_t():
    study = _study(_replicated("gn-128", "in-128"))
    more = _claim("more", a="gn-128", b="in-128")
    # gn is 5.0 and 5.1 points above in on the two seeds, which themselves differ by 10 points
    inputs = _inputs(study, _accuracies(gn_128=0.60, gn_128_r1=0.70, in_128=0.55, in_128_r1=0.649))
    reference = stats.ttest_rel([0.60, 0.70], [0.55, 0.649]).confidence_interval(0.95)
    assert reference.low > 0
    finding = judge(more, inputs, study)
    assert finding.verdict == REPRODUCED
    assert finding.measured.endswith(f"A - B +5.05 points {_points(reference.low, reference.high)} "
                                     "(paired t, 2 seeds)")

    # 5.0 and 4.0 points: the binomial error of the means would call it (4.5 points > 2 SE = 4.3), the
    # spread of the pairs does not
    inputs = _inputs(study, _accuracies(gn_128=0.60, gn_128_r1=0.70, in_128=0.55, in_128_r1=0.66))
    assert _binomial(0.045, [0.65, 0.605], 1000)[0] > 0
    reference = stats.ttest_rel([0.60, 0.70], [0.55, 0.66]).confidence_interval(0.95)
    assert reference.low < 0 < reference.high
    finding = judge(more, inputs, study)
    assert (finding.verdict, finding.why) == (NOT_SHOWN, "the interval holds 0")
    assert finding.measured.endswith(f"{_points(reference.low, reference.high)} (paired t, 2 seeds)")


def test_a_difference_of_changes_is_tested_on_the_four_runs():
    study = _study()
    claim = _claim("more", a="gn-8", a_base="gn-128", b="bn-8", b_base="bn-128")
    # GN loses 2 points from batch 128 to 8, BN 10: GN's change is 8 points above BN's
    accuracies = {"gn_8": 0.60, "gn_128": 0.62, "bn_8": 0.50, "bn_128": 0.60}
    low, high = _binomial(0.08, list(accuracies.values()), 1000)
    assert low > 0
    finding = judge(claim, _inputs(study, _accuracies(**accuracies)), study)
    assert finding.expected == "(`gn-8` - `gn-128`) > (`bn-8` - `bn-128`) in test.accuracy"
    assert finding.verdict == REPRODUCED
    assert finding.measured == f"difference of the changes +8.00 points {_points(low, high)} (binomial SE)"
    less = _claim("less", a="gn-8", a_base="gn-128", b="bn-8", b_base="bn-128")
    assert judge(less, _inputs(study, _accuracies(**accuracies)), study).verdict == CONTRADICTED

    accuracies["bn_8"] = 0.55  # BN loses 5: 3 points, within 2 SE (6.2 points)
    assert _binomial(0.03, list(accuracies.values()), 1000)[0] < 0
    assert judge(claim, _inputs(study, _accuracies(**accuracies)), study).verdict == NOT_SHOWN


def test_a_difference_of_changes_over_shared_seeds_is_a_paired_t_on_the_per_seed_changes():
    study = _study(_replicated("gn-8", "gn-128", "bn-8", "bn-128"))
    # GN's change is 8.0 and 8.2 points above BN's on the two seeds
    by_seed = {"gn_8": (0.60, 0.70), "gn_128": (0.62, 0.71), "bn_8": (0.50, 0.618), "bn_128": (0.60, 0.71)}
    accuracies = {**{run: values[0] for run, values in by_seed.items()},
                  **{f"{run}_r1": values[1] for run, values in by_seed.items()}}
    gn = [a - b for a, b in zip(by_seed["gn_8"], by_seed["gn_128"])]
    bn = [a - b for a, b in zip(by_seed["bn_8"], by_seed["bn_128"])]
    reference = stats.ttest_rel(gn, bn).confidence_interval(0.95)
    finding = judge(_claim("more", a="gn-8", a_base="gn-128", b="bn-8", b_base="bn-128"),
                    _inputs(study, _accuracies(**accuracies)), study)
    assert reference.low > 0
    assert finding.measured == (f"difference of the changes +8.10 points {_points(reference.low, reference.high)} "
                                "(paired t, 2 seeds)")
    assert finding.verdict == REPRODUCED


def test_a_loss_is_compared_by_the_standard_errors_of_its_per_image_losses():
    study = _study()
    claim = _claim("less", metric="train.loss", a="arch-plain20", b="arch-vgg11")
    values = {"arch-plain20": {"train.loss": 0.50, "train.loss_se": 0.01},
              "arch-vgg11": {"train.loss": 0.60, "train.loss_se": 0.02}}
    two_se = 2 * math.sqrt(0.01 ** 2 + 0.02 ** 2)
    finding = judge(claim, _inputs(study, values), study)
    assert finding.verdict == REPRODUCED
    assert finding.measured == (f"`arch-plain20` 0.5000, `arch-vgg11` 0.6000; A - B -0.1000 [{-0.1 - two_se:+.4f}, "
                                f"{-0.1 + two_se:+.4f}] (SE of the per-image losses)")
    values["arch-vgg11"]["train.loss"] = 0.40  # plain's loss is above: the interval lies above 0
    assert judge(claim, _inputs(study, values), study).verdict == CONTRADICTED


# Equivalence (same) and at least as good (not-below), on 10,000 images: 2 SE of a 50/50 difference is 1.41 points

def test_same_is_reproduced_when_the_whole_interval_lies_within_the_margin():
    study = _study()
    same = _claim("same", a="gn-128", b="in-128", margin=0.02)
    assert _binomial(0.005, [0.505, 0.5], 10000)[1] < 0.02 < _binomial(0.006, [0.506, 0.5], 10000)[1]
    finding = judge(same, _inputs(study, _accuracies(gn_128=0.505, in_128=0.5), images=10000), study)
    assert (finding.verdict, finding.expected) == (REPRODUCED, "`gn-128` - `in-128` within +-2 points in test.accuracy")
    finding = judge(same, _inputs(study, _accuracies(gn_128=0.506, in_128=0.5), images=10000), study)
    assert finding.verdict == NOT_SHOWN
    assert finding.why == "an interval of +-1.4 points around this difference would settle it (this one is +-1.4 points)"


def test_same_names_the_interval_that_would_settle_it_or_says_the_difference_is_past_the_margin():
    study = _study()
    finding = judge(_claim("same", a="gn-128", b="in-128", margin=0.01),
                    _inputs(study, _accuracies(gn_128=0.5, in_128=0.5), images=10000), study)
    assert finding.verdict == NOT_SHOWN
    assert finding.why == "an interval of +-1 points around this difference would settle it (this one is +-1.4 points)"
    finding = judge(_claim("same", a="gn-128", b="in-128", margin=0.01),
                    _inputs(study, _accuracies(gn_128=0.52, in_128=0.5)), study)
    assert (finding.verdict, finding.why) == (NOT_SHOWN, "the measured difference itself is past the margin")


def test_same_is_contradicted_when_the_whole_interval_lies_outside_the_margin():
    study = _study()
    for accuracy in (0.53, 0.47):
        assert abs(_binomial(accuracy - 0.5, [accuracy, 0.5], 10000)[accuracy < 0.5]) > 0.01
        finding = judge(_claim("same", a="gn-128", b="in-128", margin=0.01),
                        _inputs(study, _accuracies(gn_128=accuracy, in_128=0.5), images=10000), study)
        assert finding.verdict == CONTRADICTED


def test_not_below_is_reproduced_while_the_interval_stays_above_minus_the_margin():
    study = _study()
    claim = _claim("not-below", a="gn-128", b="in-128", margin=0.02)
    equal = _inputs(study, _accuracies(gn_128=0.5, in_128=0.5), images=10000)  # [-1.414, +1.414] points
    finding = judge(claim, equal, study)
    assert (finding.verdict, finding.expected) == (REPRODUCED, "`gn-128` >= `in-128` - 2 points in test.accuracy")
    assert judge(_claim("not-below", a="gn-128", b="in-128", margin=0.0142), equal, study).verdict == REPRODUCED
    finding = judge(_claim("not-below", a="gn-128", b="in-128", margin=0.0141), equal, study)
    assert (finding.verdict, finding.why) == (NOT_SHOWN, "the interval reaches below -1.4 points and above 0")
    # wholly below the margin
    finding = judge(claim, _inputs(study, _accuracies(gn_128=0.45, in_128=0.5), images=10000), study)
    assert finding.verdict == CONTRADICTED


# Thresholds: against the exact (Clopper-Pearson) interval of the one run

def _first(counts: range, holds) -> int:
    return next(k for k in counts if holds(stats.binomtest(k, 10000).proportion_ci(0.95)))


def test_at_least_turns_on_the_exact_interval_of_the_run():
    study = _study()
    claim = _claim("at-least", metric="val.accuracy", a="resnet20", value=0.9, min_train_images=40000)
    reproduced = _first(range(9000, 9200), lambda ci: ci.low >= 0.9)  # 9,059 of 10,000
    contradicted = _first(range(9000, 8800, -1), lambda ci: ci.high < 0.9)  # 8,940

    def finding(count: int):
        return judge(claim, _inputs(study, {"resnet20": {"val.accuracy": count / 10000}}, images=10000), study)

    ci = stats.binomtest(reproduced, 10000).proportion_ci(0.95)
    assert finding(reproduced).measured == (f"`resnet20` {reproduced / 100:.2f}% [{100 * ci.low:.2f}%, "
                                            f"{100 * ci.high:.2f}%] (exact binomial, 10,000 images)")
    assert finding(reproduced).expected == "`resnet20` >= 90.00% in val.accuracy"
    assert [finding(k).verdict for k in (reproduced, reproduced - 1, contradicted + 1, contradicted)] == [
        REPRODUCED, NOT_SHOWN, NOT_SHOWN, CONTRADICTED]
    assert finding(reproduced - 1).why == "the interval holds the threshold"
    at_most = _claim("at-most", metric="val.accuracy", a="resnet20", value=0.9)
    assert [judge(at_most, _inputs(study, {"resnet20": {"val.accuracy": k / 10000}}, images=10000), study).verdict
            for k in (reproduced, 9000, contradicted)] == [CONTRADICTED, NOT_SHOWN, REPRODUCED]


def test_a_threshold_on_replicates_is_the_t_interval_over_their_seeds_and_on_a_loss_twice_its_se():
    study = _study(_replicated("resnet20"))
    claim = _claim("at-least", metric="val.accuracy", a="resnet20", value=0.9)
    inputs = _inputs(study, {"resnet20": {"val.accuracy": 0.92}, "resnet20-r1": {"val.accuracy": 0.94}})
    low, high = stats.t.interval(0.95, 1, loc=0.93, scale=0.01)  # sd 0.0141 over 2 seeds: SE 0.01
    finding = judge(claim, inputs, study)
    assert finding.verdict == NOT_SHOWN
    assert finding.measured == f"`resnet20` 93.00% [{100 * low:.2f}%, {100 * high:.2f}%] (t over 2 seeds)"
    study = _study()
    at_most = _claim("at-most", metric="val.loss", a="resnet20", value=1.0)
    for loss, verdict in ((0.97, REPRODUCED), (0.99, NOT_SHOWN), (1.03, CONTRADICTED)):  # +-0.02
        finding = judge(at_most, _inputs(study, {"resnet20": {"val.loss": loss}}), study)
        assert finding.verdict == verdict, loss
    assert finding.measured == "`resnet20` 1.0300 [1.0100, 1.0500] (+-2 SE of the per-image losses)"


@pytest.mark.parametrize("metric", ["seconds_per_epoch", "model.parameters", "initial_val_loss"])
def test_a_threshold_on_a_metric_without_a_yardstick_is_refused_before_the_report(metric, tmp_path):
    path = tmp_path / "claims.yaml"
    path.write_text(f"claims:\n  c: {{source: s, says: x, metric: {metric}, expect: at-most, a: resnet20, value: 1}}\n")
    with pytest.raises(CifarlabError, match=f"claims.c.expect: {metric} is measured without a test"):
        read_claims(path, _study())


def test_a_claim_about_more_training_images_than_the_runs_saw_is_not_shown_naming_the_counts():
    study = _study()
    claim = _claim("at-least", metric="val.accuracy", a="resnet20", value=0.9, min_train_images=40000)
    values = {"resnet20": {"val.accuracy": 0.95}}
    assert judge(claim, _inputs(study, values, images=10000), study).verdict == REPRODUCED
    finding = judge(claim, _inputs(study, values, images=10000, train_images=39999), study)
    assert finding.verdict == NOT_SHOWN
    assert finding.why == "the claim is about 40,000 training images; these runs trained on 39,999"
    assert finding.measured.startswith("`resnet20` 95.00% [")  # still says what it measured


def test_at_chance_is_reproduced_while_the_interval_holds_the_majority_rate():
    study = _study()
    claim = _claim("at-chance", metric="val.accuracy", a="lab-lr-1")
    above = next(k for k in range(100, 200) if stats.binomtest(k, 1000).proportion_ci(0.95).low > 0.1)  # 120

    def finding(count: int):
        return judge(claim, _inputs(study, {"lab-lr-1": {"val.accuracy": count / 1000}}), study)

    assert finding(above - 1).verdict == REPRODUCED
    assert finding(above - 1).why == "the interval holds the majority-class rate or lies below it"
    assert finding(above).verdict == CONTRADICTED
    assert finding(above).why == "the interval lies above the majority-class rate"
    assert finding(above).measured.endswith("(exact binomial, 1,000 images); majority-class rate 10.00%")
    assert finding(50).verdict == REPRODUCED  # below chance is not above it


# Without a test: near, and metrics that no resampling of images changes

def test_near_holds_while_every_run_is_within_the_margin_and_names_the_runs_outside():
    study = _study()
    claim = _claim("near", metric="initial_val_loss", runs=("lab-base", "lab-lr-1", "bn-128"), value="ln-classes",
                   margin=0.25)
    ln10 = math.log(10)
    finding = judge(claim, _inputs(study, {"lab-lr-1": {"initial_val_loss": ln10 + 0.24}}), study)
    assert (finding.verdict, finding.why) == ("holds", "as measured, no test")
    assert finding.measured == f"3 runs from 2.300 to {ln10 + 0.24:.3f}"
    assert finding.expected == "every run within 0.25 of ln 10 = 2.303 in initial_val_loss"
    finding = judge(claim, _inputs(study, {"lab-lr-1": {"initial_val_loss": ln10 + 0.26}}), study)
    assert finding.verdict == "does not hold"
    assert finding.measured == f"3 runs from 2.300 to {ln10 + 0.26:.3f}; outside: `lab-lr-1` {ln10 + 0.26:.3f}"
    numeric = _claim("near", metric="initial_val_loss", runs=("lab-base",), value=2.0, margin=0.25)
    assert judge(numeric, _inputs(study), study).verdict == "does not hold"


def test_an_exact_metric_holds_or_does_not_as_measured():
    study = _study()
    values = {"arch-plain20": {"model.macs_per_image": 40_000_000, "train_time_s": 60.0},
              "arch-vgg11": {"model.macs_per_image": 150_000_000, "train_time_s": 300.0}}
    inputs = _inputs(study, values)
    finding = judge(_claim("less", metric="model.macs_per_image", a="arch-plain20", b="arch-vgg11"), inputs, study)
    assert (finding.verdict, finding.why) == ("holds", "as measured, no test")
    assert finding.measured == "`arch-plain20` 40,000,000, `arch-vgg11` 150,000,000 (0.27x)"
    assert judge(_claim("more", metric="model.macs_per_image", a="arch-plain20", b="arch-vgg11"), inputs,
                 study).verdict == "does not hold"
    # seconds per epoch: the training time over the epochs run (30 each)
    finding = judge(_claim("more", metric="seconds_per_epoch", a="arch-vgg11", b="arch-plain20"), inputs, study)
    assert (finding.verdict, finding.measured) == ("holds", "`arch-vgg11` 10, `arch-plain20` 2 (5.00x)")


def test_an_exact_metric_takes_no_equivalence_and_no_difference_of_changes(tmp_path):
    path = tmp_path / "claims.yaml"
    for claim in ("{source: s, says: x, metric: model.parameters, expect: same, a: arch-plain20, b: arch-vgg11, "
                  "margin: 50}",
                  "{source: s, says: x, metric: model.parameters, expect: more, a: arch-vgg11, a_base: arch-plain20, "
                  "b: bn-8, b_base: bn-128}"):
        path.write_text(f"claims:\n  c: {claim}\n")
        with pytest.raises(CifarlabError, match="claims.c.expect: model.parameters is measured without a test"):
            read_claims(path, _study())


def test_measured_states_each_run_and_with_b_its_difference_from_b():
    study = _study()
    inputs = _inputs(study, _accuracies(gn_128=0.55, in_128=0.50, bn_128=0.52))
    finding = judge(_claim("measured", runs=("gn-128", "in-128", "bn-128"), b="bn-128"), inputs, study)
    assert (finding.verdict, finding.why, finding.expected) == ("measured", "",
                                                                "test.accuracy, as measured, each against `bn-128`")
    gn, in_ = _binomial(0.03, [0.55, 0.52], 1000), _binomial(-0.02, [0.50, 0.52], 1000)
    assert finding.measured == (f"`gn-128` 55.00% (+3.00 points {_points(*gn)} (binomial SE) against `bn-128`); "
                                f"`in-128` 50.00% (-2.00 points {_points(*in_)} (binomial SE) against `bn-128`); "
                                "`bn-128` 52.00%")
    plain = judge(_claim("measured", runs=("gn-128", "in-128")), inputs, study)
    assert (plain.measured, plain.verdict) == ("`gn-128` 55.00%; `in-128` 50.00%", "measured")


# What the runs cannot settle

def test_runs_of_a_pipeline_check_profile_settle_no_claim_on_what_training_finds():
    study = _study(profile="quick")
    assert study.pipeline_profiles == ("quick",)
    inputs = _inputs(study, {**_accuracies(gn_128=0.7, in_128=0.5), "arch-plain20": {"model.macs_per_image": 1},
                             "arch-vgg11": {"weights.fraction_small": 0.9}})
    finding = judge(_claim("more", a="gn-128", b="in-128"), inputs, study)
    assert (finding.verdict, finding.why) == (NOT_SHOWN, PIPELINE_CHECK)
    assert finding.measured.startswith("`gn-128` 70.00%, `in-128` 50.00%; A - B +20.00 points")
    fraction = _claim("more", metric="weights.fraction_small", a="arch-vgg11", b="arch-plain20")
    assert (judge(fraction, inputs, study).verdict, judge(fraction, inputs, study).why) == (NOT_SHOWN, PIPELINE_CHECK)
    # the profile shrinks the models, so their sizes are not the studies' either
    macs = _claim("less", metric="model.macs_per_image", a="arch-plain20", b="arch-vgg11")
    assert (judge(macs, inputs, study).verdict, judge(macs, inputs, study).why) == (NOT_SHOWN, PIPELINE_CHECK)
    # the loss before training depends on initialisation alone, and `measured` has no verdict to withhold
    near = _claim("near", metric="initial_val_loss", runs=("lab-base", "gn-128"), value="ln-classes", margin=0.25)
    assert judge(near, inputs, study).verdict == "holds"
    assert judge(_claim("measured", runs=("gn-128",)), inputs, study).verdict == "measured"


def test_the_profile_a_run_recorded_decides_not_the_one_params_name_now():
    trained = _study(profile="quick")
    now = _study()
    inputs = _inputs(trained, _accuracies(gn_128=0.7, in_128=0.5))
    assert judge(_claim("more", a="gn-128", b="in-128"), inputs, now).why == PIPELINE_CHECK
    # a profile without `verdicts: false` gives verdicts
    unmarked = _study(profile="quick", pipeline_check=False)
    assert unmarked.pipeline_profiles == ()
    assert judge(_claim("more", a="gn-128", b="in-128"), _inputs(unmarked, _accuracies(gn_128=0.7, in_128=0.5)),
                 unmarked).verdict == REPRODUCED


@pytest.mark.parametrize("missing", [None, math.nan])
def test_a_missing_score_is_not_shown_never_within_noise(missing):
    study = _study(_replicated("gn-128", "in-128"))
    inputs = _inputs(study, _accuracies(gn_128=0.6, gn_128_r1=missing, in_128=0.5, in_128_r1=0.5))
    for claim in (_claim("more", a="gn-128", b="in-128"), _claim("same", a="gn-128", b="in-128", margin=0.5),
                  _claim("not-below", a="gn-128", b="in-128", margin=0.5)):
        finding = judge(claim, inputs, study)
        assert (finding.verdict, finding.why) == (NOT_SHOWN, "a score is missing"), claim.expect


@pytest.mark.parametrize("claim", [
    _claim("at-chance", metric="val.accuracy", a="lab-lr-1"),
    _claim("at-least", metric="val.accuracy", a="lab-lr-1", value=0.05),
    _claim("near", metric="initial_val_loss", runs=("lab-lr-1",), value="ln-classes", margin=0.25),
])
def test_a_threshold_or_near_claim_on_a_missing_value_is_not_shown(claim):
    study = _study()
    inputs = _inputs(study, {"lab-lr-1": {"val.accuracy": None, "initial_val_loss": math.nan}})
    finding = judge(claim, inputs, study)
    assert finding.verdict == NOT_SHOWN


# The section

def test_the_findings_section_has_a_heading_a_summary_and_one_row_per_claim():
    study = _study()
    inputs = _inputs(study, _accuracies(gn_128=0.6, in_128=0.5))
    claims = [Claim(name="first", source="HW2 Lab 1", says="GN beats IN", metric="test.accuracy", expect="more",
                    a="gn-128", b="in-128", reported="60% vs 50%"),
              Claim(name="second", source="HW2 Lab 2", says="BN beats IN", metric="test.accuracy", expect="more",
                    a="bn-128", b="in-128"),
              Claim(name="third", source="HW2 Lab 3", says="as measured", metric="test.accuracy", expect="measured",
                    runs=("gn-128",))]
    lines = findings_section(claims, inputs, study)
    assert lines[0] == "## Findings" and lines[1] == ""
    assert "(1 reproduced, 1 not shown, 1 measured)" in lines[2]
    table = lines[4].splitlines()
    assert len(table) == 2 + len(claims)  # header, rule, a row per claim
    assert [row.split("|")[1].strip() for row in table[2:]] == [
        "`first`: GN beats IN (reported: 60% vs 50%)", "`second`: BN beats IN", "`third`: as measured"]
    assert "not shown: the interval holds 0" in table[3]
    assert findings_section([], inputs, study) == []


def test_every_row_of_the_findings_table_has_the_headers_cells():
    study = _study()
    claims = [_claim("same", a="gn-128", b="in-128", margin=0.01), _claim("more", a="gn-128", b="in-128")]
    table = findings_section(claims, _inputs(study), study)[4].splitlines()
    cells = [len(line.replace("\\|", "").split("|")) for line in table]
    assert cells == [cells[0]] * len(table)

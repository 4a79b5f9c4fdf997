"""cifarlab.report.findings and config.relations: each verdict rule at its boundaries, Holm's correction
against hand values, and judged claims on metrics and per-image answers made up for the test params' runs."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import new_study_params
from scipy import stats
from statsmodels.stats.multitest import multipletests

from cifarlab.analysis.stats import Estimate
from cifarlab.config.claims import Claim
from cifarlab.config.relations import AGAINST, FOR, RELATIONS
from cifarlab.config.sections import RunConfig, Study, replicate_groups
from cifarlab.report.findings import (
    CONTRADICTED,
    HOLDS,
    NOT_SHOWN,
    REPRODUCED,
    Finding,
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
            train_images: int = 40000, right: dict[str, np.ndarray] | None = None) -> ReportInputs:
    """What the report reads for every run of `study`: every split 50% right of `images` with a loss of 1.0
    (SE 0.01) and a majority-class rate of 10%, then `values` (run -> {dotted metric key: value}); `right`
    (run -> per-image right answers on test) sets a run's test answers and accuracy."""
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
    return ReportInputs(metrics, {}, records, configs, replicate_groups(configs.values()), {}, correct)


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
    assert _decide(expect, -m + 0.0101 * Z, margin=m).p < 0.05
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
    reference = stats.ttest_rel([200 / 30, 210 / 30, 190 / 30], [60 / 30, 65 / 30, 58 / 30]).pvalue
    assert more.decision.p == pytest.approx(reference)


def test_one_seed_without_a_replicated_run_in_its_study_is_not_shown_and_says_why():
    study = _study()
    finding = judge_all([_claim("more", "seconds_per_epoch", a="bn-8", b="bn-128", study="norm")],
                        _inputs(study, {"bn-8": {"train_time_s": 200.0}}), study)[0]
    assert finding.verdict == NOT_SHOWN and finding.decision is None
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
    assert finding.verdict == REPRODUCED and "majority-class rate 10.00%" in finding.measured
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

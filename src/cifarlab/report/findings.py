"""The report's Findings: every claim of `claims.yaml` with what the runs measured and its verdict.

Each claim's estimate holds seed and test-image noise (`analysis.stats.contrast`); its relation
(`config.relations`) turns it into one two-sided test; the claims that reach a test are one family, whose
p values Holm's step-down procedure adjusts, and a verdict is **reproduced** or **contradicted** only when
the adjusted p is below 0.05. A claim is not shown when a run it reads trained under a profile that
checks the pipeline (`verdicts: false`), unless its metric does not depend on training, or when a run
trained on fewer images than the claim is about; those, and the claims stated as measured, are outside
the family.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from statsmodels.stats.multitest import multipletests

from cifarlab.analysis.curves import curve_metric
from cifarlab.analysis.stats import (
    ALPHA,
    Estimate,
    PooledSeedVariance,
    RunSample,
    contrast,
    score_sample,
)
from cifarlab.config.claims import ANY_PROFILE, FRACTIONS, LN_CLASSES, Claim
from cifarlab.config.relations import FOR, RELATIONS, Decision
from cifarlab.config.sections import Study
from cifarlab.report.inputs import ReportInputs
from cifarlab.report.tables import markdown

REPRODUCED, CONTRADICTED, NOT_SHOWN = "**reproduced**", "**contradicted**", "not shown"
MEASURED, HOLDS, DOES_NOT_HOLD = "measured", "holds", "does not hold"


@dataclass(frozen=True)
class Finding:
    claim: Claim
    expected: str
    measured: str
    verdict: str
    why: str = ""  # why a claim is not shown, or what a verdict rests on
    estimate: Estimate | None = None  # relative to the claim's reference (0, the threshold, the chance rate)
    decision: Decision | None = None  # the claim's test, for the family
    adjusted_p: float = math.nan

    def row(self) -> dict[str, str]:
        said = self.claim.says + (f" (reported: {self.claim.reported})" if self.claim.reported else "")
        return {"claim": f"`{self.claim.name}`: {said}", "source": self.claim.source, "expected": self.expected,
                "measured": self.measured, "p": _p(self.decision.p) if self.decision else "",
                "p (Holm)": _p(self.adjusted_p) if self.decision else "",
                "verdict": self.verdict + (f": {self.why}" if self.why else "")}


def _p(p: float) -> str:
    return f"{p:.2g}" if p >= 0.001 else f"{p:.1e}"


class Values:
    """A claim's metric for each original run, by the seeds of its replicates, with its image noise."""

    def __init__(self, claim: Claim, inputs: ReportInputs, study_runs: list[str]) -> None:
        self.claim, self.inputs, self.study_runs = claim, inputs, study_runs
        self.split = claim.metric.split(".")[0]

    def one(self, name: str) -> float:
        metrics, metric = self.inputs.metrics[name], self.claim.metric
        if metric == "seconds_per_epoch":
            return metrics["train_time_s"] / max(metrics["epochs_run"], 1)
        if metric.startswith("curve."):
            return curve_metric(self.inputs.histories[name], metric)
        node: Any = metrics
        for part in metric.split("."):
            node = node[part]
        return math.nan if node is None else float(node)

    def by_seed(self, run: str) -> dict[int, float]:
        return {self.inputs.configs[name].seed: self.one(name) for name in self.inputs.replicates[run]}

    def mean(self, run: str) -> float:
        return float(np.mean(list(self.by_seed(run).values())))

    def sample(self, run: str) -> RunSample:
        """The run's metric by seed, with per-image right answers (test accuracy, from its predictions) or
        the standard error its images give (a loss; a train-split accuracy, binomial)."""
        names = self.inputs.replicates[run]
        seed = {name: self.inputs.configs[name].seed for name in names}
        if self.claim.kind == "score":
            kept = all(self.split in self.inputs.correct.get(name, {}) for name in names)
            right = {seed[n]: self.inputs.correct[n][self.split] for n in names} if kept else None
            return score_sample(self.by_seed(run), right, self.inputs.metrics[run][self.split]["images"])
        if self.claim.kind == "loss":
            return RunSample(self.by_seed(run), image_se={seed[n]: self.inputs.metrics[n][self.split]["loss_se"]
                                                          for n in names})
        return RunSample(self.by_seed(run))

    def pooled(self) -> PooledSeedVariance | None:
        """The metric's seed variance pooled over the replicated runs of the claim's study."""
        return PooledSeedVariance.of([self.sample(run) for run in self.study_runs])

    def estimate(self) -> Estimate:
        """The claim's contrast relative to its reference: A - B (or the difference of changes), A - value,
        A - the majority-class rate."""
        claim, relation = self.claim, RELATIONS[self.claim.expect]
        if relation.estimate == "a-b":
            runs, weights = ((claim.a, claim.a_base, claim.b, claim.b_base), (1, -1, -1, 1)) if claim.of_changes \
                else ((claim.a, claim.b), (1, -1))
            return contrast([self.sample(run) for run in runs], weights, self.pooled())
        estimate = contrast([self.sample(claim.a)], [1], self.pooled())
        return dataclasses.replace(estimate, mean=estimate.mean - self.reference())

    def reference(self) -> float:
        """What the claim compares one run with: its value, or the majority-class rate; 0 for a difference."""
        if self.claim.expect == "at-chance":
            return self.inputs.metrics[self.claim.a][self.split]["majority_rate"]
        if self.claim.expect in ("at-least", "at-most"):
            return float(self.claim.value)
        return 0.0


def _fmt(claim: Claim, value: float) -> str:
    if claim.metric in ("model.parameters", "model.macs_per_image"):
        return f"{value:,.0f}"
    if claim.metric.startswith("curve.") and claim.metric in FRACTIONS:  # a gain or a spread of accuracy
        return f"{100 * value:.2f} points"
    if claim.metric in FRACTIONS:
        return f"{100 * value:.2f}%"
    return f"{value:.1f} s" if claim.metric == "seconds_per_epoch" else f"{value:.4f}"


def _signed(claim: Claim, value: float) -> str:
    """A difference without its unit, as an interval's bounds are written."""
    if claim.metric in FRACTIONS:
        return f"{100 * value:+.2f}"
    return f"{value:+.1f}" if claim.metric == "seconds_per_epoch" else f"{value:+.4f}"


def _fmt_signed(claim: Claim, value: float) -> str:
    unit = " points" if claim.metric in FRACTIONS else " s" if claim.metric == "seconds_per_epoch" else ""
    return _signed(claim, value) + unit


def _fmt_interval(claim: Claim, estimate: Estimate, shift: float | None = None) -> str:
    """A difference's interval, signed; with `shift` (a run's own value: the estimate plus its reference),
    the run's interval as its metric reads."""
    if estimate.missing:
        return "[no interval]"
    low, high = estimate.interval()
    if shift is None:
        return f"[{_signed(claim, low)}, {_signed(claim, high)}]"
    return f"[{_fmt(claim, low + shift)}, {_fmt(claim, high + shift)}]"


def _points(claim: Claim, value: float) -> str:
    return f"{100 * value:.2g} points" if claim.metric in FRACTIONS else f"{value:g}"


def expected_text(claim: Claim, num_classes: int) -> str:
    """The relation the claim expects, in the claim's own terms."""
    a, b, metric = f"`{claim.a}`", f"`{claim.b}`", claim.metric
    if claim.of_changes:
        relation = ">" if claim.expect == "more" else "<"
        return f"({a} - `{claim.a_base}`) {relation} ({b} - `{claim.b_base}`) in {metric}"
    value = claim.value
    value_text = (f"ln {num_classes} = {math.log(num_classes):.3f}" if value == LN_CLASSES
                  else _fmt(claim, float(value)) if value is not None else "")
    margin = _points(claim, claim.margin) if claim.margin is not None else ""
    texts = {
        "more": lambda: f"{a} > {b} in {metric}",
        "less": lambda: f"{a} < {b} in {metric}",
        "same": lambda: f"{a} - {b} within +-{margin} in {metric}",
        "not-below": lambda: f"{a} >= {b} - {margin} in {metric}",
        "at-least": lambda: f"{a} >= {value_text} in {metric}",
        "at-most": lambda: f"{a} <= {value_text} in {metric}",
        "at-chance": lambda: f"{a} within +-{margin} of the majority-class rate in {metric}",
        "near": lambda: f"every run within {claim.margin:g} of {value_text} in {metric}",
        "equals": lambda: f"{a} is {value_text} in {metric}",
        "measured": lambda: f"{metric}, as measured" + (f", each against {b}" if claim.b else ""),
    }
    return texts[claim.expect]()


def not_settled(claim: Claim, inputs: ReportInputs, study: Study) -> str:
    """Why the runs cannot settle the claim, or "" when they can."""
    if claim.metric not in ANY_PROFILE:
        checks = sorted({inputs.configs[name].profile for run in claim.named_runs
                         for name in inputs.replicates[run]} & set(study.pipeline_profiles))
        if checks:
            return (f"profile {', '.join(f'`{p}`' for p in checks)} checks the pipeline (smaller models, a slice of the "
                    "images for a few epochs); it cannot settle a claim on what the studies find")
    if claim.min_train_images:
        fewer = sorted({inputs.records[name]["data"]["train_images"] for run in claim.named_runs
                        for name in inputs.replicates[run]})
        if fewer[0] < claim.min_train_images:
            return (f"the claim is about {claim.min_train_images:,} training images; these runs trained on "
                    f"{', '.join(f'{n:,}' for n in fewer)}")
    return ""


def judge(claim: Claim, inputs: ReportInputs, study: Study) -> Finding:
    """The claim's finding before the family's correction: what its runs measured, and its test."""
    study_runs = list(study.replicates_by_study().get(claim.study, {})) if claim.study else list(inputs.replicates)
    values = Values(claim, inputs, [run for run in study_runs if run in inputs.replicates])
    num_classes = inputs.configs[claim.named_runs[0]].model.num_classes
    expected = expected_text(claim, num_classes)
    relation = RELATIONS[claim.expect]
    if not relation.tested:
        measured, verdict, why = _as_measured(claim, values, num_classes)
        reason = not_settled(claim, inputs, study)
        return Finding(claim, expected, measured, NOT_SHOWN if reason and verdict != MEASURED else verdict,
                       reason if reason and verdict != MEASURED else why)
    if claim.kind == "exact":
        a, b = values.mean(claim.a), values.mean(claim.b)
        holds = a > b if claim.expect == "more" else a < b
        measured = f"`{claim.a}` {_fmt(claim, a)}, `{claim.b}` {_fmt(claim, b)}" + (f" ({a / b:.2f}x)" if b else "")
        reason = not_settled(claim, inputs, study)
        if reason:  # a pipeline-check profile shrinks the models whose size the claim is about
            return Finding(claim, expected, measured, NOT_SHOWN, reason)
        return Finding(claim, expected, measured, HOLDS if holds else DOES_NOT_HOLD,
                       "a property of the model, the same for every seed")
    estimate = values.estimate()
    measured = _measured_text(claim, values, estimate)
    reason = not_settled(claim, inputs, study) or (f"no interval: {estimate.no_interval}" if estimate.missing else "")
    if reason:
        return Finding(claim, expected, measured, NOT_SHOWN, reason, estimate)
    return Finding(claim, expected, measured, NOT_SHOWN, "", estimate, relation.judge(estimate, claim))


def _measured_text(claim: Claim, values: Values, estimate: Estimate) -> str:
    """What the runs measured: each run's mean, the estimate with its 95% interval and how its noise was
    measured, and the validation figure (the split that chose the checkpoint) beside a test accuracy."""
    relation = RELATIONS[claim.expect]
    runs = [run for run in (claim.a, claim.a_base, claim.b, claim.b_base) if run]
    means = ", ".join(f"`{run}` {_fmt(claim, values.mean(run))}" for run in runs)
    if relation.estimate == "a-b":
        name = "difference of the changes" if claim.of_changes else "A - B"
        text = f"{means}; {name} {_fmt_signed(claim, estimate.mean)} {_fmt_interval(claim, estimate)}"
    else:
        reference = values.reference()
        text = f"`{claim.a}` {_fmt(claim, estimate.mean + reference)} {_fmt_interval(claim, estimate, reference)}"
        if claim.expect == "at-chance":
            text += f"; majority-class rate {_fmt(claim, reference)}"
    text += f" ({estimate.test})" if not estimate.missing else ""
    if claim.metric == "test.accuracy":
        val = ", ".join(f"`{run}` {100 * _mean_of(values, run, 'val'):.2f}%" for run in runs)
        text += f"; validation (chose the checkpoint): {val}"
    return text


def _mean_of(values: Values, run: str, split: str) -> float:
    return float(np.mean([values.inputs.metrics[n][split]["accuracy"] for n in values.inputs.replicates[run]]))


def _as_measured(claim: Claim, values: Values, num_classes: int) -> tuple[str, str, str]:
    """(measured, verdict, why) of a relation stated without a test."""
    if claim.expect == "measured":
        parts = []
        for run in claim.runs:
            text = f"`{run}` {_fmt(claim, values.mean(run))}"
            if claim.b and run != claim.b:
                estimate = contrast([values.sample(run), values.sample(claim.b)], [1, -1], values.pooled())
                text += (f" ({_fmt_signed(claim, estimate.mean)} {_fmt_interval(claim, estimate)}"
                         f"{'' if estimate.missing else f', {estimate.test}'} against `{claim.b}`)")
            parts.append(text)
        return "; ".join(parts), MEASURED, ""
    target = math.log(num_classes) if claim.value == LN_CLASSES else float(claim.value)
    if claim.expect == "equals":
        value = values.mean(claim.a)
        return f"`{claim.a}` {_fmt(claim, value)}", HOLDS if value == target else DOES_NOT_HOLD, \
            "a property of the model, the same for every seed"
    # near: every replicate on its own: the claim is about each training, not a mean of them
    runs = {name: values.one(name) for run in claim.runs for name in values.inputs.replicates[run]}
    if not all(math.isfinite(value) for value in runs.values()):
        return "", NOT_SHOWN, "a value is missing"
    outside = [run for run, value in runs.items() if abs(value - target) > claim.margin]
    measured = (f"{len(runs)} trainings from {min(runs.values()):.3f} to {max(runs.values()):.3f}"
                + (f"; outside: {', '.join(f'`{r}` {runs[r]:.3f}' for r in outside)}" if outside else ""))
    return measured, HOLDS if not outside else DOES_NOT_HOLD, "as measured, no test"


def holm(findings: list[Finding]) -> list[Finding]:
    """The family's verdicts: Holm's adjustment over every finding with a test (statsmodels), then
    reproduced or contradicted by the side its test leans to, where the adjusted p is below 0.05."""
    tested = [i for i, f in enumerate(findings) if f.decision is not None]
    if not tested:
        return findings
    _, adjusted, _, _ = multipletests([findings[i].decision.p for i in tested], alpha=ALPHA, method="holm")
    out = list(findings)
    for i, p in zip(tested, adjusted):
        f = findings[i]
        if p < ALPHA:
            verdict, why = (REPRODUCED if f.decision.side == FOR else CONTRADICTED), ""
        elif f.decision.p < ALPHA:
            side = "for" if f.decision.side == FOR else "against"
            verdict, why = NOT_SHOWN, (f"p = {_p(f.decision.p)} alone (leaning {side} the claim), {_p(p)} after "
                                       f"Holm over {len(tested)} claims")
        else:
            verdict, why = NOT_SHOWN, _undecided(f)
        out[i] = dataclasses.replace(f, verdict=verdict, why=why, adjusted_p=float(p))
    return out


def _undecided(finding: Finding) -> str:
    claim, estimate = finding.claim, finding.estimate
    low, high = estimate.interval()
    if claim.expect in ("same", "at-chance"):
        return (f"the interval reaches past +-{_points(claim, claim.margin)}; these runs could have shown "
                f"+-{_points(claim, max(abs(low), abs(high)))} at most")
    if claim.expect == "not-below":
        return f"the interval holds -{_points(claim, claim.margin)}"
    return "the interval holds the threshold" if claim.expect in ("at-least", "at-most") else "the interval holds 0"


def judge_all(claims: list[Claim], inputs: ReportInputs, study: Study) -> list[Finding]:
    return holm([judge(claim, inputs, study) for claim in claims])


def findings_section(findings: list[Finding], figure: Path | None) -> list[str]:
    """The report's Findings table, one row per claim whose study ran, and its forest plot."""
    if not findings:
        return []
    counts: dict[str, int] = {}
    for finding in findings:
        counts[finding.verdict] = counts.get(finding.verdict, 0) + 1
    summary = ", ".join(f"{count} {verdict.strip('*')}" for verdict, count in counts.items())
    family = sum(1 for f in findings if f.decision is not None)
    return ["## Findings", "",
            (f"Each claim of `claims.yaml` tested against the runs ({summary}). Claims on what training reaches "
             "are judged on the test images, which neither training nor checkpoint selection saw; validation "
             "stands beside them. Each interval is 95% and holds both seed-to-seed and test-image noise "
             "(seeds crossed with images, Student t with Satterthwaite's degrees of freedom; a run of one seed "
             f"borrows its study's pooled seed variance, and says so). The {family} claims with a test are one "
             "family: `p` is each claim's own two-sided test, `p (Holm)` the same after Holm's adjustment, and "
             "the verdict follows the adjusted one at 0.05. See `docs/statistics.md`."), "",
            *([f"![Findings: each claim's 95% interval against its reference]({figure.name})", ""] if figure else []),
            markdown([finding.row() for finding in findings]), ""]

"""The report's Findings: every claim of `claims.yaml` with what the runs measured and its verdict.

Verdicts, at 95%:
- a direction (A > B, or a difference of changes): **reproduced** when the interval of the difference
  excludes 0 on the expected side, **contradicted** when it excludes 0 on the other side, else **not shown**;
- an equivalence (|A - B| <= m): reproduced when the whole interval lies within +-m, contradicted when it
  lies wholly outside, else not shown, with the half-width an interval would need;
- at least as good (A >= B - m): reproduced when the interval's low end is above -m, contradicted when the
  whole interval is below 0;
- a threshold (A >= v, or at chance): against the interval of the one run;
- a metric no resampling of images changes (MACs, a share of weights, seconds): "holds" or "does not
  hold" as measured, without a test.
A claim is not shown when a run it reads trained under a profile that checks the pipeline (`verdicts:
false`), unless its metric does not depend on training, or when a run trained on fewer images than the
claim is about.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from cifarlab.analysis.stats import (
    Difference,
    accuracy_interval,
    compare,
    compare_changes,
    paired_difference,
    se_difference,
    summarize,
)
from cifarlab.config.claims import ANY_PROFILE, LN_CLASSES, Claim
from cifarlab.config.sections import Study
from cifarlab.report.inputs import ReportInputs
from cifarlab.report.tables import markdown

REPRODUCED, CONTRADICTED, NOT_SHOWN = "**reproduced**", "**contradicted**", "not shown"


@dataclass(frozen=True)
class Finding:
    claim: Claim
    expected: str
    measured: str
    verdict: str
    why: str = ""  # why a claim is not shown, or what a verdict rests on

    def row(self) -> dict[str, str]:
        said = self.claim.says + (f" (reported: {self.claim.reported})" if self.claim.reported else "")
        return {"claim": f"`{self.claim.name}`: {said}", "source": self.claim.source, "expected": self.expected,
                "measured": self.measured, "verdict": self.verdict + (f": {self.why}" if self.why else "")}


class Values:
    """A claim's metric for each original run, by the seeds of its replicates, with its yardstick."""

    def __init__(self, claim: Claim, inputs: ReportInputs) -> None:
        self.claim, self.inputs = claim, inputs
        self.split = claim.metric.split(".")[0]

    def one(self, name: str) -> float:
        metrics = self.inputs.metrics[name]
        if self.claim.metric == "seconds_per_epoch":
            return metrics["train_time_s"] / max(metrics["epochs_run"], 1)
        node: Any = metrics
        for part in self.claim.metric.split("."):
            node = node[part]
        return math.nan if node is None else float(node)

    def by_seed(self, run: str) -> dict[int, float]:
        return {self.inputs.configs[name].seed: self.one(name) for name in self.inputs.replicates[run]}

    def mean(self, run: str) -> float:
        values = list(self.by_seed(run).values())
        return sum(values) / len(values)

    def images(self, run: str) -> int:
        return self.inputs.metrics[run][self.split]["images"]

    def difference(self, a: str, b: str) -> Difference:
        """A - B with the strongest test the replicates allow (see `stats.compare`)."""
        if self.claim.kind == "score":
            return compare(self.by_seed(a), self.by_seed(b), self.images(a))
        a_seeds, b_seeds = self.by_seed(a), self.by_seed(b)
        if len(a_seeds) >= 2 and set(a_seeds) == set(b_seeds):
            seeds = sorted(a_seeds)
            diff = paired_difference([a_seeds[s] for s in seeds], [b_seeds[s] for s in seeds])
            return Difference(diff.mean, diff.low, diff.high, f"paired t, {len(seeds)} seeds")
        return se_difference(self.mean(a) - self.mean(b), [self.se(a), self.se(b)], "SE of the per-image losses")

    def changes(self, a: str, a_base: str, b: str, b_base: str) -> Difference:
        """(A - A base) - (B - B base)."""
        runs = (a, a_base, b, b_base)
        if self.claim.kind == "score":
            return compare_changes(*(self.by_seed(run) for run in runs), images=self.images(a))
        change = (self.mean(a) - self.mean(a_base)) - (self.mean(b) - self.mean(b_base))
        return se_difference(change, [self.se(run) for run in runs], "SE of the per-image losses")

    def se(self, run: str) -> float:
        """A loss's standard error on its images, as the evaluate stage measured it (the mean of its seeds')."""
        ses = [self.inputs.metrics[name][self.split]["loss_se"] for name in self.inputs.replicates[run]]
        return math.sqrt(sum(se ** 2 for se in ses)) / len(ses)

    def interval(self, run: str) -> tuple[float, float, str]:
        """The 95% interval of one run's metric: t over its seeds, else exact binomial (a score) or +-2 SE."""
        values = list(self.by_seed(run).values())
        if len(values) >= 2:
            summary = summarize(values)
            return summary.low, summary.high, f"t over {len(values)} seeds"
        if self.claim.kind == "score":
            low, high = accuracy_interval(values[0], self.images(run))
            return low, high, f"exact binomial, {self.images(run):,} images"
        se = self.se(run)
        return values[0] - 2 * se, values[0] + 2 * se, "+-2 SE of the per-image losses"


def _fmt(claim: Claim, value: float) -> str:
    if claim.kind == "score":
        return f"{100 * value:.2f}%"
    if claim.metric in ("model.parameters", "model.macs_per_image"):
        return f"{value:,.0f}"
    if claim.metric == "weights.fraction_small":
        return f"{100 * value:.2f}%"
    return f"{value:.3g}" if claim.metric == "seconds_per_epoch" else f"{value:.4f}"


def _fmt_diff(claim: Claim, diff: Difference) -> str:
    if claim.kind == "score":
        return f"{100 * diff.mean:+.2f} points [{100 * diff.low:+.2f}, {100 * diff.high:+.2f}] ({diff.test})"
    return f"{diff.mean:+.4f} [{diff.low:+.4f}, {diff.high:+.4f}] ({diff.test})"


def _points(claim: Claim, value: float) -> str:
    return f"{100 * value:.2g} points" if claim.kind == "score" else f"{value:g}"


def expected_text(claim: Claim, num_classes: int) -> str:
    """The relation the claim expects, in the claim's own terms."""
    a, b, metric = f"`{claim.a}`", f"`{claim.b}`", claim.metric
    if claim.of_changes:
        relation = ">" if claim.expect == "more" else "<"
        return (f"({a} - `{claim.a_base}`) {relation} ({b} - `{claim.b_base}`) in {metric}")
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
        "at-chance": lambda: f"{a} not above the majority-class rate in {metric}",
        "near": lambda: f"every run within {claim.margin:g} of {value_text} in {metric}",
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
    """The claim's finding: what its runs measured and its verdict."""
    values = Values(claim, inputs)
    num_classes = inputs.configs[claim.named_runs[0]].model.num_classes
    expected = expected_text(claim, num_classes)
    measured, verdict, why = _measure(claim, values, num_classes)
    reason = not_settled(claim, inputs, study)
    if reason and verdict != "measured":
        return Finding(claim, expected, measured, NOT_SHOWN, reason)
    return Finding(claim, expected, measured, verdict, why)


def _measure(claim: Claim, values: Values, num_classes: int) -> tuple[str, str, str]:
    """(measured, verdict, why) before the profile is considered."""
    expect = claim.expect
    if expect == "measured":
        parts = []
        for run in claim.runs:
            text = f"`{run}` {_fmt(claim, values.mean(run))}"
            if claim.b and run != claim.b:
                text += f" ({_fmt_diff(claim, values.difference(run, claim.b))} against `{claim.b}`)"
            parts.append(text)
        return "; ".join(parts), "measured", ""
    if expect == "near":
        target = math.log(num_classes) if claim.value == LN_CLASSES else float(claim.value)
        # every replicate on its own: the claim is about each training, not a mean of them
        runs = {name: values.one(name) for run in claim.runs for name in values.inputs.replicates[run]}
        if not all(math.isfinite(value) for value in runs.values()):
            return "", NOT_SHOWN, "a value is missing"
        outside = [run for run, value in runs.items() if abs(value - target) > claim.margin]
        measured = (f"{len(runs)} runs from {min(runs.values()):.3f} to {max(runs.values()):.3f}"
                    + (f"; outside: {', '.join(f'`{r}` {runs[r]:.3f}' for r in outside)}" if outside else ""))
        return measured, "holds" if not outside else "does not hold", "as measured, no test"
    if expect in ("at-least", "at-most", "at-chance"):
        return _threshold(claim, values)
    if claim.kind == "exact":
        a, b = values.mean(claim.a), values.mean(claim.b)
        holds = a > b if expect == "more" else a < b
        ratio = f" ({a / b:.2f}x)" if b else ""
        return f"`{claim.a}` {_fmt(claim, a)}, `{claim.b}` {_fmt(claim, b)}{ratio}", \
            "holds" if holds else "does not hold", "as measured, no test"
    diff = (values.changes(claim.a, claim.a_base, claim.b, claim.b_base) if claim.of_changes
            else values.difference(claim.a, claim.b))
    measured = ("A - B " if not claim.of_changes else "difference of the changes ") + _fmt_diff(claim, diff)
    if not claim.of_changes:
        measured = f"`{claim.a}` {_fmt(claim, values.mean(claim.a))}, `{claim.b}` {_fmt(claim, values.mean(claim.b))}; " \
            + measured
    if diff.missing:
        return measured, NOT_SHOWN, "a score is missing"
    if expect in ("more", "less"):
        sign = 1 if expect == "more" else -1
        if diff.low > 0 or diff.high < 0:
            return measured, REPRODUCED if (diff.low > 0) == (sign > 0) else CONTRADICTED, ""
        return measured, NOT_SHOWN, "the interval holds 0"
    margin = claim.margin
    if expect == "same":
        if -margin <= diff.low and diff.high <= margin:
            return measured, REPRODUCED, ""
        if diff.low > margin or diff.high < -margin:
            return measured, CONTRADICTED, ""
        half = (diff.high - diff.low) / 2
        room = margin - abs(diff.mean)
        need = (f"an interval of +-{_points(claim, room)} around this difference would settle it (this one is "
                f"+-{_points(claim, half)})" if room > 0 else "the measured difference itself is past the margin")
        return measured, NOT_SHOWN, need
    # not-below
    if diff.low > -margin:
        return measured, REPRODUCED, ""
    if diff.high < 0:
        return measured, CONTRADICTED, ""
    return measured, NOT_SHOWN, f"the interval reaches below -{_points(claim, margin)} and above 0"


def _threshold(claim: Claim, values: Values) -> tuple[str, str, str]:
    run = claim.a
    value = values.mean(run)
    if not all(math.isfinite(v) for v in values.by_seed(run).values()):
        return f"`{run}`: a score is missing", NOT_SHOWN, "a score is missing"
    low, high, how = values.interval(run)
    measured = f"`{run}` {_fmt(claim, value)} [{_fmt(claim, low)}, {_fmt(claim, high)}] ({how})"
    if claim.expect == "at-chance":
        rate = values.inputs.metrics[run][values.split]["majority_rate"]
        measured += f"; majority-class rate {_fmt(claim, rate)}"
        return measured, REPRODUCED if low <= rate else CONTRADICTED, \
            "the interval holds the majority-class rate or lies below it" if low <= rate else \
            "the interval lies above the majority-class rate"
    target = float(claim.value)
    above, below = low >= target, high < target
    if claim.expect == "at-most":
        above, below = high <= target, low > target
    if above:
        return measured, REPRODUCED, ""
    if below:
        return measured, CONTRADICTED, ""
    return measured, NOT_SHOWN, "the interval holds the threshold"


def findings_section(claims: list[Claim], inputs: ReportInputs, study: Study) -> list[str]:
    """The report's Findings table, one row per claim whose study ran."""
    if not claims:
        return []
    findings = [judge(claim, inputs, study) for claim in claims]
    counts: Mapping[str, int] = {}
    for finding in findings:
        counts[finding.verdict] = counts.get(finding.verdict, 0) + 1  # type: ignore[index]
    summary = ", ".join(f"{count} {verdict.strip('*')}" for verdict, count in counts.items())
    return ["## Findings", "",
            (f"Each claim of `claims.yaml` tested against the runs ({summary}). Differences are A - B at 95% "
             "(paired t over shared seeds, Welch's t over different ones, else +-2 binomial standard errors on "
             "the split's images for a score, +-2 standard errors of the per-image losses for a loss); a "
             "threshold is tested against the one run's interval. See `docs/statistics.md`."), "",
            markdown([finding.row() for finding in findings]), ""]

"""The normalization section: every run's scores and curves, each norm against the baseline, the
built-in BatchNorm against ours, the cost of each run, what the batch size does to each norm, and the
quantiles of the penultimate features."""

from __future__ import annotations

import math
import shutil
from collections import defaultdict
from collections.abc import Mapping

from cifarlab.analysis.replicates import band
from cifarlab.analysis.stats import Estimate
from cifarlab.config.sections import RunConfig
from cifarlab.io import require_input
from cifarlab.models import build_model, model_label
from cifarlab.report.plots import plot_error_curves
from cifarlab.report.tables import (
    accuracy_cell,
    baseline_comparisons,
    comparison_table,
    cost_table,
    interval,
    markdown,
    metrics_table,
    pct,
    signed_points,
)
from cifarlab.report.view import StudyView, changes, difference, mean

SANITY_PAIR = ("torch_bn", "bn")  # (built-in, ours): the same BatchNorm twice


def norm_section(view: StudyView) -> list[str]:
    """The normalization study: scores, curves, each norm against the baseline, the built-in twin, cost,
    batch size, feature quantiles."""
    metrics = {run: view.metrics[run] for run in view.runs}
    histories = {run: view.histories[run] for run in view.runs}
    figure = view.out_dir / "error_curves.png"
    plot_error_curves(view.grouped_histories(), figure, "Normalization study: all runs")
    _copy_quantiles(view, ["all_runs"])
    baseline = view.configs[view.originals[0]]
    other_norms = [run for run in view.originals[1:] if view.configs[run].train == baseline.train
                   and view.configs[run].model.norm != SANITY_PAIR[0]]  # the twin has its own section
    return [
        "### Metrics (percent; from the best checkpoint by validation accuracy; every replicate)", "",
        metrics_table(metrics), "",
        "Model selection used validation accuracy only; the test split was never seen in training.", "",
        "### Error curves", "",
        "Each run's mean over its replicates; the band is one seed-to-seed standard deviation either side.", "",
        f"![train and validation error of every run]({figure.name})", "",
        *baseline_comparisons(view, other_norms),
        *sanity_section(view),
        "### Cost", "", "Per-epoch evaluation covers validation loss, error and feature quantiles.", "",
        cost_table(metrics, histories), "",
        *batch_size_section(view),
        "### Penultimate-feature quantiles", "",
        (f"The 1st, 20th, 80th and 99th percentiles of the {feature_widths(view)}, all units pooled, over the "
         "validation set, after every epoch."), "",
        "![quantiles of every run](quantiles_all_runs.png)", "",
        *[f"![{run}](quantiles_{run}.png)" for run in view.runs], ""]


def feature_widths(view: StudyView) -> str:
    """The penultimate features' width as the study's models have it, e.g. "64-d penultimate features",
    or "penultimate features (64-d for ResNet-14 (A); 84-d for SimpleNN)" when the models differ."""
    models = {model_label(view.configs[run].model): view.configs[run].model for run in view.originals}
    labels: dict[int, list[str]] = defaultdict(list)
    for label, model in models.items():
        labels[build_model(model).feature_dim].append(label)  # the width the Classifier contract gives
    if len(labels) == 1:
        return f"{next(iter(labels))}-d penultimate features"
    return "penultimate features (" + "; ".join(f"{width}-d for {', '.join(names)}"
                                                 for width, names in labels.items()) + ")"


def _copy_quantiles(view: StudyView, extra: list[str]) -> None:
    """The quantile-plots stage's figures of this study into the report folder."""
    for name in [*view.runs, *extra]:
        source = view.quantile_dir / (f"study_{view.name}.png" if name == "all_runs" else f"{name}.png")
        shutil.copyfile(require_input(source, "the quantile-plots stage"), view.out_dir / f"quantiles_{name}.png")


def _runs_with(configs: Mapping[str, RunConfig], originals: list[str], norm: str) -> list[str]:
    return [name for name in originals if configs[name].model.norm == norm]


def curve_gap(view: StudyView, a: str, b: str, column: str = "val_error") -> str:
    """The largest per-epoch gap between two runs' mean curves, over the epochs every replicate of both
    reached, and that gap in seed-to-seed standard deviations at its epoch (the pooled spread of the
    runs that have two replicates or more)."""
    histories = [[view.histories[r] for r in view.replicates[run]] for run in (a, b)]
    bands = [band(h, column).set_index("epoch") for h in histories]
    everyone = bands[0]["replicates"].eq(len(histories[0])) & bands[1]["replicates"].eq(len(histories[1]))
    gap = (bands[0]["value"] - bands[1]["value"]).abs()[everyone].dropna()
    if gap.empty:
        return "no epoch that every replicate of both reached"
    epoch = gap.idxmax()
    text = f"largest gap between their mean validation-error curves: {100 * gap[epoch]:.2f} points (epoch {epoch})"
    variances = [(run_band.loc[epoch, "high"] - run_band.loc[epoch, "value"]) ** 2 for run_band in bands
                 if math.isfinite(run_band.loc[epoch, "high"])]
    if not variances:
        return text + "; with one replicate each there is no seed-to-seed spread to measure it against"
    spread = math.sqrt(sum(variances) / len(variances))
    if spread == 0.0:
        return text + "; the replicates agree exactly there, so there is no spread to measure it against"
    return text + f", {gap[epoch] / spread:.2f} seed-to-seed standard deviations ({100 * spread:.2f} points) there"


def sanity_section(view: StudyView) -> list[str]:
    """torch_bn (built-in) against bn (from scratch) at each batch size where both ran, over replicates."""
    configs = view.configs
    lines = ["### Sanity check: built-in BatchNorm (`torch_bn`) vs from-scratch BatchNorm (`bn`)", ""]
    pairs = [(b, t) for t in _runs_with(configs, view.originals, SANITY_PAIR[0])
             for b in _runs_with(configs, view.originals, SANITY_PAIR[1])
             if configs[t].setting_differences(configs[b]) == [("model", "norm", *SANITY_PAIR)]]
    if not pairs:
        return lines + ["No pair of `torch_bn` and `bn` runs with the same settings in this study.", ""]
    lines += [("Same settings, and per seed the same initialisation and data order; only the norm's "
               "implementation differs, so a real difference would be a bug. Differences come from "
               "floating-point summation order, which training amplifies."), ""]
    for scratch, builtin in pairs:
        diff = difference(view, scratch, builtin)
        lines += [f"- `{scratch}` vs `{builtin}` ({_seed_counts(view, scratch, builtin)}): test accuracy "
                  f"{accuracy_cell(view, scratch)} vs "
                  f"{accuracy_cell(view, builtin)}; difference {signed_points(diff.mean)} points "
                  f"{interval(diff)} ({diff.test}): {sanity_verdict(view, diff)}; {curve_gap(view, scratch, builtin)}."]
    return lines + [""]


def sanity_verdict(view: StudyView, diff: Estimate) -> str:
    """Whether the twins differ, and when they do not, the smallest difference these runs could have shown:
    an interval that holds 0 rules out only a bug larger than its reach from 0."""
    if diff.missing:
        return f"no verdict ({diff.no_interval})"
    if diff.better and view.verdicts:
        return "**they differ**: a bug, or an implementation detail worth finding"
    reach = max(-diff.low, diff.high)
    return (f"no difference shown, but only one larger than {100 * reach:.2f} points could have shown here; "
            "more seeds narrow that (the Findings table tests the claim against its margin)")


def _seed_counts(view: StudyView, a: str, b: str) -> str:
    counts = (len(view.replicates[a]), len(view.replicates[b]))
    if counts[0] != counts[1]:
        return f"{counts[0]} and {counts[1]} seeds"
    return "one seed each" if counts[0] == 1 else f"{counts[0]} seeds each"


def batch_size_section(view: StudyView) -> list[str]:
    """For every norm run at more than one batch size: the scores, the lr rule, the comparison of each
    smaller batch with the largest, the validation curves."""
    by_norm: dict[str, list[str]] = defaultdict(list)
    for name in view.originals:
        by_norm[view.configs[name].model.norm].append(name)
    compared = {norm: sorted(runs, key=lambda r: -view.configs[r].train.batch_size) for norm, runs in by_norm.items()
                if len({view.configs[r].train.batch_size for r in runs}) > 1}
    if not compared:
        return ["### Batch size", "", "No norm was run at more than one batch size in this study.", ""]
    rows, pairs, figures = [], [], []
    for norm, runs in compared.items():
        for run in runs:
            train = view.configs[run].train
            rule = (f"linear: {train.lr} x {train.batch_size}/{train.lr_reference_batch}"
                    if train.lr_scaling == "linear" else "as given")
            rows.append({"norm": norm, "run": run, "seeds": len(view.replicates[run]), "batch size": train.batch_size,
                         "lr": f"{train.effective_lr:g}", "lr rule": rule,
                         "test accuracy [95% interval]": accuracy_cell(view, run),
                         "test macro-F1": pct(mean(view, run, "test", "macro_f1")),
                         "train time (s)": f"{mean(view, run, 'train_time_s'):.0f}"})
        pairs += [(smaller, runs[0]) for smaller in runs[1:]]
        figure = view.out_dir / f"batch_size_{norm}.png"
        plot_error_curves({r: [view.histories[name] for name in view.replicates[r]] for r in runs}, figure,
                          f"{norm}: batch sizes compared")
        figures += [f"![{norm} at each batch size]({figure.name})", ""]
    return ["### Batch size", "", markdown(rows), "", "Each smaller batch against the largest of its norm:", "",
            comparison_table(view, pairs), "", *batch_sensitivity(view, pairs), *figures]


def batch_sensitivity(view: StudyView, pairs: list[tuple[str, str]]) -> list[str]:
    """Whether one norm's accuracy moves more than another's under the same change of batch size: the
    difference of their changes, for every two norms compared at the same two batch sizes."""
    def batches(pair: tuple[str, str]) -> tuple[int, int]:
        return tuple(view.configs[run].train.batch_size for run in pair)

    same_change = [(pair, reference) for i, reference in enumerate(pairs) for pair in pairs[i + 1:]
                   if batches(pair) == batches(reference)]
    lines = []
    for (small, large), (ref_small, ref_large) in same_change:
        norm, reference = view.configs[small].model.norm, view.configs[ref_small].model.norm
        diff = changes(view, small, large, ref_small, ref_large)
        said = {0: (f"no verdict ({diff.no_interval})" if diff.missing else
                    "no verdict (a pipeline-check profile)" if not view.verdicts else
                    "within noise: no evidence that either is more sensitive to the batch size"),
                1: f"`{norm}` gains more (or loses less) from the smaller batch",
                -1: f"`{reference}` gains more (or loses less) from the smaller batch"}[diff.better if view.verdicts else 0]
        lines.append(f"- From batch {batches((small, large))[1]} to {batches((small, large))[0]}, `{norm}` changes by "
                     f"{signed_points(difference(view, small, large).mean)} points and `{reference}` by "
                     f"{signed_points(difference(view, ref_small, ref_large).mean)}; the difference of the changes "
                     f"is {signed_points(diff.mean)} points {interval(diff)} ({diff.test}): "
                     f"{said}.")
    return [*lines, ""] if lines else []

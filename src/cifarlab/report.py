"""The study's Markdown report: every number in it is read from the metrics files and histories."""

from __future__ import annotations

import dataclasses
import json
import math
import shutil
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from cifarlab.config import RunConfig, Study, replicate_groups
from cifarlab.io import require_input, write_text
from cifarlab.models import MODELS, build_model
from cifarlab.norms import norm_has_gates
from cifarlab.plots import (
    confusion_counts,
    plot_confusion_matrices,
    plot_error_curves,
    plot_loss_by_epoch_and_time,
    plot_model_costs,
    plot_weight_histograms,
    read_history,
    read_weight_histogram,
)
from cifarlab.profiler import profile_model
from cifarlab.replicates import band
from cifarlab.schedules import describe_schedule
from cifarlab.stats import Difference, binomial_se, compare, compare_changes, within_one_image
from cifarlab.tracking import read_live_summary, read_run_record

SPLITS = ("train", "val", "test")
SCORES = {"accuracy": "accuracy", "micro_f1": "micro-F1", "macro_f1": "macro-F1"}
SANITY_PAIR = ("torch_bn", "bn")


def load_metrics(metrics_dir: Path, live_root: Path, runs: list[str]) -> dict[str, dict[str, Any]]:
    """Every run's metrics file, with its training time and device from its DVCLive summary."""
    metrics = {}
    for run in runs:
        path = require_input(metrics_dir / f"{run}.json", f"the evaluate stage for {run}")
        live = read_live_summary(live_root / run)
        metrics[run] = {**json.loads(path.read_text()), "train_time_s": live["train_time_s"],
                        "device": live["device"]}
    return metrics


def _markdown(rows: list[dict[str, Any]]) -> str:
    """A Markdown table that prints each cell as formatted here: tabulate would re-read "5.00" as 5."""
    return pd.DataFrame(rows).to_markdown(index=False, disable_numparse=True)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def _status(m: Mapping[str, Any]) -> str:
    if m["status"] == "diverged":
        return f"**diverged** ({m['stopped_reason']})"
    return m["status"].replace("_", " ")


def metrics_table(metrics: Mapping[str, Mapping[str, Any]]) -> str:
    """Runs x (split x score), in percent."""
    rows = []
    for run, m in metrics.items():
        row: dict[str, Any] = {"run": run, "status": _status(m)}
        for split in SPLITS:
            for key, label in SCORES.items():
                row[f"{split} {label}"] = _pct(m[split][key])
        row["best epoch"] = m["best_epoch"]
        row["epochs run"] = m["epochs_run"]
        row["train time (s)"] = f"{m['train_time_s']:.1f}"
        rows.append(row)
    return _markdown(rows)


def cost_table(metrics: Mapping[str, Mapping[str, Any]], histories: Mapping[str, pd.DataFrame]) -> str:
    """What each run cost: throughput, epoch time, and the share of each epoch spent on evaluation."""
    rows = []
    for run, history in histories.items():
        epoch_total = history["epoch_time_s"] + history["eval_time_s"]
        rows.append({"run": run, "device": metrics[run]["device"],
                     "training img/s (median)": f"{history['images_per_s'].median():.0f}",
                     "epoch s (median)": f"{epoch_total.median():.1f}",
                     "evaluation share of epoch": f"{100 * (history['eval_time_s'] / epoch_total).median():.1f}%",
                     "total s": f"{metrics[run]['train_time_s']:.0f}"})
    return _markdown(rows)


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
    lines += ["Same settings, and per seed the same initialisation and data order; only the norm's "
              "implementation differs, so a real difference would be a bug. Differences come from "
              "floating-point summation order, which training amplifies.", ""]
    for scratch, builtin in pairs:
        difference = _difference(view, scratch, builtin)
        lines += [f"- `{scratch}` vs `{builtin}` ({_seed_counts(view, scratch, builtin)}): test accuracy "
                  f"{_accuracy_cell(view, scratch)} vs "
                  f"{_accuracy_cell(view, builtin)}; difference {_signed_points(difference.mean)} points "
                  f"{_interval(difference)} ({difference.test}): **"
                  + ("distinguishable" if difference.better else "not distinguishable")
                  + f"**; {curve_gap(view, scratch, builtin)}."]
    return lines + [""]


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
                         "test accuracy": _accuracy_cell(view, run),
                         "test macro-F1": _pct(_mean(view, run, "test", "macro_f1")),
                         "train time (s)": f"{_mean(view, run, 'train_time_s'):.0f}"})
        pairs += [(smaller, runs[0]) for smaller in runs[1:]]
        figure = view.out_dir / f"batch_size_{norm}.png"
        plot_error_curves({r: [view.histories[name] for name in view.replicates[r]] for r in runs}, figure,
                          f"{norm}: batch sizes compared")
        figures += [f"![{norm} at each batch size]({figure.name})", ""]
    return ["### Batch size", "", _markdown(rows), "", "Each smaller batch against the largest of its norm:", "",
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
        difference = compare_changes(*(_accuracy_by_seed(view, run) for run in (small, large, ref_small, ref_large)),
                                     images=view.metrics[small]["test"]["images"])
        said = {0: "within noise: no evidence that either is more sensitive to the batch size",
                1: f"`{norm}` gains more (or loses less) from the smaller batch",
                -1: f"`{reference}` gains more (or loses less) from the smaller batch"}[difference.better]
        lines.append(f"- From batch {batches((small, large))[1]} to {batches((small, large))[0]}, `{norm}` changes by "
                     f"{_signed_points(_difference(view, small, large).mean)} points and `{reference}` by "
                     f"{_signed_points(_difference(view, ref_small, ref_large).mean)}; the difference of the changes "
                     f"is {_signed_points(difference.mean)} points {_interval(difference)} ({difference.test}): "
                     f"{said}.")
    return [*lines, ""] if lines else []


def parameters_section(configs: Mapping[str, RunConfig], records: Mapping[str, Mapping[str, Any]],
                       study: Study) -> str:
    """The settings every run trained with, as it recorded them (defaults, study, run entry, profile)."""
    rows = []
    for name, cfg in configs.items():
        m, t, data = cfg.model, cfg.train, records[name]["data"]
        rows.append({"run": name, "profile": cfg.profile, "seed": cfg.seed, "model": MODELS[m.arch].label(m.options),
                     "activation": m.activation,
                     "norm": m.norm + (f" ({m.groups} groups)" if m.norm == "gn" else ""), "batch": t.batch_size,
                     "optimizer": t.optimizer, "lr": f"{t.effective_lr:g}", "lr rule": t.lr_scaling,
                     "schedule": describe_schedule(t),
                     "warm-up epochs": t.warmup_epochs, "epochs": t.epochs, "patience": t.patience,
                     "weight decay": t.weight_decay, "l1": t.l1, "augment": "yes" if t.augment else "no",
                     "momentum": t.momentum,
                     "gate lr": (f"{t.effective_lr * t.gate_lr_multiplier:g} ({t.gate_lr_multiplier:g}x, no decay)"
                                 if norm_has_gates(m.norm) else "-"),
                     "train images": f"{data['train_images']:,}", "val images": f"{data['val_images']:,}",
                     "overridden by the profile": cfg.describe_overrides() or "-"})
    return "\n".join([
        "## Parameters of the study", "",
        "Each run as it recorded itself when it trained (`plots/live/<run>/run.json`), after the defaults, its "
        "study's keys, its own entry and the profile; images are those it trained and validated on. "
        f"`params.yaml` names the data `{study.data.source}`, with a validation fraction of "
        f"{study.data.val_fraction} of the official training images.", "",
        _markdown(rows), ""])


def provenance_notes(study: Study, configs: Mapping[str, RunConfig],
                     records: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """What a reader must know before trusting the comparisons: runs of a small profile, runs made under
    other settings than today's params.yaml, runs trained on different splits."""
    notes = []
    other = sorted({cfg.profile for cfg in configs.values()} - {"full"})
    if other:
        notes.append(f"**Profile {', '.join(f'`{p}`' for p in other)}: runs trained under that profile's overrides "
                     "(the parameters table lists them; `quick` trains on a slice of the data for a few epochs), not "
                     "the studies as specified. This report checks the pipeline; its numbers are not the studies' "
                     "results.**")
    profiles = sorted({cfg.profile for cfg in configs.values()})
    if len(profiles) > 1:
        notes.append(f"**This report mixes runs of the profiles {', '.join(f'`{p}`' for p in profiles)}**; the "
                     "parameters table gives each run's.")
    stale = [run for run, cfg in configs.items() if cfg.fingerprint() != study.runs[run].fingerprint()]
    if stale:
        notes.append(f"**Trained under other settings than `params.yaml` now gives: {', '.join(f'`{r}`' for r in stale)}."
                     "** The tables show what they trained with; `dvc repro` retrains them.")
    splits = {records[run]["data"]["content_sha256"] for run in configs}
    if len(splits) > 1:
        notes.append(f"**The runs trained on {len(splits)} different data splits** (content hashes "
                     f"{', '.join(sorted(h[:12] for h in splits))}); their scores are not comparable.")
    return [line for note in notes for line in (note, "")]


@dataclass(frozen=True)
class StudyView:
    """What a report section sees: its study's runs (every replicate), each original run's replicates and
    their aggregate, configs, scores and curves, and where to draw."""

    name: str
    runs: list[str]
    replicates: Mapping[str, list[str]]  # original run -> itself and its replicates
    configs: Mapping[str, RunConfig]
    metrics: Mapping[str, Any]
    aggregates: Mapping[str, Any]
    histories: Mapping[str, pd.DataFrame]
    weights_dir: Path
    quantile_dir: Path
    out_dir: Path

    @property
    def originals(self) -> list[str]:
        return list(self.replicates)

    def grouped_histories(self) -> dict[str, list[pd.DataFrame]]:
        return {run: [self.histories[name] for name in names] for run, names in self.replicates.items()}


def _mean(view: StudyView, run: str, *key: str) -> float:
    """A metric of an original run over its replicates, from its aggregate (train time from the histories)."""
    if key == ("train_time_s",):
        return sum(view.metrics[name]["train_time_s"] for name in view.replicates[run]) / len(view.replicates[run])
    node = view.aggregates[run]
    for part in key:
        node = node[part]
    return node["mean"]


def _signed_points(value: float) -> str:
    return f"{100 * value:+.2f}"


def _interval(difference: Difference) -> str:
    return f"[{100 * difference.low:+.2f}, {100 * difference.high:+.2f}]"


def _accuracy_cell(view: StudyView, run: str) -> str:
    """Test accuracy in percent: over replicates the mean and its 95% t interval, for a single run the
    binomial standard error."""
    summary, images = view.aggregates[run]["test"]["accuracy"], view.metrics[run]["test"]["images"]
    if summary["count"] > 1 and within_one_image(summary["std"], images):
        return f"{_pct(summary['mean'])} (all {summary['count']} seeds)"
    if summary["count"] > 1:  # clipped: a t interval from two seeds can reach past 0 or 100%
        return f"{_pct(summary['mean'])} [{_pct(max(summary['low'], 0.0))}, {_pct(min(summary['high'], 1.0))}]"
    return f"{_pct(summary['mean'])} ± {_pct(binomial_se(summary['mean'], images))} SE"


def _accuracy_by_seed(view: StudyView, run: str) -> dict[int, float]:
    """The test accuracy of each replicate of `run`, by its seed."""
    return {view.configs[name].seed: view.metrics[name]["test"]["accuracy"] for name in view.replicates[run]}


def _difference(view: StudyView, a: str, b: str) -> Difference:
    """A - B in test accuracy over the replicates of each (see `stats.compare`)."""
    return compare(_accuracy_by_seed(view, a), _accuracy_by_seed(view, b), images=view.metrics[a]["test"]["images"])


def comparison_rows(view: StudyView, pairs: list[tuple[str, str]]) -> list[dict[str, Any]]:
    """Per pair (A, B) of original runs: their test accuracies, A - B with its 95% interval, the test
    and the verdict."""
    rows = []
    for a, b in pairs:
        difference = _difference(view, a, b)
        rows.append({"A": f"`{a}`", "B": f"`{b}`", "A test accuracy": _accuracy_cell(view, a),
                     "B test accuracy": _accuracy_cell(view, b),
                     "A - B (points) [95% interval]": f"{_signed_points(difference.mean)} {_interval(difference)}",
                     "test": difference.test, "verdict": difference.verdict(f"`{a}`", f"`{b}`")})
    return rows


def comparison_table(view: StudyView, pairs: list[tuple[str, str]]) -> str:
    return _markdown(comparison_rows(view, pairs))


def baseline_comparisons(view: StudyView, runs: list[str] | None = None) -> list[str]:
    """Every original run of the study (or `runs`) against the study's first run, its baseline."""
    baseline = view.originals[0]
    pairs = [(run, baseline) for run in (runs if runs is not None else view.originals[1:])]
    if not pairs:
        return []
    return [f"### Against the baseline `{baseline}`", "", comparison_table(view, pairs), ""]


def outcome(m: Mapping[str, Any], num_classes: int) -> str:
    """diverged (a non-finite loss stopped it), at chance (test accuracy within two binomial standard
    errors of 1/classes), or learned."""
    if m["status"] == "diverged":
        return f"**diverged** ({m['stopped_reason']})"
    chance = 1 / num_classes
    if m["test"]["accuracy"] < chance + 2 * math.sqrt(chance * (1 - chance) / m["test"]["images"]):
        return "**at chance**"
    return "learned"


def _outcomes(view: StudyView, run: str) -> str:
    outcomes = [outcome(view.metrics[name], view.configs[name].model.num_classes) for name in view.replicates[run]]
    return ", ".join(dict.fromkeys(outcomes))


def scores_table(view: StudyView) -> str:
    """A study's original runs: seeds, outcome, validation and test accuracy, test loss and macro-F1
    (percent; means over replicates, test accuracy with its interval or standard error)."""
    rows = []
    for run in view.originals:
        rows.append({"run": run, "seeds": len(view.replicates[run]), "outcome": _outcomes(view, run),
                     "val accuracy": _pct(_mean(view, run, "val", "accuracy")),
                     "test accuracy": _accuracy_cell(view, run),
                     "test loss": f"{_mean(view, run, 'test', 'loss'):.3f}",
                     "test macro-F1": _pct(_mean(view, run, "test", "macro_f1")),
                     "best epoch": _mean_text(view, run, "best_epoch"),
                     "train time (s)": f"{_mean(view, run, 'train_time_s'):.0f}"})
    return _markdown(rows)


def _mean_text(view: StudyView, run: str, key: str) -> str:
    value = _mean(view, run, key)
    return f"{value:.0f}" if value == int(value) else f"{value:.1f}"


def _curves(view: StudyView, title: str) -> list[str]:
    figure = view.out_dir / f"error_curves_{view.name}.png"
    plot_error_curves(view.grouped_histories(), figure, title)
    return [f"![train and validation error of study {view.name}]({figure.name})", ""]


def _generic_body(view: StudyView, title: str) -> list[str]:
    return [scores_table(view), "", *_curves(view, title), *baseline_comparisons(view)]


def changed_settings(config: RunConfig, baseline: RunConfig) -> str:
    """The model and training keys in which `config` differs from `baseline`, as key=value."""
    changes = [f"{key}={value!r}" if dataclasses.is_dataclass(value) else f"{key}={value}"
               for _, key, value, _ in config.setting_differences(baseline)]
    return ", ".join(changes) or "(the baseline)"


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
        "The 1st, 20th, 80th and 99th percentiles of the pooled 64-d features over the validation set, "
        "after every epoch.", "",
        "![quantiles of every run](quantiles_all_runs.png)", "",
        *[f"![{run}](quantiles_{run}.png)" for run in view.runs], ""]


def _copy_quantiles(view: StudyView, extra: list[str]) -> None:
    """The quantile-plots stage's figures of this study into the report folder."""
    for name in [*view.runs, *extra]:
        source = view.quantile_dir / (f"study_{view.name}.png" if name == "all_runs" else f"{name}.png")
        shutil.copyfile(require_input(source, "the quantile-plots stage"), view.out_dir / f"quantiles_{name}.png")


def lab_section(view: StudyView) -> list[str]:
    """SimpleNN's sanity checks, then each pipeline change against the study's first run."""
    baseline = view.originals[0]
    model = build_model(view.configs[baseline].model)
    layers = profile_model(model).table()  # the architecture as built; the run's totals are in its metrics
    cost = view.metrics[baseline]["model"]
    with torch.no_grad():
        shape = tuple(model.eval()(torch.zeros(2, 3, 32, 32)).shape)
    ln_classes = math.log(view.configs[baseline].model.num_classes)
    initial = [{"run": run, "initial validation loss": f"{view.metrics[run]['initial_val_loss']:.4f}",
                f"ln {view.configs[run].model.num_classes}": f"{ln_classes:.4f}"} for run in view.runs]
    changes = [{"run": run, "changed from the baseline": changed_settings(view.configs[run], view.configs[baseline]),
                "outcome": _outcomes(view, run), "val accuracy": _pct(_mean(view, run, "val", "accuracy")),
                **{key: value for key, value in comparison_rows(view, [(run, baseline)])[0].items()
                   if key not in ("A", "B", "B test accuracy")}}
               for run in view.originals[1:]]
    lines = [
        "### Sanity checks", "",
        f"`{baseline}` ({MODELS[view.configs[baseline].model.arch].label(view.configs[baseline].model.options)}): "
        f"a batch of 2 images gives logits of shape {shape}; {cost['parameters']:,} parameters and "
        f"{cost['macs_per_image']:,} MACs per image.", "",
        layers.to_markdown(index=False), "",
        "The cross-entropy before any training step, on the validation images, against ln(classes), "
        "the loss of a uniform prediction:", "", _markdown(initial), "",
        f"### What each change buys (baseline `{baseline}`)", "",
        "A run at chance has a test accuracy within two binomial standard errors of 1/classes; a diverged "
        "run stopped on a non-finite loss. A is each run, B the baseline "
        f"(test accuracy {_accuracy_cell(view, baseline)}).", "", _markdown(changes), "",
        *_curves(view, "Pipeline ablations")]
    l1_runs = [run for run in view.originals if view.configs[run].train.l1 > 0]
    if l1_runs:
        compared = [baseline, *l1_runs]
        figure = view.out_dir / f"weights_{view.name}.png"
        plot_weight_histograms({run: read_weight_histogram(view.weights_dir, run) for run in compared}, figure,
                               "Conv and linear weights under L2 and under L1")
        threshold = view.metrics[baseline]["weights"]["small_threshold"]
        rows = [{"run": run, "l1": view.configs[run].train.l1, "L2 (weight decay)": view.configs[run].train.weight_decay,
                 f"weights with abs < {threshold:g}": f"{100 * view.metrics[run]['weights']['fraction_small']:.2f}%"}
                for run in compared]
        lines += ["### L1 against L2", "", _markdown(rows), "", f"![weight histograms]({figure.name})", ""]
    return lines


def resnet20_section(view: StudyView) -> list[str]:
    """Our ResNet-20 recipe, whether it passed 90% validation accuracy, and its test predictions."""
    lines = _generic_body(view, "ResNet-20 recipe")
    for run in view.originals:
        t, m = view.configs[run].train, view.configs[run].model
        val_accuracy = _mean(view, run, "val", "accuracy")
        reached = val_accuracy >= 0.9
        lines += [f"- `{run}`: {MODELS[m.arch].label(m.options)} with {m.norm}, {t.optimizer} lr {t.effective_lr:g} "
                  f"(momentum {t.momentum:g}), batch {t.batch_size}, {describe_schedule(t)} over {t.epochs} epochs "
                  f"after {t.warmup_epochs} warm-up, weight decay {t.weight_decay:g}, augmentation "
                  f"{'on' if t.augment else 'off'}: validation accuracy {_pct(val_accuracy)}% "
                  f"({'reaches' if reached else 'does not reach'} 90%). Test predictions: "
                  f"`plots/predictions/{run}.csv` (index in the official test batch, predicted class, actual class)."]
    return lines + [""]


def arch_section(view: StudyView) -> list[str]:
    """Networks compared on one budget: scores, parameters and MACs, loss by epoch and by second."""
    rows = []
    for run in view.originals:
        config, cost = view.configs[run].model, view.metrics[run]["model"]
        rows.append({"run": run, "model": MODELS[config.arch].label(config.options), "parameters": cost["parameters"],
                     "MACs": cost["macs_per_image"]})
    costs = pd.DataFrame(rows)
    chart = view.out_dir / f"costs_{view.name}.png"
    plot_model_costs(costs, chart)
    losses = view.out_dir / f"loss_{view.name}.png"
    plot_loss_by_epoch_and_time({run: view.histories[run] for run in view.runs}, losses,
                                "Training loss by epoch and by training second")
    table = costs.assign(parameters=costs["parameters"].map("{:,}".format), MACs=costs["MACs"].map("{:,}".format))
    return [*_generic_body(view, "Architectures"), "### Parameters and MACs (per 32x32 image)", "",
            table.to_markdown(index=False), "", f"![parameters and MACs]({chart.name})", "",
            "### Training loss by epoch and by wall-clock second", "", f"![training loss]({losses.name})", ""]


def generic_section(view: StudyView) -> list[str]:
    return _generic_body(view, f"Study {view.name}")


def confusion_matrix_lines(view: StudyView, confusion_dir: Path) -> list[str]:
    """Every run's test confusion matrix, from the evaluate stage's tables, as one figure per study."""
    matrices = {run: confusion_counts(confusion_dir, run) for run in view.runs}
    figure = view.out_dir / f"confusion_{view.name}.png"
    plot_confusion_matrices(matrices, figure, f"Test confusion matrices of study {view.name} (share of each "
                            "actual class)")
    return ["### Test confusion matrices", "", f"![test confusion matrices of study {view.name}]({figure.name})", ""]


# Each study's section of the report, by study name; a study not listed gets the generic section.
SECTIONS: dict[str, tuple[str, Callable[[StudyView], list[str]]]] = {
    "norm": ("Normalization and batch size in a CIFAR ResNet", norm_section),
    "lab": ("A first CNN and what each improvement of the training pipeline buys", lab_section),
    "resnet20": ("ResNet-20 past 90%", resnet20_section),
    "arch": ("Residual vs plain vs VGG vs SimpleNN on one budget", arch_section),
    "vggnorm": ("No norm vs BatchNorm vs GroupNorm on VGG-11", generic_section),
}


READING_THE_COMPARISONS = (
    "How to read the comparisons: test accuracy is given in percent, for a run with replicates (the same "
    "settings, another seed for initialisation, data order and augmentation; the split is the same for all) as "
    "the mean and its 95% Student-t interval, for a single run with its binomial standard error (SE) on the test "
    "images. A - B is a difference in points with its 95% interval: paired t over the seeds when both runs "
    "have the same seeds, Welch's t when they have different ones, and when either is a single run (or the "
    "seeds agree to the image) the difference +- 2 binomial standard errors of the difference, since a gap "
    "below about twice that is not evidence; that yardstick measures test-set noise, not seed noise. The "
    "verdict is \"within noise\" when the interval holds 0, else the better run. Intervals from two seeds "
    "are wide (t = 12.7 at one degree of freedom): \"within noise\" there means \"not shown\", not "
    "\"equal\". Each comparison is tested on its own at 95%: of twenty comparisons with no real difference, "
    "about one will still read \"better\".")


def load_aggregates(aggregates_dir: Path, originals: list[str]) -> dict[str, dict[str, Any]]:
    """Every original run's metrics over its replicates, as the aggregate stage wrote them."""
    return {run: json.loads(require_input(aggregates_dir / f"{run}.json", "the aggregate stage").read_text())
            for run in originals}


def write_report(study: Study, *, metrics_dir: Path, aggregates_dir: Path, live_root: Path,
                 quantile_dir: Path, weights_dir: Path, confusion_dir: Path, out_dir: Path) -> Path:
    """The report stage: `report.md` with its figures beside it in `out_dir`, one section per study.

    Which runs there are and how they group into studies come from params.yaml; everything about each run
    (its settings, data sizes, scores, curves) comes from what it recorded.
    """
    runs = list(study.runs)
    metrics = load_metrics(metrics_dir, live_root, runs)
    histories = {run: read_history(live_root / run) for run in runs}
    records = {run: read_run_record(live_root / run) for run in runs}
    configs = {run: RunConfig.from_record(records[run]["run"]) for run in runs}
    replicates = replicate_groups(configs.values())
    aggregates = load_aggregates(aggregates_dir, list(replicates))
    out_dir.mkdir(parents=True, exist_ok=True)
    best = max(replicates, key=lambda r: aggregates[r]["test"]["accuracy"]["mean"])  # not the luckiest seed
    diverged = [r for r in runs if metrics[r]["status"] == "diverged"]
    devices = sorted({str(metrics[r].get("device", "?")) for r in runs})
    profiles = sorted({cfg.profile for cfg in configs.values()})
    sections = [
        "# cifarlab: study report", "",
        f"{len(replicates)} runs ({len(runs)} trainings with the replicates) in {len(study.runs_by_study())} "
        f"studies, profile {', '.join(f'`{p}`' for p in profiles)}; the best test accuracy is "
        f"{_pct(aggregates[best]['test']['accuracy']['mean'])}% (`{best}`"
        + (f", mean of {len(replicates[best])} seeds)" if len(replicates[best]) > 1 else ")")
        + (f"; diverged: {', '.join(f'`{r}`' for r in diverged)}" if diverged else "") + ". "
        f"Trained on: {', '.join(devices)}. Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
        "from `metrics/` (scores), `aggregates/` (scores over replicates), `plots/live/` (settings, curves, times) "
        "and `plots/confusion/` by the "
        "`report` stage; no number here is typed in.", "",
        *provenance_notes(study, configs, records), READING_THE_COMPARISONS, ""]
    for name, names in study.runs_by_study().items():
        title, section = SECTIONS.get(name, (f"Study {name}", generic_section))
        view = StudyView(name, names, {run: replicates[run] for run in names if run in replicates}, configs,
                         metrics, aggregates, histories, weights_dir, quantile_dir, out_dir)
        sections += [f"## {title} (study `{name}`)", "", *section(view), *confusion_matrix_lines(view, confusion_dir)]
    sections.append(parameters_section(configs, records, study))
    path = out_dir / "report.md"
    write_text(path, "\n".join(sections))
    return path

"""The study's Markdown report: every number in it is read from the metrics files and histories."""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections import defaultdict
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from cifarlab.config import RunConfig, Study
from cifarlab.errors import CifarlabError
from cifarlab.io import write_text
from cifarlab.models import MODELS
from cifarlab.schedules import describe_schedule
from cifarlab.plots import plot_error_curves, read_history
from cifarlab.tracking import read_live_summary

SPLITS = ("train", "val", "test")
SCORES = {"accuracy": "accuracy", "micro_f1": "micro-F1", "macro_f1": "macro-F1"}
SANITY_PAIR = ("torch_bn", "bn")


def load_metrics(metrics_dir: Path, live_root: Path, runs: list[str]) -> dict[str, dict[str, Any]]:
    """Every run's metrics file, with its training time and device from its DVCLive summary."""
    metrics = {}
    for run in runs:
        path = metrics_dir / f"{run}.json"
        if not path.exists():
            raise CifarlabError(f"{path}: missing; run the evaluate stage for {run} first")
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


def largest_metric_difference(a: Mapping[str, Any], b: Mapping[str, Any]) -> tuple[float, str]:
    """The largest absolute difference between two runs over every split and score, and where it is."""
    diffs = {f"{split} {label}": abs(a[split][key] - b[split][key])
             for split in SPLITS for key, label in SCORES.items()}
    where = max(diffs, key=diffs.get)
    return diffs[where], where


def _runs_with(configs: Mapping[str, RunConfig], norm: str) -> list[str]:
    return [name for name, cfg in configs.items() if cfg.model.norm == norm]


def sanity_section(configs: Mapping[str, RunConfig], metrics: Mapping[str, Any],
                   histories: Mapping[str, pd.DataFrame]) -> str:
    """torch_bn (built-in) against bn (from scratch) at each batch size where both ran."""
    lines = ["## Sanity check: built-in BatchNorm (`torch_bn`) vs from-scratch BatchNorm (`bn`)", ""]
    pairs = [(t, b) for t in _runs_with(configs, SANITY_PAIR[0]) for b in _runs_with(configs, SANITY_PAIR[1])
             if configs[t].train == configs[b].train
             and dataclasses.replace(configs[t].model, norm="bn") == configs[b].model]
    if not pairs:
        return "\n".join(lines + ["No pair of `torch_bn` and `bn` runs with the same settings in this study.", ""])
    lines += ["Same seed, data order and settings; only the norm's implementation differs. Differences come "
              "from floating-point summation order, which training amplifies.", ""]
    for builtin, scratch in pairs:
        diff, where = largest_metric_difference(metrics[builtin], metrics[scratch])
        curve_gap = (histories[builtin]["val_error"] - histories[scratch]["val_error"]).abs()
        lines += [f"- `{builtin}` vs `{scratch}`: test accuracy {_pct(metrics[builtin]['test']['accuracy'])}% vs "
                  f"{_pct(metrics[scratch]['test']['accuracy'])}%; largest difference over every split and score: "
                  f"**{100 * diff:.2f} points** ({where}); largest gap between their validation-error curves: "
                  f"{100 * curve_gap.max():.2f} points (epoch {int(curve_gap.idxmax())})."]
    return "\n".join(lines + [""])


def batch_size_section(configs: Mapping[str, RunConfig], metrics: Mapping[str, Any],
                       histories: Mapping[str, pd.DataFrame], out_dir: Path) -> str:
    """For every norm run at more than one batch size: the scores, the lr rule, the validation curves."""
    by_norm: dict[str, list[str]] = defaultdict(list)
    for name, cfg in configs.items():
        by_norm[cfg.model.norm].append(name)
    lines = ["## Batch size", ""]
    compared = {norm: runs for norm, runs in by_norm.items()
                if len({configs[r].train.batch_size for r in runs}) > 1}
    if not compared:
        return "\n".join(lines + ["No norm was run at more than one batch size in this study.", ""])
    rows = []
    for norm, runs in compared.items():
        for run in sorted(runs, key=lambda r: -configs[r].train.batch_size):
            train = configs[run].train
            rule = (f"linear: {train.lr} x {train.batch_size}/{train.lr_reference_batch}"
                    if train.lr_scaling == "linear" else "as given")
            rows.append({"norm": norm, "run": run, "batch size": train.batch_size,
                         "lr": f"{train.effective_lr:g}", "lr rule": rule,
                         "test accuracy": _pct(metrics[run]["test"]["accuracy"]),
                         "test macro-F1": _pct(metrics[run]["test"]["macro_f1"]),
                         "best epoch": metrics[run]["best_epoch"],
                         "train time (s)": f"{metrics[run]['train_time_s']:.0f}"})
        figure = out_dir / f"batch_size_{norm}.png"
        plot_error_curves({r: histories[r] for r in runs}, figure, f"{norm}: batch sizes compared")
        lines += [f"![{norm} at each batch size]({figure.name})", ""]
    return "\n".join(["## Batch size", "", _markdown(rows), ""] + lines[2:])


def parameters_section(study: Study) -> str:
    """The settings every run was trained with, resolved (defaults, run entry, profile)."""
    rows = []
    for name, cfg in study.runs.items():
        m, t = cfg.model, cfg.train
        rows.append({"run": name, "model": MODELS[m.arch].label(m.options), "activation": m.activation,
                     "norm": m.norm + (f" ({m.groups} groups)" if m.norm == "gn" else ""), "batch": t.batch_size,
                     "optimizer": t.optimizer, "lr": f"{t.effective_lr:g}", "lr rule": t.lr_scaling,
                     "schedule": describe_schedule(t),
                     "warm-up epochs": t.warmup_epochs, "epochs": t.epochs, "patience": t.patience,
                     "weight decay": t.weight_decay, "l1": t.l1, "augment": "yes" if t.augment else "no",
                     "momentum": t.momentum,
                     # Only Batch-Instance Norm has gates; they are never weight-decayed.
                     "gate lr": (f"{t.effective_lr * t.gate_lr_multiplier:g} ({t.gate_lr_multiplier:g}x, no decay)"
                                 if m.norm == "bin" else "-"),
                     "train images": t.train_images or "all", "val images": t.val_images or "all"})
    data = study.data
    return "\n".join([
        "## Parameters of the study", "",
        f"Profile `{study.profile}`, seed {study.seed}, device `{study.device}`; data `{data.source}`, "
        f"validation fraction {data.val_fraction} of the official training images.", "",
        _markdown(rows), ""])


def write_report(study: Study, *, metrics_dir: Path, live_root: Path, quantile_dir: Path,
                 out_dir: Path) -> Path:
    """The report stage: `report.md` with its figures beside it in `out_dir`."""
    runs = list(study.runs)
    metrics = load_metrics(metrics_dir, live_root, runs)
    histories = {run: read_history(live_root / run) for run in runs}
    out_dir.mkdir(parents=True, exist_ok=True)
    plot_error_curves(histories, out_dir / "error_curves.png", "All runs")
    for figure in [f"{run}.png" for run in runs] + ["all_runs.png"]:
        source = quantile_dir / figure
        if not source.exists():
            raise CifarlabError(f"{source}: missing; run the quantile-plots stage first")
        shutil.copyfile(source, out_dir / f"quantiles_{figure}")
    best = max(runs, key=lambda r: metrics[r]["test"]["accuracy"])
    diverged = [r for r in runs if metrics[r]["status"] == "diverged"]
    devices = sorted({str(metrics[r].get("device", "?")) for r in runs})
    sections = [
        "# Normalization in CIFAR-10 ResNets: study report", "",
        f"{len(runs)} runs, profile `{study.profile}`; the best test accuracy is "
        f"{_pct(metrics[best]['test']['accuracy'])}% (`{best}`)"
        + (f"; diverged: {', '.join(f'`{r}`' for r in diverged)}" if diverged else "") + ". "
        f"Trained on: {', '.join(devices)}. Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC "
        "from `metrics/` (scores) and `plots/live/` (curves, times) by the `report` stage; no number here is typed in.", "",
        "## Metrics (percent; from the best checkpoint by validation accuracy)", "",
        metrics_table(metrics), "",
        "Model selection used validation accuracy only; the test split was never seen in training.", "",
        "## Error curves", "", "![train and validation error of every run](error_curves.png)", "",
        sanity_section(study.runs, metrics, histories),
        "## Cost", "", "Per-epoch evaluation covers validation loss, error and feature quantiles.", "",
        cost_table(metrics, histories), "",
        batch_size_section(study.runs, metrics, histories, out_dir),
        "## Penultimate-feature quantiles", "",
        "The 1st, 20th, 80th and 99th percentiles of the pooled 64-d features over the validation set, "
        "after every epoch.", "",
        "![quantiles of every run](quantiles_all_runs.png)", "",
        *[f"![{run}](quantiles_{run}.png)" for run in runs], "",
        parameters_section(study),
    ]
    path = out_dir / "report.md"
    write_text(path, "\n".join(sections))
    return path

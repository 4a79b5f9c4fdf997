"""Figures of the study, drawn from the DVCLive histories (matplotlib's object API: no global state)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cifarlab.analysis.replicates import band
from cifarlab.io import atomic_path, require_input
from cifarlab.train.tracking import LIVE_METRICS, live_plot_file

QUANTILE_COLUMNS = ("feature_q01", "feature_q20", "feature_q80", "feature_q99")
QUANTILE_LABELS = ("1st", "20th", "80th", "99th")


def read_history(live_dir: Path) -> pd.DataFrame:
    """A run's per-epoch history (index: epoch; columns: the training loop's names) from its DVCLive TSVs."""
    columns = {}
    for column in LIVE_METRICS:
        path = require_input(live_plot_file(live_dir, column), f"the train stage for {Path(live_dir).name}")
        table = pd.read_csv(path, sep="\t")
        columns[column] = table.set_index("step")[LIVE_METRICS[column].split("/")[-1]]
    history = pd.DataFrame(columns)
    history.index.name = "epoch"
    return history


def _save(figure: Figure, path: Path) -> None:
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png", dpi=110, bbox_inches="tight")


def _label_epoch_axis(axes) -> None:
    """Epochs are whole: a short run's axis would otherwise tick at 1.5, 2.5, ..."""
    axes.set_xlabel("epoch")
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))


def _draw_quantiles(axes, history: pd.DataFrame, title: str) -> None:
    for column, label in zip(QUANTILE_COLUMNS, QUANTILE_LABELS):
        axes.plot(history.index, history[column], marker=".", label=f"{label} percentile")
    axes.set_title(title)
    _label_epoch_axis(axes)
    axes.grid(alpha=0.3)


def plot_run_quantiles(history: pd.DataFrame, run: str, path: Path) -> None:
    """The four penultimate-feature quantiles of one run against the epoch."""
    figure = Figure(figsize=(6, 4), layout="constrained")
    axes = figure.add_subplot()
    _draw_quantiles(axes, history, f"{run}: penultimate-feature quantiles (validation)")
    axes.set_ylabel("feature value")
    axes.legend()
    _save(figure, path)


def plot_all_quantiles(histories: Mapping[str, pd.DataFrame], path: Path) -> None:
    """Every run's quantile curves side by side, one panel per run (scales differ across norms)."""
    columns = min(3, len(histories))
    rows = math.ceil(len(histories) / columns)
    figure = Figure(figsize=(4.5 * columns, 3.3 * rows), layout="constrained")
    for index, (run, history) in enumerate(histories.items()):
        axes = figure.add_subplot(rows, columns, index + 1)
        _draw_quantiles(axes, history, run)
    figure.axes[0].legend(fontsize="small")
    figure.suptitle("Penultimate-feature quantiles on the validation set")
    _save(figure, path)


def write_quantile_figures(runs_by_study: Mapping[str, Sequence[str]], live_root: Path,
                           out_dir: Path) -> list[Path]:
    """The quantile-plots stage: one PNG per run, and per study one with its runs side by side
    (`study_<study>.png`)."""
    written = []
    for study, runs in runs_by_study.items():
        histories = {run: read_history(live_root / run) for run in runs}
        for run, history in histories.items():
            plot_run_quantiles(history, run, out_dir / f"{run}.png")
            written.append(out_dir / f"{run}.png")
        plot_all_quantiles(histories, out_dir / f"study_{study}.png")
        written.append(out_dir / f"study_{study}.png")
    return written


def training_seconds(history: pd.DataFrame) -> pd.Series:
    """The training time spent by the end of each epoch (evaluation excluded)."""
    return history["epoch_time_s"].cumsum()


CURVES = ("train_loss", "train_error", "val_loss", "val_error", "lr")  # history columns tabled per study


def curve_tables(replicates: Mapping[str, Mapping[str, pd.DataFrame]]) -> dict[str, pd.DataFrame]:
    """Per curve, one long table over a study's runs, each the mean over its replicates with a band of one
    standard deviation (columns run, epoch, value, low, high, replicates); and every replicate's training
    loss against its cumulative training seconds (run, seconds, value), for comparing runs by compute."""
    tables = {column: pd.concat([band(list(histories.values()), column).assign(run=original)
                                 for original, histories in replicates.items()], ignore_index=True)
              for column in CURVES}
    by_time = pd.concat([pd.DataFrame({"run": run, "seconds": training_seconds(history).values,
                                       "value": history["train_loss"].values})
                         for histories in replicates.values() for run, history in histories.items()],
                        ignore_index=True)
    return {**tables, "train_loss_by_seconds": by_time}


def write_curve_tables(replicates_by_study: Mapping[str, Mapping[str, Sequence[str]]], live_root: Path,
                       out_dir: Path, time_dir: Path) -> list[Path]:
    """The curves stage: `out_dir/<study>/<curve>.csv` for every study and curve (x: epoch) and
    `time_dir/<study>/train_loss.csv` (x: seconds). One `dvc plots` entry per folder overlays every run of
    every study, so a new run or study needs no edit of dvc.yaml."""
    written = []
    for study, replicates in replicates_by_study.items():
        tables = curve_tables({original: {run: read_history(live_root / run) for run in runs}
                               for original, runs in replicates.items()})
        by_time = tables.pop("train_loss_by_seconds")
        for path, table in [*((out_dir / study / f"{name}.csv", t) for name, t in tables.items()),
                            (time_dir / study / "train_loss.csv", by_time)]:
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path) as tmp:
                table.to_csv(tmp, index=False)
            written.append(path)
    return written


DISTINCT_COLOURS = matplotlib.colormaps["tab10"].colors
MANY_COLOURS = matplotlib.colormaps["tab20"].colors
LEGEND_COLUMNS = 3  # below two panels of 11 inches, three labels of "<run> (mean of 3, band: 1 sd)" fit a row


def plot_error_curves(replicates: Mapping[str, Sequence[pd.DataFrame]], path: Path, title: str) -> None:
    """Train and validation error against the epoch in two panels: per run the mean over its replicates,
    shaded one standard deviation either side where it has more than one (labelled with their count)."""
    legend_rows = math.ceil(len(replicates) / LEGEND_COLUMNS)
    figure = Figure(figsize=(11, 3.6 + 0.2 * legend_rows), layout="constrained")  # the panels keep their height
    for index, split in enumerate(("train", "val")):
        axes = figure.add_subplot(1, 2, index + 1)
        if len(replicates) > len(DISTINCT_COLOURS):  # the default ten would give two runs one colour
            axes.set_prop_cycle(color=MANY_COLOURS)
        for run, histories in replicates.items():
            curve = band(histories, f"{split}_error")
            label = run if len(histories) == 1 else f"{run} (mean of {len(histories)}, band: 1 sd)"
            line, = axes.plot(curve["epoch"], 100 * curve["value"], label=label)
            if len(histories) > 1:
                axes.fill_between(curve["epoch"], 100 * curve["low"], 100 * curve["high"], color=line.get_color(),
                                  alpha=0.2, linewidth=0)
        axes.set_title(f"{'training' if split == 'train' else 'validation'} error")
        _label_epoch_axis(axes)
        axes.set_ylabel("error (%)")
        axes.grid(alpha=0.3)
    # Below the panels: inside one, a study's nine runs hid the early epochs, where the runs differ most.
    figure.legend(handles=figure.axes[-1].get_lines(), loc="outside lower center",
                  ncol=min(LEGEND_COLUMNS, len(replicates)), fontsize="small")
    figure.suptitle(title)
    _save(figure, path)


def plot_weight_histograms(histograms: Mapping[str, pd.DataFrame], path: Path, title: str) -> None:
    """Histograms of conv and linear weights (bin centre, count), one line per run, log count scale."""
    figure = Figure(figsize=(7, 4), layout="constrained")
    axes = figure.add_subplot()
    for run, table in histograms.items():
        axes.plot(table["weight"], table["count"].clip(lower=0.5), drawstyle="steps-mid", label=run)
    axes.set_yscale("log")
    axes.set_xlabel("weight value (the end bins hold everything beyond them)")
    axes.set_ylabel("weights")
    axes.set_title(title)
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small")
    _save(figure, path)


def plot_model_costs(costs: pd.DataFrame, path: Path) -> None:
    """Parameters and MACs per image of each model (columns model, parameters, MACs), log scales."""
    figure = Figure(figsize=(10, 3.5), layout="constrained")
    for index, column in enumerate(("parameters", "MACs")):
        axes = figure.add_subplot(1, 2, index + 1)
        axes.barh(costs["model"], costs[column])
        axes.set_xscale("log")
        axes.set_xlabel(f"{column} (log scale)" + (" per 32x32 image" if column == "MACs" else ""))
        axes.grid(alpha=0.3, axis="x")
    _save(figure, path)


def plot_loss_by_epoch_and_time(histories: Mapping[str, pd.DataFrame], path: Path, title: str) -> None:
    """Training loss against the epoch and against cumulative training seconds, one line per run."""
    figure = Figure(figsize=(11, 4), layout="constrained")
    for index, by_time in enumerate((False, True)):
        axes = figure.add_subplot(1, 2, index + 1)
        for run, history in histories.items():
            x = training_seconds(history) if by_time else history.index
            axes.plot(x, history["train_loss"], marker=".", label=run)
        if by_time:
            axes.set_xlabel("training seconds")
        else:
            _label_epoch_axis(axes)
        axes.set_ylabel("training loss")
        axes.grid(alpha=0.3)
    figure.axes[-1].legend(fontsize="small")
    figure.suptitle(title)
    _save(figure, path)


def confusion_counts(confusion_dir: Path, run: str) -> pd.DataFrame:
    """A run's test confusion matrix (rows: actual class, columns: predicted) from the evaluate stage's
    long table, in the table's class order."""
    table = pd.read_csv(require_input(confusion_dir / f"{run}.csv", f"the evaluate stage for {run}"))
    classes = list(dict.fromkeys(table["actual"]))
    return table.pivot(index="actual", columns="predicted", values="count").reindex(index=classes, columns=classes)


def plot_confusion_matrices(matrices: Mapping[str, pd.DataFrame], path: Path, title: str) -> None:
    """One heat map per run, rows normalised to the share of each actual class, four runs to a row."""
    columns = min(4, len(matrices))
    rows = math.ceil(len(matrices) / columns)
    figure = Figure(figsize=(3.2 * columns, 3.2 * rows), layout="constrained")
    for index, (run, counts) in enumerate(matrices.items()):
        axes = figure.add_subplot(rows, columns, index + 1)
        shares = counts.div(counts.sum(axis=1).clip(lower=1), axis=0)
        image = axes.imshow(shares.to_numpy(), vmin=0, vmax=1, cmap="viridis")
        accuracy = np.trace(counts.to_numpy()) / max(counts.to_numpy().sum(), 1)
        axes.set_title(f"{run} ({100 * accuracy:.1f}%)", fontsize="small")
        ticks = range(len(counts))
        axes.set_xticks(ticks, counts.columns if index >= len(matrices) - columns else [], rotation=90,
                        fontsize="x-small")
        axes.set_yticks(ticks, counts.index if index % columns == 0 else [], fontsize="x-small")
    figure.colorbar(image, ax=figure.axes, shrink=0.6, label="share of the actual class (rows: actual, "
                    "columns: predicted)")
    figure.suptitle(title)
    _save(figure, path)


def read_weight_histogram(weights_dir: Path, run: str) -> pd.DataFrame:
    """The evaluate stage's histogram of a run's conv and linear weights (columns weight, count)."""
    return pd.read_csv(require_input(weights_dir / f"{run}.csv", f"the evaluate stage for {run}"))

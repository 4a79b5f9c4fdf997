"""The generic section, for any study: its scores, its error curves and each run against the baseline
(the study's first run). The other sections build on its body."""

from __future__ import annotations

from cifarlab.report.plots import plot_error_curves
from cifarlab.report.tables import baseline_comparisons, scores_table
from cifarlab.report.view import StudyView


def error_curves(view: StudyView, title: str) -> list[str]:
    """The study's train and validation error curves, each original run's mean over its replicates."""
    figure = view.out_dir / f"error_curves_{view.name}.png"
    plot_error_curves(view.grouped_histories(), figure, title)
    return [f"![train and validation error of study {view.name}]({figure.name})", ""]


def comparisons_body(view: StudyView, title: str) -> list[str]:
    """Scores, error curves (titled `title`) and every run against the baseline."""
    return [scores_table(view), "", *error_curves(view, title), *baseline_comparisons(view)]


def comparisons_section(view: StudyView) -> list[str]:
    return comparisons_body(view, f"Study {view.name}")

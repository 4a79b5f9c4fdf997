"""The architecture section: networks compared on one budget, with their parameters and MACs, and their
training loss by epoch and by wall-clock second."""

from __future__ import annotations

import pandas as pd

from cifarlab.models import model_label
from cifarlab.report.plots import plot_loss_by_epoch_and_time, plot_model_costs
from cifarlab.report.sections.comparisons import comparisons_body
from cifarlab.report.view import StudyView


def arch_section(view: StudyView) -> list[str]:
    """Networks compared on one budget: scores, parameters and MACs, loss by epoch and by second."""
    rows = []
    for run in view.originals:
        config, cost = view.configs[run].model, view.metrics[run]["model"]
        rows.append({"run": run, "model": model_label(config), "parameters": cost["parameters"],
                     "MACs": cost["macs_per_image"]})
    costs = pd.DataFrame(rows)
    chart = view.out_dir / f"costs_{view.name}.png"
    plot_model_costs(costs, chart)
    losses = view.out_dir / f"loss_{view.name}.png"
    plot_loss_by_epoch_and_time({run: view.histories[run] for run in view.runs}, losses,
                                "Training loss by epoch and by training second")
    table = costs.assign(parameters=costs["parameters"].map("{:,}".format), MACs=costs["MACs"].map("{:,}".format))
    return [*comparisons_body(view, "Architectures"), "### Parameters and MACs (per 32x32 image)", "",
            table.to_markdown(index=False), "", f"![parameters and MACs]({chart.name})", "",
            "### Training loss by epoch and by wall-clock second", "", f"![training loss]({losses.name})", ""]

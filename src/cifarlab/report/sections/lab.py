"""The lab section: a first CNN's sanity checks (output shape, size, the loss before training), what each
change of the training pipeline buys against the baseline, and L1 against L2 on the weights."""

from __future__ import annotations

import dataclasses
import math

import torch

from cifarlab.analysis.profiler import profile_model
from cifarlab.config.sections import RunConfig
from cifarlab.models import build_model, model_label
from cifarlab.report.plots import plot_weight_histograms, read_weight_histogram
from cifarlab.report.sections.comparisons import error_curves
from cifarlab.report.tables import (
    OUTCOME_RULE,
    accuracy_cell,
    comparison_rows,
    markdown,
    outcomes,
    pct,
)
from cifarlab.report.view import StudyView, mean


def changed_settings(config: RunConfig, baseline: RunConfig) -> str:
    """The model and training keys in which `config` differs from `baseline`, as key=value."""
    changes = [f"{key}={value!r}" if dataclasses.is_dataclass(value) else f"{key}={value}"
               for _, key, value, _ in config.setting_differences(baseline)]
    return ", ".join(changes) or "(the baseline)"


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
                "outcome": outcomes(view, run), "val accuracy": pct(mean(view, run, "val", "accuracy")),
                **{key: value for key, value in comparison_rows(view, [(run, baseline)])[0].items()
                   if key not in ("A", "B", "B test accuracy [95% interval]")}}
               for run in view.originals[1:]]
    lines = [
        "### Sanity checks", "",
        (f"`{baseline}` ({model_label(view.configs[baseline].model)}): "
         f"a batch of 2 images gives logits of shape {shape}; {cost['parameters']:,} parameters and "
         f"{cost['macs_per_image']:,} MACs per image."), "",
        layers.to_markdown(index=False), "",
        ("The cross-entropy before any training step, on the validation images, against ln(classes), "
         "the loss of a uniform prediction:"), "", markdown(initial), "",
        f"### What each change buys (baseline `{baseline}`)", "",
        (f"{OUTCOME_RULE} A is each run, B the baseline "
         f"(test accuracy {accuracy_cell(view, baseline)})."), "", markdown(changes), "",
        *error_curves(view, "Pipeline ablations")]
    return lines + l1_against_l2(view)


def l1_against_l2(view: StudyView) -> list[str]:
    """The share of small weights and the weight histograms of the L1 runs beside the baseline's (L2);
    nothing if the study has no L1 run."""
    baseline = view.originals[0]
    l1_runs = [run for run in view.originals if view.configs[run].train.l1 > 0]
    if not l1_runs:
        return []
    compared = [baseline, *l1_runs]
    figure = view.out_dir / f"weights_{view.name}.png"
    plot_weight_histograms({run: read_weight_histogram(view.weights_dir, run) for run in compared}, figure,
                           "Conv and linear weights under L2 and under L1")
    threshold = view.metrics[baseline]["weights"]["small_threshold"]
    rows = [{"run": run, "l1": view.configs[run].train.l1, "L2 (weight decay)": view.configs[run].train.weight_decay,
             f"weights with abs < {threshold:g}": f"{100 * view.metrics[run]['weights']['fraction_small']:.2f}%"}
            for run in compared]
    return ["### L1 against L2", "", markdown(rows), "", f"![weight histograms]({figure.name})", ""]

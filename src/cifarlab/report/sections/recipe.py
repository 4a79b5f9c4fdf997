"""The recipe section: a training recipe (ResNet-20 past 90%), whether each run reached the target
validation accuracy, and where its test predictions are."""

from __future__ import annotations

from cifarlab.models import model_label
from cifarlab.report.sections.comparisons import comparisons_body
from cifarlab.report.tables import pct
from cifarlab.report.view import StudyView, mean
from cifarlab.train.schedules import describe_schedule

TARGET = 0.9  # validation accuracy


def recipe_section(view: StudyView) -> list[str]:
    """Our ResNet-20 recipe, whether it passed 90% validation accuracy, and its test predictions."""
    lines = comparisons_body(view, "ResNet-20 recipe")
    for run in view.originals:
        t, m = view.configs[run].train, view.configs[run].model
        val_accuracy = mean(view, run, "val", "accuracy")
        reached = val_accuracy >= TARGET
        lines += [(f"- `{run}`: {model_label(m)} with {m.norm}, {t.optimizer} lr {t.effective_lr:g} "
                   f"(momentum {t.momentum:g}), batch {t.batch_size}, {describe_schedule(t)} over {t.epochs} epochs "
                   f"after {t.warmup_epochs} warm-up, weight decay {t.weight_decay:g}, augmentation "
                   f"{'on' if t.augment else 'off'}: validation accuracy {pct(val_accuracy)}% "
                   f"({'reaches' if reached else 'does not reach'} {TARGET:.0%}). Test predictions: "
                   f"`plots/predictions/{run}.csv` (index in the official test batch, predicted class, "
                   "actual class).")]
    return lines + [""]

"""The report's sections by name: a study's entry in `studies:` names the one that renders it
(`section: lab`), and may give its own heading (`title: ...`; the section's title otherwise). Each is a
function of a `StudyView` returning Markdown lines, one module per section; its module is imported only
when the report renders it, so that check-params can check the names without the report's code."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cifarlab.report.view import StudyView

# name -> (title, module, function)
SECTIONS: dict[str, tuple[str, str, str]] = {
    "norm": ("Normalization and batch size in a CIFAR ResNet", "cifarlab.report.sections.norm", "norm_section"),
    "lab": ("A first CNN and what each improvement of the training pipeline buys", "cifarlab.report.sections.lab",
            "lab_section"),
    "recipe": ("ResNet-20 past 90%", "cifarlab.report.sections.recipe", "recipe_section"),
    "arch": ("Residual vs plain vs VGG vs SimpleNN on one budget", "cifarlab.report.sections.arch", "arch_section"),
    "comparisons": ("Comparisons with the study's first run", "cifarlab.report.sections.comparisons",
                    "comparisons_section"),
}


def section(name: str) -> tuple[str, Callable[[StudyView], list[str]]]:
    """The title and the renderer of section `name`."""
    title, module, function = SECTIONS[name]
    return title, getattr(importlib.import_module(module), function)

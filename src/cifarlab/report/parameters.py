"""The report's parameters table: each run's settings as it recorded them, one column per key of the
model: and train: sections and of each model family's options, taken from the config's own fields, so a
new key shows here without an edit."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from pathlib import PurePath
from typing import Any

from cifarlab.config.sections import RunConfig, Study
from cifarlab.models import family_options, model_label
from cifarlab.nn.norm_registry import norm_has_gates, takes_groups
from cifarlab.report.tables import markdown
from cifarlab.train.schedules import describe_schedule

Cell = Callable[[RunConfig, Mapping[str, Any]], Any]  # (a run's settings, the data it recorded) -> its cell


def source_name(source: str) -> str:
    """The data source as the report names it: a URL whole, a local archive by its file name (where it sits
    on one machine says nothing about the data; the split's content hash does)."""
    return source if "://" in source else PurePath(source).name


def _norm(run: RunConfig, data: Mapping[str, Any]) -> str:
    m = run.model
    return m.norm + (f" ({m.groups} groups)" if takes_groups(m.norm) else "")


def _gate_lr(run: RunConfig, data: Mapping[str, Any]) -> str:
    t = run.train
    if not norm_has_gates(run.model.norm):
        return "-"
    return f"{t.effective_lr * t.gate_lr_multiplier:g} ({t.gate_lr_multiplier:g}x, no decay)"


# Keys shown otherwise than as their value: the network's name, the lr it trained with, the images it
# saw (the keys' 0 means "all"), ...; every other key shows its value.
CELLS: dict[str, Cell] = {
    "arch": lambda run, data: model_label(run.model),
    "norm": _norm,
    "lr": lambda run, data: f"{run.train.effective_lr:g}",
    "gate_lr_multiplier": _gate_lr,
    "schedule": lambda run, data: describe_schedule(run.train),
    "train_images": lambda run, data: f"{data['train_images']:,}",
    "val_images": lambda run, data: f"{data['val_images']:,}",
}
# Column names other than the key's own (underscores read as spaces).
HEADERS = {"arch": "model", "batch_size": "batch", "lr_scaling": "lr rule", "gate_lr_multiplier": "gate lr",
           "warmup_epochs": "warm-up epochs"}
# Keys shown in another key's cell rather than in a column of their own.
SHOWN_IN = {"groups": "norm", "gamma": "schedule", "step_epochs": "schedule", "milestones": "schedule"}


def _value(value: Any) -> Any:
    """A key's value as the table prints it: yes or no, a list joined by commas, anything else as it is."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (tuple, list)):
        return ", ".join(map(str, value))
    return value


def _keys(configs: Mapping[str, RunConfig]) -> list[tuple[str, str]]:
    """(section, key) for every model key, family option and train key that any run has, in field order;
    the family options where model: holds them."""
    model: dict[tuple[str, str], None] = {}
    options: dict[tuple[str, str], None] = {}
    train: dict[tuple[str, str], None] = {}
    for cfg in configs.values():
        for f in dataclasses.fields(cfg.model):
            model[("options", "") if f.metadata.get("nested") else ("model", f.name)] = None
        options.update(dict.fromkeys(("options", f.name) for f in dataclasses.fields(family_options(cfg.model))))
        train.update(dict.fromkeys(("train", f.name) for f in dataclasses.fields(cfg.train)))
    keys = [expanded for key in model for expanded in (options if key == ("options", "") else [key])]
    return [key for key in [*keys, *train] if key[1] not in SHOWN_IN]


def _cell(run: RunConfig, data: Mapping[str, Any], section: str, key: str) -> Any:
    if key in CELLS:
        return CELLS[key](run, data)
    if section == "options":
        options = family_options(run.model)
        return _value(getattr(options, key)) if hasattr(options, key) else "-"  # not an option of this family
    return _value(getattr(getattr(run, section), key))


def parameters_section(configs: Mapping[str, RunConfig], records: Mapping[str, Mapping[str, Any]],
                       study: Study) -> str:
    """The settings every run trained with, as it recorded them (defaults, study, run entry, profile)."""
    keys = _keys(configs)
    rows = []
    for name, cfg in configs.items():
        data = records[name]["data"]
        rows.append({"run": name, "profile": cfg.profile, "seed": cfg.seed,
                     **{HEADERS.get(key, key.replace("_", " ")): _cell(cfg, data, section, key)
                        for section, key in keys},
                     "overridden by the profile": cfg.describe_overrides() or "-"})
    return "\n".join([
        "## Parameters of the study", "",
        ("Each run as it recorded itself when it trained (`plots/live/<run>/run.json`), after the defaults, its "
         "study's keys, its own entry and the profile; images are those it trained and validated on. "
         f"`params.yaml` names the data `{source_name(study.data.source)}`, with a validation fraction of "
         f"{study.data.val_fraction} of the official training images."), "",
        markdown(rows), ""])

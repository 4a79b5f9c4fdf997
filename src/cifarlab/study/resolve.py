"""`params.yaml` (as a dict) to a validated `Study`: the layered merge of each run and every check.

Each section becomes a frozen dataclass; unknown keys, missing keys, wrong types and out-of-range values
fail with the params key named (nanoGPT-style configurator, but strict). A run is `defaults <- its
study's keys <- run entry <- profile <- the profile's keys for its study`: `studies.<study>` and the run
entry under `runs:` override `model:`/`train:` keys by name, and the active profile (e.g. `quick`)
overrides last so that a quick study stays quick whatever a run says. DVC makes one stage per entry of
`runs:` and cannot make stages from a count, so each replicate is written out as an entry.

Checking names against the registries imports them, torch and every model family with them: only the
check-params stage does this, and it writes what the other stages read (`config.records`).
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

from cifarlab.config.fields import build_section, check_fields, unknown_key
from cifarlab.config.params import PARAMS_FILE, data_settings, read_params, require_key
from cifarlab.config.sections import (
    ModelConfig,
    PerformanceConfig,
    ProfileOverride,
    RunConfig,
    Study,
    StudyReport,
    TrainConfig,
    replicate_groups,
)
from cifarlab.errors import CifarlabError
from cifarlab.models import MODELS, family
from cifarlab.nn.activations import ACTIVATIONS
from cifarlab.nn.norm_registry import NORM_LAYERS, norm_misfit
from cifarlab.report.sections import SECTIONS
from cifarlab.train.optim import OPTIMIZERS
from cifarlab.train.schedules import SCHEDULES, check_schedule

# Keys whose values name an entry of a registry; checked here, so that the types in config.sections need
# neither torch nor the registries.
REGISTRY_CHOICES = {"arch": MODELS, "norm": NORM_LAYERS, "activation": ACTIVATIONS, "optimizer": OPTIMIZERS,
                    "schedule": SCHEDULES}


def _check_choices(checked: dict[str, Any], key: str) -> dict[str, Any]:
    for name, value in checked.items():
        choices = REGISTRY_CHOICES.get(name)
        if choices is not None and value not in choices:
            raise CifarlabError(f"{key}.{name}: expected one of {', '.join(choices)}, got {value!r}")
    return checked


def _check_train_keys(values: Any, key: str) -> dict[str, Any]:
    """Check one layer of train keys (defaults, a study, a run entry or a profile), naming `key.<name>`."""
    return _check_choices(check_fields(TrainConfig, values, key), key)


STUDY_NAME = re.compile(r"[A-Za-z0-9_-]+")  # it names a folder of curve tables

# Keys of a study's entry besides model:/train: keys: how the report shows it.
STUDY_REPORT_KEYS = ("section", "title")

# Keys of a run entry besides model:/train: keys: its study, and for a replicate the run it repeats and
# its number, which sets its seed (initialisation, data order, augmentation).
RUN_ONLY_KEYS = ("study", "replicate_of", "replicate")

VERDICTS_KEY = "verdicts"  # a profile's: false when its runs only check the pipeline

TOP_LEVEL_KEYS = ("seed", "profile", "device", "performance", "data", "model", "train", "studies", "profiles",
                  "runs")


def load_study(params: Mapping) -> Study:
    """Validate the whole of `params.yaml` (as a dict) and resolve every run with the active profile."""
    if not isinstance(params, Mapping):
        raise CifarlabError("params.yaml: expected a mapping at the top level")
    for name in params:
        if name not in TOP_LEVEL_KEYS:
            raise unknown_key("", name, TOP_LEVEL_KEYS)
    seed = require_key(params, "seed", int)
    device = require_key(params, "device", str)
    profiles = require_key(params, "profiles", Mapping)
    profile_name = require_key(params, "profile", str)
    if profile_name not in profiles:
        raise CifarlabError(f"profile: expected one of {', '.join(profiles)}, got {profile_name!r}")
    studies, reports = _check_studies(require_key(params, "studies", Mapping))
    for name, overrides in profiles.items():  # all of them: a typo in an inactive profile is still a typo
        _check_profile(name, overrides, studies)
    profile = profiles[profile_name] or {}
    data = data_settings(params)
    performance = build_section(PerformanceConfig, require_key(params, "performance", Mapping), "performance")
    model_defaults = require_key(params, "model", Mapping)
    train_defaults = require_key(params, "train", Mapping)
    runs_params = require_key(params, "runs", Mapping)
    if not runs_params:
        raise CifarlabError("runs: expected at least one run")
    runs = {name: _resolve_run(str(name), entry, seed, model_defaults, train_defaults, studies, profile,
                               profile_name, performance)
            for name, entry in runs_params.items()}
    _check_replicates(runs)
    pipeline_profiles = tuple(name for name, overrides in profiles.items()
                              if not (overrides or {}).get(VERDICTS_KEY, True))
    return Study(seed=seed, profile=profile_name, device=device, data=data, runs=runs, reports=reports,
                 pipeline_profiles=pipeline_profiles)


def _check_replicates(runs: Mapping[str, RunConfig]) -> None:
    """A replicate names an original run of its study listed above it, trains with exactly its settings,
    and has a number of its own among that run's replicates."""
    order = list(runs)
    for name, run in runs.items():
        if not run.replicate_of:
            continue
        key = f"runs.{name}.replicate_of"
        original = runs.get(run.replicate_of)
        if original is None:
            raise CifarlabError(f"{key}: no run named '{run.replicate_of}'")
        if order.index(run.replicate_of) > order.index(name):
            raise CifarlabError(f"{key}: list {run.replicate_of} above its replicates in runs: (the report takes "
                                "a study's first run as its baseline)")
        if original.replicate_of:
            raise CifarlabError(f"{key}: '{run.replicate_of}' is itself a replicate of '{original.replicate_of}'; "
                                "name the original run")
        if original.study != run.study:
            raise CifarlabError(f"runs.{name}.study: a replicate is in its original's study "
                                f"'{original.study}', got '{run.study}'")
        differences = [f"{section}.{key} {ours!r} here, {theirs!r} in {run.replicate_of}"
                       for section, key, ours, theirs in run.setting_differences(original)]
        if differences:
            raise CifarlabError(f"runs.{name}: a replicate of {run.replicate_of} trains with its settings and "
                                f"another seed only; differs in {'; '.join(differences)}")
    for original, names in replicate_groups(runs.values()).items():
        seen: dict[int, str] = {}
        for name in names:
            number = runs[name].replicate
            if number in seen:
                raise CifarlabError(f"runs.{name}.replicate: {number} is the number of {seen[number]} as well; "
                                    f"each replicate of {original} needs a number of its own")
            seen[number] = name


def _check_profile(name: str, overrides: Any, studies: Mapping) -> None:
    """A profile overrides `model` and `train` keys of every run, then `studies.<study>` those of one
    study's runs (a quick profile shrinks its widest models further); `verdicts: false` marks one whose
    runs check the pipeline, so that the report settles no claim on them."""
    if overrides is None:
        return
    key = f"profiles.{name}"
    _check_profile_layer(overrides, key, also=("studies", VERDICTS_KEY))
    if not isinstance(overrides.get(VERDICTS_KEY, True), bool):
        raise CifarlabError(f"{key}.{VERDICTS_KEY}: expected true or false, got {overrides[VERDICTS_KEY]!r}")
    by_study = overrides.get("studies") or {}
    if not isinstance(by_study, Mapping):
        raise CifarlabError(f"{key}.studies: expected a mapping of study name -> model:/train: overrides, got "
                            f"{by_study!r}")
    for study, layer in by_study.items():
        if study not in studies:
            raise CifarlabError(f"{key}.studies.{study}: not a study; expected one of: {', '.join(studies)}")
        _check_profile_layer(layer, f"{key}.studies.{study}")


def _check_profile_layer(layer: Any, key: str, also: tuple[str, ...] = ()) -> None:
    allowed = ("model", "train", *also)
    if not isinstance(layer, Mapping):
        raise CifarlabError(f"{key}: expected a mapping of {', '.join(allowed)} overrides, got {layer!r}")
    for name in layer:
        if name not in allowed:
            raise unknown_key(key, name, allowed)
    _check_model_keys(layer.get("model") or {}, f"{key}.model")
    _check_train_keys(layer.get("train") or {}, f"{key}.train")


def _check_overrides(entry: Mapping, key: str, also: tuple[str, ...] = ()) -> None:
    """A run entry or a study's defaults: keys of model: or train: (and `also`), nothing else."""
    known = set(_model_key_fields()) | {f.name for f in dataclasses.fields(TrainConfig)}
    for option in entry:
        if option not in known | set(also):
            raise unknown_key(key, option, [*also, *sorted(known)],
                              f"expected {', '.join(also)} or a key of model: or train: ({', '.join(sorted(known))})")


def _check_studies(studies: Mapping) -> tuple[dict[str, Mapping], dict[str, StudyReport]]:
    """`studies:` maps each study's name to the report section that shows it (`section`, and optionally
    its heading, `title`) and the model:/train: keys its runs share; returns those keys and the reports."""
    checked, reports = {}, {}
    for name, entry in studies.items():
        if not isinstance(name, str) or not STUDY_NAME.fullmatch(name):
            raise CifarlabError(f"studies.{name}: expected a study name of letters, digits, - and _")
        if not isinstance(entry, Mapping):
            raise CifarlabError(f"studies.{name}: expected a mapping with its report section and the model:/train: "
                                f"keys its runs share, such as {{section: comparisons, epochs: 30}}, got {entry!r}")
        section = entry.get("section")
        if not isinstance(section, str) or section not in SECTIONS:
            raise CifarlabError(f"studies.{name}.section: expected the report section that shows it, one of "
                                f"{', '.join(SECTIONS)}, got {section!r}")
        title = entry.get("title", SECTIONS[section][0])
        if not isinstance(title, str) or not title.strip():
            raise CifarlabError(f"studies.{name}.title: expected a heading for its report section, got {title!r}")
        defaults = {k: v for k, v in entry.items() if k not in STUDY_REPORT_KEYS}
        _check_overrides(defaults, f"studies.{name}", also=STUDY_REPORT_KEYS)
        checked[name], reports[name] = defaults, StudyReport(section=section, title=title)
    if not checked:
        raise CifarlabError("studies: expected at least one study")
    return checked, reports


class _Layer(NamedTuple):
    """One layer of a run's settings: its model: and train: keys, each named by the params key it was
    written under, so that an error points at the right line."""

    model_key: str
    train_key: str
    model: Mapping
    train: Mapping


def _run_identity(name: str, entry: Any, studies: Mapping[str, Mapping]) -> tuple[str, str, int]:
    """A run entry's study, and for a replicate the run it repeats and its number (0 for an original)."""
    key = f"runs.{name}"
    if not isinstance(entry, Mapping):
        raise CifarlabError(f"{key}: expected a mapping such as {{study: norm, norm: bn}}, got {entry!r}")
    _check_overrides(entry, key, also=RUN_ONLY_KEYS)
    study = entry.get("study")
    replicate_of, replicate = entry.get("replicate_of", ""), entry.get("replicate", 0)
    if ("replicate_of" in entry) != ("replicate" in entry):
        raise CifarlabError(f"{key}: a replicate names both the run it repeats (replicate_of) and its number "
                            "(replicate: 1, 2, ...)")
    if not isinstance(replicate_of, str) or "replicate_of" in entry and not replicate_of:
        raise CifarlabError(f"{key}.replicate_of: expected the name of the run this one repeats, got {replicate_of!r}")
    if not isinstance(replicate, int) or isinstance(replicate, bool) or "replicate" in entry and replicate < 1:
        raise CifarlabError(f"{key}.replicate: expected a whole number from 1 (the original is 0), got {replicate!r}")
    if not isinstance(study, str) or study not in studies:
        raise CifarlabError(f"{key}.study: expected one of the studies ({', '.join(studies)}), got {study!r}")
    if "norm" not in entry and "norm" not in studies[study]:
        raise CifarlabError(f"{key}.norm: missing; every run or its study names its norm "
                            f"({', '.join(NORM_LAYERS)})")
    return study, replicate_of, replicate


def _split_keys(layer: Mapping) -> tuple[dict, dict]:
    """A study's or a run's flat keys, as model: keys and train: keys."""
    model_keys, train_keys = set(_model_key_fields()), {f.name for f in dataclasses.fields(TrainConfig)}
    return ({k: v for k, v in layer.items() if k in model_keys}, {k: v for k, v in layer.items() if k in train_keys})


def _run_layers(key: str, study: str, entry: Mapping, studies: Mapping[str, Mapping], model_defaults: Mapping,
                train_defaults: Mapping, profile: Mapping, profile_name: str) -> list[_Layer]:
    """defaults <- its study's keys <- the run entry <- the profile <- the profile's keys for its study."""
    for_study = (profile.get("studies") or {}).get(study) or {}
    at = f"profiles.{profile_name}"
    return [_Layer("model", "train", model_defaults, train_defaults),
            _Layer(f"studies.{study}", f"studies.{study}", *_split_keys(studies[study])),
            _Layer(key, key, *_split_keys(entry)),
            _Layer(f"{at}.model", f"{at}.train", profile.get("model") or {}, profile.get("train") or {}),
            _Layer(f"{at}.studies.{study}.model", f"{at}.studies.{study}.train", for_study.get("model") or {},
                   for_study.get("train") or {})]


def _merge(layers: list[_Layer], own_layers: set[str]) -> tuple[dict, dict, dict[str, str], dict]:
    """The layers checked and merged in order: model and train values, the params key that set each model
    value (for errors), and the values the run chose itself (its study's and entry's) with where."""
    model_values: dict[str, Any] = {}
    train_values: dict[str, Any] = {}
    set_by: dict[str, str] = {}
    own: dict[str, tuple[Any, str]] = {}
    for layer in layers:
        checked_model = _check_model_keys(layer.model, layer.model_key)
        checked_train = _check_train_keys(layer.train, layer.train_key)
        model_values.update(checked_model)
        train_values.update(checked_train)
        set_by.update(dict.fromkeys(checked_model, layer.model_key))
        if layer.model_key in own_layers:
            own.update({k: (v, layer.model_key) for k, v in {**checked_model, **checked_train}.items()})
    return model_values, train_values, set_by, own


def _resolve_run(name: str, entry: Any, seed: int, model_defaults: Mapping, train_defaults: Mapping,
                 studies: Mapping[str, Mapping], profile: Mapping, profile_name: str,
                 performance: PerformanceConfig) -> RunConfig:
    key = f"runs.{name}"
    study, replicate_of, replicate = _run_identity(name, entry, studies)
    layers = _run_layers(key, study, entry, studies, model_defaults, train_defaults, profile, profile_name)
    model_values, train_values, set_by, own = _merge(layers, {f"studies.{study}", key})
    model = _build_model_config(model_values, entry, key, name, set_by)
    train = build_section(TrainConfig, train_values, "train", f" (needed by run {name})")
    if train.warmup_epochs and train.warmup_epochs >= train.epochs:
        raise CifarlabError(f"{key}: warmup_epochs ({train.warmup_epochs}) must be below epochs ({train.epochs})")
    check_schedule(train, key)
    final = {**model_values, **train_values}
    # what the run chose and the profile changed, for the report's parameters table
    overrides = tuple(ProfileOverride(k, value, source, final[k]) for k, (value, source) in own.items()
                      if final[k] != value)
    return RunConfig(name=name, study=study, seed=seed + replicate, model=model, train=train,
                     performance=performance, profile=profile_name, profile_overrides=overrides,
                     replicate_of=replicate_of, replicate=replicate)


@functools.cache
def _model_key_fields() -> dict[str, type]:
    """Every key a run may set under model:, with the dataclass that checks it: the common keys of
    ModelConfig, then each family's option keys (a key two families share is checked by the first)."""
    keys = {f.name: ModelConfig for f in dataclasses.fields(ModelConfig) if not f.metadata.get("nested")}
    for arch in MODELS:
        options = family(arch).options
        for f in dataclasses.fields(options):
            keys.setdefault(f.name, options)
    return keys


def _check_model_keys(values: Any, key: str) -> dict[str, Any]:
    """Check one layer of model keys (defaults, a run entry or a profile), naming `key.<name>`."""
    if not isinstance(values, Mapping):
        raise CifarlabError(f"{key}: expected a mapping, got {values!r}")
    known = _model_key_fields()
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            raise unknown_key(key, name, known)
        checked.update(check_fields(known[name], {name: value}, key))
    return _check_choices(checked, key)


def _build_model_config(values: dict[str, Any], entry: Mapping, key: str, run: str,
                        set_by: Mapping[str, str]) -> ModelConfig:
    """The run's ModelConfig: the common keys, and the options of its family from the merged keys.

    An option the run entry sets but its family lacks is an error; options that `model:`, a study or a
    profile give for other families (ResNet's `n` for a VGG run) do not apply to it. `set_by` names the
    params key of the layer that gave each value, for errors.
    """
    context = f" (needed by run {run})"
    common = [f.name for f in dataclasses.fields(ModelConfig) if not f.metadata.get("nested")]
    for name in common:
        if name not in values:
            raise CifarlabError(f"model.{name}: missing{context}; model needs: {', '.join(common)}")
    model_family = family(values["arch"])
    own = [f.name for f in dataclasses.fields(model_family.options)]
    foreign = [name for name in entry if name in _model_key_fields() and name not in common + own]
    if foreign:
        raise CifarlabError(f"{key}.{foreign[0]}: not an option of arch {values['arch']} "
                            f"(its options: {', '.join(own) or 'none'})")
    options = build_section(model_family.options, {k: v for k, v in values.items() if k in own}, "model", context)
    model = ModelConfig(**{name: values[name] for name in common}, options=dataclasses.asdict(options))
    misfit = norm_misfit(model.norm, model.groups, model_family.widths(options), values["arch"])
    if misfit:
        raise CifarlabError(f"{set_by['groups']}.groups: {misfit} (run {run})")
    return model


def read_study(path: Path = PARAMS_FILE) -> Study:
    """The whole of `params.yaml`, validated, every run resolved with the active profile."""
    return load_study(read_params(path))

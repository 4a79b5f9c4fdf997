"""Typed, validated views of `params.yaml`, built once per stage.

Each section is a frozen dataclass; unknown keys, missing keys, wrong types and out-of-range values
fail with the params key named (nanoGPT-style configurator, but strict). A run is `defaults <- its
study's keys <- run entry <- profile <- the profile's keys for its study`: `studies.<study>` and the run
entry under `runs:` override `model:`/`train:` keys by name, and the active profile (e.g. `quick`)
overrides last so that a quick study stays quick whatever a run says.

A replicate is a run entry with `replicate_of: <run>` and `replicate: <k>` (k >= 1): the same settings as
that run (checked here), trained with seed `seed + k` (the original is replicate 0), so another
initialisation, data order and augmentation on the same split. Replicate k of two runs shares its seed,
which pairs them. DVC makes one stage per entry of `runs:` and cannot make stages from a count, so each
replicate is written out as an entry.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cifarlab.activations import ACTIVATIONS
from cifarlab.errors import CifarlabError
from cifarlab.fields import build_section, check_fields, spec
from cifarlab.models import MODELS
from cifarlab.norms import NORM_LAYERS
from cifarlab.optim import OPTIMIZERS
from cifarlab.schedules import SCHEDULES, check_schedule


@dataclass(frozen=True)
class DataConfig:
    source: str
    md5: str | None
    val_fraction: float = field(metadata=spec(above=0.0, below=1.0))


@dataclass(frozen=True)
class ModelConfig:
    """The keys every model takes; `options` is the family's own dataclass (`MODELS[arch].options`),
    filled from the keys of `model:` and the run entry that the family declares (`n`, `shortcut`, ...)."""

    arch: str = field(metadata=spec(choices=tuple(MODELS)))
    num_classes: int = field(metadata=spec(min=2))
    norm: str = field(metadata=spec(choices=tuple(NORM_LAYERS)))
    groups: int = field(metadata=spec(min=1))  # GroupNorm's groups; must divide the model's widths
    activation: str = field(metadata=spec(choices=tuple(ACTIVATIONS)))
    options: Any = field(default=None, metadata={"nested": True})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """Rebuild from `dataclasses.asdict` output, as a checkpoint stores it."""
        options = MODELS[values["arch"]].options(**values["options"])
        return cls(**{**values, "options": options})


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(metadata=spec(min=1))
    batch_size: int = field(metadata=spec(min=1))
    lr: float = field(metadata=spec(above=0.0))
    lr_scaling: str = field(metadata=spec(choices=("linear", "none")))
    lr_reference_batch: int = field(metadata=spec(min=1))
    optimizer: str = field(metadata=spec(choices=tuple(OPTIMIZERS)))
    momentum: float = field(metadata=spec(min=0.0, max=1.0))
    weight_decay: float = field(metadata=spec(min=0.0))
    l1: float = field(metadata=spec(min=0.0))
    gate_lr_multiplier: float = field(metadata=spec(above=0.0))
    augment: bool
    schedule: str = field(metadata=spec(choices=tuple(SCHEDULES)))
    gamma: float = field(metadata=spec(above=0.0))
    step_epochs: int = field(metadata=spec(min=1))
    milestones: tuple[int, ...] = field(metadata=spec(min=1))
    warmup_epochs: int = field(metadata=spec(min=0))
    patience: int = field(metadata=spec(min=1))
    train_images: int = field(metadata=spec(min=0))
    val_images: int = field(metadata=spec(min=0))
    eval_batch_size: int = field(metadata=spec(min=0))

    @property
    def effective_lr(self) -> float:
        """The learning rate used: linear scaling (Goyal et al. 2017) relative to the reference batch."""
        if self.lr_scaling == "linear":
            return self.lr * self.batch_size / self.lr_reference_batch
        return self.lr


@dataclass(frozen=True)
class PerformanceConfig:
    """How a run is computed; results agree up to floating-point noise whatever these say."""

    channels_last: bool
    bf16: bool
    deterministic: bool
    compile: str = field(metadata=spec(choices=("none", "default", "reduce-overhead")))


@dataclass(frozen=True)
class ProfileOverride:
    """A key the run entry or its study set that the active profile replaced."""

    key: str  # model or train key, e.g. "epochs"
    own: Any  # the value the run asked for
    set_by: str  # the params key that asked for it, e.g. "runs.bn-128"
    value: Any  # the profile's value, which the run trains with


@dataclass(frozen=True)
class RunConfig:
    name: str
    study: str  # the study (report section, curve tables) the run belongs to
    seed: int
    model: ModelConfig
    train: TrainConfig
    performance: PerformanceConfig
    profile: str = "full"
    profile_overrides: tuple[ProfileOverride, ...] = ()
    replicate_of: str = ""  # the run this one repeats with another seed; "" for an original run
    replicate: int = 0  # its number among that run's replicates (the original is 0); seed = top-level seed + it

    # Where a run belongs and how its values came about; its training depends on the values alone.
    NOT_SHAPING = ("study", "profile", "profile_overrides", "replicate_of", "replicate")

    @property
    def original(self) -> str:
        """The run whose replicates this is one of (itself for an original): what the report compares."""
        return self.replicate_of or self.name

    def setting_differences(self, other: RunConfig) -> list[tuple[str, str, Any, Any]]:
        """(section, key, ours, theirs) for every model and train key whose value differs from `other`'s."""
        return [(section, f.name, getattr(getattr(self, section), f.name), getattr(getattr(other, section), f.name))
                for section in ("model", "train") for f in dataclasses.fields(getattr(self, section))
                if getattr(getattr(self, section), f.name) != getattr(getattr(other, section), f.name)]

    def fingerprint(self) -> str:
        """A hash of everything that shapes the run's training, to refuse stale resume state."""
        shaping = {k: v for k, v in dataclasses.asdict(self).items() if k not in self.NOT_SHAPING}
        blob = json.dumps(shaping, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def to_record(self) -> dict[str, Any]:
        """Plain data (lists, dicts, scalars) that `from_record` turns back into this config."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> RunConfig:
        def values(mapping: Mapping[str, Any]) -> dict[str, Any]:
            return {k: tuple(v) if isinstance(v, list) else v for k, v in mapping.items()}  # JSON lists were tuples

        return cls(**{**record, "model": ModelConfig.from_dict(record["model"]),
                      "train": TrainConfig(**values(record["train"])),
                      "performance": PerformanceConfig(**record["performance"]),
                      "profile_overrides": tuple(ProfileOverride(**values(o)) for o in record["profile_overrides"])})

    def describe_overrides(self) -> str:
        """The profile's overrides of this run's own keys, e.g. "epochs 200 (studies.resnet20) -> 5"."""
        return ", ".join(f"{o.key} {o.own} ({o.set_by}) -> {o.value}" for o in self.profile_overrides)


@dataclass(frozen=True)
class Study:
    seed: int
    profile: str
    device: str
    data: DataConfig
    runs: dict[str, RunConfig]

    def runs_by_study(self) -> dict[str, list[str]]:
        """Run names grouped by study, both in params order."""
        studies: dict[str, list[str]] = {}
        for name, run in self.runs.items():
            studies.setdefault(run.study, []).append(name)
        return studies

    def replicates(self) -> dict[str, list[str]]:
        """Each original run with its replicates (itself first, then in params order), originals in
        params order."""
        return replicate_groups(self.runs.values())

    def replicates_by_study(self) -> dict[str, dict[str, list[str]]]:
        """`replicates()` grouped by study, both in params order."""
        groups = self.replicates()
        return {study: {run: groups[run] for run in runs if run in groups}
                for study, runs in self.runs_by_study().items()}

    def run(self, name: str) -> RunConfig:
        if name not in self.runs:
            raise CifarlabError(f"runs: no run named '{name}'; expected one of: {', '.join(self.runs)}")
        return self.runs[name]


def replicate_groups(configs: Iterable[RunConfig]) -> dict[str, list[str]]:
    """Run names grouped by the run they replicate (see `RunConfig.original`), in the order given."""
    groups: dict[str, list[str]] = {}
    for config in configs:
        groups.setdefault(config.original, []).append(config.name)
    return groups


def _require(params: Mapping, name: str, kind: type, where: str = "params.yaml") -> Any:
    if name not in params:
        raise CifarlabError(f"{where}: missing top-level key '{name}'")
    value = params[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise CifarlabError(f"{name}: expected {kind.__name__}, got {value!r}")
    return value


STUDY_NAME = re.compile(r"[A-Za-z0-9_-]+")  # it names a folder of curve tables

# Keys of a run entry besides model:/train: keys: its study, and for a replicate the run it repeats and
# its number, which sets its seed (initialisation, data order, augmentation).
RUN_ONLY_KEYS = ("study", "replicate_of", "replicate")

TOP_LEVEL_KEYS = ("seed", "profile", "device", "performance", "data", "model", "train", "studies", "profiles",
                  "runs")


def load_study(params: Mapping) -> Study:
    """Validate the whole of `params.yaml` (as a dict) and resolve every run with the active profile."""
    if not isinstance(params, Mapping):
        raise CifarlabError("params.yaml: expected a mapping at the top level")
    for name in params:
        if name not in TOP_LEVEL_KEYS:
            raise CifarlabError(f"{name}: unknown top-level key; expected one of: {', '.join(TOP_LEVEL_KEYS)}")
    seed = _require(params, "seed", int)
    device = _require(params, "device", str)
    profiles = _require(params, "profiles", Mapping)
    profile_name = _require(params, "profile", str)
    if profile_name not in profiles:
        raise CifarlabError(f"profile: expected one of {', '.join(profiles)}, got {profile_name!r}")
    studies = _check_studies(_require(params, "studies", Mapping))
    for name, overrides in profiles.items():  # all of them: a typo in an inactive profile is still a typo
        _check_profile(name, overrides, studies)
    profile = profiles[profile_name] or {}
    data = build_section(DataConfig, _require(params, "data", Mapping), "data")
    performance = build_section(PerformanceConfig, _require(params, "performance", Mapping), "performance")
    model_defaults = _require(params, "model", Mapping)
    train_defaults = _require(params, "train", Mapping)
    runs_params = _require(params, "runs", Mapping)
    if not runs_params:
        raise CifarlabError("runs: expected at least one run")
    runs = {name: _resolve_run(str(name), entry, seed, model_defaults, train_defaults, studies, profile,
                               profile_name, performance)
            for name, entry in runs_params.items()}
    _check_replicates(runs)
    return Study(seed=seed, profile=profile_name, device=device, data=data, runs=runs)


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
    study's runs (a quick profile shrinks its widest models further)."""
    if overrides is None:
        return
    key = f"profiles.{name}"
    _check_profile_layer(overrides, key, also=("studies",))
    for study, layer in (overrides.get("studies") or {}).items():
        if study not in studies:
            raise CifarlabError(f"{key}.studies.{study}: not a study; expected one of: {', '.join(studies)}")
        _check_profile_layer(layer, f"{key}.studies.{study}")


def _check_profile_layer(layer: Any, key: str, also: tuple[str, ...] = ()) -> None:
    if not isinstance(layer, Mapping) or set(layer) - {"model", "train", *also}:
        raise CifarlabError(f"{key}: expected a mapping with {', '.join(repr(k) for k in ('model', 'train', *also))} "
                            "overrides")
    _check_model_keys(layer.get("model") or {}, f"{key}.model")
    check_fields(TrainConfig, layer.get("train") or {}, f"{key}.train")


def _check_overrides(entry: Mapping, key: str, also: tuple[str, ...] = ()) -> None:
    """A run entry or a study's defaults: keys of model: or train: (and `also`), nothing else."""
    known = set(_model_key_fields()) | {f.name for f in dataclasses.fields(TrainConfig)}
    for option in entry:
        if option not in known | set(also):
            raise CifarlabError(f"{key}.{option}: unknown key; expected {' and '.join(also) + ' and ' if also else ''}"
                                f"keys of model: or train: ({', '.join(sorted(known))})")


def _check_studies(studies: Mapping) -> dict[str, Mapping]:
    """`studies:` maps each study's name to the model:/train: keys its runs share (may be empty)."""
    checked = {}
    for name, defaults in studies.items():
        if not isinstance(name, str) or not STUDY_NAME.fullmatch(name):
            raise CifarlabError(f"studies.{name}: expected a study name of letters, digits, - and _")
        defaults = defaults or {}
        if not isinstance(defaults, Mapping):
            raise CifarlabError(f"studies.{name}: expected a mapping of model:/train: keys, got {defaults!r}")
        _check_overrides(defaults, f"studies.{name}")
        checked[name] = defaults
    if not checked:
        raise CifarlabError("studies: expected at least one study")
    return checked


def _resolve_run(name: str, entry: Any, seed: int, model_defaults: Mapping, train_defaults: Mapping,
                 studies: Mapping[str, Mapping], profile: Mapping, profile_name: str,
                 performance: PerformanceConfig) -> RunConfig:
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
    if study not in studies:
        raise CifarlabError(f"{key}.study: expected one of the studies ({', '.join(studies)}), got {study!r}")
    if "norm" not in entry and "norm" not in studies[study]:
        raise CifarlabError(f"{key}.norm: missing; every run or its study names its norm "
                            f"({', '.join(NORM_LAYERS)})")
    model_keys = set(_model_key_fields())
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}

    def split(layer: Mapping) -> tuple[dict, dict]:
        return ({k: v for k, v in layer.items() if k in model_keys},
                {k: v for k, v in layer.items() if k in train_keys})

    # Each layer is checked under the key where it was written, so an error points at the right line.
    for_study = (profile.get("studies") or {}).get(study) or {}
    layers = [("model", "train", model_defaults, train_defaults),
              (f"studies.{study}", f"studies.{study}", *split(studies[study])),
              (key, key, *split(entry)),
              (f"profiles.{profile_name}.model", f"profiles.{profile_name}.train",
               profile.get("model") or {}, profile.get("train") or {}),
              (f"profiles.{profile_name}.studies.{study}.model", f"profiles.{profile_name}.studies.{study}.train",
               for_study.get("model") or {}, for_study.get("train") or {})]
    own_layers = {f"studies.{study}", key}  # what this run chose, as against defaults and the profile
    model_values: dict[str, Any] = {}
    train_values: dict[str, Any] = {}
    set_by: dict[str, str] = {}
    own: dict[str, tuple[Any, str]] = {}
    for model_key, train_key, model_layer, train_layer in layers:
        checked_model = _check_model_keys(model_layer, model_key)
        checked_train = check_fields(TrainConfig, train_layer, train_key)
        model_values.update(checked_model)
        train_values.update(checked_train)
        set_by.update(dict.fromkeys(checked_model, model_key))
        if model_key in own_layers:
            own.update({k: (v, model_key) for k, v in {**checked_model, **checked_train}.items()})
    model = _build_model_config(model_values, entry, key, name, set_by)
    train = build_section(TrainConfig, train_values, "train", f" (needed by run {name})")
    if train.warmup_epochs and train.warmup_epochs >= train.epochs:
        raise CifarlabError(f"{key}: warmup_epochs ({train.warmup_epochs}) must be below epochs ({train.epochs})")
    check_schedule(train, key)
    final = {**model_values, **train_values}
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
    for family in MODELS.values():
        for f in dataclasses.fields(family.options):
            keys.setdefault(f.name, family.options)
    return keys


def _check_model_keys(values: Any, key: str) -> dict[str, Any]:
    """Check one layer of model keys (defaults, a run entry or a profile), naming `key.<name>`."""
    if not isinstance(values, Mapping):
        raise CifarlabError(f"{key}: expected a mapping, got {values!r}")
    known = _model_key_fields()
    checked: dict[str, Any] = {}
    for name, value in values.items():
        if name not in known:
            raise CifarlabError(f"{key}.{name}: unknown key; expected one of: {', '.join(known)}")
        checked.update(check_fields(known[name], {name: value}, key))
    return checked


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
    family = MODELS[values["arch"]]
    own = [f.name for f in dataclasses.fields(family.options)]
    foreign = [name for name in entry if name in _model_key_fields() and name not in common + own]
    if foreign:
        raise CifarlabError(f"{key}.{foreign[0]}: not an option of arch {values['arch']} "
                            f"(its options: {', '.join(own) or 'none'})")
    options = build_section(family.options, {k: v for k, v in values.items() if k in own}, "model", context)
    model = ModelConfig(**{name: values[name] for name in common}, options=options)
    if model.norm == "gn":
        widths = family.widths(options)
        if any(width % model.groups for width in widths):
            raise CifarlabError(f"{set_by['groups']}.groups: GroupNorm groups={model.groups} must divide the "
                                f"{values['arch']} widths {', '.join(map(str, widths))} (run {run})")
    return model

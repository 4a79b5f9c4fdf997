"""Typed, validated views of `params.yaml`, built once per stage.

Each section is a frozen dataclass; unknown keys, missing keys, wrong types and out-of-range values
fail with the params key named (nanoGPT-style configurator, but strict). A run is `defaults <- run
entry <- profile`: the run entry under `runs:` overrides `model:`/`train:` keys by name, and the active
profile (e.g. `quick`) overrides last so that a quick study stays quick whatever a run says.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from cifarlab.errors import CifarlabError

NORM_NAMES = ("torch_bn", "bn", "in", "bin", "ln", "gn", "nn")
RESNET_WIDTHS = (16, 32, 64)


def _spec(*, min: float | None = None, max: float | None = None, above: float | None = None,
          below: float | None = None, choices: tuple = ()) -> dict:
    """Field constraints: inclusive `min`/`max`, exclusive `above`/`below`, allowed `choices`."""
    return {"min": min, "max": max, "above": above, "below": below, "choices": choices}


@dataclass(frozen=True)
class DataConfig:
    source: str
    md5: str | None
    val_fraction: float = field(metadata=_spec(above=0.0, below=1.0))


@dataclass(frozen=True)
class ModelConfig:
    arch: str = field(metadata=_spec(choices=("resnet",)))
    n: int = field(metadata=_spec(min=1))
    num_classes: int = field(metadata=_spec(min=2))
    shortcut: str = field(metadata=_spec(choices=("A", "B")))
    norm: str = field(metadata=_spec(choices=NORM_NAMES))
    groups: int = field(metadata=_spec(min=1))


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(metadata=_spec(min=1))
    batch_size: int = field(metadata=_spec(min=1))
    lr: float = field(metadata=_spec(above=0.0))
    lr_scaling: str = field(metadata=_spec(choices=("linear", "none")))
    lr_reference_batch: int = field(metadata=_spec(min=1))
    momentum: float = field(metadata=_spec(min=0.0, max=1.0))
    weight_decay: float = field(metadata=_spec(min=0.0))
    gate_lr_multiplier: float = field(metadata=_spec(above=0.0))
    schedule: str = field(metadata=_spec(choices=("step", "cosine")))
    warmup_epochs: int = field(metadata=_spec(min=0))
    patience: int = field(metadata=_spec(min=1))
    train_images: int = field(metadata=_spec(min=0))
    val_images: int = field(metadata=_spec(min=0))
    eval_batch_size: int = field(metadata=_spec(min=0))

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
    compile: str = field(metadata=_spec(choices=("none", "default", "reduce-overhead")))


@dataclass(frozen=True)
class RunConfig:
    name: str
    seed: int
    model: ModelConfig
    train: TrainConfig
    performance: PerformanceConfig

    def fingerprint(self) -> str:
        """A hash of everything that shapes the run's training, to refuse stale resume state."""
        blob = json.dumps(dataclasses.asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Study:
    seed: int
    profile: str
    device: str
    data: DataConfig
    runs: dict[str, RunConfig]

    def run(self, name: str) -> RunConfig:
        if name not in self.runs:
            raise CifarlabError(f"runs: no run named '{name}'; expected one of: {', '.join(self.runs)}")
        return self.runs[name]


def _check_value(value: Any, annotation: Any, meta: Mapping, key: str) -> Any:
    allowed = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else (annotation,)
    if value is None:
        if type(None) in allowed:
            return None
        raise CifarlabError(f"{key}: expected a value, got null")
    if int in allowed and isinstance(value, int) and not isinstance(value, bool):
        checked: Any = value
    elif float in allowed and isinstance(value, (int, float)) and not isinstance(value, bool):
        checked = float(value)
    elif str in allowed and isinstance(value, str):
        checked = value
    elif bool in allowed and isinstance(value, bool):
        checked = value
    else:
        expected = " or ".join(getattr(t, "__name__", str(t)) for t in allowed)
        raise CifarlabError(f"{key}: expected {expected}, got {value!r}")
    if meta.get("choices") and checked not in meta["choices"]:
        raise CifarlabError(f"{key}: expected one of {', '.join(map(str, meta['choices']))}, got {checked!r}")
    low, high = meta.get("min"), meta.get("max")
    if low is not None and checked < low:
        raise CifarlabError(f"{key}: expected a value >= {low}, got {checked!r}")
    if high is not None and checked > high:
        raise CifarlabError(f"{key}: expected a value <= {high}, got {checked!r}")
    if meta.get("above") is not None and checked <= meta["above"]:
        raise CifarlabError(f"{key}: expected a value > {meta['above']}, got {checked!r}")
    if meta.get("below") is not None and checked >= meta["below"]:
        raise CifarlabError(f"{key}: expected a value < {meta['below']}, got {checked!r}")
    return checked



def check_fields(cls: type, values: Any, key: str) -> dict[str, Any]:
    """Check the keys present in `values` against dataclass `cls` (names, types, ranges), naming `key.<field>`."""
    if not isinstance(values, Mapping):
        raise CifarlabError(f"{key}: expected a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in values:
        if name not in fields:
            raise CifarlabError(f"{key}.{name}: unknown key; expected one of: {', '.join(fields)}")
    return {name: _check_value(value, hints[name], fields[name].metadata, f"{key}.{name}")
            for name, value in values.items()}


def build_section(cls: type, values: Any, key: str, context: str = "") -> Any:
    """Build dataclass `cls` from a mapping that must give every field."""
    checked = check_fields(cls, values, key)
    missing = [f.name for f in dataclasses.fields(cls) if f.name not in checked]
    if missing:
        raise CifarlabError(f"{key}.{missing[0]}: missing{context}; {key} needs: "
                            f"{', '.join(f.name for f in dataclasses.fields(cls))}")
    return cls(**checked)


def _require(params: Mapping, name: str, kind: type, where: str = "params.yaml") -> Any:
    if name not in params:
        raise CifarlabError(f"{where}: missing top-level key '{name}'")
    value = params[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        raise CifarlabError(f"{name}: expected {kind.__name__}, got {value!r}")
    return value


TOP_LEVEL_KEYS = ("seed", "profile", "device", "performance", "data", "model", "train", "profiles", "runs")


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
    for name, overrides in profiles.items():  # all of them: a typo in an inactive profile is still a typo
        _check_profile(name, overrides)
    profile = profiles[profile_name] or {}
    data = build_section(DataConfig, _require(params, "data", Mapping), "data")
    performance = build_section(PerformanceConfig, _require(params, "performance", Mapping), "performance")
    model_defaults = _require(params, "model", Mapping)
    train_defaults = _require(params, "train", Mapping)
    runs_params = _require(params, "runs", Mapping)
    if not runs_params:
        raise CifarlabError("runs: expected at least one run")
    runs = {name: _resolve_run(str(name), entry, seed, model_defaults, train_defaults, profile, profile_name,
                               performance)
            for name, entry in runs_params.items()}
    return Study(seed=seed, profile=profile_name, device=device, data=data, runs=runs)


def _check_profile(name: str, overrides: Any) -> None:
    if overrides is None:
        return
    if not isinstance(overrides, Mapping) or set(overrides) - {"model", "train"}:
        raise CifarlabError(f"profiles.{name}: expected a mapping with 'model' and/or 'train' overrides")
    check_fields(ModelConfig, overrides.get("model") or {}, f"profiles.{name}.model")
    check_fields(TrainConfig, overrides.get("train") or {}, f"profiles.{name}.train")


def _resolve_run(name: str, entry: Any, seed: int, model_defaults: Mapping, train_defaults: Mapping,
                 profile: Mapping, profile_name: str, performance: PerformanceConfig) -> RunConfig:
    key = f"runs.{name}"
    if not isinstance(entry, Mapping):
        raise CifarlabError(f"{key}: expected a mapping such as {{norm: bn, batch_size: 128}}, got {entry!r}")
    model_keys = {f.name for f in dataclasses.fields(ModelConfig)}
    train_keys = {f.name for f in dataclasses.fields(TrainConfig)}
    for option in entry:
        if option not in model_keys | train_keys:
            raise CifarlabError(f"{key}.{option}: unknown key; a run sets keys of model: or train: "
                                f"({', '.join(sorted(model_keys | train_keys))})")
    if "norm" not in entry:
        raise CifarlabError(f"{key}.norm: missing; every run names its norm ({', '.join(NORM_NAMES)})")
    # Each layer is checked under the key where it was written, so an error points at the right line.
    layers = [("model", "train", model_defaults, train_defaults),
              (key, key, {k: v for k, v in entry.items() if k in model_keys},
               {k: v for k, v in entry.items() if k in train_keys}),
              (f"profiles.{profile_name}.model", f"profiles.{profile_name}.train",
               profile.get("model") or {}, profile.get("train") or {})]
    model_values: dict[str, Any] = {}
    train_values: dict[str, Any] = {}
    for model_key, train_key, model_layer, train_layer in layers:
        model_values.update(check_fields(ModelConfig, model_layer, model_key))
        train_values.update(check_fields(TrainConfig, train_layer, train_key))
    model = build_section(ModelConfig, model_values, "model", f" (needed by run {name})")
    train = build_section(TrainConfig, train_values, "train", f" (needed by run {name})")
    if model.norm == "gn":
        bad = [w for w in RESNET_WIDTHS if w % model.groups]
        if bad:
            where = f"{key}.groups" if "groups" in entry else "model.groups"
            raise CifarlabError(f"{where}: GroupNorm groups={model.groups} must divide the ResNet widths "
                                f"{', '.join(map(str, RESNET_WIDTHS))} (run {name})")
    if train.warmup_epochs and train.warmup_epochs >= train.epochs:
        raise CifarlabError(f"{key}: warmup_epochs ({train.warmup_epochs}) must be below epochs ({train.epochs})")
    return RunConfig(name=name, seed=seed, model=model, train=train, performance=performance)

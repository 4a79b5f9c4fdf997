"""The typed, frozen views of `params.yaml` that every stage works with: the sections and a resolved run.

A run is `defaults <- its study's keys <- run entry <- profile <- the profile's keys for its study`
(resolved in `study.resolve`). A replicate is a run entry with `replicate_of: <run>` and `replicate: <k>`
(k >= 1): the same settings as that run, trained with seed `seed + k` (the original is replicate 0), so
another initialisation, data order and augmentation on the same split. Replicate k of two runs shares its
seed, which pairs them.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cifarlab.config.fields import spec
from cifarlab.errors import CifarlabError


@dataclass(frozen=True)
class DataConfig:
    source: str
    md5: str | None
    val_fraction: float = field(metadata=spec(above=0.0, below=1.0))


@dataclass(frozen=True)
class ModelConfig:
    """The keys every model takes; `options` holds the keys that the family of `arch` declares (`n`,
    `shortcut`, ...), checked against its options dataclass when the run is resolved. The names of arch,
    norm and activation are checked against their registries there too (`study.resolve`), so that these
    types need neither torch nor the registries."""

    arch: str
    num_classes: int = field(metadata=spec(min=2))
    norm: str
    groups: int = field(metadata=spec(min=1))  # GroupNorm's groups; must divide the model's widths
    activation: str
    options: dict[str, Any] = field(default_factory=dict, metadata={"nested": True})

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """Rebuild from `dataclasses.asdict` output, as a checkpoint stores it."""
        return cls(**{**values, "options": dict(values["options"])})


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = field(metadata=spec(min=1))
    batch_size: int = field(metadata=spec(min=1))
    lr: float = field(metadata=spec(above=0.0))
    lr_scaling: str = field(metadata=spec(choices=("linear", "none")))
    lr_reference_batch: int = field(metadata=spec(min=1))
    optimizer: str  # a name of train.optim.OPTIMIZERS
    momentum: float = field(metadata=spec(min=0.0, max=1.0))
    weight_decay: float = field(metadata=spec(min=0.0))
    l1: float = field(metadata=spec(min=0.0))
    gate_lr_multiplier: float = field(metadata=spec(above=0.0))
    augment: bool
    schedule: str  # a name of train.schedules.SCHEDULES
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
class StudyReport:
    """How the report shows a study: the section that renders it, and the heading it gets."""

    section: str
    title: str


@dataclass(frozen=True)
class Study:
    seed: int
    profile: str
    device: str
    data: DataConfig
    runs: dict[str, RunConfig]
    reports: dict[str, StudyReport] = field(default_factory=dict)  # by study name, in params order
    pipeline_profiles: tuple[str, ...] = ()  # profiles with `verdicts: false`: their runs settle no claim

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

    def to_record(self) -> dict[str, Any]:
        """Plain data that `from_record` turns back into this study."""
        return {"seed": self.seed, "profile": self.profile, "device": self.device,
                "data": dataclasses.asdict(self.data), "runs": {name: run.to_record() for name, run in self.runs.items()},
                "reports": {name: dataclasses.asdict(report) for name, report in self.reports.items()},
                "pipeline_profiles": list(self.pipeline_profiles)}

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Study:
        return cls(seed=record["seed"], profile=record["profile"], device=record["device"],
                   data=DataConfig(**record["data"]),
                   runs={name: RunConfig.from_record(run) for name, run in record["runs"].items()},
                   reports={name: StudyReport(**report) for name, report in record["reports"].items()},
                   pipeline_profiles=tuple(record.get("pipeline_profiles", ())))

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

"""Claims: what a source says a study should find, as data that the report tests against the runs.

`claims.yaml` maps each claim's name to its source (document and section), what it says, the metric and
runs it compares and the relation it expects. check-params reads it with params.yaml, so that a claim naming
a run its study does not have fails before any training; the report stage reads it again to give each
claim its verdict. What a claim may expect is `config.relations`' registry.

Claims on what training reaches are judged on the test split, which nothing in training or checkpoint
selection has seen: a claim on the validation split is refused (the Findings show validation beside test).
`left_out:` lists what a source says that no run here can test, with the reason.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cifarlab.config.relations import RELATIONS
from cifarlab.config.sections import Study
from cifarlab.config.yaml_file import read_yaml
from cifarlab.errors import CifarlabError

CLAIMS_FILE = Path("claims.yaml")

# The metrics a claim may compare, each with how its noise is measured:
#   score: a share of test (or train) images right, with per-image or binomial image noise and seed noise;
#   loss: a mean cross-entropy, with the standard error of the per-image losses and seed noise;
#   training: a property of one training that only the seed moves (a time, a share of weights, a curve);
#   exact: a property of the model alone (its size), the same for every seed.
METRIC_KINDS: dict[str, str] = {
    "test.accuracy": "score", "train.accuracy": "score",
    "test.loss": "loss", "train.loss": "loss",
    "initial_val_loss": "training",
    "weights.fraction_small": "training",
    "seconds_per_epoch": "training",
    "curve.overfit": "training",
    "curve.val_fluctuation": "training",
    "curve.val_gain_after_10": "training",
    "curve.train_loss_mean": "training",
    "model.parameters": "exact",
    "model.macs_per_image": "exact",
}
# Metrics that are a share (of images, of weights, of accuracy points): their margins lie in (0, 1) and
# their values in [0, 1], so that `margin: 2` (200 points) is refused.
FRACTIONS = ("test.accuracy", "train.accuracy", "weights.fraction_small", "curve.overfit",
             "curve.val_fluctuation", "curve.val_gain_after_10")
# What each kind of metric may expect: a model's size has no noise to test against a margin.
KIND_RELATIONS: dict[str, tuple[str, ...]] = {
    "score": ("more", "less", "same", "not-below", "at-least", "at-most", "at-chance", "measured"),
    "loss": ("more", "less", "same", "not-below", "at-least", "at-most", "measured"),
    "training": ("more", "less", "same", "not-below", "at-least", "at-most", "near", "measured"),
    "exact": ("more", "less", "equals", "measured"),
}

# The loss before training depends on initialisation alone, so any profile settles a claim on it; a model's
# size is not: a pipeline-check profile shrinks the models (ResNet-8, VGG-11 at half width).
ANY_PROFILE = ("initial_val_loss",)
COMMON = ("source", "says", "metric", "expect")
OPTIONAL = ("reported", "study", "min_train_images")
LN_CLASSES = "ln-classes"  # `value: ln-classes`: ln(the number of classes), the loss of a uniform guess
LEFT_OUT_KEYS = ("source", "says", "why")


@dataclass(frozen=True)
class Claim:
    name: str
    source: str
    says: str
    metric: str
    expect: str
    study: str | None = None
    reported: str | None = None
    a: str | None = None
    b: str | None = None
    a_base: str | None = None
    b_base: str | None = None
    runs: tuple[str, ...] = ()
    value: float | str | None = None
    margin: float | None = None
    min_train_images: int | None = None

    @property
    def kind(self) -> str:
        return METRIC_KINDS[self.metric]

    @property
    def named_runs(self) -> tuple[str, ...]:
        """Every run the claim reads, in the order it names them."""
        named = (self.a, self.a_base, *self.runs, self.b, self.b_base)
        return tuple(dict.fromkeys(run for run in named if run))

    @property
    def of_changes(self) -> bool:
        return self.a_base is not None


@dataclass(frozen=True)
class LeftOut:
    """What a source says that no run here can test, and why."""

    name: str
    source: str
    says: str
    why: str


def read_claims_file(path: Path) -> dict:
    raw = read_yaml(path, missing="it holds the claims the report tests (may be empty)")
    if not isinstance(raw, Mapping) or not isinstance(raw.get("claims"), Mapping):
        raise CifarlabError(f"{path}: expected a mapping `claims:` of claim name -> claim")
    unknown = set(raw) - {"claims", "left_out"}
    if unknown:
        raise CifarlabError(f"{path}: {sorted(unknown)[0]}: unknown key; expected claims and left_out")
    return raw


def read_claims(path: Path, study: Study) -> list[Claim]:
    """The claims of `path`, checked against the study's runs. A claim whose study has no runs in this
    study (params.yaml runs only some studies) is left out; one naming a run its study lacks is an error."""
    entries = read_claims_file(path)["claims"]
    claims = [_claim(path, str(name), entry, study) for name, entry in entries.items()]
    return [claim for claim in claims if claim is not None]


def read_left_out(path: Path) -> list[LeftOut]:
    """`left_out:`: what a source says that no run can test, each with source, says and why."""
    entries = read_claims_file(path).get("left_out") or {}
    if not isinstance(entries, Mapping):
        raise CifarlabError(f"{path}: left_out: expected a mapping of name -> source, says, why")
    left = []
    for name, entry in entries.items():
        where = f"{path}: left_out.{name}"
        if not isinstance(entry, Mapping):
            raise CifarlabError(f"{where}: expected a mapping with {', '.join(LEFT_OUT_KEYS)}")
        _known_keys(entry, LEFT_OUT_KEYS, where)
        for key in LEFT_OUT_KEYS:
            if not isinstance(entry.get(key), str) or not entry[key].strip():
                raise CifarlabError(f"{where}.{key}: expected text, got {entry.get(key)!r}")
        left.append(LeftOut(str(name), entry["source"], entry["says"], entry["why"]))
    return left


def _known_keys(entry: Mapping, allowed: Sequence[str], where: str, elsewhere: Sequence[str] = (),
                expect: str = "") -> None:
    """Refuse a key not `allowed`: one another relation takes as not a key of this one, any other as
    unknown, with the nearest known key."""
    for key in entry:
        if key in allowed:
            continue
        if key in elsewhere:
            raise CifarlabError(f"{where}.{key}: not a key of an `expect: {expect}` claim; expected "
                                f"{', '.join(sorted(allowed))}")
        near = difflib.get_close_matches(str(key), [*allowed, *elsewhere], n=1)
        raise CifarlabError(f"{where}.{key}: not a key of a claim" + (f"; did you mean {near[0]}?" if near else
                                                                      f"; expected {', '.join(sorted(allowed))}"))


def _claim(path: Path, name: str, entry: Any, study: Study) -> Claim | None:
    where = f"{path}: claims.{name}"
    if not isinstance(entry, Mapping):
        raise CifarlabError(f"{where}: expected a mapping with source, says, metric and expect")
    expect = entry.get("expect")
    relation = RELATIONS.get(expect) if isinstance(expect, str) else None
    relation_keys = sorted({k for r in RELATIONS.values() for k in (*r.needs, *r.optional)})
    _known_keys(entry, (*COMMON, *OPTIONAL, *((*relation.needs, *relation.optional) if relation else relation_keys)),
                where, relation_keys, expect)
    for key in COMMON:
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise CifarlabError(f"{where}.{key}: expected text, got {entry.get(key)!r}")
    if relation is None:
        raise CifarlabError(f"{where}.expect: expected one of {', '.join(RELATIONS)}, got {expect!r}")
    metric = entry["metric"]
    if metric.startswith("val."):
        raise CifarlabError(f"{where}.metric: {metric} is on the validation images, which chose the checkpoint; "
                            f"use test.{metric[4:]} (the Findings show validation beside it)")
    if metric not in METRIC_KINDS:
        raise CifarlabError(f"{where}.metric: expected one of {', '.join(METRIC_KINDS)}, got {metric!r}")
    for key in relation.needs:
        if key not in entry:
            raise CifarlabError(f"{where}.{key}: an `expect: {expect}` claim needs it")
    kind = METRIC_KINDS[metric]
    if expect not in KIND_RELATIONS[kind]:
        raise CifarlabError(f"{where}.expect: {metric} ({kind}) may expect one of {', '.join(KIND_RELATIONS[kind])}, "
                            f"got {expect!r}")
    if expect == "at-chance" and not metric.endswith(".accuracy"):
        raise CifarlabError(f"{where}.metric: `expect: at-chance` compares an accuracy, got {metric!r}")
    if ("a_base" in entry) != ("b_base" in entry):
        raise CifarlabError(f"{where}: a_base and b_base go together (a difference of changes)")
    if "a_base" in entry and kind == "exact":
        raise CifarlabError(f"{where}.a_base: {metric} is a property of the model; compare it directly")
    named = [entry[key] for key in ("a", "b", "a_base", "b_base") if key in entry]
    if len(set(map(str, named))) != len(named):
        raise CifarlabError(f"{where}: a, b (and a_base, b_base) must be different runs, got {', '.join(map(str, named))}")
    study_name = entry.get("study")
    originals = _originals(study, study_name, where)
    if originals is None:
        return None  # that study has no runs here
    runs = _runs(entry.get("runs"), originals, where) if "runs" in entry else ()
    for key in ("a", "b", "a_base", "b_base"):
        if key in entry and entry[key] not in originals:
            raise CifarlabError(f"{where}.{key}: expected a run of {f'study {study_name}' if study_name else 'runs:'} "
                                f"that is not a replicate, got {entry[key]!r}")
    fraction = metric in FRACTIONS
    return Claim(name=name, source=entry["source"], says=entry["says"], metric=metric, expect=expect,
                 study=study_name, reported=_text(entry, "reported", where), a=entry.get("a"), b=entry.get("b"),
                 a_base=entry.get("a_base"), b_base=entry.get("b_base"), runs=runs,
                 value=_value(entry, where, fraction), margin=_margin(entry, where, fraction),
                 min_train_images=_count(entry, "min_train_images", where))


def _originals(study: Study, study_name: Any, where: str) -> list[str] | None:
    """The original runs a claim may name: its study's, or every study's without one; None when its study
    has no runs in this params.yaml. Replicates are read with their original, never named."""
    by_study = study.replicates_by_study()
    if study_name is not None and (not isinstance(study_name, str) or study_name not in study.reports):
        raise CifarlabError(f"{where}.study: expected one of the studies in params.yaml ({', '.join(study.reports)}), "
                            f"got {study_name!r}")
    if study_name is not None and study_name not in by_study:
        return None
    return list(by_study[study_name]) if study_name else [r for runs in by_study.values() for r in runs]


def _runs(value: Any, originals: list[str], where: str) -> tuple[str, ...]:
    if value == "all":
        return tuple(originals)
    if not isinstance(value, list) or not value or any(run not in originals for run in value):
        raise CifarlabError(f"{where}.runs: expected `all` or a list of runs of its study that are not replicates, "
                            f"got {value!r}")
    return tuple(value)


def _text(entry: Mapping, key: str, where: str) -> str | None:
    if key in entry and not isinstance(entry[key], str):
        raise CifarlabError(f"{where}.{key}: expected text, got {entry[key]!r}")
    return entry.get(key)


def _value(entry: Mapping, where: str, fraction: bool) -> float | str | None:
    value = entry.get("value")
    if value is None or value == LN_CLASSES:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CifarlabError(f"{where}.value: expected a number or {LN_CLASSES}, got {value!r}")
    if fraction and not 0 <= value <= 1:
        raise CifarlabError(f"{where}.value: {entry['metric']} is a share: expected a value from 0 to 1 "
                            f"(0.9 = 90%), got {value!r}")
    return float(value)


def _margin(entry: Mapping, where: str, fraction: bool) -> float | None:
    value = entry.get("margin")
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise CifarlabError(f"{where}.margin: expected a number above 0, got {value!r}")
    if fraction and value >= 1:
        raise CifarlabError(f"{where}.margin: {entry['metric']} is a share: expected a margin below 1 "
                            f"(0.01 = 1 point), got {value!r}")
    return float(value)


def _count(entry: Mapping, key: str, where: str) -> int | None:
    value = entry.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise CifarlabError(f"{where}.{key}: expected a whole number of images, got {value!r}")
    return value

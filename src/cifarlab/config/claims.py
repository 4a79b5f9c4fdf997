"""Claims: what a source says a study should find, as data that the report tests against the runs.

`claims.yaml` maps each claim's name to its source (document and section), what it says, the metric and
runs it compares and the relation it expects. check-params reads it with params.yaml, so that a claim naming
a run its study does not have fails before any training; the report stage reads it again to give each
claim its verdict. Torch-free, like the rest of `config`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cifarlab.config.sections import Study
from cifarlab.errors import CifarlabError

CLAIMS_FILE = Path("claims.yaml")

SPLITS = ("train", "val", "test")

# The metrics a claim may compare: the evaluate stage's dotted keys, each with how its noise is measured.
#   score: a share of images right, with a binomial standard error on the split's images;
#   loss: a mean cross-entropy, with the standard error of the per-image losses;
#   exact: a property of the model or of one training that no resampling of images changes.
METRIC_KINDS: dict[str, str] = {
    **{f"{split}.{score}": "score" for split in SPLITS for score in ("accuracy", "macro_f1")},
    **{f"{split}.loss": "loss" for split in SPLITS},
    "initial_val_loss": "exact",
    "model.parameters": "exact",
    "model.macs_per_image": "exact",
    "weights.fraction_small": "exact",
    "seconds_per_epoch": "exact",
}

# The loss before training depends on initialisation alone, so any profile settles a claim on it; a model's
# size is not: a pipeline-check profile shrinks the models (ResNet-8, VGG-11 at half width).
ANY_PROFILE = ("initial_val_loss",)

# expect -> the keys it needs besides source, says and metric.
EXPECTATIONS: dict[str, tuple[str, ...]] = {
    "more": ("a", "b"),          # A > B; with a_base and b_base: (A - A base) > (B - B base)
    "less": ("a", "b"),          # A < B; likewise
    "same": ("a", "b", "margin"),  # |A - B| <= margin
    "not-below": ("a", "b", "margin"),  # A >= B - margin: at least as good, but for the margin
    "at-least": ("a", "value"),  # A >= value
    "at-most": ("a", "value"),   # A <= value
    "at-chance": ("a",),         # A's accuracy not above the test set's majority-class rate
    "near": ("runs", "value", "margin"),  # every run's metric within margin of value
    "measured": ("runs",),       # stated as measured, no verdict; with b, each run's difference from it
}
# What a claim may expect of a metric without a yardstick (a single value each): its direction, a range.
EXACT_EXPECTATIONS = ("more", "less", "near", "measured")
OPTIONAL = ("reported", "study", "a_base", "b_base", "min_train_images")
OPTIONAL_BY_EXPECTATION = {"measured": ("b",)}
LN_CLASSES = "ln-classes"  # `value: ln-classes`: ln(the number of classes), the loss of a uniform guess


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


def read_claims(path: Path, study: Study) -> list[Claim]:
    """The claims of `path`, checked against the study's runs. A claim whose study has no runs in this
    study (params.yaml runs only some studies) is left out; one naming a run its study lacks is an error."""
    try:
        raw = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise CifarlabError(f"{path}: not found; it holds the claims the report tests (may be empty)") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise CifarlabError(f"{path}{f' line {mark.line + 1}' if mark else ''}: not valid YAML "
                            f"({getattr(exc, 'problem', exc)})") from None
    entries = (raw or {}).get("claims") if isinstance(raw, Mapping) else None
    if not isinstance(entries, Mapping):
        raise CifarlabError(f"{path}: expected a mapping `claims:` of claim name -> claim")
    claims = [_claim(path, str(name), entry, study) for name, entry in entries.items()]
    return [claim for claim in claims if claim is not None]


def _claim(path: Path, name: str, entry: Any, study: Study) -> Claim | None:
    where = f"{path}: claims.{name}"
    if not isinstance(entry, Mapping):
        raise CifarlabError(f"{where}: expected a mapping with source, says, metric and expect")
    for key in ("source", "says", "metric", "expect"):
        if not isinstance(entry.get(key), str) or not entry[key].strip():
            raise CifarlabError(f"{where}.{key}: expected text, got {entry.get(key)!r}")
    expect, metric = entry["expect"], entry["metric"]
    if expect not in EXPECTATIONS:
        raise CifarlabError(f"{where}.expect: expected one of {', '.join(EXPECTATIONS)}, got {expect!r}")
    if metric not in METRIC_KINDS:
        raise CifarlabError(f"{where}.metric: expected one of {', '.join(METRIC_KINDS)}, got {metric!r}")
    allowed = {"source", "says", "metric", "expect", *EXPECTATIONS[expect], *OPTIONAL,
               *OPTIONAL_BY_EXPECTATION.get(expect, ())}
    for key in entry:
        if key not in allowed:
            raise CifarlabError(f"{where}.{key}: not a key of an `expect: {expect}` claim; expected "
                                f"{', '.join(sorted(allowed))}")
    for key in EXPECTATIONS[expect]:
        if key not in entry:
            raise CifarlabError(f"{where}.{key}: an `expect: {expect}` claim needs it")
    if METRIC_KINDS[metric] == "exact" and (expect not in EXACT_EXPECTATIONS or "a_base" in entry):
        raise CifarlabError(f"{where}.expect: {metric} is measured without a test; a claim on it expects one of "
                            f"{', '.join(EXACT_EXPECTATIONS)} (no a_base/b_base), got {expect!r}")
    if expect == "at-chance" and not metric.endswith(".accuracy"):
        raise CifarlabError(f"{where}.metric: `expect: at-chance` compares an accuracy, got {metric!r}")
    if ("a_base" in entry) != ("b_base" in entry) or ("a_base" in entry and expect not in ("more", "less")):
        raise CifarlabError(f"{where}: a_base and b_base go together, in a `more` or `less` claim (a difference "
                            "of changes)")
    study_name = entry.get("study")
    by_study = study.replicates_by_study()  # original runs only: replicates are read with their original
    if study_name is not None and (not isinstance(study_name, str) or study_name not in study.reports):
        raise CifarlabError(f"{where}.study: expected one of the studies in params.yaml ({', '.join(study.reports)}), "
                            f"got {study_name!r}")
    if study_name is not None and study_name not in by_study:
        return None  # that study has no runs here
    originals = list(by_study[study_name]) if study_name else [r for runs in by_study.values() for r in runs]
    runs = _runs(entry.get("runs"), originals, where) if "runs" in entry else ()
    for key in ("a", "b", "a_base", "b_base"):
        if key in entry and entry[key] not in originals:
            raise CifarlabError(f"{where}.{key}: expected a run of {f'study {study_name}' if study_name else 'runs:'} "
                                f"that is not a replicate, got {entry[key]!r}")
    return Claim(name=name, source=entry["source"], says=entry["says"], metric=metric, expect=expect,
                 study=study_name, reported=_text(entry, "reported", where), a=entry.get("a"), b=entry.get("b"),
                 a_base=entry.get("a_base"), b_base=entry.get("b_base"), runs=runs,
                 value=_value(entry, where), margin=_positive(entry, "margin", where),
                 min_train_images=_count(entry, "min_train_images", where))


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


def _value(entry: Mapping, where: str) -> float | str | None:
    value = entry.get("value")
    if value is None or value == LN_CLASSES:
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise CifarlabError(f"{where}.value: expected a number or {LN_CLASSES}, got {value!r}")
    return float(value)


def _positive(entry: Mapping, key: str, where: str) -> float | None:
    value = entry.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
        raise CifarlabError(f"{where}.{key}: expected a number above 0, got {value!r}")
    return float(value)


def _count(entry: Mapping, key: str, where: str) -> int | None:
    value = entry.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise CifarlabError(f"{where}.{key}: expected a whole number of images, got {value!r}")
    return value

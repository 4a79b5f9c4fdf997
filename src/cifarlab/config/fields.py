"""Typed, range-checked fields for the frozen dataclasses that params sections become.

A field's metadata (`spec`) says what values it takes; `check_fields` and `build_section` check a
mapping against a dataclass and name the params key of any bad value. Families of models declare
their own option dataclasses with these, so their keys are validated like every other.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import types
import typing
from collections.abc import Iterable, Mapping
from typing import Any

from cifarlab.errors import CifarlabError


def spec(*, min: float | None = None, max: float | None = None, above: float | None = None,
         below: float | None = None, choices: tuple = ()) -> dict:
    """Field constraints: inclusive `min`/`max`, exclusive `above`/`below`, allowed `choices`."""
    return {"min": min, "max": max, "above": above, "below": below, "choices": choices}


def unknown_key(parent: str, name: object, known: Iterable[str], expected: str = "") -> CifarlabError:
    """The error for key `name` under the dotted key `parent` ("" at the top level), which is none of
    `known`: the nearest known key when one is close, as a typo's is, else `expected` or the list."""
    known = list(known)
    close = difflib.get_close_matches(str(name), known, n=1)
    hint = f"did you mean {close[0]}?" if close else expected or f"expected one of: {', '.join(known)}"
    if not parent:
        return CifarlabError(f"{name}: not a top-level key; {hint}")
    return CifarlabError(f"{parent}.{name}: not a key of {parent}; {hint}")


def _check_value(value: Any, annotation: Any, meta: Mapping, key: str) -> Any:
    if typing.get_origin(annotation) is tuple:  # tuple[T, ...]: a YAML list, each item checked as a T
        if not isinstance(value, (list, tuple)):
            raise CifarlabError(f"{key}: expected a list, got {value!r}")
        item = typing.get_args(annotation)[0]
        return tuple(_check_value(v, item, meta, f"{key}[{i}]") for i, v in enumerate(value))
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
    fields = _plain_fields(cls)
    for name in values:
        if name not in fields:
            raise unknown_key(key, name, fields)
    return {name: _check_value(value, fields[name][0], fields[name][1], f"{key}.{name}")
            for name, value in values.items()}


@functools.cache
def _plain_fields(cls: type) -> dict[str, tuple[Any, Mapping]]:
    """Each field a params key may set, with its type and spec. Cached: resolving the type hints took most of
    check-params' time, once per key of every run's every layer."""
    hints = typing.get_type_hints(cls)
    # A "nested" field holds another dataclass, built by the caller, never given as a plain key.
    return {f.name: (hints[f.name], f.metadata) for f in dataclasses.fields(cls) if not f.metadata.get("nested")}


def build_section(cls: type, values: Any, key: str, context: str = "") -> Any:
    """Build dataclass `cls` from a mapping that must give every field."""
    checked = check_fields(cls, values, key)
    needed = [f.name for f in dataclasses.fields(cls) if not f.metadata.get("nested")]
    missing = [name for name in needed if name not in checked]
    if missing:
        raise CifarlabError(f"{key}.{missing[0]}: missing{context}; {key} needs: {', '.join(needed)}")
    return cls(**checked)

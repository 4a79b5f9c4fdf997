"""Reading `params.yaml`, and the few keys that the data stages read straight from it.

Only check-params reads the whole file (`study.resolve`); fetch and split read their own keys here, so
that they import neither torch nor any model code and DVC reruns them only when those keys change.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cifarlab.config.fields import build_section
from cifarlab.config.sections import DataConfig
from cifarlab.config.yaml_file import read_yaml
from cifarlab.errors import CifarlabError

PARAMS_FILE = Path("params.yaml")


def read_params(path: Path = PARAMS_FILE) -> dict[str, Any]:
    """The raw params as a dict; YAML errors and a key given twice name the file and line."""
    params = read_yaml(path, missing="run the stages from the project root")
    if not isinstance(params, Mapping):
        raise CifarlabError(f"{path}: expected a mapping at the top level")
    return params


def require_key(params: Mapping, name: str, kind: type, where: str = "params.yaml") -> Any:
    """Top-level key `name`, which must hold a `kind` (a bool is not an int here)."""
    if name not in params:
        raise CifarlabError(f"{where}: missing top-level key '{name}'")
    value = params[name]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is not bool:
        expected = "a mapping" if kind is Mapping else kind.__name__
        raise CifarlabError(f"{name}: expected {expected}, got {value!r}")
    return value


def data_settings(params: Mapping) -> DataConfig:
    """The `data:` section."""
    return build_section(DataConfig, require_key(params, "data", Mapping), "data")

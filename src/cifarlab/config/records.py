"""Reading the settings files that check-params writes (`study.publish`) and every later stage reads
instead of `params.yaml`: `data/runs/<run>.json`, one run's resolved settings, the device setting and the
hashes of its training code; `data/study.json`, every run's settings in params order.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from cifarlab.config.sections import RunConfig, Study
from cifarlab.errors import CifarlabError


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CifarlabError(f"{path}: missing; run check-params first (dvc repro check-params)") from None
    except ValueError as exc:
        raise CifarlabError(f"{path}: not valid JSON ({exc}); run check-params again") from None


def read_run_settings(path: Path) -> tuple[RunConfig, str]:
    """A run's settings and the device setting (auto, cpu, cuda, cuda:N) from its settings file."""
    record = _read_json(path)
    try:
        return RunConfig.from_record(record["run"]), record["device"]
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise CifarlabError(f"{path}: not a run settings file ({exc!r} missing or wrong); run check-params "
                            "again") from None


def read_study_settings(path: Path) -> Study:
    """The whole study, every run in params order, from the study's settings file."""
    record = _read_json(path)
    try:
        return Study.from_record(record)
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        raise CifarlabError(f"{path}: not a study settings file ({exc!r} missing or wrong); run check-params "
                            "again") from None


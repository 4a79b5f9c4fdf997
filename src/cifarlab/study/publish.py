"""The settings files that check-params writes and every later stage reads instead of `params.yaml`.

`data/runs/<run>.json` holds one run's resolved settings, the device setting, and the SHA-256 of every
library file its training runs; the train and evaluate stages of that run depend on it alone, so DVC
reruns them exactly when the run's settings or its code changed (and `dvc.lock` records one file, not
two dozen deps and every params key). `data/study.json` holds every run's settings in params order, for
the stages that look at the whole study. `config.records` reads them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cifarlab.config.sections import Study
from cifarlab.io import write_json
from cifarlab.models import MODELS
from cifarlab.study.code_hashes import file_hashes, library_closure

TRAIN_SCRIPT = Path("stages/train.py")  # relative to the checkout the settings files are written for


def training_code(arch: str, root: Path) -> dict[str, str]:
    """Hashes of the library files that training a run of `arch` imports: the train stage's closure and
    its model family's module (which the registry imports by name)."""
    files = library_closure(scripts=[(root / TRAIN_SCRIPT).resolve()], modules=[MODELS[arch][0]])
    return file_hashes(files, root.resolve())


def run_settings(study: Study, name: str, root: Path) -> dict[str, Any]:
    run = study.runs[name]
    return {"run": run.to_record(), "device": study.device, "code": training_code(run.model.arch, root)}


def write_settings(study: Study, runs_dir: Path, study_file: Path, *, root: Path) -> None:
    """Write every run's settings file and the study's. A run's file is byte-identical as long as its
    settings and its training code are, so DVC retrains it only when one of them changed. `root` is the
    checkout whose stages/train.py the runs will run."""
    for name in study.runs:
        write_json(runs_dir / f"{name}.json", run_settings(study, name, root))
    write_json(study_file, study.to_record())

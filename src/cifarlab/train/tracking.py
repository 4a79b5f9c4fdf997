"""Per-epoch curves logged with DVCLive, one directory per run, readable by `dvc plots` and editors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dvclive import Live
from scmrepo.exceptions import SCMError

from cifarlab.errors import CifarlabError
from cifarlab.io import require_input, write_json

RUN_RECORD = "run.json"  # the settings a run trained with, beside its curves

# History column -> DVCLive metric name; the name's folders become the plot files' folders.
LIVE_METRICS = {
    "train_loss": "train/loss", "train_error": "train/error",
    "val_loss": "val/loss", "val_error": "val/error",
    "lr": "lr", "epoch_time_s": "epoch_time_s", "images_per_s": "images_per_s", "eval_time_s": "eval_time_s",
    "feature_q01": "features/q01", "feature_q20": "features/q20",
    "feature_q80": "features/q80", "feature_q99": "features/q99",
}


def live_plot_file(live_dir: str | Path, column: str) -> Path:
    """Where DVCLive writes the TSV of history column `column`."""
    return Path(live_dir) / "plots" / "metrics" / f"{LIVE_METRICS[column]}.tsv"


class LiveHistory:
    """Mirrors a run's history into a DVCLive directory, step = epoch.

    The directory is rebuilt from the history at start, so a resumed run's curves have neither gaps nor
    duplicate epochs, whatever the killed process had written.
    """

    def __init__(self, directory: str | Path, history: list[dict[str, float]]) -> None:
        # dvcyaml=False / save_dvc_exp=False: the pipeline's dvc.yaml is ours, never DVCLive's.
        try:
            self.live = Live(dir=str(directory), dvcyaml=False, save_dvc_exp=False, report=None)
        except SCMError as exc:  # DVCLive reads the git revision, which a repository without commits lacks
            raise CifarlabError(f"{directory}: DVCLive cannot log in this git repository ({exc}); commit once "
                                "(git add . && git commit) and run the stage again") from None
        self.logged = 0
        self.extend(history)

    def extend(self, history: list[dict[str, float]]) -> None:
        """Log every row of `history` not logged yet."""
        for row in history[self.logged:]:
            self.live.step = int(row["epoch"])
            for column, name in LIVE_METRICS.items():
                self.live.log_metric(name, row[column])
            self.live.next_step()
        self.logged = len(history)

    def record_run(self, record: dict[str, Any]) -> None:
        """What the run was trained with, as `run.json` in its directory (JSON, not DVCLive's YAML params,
        whose 1e-05 a YAML 1.1 reader takes for a string)."""
        write_json(Path(self.live.dir) / RUN_RECORD, record)

    def close(self, summary: dict[str, float | str]) -> None:
        """Finish the log, adding run-level facts that vary between identical runs (time, hardware)."""
        self.live.summary.update(summary)
        self.live.end()


def read_run_record(live_dir: str | Path) -> dict[str, Any]:
    """What `LiveHistory.record_run` recorded: the settings a run was trained with, not today's params."""
    path = require_input(Path(live_dir) / RUN_RECORD, f"the train stage for {Path(live_dir).name}")
    return json.loads(path.read_text())


def read_live_summary(live_dir: str | Path) -> dict:
    """The run-level facts `LiveHistory.close` recorded."""
    path = require_input(Path(live_dir) / "metrics.json", f"the train stage for {Path(live_dir).name}")
    return json.loads(path.read_text())

"""cifarlab.train.tracking: a run's history mirrored into DVCLive, and where DVCLive cannot log."""

from __future__ import annotations

import os
import subprocess

import pytest

from cifarlab.errors import CifarlabError
from cifarlab.train.tracking import LiveHistory, read_live_summary


def test_the_history_is_logged_once_per_epoch_and_closed_with_a_summary(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # outside any git repository: DVCLive logs without one
    row = {"epoch": 1, "train_loss": 2.0, "train_error": 0.8, "val_loss": 2.1, "val_error": 0.85, "lr": 0.1,
           "epoch_time_s": 1.0, "images_per_s": 100.0, "eval_time_s": 0.1,
           "feature_q01": -1.0, "feature_q20": -0.2, "feature_q80": 0.2, "feature_q99": 1.0}
    live = LiveHistory(tmp_path / "live", [row])
    live.extend([row, {**row, "epoch": 2}])  # the first row is already logged: only epoch 2 is new
    live.close({"train_time_s": 2.0})
    summary = read_live_summary(tmp_path / "live")
    assert summary["step"] == 2 and summary["train_time_s"] == 2.0
    logged = (tmp_path / "live" / "plots" / "metrics" / "train" / "loss.tsv").read_text().splitlines()
    assert [line.split("\t")[0] for line in logged[1:]] == ["1", "2"]  # one row per epoch, none twice


def test_a_git_repository_without_commits_is_one_user_error_naming_the_folder(tmp_path, monkeypatch):
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["dvc", "init", "-q"], cwd=tmp_path, check=True,
                   env={**os.environ, "DVC_NO_ANALYTICS": "1"})
    monkeypatch.chdir(tmp_path)
    with pytest.raises(CifarlabError, match=r"^live: DVCLive cannot log in this git repository .*commit once"):
        LiveHistory("live", [])

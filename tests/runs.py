"""Tiny run configurations for training tests: the project's params with a short quick profile."""

from __future__ import annotations

from pathlib import Path

import yaml

from cifarlab.config import RunConfig, load_study

ROOT = Path(__file__).resolve().parents[1]
RUN = "bn-128"
EPOCHS = 4


def tiny_params(archive: Path, runs: dict | None = None) -> dict:
    """params.yaml with the quick profile set to a ResNet-8 for EPOCHS epochs on every image of `archive`,
    the lr decaying after epochs 2 and 3."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["profile"] = "quick"
    params["data"]["source"] = str(archive)
    params["train"]["milestones"] = [2, 3]  # a default, so that a run entry can still set its own
    params["profiles"]["quick"] = {"model": {"n": 1},
                                   "train": {"epochs": EPOCHS, "train_images": 0, "val_images": 0,
                                             "patience": EPOCHS, "eval_batch_size": 64}}
    params["runs"] = runs or {RUN: {"study": "norm", "norm": "bn", "batch_size": 16}}
    return params


def run_config(archive: Path, *, profile: dict | None = None, **overrides) -> RunConfig:
    """Run `x` of the tiny params: bn, batch size 8 (4 steps per epoch on `tiny_split`), with `overrides`
    of its entry and, if given, `profile` overrides of the quick profile's train keys (applied last)."""
    params = tiny_params(archive, {"x": {"study": "norm", "norm": "bn", "batch_size": 8, **overrides}})
    params["profiles"]["quick"]["train"].update(profile or {})
    return load_study(params).runs["x"]

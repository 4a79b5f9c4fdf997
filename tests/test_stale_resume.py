"""A resume state continues only the run that saved it: the train stage's work (`train_and_save`) starts afresh
when the state on disk was saved on another split, for another model or under other settings, and resumes
it otherwise. In-process, on a tiny split: a few seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from archives import make_cifar_archive

from cifarlab.data.archive import read_archive
from cifarlab.data.split import load_split, make_split, save_split
from cifarlab.errors import Interrupted
from cifarlab.train import loop
from cifarlab.train.stage import train_and_save

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def stopped(tmp_path_factory, tiny_run) -> dict[str, Path]:
    """Two splits of one archive (seeds 0 and 1), and the resume state of the tiny run stopped on split 0
    after its first epoch."""
    root = tmp_path_factory.mktemp("stale")
    arrays = read_archive(make_cifar_archive(root / "cifar.tar.gz", per_batch=8, test_size=10))
    for seed in (0, 1):
        save_split(make_split(arrays, 0.25, seed), root / f"split-{seed}", seed=seed, val_fraction=0.25)
    assert load_split(root / "split-0").content_sha256 != load_split(root / "split-1").content_sha256
    real_save = loop.save_resume_state

    def stop_before_epoch_2(path, fingerprint, state, *args):
        if state.epoch == 2:
            raise KeyboardInterrupt  # as Ctrl-C would, while the run trains on
        real_save(path, fingerprint, state, *args)

    loop.save_resume_state = stop_before_epoch_2
    try:
        with pytest.raises(Interrupted):
            train(tiny_run(), root / "split-0", root / "first")
    finally:
        loop.save_resume_state = real_save
    return {"split-0": root / "split-0", "split-1": root / "split-1", "resume": root / "first" / "resume.pt"}


def train(run, split: Path, work: Path):
    return train_and_save(run, split, CPU, model_path=work / "model.pt", live_dir=work / "live",
                          resume_path=work / "resume.pt")


def first_epoch_trained(run, split: Path, work: Path, resume: Path, monkeypatch) -> int:
    """The first epoch that `run` trains on `split` with `resume` as its resume state: 1 if it started
    afresh, 2 if it continued the state."""
    work.mkdir()
    shutil.copy(resume, work / "resume.pt")
    saved = []
    real_save = loop.save_resume_state

    def record(path, fingerprint, state, *args):
        saved.append(state.epoch)
        real_save(path, fingerprint, state, *args)

    monkeypatch.setattr(loop, "save_resume_state", record)
    train(run, split, work)
    return saved[0]


def test_the_run_that_saved_a_state_resumes_it(stopped, tiny_run, tmp_path, monkeypatch, capsys):
    # The control: without it, a state that never resumed anything would pass the tests below.
    assert first_epoch_trained(tiny_run(), stopped["split-0"], tmp_path / "w", stopped["resume"], monkeypatch) == 2
    assert "resuming after epoch 1" in capsys.readouterr().out


@pytest.mark.parametrize(("change", "split"), [
    ({}, "split-1"),
    ({"norm": "gn"}, "split-0"),
    ({"arch": "simplenn", "norm": "nn"}, "split-0"),
    ({"lr": 0.05}, "split-0"),
    ({"batch_size": 4}, "split-0"),
], ids=["another split", "another norm", "another model", "another lr", "another batch size"])
def test_a_state_from_another_split_model_or_settings_starts_the_run_afresh(stopped, tiny_run, tmp_path,
                                                                            monkeypatch, capsys, change, split):
    run = tiny_run(**change)
    assert first_epoch_trained(run, stopped[split], tmp_path / "w", stopped["resume"], monkeypatch) == 1
    assert "from a different configuration or data; starting the run afresh" in capsys.readouterr().out

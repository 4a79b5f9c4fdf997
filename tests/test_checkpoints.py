"""cifarlab.models.checkpoints: model files that describe themselves, hash alike for equal weights, and are
refused in one line when they are not what the train stage wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from cifarlab.errors import CifarlabError
from cifarlab.models import build_model
from cifarlab.models.checkpoints import load_model, save_model
from cifarlab.train.resume import TrainState, save_resume_state

CPU = torch.device("cpu")


def test_equal_weights_give_byte_identical_model_files_that_load_back(tiny_run, tmp_path):
    """DVC hashes the model file: equal weights saved twice must hash alike, or evaluate reruns for nothing."""
    run = tiny_run()
    torch.manual_seed(0)
    model = build_model(run.model)
    paths = [tmp_path / "first" / "x.pt", tmp_path / "second" / "x.pt"]
    for path in paths:
        save_model(path, model, run, summary={"best_epoch": 1}, data={"train_images": 30})
    assert paths[0].read_bytes() == paths[1].read_bytes()
    loaded, saved = load_model(paths[1], CPU)
    assert saved["summary"] == {"best_epoch": 1}
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    assert not loaded.training  # ready to evaluate


def _truncated(path: Path, tiny_run) -> None:
    torch.manual_seed(0)
    save_model(path, build_model(tiny_run().model), tiny_run(), summary={}, data={})
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _weights_of_another_model(path: Path, tiny_run) -> None:
    run = tiny_run()
    save_model(path, build_model(tiny_run(arch="simplenn", norm="nn").model), run, summary={}, data={})


def _resume_state(path: Path, tiny_run) -> None:
    model = build_model(tiny_run().model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    save_resume_state(path, "fingerprint", TrainState(epoch=1), model, optimizer, scheduler, CPU)


def _npy(path: Path, tiny_run) -> None:
    with open(path, "wb") as out:  # np.save would add .npy to the name
        np.save(out, np.zeros(3))


NOT_A_MODEL = "not a cifarlab model file; expected a model file that the train stage wrote (models/<run>.pt)"


@pytest.mark.parametrize(("make", "expected"), [
    (lambda path, tiny_run: None, "no model file; run the train stage first"),
    (lambda path, tiny_run: path.write_bytes(b""), f"an empty file, {NOT_A_MODEL}"),
    (lambda path, tiny_run: path.write_text("a model, honestly\n"), f"a text file, {NOT_A_MODEL}"),
    (lambda path, tiny_run: path.mkdir(), f"a folder, {NOT_A_MODEL}"),
    (_resume_state, f"a resume state of the train stage (models/resume/<run>.pt), {NOT_A_MODEL}"),
    (_npy, f"a NumPy .npy array, {NOT_A_MODEL}"),
    # PyTorch refuses it with a page of advice in bold: the line says why instead
    (lambda path, tiny_run: torch.save({"state": np.random.get_state()}, path),
     "not a cifarlab model file: it holds objects other than tensors, left unread since unpickling them could "
     "run code; expected a model file"),
    (lambda path, tiny_run: path.write_bytes(b"PK\x03\x04 a zip that is no model"), "not a cifarlab model file ("),
    (lambda path, tiny_run: torch.save(torch.zeros(3), path), "not a cifarlab model file"),
    (lambda path, tiny_run: torch.save({"model_state": {}}, path), "not a cifarlab model file"),
    (_truncated, "not a cifarlab model file"),
    (_weights_of_another_model, "not a cifarlab model file"),
], ids=["missing", "empty", "text", "folder", "resume state", "npy", "foreign pickle", "garbage", "a tensor",
        "no run record", "truncated", "weights of another model"])
def test_a_file_that_is_not_a_model_file_is_refused_in_one_line_naming_it(tiny_run, tmp_path, make, expected):
    path = tmp_path / "model.pt"
    make(path, tiny_run)
    with pytest.raises(CifarlabError) as info:
        load_model(path, CPU)
    message = str(info.value)
    assert message.startswith(f"{path}: {expected}") and "\n" not in message and "\x1b" not in message

"""python -m cifarlab.predict: a model file's classes for unlabeled images equal what the evaluate stage predicts
for the same images, from a .npy (NHWC or NCHW) or an official batch file; bad input is one line and exit 2,
and the output file is written whole or not at all."""

from __future__ import annotations

import io
import pickle
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from archives import make_cifar_archive
from checkout import ROOT, run

from cifarlab.analysis.evaluation import evaluate_run
from cifarlab.cli import run_stage
from cifarlab.data.archive import read_archive
from cifarlab.data.loader import Normalizer
from cifarlab.data.split import load_split, make_split, save_split
from cifarlab.models import build_model
from cifarlab.models.checkpoints import save_model
from cifarlab.predict import main, read_images
from cifarlab.train.resume import TrainState, save_resume_state

CPU = torch.device("cpu")
PREVIOUS = "index,class,name\n0,0,an earlier, complete file\n"


def brightness_decides(objects: dict) -> None:
    """Train pixels of 0-127, so the split's statistics lie far from any default (a mean near 0.25, not 0.5); 20
    test images that are one pattern at 20 brightness levels, labelled by level. A model that tells them apart
    goes by brightness, so images standardised with other statistics than its file's get other classes."""
    for name, batch in objects.items():
        if name.startswith("data_batch_"):
            batch["data"] //= 2
    pattern = np.random.default_rng(1).integers(0, 96, size=3072)
    objects["test_batch"]["data"] = np.stack([pattern + 8 * level for level in range(20)]).astype(np.uint8)
    objects["test_batch"]["labels"] = [level % 10 for level in range(20)]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, tiny_run) -> dict:
    """A split of a Python 2 archive (as the official one is), a small model file fitted to its 20 test images
    (`brightness_decides`), and the evaluate stage's test predictions for that model."""
    root = tmp_path_factory.mktemp("predict")
    archive = make_cifar_archive(root / "cifar.tar.gz", per_batch=8, test_size=20, python2=True,
                                 mutate=brightness_decides)
    save_split(make_split(read_archive(archive), 0.25, 0), root / "split", seed=0, val_fraction=0.25)
    split = load_split(root / "split")
    run_config = tiny_run(arch="simplenn", norm="nn")
    torch.manual_seed(0)
    model = build_model(run_config.model)
    x = Normalizer(split.mean, split.std, CPU)(torch.from_numpy(split.x_test))
    y = torch.from_numpy(split.y_test)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(400):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    save_model(root / "model.pt", model, run_config, {"status": "completed"},
               {"mean": list(split.mean), "std": list(split.std), "content_sha256": split.content_sha256})
    evaluate_run(root / "model.pt", root / "split", CPU, metrics_path=root / "metrics.json",
                 predictions_path=root / "evaluate.csv", confusion_path=root / "confusion.csv",
                 weights_path=root / "weights.csv")
    with tarfile.open(archive) as tar:
        batch = tar.extractfile("cifar-10-batches-py/test_batch").read()
    return {"root": root, "split": split, "model": root / "model.pt", "evaluate": root / "evaluate.csv",
            "batch": batch}


def predict_in_process(monkeypatch, capsys, *args: object) -> subprocess.CompletedProcess:
    """`python -m cifarlab.predict args`, run in this process through the same `run_stage` as its `__main__`."""
    argv = [str(a) for a in args]
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["predict", *argv])
    sigterm = signal.getsignal(signal.SIGTERM)  # run_stage turns SIGTERM into an interrupt
    try:
        run_stage(main)
        status = 0
    except SystemExit as exit_:
        status = exit_.code
    finally:
        signal.signal(signal.SIGTERM, sigterm)
    out, err = capsys.readouterr()
    return subprocess.CompletedProcess(argv, status, out, err)


def assert_predictions_equal_evaluate(out: Path, trained: dict) -> None:
    predicted = pd.read_csv(out)
    evaluated = pd.read_csv(trained["evaluate"]).query("split == 'test'")
    assert list(predicted.columns) == ["index", "class", "name"]
    assert predicted["index"].tolist() == evaluated["index"].tolist() == list(range(20))
    assert predicted["name"].tolist() == evaluated["predicted"].tolist()
    names = list(trained["split"].class_names)
    assert [names[c] for c in predicted["class"]] == predicted["name"].tolist()
    # The comparison has power only if the model's classes differ between images.
    assert predicted["class"].nunique() >= 5


def assert_one_line_error(result: subprocess.CompletedProcess, name: object) -> None:
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert str(name) in lines[0]


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_predictions_for_a_npy_of_the_test_images_equal_the_evaluate_stages(trained, tmp_path, monkeypatch,
                                                                             capsys, layout):
    x_test = trained["split"].x_test
    images = x_test.transpose(0, 2, 3, 1) if layout == "NHWC" else x_test
    np.save(tmp_path / "holdout.npy", np.ascontiguousarray(images))
    out = tmp_path / "out" / "predictions.csv"
    result = predict_in_process(monkeypatch, capsys, trained["model"], tmp_path / "holdout.npy", "--out", out,
                                "--device", "cpu", "--batch-size", "7")  # batches of 7, 7, 6
    assert result.returncode == 0, result.stderr
    assert str(out) in result.stdout
    assert_predictions_equal_evaluate(out, trained)


@pytest.mark.parametrize("layout", ["NHWC", "NCHW"])
def test_a_npy_is_read_as_the_same_nchw_images_whichever_its_layout(trained, tmp_path, layout):
    x_test = trained["split"].x_test
    np.save(tmp_path / "x.npy", x_test.transpose(0, 2, 3, 1) if layout == "NHWC" else x_test)
    images = read_images(tmp_path / "x.npy")
    assert images.shape == (20, 3, 32, 32) and images.dtype == np.uint8
    assert np.array_equal(images, x_test)


def test_an_official_batch_file_gives_the_same_predictions_through_the_module_entry_point(trained, tmp_path):
    (tmp_path / "test_batch").write_bytes(trained["batch"])  # pickled as the official archive's, by Python 2
    out = tmp_path / "predictions.csv"
    result = run([sys.executable, "-m", "cifarlab.predict", str(trained["model"]), str(tmp_path / "test_batch"),
                  "--out", str(out), "--device", "cpu"], cwd=ROOT)
    assert "20 images" in result.stdout
    assert_predictions_equal_evaluate(out, trained)


def test_a_batch_pickled_by_python_3_with_bytes_keys_and_no_labels_is_read(trained, tmp_path):
    x_test = trained["split"].x_test
    (tmp_path / "batch").write_bytes(pickle.dumps({b"data": x_test.reshape(20, -1)}, protocol=4))
    assert np.array_equal(read_images(tmp_path / "batch"), x_test)


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return Path.touch, (self.marker,)


def _write(data: bytes):
    return lambda path: path.write_bytes(data)


def _npy(array: np.ndarray):
    def write(path: Path) -> None:
        buffer = io.BytesIO()
        np.save(buffer, array, allow_pickle=True)
        path.write_bytes(buffer.getvalue())
    return write


def _hostile(path: Path) -> None:
    path.write_bytes(pickle.dumps({"data": _RunsCodeWhenUnpickled(path.with_name("ran"))}))


IMAGES = np.zeros((2, 32, 32, 3), dtype=np.uint8)


@pytest.mark.parametrize(("make", "expected"), [
    (None, "no such file"),
    (lambda path: path.mkdir(), "a folder; expected a .npy array"),
    (_write(b"index,class\n0,1\n"), "a text file; expected a .npy array"),
    (_write(b""), "an empty file; expected a .npy array"),
    (_write(b"\x80\x04 not a pickle"), "neither a .npy array nor a CIFAR-10 python batch"),
    (_write(b"\x93NUMPY\x01\x00 truncated"), "not a readable .npy array"),
    (_npy(np.array([{"x": 1}], dtype=object)), "not a readable .npy array"),
    (_hostile, "forbidden global"),
    (_write(pickle.dumps({"labels": [0]})), "expected a CIFAR-10 python batch"),
    (_write(pickle.dumps({"data": np.zeros((2, 1024), dtype=np.uint8)})), "expected a CIFAR-10 python batch"),
    (_write(pickle.dumps({"data": np.zeros((2, 3072), dtype=np.int64)})), "expected uint8 pixels"),
    (_npy(IMAGES.astype(np.float32)), "expected uint8 pixels"),
    (_npy(IMAGES.transpose(0, 1, 3, 2)), "got shape (2, 32, 3, 32)"),
    (_npy(IMAGES[0]), "got shape (32, 32, 3)"),
    (_npy(IMAGES.reshape(2, -1)), "got shape (2, 3072)"),
    (_npy(IMAGES[:0]), "holds no images (N = 0)"),
    (_write(pickle.dumps({"data": np.zeros((0, 3072), dtype=np.uint8)})), "holds no images (N = 0)"),
], ids=["missing", "folder", "text", "empty file", "binary", "truncated npy", "object npy", "code in a pickle",
        "batch without data", "batch rows of 1024", "batch of int64", "float32", "N x 32 x 3 x 32", "one image",
        "flat rows", "empty npy", "empty batch"])
def test_bad_images_are_one_line_naming_the_file_and_leave_the_output_untouched(trained, tmp_path, monkeypatch,
                                                                                capsys, make, expected):
    images, out = tmp_path / "holdout.npy", tmp_path / "predictions.csv"
    if make is not None:
        make(images)
    out.write_text(PREVIOUS)
    result = predict_in_process(monkeypatch, capsys, trained["model"], images, "--out", out, "--device", "cpu")
    assert_one_line_error(result, images)
    assert expected in result.stderr
    assert out.read_text() == PREVIOUS
    assert not (tmp_path / "ran").exists()  # the hostile pickle ran nothing
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in (images, out) if p.exists())


def _no_statistics(path: Path, tiny_run) -> None:
    run_config = tiny_run(arch="simplenn", norm="nn")
    save_model(path, build_model(run_config.model), run_config, summary={}, data={"train_images": 30})


def _twenty_classes(path: Path, tiny_run) -> None:
    run_config = tiny_run(arch="simplenn", norm="nn", num_classes=20)
    save_model(path, build_model(run_config.model), run_config, summary={},
               data={"mean": [0.5] * 3, "std": [0.25] * 3})


def _resume_state(path: Path, tiny_run) -> None:
    model = build_model(tiny_run().model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    save_resume_state(path, "fingerprint", TrainState(epoch=1), model, optimizer, scheduler, CPU)


@pytest.mark.parametrize(("make", "expected"), [
    (lambda path, tiny_run: None, "no model file"),
    (lambda path, tiny_run: path.write_text("a model, honestly\n"), "a text file, not a cifarlab model file; expected "
                                                                    "a model file that the train stage wrote"),
    (lambda path, tiny_run: path.mkdir(), "a folder, not a cifarlab model file; expected a model file"),
    (_resume_state, "a resume state of the train stage (models/resume/<run>.pt), not a cifarlab model file; "
                    "expected a model file that the train stage wrote (models/<run>.pt)"),
    (_no_statistics, "not a cifarlab model file (expected the train split's mean and std"),
    (_twenty_classes, "a model of 20 classes"),
], ids=["missing", "text", "folder", "resume state", "no statistics", "20 classes"])
def test_a_bad_model_file_is_one_line_naming_it_and_leaves_the_output_untouched(trained, tiny_run, tmp_path,
                                                                                 monkeypatch, capsys, make,
                                                                                 expected):
    model, out = tmp_path / "model.pt", tmp_path / "predictions.csv"
    make(model, tiny_run)
    np.save(tmp_path / "holdout.npy", trained["split"].x_test)
    out.write_text(PREVIOUS)
    result = predict_in_process(monkeypatch, capsys, model, tmp_path / "holdout.npy", "--out", out,
                                "--device", "cpu")
    assert_one_line_error(result, model)
    assert expected in result.stderr
    assert out.read_text() == PREVIOUS


@pytest.mark.parametrize(("make", "expected"), [
    (lambda path, trained, tiny_run: path.write_bytes(trained["model"].read_bytes()),
     "a cifarlab model file; expected a .npy array"),
    (lambda path, trained, tiny_run: _resume_state(path, tiny_run),
     "a resume state of the train stage (models/resume/<run>.pt); expected a .npy array"),
], ids=["a model", "a resume state"])
def test_a_model_or_resume_file_given_as_the_images_is_named_as_what_it_is(trained, tiny_run, tmp_path, monkeypatch,
                                                                          capsys, make, expected):
    images = tmp_path / "holdout.npy"
    make(images, trained, tiny_run)
    result = predict_in_process(monkeypatch, capsys, trained["model"], images, "--out", tmp_path / "p.csv")
    assert_one_line_error(result, images)
    assert f"{images}: {expected}" in result.stderr


def test_bad_images_are_refused_before_the_model_is_read(trained, tmp_path, monkeypatch, capsys):
    np.save(tmp_path / "holdout.npy", np.zeros((0, 3, 32, 32), dtype=np.uint8))
    result = predict_in_process(monkeypatch, capsys, tmp_path / "absent.pt", tmp_path / "holdout.npy",
                                "--out", tmp_path / "predictions.csv")
    assert_one_line_error(result, tmp_path / "holdout.npy")
    assert "absent.pt" not in result.stderr


def test_an_out_path_that_is_the_images_file_is_refused_and_the_images_are_kept(trained, tmp_path, monkeypatch,
                                                                                capsys):
    images = tmp_path / "holdout.npy"
    np.save(images, trained["split"].x_test)
    before = images.read_bytes()
    result = predict_in_process(monkeypatch, capsys, trained["model"], images, "--out", images)
    assert_one_line_error(result, images)
    assert images.read_bytes() == before


def test_an_unknown_device_is_one_line_through_the_module_entry_point(trained, tmp_path):
    np.save(tmp_path / "holdout.npy", trained["split"].x_test)
    result = run([sys.executable, "-m", "cifarlab.predict", str(trained["model"]), str(tmp_path / "holdout.npy"),
                  "--out", str(tmp_path / "p.csv"), "--device", "tpu"], cwd=ROOT, check=False)
    assert_one_line_error(result, "device")
    assert not (tmp_path / "p.csv").exists()


def test_a_failure_while_writing_leaves_the_previous_output_whole_and_no_temporary_file(trained, tmp_path,
                                                                                        monkeypatch, capsys):
    np.save(tmp_path / "holdout.npy", trained["split"].x_test)
    out = tmp_path / "predictions.csv"
    out.write_text(PREVIOUS)

    def half_then_disk_full(self, path, **kwargs):
        Path(path).write_text("index,class,name\n0,")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_disk_full)
    with pytest.raises(OSError):
        predict_in_process(monkeypatch, capsys, trained["model"], tmp_path / "holdout.npy", "--out", out,
                           "--device", "cpu")
    assert out.read_text() == PREVIOUS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["holdout.npy", "predictions.csv"]

"""`python -m cifarlab.predict MODEL IMAGES --out predictions.csv`: a trained model's classes for images without
labels (a holdout set graded elsewhere).

MODEL is any model file the train stage wrote; the images are standardised with the statistics of the train
split that model was trained on, which its file carries. IMAGES is a NumPy `.npy` array of uint8 images, N x 32 x 32 x 3
(NHWC, as most CIFAR tooling gives them) or N x 3 x 32 x 32 (NCHW), or a file in the official CIFAR-10 python
batch layout (a pickled dict whose `data` holds N rows of 3072 uint8 pixels; its labels, if any, are ignored).
The layout of a `.npy` follows from where its axis of 3 channels is: the image side is 32, never 3, so the two
layouts cannot be confused, and any other shape is refused.

The CSV has one row per image: `index` (its position in IMAGES, from 0), `class` (the predicted class index)
and `name` (that class's CIFAR-10 name).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from cifarlab.cli import run_stage
from cifarlab.config.sections import PerformanceConfig
from cifarlab.data import NUM_CLASSES

# The archive's own unpickler, which rebuilds NumPy arrays and nothing else: a batch file from a stranger must
# not run code when it is read.
from cifarlab.data.archive import ROW_LENGTH, ArrayOnlyUnpickler
from cifarlab.data.loader import IMAGE_SIZE, ResidentDataset
from cifarlab.errors import CifarlabError, one_line
from cifarlab.io import atomic_path
from cifarlab.models.checkpoints import NPY_MAGIC, describe_file, load_model
from cifarlab.train.device import resolve_device
from cifarlab.train.inference import TrainedScorer, eval_batch_size_for

# `label_names` of the official archive's batches.meta, in label order. A model file does not record the names
# of its classes (evaluation takes them from the split), so a prediction is named after the official ones.
CIFAR10_CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

NCHW = (3, IMAGE_SIZE, IMAGE_SIZE)
NHWC = (IMAGE_SIZE, IMAGE_SIZE, 3)
EXPECTED = (f"a .npy array of uint8 images, N x {IMAGE_SIZE} x {IMAGE_SIZE} x 3 or N x 3 x {IMAGE_SIZE} x "
            f"{IMAGE_SIZE}, or a CIFAR-10 python batch")


def read_images(path: Path) -> np.ndarray:
    """The images of a `.npy` array or an official-layout batch file as uint8 NCHW (N, 3, 32, 32), N > 0.

    The kind of file is told by its first bytes, not its name; anything else is a user error naming the file.
    """
    path = Path(path)
    if path.is_dir():
        raise CifarlabError(f"{path}: a folder; expected {EXPECTED}")
    if not path.is_file():
        raise CifarlabError(f"{path}: no such file; expected {EXPECTED}")
    with open(path, "rb") as stream:
        is_npy = stream.read(len(NPY_MAGIC)) == NPY_MAGIC
    images = _read_npy(path) if is_npy else _batch_rows(path, _read_pickle(path))
    if images.dtype != np.uint8:
        raise CifarlabError(f"{path}: expected uint8 pixels (0-255), got {images.dtype}")
    if images.ndim != 4 or images.shape[1:] not in (NCHW, NHWC):
        raise CifarlabError(f"{path}: expected images N x {IMAGE_SIZE} x {IMAGE_SIZE} x 3 (NHWC) or "
                            f"N x 3 x {IMAGE_SIZE} x {IMAGE_SIZE} (NCHW), got shape {images.shape}")
    if len(images) == 0:
        raise CifarlabError(f"{path}: holds no images (N = 0)")
    if images.shape[1:] == NHWC:
        images = images.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(images)


def _read_npy(path: Path) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001  (a damaged header, an object array, a short file: all a bad file)
        raise CifarlabError(f"{path}: not a readable .npy array ({one_line(err)})") from None


def _read_pickle(path: Path) -> Any:
    try:
        with open(path, "rb") as stream:
            # latin1: the official batches were pickled by Python 2, whose byte strings decode 1:1
            return ArrayOnlyUnpickler(stream, encoding="latin1").load()
    except Exception as err:  # noqa: BLE001  (whatever a foreign or hostile file raises means the same)
        kind = describe_file(path)  # the unpickler's complaint about a text file or a model means nothing to a user
        if kind:
            raise CifarlabError(f"{path}: {kind}; expected {EXPECTED}") from None
        raise CifarlabError(f"{path}: neither a .npy array nor a CIFAR-10 python batch ({one_line(err)}); "
                            f"expected {EXPECTED}") from None


def _batch_rows(path: Path, batch: Any) -> np.ndarray:
    """A batch's pixel rows as NCHW images; the rows' dtype is checked by the caller, as for a `.npy`."""
    # Python 2's pickles give the key as a str; a batch read with encoding="bytes" and pickled again, as bytes.
    data = batch.get("data", batch.get(b"data")) if isinstance(batch, dict) else None
    if not (isinstance(data, np.ndarray) and data.ndim == 2 and data.shape[1] == ROW_LENGTH):
        got = f"shape {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CifarlabError(f"{path}: expected a CIFAR-10 python batch, a dict whose 'data' holds N rows of "
                            f"{ROW_LENGTH} pixels, got {got}")
    # a row is [R plane | G plane | B plane], each 32x32 row-major, so a plain reshape is NCHW
    return data.reshape(len(data), *NCHW)


def _train_statistics(model_path: Path, saved: dict[str, Any]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The per-channel mean and std (in [0, 1] pixel units) of the split the model was trained on."""
    data = saved.get("data")
    try:
        mean, std = tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"])
    except (KeyError, TypeError, ValueError):
        mean = std = ()
    if len(mean) != 3 or len(std) != 3:
        raise CifarlabError(f"{model_path}: not a cifarlab model file (expected the train split's mean and std "
                            "of 3 channels under 'data')")
    return mean, std


def predict_images(model_path: Path, images_path: Path, out: Path, device: torch.device,
                   batch_size: int | None = None) -> int:
    """Write the predicted class of every image of `images_path` to the CSV `out`, atomically; returns how many.

    `batch_size` None takes the run's eval batch size. The images are checked before the model is loaded.
    """
    images = read_images(images_path)
    model, saved = load_model(model_path, device)
    num_classes = saved["run"]["model"]["num_classes"]
    if num_classes != NUM_CLASSES:
        raise CifarlabError(f"{model_path}: a model of {num_classes} classes; predictions are named after "
                            f"the {NUM_CLASSES} classes of CIFAR-10")
    score = TrainedScorer(model, *_train_statistics(model_path, saved),
                          PerformanceConfig(**saved["run"]["performance"]), device)
    dataset = ResidentDataset(images, np.zeros(len(images), dtype=np.int64), device)  # labels go unused
    size = eval_batch_size_for(batch_size or saved["run"]["train"]["eval_batch_size"], device)
    predicted = score(dataset, size).logits.argmax(1).cpu().numpy()
    names = np.asarray(CIFAR10_CLASS_NAMES)
    with atomic_path(out) as tmp:
        pd.DataFrame({"index": np.arange(len(predicted)), "class": predicted,
                      "name": names[predicted]}).to_csv(tmp, index=False)
    return len(predicted)


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m cifarlab.predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", type=Path, help="a model file the train stage wrote (models/<run>.pt)")
    parser.add_argument("images", type=Path, help="a .npy array of uint8 images (NHWC or NCHW) or a CIFAR-10 "
                                                  "python batch")
    parser.add_argument("--out", type=Path, required=True, help="the CSV to write: index, class, name")
    parser.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda or cuda:N")
    parser.add_argument("--batch-size", type=_positive_int, default=None,
                        help="images per forward pass (default: the run's eval batch size); results do not "
                             "depend on it")
    args = parser.parse_args(argv)
    for given, what in ((args.images, "images"), (args.model, "model")):
        if args.out.resolve() == given.resolve():
            raise CifarlabError(f"--out {args.out}: is the {what} file; choose another path for the predictions")
    device = resolve_device(args.device)
    count = predict_images(args.model, args.images, args.out, device, args.batch_size)
    print(f"predict: {count} images of {args.images} classified by {args.model} on {device.type}; "
          f"wrote {args.out}")


if __name__ == "__main__":
    run_stage(main)

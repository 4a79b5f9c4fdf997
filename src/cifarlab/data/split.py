"""The seeded train/validation split of the official train set, with its normalisation statistics."""

from __future__ import annotations

import functools
import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from cifarlab.data import NUM_CLASSES
from cifarlab.errors import CifarlabError, one_line

if TYPE_CHECKING:
    from cifarlab.data.archive import CifarArrays
from cifarlab.io import atomic_path, write_json

SPLIT_ARRAYS = "arrays.npz"

SPLIT_META = "meta.json"

# the order in which arrays enter content_sha256; changing it changes every recorded hash
SPLIT_ARRAY_NAMES = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


@dataclass(frozen=True, eq=False)
class Split:
    """Train, validation and test arrays; mean and std per channel of the train part, in [0, 1]."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]

    @functools.cached_property
    def content_sha256(self) -> str:
        """SHA-256 over each array's name, dtype, shape and raw bytes, in SPLIT_ARRAY_NAMES order; computed
        once (hashing the full split takes a few tenths of a second)."""
        digest = hashlib.sha256()
        for name in SPLIT_ARRAY_NAMES:
            array = np.ascontiguousarray(getattr(self, name))
            digest.update(f"{name} {array.dtype.str} {array.shape}\n".encode())
            digest.update(memoryview(array).cast("B"))
        return digest.hexdigest()


def split_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random split of range(n) into (train, val) indices, each sorted ascending.

    Sorted, because a split is a set: the same seed names the same images whatever the order.
    The validation part has round(n * val_fraction) indices.
    """
    n_val = round(n * val_fraction)
    if not 0 < val_fraction < 1 or not 0 < n_val < n:
        raise CifarlabError(
            f"data.val_fraction: expected a fraction in (0, 1) leaving both parts of {n} "
            f"images non-empty, got {val_fraction}"
        )
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def channel_stats(
    x: np.ndarray, chunk: int = 2048
) -> tuple[tuple[float, float, float], tuple[float, float, float]]:
    """Per-channel mean and population std of uint8 images (N, 3, H, W), in [0, 1] pixel units."""
    if x.dtype != np.uint8 or x.ndim != 4 or x.shape[1] != 3 or len(x) == 0:
        raise ValueError(f"expected non-empty uint8 images (N, 3, H, W), got {x.dtype} {x.shape}")
    # integer sums are exact (40,000 images stay far below int64's range), and chunks keep the
    # int64 copy small; the only rounding is the final division
    total, total_sq = np.zeros(3, dtype=np.int64), np.zeros(3, dtype=np.int64)
    for start in range(0, len(x), chunk):
        part = x[start:start + chunk].astype(np.int64)
        total += part.sum(axis=(0, 2, 3))
        total_sq += (part * part).sum(axis=(0, 2, 3))
    count = x.size // 3
    means, stds = [], []
    for s, sq in zip(total.tolist(), total_sq.tolist(), strict=True):  # Python ints: exact
        means.append(s / count / 255)
        stds.append(math.sqrt((count * sq - s * s) / count**2) / 255)
    return tuple(means), tuple(stds)


def make_split(arrays: CifarArrays, val_fraction: float, seed: int) -> Split:
    """Split the official train set into train and validation; the test set passes through.

    The normalisation statistics come from the train part only.
    """
    train_idx, val_idx = split_indices(len(arrays.y_train), val_fraction, seed)
    x_train = arrays.x_train[train_idx]
    mean, std = channel_stats(x_train)
    return Split(
        x_train=x_train,
        y_train=arrays.y_train[train_idx],
        x_val=arrays.x_train[val_idx],
        y_val=arrays.y_train[val_idx],
        x_test=arrays.x_test,
        y_test=arrays.y_test,
        class_names=arrays.class_names,
        mean=mean,
        std=std,
    )


def save_split(split: Split, directory: Path, *, seed: int, val_fraction: float) -> dict:
    """Write `arrays.npz` (uncompressed: loads fast) and `meta.json` atomically; return the meta."""
    directory = Path(directory)
    with atomic_path(directory / SPLIT_ARRAYS) as tmp, open(tmp, "wb") as f:
        # a file object, because np.savez appends ".npz" to a path that lacks it
        np.savez(f, **{name: getattr(split, name) for name in SPLIT_ARRAY_NAMES})
    meta = {
        "class_names": list(split.class_names),
        "mean": list(split.mean),
        "std": list(split.std),
        "sizes": {"train": len(split.y_train), "val": len(split.y_val), "test": len(split.y_test)},
        "seed": seed,
        "val_fraction": val_fraction,
        "content_sha256": split.content_sha256,
    }
    write_json(directory / SPLIT_META, meta)
    return meta


def load_split(directory: Path) -> Split:
    """Read a split written by `save_split`, checking that arrays and meta belong together."""
    directory = Path(directory)
    arrays_path, meta_path = directory / SPLIT_ARRAYS, directory / SPLIT_META
    rerun = "run the `split` stage"
    for file in (arrays_path, meta_path):
        if not file.is_file():
            raise CifarlabError(f"{file}: missing; {rerun}")
    try:
        meta = json.loads(meta_path.read_text())
        class_names = tuple(str(n) for n in meta["class_names"])
        mean = tuple(float(v) for v in meta["mean"])
        std = tuple(float(v) for v in meta["std"])
        recorded = str(meta["content_sha256"])
        if len(class_names) != NUM_CLASSES or len(mean) != 3 or len(std) != 3:
            raise ValueError("wrong number of class names or channels")
    except (ValueError, KeyError, TypeError) as err:  # JSONDecodeError is a ValueError
        raise CifarlabError(
            f"{meta_path}: not a valid split meta ({one_line(err)}); {rerun}"
        ) from None
    try:
        with np.load(arrays_path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in SPLIT_ARRAY_NAMES}
    except Exception as err:  # BadZipFile, KeyError, ValueError, OSError: all a damaged file
        raise CifarlabError(
            f"{arrays_path}: not a readable split ({one_line(err)}); {rerun}"
        ) from None
    split = Split(**arrays, class_names=class_names, mean=mean, std=std)
    if split.content_sha256 != recorded:
        raise CifarlabError(
            f"{arrays_path}: contents do not match content_sha256 in {meta_path}; {rerun}"
        )
    return split

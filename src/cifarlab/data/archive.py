"""Read the official CIFAR-10 archive (Krizhevsky, 2009) safely.

The archive is read straight from the tarfile object (nothing is extracted to disk), every member is
checked, and its pickles go through an unpickler that only knows how to rebuild a NumPy array.
"""

from __future__ import annotations

import contextlib
import pickle
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

try:  # NumPy >= 2 moved the module; pickles name either, so both map to the one function
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct

from cifarlab.data import NUM_CLASSES
from cifarlab.errors import CifarlabError, one_line

ARCHIVE_DIR = "cifar-10-batches-py"

TRAIN_MEMBERS = tuple(f"data_batch_{i}" for i in range(1, 6))

TEST_MEMBER = "test_batch"

META_MEMBER = "batches.meta"


ROW_LENGTH = 3 * 32 * 32  # one image: the R plane, then G, then B, each 32x32 row-major


@dataclass(frozen=True, eq=False)
class CifarArrays:
    """The official train and test sets: images (N, 3, 32, 32) uint8 NCHW, labels (N,) int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


class ArrayOnlyUnpickler(pickle.Unpickler):
    """Resolves only the globals an official batch needs; unpickling runs code, so refuse the rest.

    Dicts, lists, strings and numbers need no global; a NumPy array needs these three.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,  # pickled by NumPy 1.x (official)
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,  # pickled by NumPy 2
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise CifarlabError(f"forbidden global {module}.{name}") from None


def read_archive(path: Path) -> CifarArrays:
    """Read the official `cifar-10-python.tar.gz` layout from memory, without extracting it.

    Refuses, with a CifarlabError naming the archive (and member), anything that is not exactly
    that layout: unreadable files, unsafe or missing members, batches of the wrong shape or type.
    """
    path = Path(path)
    if not path.is_file():
        raise CifarlabError(f"{path}: no such archive; run the `fetch` stage")
    with _open_tar(path, shown_as=path) as tar:
        wanted = _check_members(path, tar.getmembers())
        # read in archive order, so the gzip stream is rewound once, not once per member
        loaded = {name: _unpickle(path, tar, member)
                  for name, member in sorted(wanted.items(), key=lambda kv: kv[1].offset)}

    train = [_check_batch(path, name, loaded[name]) for name in TRAIN_MEMBERS]
    x_test, y_test = _check_batch(path, TEST_MEMBER, loaded[TEST_MEMBER])
    return CifarArrays(
        x_train=np.concatenate([x for x, _ in train]),
        y_train=np.concatenate([y for _, y in train]),
        x_test=x_test,
        y_test=y_test,
        class_names=_check_meta(path, loaded[META_MEMBER]),
    )


def check_archive_layout(path: Path, *, shown_as: object) -> None:
    """Refuse, naming `shown_as`, a file that is not a readable .tar.gz holding the official members;
    the batches themselves are checked when the split reads them."""
    with _open_tar(path, shown_as=shown_as) as tar:
        _check_members(shown_as, tar.getmembers())


@contextlib.contextmanager
def _open_tar(path: Path, *, shown_as: object) -> Iterator[tarfile.TarFile]:
    """The archive opened for reading; damage found while reading it is one error naming `shown_as`."""
    try:
        with tarfile.open(path, mode="r:gz") as tar:
            tar.getmembers()  # reads to the end: truncation and bad CRCs show here
            yield tar
    except CifarlabError:
        raise
    except (tarfile.TarError, EOFError, OSError, ValueError) as err:  # zlib.error is an OSError
        raise CifarlabError(f"{shown_as}: not a readable .tar.gz archive ({one_line(err)})") from None


def _check_members(path: object, members: list[tarfile.TarInfo]) -> dict[str, tarfile.TarInfo]:
    """Refuse the archive if any member is unsafe; return the needed members by short name."""
    for member in members:
        parts = PurePosixPath(member.name).parts
        if member.name.startswith(("/", "\\")) or ".." in parts:
            raise CifarlabError(f"{path}: unsafe member {member.name!r} (absolute or '..' path)")
        if not (member.isfile() or member.isdir()):
            kind = "symlink" if member.issym() else "hardlink" if member.islnk() else "special file"
            raise CifarlabError(f"{path}: unsafe member {member.name!r} ({kind})")
    files = {m.name: m for m in members if m.isfile()}
    needed = (*TRAIN_MEMBERS, TEST_MEMBER, META_MEMBER)
    missing = [f"{ARCHIVE_DIR}/{name}" for name in needed if f"{ARCHIVE_DIR}/{name}" not in files]
    if missing:
        raise CifarlabError(
            f"{path}: missing members {', '.join(missing)}; expected the official "
            "cifar-10-python.tar.gz layout"
        )
    return {name: files[f"{ARCHIVE_DIR}/{name}"] for name in needed}


def _unpickle(path: Path, tar: tarfile.TarFile, member: tarfile.TarInfo) -> Any:
    stream = tar.extractfile(member)
    try:
        # latin1: the official batches were pickled by Python 2, whose byte strings decode 1:1
        return ArrayOnlyUnpickler(stream, encoding="latin1").load()
    except Exception as err:  # anything a hostile or damaged pickle raises is a bad file
        raise CifarlabError(
            f"{path}: member {member.name}: not a readable batch pickle ({one_line(err)})"
        ) from None


def _check_batch(path: Path, name: str, batch: Any) -> tuple[np.ndarray, np.ndarray]:
    """Validate one batch dict and return images (N, 3, 32, 32) uint8 and labels (N,) int64."""
    where = f"{path}: member {ARCHIVE_DIR}/{name}"
    if not isinstance(batch, dict) or "data" not in batch or "labels" not in batch:
        raise CifarlabError(f"{where}: expected a dict with 'data' and 'labels'")
    data = batch["data"]
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2
            and data.shape[0] > 0 and data.shape[1] == ROW_LENGTH):
        got = f"{data.dtype} {data.shape}" if isinstance(data, np.ndarray) else type(data).__name__
        raise CifarlabError(f"{where}: expected 'data' as uint8 (N, {ROW_LENGTH}), got {got}")
    try:
        labels = np.asarray(batch["labels"])
    except (ValueError, TypeError):
        labels = np.asarray(None)  # ragged or odd: fails the check below
    if labels.ndim != 1 or labels.dtype.kind not in "iu":
        raise CifarlabError(f"{where}: expected 'labels' as a list of integers")
    if len(labels) != len(data):
        raise CifarlabError(f"{where}: {len(labels)} labels for {len(data)} images")
    if labels.min() < 0 or labels.max() >= NUM_CLASSES:
        raise CifarlabError(
            f"{where}: labels must lie in 0..{NUM_CLASSES - 1}, "
            f"found {labels.min()}..{labels.max()}"
        )
    # a row is [R plane | G plane | B plane], each 32x32 row-major, so a plain reshape is NCHW
    images = data.reshape(len(data), 3, 32, 32)  # (N, C, H, W)
    return images, labels.astype(np.int64)


def _check_meta(path: Path, meta: Any) -> tuple[str, ...]:
    names = meta.get("label_names") if isinstance(meta, dict) else None
    if not (isinstance(names, list) and len(names) == NUM_CLASSES
            and all(isinstance(n, str) for n in names)):
        raise CifarlabError(
            f"{path}: member {ARCHIVE_DIR}/{META_MEMBER}: expected a dict with "
            f"'label_names', a list of {NUM_CLASSES} strings"
        )
    return tuple(names)

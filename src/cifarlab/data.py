"""CIFAR-10 (Krizhevsky, 2009): fetch the official archive, read it safely, split it, save it.

The archive is read straight from the tarfile object (nothing is extracted to disk), every member is
checked, and its pickles go through an unpickler that only knows how to rebuild a NumPy array.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import pickle
import sys
import tarfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import IO, Any

import numpy as np

try:  # NumPy >= 2 moved the module; pickles name either, so both map to the one function
    from numpy._core.multiarray import _reconstruct
except ImportError:  # pragma: no cover - NumPy 1.x
    from numpy.core.multiarray import _reconstruct

from cifarlab.errors import CifarlabError
from cifarlab.io import atomic_path, write_json

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR10_MD5 = "c58f30108f718f92721af3b95e74349a"

ARCHIVE_DIR = "cifar-10-batches-py"
TRAIN_MEMBERS = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_MEMBER = "test_batch"
META_MEMBER = "batches.meta"
NUM_CLASSES = 10
ROW_LENGTH = 3 * 32 * 32  # one image: the R plane, then G, then B, each 32x32 row-major

URL_SCHEMES = ("http", "https", "ftp", "file")
DOWNLOAD_TIMEOUT_S = 60
CHUNK_BYTES = 1 << 20
PROGRESS_EVERY_S = 5.0
PROGRESS_EVERY_FRACTION = 0.1

SPLIT_ARRAYS = "arrays.npz"
SPLIT_META = "meta.json"
# the order in which arrays enter content_sha256; changing it changes every recorded hash
SPLIT_ARRAY_NAMES = ("x_train", "y_train", "x_val", "y_val", "x_test", "y_test")


@dataclass(frozen=True, eq=False)
class CifarArrays:
    """The official train and test sets: images (N, 3, 32, 32) uint8 NCHW, labels (N,) int64."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: tuple[str, ...]


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


# ---------------------------------------------------------------------------------------------
# fetch


def is_url(source: str) -> bool:
    """True when `source` is an http, https, ftp or file URL (else it is a local path)."""
    return urllib.parse.urlparse(source).scheme.lower() in URL_SCHEMES


def fetch_archive(source: str, dest: Path, expected_md5: str | None) -> dict:
    """Download (URL) or copy (local path) the archive to `dest`, atomically, and record checksums.

    A download whose md5 differs from `expected_md5` is refused; a local archive named by the user
    is trusted as named, so its md5 is recorded but not checked (`checksum_verified` is False). Either
    must be a readable .tar.gz with the official members, or it is refused here, by its own name,
    rather than one stage later by the name of its copy.
    """
    dest = Path(dest)
    if is_url(source):
        sums = _download(source, dest, expected_md5)
        verified = expected_md5 is not None
    else:
        sums = _copy_local(Path(source), dest)
        verified = False
    return {"source": source, **sums, "checksum_verified": verified}


def _download(url: str, dest: Path, expected_md5: str | None) -> dict:
    try:
        # raising inside atomic_path removes the temporary file: an earlier dest stays as it was
        response = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)
        with response, atomic_path(dest) as tmp:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            sums = _copy_hashing(response, tmp, total=total, label=url)
            if total is not None and sums["bytes"] != total:
                raise CifarlabError(
                    f"data.source: download of {url} stopped after {sums['bytes']} of {total} bytes"
                )
            if expected_md5 is not None and sums["md5"] != expected_md5.lower():
                raise CifarlabError(
                    f"data.md5: {url} has md5 {sums['md5']}, expected {expected_md5}; "
                    "fix data.md5 or data.source"
                )
            check_archive_layout(tmp, shown_as=f"data.source: {url}")
    except urllib.error.HTTPError as err:
        raise CifarlabError(
            f"data.source: cannot download {url}: HTTP {err.code} {_one_line(err.reason)}"
        ) from None
    except urllib.error.URLError as err:
        reason = _one_line(err.reason)
        raise CifarlabError(f"data.source: cannot download {url}: {reason}") from None
    except (OSError, ValueError) as err:  # resets, timeouts, malformed URLs, an unwritable dest
        raise CifarlabError(
            f"data.source: cannot download {url} to {dest}: {_one_line(err)}"
        ) from None
    return sums


def _copy_local(path: Path, dest: Path) -> dict:
    if not path.is_file():
        what = "is not a file" if path.exists() else "does not exist"
        raise CifarlabError(f"data.source: {path} {what}; expected a .tar.gz archive or a URL")
    with open(path, "rb") as src, atomic_path(dest) as tmp:
        sums = _copy_hashing(src, tmp, total=None, label=None)
        check_archive_layout(tmp, shown_as=f"data.source: {path}")
    return sums


def _copy_hashing(src: IO[bytes], tmp: Path, *, total: int | None, label: str | None) -> dict:
    """Copy `src` to `tmp` in chunks, hashing as it goes; report progress on stderr if `label`."""
    md5, sha256, done = hashlib.md5(), hashlib.sha256(), 0
    start = last_time = time.monotonic()
    last_fraction = 0.0
    with open(tmp, "wb") as out:
        while chunk := src.read(CHUNK_BYTES):
            out.write(chunk)
            md5.update(chunk)
            sha256.update(chunk)
            done += len(chunk)
            if label is None:
                continue
            # one line per ~10% or per few seconds, so a log stays readable whatever the chunk size
            now = time.monotonic()
            fraction = done / total if total else 0.0
            if (now - last_time >= PROGRESS_EVERY_S
                    or fraction - last_fraction >= PROGRESS_EVERY_FRACTION):
                _progress(label, done, total)
                last_time, last_fraction = now, fraction
    if label is not None:
        print(f"downloaded {label}: {done / 1e6:.1f} MB in {time.monotonic() - start:.1f} s",
              file=sys.stderr)
    return {"md5": md5.hexdigest(), "sha256": sha256.hexdigest(), "bytes": done}


def _progress(label: str, done: int, total: int | None) -> None:
    of = f" of {total / 1e6:.1f} MB ({100 * done / total:.0f}%)" if total else " MB"
    print(f"downloading {label}: {done / 1e6:.1f}{of}", file=sys.stderr)


# ---------------------------------------------------------------------------------------------
# read


class _ArrayOnlyUnpickler(pickle.Unpickler):
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
        raise CifarlabError(f"{shown_as}: not a readable .tar.gz archive ({_one_line(err)})") from None


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
        return _ArrayOnlyUnpickler(stream, encoding="latin1").load()
    except Exception as err:  # anything a hostile or damaged pickle raises is a bad file
        raise CifarlabError(
            f"{path}: member {member.name}: not a readable batch pickle ({_one_line(err)})"
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


def _one_line(err: object) -> str:
    """An exception's text on one short line, since hostile input chooses what goes in it."""
    text = " ".join(str(err).split())
    return text if len(text) <= 200 else text[:197] + "..."


# ---------------------------------------------------------------------------------------------
# split


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
            f"{meta_path}: not a valid split meta ({_one_line(err)}); {rerun}"
        ) from None
    try:
        with np.load(arrays_path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in SPLIT_ARRAY_NAMES}
    except Exception as err:  # BadZipFile, KeyError, ValueError, OSError: all a damaged file
        raise CifarlabError(
            f"{arrays_path}: not a readable split ({_one_line(err)}); {rerun}"
        ) from None
    split = Split(**arrays, class_names=class_names, mean=mean, std=std)
    if split.content_sha256 != recorded:
        raise CifarlabError(
            f"{arrays_path}: contents do not match content_sha256 in {meta_path}; {rerun}"
        )
    return split

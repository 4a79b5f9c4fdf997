"""Generate tiny archives in the layout of the official `cifar-10-python.tar.gz`, for tests.

Hostile variants come from three knobs of `make_cifar_archive`: `mutate` edits the objects before
they are pickled, `members` replaces a member's bytes (or drops it), `extra` adds raw tar entries.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
import tarfile
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np

from cifarlab.data.archive import CifarArrays

ARCHIVE_DIR = "cifar-10-batches-py"
TRAIN_MEMBERS = tuple(f"data_batch_{i}" for i in range(1, 6))
CLASS_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")


def make_objects(*, per_batch: int = 12, test_size: int = 15, seed: int = 0) -> dict[str, Any]:
    """The objects pickled into each member, by short name: random pixels and labels from `seed`.

    Labels cycle through the classes in a shuffled order, so every class appears whenever a batch
    holds at least ten images.
    """
    rng = np.random.default_rng(seed)
    objects: dict[str, Any] = {}
    for index, (name, size) in enumerate(
        [(name, per_batch) for name in TRAIN_MEMBERS] + [("test_batch", test_size)]
    ):
        labels = rng.permutation(np.arange(size) % 10).tolist()  # python ints, as in the original
        objects[name] = {
            "batch_label": f"batch {index + 1} of 6",
            "labels": labels,
            "data": rng.integers(0, 256, size=(size, 3072), dtype=np.uint8),
            "filenames": [f"image_{index}_{i}.png" for i in range(size)],
        }
    objects["batches.meta"] = {
        "num_cases_per_batch": per_batch,
        "label_names": list(CLASS_NAMES),
        "num_vis": 3072,
    }
    return objects


def expected_arrays(seed: int = 0) -> CifarArrays:
    """The arrays that `make_cifar_archive(seed=seed)` (default sizes) holds, built by hand from the
    generator's objects: what reading the archive must give."""
    objects = make_objects(seed=seed)
    return CifarArrays(
        x_train=np.concatenate([objects[n]["data"] for n in TRAIN_MEMBERS]).reshape(-1, 3, 32, 32),
        y_train=np.concatenate([objects[n]["labels"] for n in TRAIN_MEMBERS]).astype(np.int64),
        x_test=objects["test_batch"]["data"].reshape(-1, 3, 32, 32),
        y_test=np.array(objects["test_batch"]["labels"], dtype=np.int64),
        class_names=CLASS_NAMES,
    )


def make_cifar_archive(
    path: Path,
    *,
    per_batch: int = 12,
    test_size: int = 15,
    seed: int = 0,
    mutate: Callable[[dict[str, Any]], None] | None = None,
    members: dict[str, bytes | None] | None = None,
    extra: Iterable[tuple[tarfile.TarInfo, bytes]] = (),
    python2: bool = False,
) -> Path:
    """Write a real .tar.gz with the official member names and pickled dicts; return `path`.

    mutate: called with `make_objects(...)`'s dict, to edit in place before pickling.
    members: short member name -> raw bytes to store instead, or None to leave the member out.
    extra: raw (TarInfo, data) entries appended as they are (symlinks, `../` names, ...).
    python2: pickle as the official archive was (Python 2, protocol 2, `numpy.core` names).
    """
    objects = make_objects(per_batch=per_batch, test_size=test_size, seed=seed)
    if mutate is not None:
        mutate(objects)
    dump = _python2_pickle if python2 else (lambda obj: pickle.dumps(obj, protocol=4))
    payloads: dict[str, bytes | None] = {name: dump(obj) for name, obj in objects.items()}
    payloads["readme.html"] = b"<meta HTTP-EQUIV=\"REFRESH\" content=\"0; URL=cifar.html\">\n"
    payloads.update(members or {})

    path = Path(path)
    with tarfile.open(path, "w:gz") as tar:
        directory = tarfile.TarInfo(ARCHIVE_DIR)
        directory.type, directory.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(directory)
        for name, data in payloads.items():
            if data is not None:
                add_member(tar, file_entry(f"{ARCHIVE_DIR}/{name}", data))
        for entry in extra:
            add_member(tar, entry)
    return path


def file_entry(name: str, data: bytes) -> tuple[tarfile.TarInfo, bytes]:
    """A regular-file tar entry with any name (e.g. `../escape`)."""
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o644
    return info, data


def link_entry(name: str, target: str, *, hard: bool = False) -> tuple[tarfile.TarInfo, bytes]:
    """A symlink (or hardlink) tar entry pointing at `target`."""
    info = tarfile.TarInfo(name)
    info.type, info.linkname = (tarfile.LNKTYPE if hard else tarfile.SYMTYPE), target
    return info, b""


def add_member(tar: tarfile.TarFile, entry: tuple[tarfile.TarInfo, bytes]) -> None:
    info, data = entry
    tar.addfile(info, io.BytesIO(data) if info.isfile() else None)


def md5_of(path: Path) -> str:
    return hashlib.md5(Path(path).read_bytes()).hexdigest()


# --- Python 2 pickles ------------------------------------------------------------------------
# Python 3 cannot write a Python 2 byte string, so emit the opcodes by hand: the shape of the
# official batches (protocol 2, `numpy.core.multiarray._reconstruct`, pixel data as a `str`).


def _python2_pickle(obj: Any) -> bytes:
    return b"\x80\x02" + _py2(obj) + b"."  # PROTO 2 ... STOP


def _py2(obj: Any) -> bytes:
    if isinstance(obj, dict):  # EMPTY_DICT MARK k v ... SETITEMS
        return b"}(" + b"".join(_py2(k) + _py2(v) for k, v in obj.items()) + b"u"
    if isinstance(obj, list):  # EMPTY_LIST MARK items APPENDS
        return b"](" + b"".join(_py2(v) for v in obj) + b"e"
    if isinstance(obj, tuple):  # MARK items TUPLE
        return b"(" + b"".join(_py2(v) for v in obj) + b"t"
    if isinstance(obj, bool):
        return b"\x88" if obj else b"\x89"  # NEWTRUE / NEWFALSE
    if isinstance(obj, int):
        return b"J" + struct.pack("<i", obj)  # BININT
    if obj is None:
        return b"N"
    if isinstance(obj, (str, bytes)):  # a Python 2 str: BINSTRING
        raw = obj.encode("latin1") if isinstance(obj, str) else obj
        return b"T" + struct.pack("<i", len(raw)) + raw
    if isinstance(obj, np.ndarray):
        return _py2_ndarray(obj)
    raise TypeError(f"no Python 2 pickle for {type(obj).__name__}")


def _py2_ndarray(array: np.ndarray) -> bytes:
    assert array.dtype == np.uint8, "only uint8 arrays, as in the official batches"
    dtype = (  # numpy.dtype('u1', 0, 1) then BUILD with its state
        b"cnumpy\ndtype\n" + _py2(("u1", 0, 1)) + b"R"
        + _py2((3, "|", None, None, None, -1, -1, 0)) + b"b"
    )
    return (  # _reconstruct(ndarray, (0,), 'b') then BUILD (1, shape, dtype, False, bytes)
        b"cnumpy.core.multiarray\n_reconstruct\n"
        + b"(cnumpy\nndarray\n" + _py2((0,)) + _py2("b") + b"tR"
        + b"(" + _py2(1) + _py2(tuple(array.shape)) + dtype + _py2(False)
        + _py2(np.ascontiguousarray(array).tobytes()) + b"tb"
    )

"""Atomic file output, so an interrupted stage never leaves a half-written file where DVC looks."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cifarlab.errors import CifarlabError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _new_file_beside(path)
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        tmp_path.unlink(missing_ok=True)


def _new_file_beside(path: Path) -> Path:
    """A new empty file in `path`'s folder, with the mode any new file gets (0644 under umask 022): mkstemp's
    0600 would leave reports and settings files readable by their owner alone."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))  # the umask applies to 0666
        except FileExistsError:
            continue
        return tmp


def require_input(path: str | os.PathLike, producer: str) -> Path:
    """`path`, which an earlier stage writes; if it is not there, one line naming it and that stage."""
    path = Path(path)
    if not path.exists():
        raise CifarlabError(f"{path}: missing; run {producer} first")
    return path


def write_json(path: str | os.PathLike, data: Any) -> None:
    """Write `data` as indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text`, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)

"""Self-describing model files: the weights with the model config and the run summary beside them."""

from __future__ import annotations

import dataclasses
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cifarlab.config.sections import ModelConfig, RunConfig
from cifarlab.errors import CifarlabError, one_line
from cifarlab.io import atomic_path
from cifarlab.models import build_model

MODEL_FILE = "a model file that the train stage wrote (models/<run>.pt)"
RESUME_STATE = "a resume state of the train stage (models/resume/<run>.pt)"
MODEL = "a cifarlab model file"
MODEL_KEYS = frozenset({"model_state", "run", "summary"})  # what save_model writes
# The keys that train.resume saves and no model file has.
RESUME_KEYS = frozenset({"fingerprint", "optimizer", "scheduler", "rng"})
TEXT_SAMPLE_BYTES = 4096
CONTROL_BYTES = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")
NPY_MAGIC = b"\x93NUMPY"


def save_model(path: Path, model: nn.Module, run: RunConfig, summary: dict[str, Any],
               data: dict[str, Any]) -> None:
    """Write the best weights with everything evaluation needs, atomically."""
    # Saved through a file object: given a path, torch names the archive's records after the (random)
    # temporary file, and equal weights would hash differently, so evaluate would rerun for nothing.
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        torch.save({"model_state": model.state_dict(), "run": dataclasses.asdict(run),
                    "summary": summary, "data": data}, out)


def load_model(path: Path, device: torch.device) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model from its file alone; returns it in eval mode with the file's contents. A file that
    is not one the train stage wrote (truncated, foreign, empty) is a user error naming it."""
    if not Path(path).exists():
        raise CifarlabError(f"{path}: no model file; run the train stage first")
    not_ours = f"{path}: not a cifarlab model file"
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before refusing them
            warnings.simplefilter("ignore")
            saved = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # noqa: BLE001  (any byte string reaches the unpickler; each failure means the same)
        raise CifarlabError(_not_a_model(Path(path), exc)) from None
    if not (isinstance(saved, dict) and isinstance(saved.get("run"), dict) and "model" in saved["run"]
            and isinstance(saved.get("model_state"), dict)):
        raise CifarlabError(f"{not_ours} (expected the train stage's record of model_state and run)")
    try:
        model = build_model(ModelConfig.from_dict(saved["run"]["model"])).to(device)
        model.load_state_dict(saved["model_state"])
    except (RuntimeError, KeyError, TypeError) as exc:
        raise CifarlabError(f"{not_ours} ({exc.__class__.__name__}: {one_line(exc)})") from None
    return model.eval(), saved


def _not_a_model(path: Path, exc: Exception) -> str:
    """The line for a file that torch.load refused: what the file is, if that can be told."""
    kind = describe_file(path)
    if kind not in (None, "a PyTorch file", MODEL):
        return f"{path}: {kind}, not a cifarlab model file; expected {MODEL_FILE}"
    if isinstance(exc, pickle.UnpicklingError) and "weights_only" in str(exc):
        # PyTorch's own message is a page of advice on loading the file unsafely, in bold
        return (f"{path}: not a cifarlab model file: it holds objects other than tensors, left unread since "
                f"unpickling them could run code; expected {MODEL_FILE}")
    return f"{path}: not a cifarlab model file ({exc.__class__.__name__}: {one_line(exc)})"


def describe_file(path: Path) -> str | None:
    """What a file given in place of a model or of images is, told from its first bytes without unpickling
    anything: "a folder", "an empty file", "a text file", "a NumPy .npy array", a model file, a resume state,
    another "PyTorch file"; None if none of these."""
    path = Path(path)
    if path.is_dir():
        return "a folder"
    try:
        with open(path, "rb") as stream:
            head = stream.read(TEXT_SAMPLE_BYTES)
    except OSError:
        return None
    if not head:
        return "an empty file"
    if _is_text(head):
        return "a text file"
    if head.startswith(NPY_MAGIC):
        return "a NumPy .npy array"
    pickled = _torch_pickle(path)
    if pickled is None:
        return None
    strings = _pickled_strings(pickled)
    return RESUME_STATE if RESUME_KEYS <= strings else MODEL if MODEL_KEYS <= strings else "a PyTorch file"


def _is_text(head: bytes) -> bool:
    """UTF-8 without control characters but the whitespace ones: a zip's or a pickle's header has some."""
    if CONTROL_BYTES.search(head):
        return False
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as err:
        return err.start >= len(head) - 3  # the sample may end inside a character
    return True


def _torch_pickle(path: Path) -> bytes | None:
    """The pickle of a file in torch.save's zip format (its tensors are stored beside it), or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            name = next((n for n in archive.namelist() if n.endswith("/data.pkl")), None)
            return archive.read(name) if name else None
    except (OSError, zipfile.BadZipFile, ValueError):
        return None


def _pickled_strings(pickled: bytes) -> set[str]:
    """The strings a pickle holds, read from its opcodes: nothing in it runs."""
    strings = set()
    try:
        for opcode, arg, _ in pickletools.genops(pickled):
            if isinstance(arg, str) and "UNICODE" in opcode.name:
                strings.add(arg)
    except Exception:  # noqa: BLE001  (a damaged pickle: what was read so far is all there is)
        pass
    return strings

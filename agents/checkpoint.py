"""Checkpoints: weights + config + env id + optimizer and RNG state, written atomically.

A checkpoint is a ``torch.save`` of a plain dict (loaded with ``weights_only=True``, so a
checkpoint cannot run code) carrying a format tag and version. Writing goes to a temporary file in
the same folder followed by ``os.replace``, so an interrupted save never destroys the previous
checkpoint.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["FORMAT", "VERSION", "CheckpointError", "load_checkpoint", "save_checkpoint"]

FORMAT = "sipenv-checkpoint"
VERSION = 1
_REQUIRED = ("format", "version", "algo", "env_id", "env_kwargs", "network", "config", "model",
             "iteration")


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated, of another format, or does not match."""


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Atomically write ``payload`` (plus format tag and version) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"format": FORMAT, "version": VERSION, **payload}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(data, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _check_crc(path: Path) -> None:
    """Verify the CRC-32 of every record of a (zip-format) checkpoint: torch.load itself does
    not, so a flipped bit in the weights would otherwise load silently as other weights."""
    if not zipfile.is_zipfile(path):
        return  # not a zip at all: torch.load reports it as corrupt or truncated
    try:
        with zipfile.ZipFile(path) as archive:
            damaged = archive.testzip()
    except Exception as exc:
        raise CheckpointError(f"Checkpoint {path} is corrupt or truncated and cannot be read "
                              f"({type(exc).__name__}: {exc}). Use an earlier checkpoint or "
                              "retrain.") from exc
    if damaged is not None:
        raise CheckpointError(f"Checkpoint {path} is corrupt: record {damaged!r} fails its CRC "
                              "check (the file was damaged after it was written). Use an "
                              "earlier checkpoint or retrain.")


def load_checkpoint(path: str | Path, *, env_id: str | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load and validate a checkpoint.

    Args:
        path: File written by ``save_checkpoint``.
        env_id: If given, the checkpoint must have been trained on this env.
        map_location: Device for the tensors.

    Raises:
        CheckpointError: If the file is missing, unreadable (corrupt/truncated, or damaged: every
            record's CRC-32 is checked), of another format or version, lacks fields, or was
            trained on another env.
    """
    path = Path(path)
    if path.is_dir() and (path / "checkpoint.pt").is_file():
        path = path / "checkpoint.pt"  # a run directory stands for its checkpoint
    if not path.is_file():
        hint = ("it holds no checkpoint.pt (the run did not get far enough to save one)"
                if path.is_dir() else "pass the checkpoint.pt of a run directory "
                "(runs/<run-name>/checkpoint.pt)")
        raise CheckpointError(f"No checkpoint at {path}; {hint}.")
    _check_crc(path)
    try:
        data = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:
        # (the first line of the reason only; some errors, e.g. on an empty file, have none)
        reason = next(iter(str(exc).strip().splitlines()), "no details")
        raise CheckpointError(f"Checkpoint {path} is corrupt or truncated and cannot be read "
                              f"({type(exc).__name__}: {reason}). "
                              "Use an earlier checkpoint or retrain.") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path} is not a sipenv checkpoint (missing format tag "
                              f"{FORMAT!r}).")
    if data.get("version") != VERSION:
        raise CheckpointError(f"{path} has checkpoint format version {data.get('version')}; "
                              f"this sipenv reads version {VERSION}.")
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise CheckpointError(f"Checkpoint {path} lacks fields {missing}; it is incomplete.")
    if env_id is not None and data["env_id"] != env_id:
        raise CheckpointError(f"Checkpoint {path} was trained on {data['env_id']!r}, not "
                              f"{env_id!r}; pass the matching --env-id.")
    return data

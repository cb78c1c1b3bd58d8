"""Input checks shared by every env shell: device and dtype, actions, reset options, sizes.

Each raises ``ValueError`` with a message that names the input, what it must be and what it
got, before anything in the env changes.
"""

from __future__ import annotations

import collections.abc
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from sipenv.validation import check_int

__all__ = ["as_field", "check_num_envs", "check_render_mode", "checked_options", "parse_device",
           "parse_dtype", "real_array", "seed_generator", "validate_action"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"`` / ``"float64"`` (or the torch dtype) → torch dtype, with a clear error."""
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")


def parse_device(device: str | torch.device) -> torch.device:
    """``"cpu"`` / ``"cuda"`` / ``"cuda:1"`` (or a torch device) → torch device, checked to exist.

    Raises:
        ValueError: For a malformed device string, or a CUDA device that is not available.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got "
                         f"{device!r}.") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available; use "
                             "device='cpu'.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} requested but only "
                             f"{torch.cuda.device_count()} CUDA device(s) exist.")
    return dev


def seed_generator(np_random: np.random.Generator, device: torch.device) -> torch.Generator:
    """A torch generator on ``device`` seeded from the env's ``np_random`` (so that
    ``reset(seed=...)`` alone determines every task)."""
    return torch.Generator(device=device).manual_seed(int(np_random.integers(2**62)))


def real_array(value: Any) -> np.ndarray | None:
    """``value`` as a float64 numpy array if it holds real numbers (bool/int/float), else None.

    Strings (even ``"0.5"``), bytes, complex numbers and arbitrary objects are refused rather than
    parsed or truncated; torch tensors (also on GPU or requiring grad) are accepted.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
        if arr.dtype.kind == "O":  # e.g. a list mixing ints and floats, or of arbitrary objects
            arr = np.asarray(arr.tolist())
    except (TypeError, ValueError):  # ragged nesting, unconvertible objects
        return None
    if arr.dtype.kind not in "biuf":
        return None
    return arr.astype(np.float64)


def as_field(value: Any, name: str, shape: tuple[int, ...], device: torch.device,
              dtype: torch.dtype) -> torch.Tensor:
    """Validate a user-given field (numpy/torch/list) of ``shape`` and make it a tensor."""
    real = real_array(value)
    if real is None:
        raise ValueError(f"options[{name!r}] must be a numeric array of shape {shape}.")
    arr = torch.as_tensor(real)
    if tuple(arr.shape) != shape:
        raise ValueError(f"options[{name!r}] must have shape {shape}, got {tuple(arr.shape)}.")
    if not torch.isfinite(arr).all():
        raise ValueError(f"options[{name!r}] contains NaN or inf; pass finite values.")
    return arr.to(device=device, dtype=dtype)


def checked_options(options: Any, accepted: tuple[str, ...], *, example: str,
                    described: str) -> collections.abc.Mapping[str, Any]:
    """``reset`` options as a mapping with only ``accepted`` keys (``{}`` for ``None``).

    Raises:
        ValueError: For a non-mapping (showing ``example``) or unknown keys (listing
            ``described``), before any state or random generator changes.
    """
    if options is None:
        return {}
    if not isinstance(options, collections.abc.Mapping):
        raise ValueError(f"options must be a dict such as {example}, got "
                         f"{type(options).__name__}.")
    unknown = set(options) - set(accepted)
    if unknown:
        raise ValueError(f"Unknown reset options {sorted(unknown, key=str)}; accepted: "
                         f"{described}.")
    return options


def validate_action(action: Any, shape: tuple[int, ...], *, what: str = "",
                     fix: str = "Pass finite values in [-1, 1] (larger ones are clipped)."
                     ) -> np.ndarray:
    """Check an action (batch) for type, shape and finiteness; returns a float64 numpy array.

    Accepts numpy arrays, nested lists and torch tensors of bool/int/float; refuses strings,
    bytes, complex numbers and other objects with ``ValueError``. ``what`` says what the action
    stands for (e.g. ``" (the reconstructed initial field)"``), ``fix`` how to mend NaN/inf.
    """
    arr = real_array(action)
    if arr is None:
        raise ValueError(f"action must be a numeric array of shape {shape}{what}, got "
                         f"{type(action).__name__}"
                         f"{f' of dtype {action.dtype}' if hasattr(action, 'dtype') else ''}.")
    if arr.shape != shape:
        raise ValueError(f"action must have shape {shape}{what}, got {arr.shape}.")
    bad = ~np.isfinite(arr)
    if bad.any():
        where = np.argwhere(bad)[:3].tolist()
        raise ValueError(f"action contains NaN or inf (first at index {where}); the env state "
                         f"is unchanged. {fix}")
    return arr




def check_num_envs(num_envs: Any) -> int:
    """``num_envs`` as an int ≥ 1 (numpy integers accepted, bools not), else ``ValueError``."""
    return check_int("num_envs", num_envs, minimum=1)


def check_render_mode(render_mode: str | None, modes: list[str], which: str = "") -> None:
    """Raise ``ValueError`` unless ``render_mode`` is ``None`` or one of ``modes``."""
    if render_mode is not None and render_mode not in modes:
        raise ValueError(f"render_mode must be one of {modes} or None{which}, got "
                         f"{render_mode!r}.")


def ready_to_render(render_mode: str | None, started: bool, *, vector: bool = False) -> bool:
    """The guard every ``render()`` starts with: ``False`` (after Gymnasium's warning) when the
    env has no render mode, ``True`` when a frame can be drawn.

    Raises:
        RuntimeError: Before the first ``reset()`` (``started`` is false).
    """
    if render_mode is None:
        fix = ("render_mode='rgb_array' to gym.make_vec" if vector
               else "render_mode='rgb_array' or 'human' to gym.make")
        gym.logger.warn(f"render() called with render_mode=None; pass {fix}.")
        return False
    if not started:
        raise RuntimeError("Call reset() before render().")
    return True

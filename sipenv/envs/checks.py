"""Input checks shared by every env shell: device and dtype, actions, reset options, sizes.

Each raises ``ValueError`` with a message that names the input, what it must be and what it
got, before anything in the env changes.
"""

from __future__ import annotations

import collections.abc
import numbers
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from sipenv.validation import check_bool, check_int, is_int

__all__ = ["FLOAT64_MAX", "OBSERVATION_MAX", "as_field", "check_disable_env_checker",
           "check_limit", "check_max_episode_steps", "check_num_envs", "check_render_mode",
           "checked_options", "field_limit", "parse_device", "parse_dtype", "real_array",
           "seed_generator", "validate_action", "with_masks"]

FLOAT64_MAX = float(np.finfo(np.float64).max)
"""The largest finite float64 (≈ 1.8e308): every input is read as float64 first."""

OBSERVATION_MAX = float(np.finfo(np.float32).max)
"""The largest magnitude a float32 observation can hold (≈ 3.4e38)."""

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


def real_array(value: Any, name: str = "value") -> np.ndarray | None:
    """``value`` as a float64 numpy array if it holds real numbers (bool/int/float), else None.

    Strings (even ``"0.5"``), bytes, complex numbers and arbitrary objects are refused rather than
    parsed or truncated; torch tensors (also on GPU or requiring grad) are accepted.

    Raises:
        ValueError: For finite numbers that float64 cannot hold (a Python int of 10**400, a
            long double of 1e400), naming ``name`` and the limit, instead of turning them
            into inf.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
        if arr.dtype.kind == "O":  # e.g. a list mixing ints and floats, or of arbitrary objects
            arr = np.asarray(arr.tolist())
    except (TypeError, ValueError):  # ragged nesting, unconvertible objects
        return None
    except OverflowError:  # an int too large for any numpy integer type
        arr = np.asarray(value, dtype=object)
    if arr.dtype.kind == "O" and arr.size and all(
            isinstance(v, numbers.Real) and not isinstance(v, (np.str_, str))
            for v in arr.flat):
        try:  # huge Python ints: exact as objects, not as float64
            arr = arr.astype(np.float64)
        except OverflowError:
            _too_large(name, FLOAT64_MAX, "the largest magnitude float64 can hold")
    if arr.dtype.kind not in "biuf":
        return None
    with np.errstate(over="ignore"):
        out = arr.astype(np.float64)
    if arr.dtype.kind == "f" and arr.dtype.itemsize > 8 and (
            np.isinf(out) & np.isfinite(arr)).any():
        _too_large(name, FLOAT64_MAX, "the largest magnitude float64 can hold")
    return out


def _too_large(name: str, limit: float, why: str) -> None:
    raise ValueError(f"{name} has entries beyond ±{limit:.4g}, {why}; scale it down (the env "
                     "state is unchanged).")


def check_limit(arr: np.ndarray, name: str, limit: float, why: str) -> None:
    """Raise ``ValueError`` naming ``limit`` (and ``why``, e.g. "the largest magnitude float64
    can hold") if a finite entry of ``arr`` exceeds it in magnitude."""
    if arr.size and float(np.abs(arr).max()) > limit:
        _too_large(name, limit, why)


def field_limit(dtype: torch.dtype) -> tuple[float, str]:
    """The largest magnitude of a field that becomes part of a float32 observation and is
    computed in ``dtype``: ``(limit, why)``."""
    limit = min(float(torch.finfo(dtype).max), OBSERVATION_MAX)
    if dtype == torch.float32:
        return limit, "the largest magnitude float32 (the env's dtype and its observation) can hold"
    return limit, "the largest magnitude a float32 observation can hold"


def as_field(value: Any, name: str, shape: tuple[int, ...], device: torch.device,
             dtype: torch.dtype, *, limit: tuple[float, str] | None = None) -> torch.Tensor:
    """Validate a user-given field (numpy/torch/list) of ``shape`` and make it a tensor.

    Args:
        limit: ``(largest magnitude, why)``; default ``field_limit(dtype)``
            (the field is observed as float32 and computed in ``dtype``).

    Raises:
        ValueError: For a non-numeric field, a wrong shape, NaN/inf, or finite entries beyond
            the limit (which the cast would turn into inf), naming the limit.
    """
    label = f"options[{name!r}]"
    real = real_array(value, label)
    if real is None:
        raise ValueError(f"{label} must be a numeric array of shape {shape}.")
    if real.shape != shape:
        raise ValueError(f"{label} must have shape {shape}, got {real.shape}.")
    if not np.isfinite(real).all():
        raise ValueError(f"{label} contains NaN or inf; pass finite values.")
    check_limit(real, label, *(limit if limit is not None else field_limit(dtype)))
    return torch.as_tensor(real).to(device=device, dtype=dtype)


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
                    fix: str = "Pass finite values in [-1, 1] (larger ones are clipped).",
                    limit: tuple[float, str] | None = None) -> np.ndarray:
    """Check an action (batch) for type, shape and finiteness; returns a float64 numpy array.

    Accepts numpy arrays, nested lists and torch tensors of bool/int/float; refuses strings,
    bytes, complex numbers and other objects with ``ValueError``. ``what`` says what the action
    stands for (e.g. ``" (the reconstructed initial field)"``), ``fix`` how to mend NaN/inf.
    Clipped actions need no ``limit`` (any float64 clips to ``[-1, 1]`` exactly); an action used
    as it is gives ``limit = (largest magnitude, why)``.
    """
    arr = real_array(action, "action")
    if arr is None:
        raise ValueError(f"action must be a numeric array of shape {shape}{what}, got "
                         f"{type(action).__name__}"
                         f"{f' of dtype {action.dtype}' if hasattr(action, 'dtype') else ''}.")
    if arr.shape != shape:
        raise ValueError(f"action must have shape {shape}{what}, got {arr.shape}.")
    bad = ~np.isfinite(arr)
    if bad.any():
        where = ", ".join(str(tuple(int(i) for i in idx)) if len(idx) > 1 else str(int(idx[0]))
                          for idx in np.argwhere(bad)[:3])
        raise ValueError(f"action contains NaN or inf (first at index {where}); the env state "
                         f"is unchanged. {fix}")
    if limit is not None:
        check_limit(arr, "action", *limit)
    return arr




def check_max_episode_steps(max_episode_steps: Any) -> int | None:
    """``gym.make``'s ``max_episode_steps`` for a native vector env: ``None`` or ``-1`` (no
    limit, as ``gym.make`` reads them) or an int ≥ 1, else ``ValueError``."""
    if max_episode_steps is None or (is_int(max_episode_steps) and max_episode_steps == -1):
        return None
    return check_int("max_episode_steps", max_episode_steps, minimum=1,
                     hint="(or None / -1 for no time limit)")


def check_disable_env_checker(disable_env_checker: Any) -> None:
    """``gym.make``'s ``disable_env_checker``, accepted by the native vector envs for parity
    with sync mode (Gymnasium's checker wraps single envs only, so it changes nothing here):
    ``None`` or a bool, else ``ValueError``."""
    if disable_env_checker is not None:
        check_bool("disable_env_checker", disable_env_checker)


def with_masks(info: dict[str, Any], num_envs: int) -> dict[str, Any]:
    """``info`` with the ``_key`` mask Gymnasium's ``SyncVectorEnv`` puts beside every key
    (every sub-env reports every key here: all ``True``), recursing into dicts such as
    ``final_info``."""
    out: dict[str, Any] = {}
    for key, value in info.items():
        out[key] = with_masks(value, num_envs) if isinstance(value, dict) else value
        out[f"_{key}"] = np.ones(num_envs, dtype=bool)
    return out


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

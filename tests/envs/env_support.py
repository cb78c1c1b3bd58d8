"""Shared helpers of the env tests: make any registered env small, get valid actions and reset
options for it from its spaces, and compare whole env outputs.

A new env id needs nothing here to be tested by ``test_conformance.py``; at most one line in
:data:`SMALL_KWARGS` if its defaults are slow to step (the suite runs every check on every id).
"""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import VectorEnv

import sipenv  # noqa: F401  (registers the ids)

SMALL_KWARGS: dict[str, dict[str, Any]] = {
    # Small grids and short horizons: the point of the suite is the API, not the default size.
    "sip/ControlledDiffusion-v0": {"n": 16, "horizon": 3, "max_mode": 4},
    # Upwind stability at 4 sub-steps: |u| ≤ Δx · 4 / dt ≈ 4.2 > the tasks' 3 + forcing.
    "sip/ControlledBurgers-v0": {"n": 32, "horizon": 3, "substeps": 4},
    "sip/CorrectedBurgers-v0": {"n": 16, "fine_n": 32, "horizon": 3},
    "sip/HeatInverse-v0": {"shape": (8, 6)},
    "sip/ShapeTransition-v0": {"shape": (16, 16), "horizon": 4},
    "sip/CoupledOscillators-v0": {"horizon": 4},
    "sip/FluidInverse-v0": {"shape": (8, 8), "steps": 1},
}
"""Per-id keywords that keep each env fast; an id not listed runs with its defaults."""

SENSED_VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    # Test-only ids: every control and correction env (1-D and 2-D) with sensors, actuators
    # and noise set (sipenv.envs.sensing), so that the whole suite runs on them too.
    "sip-test/SensedDiffusion-v0": ("sip/ControlledDiffusion-v0", {
        "sensors": 5, "actuators": 4, "sensor_noise": 0.05, "actuator_noise": 0.1}),
    "sip-test/SensedBurgers-v0": ("sip/ControlledBurgers-v0", {
        "sensors": (0.1, 0.3, 0.65), "target_observation": "sensors", "actuators": 3,
        "actuator_width": 0.1, "sensor_noise": 0.05, "actuator_noise": 0.1}),
    "sip-test/SensedCorrectedBurgers-v0": ("sip/CorrectedBurgers-v0", {
        "sensors": 4, "actuators": 4, "sensor_noise": 0.05, "actuator_noise": 0.1}),
    "sip-test/SensedShapeTransition-v0": ("sip/ShapeTransition-v0", {
        "sensors": 6, "target_observation": "sensors", "actuators": 4, "sensor_noise": 0.05,
        "actuator_noise": 0.1}),
}
"""``{test id: (base id, sensing options)}``: the base env's classes registered with the
options as spec kwargs (``conftest.py``); they run with the base id's small keywords."""

for _variant, (_base, _) in SENSED_VARIANTS.items():
    SMALL_KWARGS[_variant] = SMALL_KWARGS[_base]


def noiseless(env_id: str) -> dict[str, Any]:
    """Keywords that turn a noisy variant's noise off: for the checks that compare envs
    whose generators differ by design (single against vector envs on posed tasks), where
    the noise drawn would differ."""
    options = SENSED_VARIANTS.get(env_id, ("", {}))[1]
    return {k: 0.0 for k in ("sensor_noise", "actuator_noise") if k in options}

NUM_ENVS = 3


def small_kwargs(env_id: str) -> dict[str, Any]:
    return dict(SMALL_KWARGS.get(env_id, {}))


def make(env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
    """``gym.make`` of a small ``env_id`` (``kwargs`` override the small defaults)."""
    return gym.make(env_id, **{**small_kwargs(env_id), **kwargs})


def make_vec(env_id: str, num_envs: int = NUM_ENVS, **kwargs: Any) -> VectorEnv[Any, Any, Any]:
    """The native vector env of a small ``env_id``."""
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **{**small_kwargs(env_id), **kwargs})


def actions(space: spaces.Space[Any], seed: int, count: int) -> list[Any]:
    """``count`` valid actions drawn from ``space`` (seeded)."""
    space.seed(seed)
    return [space.sample() for _ in range(count)]


def reset_options(env: Any, seed: int) -> dict[str, np.ndarray]:
    """Valid reset options of ``env`` (single or vector), drawn from its
    ``reset_options_space`` and kept in ``[-1, 1]`` (inside every declared box, and tame
    enough for any physics)."""
    space = env.unwrapped.reset_options_space
    assert isinstance(space, spaces.Dict)
    space.seed(seed)
    return {key: np.clip(value, -1.0, 1.0) for key, value in space.sample().items()}


def option_row(options: dict[str, np.ndarray], i: int) -> dict[str, np.ndarray]:
    """Sub-env ``i``'s part of batched reset options."""
    return {key: value[i] for key, value in options.items()}


def is_same_step(envs: VectorEnv[Any, Any, Any]) -> bool:
    """Whether the vector env autoresets on the same step (one-step envs) or the next."""
    return envs.metadata["autoreset_mode"] is gym.vector.AutoresetMode.SAME_STEP


def assert_same(a: Any, b: Any, path: str = "out") -> None:
    """Exact equality of env outputs (nested tuples, dicts, arrays, object arrays, floats),
    with matching types and dtypes."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} vs {type(b).__name__}"
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys {list(a)} vs {list(b)}"
        for key in a:
            assert_same(a[key], b[key], f"{path}[{key!r}]")
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), f"{path}: length {len(a)} vs {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray) and a.dtype == object:
        assert a.shape == b.shape, path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_same(x, y, f"{path}[{i}]")
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape, f"{path}: {a.dtype}{a.shape} vs " \
            f"{b.dtype}{b.shape}"
        np.testing.assert_array_equal(a, b, err_msg=path)
    else:
        assert a == b or (a != a and b != b), f"{path}: {a!r} vs {b!r}"


def assert_close(a: Any, b: Any, path: str = "out", rtol: float = 1e-5,
                 atol: float = 1e-8) -> None:
    """Like :func:`assert_same` for one sub-env of a vector env against a single env: numbers
    to ``rtol``/``atol`` (the vector env computes rewards in the env's dtype where the single
    env reports Python floats, and a batched float32 FFT may round differently from a
    single-sample one, depending on torch's thread count), booleans exactly; a scalar equals a
    0-d array entry."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), f"{path}: keys {list(a)} vs {list(b)}"
        for key in a:
            assert_close(a[key], b[key], f"{path}[{key!r}]", rtol, atol)
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            assert_close(x, y, f"{path}[{i}]", rtol, atol)
    else:
        x, y = np.asarray(a), np.asarray(b)
        assert x.shape == y.shape, f"{path}: shape {x.shape} vs {y.shape}"
        if x.dtype == bool or y.dtype == bool:
            np.testing.assert_array_equal(x, y, err_msg=path)
        else:
            np.testing.assert_allclose(x, y, rtol=rtol, atol=atol, err_msg=path)


def record_shown_frames(monkeypatch: pytest.MonkeyPatch) -> list[np.ndarray]:
    """The frames every human window shows from now on, in order (they are still shown)."""
    from sipenv.envs.rendering import HumanWindow

    shown: list[np.ndarray] = []
    original = HumanWindow.show

    def show(self: HumanWindow, frame: np.ndarray) -> None:
        shown.append(frame)
        original(self, frame)

    monkeypatch.setattr(HumanWindow, "show", show)
    return shown


def assert_make_refuses(env_id: str, kwargs: dict[str, Any]) -> None:
    """``gym.make(env_id, **kwargs)`` raises ``ValueError``."""
    with warnings.catch_warnings():
        # gym.make itself warns about an undeclared render mode before the env raises.
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError):
            gym.make(env_id, **kwargs)

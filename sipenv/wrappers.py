"""Gymnasium wrappers that add Gaussian sensor or actuator noise to any env with ``Box``
observations or actions.

sipenv's field envs take ``sensor_noise=`` and ``actuator_noise=`` themselves (``gym.make``
options, drawn from the env's own generator; ``sipenv.envs.sensing``); these wrappers do the
same around any single env, also one that is not sipenv's::

    >>> import gymnasium as gym
    >>> import sipenv
    >>> from sipenv.wrappers import ActionNoise, SensorNoise
    >>> env = ActionNoise(SensorNoise(gym.make("sip/ControlledDiffusion-v0"), std=0.01), std=0.05)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape
    (129,)

Each wrapper draws from its own ``numpy`` generator, seeded by ``reset(seed=s)`` (from ``s``
and a per-wrapper constant, so two wrappers on one env draw different noise, and the env's own
random stream is untouched): the same seed gives the same noise. A reset without a seed keeps
the generator going (the first one without any seed starts it from fresh entropy, as
Gymnasium does).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces

__all__ = ["ActionNoise", "SensorNoise"]


def _check_std(std: Any) -> float:
    if isinstance(std, bool) or not isinstance(std, (int, float, np.floating, np.integer)) \
            or not np.isfinite(std) or std < 0:
        raise ValueError(f"std must be a finite number ≥ 0, got {std!r}.")
    return float(std)


def _box(space: spaces.Space[Any], what: str) -> spaces.Box:
    if not isinstance(space, spaces.Box):
        raise TypeError(f"The {what} space must be a gymnasium.spaces.Box to add Gaussian noise "
                        f"to it, got {type(space).__name__}.")
    return space


class _Noise:
    """A numpy generator seeded by ``reset(seed=…)`` together with ``stream``."""

    stream: int
    _rng: np.random.Generator | None = None

    def _reseed(self, seed: int | None) -> None:
        if seed is not None:
            self._rng = np.random.default_rng([int(seed), self.stream])
        elif self._rng is None:
            self._rng = np.random.default_rng()

    def _draw(self, shape: tuple[int, ...]) -> np.ndarray:
        if self._rng is None:
            raise gym.error.ResetNeeded("Call reset() before step(): the noise generator is "
                                        "seeded by reset(seed=...).")
        return self._rng.standard_normal(shape)


class SensorNoise(_Noise, gym.ObservationWrapper[np.ndarray, Any, Any]):
    """Adds ``std · N(0, 1)`` to every observation entry (also those of ``reset``), clipped to
    the observation space's bounds; the space is unchanged.

    Args:
        env: An env with a ``Box`` observation space.
        std: Standard deviation, in observation units (≥ 0; 0 leaves observations unchanged).

    Raises:
        TypeError: If the observation space is not a ``Box``.
        ValueError: For a negative or non-finite ``std``.
    """

    stream = 0x5E5

    def __init__(self, env: gym.Env[np.ndarray, Any], std: float) -> None:
        gym.ObservationWrapper.__init__(self, env)
        self.std = _check_std(std)
        self._space = _box(env.observation_space, "observation")

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        self._reseed(seed)
        return super().reset(seed=seed, options=options)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        obs = np.asarray(observation)
        noisy = obs + self.std * self._draw(obs.shape)
        return np.clip(noisy, self._space.low, self._space.high).astype(obs.dtype)


class ActionNoise(_Noise, gym.ActionWrapper[Any, np.ndarray, Any]):
    """Adds ``std · N(0, 1)`` to every action entry before the env applies it, clipped to the
    action space's bounds (actuators saturate); the space is unchanged.

    Args:
        env: An env with a ``Box`` action space.
        std: Standard deviation, in action units (≥ 0).

    Raises:
        TypeError: If the action space is not a ``Box``.
        ValueError: For a negative or non-finite ``std``.
    """

    stream = 0xAC7

    def __init__(self, env: gym.Env[Any, np.ndarray], std: float) -> None:
        gym.ActionWrapper.__init__(self, env)
        self.std = _check_std(std)
        self._space = _box(env.action_space, "action")

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        self._reseed(seed)
        return super().reset(seed=seed, options=options)

    def action(self, action: np.ndarray) -> np.ndarray:
        act = np.asarray(action, dtype=self._space.dtype)
        noisy = act + self.std * self._draw(act.shape)
        return np.clip(noisy, self._space.low, self._space.high).astype(self._space.dtype)

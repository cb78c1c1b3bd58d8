"""The native batched ``sip/ControlledDiffusion-v0`` vector env: its task-specific facts, and
Gymnasium's vector wrappers on it. The vector contract every env keeps (equality with single
envs, NEXT_STEP autoreset, seeding, bad input) is in ``test_conformance.py``."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import gymnasium.utils.env_checker as env_checker
import gymnasium.vector as gym_vector
import numpy as np
import pytest
import torch
from gymnasium.vector import VectorEnv

import sipenv  # noqa: F401  (registers the ids)
from sipenv.envs.controlled_diffusion import ControlledDiffusionVectorEnv

ENV_ID = "sip/ControlledDiffusion-v0"
N = 64


def _make_vec(num_envs: int, **kwargs: Any) -> VectorEnv:
    return gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **kwargs)


def test_autoreset_draws_tasks_like_reset() -> None:
    """The NEXT_STEP autoreset (its contract: ``test_conformance.py``) draws this task's fields:
    smooth, zero mean, modes ≤ max_mode = 8, and new ones."""
    num_envs, horizon = 3, 2
    envs = _make_vec(num_envs, horizon=horizon)
    envs.reset(seed=5)
    for _ in range(horizon):
        last_obs, *_ = envs.step(np.zeros((num_envs, N), np.float32))
    obs, _, _, _, info = envs.step(np.zeros((num_envs, N), np.float32))
    np.testing.assert_array_equal(obs[:, -1], np.zeros(num_envs, np.float32))
    for i in range(num_envs):
        assert not np.allclose(obs[i, N:2 * N], last_obs[i, N:2 * N])
    s, tgt = obs[:, :N].astype(np.float64), obs[:, N:2 * N].astype(np.float64)
    np.testing.assert_allclose(info["target_error"],
                               ((s - tgt) ** 2).sum(-1) / (tgt**2).sum(-1), rtol=1e-5)
    spec = np.abs(np.fft.rfft(obs[:, :2 * N].reshape(2 * num_envs, N), axis=-1))
    assert (spec[:, 0] < 1e-3).all() and (spec[:, 9:] < 1e-3).all()


def test_out_of_range_actions_are_clipped() -> None:
    def next_obs(action: np.ndarray) -> np.ndarray:
        envs = _make_vec(2)
        envs.reset(seed=3)
        return envs.step(action)[0]

    np.testing.assert_array_equal(next_obs(np.full((2, N), 5.0)), next_obs(np.ones((2, N))))


@pytest.mark.parametrize("options,match", [
    ({"target": np.ones(N)}, r"shape \(3, 64\)"),
    ({"target": np.r_[np.ones((2, N)), np.zeros((1, N))]}, "zero"),
])
def test_bad_reset_options_raise(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _make_vec(3).reset(seed=0, options=options)


@pytest.mark.parametrize("kwargs", [{"num_envs": 0}, {"render_mode": "human"},
                                    {"nu": 0.0}, {"dtype": "int8"}])
def test_invalid_constructor_arguments_raise(kwargs: dict[str, Any]) -> None:
    num_envs = kwargs.pop("num_envs", 2)
    with pytest.raises(ValueError):
        ControlledDiffusionVectorEnv(num_envs=num_envs, **kwargs)


def test_float64_vector_env() -> None:
    envs = _make_vec(2, dtype="float64")
    obs, _ = envs.reset(seed=0)
    assert envs.unwrapped.state.dtype == torch.float64
    assert obs.dtype == np.float32


def test_gymnasium_vector_wrappers_work() -> None:
    from gymnasium.wrappers.vector import ClipAction, RecordEpisodeStatistics

    horizon = 3
    envs = RecordEpisodeStatistics(ClipAction(_make_vec(2, horizon=horizon)))
    envs.reset(seed=0)
    returns = np.zeros(2)
    for _ in range(horizon):
        _, reward, terminated, _, info = envs.step(np.full((2, N), 0.5, np.float32))
        returns += reward
    assert terminated.all() and info["_episode"].all()
    np.testing.assert_allclose(info["episode"]["r"], returns, rtol=1e-6)
    np.testing.assert_array_equal(info["episode"]["l"], [horizon, horizon])


# --- Gymnasium's vector API contract ----------------------------------------------------------

_CHECKER_NAMES = ("check_vector_env", "check_vec_env", "vector_env_checker")


def test_gymnasium_vector_checker_if_available() -> None:
    checkers = [getattr(mod, name) for mod in (env_checker, gym_vector)
                for name in _CHECKER_NAMES if callable(getattr(mod, name, None))]
    if not checkers:
        pytest.skip(f"gymnasium {gym.__version__} has no vector-env checker")
    for check in checkers:  # pragma: no cover - none in gymnasium 1.4
        check(_make_vec(4))



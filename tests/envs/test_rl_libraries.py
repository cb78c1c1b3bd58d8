"""Which RL libraries take which env, as the README's table states: stable-baselines3's
``check_env`` and its algorithms, Gymnasium's action wrappers and the wrapper stack of CleanRL's
``ppo_continuous_action.py`` (sync vector env). ``sip/HeatInverse-v0`` needs its bounded variant
(``action_scale=``); its physical default is refused, as the README says."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from env_support import small_kwargs

import sipenv

HEAT = "sip/HeatInverse-v0"
BOUNDED = {HEAT: {"action_scale": 10.0}}
"""The keywords that make each env's action space a finite box (only HeatInverse needs one)."""

SB3_WARNINGS = {HEAT: ("unconventional shape",),
                "sip/ShapeTransition-v0": ("is an image but", "minimal resolution for an image"),
                "sip/FluidInverse-v0": ("is an image but", "minimal resolution for an image",
                                        "normalized Box action space")}
"""SB3 ``check_env`` warnings an env may give: HeatInverse's (H, W) observation is neither an
image nor a vector (``MlpPolicy`` flattens it and trains); ShapeTransition's spatial float32
``(C, H, W)`` observation looks like an image to SB3, which wants ``uint8`` images in [0, 255]
of at least 36×36 for its CNN policy (``MlpPolicy`` flattens it; ``flat_observation=True``
gives a vector). FluidInverse's ``(2, H, W)`` markers likewise, and its action is the physical
initial velocity (a box of ±1e4, not normalised): a one-step inverse problem trained by SIP/DP,
not an RL target."""


def _make(env_id: str, **kwargs: Any) -> gym.Env[Any, Any]:
    return gym.make(env_id, **{**small_kwargs(env_id), **BOUNDED.get(env_id, {}), **kwargs})


@pytest.mark.parametrize("env_id", sipenv.ENV_IDS)
def test_stable_baselines3_check_env_accepts_every_env(env_id: str) -> None:
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_checker import check_env

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(_make(env_id))
    allowed = SB3_WARNINGS.get(env_id, ())
    unexpected = [str(w.message) for w in caught if "stable_baselines3" in w.filename
                  and not any(a in str(w.message) for a in allowed)]
    assert not unexpected


def test_heat_inverse_physical_default_is_refused_by_bounded_action_clients() -> None:
    """The documented reason for ``action_scale``: an unbounded Box is refused."""
    pytest.importorskip("stable_baselines3")
    from stable_baselines3.common.env_checker import check_env

    env = gym.make(HEAT, shape=(8, 6))
    with pytest.raises(AssertionError, match="finite"):
        check_env(env)
    with pytest.raises((AssertionError, ValueError)):
        gym.wrappers.RescaleAction(env, -1.0, 1.0)


@pytest.mark.parametrize("env_id", sipenv.ENV_IDS)
def test_gymnasium_action_wrappers_and_cleanrl_stack(env_id: str) -> None:
    """``RescaleAction`` / ``ClipAction`` on the single env, and the wrapper stack of CleanRL's
    ``ppo_continuous_action.py`` on a sync vector env (it flattens observations, normalises
    observations and rewards, and clips actions)."""
    env = gym.wrappers.RescaleAction(_make(env_id), -2.0, 2.0)
    env.reset(seed=0)
    env.step(env.action_space.sample())

    def thunk() -> gym.Env[Any, Any]:
        e = gym.wrappers.FlattenObservation(_make(env_id))
        e = gym.wrappers.RecordEpisodeStatistics(e)
        e = gym.wrappers.ClipAction(e)
        e = gym.wrappers.NormalizeObservation(e)
        e = gym.wrappers.TransformObservation(e, lambda o: np.clip(o, -10, 10),
                                              e.observation_space)
        e = gym.wrappers.NormalizeReward(e, gamma=0.99)
        return gym.wrappers.TransformReward(e, lambda r: float(np.clip(r, -10, 10)))

    envs = gym.vector.SyncVectorEnv([thunk, thunk])
    envs.reset(seed=1)
    for _ in range(4):  # across episode ends
        obs, reward, *_ = envs.step(3 * envs.action_space.sample())
        assert np.isfinite(obs).all() and np.isfinite(reward).all()


@pytest.mark.parametrize("env_id", sipenv.ENV_IDS)
@pytest.mark.parametrize("algo", ["PPO", "A2C", "SAC", "TD3"])
def test_stable_baselines3_algorithms_train_on_every_env(env_id: str, algo: str) -> None:
    """A few steps of each continuous-action algorithm (~0.2 s each): the spaces, dtypes and
    episode ends they rely on work."""
    sb3 = pytest.importorskip("stable_baselines3")
    options = {"PPO": {"n_steps": 8, "batch_size": 8}, "A2C": {"n_steps": 4}}.get(
        algo, {"learning_starts": 4, "batch_size": 4, "buffer_size": 64})
    model = getattr(sb3, algo)("MlpPolicy", _make(env_id), seed=0, device="cpu", **options)
    model.learn(8)

"""``sip/HeatInverse-v0``: the task's own facts (the observation is the diffused true field,
rewards and infos against the physics, the exact answer scores zero, its option, messages and
frames). The Gymnasium contract every env keeps is in ``test_conformance.py``."""

from __future__ import annotations

import re
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import sipenv  # noqa: F401  (registers the ids)
from sipenv.envs.heat_inverse import FRAME_SHAPE, HeatInverseVectorEnv

ENV_ID = "sip/HeatInverse-v0"
H = W = 64

# Observation (y*) and action (the reconstructed field x) are physical fields, unbounded by
# design; any other check_env warning is a failure.


def _make(**kwargs: Any) -> gym.Env:
    return gym.make(ENV_ID, **kwargs)


def _make_vec(num_envs: int, **kwargs: Any) -> gym.vector.VectorEnv:
    return gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **kwargs)


def _ref_forward(x: np.ndarray, nu_t: float) -> np.ndarray:
    """Independent numpy reference of ``P``: ``ŷ_k = x̂_k exp(−(2π)²|k|²νt)``, k in cycles/cell."""
    h, w = x.shape[-2:]
    k2 = np.fft.fftfreq(h)[:, None] ** 2 + np.fft.rfftfreq(w)[None, :] ** 2
    return np.fft.irfft2(np.fft.rfft2(x) * np.exp(-(2 * np.pi) ** 2 * k2 * nu_t), s=(h, w))


# --- registration and the Gymnasium checker --------------------------------------------------


def test_spaces() -> None:
    env = _make()
    box = gym.spaces.Box(-np.inf, np.inf, (H, W), np.float32)
    assert env.action_space == box and env.observation_space == box
    assert env.metadata["render_fps"] > 0
    assert set(env.metadata["render_modes"]) == {"human", "rgb_array"}
    assert _make(shape=(8, 12)).observation_space.shape == (8, 12)


# --- one-step episodes, rewards, infos -----------------------------------------------------------


def test_observation_is_the_diffused_true_field() -> None:
    env = _make()
    obs, info = env.reset(seed=0)
    assert info == {} and obs.shape == (H, W) and obs.dtype == np.float32
    x_true = env.unwrapped.x_true[0].numpy()
    # Hot rectangles: non-negative integers, 4 … 10 of them overlapping at most 10 deep.
    assert x_true.dtype == np.float64 and np.array_equal(x_true, np.round(x_true))
    assert 0 <= x_true.min() and 1 <= x_true.max() <= 10
    np.testing.assert_allclose(obs, _ref_forward(x_true, 8.0), rtol=1e-6, atol=1e-6)


def test_reward_and_info_match_the_physics() -> None:
    env = _make()
    env.reset(seed=3)
    u = env.unwrapped
    phys, x_true, y_star = u.physics, u.x_true, u.y_target
    action = np.random.default_rng(0).normal(size=(H, W)).astype(np.float32)
    obs, reward, terminated, truncated, info = env.step(action)
    x = torch.as_tensor(action, dtype=torch.float64)[None]
    assert terminated is True and truncated is False
    assert set(info) == {"x_error", "y_loss"}
    assert isinstance(reward, float) and reward == -info["y_loss"]
    assert info["y_loss"] == pytest.approx(float(phys.loss(x, y_star)[0]), rel=1e-12)
    assert info["x_error"] == pytest.approx(float(phys.x_error(x, x_true)[0]), rel=1e-12)
    # ... and against an independent numpy reference.
    y_ref = _ref_forward(action.astype(np.float64), 8.0)
    assert info["y_loss"] == pytest.approx(0.5 * np.sum((y_ref - y_star[0].numpy()) ** 2),
                                           rel=1e-9)
    assert info["x_error"] == pytest.approx(np.abs(action - x_true[0].numpy()).sum(), rel=1e-12)
    np.testing.assert_array_equal(obs, y_star[0].numpy().astype(np.float32))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_the_true_field_scores_zero(dtype: str) -> None:
    env = _make(dtype=dtype)
    env.reset(seed=1)
    x_true = env.unwrapped.x_true[0].cpu().numpy().astype(np.float32)  # exact: integers
    _, reward, _, _, info = env.step(x_true)
    assert reward == 0.0 and info == {"x_error": 0.0, "y_loss": 0.0}
    assert np.copysign(1.0, reward) == 1.0  # not -0.0


def test_reset_option_initial_sets_the_true_field() -> None:
    env = _make(shape=(8, 8), nu_t=0.5)
    x = np.random.default_rng(1).uniform(-1, 1, (8, 8))
    obs, _ = env.reset(seed=0, options={"initial": x})
    np.testing.assert_array_equal(env.unwrapped.x_true[0].numpy(), x)
    np.testing.assert_allclose(obs, _ref_forward(x, 0.5), rtol=1e-5, atol=1e-6)
    _, reward, _, _, info = env.step(x)
    assert reward == 0.0 and info["x_error"] == 0.0
    # Given or not, x* is drawn: the seedless resets that follow are the same stream.
    other = _make(shape=(8, 8), nu_t=0.5)
    other.reset(seed=0)
    np.testing.assert_array_equal(env.reset()[0], other.reset()[0])


@pytest.mark.parametrize("action,match", [
    # The heat env's own wording (the generic checks: test_conformance.py).
    (np.zeros((H, W + 1), np.float32), r"shape \(64, 64\) \(the reconstructed initial field\)"),
    (np.full((H, W), np.inf), r"NaN or inf.*np\.nan_to_num"),
    (None, "numeric"),
])
def test_bad_actions_raise_and_leave_the_env_unchanged(action: Any, match: str) -> None:
    env = _make()
    obs0, _ = env.reset(seed=1)
    x_true = env.unwrapped.x_true[0].numpy()
    with pytest.raises(ValueError, match=match):
        env.unwrapped.step(action)
    assert env.unwrapped.done is False and env.unwrapped.x is None
    obs, reward, *_ = env.step(x_true)  # still the same problem, still answerable
    np.testing.assert_array_equal(obs, obs0)
    assert reward == 0.0


def test_torch_actions_are_accepted() -> None:
    env = _make(dtype="float32")
    env.reset(seed=2)
    _, reward, _, _, info = env.step(env.unwrapped.x_true[0].clone().requires_grad_())
    assert reward == 0.0 and info["x_error"] == 0.0


@pytest.mark.parametrize("kwargs", [
    {"shape": (2, 64)}, {"shape": 64}, {"nu_t": 0.0}, {"nu_t": -1.0}, {"nu_t": float("nan")},
    {"dtype": "int8"}, {"render_mode": "bogus"}, {"device": "gpu"},
])
def test_invalid_make_kwargs_raise(kwargs: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gym.make warns about undeclared render modes first
        with pytest.raises(ValueError):
            gym.make(ENV_ID, **kwargs)
    with pytest.raises(ValueError):
        HeatInverseVectorEnv(2, **kwargs)


# --- seeding, pickling, dtype -------------------------------------------------------------------


def test_float32_and_float64_agree() -> None:
    action = np.random.default_rng(4).uniform(0, 2, (H, W)).astype(np.float32)
    out = []
    for dtype in ("float32", "float64"):
        env = _make(dtype=dtype)
        obs, _ = env.reset(seed=5)
        assert env.unwrapped.x_true.dtype == getattr(torch, dtype)
        out.append((obs, env.step(action)[-1]))
    (obs32, info32), (obs64, info64) = out
    np.testing.assert_allclose(obs32, obs64, rtol=1e-5, atol=1e-5)
    assert info32["x_error"] == pytest.approx(info64["x_error"], rel=1e-6)
    assert info32["y_loss"] == pytest.approx(info64["y_loss"], rel=1e-4)


# --- rendering ---------------------------------------------------------------------------------


def test_rgb_array_frames() -> None:
    env = _make(render_mode="rgb_array")
    env.reset(seed=0)
    before = env.render()
    assert isinstance(before, np.ndarray) and before.shape == FRAME_SHAPE
    assert before.dtype == np.uint8
    np.testing.assert_array_equal(env.render(), before)  # a pure function of the env state
    env.step(np.random.default_rng(0).uniform(0, 3, (H, W)).astype(np.float32))
    after = env.render()
    assert after.shape == FRAME_SHAPE and after.dtype == np.uint8
    changed = np.any(before != after, axis=-1)
    right = changed[:, 2 * FRAME_SHAPE[1] // 3:]  # the reconstruction panel
    assert right.mean() > 0.1
    # Frames of other grids and of wild reconstructions still have the documented shape.
    small = _make(render_mode="rgb_array", shape=(8, 32), nu_t=0.5)
    small.reset(seed=0)
    small.step(np.full((8, 32), 1e30, np.float32))
    assert small.render().shape == FRAME_SHAPE
    env.close()


def test_human_mode_renders_headless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    env = _make(render_mode="human")
    env.reset(seed=0)
    env.step(np.zeros((H, W), np.float32))
    env.close()
    env.close()  # safe twice


# --- native vector env ---------------------------------------------------------------------------




@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("shape", [(8, 6), (64, 64)])
def test_fields_up_to_the_limit_give_finite_rewards_and_beyond_it_are_refused(
        dtype: str, shape: tuple[int, int]) -> None:
    """The physical answer and ``x*`` are used as they are: the env takes fields up to
    ``field_limit`` (the float32 observation, or a loss that fits the dtype) and refuses
    larger ones by name; at the limit the reward and infos are finite (issue 13)."""
    from sipenv.envs.heat_inverse import field_limit

    limit, _ = field_limit(getattr(torch, dtype), shape)
    env = gym.make(ENV_ID, shape=shape, dtype=dtype)
    checker = np.indices(shape).sum(0) % 2 * 2.0 - 1.0  # ±1: the largest P(x) − y* there is
    obs, _ = env.reset(seed=0, options={"initial": limit * checker})
    assert np.isfinite(obs).all()
    _, reward, _, _, info = env.step(-limit * checker)
    assert np.isfinite([reward, info["x_error"], info["y_loss"]]).all()
    for bad in ({"initial": 1.01 * limit * checker}, {"initial": np.full(shape, 1e300)}):
        with pytest.raises(ValueError, match=re.escape(f"beyond ±{limit:.4g}, the largest")):
            env.reset(options=bad)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=re.escape(f"action has entries beyond ±{limit:.4g}")):
        env.step(np.full(shape, 1.01 * limit))


def test_bounded_variant_scales_and_clips_normalised_actions() -> None:
    """``action_scale=s``: ``Box(-1, 1)`` actions, ``x = s · clip(a, −1, 1)``; the default stays
    physical and unbounded."""
    physical = gym.make(ENV_ID, shape=(8, 6))
    assert np.isinf(physical.action_space.high).all()
    env = gym.make(ENV_ID, shape=(8, 6), action_scale=10.0)
    space = env.action_space
    assert space.dtype == np.float32 and (space.low == -1).all() and (space.high == 1).all()
    env.reset(seed=0)
    twin = physical.unwrapped
    twin.reset(seed=0)
    x_true = env.unwrapped.x_true[0].numpy()
    assert np.array_equal(x_true, twin.x_true[0].numpy())
    _, reward, _, _, info = env.step(x_true / 10.0)
    assert info["x_error"] < 1e-12 and reward > -1e-20
    env.reset(seed=0)
    action = np.full((8, 6), 1e300)  # clipped, like the control envs' actions
    _, reward, _, _, info = env.step(action)
    np.testing.assert_array_equal(env.unwrapped.x[0].numpy(), np.full((8, 6), 10.0))
    assert np.isfinite(reward)
    envs = gym.make_vec(ENV_ID, num_envs=2, shape=(8, 6), action_scale=5.0,
                        vectorization_mode="vector_entry_point")
    assert (envs.single_action_space.high == 1).all()
    envs.reset(seed=0)
    envs.step(np.full((2, 8, 6), -3.0))
    np.testing.assert_array_equal(envs.unwrapped.x.numpy(), np.full((2, 8, 6), -5.0))
    for bad in (0.0, -1.0, float("inf"), "10", 1e300):
        with pytest.raises(ValueError, match="action_scale"):
            gym.make(ENV_ID, shape=(8, 6), action_scale=bad)

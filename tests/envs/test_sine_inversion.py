"""``sip/SineInversion-v0``: the task's own facts (the reference forward model, exact solutions,
clipping, the documented action box, precision, frames). The Gymnasium contract every env
keeps is in ``test_conformance.py``."""

from __future__ import annotations

import math
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import sipenv  # noqa: F401  (registers the ids)
from sipenv.envs.sine_inversion import FRAME_SHAPE

ENV_ID = "sip/SineInversion-v0"

# check_env must be silent: the spaces are bounded and everything is float32. Any warning that
# appears in the future has to be added here explicitly, with a reason.


def _make(**kwargs: Any) -> gym.Env:
    return gym.make(ENV_ID, **kwargs)


def _ref_forward(x: np.ndarray, xi: float, phi: float) -> np.ndarray:
    c, s = math.cos(math.radians(phi)), math.sin(math.radians(phi))
    x1, x2 = c * x[0] - s * x[1], s * x[0] + c * x[1]
    return np.array([math.sin(10 * x1 / xi), 10 * xi * x2])


# --- registration and the Gymnasium checker --------------------------------------------------


def test_spaces() -> None:
    env = _make(xi=3.0)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    assert env.observation_space == gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    assert env.metadata["render_fps"] > 0
    assert set(env.metadata["render_modes"]) == {"human", "rgb_array"}


# --- one-step episodes, rewards, infos -----------------------------------------------------------


@pytest.mark.parametrize("xi,phi", [(1.0, 0.0), (32.0, 45.0), (7.0, -20.0)])
def test_step_matches_a_reference(xi: float, phi: float) -> None:
    env = _make(xi=xi, phi=phi)
    scale = env.unwrapped.action_scale
    assert scale == pytest.approx(math.pi * xi / 20 + 1 / (10 * xi))
    rng = np.random.default_rng(0)
    for _ in range(5):
        target = rng.uniform(-1, 1, 2)
        obs, info = env.reset(options={"target": target})
        np.testing.assert_array_equal(obs, target.astype(np.float32))
        assert info == {}
        action = rng.uniform(-1.4, 1.4, 2)  # partly out of range: clipped
        obs, reward, terminated, truncated, info = env.step(action)
        x = scale * np.clip(action, -1, 1)
        expected = -0.5 * np.sum((_ref_forward(x, xi, phi) - target) ** 2)
        assert isinstance(reward, float) and reward == pytest.approx(expected, rel=1e-10)
        assert terminated is True and truncated is False
        np.testing.assert_array_equal(obs, target.astype(np.float32))
        np.testing.assert_allclose(info["x"], x, rtol=1e-12)
        sol = info["nearest_solution"]
        np.testing.assert_allclose(_ref_forward(sol, xi, phi), target, atol=1e-9)
        assert info["x_distance"] == pytest.approx(np.linalg.norm(x - sol), rel=1e-12)


def test_an_exact_solution_scores_zero() -> None:
    env = _make(xi=32.0, phi=45.0)
    env.reset(seed=3)
    phys, scale = env.unwrapped.physics, env.unwrapped.action_scale
    target = env.unwrapped.target
    sol = phys.nearest_solution(torch.zeros_like(target), target)
    _, reward, _, _, info = env.step((sol[0] / scale).numpy())
    assert reward == pytest.approx(0.0, abs=1e-10)
    assert info["x_distance"] < 1e-9


def test_out_of_range_actions_are_clipped() -> None:
    def reward(action: np.ndarray) -> float:
        env = _make(xi=2.0, phi=30.0)
        env.reset(seed=9)
        return float(env.step(action)[1])

    assert reward(np.array([5.0, -7.0])) == reward(np.array([1.0, -1.0]))
    assert reward(np.array([0.3, 1e30])) == reward(np.array([0.3, 1.0]))
    assert reward(np.array([0.3, 0.9])) != reward(np.array([0.3, 1.0]))


@pytest.mark.parametrize("kwargs", [
    {"xi": 0.0}, {"xi": -1.0}, {"xi": float("nan")}, {"xi": float("inf")},
    {"phi": float("nan")}, {"gamma": 0.0}, {"action_scale": 0.0}, {"action_scale": -2.0},
    {"action_scale": float("inf")}, {"max_loss_change": 0.0}, {"dtype": "int8"},
    {"render_mode": "bogus"}, {"device": "gpu"},
])
def test_invalid_make_kwargs_raise(kwargs: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gym.make warns about undeclared render modes first
        with pytest.raises(ValueError):
            gym.make(ENV_ID, **kwargs)


@pytest.mark.parametrize("options,match", [
    ({"target": [1.5, 0.0]}, r"\[-1, 1\]"),  # the generic checks: test_conformance.py
])
def test_bad_reset_options_raise(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _make().reset(seed=0, options=options)


def test_tensor_actions_with_grad_are_read_as_values() -> None:
    """Like the vector env (and the heat envs): a tensor answer, even one that needs grad."""
    a, b = _make(), _make()
    a.reset(seed=3)
    b.reset(seed=3)
    guess = np.array([0.3, -0.7], dtype=np.float32)
    out_np = a.step(guess)
    out_torch = b.step(torch.tensor(guess, requires_grad=True))
    assert out_np[1] == out_torch[1]
    np.testing.assert_array_equal(out_np[4]["x"], out_torch[4]["x"])


# --- the documented action box --------------------------------------------------------------------


@pytest.mark.parametrize("xi", [0.1, 0.5, 1.0, 3.0, 10.0, 32.0, 64.0])
def test_action_box_contains_an_exact_solution_of_every_target(xi: float) -> None:
    """The principal (arcsin-branch) solution lies in the box for every target and rotation,
    including the extreme targets at the corners of [-1, 1]²."""
    gen = torch.Generator().manual_seed(int(xi * 10))
    y = torch.cat([torch.rand(2000, 2, generator=gen, dtype=torch.float64) * 2 - 1,
                   torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]],
                                dtype=torch.float64)])
    for phi in (0.0, 10.0, 45.0, 90.0, 135.0, -30.0):
        env = _make(xi=xi, phi=phi)
        phys, scale = env.unwrapped.physics, env.unwrapped.action_scale
        x_hat = torch.stack([torch.asin(y[:, 0]) / phys.a, y[:, 1] / phys.b], -1)
        x = phys.unrotate(x_hat)
        torch.testing.assert_close(phys.forward(x), y, rtol=0, atol=1e-9)
        assert float(x.abs().max()) <= scale * (1 + 1e-12)


# --- seeding, pickling, dtype, device ------------------------------------------------------------


def test_device_argument() -> None:
    env = _make(device="cpu")
    env.reset(seed=0)
    assert env.unwrapped.target.device == torch.device("cpu")
    envs = _make_vec(2, device=torch.device("cpu"))
    envs.reset(seed=0)
    envs.step(np.zeros((2, 2)))
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            _make(device="cuda")
        with pytest.raises(ValueError, match="CUDA is not available"):
            _make_vec(2, device="cuda")


def test_float32_and_float64_agree() -> None:
    action = np.array([0.37, -0.11])
    rewards = []
    for dtype in ("float32", "float64"):
        env = _make(xi=3.0, phi=20.0, dtype=dtype)
        env.reset(seed=5)
        assert env.unwrapped.target.dtype == getattr(torch, dtype)
        rewards.append(env.step(action)[1])
    assert rewards[0] == pytest.approx(rewards[1], rel=1e-5)


# --- rendering ---------------------------------------------------------------------------------


def test_rgb_array_frames() -> None:
    env = _make(xi=3.0, phi=30.0, render_mode="rgb_array")
    env.reset(seed=0)
    before = env.render()
    assert isinstance(before, np.ndarray) and before.shape == FRAME_SHAPE
    assert before.dtype == np.uint8
    env.step(np.array([0.5, -0.5], np.float32))
    after = env.render()
    assert after.shape == FRAME_SHAPE and np.any(before != after)
    np.testing.assert_array_equal(env.render(), after)  # a pure function of the env state
    env.close()


# --- native vector env ---------------------------------------------------------------------------


def _make_vec(num_envs: int, **kwargs: Any) -> gym.vector.VectorEnv:
    return gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **kwargs)



"""``sip/ControlledDiffusion-v0`` (single env): the task's own facts (spaces, dynamics against an
independent reference, reset options, clipping, arguments, precision, the documented force
scale). The Gymnasium contract every env keeps is in ``test_conformance.py``."""

from __future__ import annotations

import math
import re
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from env_support import assert_make_refuses

import sipenv  # noqa: F401  (registers the ids)
from sipenv.envs.controlled_diffusion import ControlledDiffusionEnv

ENV_ID = "sip/ControlledDiffusion-v0"
N = 64  # default grid

# check_env warns about unbounded Box observations; the fields are unbounded by design.
# Inverse-problem envs whose action is a physical field (not a normalised force) have unbounded
# action boxes by design; only they may also trigger the action-space warnings.


def _make(**kwargs: Any) -> gym.Env:
    return gym.make(ENV_ID, **kwargs)


def _actions(seed: int, steps: int, n: int = N, scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-scale, scale, (steps, n)).astype(np.float32)


def _ref_step(s: np.ndarray, force: np.ndarray, *, nu: float, dt: float,
              length: float) -> np.ndarray:
    """Independent numpy reference of one exact spectral step of ∂s/∂t = ν s_xx + f."""
    n = s.shape[-1]
    k = 2 * np.pi * np.arange(n // 2 + 1) / length
    d = np.exp(-nu * k**2 * dt)
    g = np.full_like(k, dt)
    g[1:] = (1 - d[1:]) / (nu * k[1:] ** 2)
    return np.fft.irfft(d * np.fft.rfft(s) + g * np.fft.rfft(force), n=n)


# --- spaces -------------------------------------------------------------------------------------


def test_spaces_and_info() -> None:
    env = _make()
    assert isinstance(env.unwrapped, ControlledDiffusionEnv)
    obs, info = env.reset(seed=0)
    assert obs.shape == (2 * N + 1,) and set(info) == {"target_error", "force_cost"}
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (N,), np.float32)
    assert env.observation_space.shape == (2 * N + 1,)
    assert env.observation_space.dtype == np.float32
    assert env.metadata["render_fps"] > 0
    assert set(env.metadata["render_modes"]) == {"human", "rgb_array"}


# --- seeding --------------------------------------------------------------------------------


def _episode(env: gym.Env, seed: int | None, actions: np.ndarray) -> list[Any]:
    out: list[Any] = [env.reset(seed=seed)]
    for a in actions:
        out.append(env.step(a))
        if out[-1][2]:
            break
    return out


# --- reset options --------------------------------------------------------------------------


def test_reset_options_pose_the_task() -> None:
    rng = np.random.default_rng(0)
    s0, target = rng.normal(size=N), rng.normal(size=N)
    env = _make()
    obs, info = env.reset(seed=1, options={"initial_state": s0, "target": target})
    np.testing.assert_array_equal(obs[:N], s0.astype(np.float32))
    np.testing.assert_array_equal(obs[N:2 * N], target.astype(np.float32))
    assert obs[-1] == 0.0
    assert info["target_error"] == pytest.approx(
        np.sum((s0 - target) ** 2) / np.sum(target**2), rel=1e-5)
    assert info["force_cost"] == 0.0

    # Either may be given alone (lists are fine); the other one is sampled.
    obs, _ = env.reset(options={"target": target.tolist()})
    np.testing.assert_array_equal(obs[N:2 * N], target.astype(np.float32))
    assert not np.allclose(obs[:N], s0)
    obs, _ = env.reset(options={"initial_state": s0})
    np.testing.assert_array_equal(obs[:N], s0.astype(np.float32))
    assert not np.allclose(obs[N:2 * N], target)


@pytest.mark.parametrize("options,match", [
    ({"initial_state": np.zeros((1, N))}, r"shape \(64,\)"),
    ({"target": np.zeros(N)}, "zero"),
    ({"initial_state": np.r_[np.ones(N - 1), np.inf]}, "inf"),
])
def test_bad_reset_options_raise(options: dict[str, Any], match: str) -> None:
    env = _make()
    with pytest.raises(ValueError, match=match):
        env.reset(seed=0, options=options)


# --- dynamics and rewards -------------------------------------------------------------------


def test_dynamics_rewards_infos_and_termination_match_a_reference() -> None:
    horizon, penalty, scale = 5, 0.3, 40.0
    env = _make(horizon=horizon, force_penalty=penalty, force_scale=scale, dtype="float64",
                nu=0.02, length=2.0)
    rng = np.random.default_rng(3)
    s = rng.normal(size=N)
    target = rng.normal(size=N)
    obs, _ = env.reset(seed=0, options={"initial_state": s, "target": target})
    actions = rng.uniform(-1.5, 1.5, (horizon, N))  # partly out of range: clipped
    for t, a in enumerate(actions):
        obs, reward, terminated, truncated, info = env.step(a)
        clipped = np.clip(a, -1, 1)
        s = _ref_step(s, scale * clipped, nu=0.02, dt=0.01, length=2.0)
        np.testing.assert_allclose(env.unwrapped.state[0].numpy(), s, rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(obs[:N], s.astype(np.float32), rtol=1e-6, atol=1e-6)
        np.testing.assert_array_equal(obs[N:2 * N], target.astype(np.float32))
        assert obs[-1] == pytest.approx((t + 1) / horizon)
        cost = float(np.mean(clipped**2))
        err = float(np.sum((s - target) ** 2) / np.sum(target**2))
        assert info["force_cost"] == pytest.approx(cost, rel=1e-12)
        assert info["target_error"] == pytest.approx(err, rel=1e-9)
        last = t == horizon - 1
        expected = -penalty * cost - (err if last else 0.0)
        assert isinstance(reward, float)
        assert reward == pytest.approx(expected, rel=1e-9)
        assert terminated is last
        assert truncated is False


# --- out-of-range actions ---------------------------------------------------------------------


def test_out_of_range_actions_are_clipped() -> None:
    def next_state(action: np.ndarray) -> torch.Tensor:
        env = _make()
        env.reset(seed=9)
        env.step(action)
        return env.unwrapped.state.clone()

    assert torch.equal(next_state(np.full(N, 5.0, np.float32)),
                       next_state(np.ones(N, np.float32)))
    assert torch.equal(next_state(np.full(N, -1e30)), next_state(-np.ones(N)))
    mixed = np.linspace(-3, 3, N)
    assert torch.equal(next_state(mixed), next_state(np.clip(mixed, -1, 1)))
    assert not torch.equal(next_state(np.ones(N)), next_state(np.full(N, 0.5)))


# --- constructor arguments ------------------------------------------------------------------


@pytest.mark.parametrize("kwargs", [
    {"nu": 0}, {"nu": -0.01}, {"nu": float("nan")}, {"dt": -1}, {"dt": 0.0},
    {"dt": float("inf")}, {"n": 2}, {"n": 3}, {"length": 0.0}, {"horizon": 0}, {"horizon": -3},
    {"force_scale": 0}, {"force_scale": float("inf")}, {"force_penalty": -1.0},
    {"max_mode": 0}, {"max_mode": 32}, {"amplitude": 0.0}, {"max_gain": 0.5},
    {"dtype": "int8"}, {"dtype": torch.float16}, {"render_mode": "bogus"},
])
def test_invalid_make_kwargs_raise(kwargs: dict[str, Any]) -> None:
    assert_make_refuses(ENV_ID, kwargs)


def test_float64_env_runs_in_float64_on_cpu() -> None:
    for dtype in ("float64", torch.float64):
        env = _make(dtype=dtype, device="cpu")
        obs, _ = env.reset(seed=0)
        assert env.unwrapped.state.dtype == torch.float64
        assert env.unwrapped.state.device == torch.device("cpu")
        assert obs.dtype == np.float32  # observations stay float32 (the declared space)
        obs, reward, *_ = env.step(np.zeros(N))
        assert obs.dtype == np.float32 and isinstance(reward, float)
    env32 = _make()
    env32.reset(seed=0)
    assert env32.unwrapped.state.dtype == torch.float32


def test_float32_and_float64_envs_agree() -> None:
    actions = _actions(1, 16)
    ep32 = _episode(_make(), 4, actions)
    ep64 = _episode(_make(dtype="float64"), 4, actions)
    for (o32, *_), (o64, *_) in zip(ep32, ep64, strict=True):
        np.testing.assert_allclose(o32, o64, rtol=1e-4, atol=1e-4)
    assert ep32[-1][1] == pytest.approx(ep64[-1][1], rel=1e-3)


def test_env_exposes_its_differentiable_core() -> None:
    env = _make(horizon=7, force_scale=30.0)
    core = env.unwrapped.core
    assert core.horizon == 7 and core.force_scale == 30.0 and core.n == N
    assert env.unwrapped.physics is core.physics


def test_core_clips_actions_like_the_env() -> None:
    """Agents differentiate through the core, so it must clip exactly as env.step does."""
    core = _make(force_scale=30.0).unwrapped.core
    a = torch.linspace(-4, 4, N, dtype=torch.float64)[None]
    clipped = a.clamp(-1, 1)
    torch.testing.assert_close(core.action_to_force(a), 30.0 * clipped)
    s = torch.randn(1, N, dtype=torch.float64)
    torch.testing.assert_close(core.step(s, a), core.step(s, clipped))
    torch.testing.assert_close(core.force_cost(a), (clipped**2).mean(-1))


# --- the documented choice of force_scale ---------------------------------------------------


def _minimum_force_actions(core: Any, s0: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Exact least-norm controls per Fourier mode, as normalised actions ``(T, B, N)``.

    ŝ_T = d^T ŝ₀ + Σ_t d^{T−1−t} g F̂_t; the least-norm F̂ with ŝ_T = ŝ* is
    F̂_t = g d^{T−1−t} Δ / W with Δ = ŝ* − d^T ŝ₀ and W = Σ_t d^{2(T−1−t)} g².
    """
    phys, horizon = core.physics, core.horizon
    d, g = phys.spectral_factors(dtype=torch.float64)
    s0_hat, target_hat = phys.to_spectral(s0), phys.to_spectral(target)
    delta = target_hat - d**horizon * s0_hat  # (B, K)
    powers = torch.arange(horizon - 1, -1, -1, dtype=torch.float64)[:, None]  # T−1−t, (T, 1)
    gramian = (d[None] ** (2 * powers) * g**2).sum(0)  # (K,)
    forces_hat = (g * d[None] ** powers)[:, None, :] * delta[None] / gramian  # (T, B, K)
    return phys.from_spectral(forces_hat) / core.force_scale


def test_force_scale_fits_the_minimum_force_solution_of_random_tasks() -> None:
    env = _make(dtype="float64")
    core = env.unwrapped.core
    s0, target = core.sample_tasks(1000, torch.Generator().manual_seed(2024),
                                   dtype=torch.float64)
    actions = _minimum_force_actions(core, s0, target)
    peak = actions.abs().amax(dim=(0, 2)).numpy()  # (B,)
    assert np.mean(peak <= 1.0) >= 0.999
    # The numbers quoted in the env docstring.
    assert np.median(peak) == pytest.approx(0.34, abs=0.04)
    assert np.quantile(peak, 0.999) == pytest.approx(0.65, abs=0.15)

    # Replaying the exact controls through env.step lands on the target.
    for i in range(3):
        env.reset(options={"initial_state": s0[i].numpy(), "target": target[i].numpy()})
        for t in range(core.horizon):
            _, _, terminated, _, info = env.step(actions[t, i].numpy())
        assert terminated
        assert info["target_error"] < 1e-6


def test_minimum_force_replay_in_float32_env_is_close() -> None:
    env = _make()
    core = env.unwrapped.core
    s0, target = core.sample_tasks(2, torch.Generator().manual_seed(7), dtype=torch.float64)
    actions = _minimum_force_actions(core, s0, target)
    for i in range(2):
        env.reset(options={"initial_state": s0[i].numpy(), "target": target[i].numpy()})
        for t in range(core.horizon):
            _, _, _, _, info = env.step(actions[t, i].numpy())
        assert info["target_error"] < 1e-4
        assert math.isfinite(info["target_error"])


def test_the_shells_take_a_prebuilt_core_instead_of_keywords() -> None:
    from sipenv.envs.control import ControlEnv, ControlVectorEnv
    from sipenv.envs.controlled_diffusion import make_core

    core = make_core(n=16, horizon=2, max_mode=3)
    env, envs = ControlEnv(core=core), ControlVectorEnv(2, core=core)
    assert env.core is core and envs.core is core and env.title == "sipenv"
    assert env.reset(seed=0)[0].shape == (33,) and envs.reset(seed=0)[0].shape == (2, 33)
    with pytest.raises(TypeError, match="as well as a core"):
        ControlledDiffusionEnv(core=core, n=16)
    with pytest.raises(TypeError, match="has no make_core"):
        ControlEnv()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relative_squared_error_is_the_plain_formula_and_never_overflows(
        dtype: torch.dtype) -> None:
    """Scaling by a power of two is exact: bit for bit ``‖s − r‖²/‖r‖²`` wherever that is
    finite (what agents train on stays the same), and finite where only ‖r‖² would overflow."""
    from sipenv.envs.core import relative_squared_error

    gen = torch.Generator().manual_seed(0)
    for scale in (1e-3, 1.0, 7.0, 1e10):
        s = torch.randn(5, 16, generator=gen, dtype=dtype) * scale
        r = torch.randn(5, 16, generator=gen, dtype=dtype) * scale
        plain = ((s - r) ** 2).sum(-1) / (r**2).sum(-1).clamp_min(1e-30)
        assert torch.equal(relative_squared_error(s, r), plain)
    top = torch.finfo(dtype).max
    for big in (1e19, top / 2, -top):
        r = torch.full((2, 16), big, dtype=dtype)
        torch.testing.assert_close(relative_squared_error(torch.zeros_like(r), r),
                                   torch.ones(2, dtype=dtype))


@pytest.mark.parametrize(("env_id", "index"), [(ENV_ID, "5"),
                                               ("sip/ShapeTransition-v0", "(0, 0, 5)")])
def test_nan_actions_are_located_by_plain_indices(env_id: str, index: str) -> None:
    env = gym.make(env_id, **({"shape": (16, 16), "horizon": 2} if "Shape" in env_id else {}))
    env.reset(seed=0)
    action = np.zeros(env.action_space.shape)
    action.reshape(-1)[5] = np.nan
    with pytest.raises(ValueError, match=re.escape(f"(first at index {index})")):
        env.step(action)

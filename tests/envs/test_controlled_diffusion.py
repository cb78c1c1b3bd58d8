"""``sip/ControlledDiffusion-v0`` (single env) through the public Gymnasium API."""

from __future__ import annotations

import math
import pickle
import re
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.error import ResetNeeded
from gymnasium.utils.env_checker import check_env

import sipenv
from sipenv.envs.controlled_diffusion import ControlledDiffusionEnv

ENV_ID = "sip/ControlledDiffusion-v0"
N = 64  # default grid

# check_env warns about unbounded Box observations; the fields are unbounded by design.
ALLOWED_CHECK_ENV_WARNINGS = (
    r"A Box observation space minimum value is -infinity",
    r"A Box observation space maximum value is infinity",
)
# Inverse-problem envs whose action is a physical field (not a normalised force) have unbounded
# action boxes by design; only they may also trigger the action-space warnings.
UNBOUNDED_ACTION_IDS = ("sip/HeatInverse-v0",)
ALLOWED_ACTION_WARNINGS = (
    r"A Box action space minimum value is -infinity",
    r"A Box action space maximum value is infinity",
)


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


# --- registration and the Gymnasium checker --------------------------------------------------


def test_registered_ids() -> None:
    assert ENV_ID in sipenv.ENV_IDS
    for env_id in sipenv.ENV_IDS:
        spec = gym.spec(env_id)
        assert spec.namespace == "sip" and spec.version is not None
        assert isinstance(spec.entry_point, str) and isinstance(spec.vector_entry_point, str)


@pytest.mark.parametrize("env_id", ["sip/ControlledDiffusion-v0",
                                    "sipenv:sip/ControlledDiffusion-v0"])
def test_make_by_id_and_module_prefixed_id(env_id: str) -> None:
    env = gym.make(env_id)
    assert isinstance(env.unwrapped, ControlledDiffusionEnv)
    obs, info = env.reset(seed=0)
    assert obs.shape == (2 * N + 1,) and obs.dtype == np.float32
    assert set(info) == {"target_error", "force_cost"}
    env.close()


@pytest.mark.parametrize("env_id", sipenv.ENV_IDS)
def test_check_env_passes_with_only_allowed_warnings(env_id: str) -> None:
    env = gym.make(env_id)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    messages = [str(w.message) for w in caught]
    allowed = ALLOWED_CHECK_ENV_WARNINGS + (
        ALLOWED_ACTION_WARNINGS if env_id in UNBOUNDED_ACTION_IDS else ())
    unexpected = [m for m in messages if not any(re.search(p, m) for p in allowed)]
    assert not unexpected, f"check_env emitted unexpected warnings: {unexpected}"
    env.close()


def test_spaces() -> None:
    env = _make()
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


def _assert_same(a: Any, b: Any) -> None:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (tuple, list)):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            _assert_same(x, y)
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def test_seeded_determinism() -> None:
    actions = _actions(0, 16)
    a = _episode(_make(), 42, actions)
    b = _episode(_make(), 42, actions)
    _assert_same(a, b)
    c = _episode(_make(), 43, actions)
    assert not np.array_equal(a[0][0], c[0][0])
    assert a[-1][1] != c[-1][1]


def test_unseeded_resets_draw_new_tasks_from_the_seeded_stream() -> None:
    env1, env2 = _make(), _make()
    first = [env1.reset(seed=5)[0], env1.reset()[0], env1.reset()[0]]
    second = [env2.reset(seed=5)[0], env2.reset()[0], env2.reset()[0]]
    _assert_same(first, second)
    assert not np.array_equal(first[0], first[1])


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
    ({"initial_state": np.zeros(N + 1)}, r"shape \(64,\)"),
    ({"initial_state": np.zeros((1, N))}, r"shape \(64,\)"),
    ({"target": np.ones(N - 1)}, r"shape \(64,\)"),
    ({"target": np.full(N, np.nan)}, "NaN"),
    ({"initial_state": np.r_[np.ones(N - 1), np.inf]}, "inf"),
    ({"target": np.zeros(N)}, "zero"),
    ({"target": "abc"}, "numeric"),
    ({"initial_sate": np.ones(N)}, "Unknown reset options"),
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


def test_step_after_termination_raises() -> None:
    env = _make(horizon=2)
    env.reset(seed=0)
    env.step(np.zeros(N, np.float32))
    *_, terminated, _, _ = env.step(np.zeros(N, np.float32))
    assert terminated
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(N, np.float32))  # the wrapped env (OrderEnforcing passes it on)
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.step(np.zeros(N, np.float32))
    env.reset()
    env.step(np.zeros(N, np.float32))  # a reset starts a new episode


def test_step_before_reset_raises() -> None:
    with pytest.raises(RuntimeError, match="reset"):
        _make().unwrapped.step(np.zeros(N, np.float32))
    with pytest.raises(ResetNeeded):  # gymnasium's OrderEnforcing wrapper
        _make().step(np.zeros(N, np.float32))


# --- bad and out-of-range actions -----------------------------------------------------------


@pytest.mark.parametrize("action,match", [
    (np.zeros(N + 1, np.float32), r"shape \(64,\)"),
    (np.zeros((1, N), np.float32), r"shape \(64,\)"),
    (np.float32(0.5), r"shape \(64,\)"),
    (np.r_[np.zeros(N - 1), np.nan].astype(np.float32), "NaN"),
    (np.r_[np.inf, np.zeros(N - 1)], "inf"),
    (np.full(N, -np.inf), "inf"),
    ("left", "numeric"),
    (None, r"shape \(64,\)"),
])
def test_bad_actions_raise_and_leave_the_state_unchanged(action: Any, match: str) -> None:
    env = _make()
    env.reset(seed=0)
    env.step(np.full(N, 0.1, np.float32))
    inner = env.unwrapped
    state, target, t = inner.state.clone(), inner.target.clone(), inner.t
    with pytest.raises(ValueError, match=match):
        inner.step(action)
    assert torch.equal(inner.state, state) and torch.equal(inner.target, target)
    assert inner.t == t
    obs, *_ = env.step(np.zeros(N, np.float32))  # still usable
    assert obs[-1] == pytest.approx(2 / 16)


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
    with warnings.catch_warnings():
        # gym.make itself warns about an undeclared render mode before the env raises.
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError):
            gym.make(ENV_ID, **kwargs)


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


# --- pickling -------------------------------------------------------------------------------


def test_pickle_round_trip_mid_episode() -> None:
    env = _make()
    env.reset(seed=11)
    actions = _actions(2, 16)
    for a in actions[:5]:
        env.step(a)
    clone = pickle.loads(pickle.dumps(env.unwrapped))
    assert clone.t == 5
    for a in actions[5:]:
        _assert_same(env.unwrapped.step(a), clone.step(a))
    # Both random streams were copied too: the next seedless reset agrees.
    _assert_same(env.unwrapped.reset(), clone.reset())


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

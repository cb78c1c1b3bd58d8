"""The native batched ``sip/ControlledDiffusion-v0`` vector env (``vector_entry_point``)."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import gymnasium.utils.env_checker as env_checker
import gymnasium.vector as gym_vector
import numpy as np
import pytest
import torch
from gymnasium.vector import AutoresetMode, VectorEnv

import sipenv  # noqa: F401  (registers the ids)
from sipenv.envs.controlled_diffusion import ControlledDiffusionVectorEnv

ENV_ID = "sip/ControlledDiffusion-v0"
N = 64


def _make_vec(num_envs: int, **kwargs: Any) -> VectorEnv:
    return gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **kwargs)


def _tasks(num_envs: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.normal(size=(num_envs, N)), rng.normal(size=(num_envs, N))


def test_make_vec_builds_the_native_vector_env() -> None:
    envs = _make_vec(3)
    assert isinstance(envs.unwrapped, ControlledDiffusionVectorEnv)
    assert envs.num_envs == 3
    assert envs.single_action_space == gym.spaces.Box(-1.0, 1.0, (N,), np.float32)
    assert envs.action_space.shape == (3, N)
    assert envs.single_observation_space.shape == (2 * N + 1,)
    assert envs.observation_space.shape == (3, 2 * N + 1)
    assert envs.metadata["autoreset_mode"] is AutoresetMode.NEXT_STEP


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_trajectories_equal_single_envs(dtype: str) -> None:
    num_envs, horizon = 4, 6
    kwargs = {"horizon": horizon, "dtype": dtype, "force_penalty": 0.1}
    envs = _make_vec(num_envs, **kwargs)
    singles = [gym.make(ENV_ID, **kwargs) for _ in range(num_envs)]
    s0, target = _tasks(num_envs, 0)
    obs, info = envs.reset(seed=0, options={"initial_state": s0, "target": target})
    for i, env in enumerate(singles):
        o, inf = env.reset(seed=i, options={"initial_state": s0[i], "target": target[i]})
        np.testing.assert_allclose(obs[i], o, rtol=1e-6, atol=1e-6)
        assert info["target_error"][i] == pytest.approx(inf["target_error"], rel=1e-6)
    actions = np.random.default_rng(1).uniform(-1.3, 1.3, (horizon, num_envs, N))
    for t in range(horizon):
        obs, reward, terminated, truncated, info = envs.step(actions[t].astype(np.float32))
        assert obs.dtype == np.float32 and reward.dtype == np.float64
        assert terminated.dtype == bool and truncated.dtype == bool
        for i, env in enumerate(singles):
            o, r, term, trunc, inf = env.step(actions[t, i].astype(np.float32))
            np.testing.assert_allclose(obs[i], o, rtol=1e-6, atol=1e-6)
            assert reward[i] == pytest.approx(r, rel=1e-6, abs=1e-9)
            assert terminated[i] == term and truncated[i] == trunc
            assert info["target_error"][i] == pytest.approx(inf["target_error"], rel=1e-5)
            assert info["force_cost"][i] == pytest.approx(inf["force_cost"], rel=1e-6)
    assert terminated.all()


def test_next_step_autoreset() -> None:
    num_envs, horizon = 3, 3
    envs_a = _make_vec(num_envs, horizon=horizon)
    envs_b = _make_vec(num_envs, horizon=horizon)
    obs_a, _ = envs_a.reset(seed=5)
    envs_b.reset(seed=5)
    rng = np.random.default_rng(0)
    for t in range(horizon):
        a = rng.uniform(-1, 1, (num_envs, N)).astype(np.float32)
        last_obs, reward, terminated, truncated, _ = envs_a.step(a)
        envs_b.step(a)
        assert terminated.all() == (t == horizon - 1)
        assert not truncated.any()
    assert (reward < 0).all()
    # The step after termination resets: reward 0, not terminated, time 0, a new task, and the
    # action is ignored (two envs fed different actions here agree exactly).
    obs_a, reward_a, term_a, trunc_a, info_a = envs_a.step(np.ones((num_envs, N), np.float32))
    obs_b, reward_b, term_b, trunc_b, info_b = envs_b.step(-np.ones((num_envs, N), np.float32))
    np.testing.assert_array_equal(reward_a, np.zeros(num_envs))
    assert not term_a.any() and not trunc_a.any()
    np.testing.assert_array_equal(term_a, term_b)
    np.testing.assert_array_equal(trunc_a, trunc_b)
    np.testing.assert_array_equal(obs_a[:, -1], np.zeros(num_envs, np.float32))
    np.testing.assert_array_equal(obs_a, obs_b)
    np.testing.assert_array_equal(reward_a, reward_b)
    np.testing.assert_array_equal(info_a["target_error"], info_b["target_error"])
    np.testing.assert_array_equal(info_a["force_cost"], np.zeros(num_envs))
    for i in range(num_envs):  # a freshly sampled task, different from the finished one
        assert not np.allclose(obs_a[i, N:2 * N], last_obs[i, N:2 * N])
        assert not np.allclose(obs_a[i, :N], last_obs[i, :N])
    s, tgt = obs_a[:, :N].astype(np.float64), obs_a[:, N:2 * N].astype(np.float64)
    np.testing.assert_allclose(info_a["target_error"],
                               ((s - tgt) ** 2).sum(-1) / (tgt**2).sum(-1), rtol=1e-5)
    # The new sampled fields look like reset()'s: smooth, zero mean, modes ≤ max_mode = 8.
    spec = np.abs(np.fft.rfft(obs_a[:, :2 * N].reshape(2 * num_envs, N), axis=-1))
    assert (spec[:, 0] < 1e-3).all() and (spec[:, 9:] < 1e-3).all()
    # The new episode then runs normally.
    obs_a, reward_a, term_a, *_ = envs_a.step(np.zeros((num_envs, N), np.float32))
    np.testing.assert_allclose(obs_a[:, -1], 1 / horizon)
    assert not term_a.any() and (reward_a == 0).all()  # zero action, not yet the last step


def test_seeded_determinism_across_autoresets() -> None:
    def run(seed: int) -> list[Any]:
        envs = _make_vec(4, horizon=2)
        out: list[Any] = [envs.reset(seed=seed)]
        rng = np.random.default_rng(3)
        for _ in range(7):
            out.append(envs.step(rng.uniform(-1, 1, (4, N)).astype(np.float32)))
        return out

    a, b, c = run(7), run(7), run(8)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x[0], y[0])
        if len(x) == 5:
            np.testing.assert_array_equal(x[1], y[1])
    assert not np.array_equal(a[0][0], c[0][0])
    assert not np.array_equal(a[-1][0], c[-1][0])
    # The sub-envs draw different tasks.
    assert not np.array_equal(a[0][0][0], a[0][0][1])


@pytest.mark.parametrize("make_action,match", [
    (lambda: np.zeros((3, N + 1), np.float32), r"shape \(3, 64\)"),
    (lambda: np.zeros((N,), np.float32), r"shape \(3, 64\)"),
    (lambda: np.zeros((2, N), np.float32), r"shape \(3, 64\)"),
    (lambda: np.r_[np.zeros((2, N)), np.full((1, N), np.nan)], "NaN"),
    (lambda: np.full((3, N), np.inf), "inf"),
    (lambda: torch.zeros(3, N + 1), r"shape \(3, 64\)"),
    (lambda: torch.full((3, N), float("nan")), "NaN"),
    (lambda: torch.full((3, N), float("-inf")), "inf"),
])
def test_bad_actions_raise_and_leave_the_state_unchanged(make_action: Any, match: str) -> None:
    envs = _make_vec(3)
    envs.reset(seed=0)
    envs.step(np.full((3, N), 0.2, np.float32))
    inner = envs.unwrapped
    state, target, t = inner.state.clone(), inner.target.clone(), inner.t.copy()
    with pytest.raises(ValueError, match=match):
        envs.step(make_action())
    assert torch.equal(inner.state, state) and torch.equal(inner.target, target)
    np.testing.assert_array_equal(inner.t, t)
    obs, *_ = envs.step(np.zeros((3, N), np.float32))
    np.testing.assert_allclose(obs[:, -1], 2 / 16)


def test_step_before_reset_raises() -> None:
    with pytest.raises(RuntimeError, match="reset"):
        _make_vec(2).step(np.zeros((2, N), np.float32))


def test_torch_actions_equal_numpy_actions() -> None:
    actions = np.random.default_rng(4).uniform(-2, 2, (5, 3, N)).astype(np.float32)
    env_np, env_torch = _make_vec(3), _make_vec(3)
    env_np.reset(seed=1)
    env_torch.reset(seed=1)
    for a in actions:
        out_np = env_np.step(a)
        out_torch = env_torch.step(torch.from_numpy(a))
        for x, y in zip(out_np[:4], out_torch[:4], strict=True):
            np.testing.assert_array_equal(x, y)
    # float64 tensors (and tensors needing grad) are accepted too.
    env_torch.step(torch.zeros(3, N, dtype=torch.float64, requires_grad=True))


def test_out_of_range_actions_are_clipped() -> None:
    def next_obs(action: np.ndarray) -> np.ndarray:
        envs = _make_vec(2)
        envs.reset(seed=3)
        return envs.step(action)[0]

    np.testing.assert_array_equal(next_obs(np.full((2, N), 5.0)), next_obs(np.ones((2, N))))


@pytest.mark.parametrize("options,match", [
    ({"initial_state": np.zeros((2, N))}, r"shape \(3, 64\)"),
    ({"target": np.ones(N)}, r"shape \(3, 64\)"),
    ({"target": np.r_[np.ones((2, N)), np.zeros((1, N))]}, "zero"),
    ({"initial_state": np.full((3, N), np.nan)}, "NaN"),
    ({"seed": 3}, "Unknown reset options"),
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


def test_vector_api_contract() -> None:
    """What a vector checker would test: types, shapes and spaces of every return value."""
    num_envs = 4
    envs = _make_vec(num_envs, horizon=3)
    envs.action_space.seed(0)
    obs, info = envs.reset(seed=0)
    assert obs in envs.observation_space
    assert isinstance(info, dict)
    for value in info.values():
        assert np.asarray(value).shape == (num_envs,)
    for _ in range(7):  # crosses two autoresets
        obs, reward, terminated, truncated, info = envs.step(envs.action_space.sample())
        assert obs in envs.observation_space
        assert isinstance(obs, np.ndarray) and obs.dtype == np.float32
        assert reward.shape == terminated.shape == truncated.shape == (num_envs,)
        assert np.issubdtype(reward.dtype, np.floating) and np.isfinite(reward).all()
        assert terminated.dtype == np.bool_ and truncated.dtype == np.bool_
        for value in info.values():
            assert np.asarray(value).shape == (num_envs,)
    # Returned arrays are not views of internal buffers that later steps overwrite.
    obs1, *_ = envs.step(envs.action_space.sample())
    copy = obs1.copy()
    envs.step(envs.action_space.sample())
    np.testing.assert_array_equal(obs1, copy)
    envs.close()
    envs.close()

"""``sip/SineInversion-v0`` (single and native vector env) through the public Gymnasium API."""

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
from gymnasium.vector import AutoresetMode

import sipenv
from sipenv.envs.sine_inversion import FRAME_SHAPE, SineInversionEnv, SineInversionVectorEnv

ENV_ID = "sip/SineInversion-v0"

# check_env must be silent: the spaces are bounded and everything is float32. Any warning that
# appears in the future has to be added here explicitly, with a reason.
ALLOWED_CHECK_ENV_WARNINGS: tuple[str, ...] = ()


def _make(**kwargs: Any) -> gym.Env:
    return gym.make(ENV_ID, **kwargs)


def _ref_forward(x: np.ndarray, xi: float, phi: float) -> np.ndarray:
    c, s = math.cos(math.radians(phi)), math.sin(math.radians(phi))
    x1, x2 = c * x[0] - s * x[1], s * x[0] + c * x[1]
    return np.array([math.sin(10 * x1 / xi), 10 * xi * x2])


# --- registration and the Gymnasium checker --------------------------------------------------


def test_registered_with_single_and_vector_entry_points() -> None:
    assert ENV_ID in sipenv.ENV_IDS
    spec = gym.spec(ENV_ID)
    assert spec.namespace == "sip" and spec.version == 0
    assert isinstance(spec.entry_point, str) and isinstance(spec.vector_entry_point, str)
    assert isinstance(_make().unwrapped, SineInversionEnv)


@pytest.mark.parametrize("kwargs", [{}, {"xi": 32.0, "phi": 45.0},
                                    {"xi": 64.0, "render_mode": "rgb_array"},
                                    {"dtype": "float32", "phi": 10.0}])
def test_check_env_passes_without_warnings(kwargs: dict[str, Any]) -> None:
    env = _make(**kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    unexpected = [str(w.message) for w in caught
                  if not any(re.search(p, str(w.message)) for p in ALLOWED_CHECK_ENV_WARNINGS)]
    assert not unexpected, f"check_env emitted unexpected warnings: {unexpected}"


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


def test_step_after_the_single_step_and_before_reset_raise() -> None:
    env = _make()
    env.reset(seed=0)
    env.step(np.zeros(2, np.float32))
    with pytest.raises(RuntimeError, match="reset"):
        env.step(np.zeros(2, np.float32))
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.step(np.zeros(2, np.float32))
    env.reset()
    env.step(np.zeros(2, np.float32))
    with pytest.raises(RuntimeError, match="reset"):
        _make().unwrapped.step(np.zeros(2, np.float32))
    with pytest.raises(ResetNeeded):
        _make().step(np.zeros(2, np.float32))


@pytest.mark.parametrize("action,match", [
    (np.zeros(3, np.float32), r"shape \(2,\)"),
    (np.zeros((1, 2), np.float32), r"shape \(2,\)"),
    (np.float32(0.5), r"shape \(2,\)"),
    (np.array([np.nan, 0.0]), "NaN"),
    (np.array([0.0, np.inf]), "inf"),
    ("left", "numeric"),
    (None, r"shape \(2,\)"),
])
def test_bad_actions_raise_and_leave_the_env_unchanged(action: Any, match: str) -> None:
    env = _make(xi=5.0)
    obs0, _ = env.reset(seed=1)
    with pytest.raises(ValueError, match=match):
        env.unwrapped.step(action)
    assert env.unwrapped.done is False and env.unwrapped.x is None
    obs, *_ = env.step(np.zeros(2, np.float32))  # still usable
    np.testing.assert_array_equal(obs, obs0)


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
    ({"target": np.zeros(3)}, r"shape \(2,\)"),
    ({"target": [1.5, 0.0]}, r"\[-1, 1\]"),
    ({"target": [np.nan, 0.0]}, "NaN"),
    ({"target": "abc"}, "numeric"),
    ({"traget": [0.0, 0.0]}, "Unknown reset options"),
    (3, "must be a dict"),
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



@pytest.mark.parametrize("options", [{"target": [5.0, 5.0]}, {"target": [np.nan, 0.0]},
                                     {"traget": [0.0, 0.0]}])
def test_rejected_reset_changes_neither_the_episode_nor_the_stream(
        options: dict[str, Any]) -> None:
    """Options are checked before reseeding: a rejected ``reset(seed=5, ...)`` leaves the target
    and the generator as they were after ``reset(seed=0)``."""
    env, ref = _make(), _make()
    obs0, _ = env.reset(seed=0)
    ref.reset(seed=0)
    state = env.unwrapped.np_random.bit_generator.state
    with pytest.raises(ValueError):
        env.reset(seed=5, options=options)
    assert env.unwrapped.np_random.bit_generator.state == state
    np.testing.assert_array_equal(env.unwrapped.target[0].numpy().astype(np.float32),
                                  obs0)  # the episode is untouched
    np.testing.assert_array_equal(env.reset()[0], ref.reset()[0])  # and so is the stream

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


def test_seeded_determinism_and_unseeded_stream() -> None:
    def episodes(seed: int) -> list[Any]:
        env = _make(xi=10.0, phi=5.0)
        out = [env.reset(seed=seed)[0]]
        for a in np.random.default_rng(0).uniform(-1, 1, (4, 2)):
            out.append(env.step(a)[1])
            out.append(env.reset()[0])
        return out

    a, b, c = episodes(42), episodes(42), episodes(43)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0], a[2])  # seedless resets draw new targets


def test_pickle_round_trip() -> None:
    env = _make(xi=4.0, phi=12.0)
    env.reset(seed=11)
    clone = pickle.loads(pickle.dumps(env.unwrapped))
    action = np.array([0.2, -0.4], np.float32)
    r1, r2 = env.unwrapped.step(action), clone.step(action)
    assert r1[1] == r2[1]
    np.testing.assert_array_equal(env.unwrapped.reset()[0], clone.reset()[0])


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


def test_render_without_mode_warns_and_returns_none() -> None:
    env = _make()
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert env.unwrapped.render() is None


# --- native vector env ---------------------------------------------------------------------------


def _make_vec(num_envs: int, **kwargs: Any) -> gym.vector.VectorEnv:
    return gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **kwargs)


def test_vector_env_matches_single_envs_and_sync_info_layout() -> None:
    num_envs, kwargs = 4, {"xi": 8.0, "phi": 33.0}
    envs = _make_vec(num_envs, **kwargs)
    assert isinstance(envs.unwrapped, SineInversionVectorEnv)
    assert envs.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    rng = np.random.default_rng(2)
    targets = rng.uniform(-1, 1, (num_envs, 2))
    actions = rng.uniform(-1.2, 1.2, (num_envs, 2))
    obs, _ = envs.reset(seed=0, options={"target": targets})
    np.testing.assert_array_equal(obs, targets.astype(np.float32))
    new_obs, reward, terminated, truncated, info = envs.step(actions)
    assert new_obs.shape == (num_envs, 2) and new_obs.dtype == np.float32
    assert not np.array_equal(new_obs, obs)  # SAME_STEP: the next targets
    assert terminated.all() and not truncated.any() and reward.dtype == np.float64
    for i in range(num_envs):
        env = _make(**kwargs)
        env.reset(options={"target": targets[i]})
        _, r, _, _, inf = env.step(actions[i])
        assert reward[i] == pytest.approx(r, rel=1e-12)
        assert info["final_info"]["x_distance"][i] == pytest.approx(inf["x_distance"])
        np.testing.assert_array_equal(info["final_obs"][i], targets[i].astype(np.float32))
    # Same keys and masks as Gymnasium's SyncVectorEnv in SAME_STEP mode.
    sync = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP}, **kwargs)
    sync.reset(seed=0)
    *_, sync_info = sync.step(actions)
    assert set(info) == set(sync_info)
    assert set(info["final_info"]) == set(sync_info["final_info"])
    for key, value in sync_info["final_info"].items():
        assert np.shape(info["final_info"][key]) == np.shape(value)


def test_vector_env_seeding_bad_actions_and_render() -> None:
    a, b = _make_vec(3, xi=2.0), _make_vec(3, xi=2.0)
    np.testing.assert_array_equal(a.reset(seed=7)[0], b.reset(seed=7)[0])
    act = np.zeros((3, 2), np.float32)
    np.testing.assert_array_equal(a.step(act)[0], b.step(act)[0])
    with pytest.raises(ValueError, match=r"shape \(3, 2\)"):
        a.step(np.zeros(2))
    with pytest.raises(ValueError, match="NaN"):
        a.step(np.full((3, 2), np.nan))
    a.step(torch.zeros(3, 2))  # torch actions are accepted
    with pytest.raises(RuntimeError, match="reset"):
        _make_vec(2).step(np.zeros((2, 2)))
    with pytest.raises(ValueError, match="num_envs"):
        SineInversionVectorEnv(num_envs=0)
    r = _make_vec(2, render_mode="rgb_array")
    r.reset(seed=0)
    r.step(np.full((2, 2), 0.3))
    frames = r.render()
    assert len(frames) == 2 and all(f.shape == FRAME_SHAPE for f in frames)



@pytest.mark.parametrize("options", [{"target": np.full((3, 2), 5.0)}, {"target": [0.0, 0.0]},
                                     {"traget": np.zeros((3, 2))}])
def test_vector_env_rejected_reset_changes_neither_the_targets_nor_the_stream(
        options: dict[str, Any]) -> None:
    envs, ref = _make_vec(3, xi=2.0), _make_vec(3, xi=2.0)
    obs0, _ = envs.reset(seed=0)
    ref.reset(seed=0)
    with pytest.raises(ValueError):
        envs.reset(seed=5, options=options)
    np.testing.assert_array_equal(envs.unwrapped.target.numpy().astype(np.float32), obs0)
    np.testing.assert_array_equal(envs.reset()[0], ref.reset()[0])
    act = np.full((3, 2), 0.25)
    np.testing.assert_array_equal(envs.step(act)[0], ref.step(act)[0])


@pytest.mark.parametrize("num_envs", [np.int64(3), np.int32(3), np.uint8(3)])
def test_vector_env_accepts_numpy_integer_num_envs(num_envs: Any) -> None:
    envs = SineInversionVectorEnv(num_envs=num_envs)
    assert envs.num_envs == 3 and type(envs.num_envs) is int
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (3, 2) and envs.action_space.shape == (3, 2)
    # The same targets as with a Python int.
    np.testing.assert_array_equal(obs, SineInversionVectorEnv(num_envs=3).reset(seed=0)[0])


@pytest.mark.parametrize("num_envs", [True, np.bool_(True), 0, -1, np.int64(0), 2.0, "2", None])
def test_vector_env_rejects_bad_num_envs(num_envs: Any) -> None:
    with pytest.raises(ValueError, match="num_envs"):
        SineInversionVectorEnv(num_envs=num_envs)

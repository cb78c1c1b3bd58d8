"""``sip/HeatInverse-v0`` (single and native vector env) through the public Gymnasium API."""

from __future__ import annotations

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
from sipenv.envs.heat_inverse import FRAME_SHAPE, HeatInverseEnv, HeatInverseVectorEnv
from sipenv.physics import HeatPhysics

ENV_ID = "sip/HeatInverse-v0"
H = W = 64

# Observation (y*) and action (the reconstructed field x) are physical fields, unbounded by
# design; any other check_env warning is a failure.
ALLOWED_CHECK_ENV_WARNINGS = (
    r"A Box (observation|action) space minimum value is -infinity",
    r"A Box (observation|action) space maximum value is infinity",
)


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


def test_registered_with_single_and_vector_entry_points() -> None:
    assert ENV_ID in sipenv.ENV_IDS
    spec = gym.spec(ENV_ID)
    assert spec.namespace == "sip" and spec.version == 0
    assert isinstance(spec.entry_point, str) and isinstance(spec.vector_entry_point, str)
    env = _make()
    assert isinstance(env.unwrapped, HeatInverseEnv)
    assert isinstance(env.unwrapped.physics, HeatPhysics)
    assert env.unwrapped.physics.shape == (H, W) and env.unwrapped.physics.nu_t == 8.0
    assert isinstance(_make_vec(2).unwrapped, HeatInverseVectorEnv)


@pytest.mark.parametrize("kwargs", [{}, {"render_mode": "rgb_array"},
                                    {"dtype": "float32", "shape": (16, 24), "nu_t": 2.0}])
def test_check_env_passes_with_only_allowed_warnings(kwargs: dict[str, Any]) -> None:
    env = _make(**kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    unexpected = [str(w.message) for w in caught
                  if not any(re.search(p, str(w.message)) for p in ALLOWED_CHECK_ENV_WARNINGS)]
    assert not unexpected, f"check_env emitted unexpected warnings: {unexpected}"


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


@pytest.mark.parametrize("options,match", [
    ({"initial": np.zeros((H, W - 1))}, r"shape \(64, 64\)"),
    ({"initial": np.full((H, W), np.nan)}, "NaN"),
    ({"initial": "abc"}, "numeric"),
    ({"target": np.zeros((H, W))}, "Unknown reset options"),
    ([("initial", 0)], "must be a dict"),
])
def test_bad_reset_options_raise_and_change_nothing(options: Any, match: str) -> None:
    env, ref = _make(), _make()
    obs0, _ = env.reset(seed=0)
    ref.reset(seed=0)
    with pytest.raises(ValueError, match=match):
        env.reset(seed=5, options=options)
    np.testing.assert_array_equal(env.unwrapped._obs()[0], obs0)  # the episode is untouched
    np.testing.assert_array_equal(env.reset()[0], ref.reset()[0])  # and so is the stream


def test_step_after_the_single_step_and_before_reset_raise() -> None:
    env = _make()
    env.reset(seed=0)
    env.step(np.zeros((H, W), np.float32))
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.step(np.zeros((H, W), np.float32))
    with pytest.raises(RuntimeError, match="reset"):
        _make().unwrapped.step(np.zeros((H, W), np.float32))
    with pytest.raises(ResetNeeded):
        _make().step(np.zeros((H, W), np.float32))


@pytest.mark.parametrize("action,match", [
    (np.zeros((H, W + 1), np.float32), r"shape \(64, 64\) \(the reconstructed initial field\)"),
    (np.zeros((1, H, W), np.float32), r"shape \(64, 64\)"),
    (np.zeros(H * W, np.float32), r"shape \(64, 64\)"),
    (np.where(np.eye(H, W) > 0, np.nan, 0.0), "NaN or inf"),
    (np.full((H, W), np.inf), r"NaN or inf.*np\.nan_to_num"),
    ("hot", "numeric"),
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


def test_seeded_determinism_and_unseeded_stream() -> None:
    actions = np.random.default_rng(0).normal(size=(3, H, W)).astype(np.float32)

    def episodes(seed: int) -> list[Any]:
        env = _make()
        out = [env.reset(seed=seed)[0]]
        for a in actions:
            out.append(env.step(a)[1])
            out.append(env.reset()[0])
        return out

    a, b, c = episodes(42), episodes(42), episodes(43)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0], a[2])  # seedless resets draw new problems


def test_pickle_round_trip() -> None:
    env = _make()
    env.reset(seed=11)
    clone = pickle.loads(pickle.dumps(env.unwrapped))
    action = np.ones((H, W), np.float32)
    assert env.unwrapped.step(action)[1] == clone.step(action)[1]
    np.testing.assert_array_equal(env.unwrapped.reset()[0], clone.reset()[0])


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


def test_render_without_mode_warns_and_returns_none() -> None:
    env = _make()
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert env.unwrapped.render() is None


# --- native vector env ---------------------------------------------------------------------------


def test_vector_env_matches_single_envs_and_autoresets() -> None:
    num_envs = 3
    envs = _make_vec(num_envs)
    assert isinstance(envs.unwrapped, HeatInverseVectorEnv)
    assert envs.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    assert envs.single_action_space == gym.spaces.Box(-np.inf, np.inf, (H, W), np.float32)
    assert envs.action_space.shape == envs.observation_space.shape == (num_envs, H, W)
    obs, info = envs.reset(seed=0)
    assert obs.shape == (num_envs, H, W) and obs.dtype == np.float32 and info == {}
    x_true = envs.unwrapped.x_true.numpy().copy()
    actions = np.random.default_rng(2).uniform(0, 3, (num_envs, H, W)).astype(np.float32)
    actions[0] = x_true[0]  # an exact answer
    new_obs, reward, terminated, truncated, info = envs.step(actions)
    assert new_obs.shape == (num_envs, H, W) and new_obs.dtype == np.float32
    assert terminated.all() and not truncated.any() and reward.dtype == np.float64
    assert reward[0] == 0.0
    for i in range(num_envs):
        env = _make()
        o, _ = env.reset(options={"initial": x_true[i]})
        np.testing.assert_allclose(o, obs[i], rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(info["final_obs"][i], obs[i])
        _, r, _, _, inf = env.step(actions[i])
        assert reward[i] == pytest.approx(r, rel=1e-9, abs=1e-12)
        for key in ("x_error", "y_loss"):
            assert info["final_info"][key][i] == pytest.approx(inf[key], rel=1e-9, abs=1e-12)
        # SAME_STEP: the returned observation is a new problem.
        assert not np.array_equal(new_obs[i], obs[i])
    np.testing.assert_allclose(new_obs, _ref_forward(envs.unwrapped.x_true.numpy(), 8.0),
                               rtol=1e-5, atol=1e-6)
    # Same keys and masks as Gymnasium's SyncVectorEnv in SAME_STEP mode.
    sync = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    sync.reset(seed=0)
    *_, sync_info = sync.step(actions)
    assert set(info) == set(sync_info)
    assert set(info["final_info"]) == set(sync_info["final_info"])
    for key, value in sync_info["final_info"].items():
        assert np.shape(info["final_info"][key]) == np.shape(value)


def test_vector_env_options_seeding_bad_actions_and_render() -> None:
    a, b = _make_vec(2), _make_vec(2)
    np.testing.assert_array_equal(a.reset(seed=7)[0], b.reset(seed=7)[0])
    act = np.zeros((2, H, W), np.float32)
    np.testing.assert_array_equal(a.step(act)[0], b.step(act)[0])
    state = a.unwrapped.x_true.clone()
    for bad, match in ((np.zeros((H, W)), r"shape \(2, 64, 64\)"),
                       (np.full((2, H, W), np.nan), "NaN or inf"), ("x", "numeric")):
        with pytest.raises(ValueError, match=match):
            a.step(bad)
    assert torch.equal(a.unwrapped.x_true, state)
    np.testing.assert_array_equal(a.step(torch.zeros(2, H, W))[0], b.step(act)[0])
    x = np.random.default_rng(0).uniform(size=(2, H, W))
    obs, _ = a.reset(options={"initial": x})
    np.testing.assert_allclose(obs, _ref_forward(x, 8.0), rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match=r"shape \(2, 64, 64\)"):
        a.reset(options={"initial": x[0]})
    with pytest.raises(RuntimeError, match="reset"):
        _make_vec(2).step(act)
    with pytest.raises(ValueError, match="num_envs"):
        HeatInverseVectorEnv(num_envs=0)
    r = _make_vec(2, render_mode="rgb_array")
    r.reset(seed=0)
    first = r.render()
    r.step(np.full((2, H, W), 0.3, np.float32))
    frames = r.render()
    assert len(frames) == 2 and all(f.shape == FRAME_SHAPE and f.dtype == np.uint8
                                    for f in frames)
    assert np.any(frames[0] != first[0])

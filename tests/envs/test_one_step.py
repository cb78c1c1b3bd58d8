"""The one-step shells (:mod:`sipenv.envs.one_step`): the templates through a minimal task, and
the shared behaviour of every one-step env."""

from __future__ import annotations

import re
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode

from sipenv.envs.heat_inverse import HeatInverseEnv, HeatInverseVectorEnv
from sipenv.envs.one_step import OneStepEnv, OneStepTask, OneStepVectorEnv
from sipenv.envs.settings import Factory
from sipenv.envs.sine_inversion import SineInversionEnv, SineInversionVectorEnv

# --- a minimal task: guess a number y* ∈ [0, 1); its hooks written once, batched ------------------


def _check(value: Any, shape: tuple[int, ...], what: str) -> np.ndarray:
    arr = np.asarray(value, dtype=np.float64)
    if arr.shape != shape or not np.isfinite(arr).all():
        raise ValueError(f"{what} must be finite, of shape {shape}.")
    return arr


def _draw(y: float, x: float | None) -> np.ndarray:
    frame = np.zeros((4, 6, 3), np.uint8)
    frame[..., 0] = int(255 * y)
    if x is not None:
        frame[..., 1] = 255
    return frame


class GuessTask(OneStepTask):
    """Guess ``y* ~ U[0, 1)``; reward ``−(x − y*)²``."""

    make_task = Factory("guess", {}, lambda kw: None)
    frames_drawn = 0

    def _configure(self, model: Any) -> tuple[spaces.Space[Any], spaces.Space[Any]]:
        self.y: torch.Tensor | None = None
        return (spaces.Box(0.0, 1.0, (1,), np.float32), spaces.Box(0.0, 1.0, (1,), np.float32))

    def _options_space(self) -> spaces.Dict:
        return spaces.Dict({"y": spaces.Box(0.0, 1.0, (1,), np.float64)})

    def _parse_options(self, options: Any) -> np.ndarray | None:
        if set(options or {}) - {"y"}:
            raise ValueError("Unknown reset options; accepted: 'y'.")
        if not options or "y" not in options:
            return None
        return _check(options["y"], (*self._batch_shape, 1), "options['y']")

    def _pose(self, given: np.ndarray | None) -> None:
        y = self.np_random.uniform(size=(*self._batch_shape, 1))
        self.y = torch.as_tensor(y if given is None else given,
                                 dtype=self.dtype).reshape(self._batch_size, 1)

    def _problem(self) -> torch.Tensor | None:
        return self.y

    def _answer(self, action: Any) -> torch.Tensor:
        arr = _check(action, (*self._batch_shape, 1), "action")
        return torch.as_tensor(arr, dtype=self.dtype).reshape(self._batch_size, 1)

    def _score(self, x: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        assert self.y is not None
        err = ((x - self.y) ** 2).sum(-1).numpy()
        return -err, {"err": err, "x": x.numpy().copy()}

    def _obs(self) -> np.ndarray:
        assert self.y is not None
        return self.y.numpy().astype(np.float32)

    def _frames(self) -> tuple[np.ndarray, ...]:
        y = self._shown_problem()
        assert y is not None
        self.frames_drawn += 1
        return tuple(_draw(float(y[i, 0]), None if self.x is None else float(self.x[i, 0]))
                     for i in range(self._batch_size))


class Guess(GuessTask, OneStepEnv):
    """One :class:`GuessTask`."""


class GuessVector(GuessTask, OneStepVectorEnv):
    """``num_envs`` :class:`GuessTask` problems."""

    def __init__(self, num_envs: int = 2, render_mode: str | None = None) -> None:
        super().__init__(num_envs, render_mode)


# --- the single-env template ---------------------------------------------------------------------


def test_minimal_task_passes_check_env() -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(Guess(render_mode="rgb_array"))
    # The one expected warning: an env made without gym.make has no spec to try other modes.
    assert not [str(w.message) for w in caught if "not having a spec" not in str(w.message)]


def test_single_env_template() -> None:
    env = Guess(render_mode="rgb_array")
    with pytest.raises(RuntimeError, match=re.escape("Call reset() before step().")):
        env.step(np.zeros(1))
    with pytest.raises(RuntimeError, match=re.escape("Call reset() before render().")):
        env.render()
    obs, info = env.reset(seed=0, options={"y": [0.25]})
    assert info == {} and obs.dtype == np.float32 and obs[0] == 0.25
    assert env.x is None and env.done is False
    before = env.render()
    obs2, reward, terminated, truncated, info = env.step(np.array([0.75]))
    assert (terminated, truncated) == (True, False) and isinstance(reward, float)
    assert reward == -0.25 and info["err"] == 0.25 and isinstance(info["err"], float)
    np.testing.assert_array_equal(info["x"], [0.75])  # arrays: one sub-env's row
    np.testing.assert_array_equal(obs2, obs)  # the observation of the answered problem
    assert env.done is True and float(env.x[0, 0]) == 0.75
    assert np.any(env.render() != before)  # the frame shows the answer
    with pytest.raises(RuntimeError, match=r"single step; call reset\(\)"):
        env.step(np.array([0.75]))
    env.reset()
    assert env.x is None and env.done is False and env._last_info is None


def test_rejected_action_changes_nothing() -> None:
    env = Guess()
    obs, _ = env.reset(seed=1)
    with pytest.raises(ValueError, match="finite"):
        env.step(np.array([np.nan]))
    assert env.done is False and env.x is None and env._last_info is None
    np.testing.assert_array_equal(env.step(np.zeros(1))[0], obs)


@pytest.mark.parametrize("options", [{"z": [0.5]}, {"y": [0.5, 0.5]}])
def test_rejected_reset_neither_reseeds_nor_advances_the_generator(options: Any) -> None:
    env, ref = Guess(), Guess()
    obs, _ = env.reset(seed=0)
    ref.reset(seed=0)
    state = env.np_random.bit_generator.state
    with pytest.raises(ValueError):
        env.reset(seed=5, options=options)
    assert env.np_random.bit_generator.state == state
    np.testing.assert_array_equal(env._obs()[0], obs)
    np.testing.assert_array_equal(env.reset()[0], ref.reset()[0])


def test_human_mode_draws_on_reset_and_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SDL_VIDEODRIVER", "dummy")
    env = Guess(render_mode="human")
    env.reset(seed=0)
    assert env.frames_drawn == 1
    assert env.step(np.zeros(1))[2] is True
    assert env.frames_drawn == 2
    env.close()


def test_single_env_render_mode() -> None:
    with pytest.raises(ValueError, match=r"render_mode must be one of \['human', 'rgb_array'\]"):
        Guess(render_mode="bogus")
    env = Guess()
    env.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert env.render() is None


# --- the vector-env template ---------------------------------------------------------------------


def test_vector_env_same_step_autoreset_and_info_layout() -> None:
    envs = GuessVector(3, render_mode="rgb_array")
    assert envs.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    with pytest.raises(RuntimeError, match=re.escape("Call reset() before step().")):
        envs.step(np.zeros((3, 1)))
    with pytest.raises(RuntimeError, match=re.escape("Call reset() before render().")):
        envs.render()
    y = np.array([[0.1], [0.2], [0.3]])
    obs, info = envs.reset(seed=0, options={"y": y})
    assert info == {}
    first = envs.render()
    new_obs, reward, terminated, truncated, info = envs.step(np.full((3, 1), 0.5))
    assert terminated.dtype == truncated.dtype == np.bool_
    assert terminated.all() and not truncated.any()
    np.testing.assert_allclose(reward, -((0.5 - y[:, 0]) ** 2))
    assert not np.array_equal(new_obs, obs)  # new problems, drawn from the env's generator
    mask = np.ones(3, dtype=bool)
    assert list(info) == ["final_obs", "_final_obs", "final_info", "_final_info"]
    assert info["final_obs"].dtype == object
    np.testing.assert_array_equal(np.stack(info["final_obs"]), obs)
    assert list(info["final_info"]) == ["err", "_err", "x", "_x"]
    for key in ("_final_obs", "_final_info", "_err", "_x"):
        container = info if key in info else info["final_info"]
        np.testing.assert_array_equal(container[key], mask)
    # The frames show the answered problems and answers, whatever the caller does to `info`.
    info["final_info"]["err"][:] = -1.0
    frames = envs.render()
    assert all(np.any(f != b) for f, b in zip(frames, first, strict=True))
    assert envs._last_info is not None and np.all(envs._last_info["err"] >= 0)
    np.testing.assert_array_equal(frames[0][0, 0], [int(255 * 0.1), 255, 0])
    envs.reset()
    assert envs.x is None and envs._answered is None and envs._last_info is None


def test_vector_env_rejected_reset_and_action_change_nothing() -> None:
    envs, ref = GuessVector(2), GuessVector(2)
    obs, _ = envs.reset(seed=0)
    ref.reset(seed=0)
    with pytest.raises(ValueError, match="Unknown reset options"):
        envs.reset(seed=5, options={"z": np.zeros((2, 1))})
    with pytest.raises(ValueError, match=r"shape \(2, 1\)"):
        envs.step(np.zeros(2))
    np.testing.assert_array_equal(envs._obs(), obs)
    assert envs.x is None
    act = np.full((2, 1), 0.5)
    for a, b in zip(envs.step(act)[:4], ref.step(act)[:4], strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("num_envs", [3, np.int64(3), np.int16(3)])
def test_vector_env_accepts_python_and_numpy_ints(num_envs: Any) -> None:
    envs = GuessVector(num_envs)
    assert envs.num_envs == 3 and type(envs.num_envs) is int
    assert envs.action_space.shape == envs.observation_space.shape == (3, 1)


@pytest.mark.parametrize("num_envs", [True, False, np.bool_(True), 0, -2, np.int64(0), 1.0,
                                      "3", None])
def test_vector_env_rejects_bad_num_envs(num_envs: Any) -> None:
    with pytest.raises(ValueError, match=r"num_envs must be an int ≥ 1"):
        GuessVector(num_envs)


def test_vector_env_render_mode() -> None:
    with pytest.raises(ValueError, match=r"render_mode must be one of.*for the vector env"):
        GuessVector(2, render_mode="human")
    envs = GuessVector(2)
    envs.reset(seed=0)
    with pytest.warns(UserWarning, match="render_mode"):
        assert envs.render() is None


# --- every one-step env shares the shells --------------------------------------------------------

ONE_STEP_ENVS = [(SineInversionEnv, SineInversionVectorEnv, {}),
                 (HeatInverseEnv, HeatInverseVectorEnv, {"shape": (8, 8), "nu_t": 0.5})]


@pytest.mark.parametrize("single,vector,kwargs", ONE_STEP_ENVS)
def test_one_step_envs_share_the_shells(single: type, vector: type,
                                        kwargs: dict[str, Any]) -> None:
    assert issubclass(single, OneStepEnv) and issubclass(vector, OneStepVectorEnv)
    env = single(**kwargs)
    assert env.metadata == {"render_modes": ["human", "rgb_array"], "render_fps": 4}
    assert env.action_space is not env.observation_space  # seeding one leaves the other
    envs = vector(np.int64(2), **kwargs)
    assert envs.num_envs == 2
    assert envs.metadata["autoreset_mode"] is AutoresetMode.SAME_STEP
    assert envs.metadata["render_fps"] == 4
    with pytest.raises(ValueError, match="num_envs"):
        vector(True, **kwargs)
    with pytest.raises(ValueError, match="for the vector env"):
        vector(2, render_mode="human", **kwargs)
    env.reset(seed=0)
    env.step(env.action_space.sample())
    with pytest.raises(RuntimeError, match=r"call reset\(\)"):
        env.step(env.action_space.sample())


def test_registered_vector_entry_points_take_numpy_ints() -> None:
    for env_id in ("sip/SineInversion-v0", "sip/HeatInverse-v0"):
        envs = gym.make_vec(env_id, num_envs=np.int64(2),
                            vectorization_mode="vector_entry_point")
        assert envs.unwrapped.num_envs == 2

"""Gymnasium shells over a one-step inverse problem: a single env and a native batched
:class:`gymnasium.vector.VectorEnv`.

In a one-step inverse problem every episode is a single question and its answer: ``reset`` poses
a problem (the observation), ``step`` scores the answer (the action) and ends the episode.
:class:`OneStepEnv` / :class:`OneStepVectorEnv` hold what every such task shares (validation of
the arguments, the reset and step templates, SAME_STEP autoreset, the ``final_obs`` /
``final_info`` layout, rendering); a concrete environment (:mod:`sipenv.envs.sine_inversion`,
:mod:`sipenv.envs.heat_inverse`) supplies the task-specific hooks and documents the task.
"""

from __future__ import annotations

from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from sipenv.envs.control import (
    _check_num_envs,
    _check_render_mode,
    parse_device,
    parse_dtype,
)
from sipenv.envs.rendering import FramePresenter

__all__ = ["OneStepEnv", "OneStepVectorEnv"]


class OneStepEnv(FramePresenter, gym.Env[np.ndarray, np.ndarray]):
    """One episode of a one-step inverse problem behind the Gymnasium API: ``reset`` poses a
    problem, the single ``step`` scores the answer and ends the episode (``terminated=True``).

    A subclass builds the physics and the spaces and supplies the task-specific parts: the reset
    options (:meth:`_parse_options`), posing a problem (:meth:`_pose`), the current problem
    (:meth:`_problem`), the answer an action stands for (:meth:`_answer`), its reward and info
    (:meth:`_score`), the observation (:meth:`_obs`) and the frame (:meth:`_frame`).

    Attributes:
        physics: The task's physics (whatever the subclass passes in).
        x: The answer of the last step, a batch of one (``None`` before it).
        done: Whether the episode's single step has been taken.
    """

    metadata: dict[str, Any] = {"render_modes": ["human", "rgb_array"], "render_fps": 4}
    title: str = "sipenv"  # the caption of the "human" window

    def __init__(self, physics: Any, *, action_space: spaces.Space[Any],
                 observation_space: spaces.Space[Any], render_mode: str | None = None,
                 device: str | torch.device = "cpu",
                 dtype: str | torch.dtype = "float64") -> None:
        _check_render_mode(render_mode, self.metadata["render_modes"])
        self.physics = physics
        self.device = parse_device(device)
        self.dtype = parse_dtype(dtype)
        self.render_mode = render_mode
        self.action_space = action_space
        self.observation_space = observation_space
        self.x: torch.Tensor | None = None
        self.done = False
        self._last_info: dict[str, Any] | None = None  # the last step's info (for rendering)
        self._window: Any = None

    # --- Gymnasium API --------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Pose a new problem: drawn from the env's generator, or taken from ``options``.

        Args:
            seed: Seeds the env's generator (all task randomness comes from it).
            options: The task's reset options (see the env's Starting State).

        Raises:
            ValueError: For invalid ``options``; the env is left unchanged, its generator
                included (it is neither reseeded nor advanced).
        """
        # Options are checked before super().reset(): a rejected reset neither reseeds nor
        # advances the env's generator, and leaves the episode in progress untouched.
        given = self._parse_options(options)
        super().reset(seed=seed)
        self._pose(given)
        self.x, self.done, self._last_info = None, False, None
        if self.render_mode == "human":
            self.render()
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Answer the posed problem with ``action``; the episode ends (``terminated=True``).

        Raises:
            RuntimeError: Before :meth:`reset` or after the (one-step) episode has ended.
            ValueError: For an invalid action, e.g. of the wrong shape or with NaN/inf entries
                (the env is left unchanged).
        """
        if self._problem() is None:
            raise RuntimeError("Call reset() before step().")
        if self.done:
            raise RuntimeError("The episode ended after its single step; call reset() to pose a "
                               "new problem.")
        x = self._answer(action)
        reward, info = self._score(x)
        self.x, self.done, self._last_info = x, True, dict(info)
        if self.render_mode == "human":
            self.render()
        return self._obs(), reward, True, False, info

    def render(self) -> np.ndarray | None:
        """``"rgb_array"``: return an ``(H, W, 3) uint8`` frame of the problem and the last answer;
        ``"human"``: show it."""
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; pass "
                            "render_mode='rgb_array' or 'human' to gym.make.")
            return None
        if self._problem() is None:
            raise RuntimeError("Call reset() before render().")
        return self._present(self._frame(), self.title)

    # --- the task-specific parts ----------------------------------------------------------------

    def _parse_options(self, options: Any) -> Any:
        """Validate ``reset``'s ``options`` (before anything changes) into what :meth:`_pose`
        takes; ``None`` when they pose no specific problem.

        Raises:
            ValueError: For invalid options, with a message that says what is accepted.
        """
        raise NotImplementedError

    def _pose(self, given: Any) -> None:
        """Draw a problem from ``self.np_random`` (or take ``given``, from
        :meth:`_parse_options`) and store it."""
        raise NotImplementedError

    def _problem(self) -> Any:
        """The current problem; ``None`` before the first :meth:`reset`."""
        raise NotImplementedError

    def _answer(self, action: Any) -> torch.Tensor:
        """The validated answer (a batch of one, in the env's device and dtype) that ``action``
        stands for.

        Raises:
            ValueError: For an invalid action; nothing may change before this is raised.
        """
        raise NotImplementedError

    def _score(self, x: torch.Tensor) -> tuple[float, dict[str, Any]]:
        """The reward and the info of the answer ``x`` to the current problem."""
        raise NotImplementedError

    def _obs(self) -> np.ndarray:
        """The observation of the current problem."""
        raise NotImplementedError

    def _frame(self) -> np.ndarray:
        """An ``(H, W, 3) uint8`` frame of the current problem and answer (:attr:`x` and the
        info of the last step, ``None`` before it)."""
        raise NotImplementedError


class OneStepVectorEnv(VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    """``num_envs`` one-step inverse problems, posed and scored as one torch batch (the vector
    counterpart of :class:`OneStepEnv`, with the same task-specific hooks, batched; the frames
    come from :meth:`_frames`).

    Every step ends every episode, so autoreset is ``AutoresetMode.SAME_STEP``: ``step`` scores
    the actions against the current problems, poses new ones and returns their observations; the
    answered observations are in ``info["final_obs"]`` and the per-env step infos in
    ``info["final_info"]`` (with the ``_key`` masks Gymnasium's ``SyncVectorEnv`` uses).

    Attributes:
        physics: The task's physics (whatever the subclass passes in).
        x: The answers of the last step, ``(num_envs, ...)`` (``None`` before it).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 4,
                                "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, physics: Any, *, num_envs: int, single_action_space: spaces.Space[Any],
                 single_observation_space: spaces.Space[Any], render_mode: str | None = None,
                 device: str | torch.device = "cpu",
                 dtype: str | torch.dtype = "float64") -> None:
        num_envs = _check_num_envs(num_envs)
        _check_render_mode(render_mode, self.metadata["render_modes"], " for the vector env")
        self.physics = physics
        self.device = parse_device(device)
        self.dtype = parse_dtype(dtype)
        self.num_envs = int(num_envs)
        self.render_mode = render_mode
        self.single_action_space = single_action_space
        self.action_space = batch_space(single_action_space, self.num_envs)
        self.single_observation_space = single_observation_space
        self.observation_space = batch_space(single_observation_space, self.num_envs)
        # The last step's answers, the problems they answered and their infos (for rendering).
        self.x: torch.Tensor | None = None
        self._answered: Any = None
        self._last_info: dict[str, np.ndarray] | None = None

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Pose ``num_envs`` new problems: drawn from the env's generator, or taken from
        ``options`` (batched: a leading ``num_envs`` axis).

        Raises:
            ValueError: For invalid ``options``; the env is left unchanged, its generator
                included.
        """
        # Checked first: a rejected reset changes neither the generator nor any sub-env.
        given = self._parse_options(options)
        super().reset(seed=seed)
        self._pose(given)
        self.x = self._answered = self._last_info = None
        return self._obs(), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        """Score ``actions`` (one answer per sub-env), then pose new problems (SAME_STEP).

        Raises:
            RuntimeError: Before :meth:`reset`.
            ValueError: For an invalid action batch, e.g. of the wrong shape or with NaN/inf
                entries (nothing is changed).
        """
        if self._problem() is None:
            raise RuntimeError("Call reset() before step().")
        x = self._answer(actions)
        reward, step_info = self._score(x)
        ended = np.ones(self.num_envs, dtype=bool)
        final_obs = np.empty(self.num_envs, dtype=object)
        final_obs[:] = list(self._obs())
        final_info: dict[str, np.ndarray] = {}
        for key, value in step_info.items():
            final_info[key] = value
            final_info[f"_{key}"] = ended.copy()
        info = {"final_obs": final_obs, "_final_obs": ended.copy(), "final_info": final_info,
                "_final_info": ended.copy()}
        self._answered, self.x = self._problem(), x
        self._last_info = {key: np.copy(value) for key, value in step_info.items()}
        # --- SAME_STEP autoreset: every episode ended; pose new problems ---
        self._pose(None)
        return self._obs(), reward, ended, np.zeros(self.num_envs, dtype=bool), info

    def render(self) -> tuple[np.ndarray, ...] | None:
        """``"rgb_array"``: one ``(H, W, 3) uint8`` frame per sub-env, showing its last answered
        problem and answer (or the current problem before the first step)."""
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; pass "
                            "render_mode='rgb_array' to gym.make_vec.")
            return None
        if self._problem() is None:
            raise RuntimeError("Call reset() before render().")
        return self._frames()

    # --- the task-specific parts (batched): as in OneStepEnv, for num_envs problems ------------

    def _parse_options(self, options: Any) -> Any:
        """As :meth:`OneStepEnv._parse_options`, for options with a leading ``num_envs`` axis."""
        raise NotImplementedError

    def _pose(self, given: Any) -> None:
        """As :meth:`OneStepEnv._pose`, for ``num_envs`` problems (also the SAME_STEP autoreset,
        with ``given=None``)."""
        raise NotImplementedError

    def _problem(self) -> Any:
        """The current problems (``None`` before :meth:`reset`); kept as ``_answered`` when a
        step answers them, so :meth:`_pose` must store new objects rather than write in place."""
        raise NotImplementedError

    def _answer(self, actions: Any) -> torch.Tensor:
        """As :meth:`OneStepEnv._answer`: the validated ``(num_envs, ...)`` answers."""
        raise NotImplementedError

    def _score(self, x: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The ``(num_envs,)`` float64 rewards of the answers ``x`` to the current problems, and
        the step info as ``{key: array with a leading num_envs axis}``."""
        raise NotImplementedError

    def _obs(self) -> np.ndarray:
        """The ``(num_envs, ...)`` observations of the current problems."""
        raise NotImplementedError

    def _frames(self) -> tuple[np.ndarray, ...]:
        """One frame per sub-env: its last answered problem (``_answered``), answer (:attr:`x`)
        and info (``_last_info``), or the current problem before the first step."""
        raise NotImplementedError

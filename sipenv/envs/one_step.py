"""Gymnasium shells over a one-step inverse problem: a single env and a native batched
``gymnasium.vector.VectorEnv``.

In a one-step inverse problem every episode is a single question and its answer: ``reset`` poses
a problem (the observation), ``step`` scores the answer (the action) and ends the episode.

Two layers, each written once:

- the **task hooks** (``OneStepTask``) say, in batched form only, how a task is built from
  its keywords, how it poses ``B`` problems, reads ``B`` answers, scores them, observes and draws
  them. ``OneStepTask._batch_shape`` is ``()`` in the single env (a batch of one) and
  ``(num_envs,)`` in the vector env: the leading shape users give actions and reset options in.
- the **shells** ``OneStepEnv`` / ``OneStepVectorEnv`` hold the rest: validation of
  the arguments, the reset and step templates, SAME_STEP autoreset, the ``final_obs`` /
  ``final_info`` layout, rendering, and the conversion of the batched results to what the
  single env returns (Python floats in ``info``).

A concrete environment (``sipenv.envs.sine_inversion``, ``sipenv.envs.heat_inverse``)
writes the hooks once in a task class, and its two env classes are that task plus a shell.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, SupportsFloat, TypeVar

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from sipenv.envs.checks import (
    check_disable_env_checker,
    check_max_episode_steps,
    check_num_envs,
    check_render_mode,
    parse_device,
    parse_dtype,
    ready_to_render,
)
from sipenv.envs.rendering import FramePresenter
from sipenv.envs.settings import Factory, Route

__all__ = ["OneStepEnv", "OneStepTask", "OneStepVectorEnv", "one_step_factory"]


P = TypeVar("P")
S = TypeVar("S")


def one_step_factory(owner: str, physics: type[P], settings: type[S]) -> Factory[tuple[P, S]]:
    """The task factory of a one-step env: ``gym.make`` keywords routed by name to the fields
    of ``physics`` (the physics dataclass, which owns the physics defaults) and of the env's
    ``settings`` dataclass; builds ``(physics, settings)``."""
    return Factory(owner, {"physics": Route(physics), "settings": Route(settings)},
                   lambda kw: (physics(**kw["physics"]), settings(**kw["settings"])))


class OneStepTask:
    """The task-specific hooks of a one-step env, written once in batched form for both shells.

    Attributes (set by the shells):
        physics: The task's physics (what ``_configure`` stores).
        x: The answers of the last step, ``(B, ...)`` (``None`` before it).
        device, dtype: Where and in which precision the task runs.
    """

    make_task: ClassVar[Callable[..., Any]]
    """Builds the task's model (e.g. its physics) from the env's keywords: a
    ``Factory``, set by each concrete env."""
    physics: Any
    device: torch.device
    dtype: torch.dtype
    np_random: np.random.Generator
    x: torch.Tensor | None
    _answered: Any
    _last_info: dict[str, np.ndarray] | None
    _batch_shape: tuple[int, ...]

    @property
    def _batch_size(self) -> int:
        return int(np.prod(self._batch_shape, dtype=np.int64))

    def _configure(self, model: Any) -> tuple[spaces.Space[Any], spaces.Space[Any]]:
        """Store what ``make_task`` built (e.g. as ``self.physics``); return the single
        ``(action_space, observation_space)``."""
        raise NotImplementedError

    def _options_space(self) -> spaces.Dict:
        """The reset options one problem accepts (unbatched shapes); any key may be left
        out."""
        raise NotImplementedError

    def _parse_options(self, options: Any) -> Any:
        """Validate ``reset``'s ``options`` (batched by ``_batch_shape``) before anything
        changes, into what ``_pose`` takes; ``None`` when they pose no specific problem.

        Raises:
            ValueError: For invalid options, with a message that says what is accepted.
        """
        raise NotImplementedError

    def _pose(self, given: Any) -> None:
        """Draw ``B`` problems from ``self.np_random`` (or take ``given``) and store them as new
        objects (the answered ones are kept as ``_answered``)."""
        raise NotImplementedError

    def _problem(self) -> Any:
        """The current problems; ``None`` before the first reset."""
        raise NotImplementedError

    def _answer(self, action: Any) -> torch.Tensor:
        """The validated ``(B, ...)`` answers (in the env's device and dtype) that ``action``
        (of shape ``(*_batch_shape, *single action shape)``) stands for.

        Raises:
            ValueError: For an invalid action; nothing may change before this is raised.
        """
        raise NotImplementedError

    def _score(self, x: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """The ``(B,)`` float64 rewards of the answers ``x`` to the current problems, and the
        step info as ``{key: array with a leading B axis}``."""
        raise NotImplementedError

    def _obs(self) -> np.ndarray:
        """The ``(B, ...)`` observations of the current problems."""
        raise NotImplementedError

    def _frames(self) -> tuple[np.ndarray, ...]:
        """One ``(H, W, 3) uint8`` frame per problem: the last answered problem
        (``_shown_problem``), its answer (``x``) and info (``_last_info``), or the
        current problem before the first step."""
        raise NotImplementedError

    def _shown_problem(self) -> Any:
        """The problems the frames show: the last answered ones, else the current ones."""
        return self._problem() if self._answered is None else self._answered

    def _init_task(self, kwargs: dict[str, Any], device: str | torch.device,
                   dtype: str | torch.dtype) -> tuple[spaces.Space[Any], spaces.Space[Any]]:
        factory = getattr(type(self), "make_task", None)
        if factory is None:
            raise TypeError(f"{type(self).__name__} has no make_task.")
        model = factory(**kwargs)
        self.title: str = getattr(factory, "owner", "sipenv")  # the "human" window's caption
        self.device = parse_device(device)
        self.dtype = parse_dtype(dtype)
        self.x = None
        self._answered = None
        self._last_info = None
        return self._configure(model)


class OneStepEnv(OneStepTask, FramePresenter, gym.Env[np.ndarray, np.ndarray]):
    """One episode of a one-step inverse problem behind the Gymnasium API: ``reset`` poses a
    problem, the single ``step`` scores the answer and ends the episode (``terminated=True``).
    The task's hooks (``OneStepTask``) see a batch of one.

    Attributes:
        physics: The task's physics.
        x: The answer of the last step, a batch of one (``None`` before it).
        done: Whether the episode's single step has been taken.
    """

    metadata: dict[str, Any] = {"render_modes": ["human", "rgb_array"], "render_fps": 4}
    _batch_shape = ()

    def __init__(self, render_mode: str | None = None, *, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype = "float64", **kwargs: Any) -> None:
        check_render_mode(render_mode, self.metadata["render_modes"])
        self.action_space, self.observation_space = self._init_task(kwargs, device, dtype)
        self.reset_options_space = self._options_space()
        self.render_mode = render_mode
        self.done = False
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
        self.x, self.done, self._last_info, self._answered = None, False, None, None
        if self.render_mode == "human":
            self.render()
        return self._obs()[0], {}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Answer the posed problem with ``action``; the episode ends (``terminated=True``).

        Raises:
            RuntimeError: Before ``reset`` or after the (one-step) episode has ended.
            ValueError: For an invalid action, e.g. of the wrong shape or with NaN/inf entries
                (the env is left unchanged).
        """
        if self._problem() is None:
            raise RuntimeError("Call reset() before step().")
        if self.done:
            raise RuntimeError("The episode ended after its single step; call reset() to pose a "
                               "new problem.")
        x = self._answer(action)
        reward, step_info = self._score(x)
        self.x, self.done, self._answered = x, True, self._problem()
        self._last_info = step_info
        # A batch of one: scalars as Python floats, arrays as (copied) arrays.
        info = {key: float(value[0]) if np.ndim(value) == 1 else np.array(value[0])
                for key, value in step_info.items()}
        if self.render_mode == "human":
            self.render()
        return self._obs()[0], float(reward[0]), True, False, info

    def render(self) -> np.ndarray | None:
        """``"rgb_array"``: return an ``(H, W, 3) uint8`` frame of the problem and the last answer;
        ``"human"``: show it."""
        if not ready_to_render(self.render_mode, self._problem() is not None):
            return None
        return self._present(self._frames()[0], self.title)


class OneStepVectorEnv(OneStepTask, VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    """``num_envs`` one-step inverse problems, posed and scored as one torch batch (the vector
    counterpart of ``OneStepEnv``, with the same task hooks).

    Every step ends every episode, so autoreset is ``AutoresetMode.SAME_STEP``: ``step`` scores
    the actions against the current problems, poses new ones and returns their observations; the
    answered observations are in ``info["final_obs"]`` and the per-env step infos in
    ``info["final_info"]`` (with the ``_key`` masks Gymnasium's ``SyncVectorEnv`` uses).

    ``gym.make_vec``'s ``max_episode_steps`` works as in sync mode (``SyncVectorEnv`` with
    ``autoreset_mode=SAME_STEP``): ``1`` also marks every step ``truncated``, larger values
    never bind; ``disable_env_checker`` is accepted.

    >>> import gymnasium as gym
    >>> import sipenv
    >>> envs = gym.make_vec("sip/SineInversion-v0", 4, vectorization_mode="vector_entry_point")
    >>> _ = envs.reset(seed=0)
    >>> _, _, terminated, _, info = envs.step(envs.action_space.sample())
    >>> bool(terminated.all()), len(info["final_obs"]), "x_distance" in info["final_info"]
    (True, 4, True)

    Attributes:
        physics: The task's physics.
        x: The answers of the last step, ``(num_envs, ...)`` (``None`` before it).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 4,
                                "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, *,
                 device: str | torch.device = "cpu", dtype: str | torch.dtype = "float64",
                 max_episode_steps: int | None = None, disable_env_checker: bool | None = None,
                 **kwargs: Any) -> None:
        num_envs = check_num_envs(num_envs)
        check_render_mode(render_mode, self.metadata["render_modes"], " for the vector env")
        self.max_episode_steps = check_max_episode_steps(max_episode_steps)
        check_disable_env_checker(disable_env_checker)
        self.num_envs = num_envs
        self._batch_shape = (num_envs,)
        single_action, single_obs = self._init_task(kwargs, device, dtype)
        self.render_mode = render_mode
        self.single_action_space = single_action
        self.action_space = batch_space(single_action, self.num_envs)
        self.single_observation_space = single_obs
        self.observation_space = batch_space(single_obs, self.num_envs)
        self.reset_options_space = batch_space(self._options_space(), self.num_envs)

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
            RuntimeError: Before ``reset``.
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
        truncated = np.full(self.num_envs, self.max_episode_steps == 1)
        final_info: dict[str, np.ndarray] = {}
        for key, value in step_info.items():
            # Per-env scalars as float64, as sync mode batches the single env's Python floats.
            final_info[key] = value.astype(np.float64) if value.ndim == 1 else value
            final_info[f"_{key}"] = ended.copy()
        info = {"final_obs": final_obs, "_final_obs": ended.copy(), "final_info": final_info,
                "_final_info": ended.copy()}
        self._answered, self.x = self._problem(), x
        self._last_info = {key: np.copy(value) for key, value in step_info.items()}
        # --- SAME_STEP autoreset: every episode ended; pose new problems ---
        self._pose(None)
        return self._obs(), reward, ended, truncated, info

    def render(self) -> tuple[np.ndarray, ...] | None:
        """``"rgb_array"``: one ``(H, W, 3) uint8`` frame per sub-env, showing its last answered
        problem and answer (or the current problem before the first step)."""
        if not ready_to_render(self.render_mode, self._problem() is not None, vector=True):
            return None
        return self._frames()

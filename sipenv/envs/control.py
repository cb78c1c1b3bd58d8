"""Gymnasium shells over a batched field task: a single env and a native batched
``gymnasium.vector.VectorEnv``.

Two layers, each written once:

- the **shells** ``FieldEnv`` / ``FieldVectorEnv`` hold what every field task shares:
  construction from a core, validation, stepping, costs, NEXT_STEP autoreset (vector),
  rendering. The single env is a batch of one: it holds ``(1, …)`` tensors and calls the same
  hooks as the vector env.
- the **task hooks** (``FieldTask``; ``ControlTask`` here,
  ``CorrectionTask`` for correction) say, in batched form only,
  what a task observes, rewards and draws, and how its reset options pose episodes.

``ControlEnv = ControlTask + FieldEnv`` and ``ControlVectorEnv = ControlTask + FieldVectorEnv``.
A concrete environment (e.g. ``sipenv.envs.controlled_diffusion``) only names its physics and
defaults (``control_factory``) and documents the task.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from sipenv.envs.checks import (
    as_field,
    check_disable_env_checker,
    check_max_episode_steps,
    check_num_envs,
    check_render_mode,
    checked_options,
    parse_device,
    parse_dtype,
    ready_to_render,
    seed_generator,
    validate_action,
    with_masks,
)
from sipenv.envs.core import ControlCore, TaskCore, TaskSampler
from sipenv.envs.rendering import FramePresenter
from sipenv.envs.sensing import make_sensed_core
from sipenv.envs.settings import Factory, Route

__all__ = ["ControlEnv", "ControlTask", "ControlVectorEnv", "FieldEnv", "FieldTask",
           "FieldVectorEnv", "control_factory", "parse_device", "parse_dtype"]


def control_factory(owner: str, physics: type, *, sampler: type | None = None,
                    physics_defaults: Callable[[dict[str, dict[str, Any]]], dict[str, Any]]
                    | None = None, **defaults: Any) -> Factory[ControlCore]:
    """The core factory of a control env: ``gym.make`` keywords routed to the fields of
    ``physics`` (a physics dataclass), of ``ControlCore`` and, given a ``sampler``
    dataclass (built as ``sampler(physics, horizon=…, **its other fields)``), to it.

    Args:
        owner: The env id.
        physics: The physics dataclass; it owns the physics defaults.
        sampler: Optional task sampler dataclass (else ``physics.sample_fields`` draws tasks).
        physics_defaults: Optional physics keywords that depend on the other settings,
            computed from the routed ``{group: {field: value}}`` (e.g. Burgers' ``max_speed``
            from the horizon, ``dt`` and ``force_scale``); keywords the user gives win.
        **defaults: The env's own defaults, e.g. ``horizon=16, force_scale=100.0,
            force_penalty=1e-3`` (``ControlCore`` requires these three).
    """
    routes = {"physics": Route(physics),
              "core": Route(ControlCore, exclude=("physics", "task_sampler"))}
    if sampler is not None:
        routes["sampler"] = Route(sampler, exclude=("physics", "horizon"))

    def build(kw: dict[str, dict[str, Any]]) -> ControlCore:
        extra = physics_defaults(kw) if physics_defaults is not None else {}
        phys = physics(**{**extra, **kw["physics"]})
        task_sampler: TaskSampler | None = None
        if sampler is not None:
            task_sampler = sampler(phys, horizon=kw["core"].get("horizon"), **kw["sampler"])
        return ControlCore(physics=phys, task_sampler=task_sampler, **kw["core"])

    return Factory(owner, routes, build, **defaults)


def _grid(physics: Any, n: int) -> np.ndarray:
    """Cell positions for drawing: the physics' grid, or ``j / N``."""
    return physics.grid.numpy() if hasattr(physics, "grid") else np.arange(n) / n


# --- the task hooks ------------------------------------------------------------------------------


class FieldTask:
    """The task-specific hooks of a field env, written once in batched form for both shells.

    A shell provides the inputs: ``core``, ``device``, ``dtype``, the current ``state``
    ``(B, *action_shape)`` and ``target`` (what ``core.sample_tasks`` returns), the steps taken
    ``_steps`` ``(B,)``, and ``_batch_shape`` (``()`` for the single env, ``(num_envs,)``
    for the vector env: the leading shape users give reset options in).
    """

    core: TaskCore
    device: torch.device
    dtype: torch.dtype
    horizon: int
    state: torch.Tensor | None
    target: torch.Tensor | None
    _batch_shape: tuple[int, ...]

    @property
    def _batch_size(self) -> int:
        return int(np.prod(self._batch_shape, dtype=np.int64))

    def _steps(self) -> np.ndarray:
        """Steps taken in each episode, ``(B,)``."""
        raise NotImplementedError

    def _time_fraction(self) -> torch.Tensor:
        return torch.as_tensor(self._steps() / self.horizon, dtype=torch.float32,
                               device=self.device)

    def _options_space(self) -> spaces.Dict:
        """The reset options one episode accepts (unbatched shapes), e.g.
        ``Dict(initial_state=Box(N), target=Box(N))``; any key may be left out."""
        raise NotImplementedError

    def _parse_reset(self, options: Any) -> Any:
        """Validate ``reset``'s ``options`` (batched by ``_batch_shape``) before anything
        changes; what ``_new_episodes`` takes.

        Raises:
            ValueError: For invalid options, saying what is accepted.
        """
        raise NotImplementedError

    def _new_episodes(self, given: Any, generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s0, target)`` of ``B`` new episodes: drawn from ``generator``, or posed by
        ``given`` (from ``_parse_reset``)."""
        raise NotImplementedError

    def _observations(self) -> torch.Tensor:
        """``(B, *observation_shape)`` float32 observations, with ``sensing.sensor_noise``
        on the sensor readings of the state (drawn from the episode's generator)."""
        assert self.state is not None and self.target is not None
        obs = self.core.observe(self.state, self.target, self._time_fraction())
        sigma = self.core.sensing.sensor_noise
        if sigma > 0:
            noise = torch.randn(obs.shape, generator=self._noise_generator(), device=obs.device,
                                dtype=obs.dtype)
            obs = obs + sigma * noise * self.core.sensor_noise_mask.to(obs.device)
        return obs

    def _applied_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Clipped actions ``(B, *action_shape)`` as the actuators apply them: with
        ``sensing.actuator_noise``, plus Gaussian noise (drawn from the episode's generator),
        clipped again (the actuators saturate)."""
        sigma = self.core.sensing.actuator_noise
        if sigma == 0:
            return actions
        noise = torch.randn(actions.shape, generator=self._noise_generator(),
                            device=actions.device, dtype=actions.dtype)
        return (actions + sigma * noise).clamp(-1.0, 1.0)

    def _noise_generator(self) -> torch.Generator:
        generator: torch.Generator | None = getattr(self, "_generator", None)
        if generator is None:  # an episode posed by _start(…, None) before any reset
            raise RuntimeError("Call reset() before step(): the noise is drawn from the "
                               "generator reset(seed=...) seeds.")
        return generator

    def _errors(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """``(B,)`` errors reported as ``info["target_error"]`` (and drawn on the frames),
        computed in ``dtype`` (default: the env's)."""
        raise NotImplementedError

    def _reported_errors(self) -> np.ndarray:
        """``_errors`` as float64 numpy: in the env's dtype (bit for bit what the core gives
        agents), and where that overflowed for representable inputs (e.g. a float32 target of
        1e19, whose ‖s*‖² exceeds float32), recomputed in float64."""
        out = self._errors().detach().cpu().numpy().astype(np.float64)
        bad = ~np.isfinite(out)
        if bad.any() and self.dtype != torch.float64:
            out[bad] = self._errors(torch.float64).detach().cpu().numpy()[bad]
        return out

    def _rewards(self, errors: np.ndarray, force_cost: np.ndarray,
                 terminated: np.ndarray) -> np.ndarray:
        """``(B,)`` rewards after a step."""
        raise NotImplementedError

    def _frame_targets(self) -> torch.Tensor:
        """The ``(B, N)`` fields drawn as the targets."""
        raise NotImplementedError


def _check_targets_nonzero(target: torch.Tensor) -> None:
    if not bool((target != 0).any(-1).all()):  # not via ‖s*‖²: tiny targets square to 0
        raise ValueError("options['target'] must not be identically zero: the relative target "
                         "error ‖s − s*‖²/‖s*‖² is undefined for s* = 0.")


class ControlTask(FieldTask):
    """Hooks of the "reach the target state" task of a ``ControlCore``: the observation
    ``[s_t, s*, t/T]``, the force cost every step and the relative terminal error at the last;
    reset options ``initial_state`` / ``target`` (either alone)."""

    core: ControlCore

    def _options_space(self) -> spaces.Dict:
        field = spaces.Box(-np.inf, np.inf, shape=self.core.grid_shape, dtype=np.float64)
        return spaces.Dict({"initial_state": field, "target": field})

    def _parse_reset(self, options: Any) -> dict[str, torch.Tensor]:
        options = checked_options(options, ("initial_state", "target"),
                                  example="{'initial_state': ..., 'target': ...}",
                                  described="'initial_state', 'target'")
        shape = (*self._batch_shape, *self.core.grid_shape)
        fields = {name: as_field(options[name], name, shape, self.device, self.dtype)
                  for name in options}
        if "target" in fields:
            _check_targets_nonzero(fields["target"].reshape(self._batch_size, -1))
        return fields

    def _new_episodes(self, given: dict[str, torch.Tensor], generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        # Drawn even when both are given, so that later resets continue the same stream.
        s0, target = self.core.sample_tasks(self._batch_size, generator, device=self.device,
                                            dtype=self.dtype)
        shape = (self._batch_size, *self.core.grid_shape)
        if "initial_state" in given:
            s0 = given["initial_state"].reshape(shape)
        if "target" in given:
            target = given["target"].reshape(shape)
        return s0, target

    def _errors(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        assert self.state is not None and self.target is not None
        dtype = dtype or self.state.dtype
        return self.core.target_error(self.state.to(dtype), self.target.to(dtype))

    def _rewards(self, errors: np.ndarray, force_cost: np.ndarray,
                 terminated: np.ndarray) -> np.ndarray:
        """Force cost every step; the terminal error at the last."""
        # (0.0 − …: a reward of zero is +0.0, not the −0.0 that −penalty·0 would print)
        return 0.0 - self.core.force_penalty * force_cost - np.where(terminated, errors, 0.0)

    def _frame_targets(self) -> torch.Tensor:
        assert self.target is not None
        return self.target


# --- the shells ----------------------------------------------------------------------------------


class _FieldShell(FieldTask):
    """Construction and drawing, shared by the single and the vector shell."""

    metadata: dict[str, Any]
    make_core: ClassVar[Callable[..., TaskCore]]
    """Builds the core from ``gym.make`` keywords: a ``Factory``
    (e.g. ``control_factory``), set by each concrete env."""
    np_random: np.random.Generator

    def _setup(self, core: TaskCore | None, kwargs: dict[str, Any],
               device: str | torch.device, dtype: str | torch.dtype,
               render_mode: str | None) -> None:
        if core is None:
            factory = getattr(type(self), "make_core", None)
            if factory is None:
                raise TypeError(f"{type(self).__name__} has no make_core; pass core=.")
            core = make_sensed_core(factory, kwargs)
        elif kwargs:
            raise TypeError(f"{type(self).__name__} got keywords {sorted(kwargs)} as well as "
                            "a core; pass one or the other.")
        assert core is not None
        self.core = core
        self.physics = core.physics
        self.horizon = core.horizon
        self.device = parse_device(device)
        self.dtype = parse_dtype(dtype)
        self.render_mode = render_mode
        self.title: str = getattr(getattr(type(self), "make_core", None), "owner", "sipenv")
        self.state = None
        self.target = None
        self._generator: torch.Generator | None = None

    def _single_spaces(self) -> tuple[spaces.Box, spaces.Box]:
        action = spaces.Box(-1.0, 1.0, shape=self.core.action_shape, dtype=np.float32)
        obs = spaces.Box(-np.inf, np.inf, shape=self.core.observation_shape, dtype=np.float32)
        return action, obs

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start new episodes: drawn from the env's generator (seeded by ``seed``), or posed by
        ``options`` (see the env's Starting State; batched with a leading ``num_envs`` axis for
        the vector env).

        Raises:
            ValueError: For invalid ``options``, also finite fields the env cannot hold
                (beyond ±3.4e38, the float32 observation's limit; the message names it); the
                env is left unchanged, its generator included (it is neither reseeded nor
                advanced).
        """
        # Options are checked before super().reset(): a rejected reset neither reseeds nor
        # advances the env's generator, and leaves the episode in progress untouched.
        given = self._parse_reset(options)
        super().reset(seed=seed)  # type: ignore[misc]
        generator = seed_generator(self.np_random, self.device)
        s0, target = self._new_episodes(given, generator)
        return self._start(s0, target, generator)

    def _start(self, s0: torch.Tensor, target: torch.Tensor, generator: torch.Generator
               ) -> tuple[np.ndarray, dict[str, Any]]:
        raise NotImplementedError

    def _frames(self, forces: list[np.ndarray | None]) -> tuple[np.ndarray, ...]:
        """One ``(H, W, 3) uint8`` frame per episode, with ``forces[i]`` drawn as applied: the
        1-D drawing of ``draw_frame`` (a task whose state is not a
        1-D field overrides this)."""
        from sipenv.envs.rendering import draw_frame

        assert self.state is not None
        err = self._reported_errors()
        x = _grid(self.physics, self.core.n)
        state = self.state.detach().cpu().double().numpy()
        target = self._frame_targets().detach().cpu().double().numpy()
        steps = self._steps()
        return tuple(
            draw_frame(x, state[i], target[i], forces[i], step=int(steps[i]),
                       horizon=self.horizon, force_limit=self.core.force_scale,
                       target_error=float(err[i]),
                       length=float(getattr(self.physics, "length", 1.0)), title=self.title)
            for i in range(len(forces)))


class FieldEnv(_FieldShell, FramePresenter, gym.Env[np.ndarray, np.ndarray]):
    """One episode of a batched field task (a control or a correction core) behind the
    Gymnasium API: validation, stepping, costs and rendering, written once; the task's hooks
    (a ``FieldTask``) see a batch of one.

    ``reset_options_space`` (a ``gymnasium.spaces.Dict``) describes the reset options;
    every key is optional (batched with a leading ``num_envs`` axis in the vector env).

    Args:
        render_mode: ``"human"``, ``"rgb_array"`` or ``None``.
        core: The task core; by default the class's ``make_core(**kwargs)`` builds it.
        device: Where the physics runs.
        dtype: ``"float32"`` or ``"float64"``: its precision.
        **kwargs: The env's keywords (routed by ``make_core``).
    """

    metadata: dict[str, Any] = {"render_modes": ["human", "rgb_array"], "render_fps": 8}
    _batch_shape = ()

    def __init__(self, render_mode: str | None = None, *, core: TaskCore | None = None,
                 device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32",
                 **kwargs: Any) -> None:
        check_render_mode(render_mode, self.metadata["render_modes"])
        self._setup(core, kwargs, device, dtype, render_mode)
        self.action_space, self.observation_space = self._single_spaces()
        self.reset_options_space = self._options_space()
        self.t = 0
        self._last_force: np.ndarray | None = None
        self._window: Any = None

    def _steps(self) -> np.ndarray:
        return np.array([self.t])

    def _start(self, s0: torch.Tensor, target: torch.Tensor, generator: torch.Generator
               ) -> tuple[np.ndarray, dict[str, Any]]:
        self.state, self.target, self.t = s0, target, 0
        if generator is not None:  # the one the noise is drawn from
            self._generator = generator
        self._last_force = None
        if self.render_mode == "human":
            self.render()
        return self._observations()[0].cpu().numpy(), {
            "target_error": float(self._reported_errors()[0]), "force_cost": 0.0}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Apply the normalised force ``action`` (clipped to ``[-1, 1]``).

        Any finite number float64 can hold is clipped (1e300 gives 1, also in a float32 env:
        the clip comes before the cast).

        Raises:
            RuntimeError: Before ``reset`` or after the episode has ended.
            ValueError: For a wrong shape, NaN/inf entries, or numbers float64 cannot hold
                (a Python int of 10**400, a long double of 1e400; the message names the
                limit). The state is left unchanged.
        """
        if self.state is None or self.target is None:
            raise RuntimeError("Call reset() before step().")
        if self.t >= self.horizon:
            raise RuntimeError(f"The episode ended after {self.horizon} steps; call reset() "
                               "to start a new one.")
        arr = validate_action(action, self.core.action_shape)
        # Clipped in float64, then cast: any finite float64 becomes ±1 exactly.
        a = torch.as_tensor(np.clip(arr, -1.0, 1.0), device=self.device, dtype=self.dtype)[None]
        applied = self._applied_actions(a)
        self.state = self.core.step(self.state, applied)
        self.t += 1
        # Python floats (float64) in, as the single env always reported them.
        force_cost = float(self.core.force_cost(a)[0])
        error = float(self._reported_errors()[0])
        terminated = self.t >= self.horizon
        reward = self._rewards(np.array([error]), np.array([force_cost]),
                               np.array([terminated]))
        self._last_force = self.core.action_to_force(applied)[0].cpu().numpy()
        if self.render_mode == "human":
            self.render()
        info = {"target_error": error, "force_cost": force_cost}
        return (self._observations()[0].cpu().numpy(), float(reward[0]), terminated, False,
                info)

    def render(self) -> np.ndarray | None:
        """``"rgb_array"``: return an ``(H, W, 3) uint8`` frame; ``"human"``: show it."""
        if not ready_to_render(self.render_mode, self.state is not None):
            return None
        return self._present(self._frames([self._last_force])[0], self.title)


class FieldVectorEnv(_FieldShell, VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    """``num_envs`` episodes of a batched field task, stepped as one torch batch (the vector
    counterpart of ``FieldEnv``, calling the same task hooks).

    Autoreset follows Gymnasium 1.x ``AutoresetMode.NEXT_STEP``: the step after an episode ends
    resets that sub-env (its action is ignored, its reward is 0 and it is neither terminated nor
    truncated). Given the same tasks and actions, trajectories equal those of ``num_envs``
    single envs. Actions may be numpy arrays or torch tensors (a tensor stays on its device).

    ``gym.make_vec``'s own arguments work as in sync mode: ``max_episode_steps=K`` truncates
    each episode at its ``K``-th step (``truncated=True``, also together with
    ``terminated`` when ``K`` is the horizon) and autoresets it on the next step, as
    Gymnasium's ``TimeLimit`` does for sync mode; ``disable_env_checker`` is accepted.
    ``info`` has sync mode's layout: every key with its ``_key`` mask.

    Every field env registers its subclass as its vector entry point:

    >>> import gymnasium as gym
    >>> import sipenv
    >>> envs = gym.make_vec("sip/ControlledDiffusion-v0", num_envs=8,
    ...                     vectorization_mode="vector_entry_point")
    >>> obs, info = envs.reset(seed=0)
    >>> obs.shape
    (8, 129)
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 8,
                                "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, *,
                 core: TaskCore | None = None, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype = "float32", max_episode_steps: int | None = None,
                 disable_env_checker: bool | None = None, **kwargs: Any) -> None:
        num_envs = check_num_envs(num_envs)
        check_render_mode(render_mode, self.metadata["render_modes"], " for the vector env")
        self.max_episode_steps = check_max_episode_steps(max_episode_steps)
        check_disable_env_checker(disable_env_checker)
        self._setup(core, kwargs, device, dtype, render_mode)
        self.num_envs = num_envs
        self._batch_shape = (num_envs,)
        self.single_action_space, self.single_observation_space = self._single_spaces()
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.reset_options_space = batch_space(self._options_space(), num_envs)
        self.t = np.zeros(num_envs, dtype=np.int64)
        self._prev_done = np.zeros(num_envs, dtype=bool)
        self._last_force: torch.Tensor | None = None
        # Which sub-envs' last step applied `_last_force` (not those reset on that step).
        self._force_applied = np.zeros(num_envs, dtype=bool)

    def _steps(self) -> np.ndarray:
        return self.t

    def _start(self, s0: torch.Tensor, target: torch.Tensor, generator: torch.Generator
               ) -> tuple[np.ndarray, dict[str, Any]]:
        self._generator = generator
        self.state, self.target = s0, target
        self.t[:] = 0
        self._prev_done[:] = False
        self._last_force = None
        self._force_applied[:] = False
        return self._observations().cpu().numpy(), with_masks({
            "target_error": self._reported_errors(), "force_cost": np.zeros(self.num_envs)},
            self.num_envs)

    def _actions(self, actions: Any) -> torch.Tensor:
        """Validated, clipped ``(num_envs, *action_shape)`` actions in the env's dtype and
        device."""
        shape = (self.num_envs, *self.core.action_shape)
        if isinstance(actions, torch.Tensor):  # stays on its device: no host round trip
            if tuple(actions.shape) != shape:
                raise ValueError(f"action must have shape {shape}, got {tuple(actions.shape)}.")
            if actions.is_complex():
                raise ValueError(f"action must be a real-valued tensor, got {actions.dtype}.")
            a = actions.detach().to(device=self.device)
            a = a if a.is_floating_point() else a.to(torch.float64)
            # Checked (and clipped) in the caller's precision: a finite 1e300 in float64 is
            # clipped to 1 like a numpy action, not turned into inf by the cast to float32.
            if not bool(torch.isfinite(a).all()):
                raise ValueError("action contains NaN or inf; the env state is unchanged.")
            return a.clamp(-1.0, 1.0).to(self.dtype)
        arr = validate_action(actions, shape)
        return torch.as_tensor(np.clip(arr, -1.0, 1.0), device=self.device, dtype=self.dtype)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        """Step every sub-env with ``actions`` of shape ``(num_envs, *action_shape)`` (clipped
        to [-1, 1]).

        Raises:
            RuntimeError: Before ``reset``.
            ValueError: For a wrong shape, NaN/inf entries or numbers float64 cannot hold (no
                sub-env is changed); finite float64 values are clipped, as in ``FieldEnv``.
        """
        if self.state is None or self.target is None or self._generator is None:
            raise RuntimeError("Call reset() before step().")
        a = self._actions(actions)
        applied = self._applied_actions(a)
        state, target = self.core.step(self.state, applied), self.target
        force_cost = self.core.force_cost(a)
        t = self.t + 1

        # --- NEXT_STEP autoreset of the sub-envs whose episode ended on the previous step ---
        reset = self._prev_done
        if reset.any():
            idx = torch.as_tensor(np.flatnonzero(reset), device=self.device)
            s0, new_target = self.core.sample_tasks(len(idx), self._generator,
                                                    device=self.device, dtype=self.dtype)
            state = state.index_copy(0, idx, s0)
            target = target.index_copy(0, idx, new_target)
            t[reset] = 0
            force_cost = force_cost.index_fill(0, idx, 0.0)
        self.state, self.target, self.t = state, target, t
        errors = self._reported_errors()
        force_cost_np = force_cost.cpu().numpy().astype(np.float64)
        terminated = t >= self.horizon  # False for the sub-envs reset on this step (t = 0)
        truncated = (t >= self.max_episode_steps if self.max_episode_steps is not None
                     else np.zeros(self.num_envs, dtype=bool))
        reward = self._rewards(errors, force_cost_np, terminated)
        reward[reset] = 0.0
        self._prev_done = terminated | truncated
        self._last_force = self.core.action_to_force(applied)
        # A sub-env reset on this step ignored its action: don't draw it as an applied force.
        self._force_applied = ~reset
        info = with_masks({"target_error": errors, "force_cost": force_cost_np}, self.num_envs)
        return (self._observations().cpu().numpy(), reward.astype(np.float64), terminated,
                truncated, info)

    def render(self) -> tuple[np.ndarray, ...] | None:
        """``"rgb_array"``: one ``(H, W, 3) uint8`` frame per sub-env."""
        if not ready_to_render(self.render_mode, self.state is not None, vector=True):
            return None
        force = None if self._last_force is None else self._last_force.cpu().double().numpy()
        return self._frames([force[i] if force is not None and self._force_applied[i] else None
                             for i in range(self.num_envs)])


class ControlEnv(ControlTask, FieldEnv):
    """A single episode of a ``ControlCore`` task behind the Gymnasium API.

    Subclasses set ``make_core`` (``control_factory``) and carry the user-facing
    documentation. See ``sipenv.envs.controlled_diffusion.ControlledDiffusionEnv`` for the
    full description of spaces, rewards and options.
    """


class ControlVectorEnv(ControlTask, FieldVectorEnv):
    """``num_envs`` episodes of a ``ControlCore`` task, stepped as one torch batch
    (NEXT_STEP autoreset; see ``FieldVectorEnv``)."""

"""Gymnasium shells over a batched field task: a single env and a native batched
:class:`gymnasium.vector.VectorEnv`.

:class:`FieldEnv` / :class:`FieldVectorEnv` hold what every field task shares (validation,
stepping, costs, NEXT_STEP autoreset, rendering); :class:`ControlEnv` / :class:`ControlVectorEnv`
add the control task of a :class:`~sipenv.envs.core.ControlCore`, and
:mod:`sipenv.envs.correction` the correction task. Concrete environments (e.g.
:mod:`sipenv.envs.controlled_diffusion`) only build the core and document the task.
"""

from __future__ import annotations

import collections.abc
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from sipenv.envs.core import ControlCore
from sipenv.envs.rendering import FramePresenter

__all__ = ["ControlEnv", "ControlVectorEnv", "FieldEnv", "FieldVectorEnv", "parse_device",
           "parse_dtype"]

_DTYPES = {"float32": torch.float32, "float64": torch.float64}


def parse_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``"float32"`` / ``"float64"`` (or the torch dtype) → torch dtype, with a clear error."""
    if isinstance(dtype, torch.dtype) and dtype in _DTYPES.values():
        return dtype
    if isinstance(dtype, str) and dtype in _DTYPES:
        return _DTYPES[dtype]
    raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}.")


def parse_device(device: str | torch.device) -> torch.device:
    """``"cpu"`` / ``"cuda"`` / ``"cuda:1"`` (or a torch device) → torch device, checked to exist.

    Raises:
        ValueError: For a malformed device string, or a CUDA device that is not available.
    """
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"device must be a torch device such as 'cpu' or 'cuda', got "
                         f"{device!r}.") from exc
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} requested but CUDA is not available; use "
                             "device='cpu'.")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"device {device!r} requested but only "
                             f"{torch.cuda.device_count()} CUDA device(s) exist.")
    return dev


def _seed_generator(np_random: np.random.Generator, device: torch.device) -> torch.Generator:
    """A torch generator on ``device`` seeded from the env's ``np_random`` (so that
    ``reset(seed=...)`` alone determines every task)."""
    return torch.Generator(device=device).manual_seed(int(np_random.integers(2**62)))


def _real_array(value: Any) -> np.ndarray | None:
    """``value`` as a float64 numpy array if it holds real numbers (bool/int/float), else None.

    Strings (even ``"0.5"``), bytes, complex numbers and arbitrary objects are refused rather than
    parsed or truncated; torch tensors (also on GPU or requiring grad) are accepted.
    """
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        arr = np.asarray(value)
        if arr.dtype.kind == "O":  # e.g. a list mixing ints and floats, or of arbitrary objects
            arr = np.asarray(arr.tolist())
    except (TypeError, ValueError):  # ragged nesting, unconvertible objects
        return None
    if arr.dtype.kind not in "biuf":
        return None
    return arr.astype(np.float64)


def _as_field(value: Any, name: str, shape: tuple[int, ...], device: torch.device,
              dtype: torch.dtype) -> torch.Tensor:
    """Validate a user-given field (numpy/torch/list) of ``shape`` and make it a tensor."""
    real = _real_array(value)
    if real is None:
        raise ValueError(f"options[{name!r}] must be a numeric array of shape {shape}.")
    arr = torch.as_tensor(real)
    if tuple(arr.shape) != shape:
        raise ValueError(f"options[{name!r}] must have shape {shape}, got {tuple(arr.shape)}.")
    if not torch.isfinite(arr).all():
        raise ValueError(f"options[{name!r}] contains NaN or inf; pass finite values.")
    return arr.to(device=device, dtype=dtype)


def _check_targets_nonzero(target: torch.Tensor) -> None:
    if bool(((target**2).sum(-1) == 0).any()):
        raise ValueError("options['target'] must not be identically zero: the relative target "
                         "error ‖s − s*‖²/‖s*‖² is undefined for s* = 0.")


def checked_options(options: Any, accepted: tuple[str, ...], *, example: str,
                    described: str) -> collections.abc.Mapping[str, Any]:
    """``reset`` options as a mapping with only ``accepted`` keys (``{}`` for ``None``).

    Raises:
        ValueError: For a non-mapping (showing ``example``) or unknown keys (listing
            ``described``), before any state or random generator changes.
    """
    if options is None:
        return {}
    if not isinstance(options, collections.abc.Mapping):
        raise ValueError(f"options must be a dict such as {example}, got "
                         f"{type(options).__name__}.")
    unknown = set(options) - set(accepted)
    if unknown:
        raise ValueError(f"Unknown reset options {sorted(unknown, key=str)}; accepted: "
                         f"{described}.")
    return options


def _parse_options(options: Any, shape: tuple[int, ...], device: torch.device,
                   dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Validate ``reset`` options into tensors of ``shape``, before any state or RNG changes."""
    options = checked_options(options, ("initial_state", "target"),
                              example="{'initial_state': ..., 'target': ...}",
                              described="'initial_state', 'target'")
    fields = {name: _as_field(options[name], name, shape, device, dtype) for name in options}
    if "target" in fields:
        _check_targets_nonzero(fields["target"].reshape(-1, shape[-1]))
    return fields


def _validate_action(action: Any, shape: tuple[int, ...], *, what: str = "",
                     fix: str = "Pass finite values in [-1, 1] (larger ones are clipped)."
                     ) -> np.ndarray:
    """Check an action (batch) for type, shape and finiteness; returns a float64 numpy array.

    Accepts numpy arrays, nested lists and torch tensors of bool/int/float; refuses strings,
    bytes, complex numbers and other objects with ``ValueError``. ``what`` says what the action
    stands for (e.g. ``" (the reconstructed initial field)"``), ``fix`` how to mend NaN/inf.
    """
    arr = _real_array(action)
    if arr is None:
        raise ValueError(f"action must be a numeric array of shape {shape}{what}, got "
                         f"{type(action).__name__}"
                         f"{f' of dtype {action.dtype}' if hasattr(action, 'dtype') else ''}.")
    if arr.shape != shape:
        raise ValueError(f"action must have shape {shape}{what}, got {arr.shape}.")
    bad = ~np.isfinite(arr)
    if bad.any():
        where = np.argwhere(bad)[:3].tolist()
        raise ValueError(f"action contains NaN or inf (first at index {where}); the env state "
                         f"is unchanged. {fix}")
    return arr


def _check_num_envs(num_envs: Any) -> int:
    """``num_envs`` as an int ≥ 1 (numpy integers accepted, bools not), else ``ValueError``."""
    if (not isinstance(num_envs, (int, np.integer)) or isinstance(num_envs, bool)
            or num_envs < 1):
        raise ValueError(f"num_envs must be an int ≥ 1, got {num_envs!r}.")
    return int(num_envs)


def _check_render_mode(render_mode: str | None, modes: list[str], which: str = "") -> None:
    """Raise ``ValueError`` unless ``render_mode`` is ``None`` or one of ``modes``."""
    if render_mode is not None and render_mode not in modes:
        raise ValueError(f"render_mode must be one of {modes} or None{which}, got "
                         f"{render_mode!r}.")


class FieldEnv(FramePresenter, gym.Env[np.ndarray, np.ndarray]):
    """One episode of a batched field task (a control or a correction core) behind the
    Gymnasium API: validation, stepping, costs and rendering, written once.

    A subclass supplies the task-specific parts: :meth:`reset`, the observation (:meth:`_obs`),
    the error it reports and rewards (:meth:`_error`), the reward (:meth:`_reward`) and the field
    drawn as the target (:meth:`_frame_target`). ``core`` needs ``physics``, ``horizon``, ``n``,
    ``obs_dim``, ``force_scale``, ``force_penalty``, ``step``, ``force_cost``, ``sample_tasks``
    and ``observe`` (:class:`~sipenv.envs.core.ControlCore`,
    :class:`~sipenv.envs.correction.CorrectionCore`).
    """

    metadata: dict[str, Any] = {"render_modes": ["human", "rgb_array"], "render_fps": 8}
    core: Any

    def __init__(self, core: Any, *, render_mode: str | None = None,
                 device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32",
                 title: str = "sipenv") -> None:
        _check_render_mode(render_mode, self.metadata["render_modes"])
        self.core = core
        self.physics = core.physics
        self.horizon = core.horizon
        self.device = parse_device(device)
        self.dtype = parse_dtype(dtype)
        self.render_mode = render_mode
        self.title = title
        self.action_space = spaces.Box(-1.0, 1.0, shape=(core.n,), dtype=np.float32)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(core.obs_dim,),
                                            dtype=np.float32)
        self.state: torch.Tensor | None = None  # (1, N)
        self.target: torch.Tensor | None = None  # (1, N) or (1, T + 1, N): the core's target
        self.t = 0
        self._last_force: np.ndarray | None = None
        self._window: Any = None

    def _start(self, s0: torch.Tensor, target: torch.Tensor
               ) -> tuple[np.ndarray, dict[str, Any]]:
        """Begin an episode at ``(s0, target)``; what :meth:`reset` returns."""
        self.state, self.target, self.t = s0, target, 0
        self._last_force = None
        if self.render_mode == "human":
            self.render()
        return self._obs(), {"target_error": self._error(), "force_cost": 0.0}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Apply the normalised force ``action`` (shape ``(N,)``, clipped to ``[-1, 1]``).

        Raises:
            RuntimeError: Before :meth:`reset` or after the episode has ended.
            ValueError: For a wrong shape or NaN/inf entries (the state is left unchanged).
        """
        if self.state is None or self.target is None:
            raise RuntimeError("Call reset() before step().")
        if self.t >= self.horizon:
            raise RuntimeError(f"The episode ended after {self.horizon} steps; call reset() "
                               "to start a new one.")
        arr = _validate_action(action, (self.core.n,))
        a = torch.as_tensor(arr, device=self.device, dtype=self.dtype)[None].clamp(-1.0, 1.0)
        self.state = self.core.step(self.state, a)
        self.t += 1
        force_cost = float(self.core.force_cost(a)[0])
        error = self._error()
        terminated = self.t >= self.horizon
        reward = self._reward(error, force_cost, terminated)
        self._last_force = (self.core.force_scale * a[0]).cpu().numpy()
        if self.render_mode == "human":
            self.render()
        info = {"target_error": error, "force_cost": force_cost}
        return self._obs(), float(reward), terminated, False, info

    def render(self) -> np.ndarray | None:
        """``"rgb_array"``: return an ``(H, W, 3) uint8`` frame; ``"human"``: show it."""
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; pass "
                            "render_mode='rgb_array' or 'human' to gym.make.")
            return None
        if self.state is None or self.target is None:
            raise RuntimeError("Call reset() before render().")
        from sipenv.envs.rendering import draw_frame

        frame = draw_frame(
            _grid(self.physics, self.core.n), self.state[0].detach().cpu().double().numpy(),
            self._frame_target().detach().cpu().double().numpy(), self._last_force,
            step=self.t, horizon=self.horizon, force_limit=self.core.force_scale,
            target_error=self._error(),
            length=float(getattr(self.physics, "length", 1.0)), title=self.title)
        return self._present(frame, self.title)

    # --- the task-specific parts ----------------------------------------------------------------

    def _obs(self) -> np.ndarray:
        raise NotImplementedError

    def _error(self) -> float:
        """The error reported as ``info["target_error"]`` (and drawn on the frame)."""
        raise NotImplementedError

    def _reward(self, error: float, force_cost: float, terminated: bool) -> float:
        raise NotImplementedError

    def _frame_target(self) -> torch.Tensor:
        """The ``(N,)`` field drawn as the target."""
        raise NotImplementedError


class FieldVectorEnv(VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    """``num_envs`` episodes of a batched field task, stepped as one torch batch (the vector
    counterpart of :class:`FieldEnv`, with the same task-specific hooks, batched).

    Autoreset follows Gymnasium 1.x ``AutoresetMode.NEXT_STEP``: the step after an episode ends
    resets that sub-env (its action is ignored, its reward is 0 and it is neither terminated nor
    truncated). Given the same tasks and actions, trajectories equal those of ``num_envs``
    single envs. Actions may be numpy arrays or torch tensors (a tensor stays on its device).
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 8,
                                "autoreset_mode": AutoresetMode.NEXT_STEP}
    core: Any

    def __init__(self, core: Any, *, num_envs: int = 1, render_mode: str | None = None,
                 device: str | torch.device = "cpu", dtype: str | torch.dtype = "float32",
                 title: str = "sipenv") -> None:
        num_envs = _check_num_envs(num_envs)
        _check_render_mode(render_mode, self.metadata["render_modes"], " for the vector env")
        self.core = core
        self.physics = core.physics
        self.horizon = core.horizon
        self.num_envs = num_envs
        self.device = parse_device(device)
        self.dtype = parse_dtype(dtype)
        self.render_mode = render_mode
        self.title = title
        self.single_action_space = spaces.Box(-1.0, 1.0, shape=(core.n,), dtype=np.float32)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.single_observation_space = spaces.Box(-np.inf, np.inf, shape=(core.obs_dim,),
                                                   dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.state: torch.Tensor | None = None  # (B, N)
        self.target: torch.Tensor | None = None  # (B, N) or (B, T + 1, N)
        self.t = np.zeros(num_envs, dtype=np.int64)
        self._prev_done = np.zeros(num_envs, dtype=bool)
        self._generator: torch.Generator | None = None
        self._last_force: torch.Tensor | None = None
        # Which sub-envs' last step applied `_last_force` (not those reset on that step).
        self._force_applied = np.zeros(num_envs, dtype=bool)

    def _start(self, s0: torch.Tensor, target: torch.Tensor
               ) -> tuple[np.ndarray, dict[str, Any]]:
        """Begin every sub-env's episode at ``(s0, target)``; what :meth:`reset` returns."""
        self.state, self.target = s0, target
        self.t[:] = 0
        self._prev_done[:] = False
        self._last_force = None
        self._force_applied[:] = False
        return self._obs(), {"target_error": self._errors().cpu().numpy(),
                             "force_cost": np.zeros(self.num_envs)}

    def _actions(self, actions: Any) -> torch.Tensor:
        """Validated, clipped ``(num_envs, N)`` actions in the env's dtype and device."""
        shape = (self.num_envs, self.core.n)
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
        arr = _validate_action(actions, shape)
        return torch.as_tensor(arr, device=self.device, dtype=self.dtype).clamp(-1.0, 1.0)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        """Step every sub-env with ``actions`` of shape ``(num_envs, N)`` (clipped to [-1, 1]).

        Raises:
            RuntimeError: Before :meth:`reset`.
            ValueError: For a wrong shape or NaN/inf entries (no sub-env is changed).
        """
        if self.state is None or self.target is None or self._generator is None:
            raise RuntimeError("Call reset() before step().")
        a = self._actions(actions)
        state, target = self.core.step(self.state, a), self.target
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
        errors = self._errors().cpu().numpy()
        force_cost_np = force_cost.cpu().numpy()
        terminated = t >= self.horizon  # False for the sub-envs reset on this step (t = 0)
        reward = self._rewards(errors, force_cost_np, terminated)
        reward[reset] = 0.0
        self._prev_done = terminated.copy()
        self._last_force = self.core.force_scale * a
        # A sub-env reset on this step ignored its action: don't draw it as an applied force.
        self._force_applied = ~reset
        info = {"target_error": errors, "force_cost": force_cost_np}
        return (self._obs(), reward.astype(np.float64), terminated,
                np.zeros(self.num_envs, dtype=bool), info)

    def render(self) -> tuple[np.ndarray, ...] | None:
        """``"rgb_array"``: one ``(H, W, 3) uint8`` frame per sub-env."""
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; pass "
                            "render_mode='rgb_array' to gym.make_vec.")
            return None
        if self.state is None or self.target is None:
            raise RuntimeError("Call reset() before render().")
        from sipenv.envs.rendering import draw_frame

        err = self._errors().cpu().numpy()
        x = _grid(self.physics, self.core.n)
        state = self.state.detach().cpu().double().numpy()
        target = self._frame_targets().detach().cpu().double().numpy()
        force = None if self._last_force is None else self._last_force.cpu().double().numpy()
        return tuple(
            draw_frame(x, state[i], target[i],
                       force[i] if force is not None and self._force_applied[i] else None,
                       step=int(self.t[i]), horizon=self.horizon,
                       force_limit=self.core.force_scale, target_error=float(err[i]),
                       length=float(getattr(self.physics, "length", 1.0)), title=self.title)
            for i in range(self.num_envs))

    def _time_fraction(self) -> torch.Tensor:
        return torch.as_tensor(self.t / self.horizon, dtype=torch.float32, device=self.device)

    # --- the task-specific parts (batched) ------------------------------------------------------

    def _obs(self) -> np.ndarray:
        raise NotImplementedError

    def _errors(self) -> torch.Tensor:
        """``(num_envs,)`` errors reported as ``info["target_error"]``."""
        raise NotImplementedError

    def _rewards(self, errors: np.ndarray, force_cost: np.ndarray,
                 terminated: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _frame_targets(self) -> torch.Tensor:
        """The ``(num_envs, N)`` fields drawn as the targets."""
        raise NotImplementedError


def _grid(physics: Any, n: int) -> np.ndarray:
    """Cell positions for drawing: the physics' grid, or ``j / N``."""
    return physics.grid.numpy() if hasattr(physics, "grid") else np.arange(n) / n


class ControlEnv(FieldEnv):
    """A single episode of a :class:`ControlCore` task behind the Gymnasium API.

    Subclasses build the core and carry the user-facing documentation. See
    :class:`sipenv.envs.controlled_diffusion.ControlledDiffusionEnv` for the full description of
    spaces, rewards and options.
    """

    core: ControlCore

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode: sample ``(s_0, s*)``, or take them from ``options``.

        Args:
            seed: Seeds the env's generator (all task randomness comes from it).
            options: Optional ``{"initial_state": (N,), "target": (N,)}`` arrays; either may be
                given alone, the other is sampled.
        """
        # Options are checked before super().reset(): a rejected reset neither reseeds nor
        # advances the env's generator, and leaves the episode in progress untouched.
        fields = _parse_options(options, (self.core.n,), self.device, self.dtype)
        super().reset(seed=seed)
        gen = _seed_generator(self.np_random, self.device)
        s0, target = self.core.sample_tasks(1, gen, device=self.device, dtype=self.dtype)
        if "initial_state" in fields:
            s0 = fields["initial_state"][None]
        if "target" in fields:
            target = fields["target"][None]
        return self._start(s0, target)

    def _obs(self) -> np.ndarray:
        assert self.state is not None and self.target is not None
        obs = self.core.observe(self.state, self.target, self.t / self.horizon)
        return obs[0].cpu().numpy()

    def _error(self) -> float:
        assert self.state is not None and self.target is not None
        return float(self.core.target_error(self.state, self.target)[0])

    def _reward(self, error: float, force_cost: float, terminated: bool) -> float:
        """Force cost every step; the terminal error at the last."""
        return -self.core.force_penalty * force_cost - (error if terminated else 0.0)

    def _frame_target(self) -> torch.Tensor:
        assert self.target is not None
        return self.target[0]


class ControlVectorEnv(FieldVectorEnv):
    """``num_envs`` episodes of a :class:`ControlCore` task, stepped as one torch batch
    (NEXT_STEP autoreset; see :class:`FieldVectorEnv`)."""

    core: ControlCore

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every sub-env; ``options`` may hold ``initial_state`` / ``target`` of shape
        ``(num_envs, N)``."""
        # Checked first: a rejected reset changes neither the generators nor any sub-env.
        fields = _parse_options(options, (self.num_envs, self.core.n), self.device, self.dtype)
        super().reset(seed=seed)
        self._generator = _seed_generator(self.np_random, self.device)
        s0, target = self.core.sample_tasks(self.num_envs, self._generator, device=self.device,
                                            dtype=self.dtype)
        return self._start(fields.get("initial_state", s0), fields.get("target", target))

    def _obs(self) -> np.ndarray:
        assert self.state is not None and self.target is not None
        return self.core.observe(self.state, self.target, self._time_fraction()).cpu().numpy()

    def _errors(self) -> torch.Tensor:
        assert self.state is not None and self.target is not None
        return self.core.target_error(self.state, self.target)

    def _rewards(self, errors: np.ndarray, force_cost: np.ndarray,
                 terminated: np.ndarray) -> np.ndarray:
        return -self.core.force_penalty * force_cost - np.where(terminated, errors, 0.0)

    def _frame_targets(self) -> torch.Tensor:
        assert self.target is not None
        return self.target

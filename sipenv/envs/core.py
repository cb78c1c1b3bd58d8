"""The functional, batched core of a control task: what agents differentiate through.

A ``ControlCore`` couples a physics model with a task definition (horizon, action scaling,
costs, task sampler). Every method is pure batched torch on ``(B, N)`` tensors, so the Gymnasium
shells (``sipenv.envs.control``) and the training algorithms in ``agents/`` run exactly the same
numerics.

Task: from ``s_0`` reach the target ``s*`` after ``horizon`` steps of
``s_{t+1} = physics.step(s_t, force_scale · B · clip(a_t, −1, 1))``, observing the state at
the sensors (``B`` the actuator basis and the sensors of ``sipenv.envs.sensing.Sensing``; by
default the identity and every cell).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import (
    TYPE_CHECKING,
    Any,
    ClassVar,
    NamedTuple,
    Protocol,
    TypeVar,
    overload,
    runtime_checkable,
)

import torch

from sipenv.envs.sensing import Sensing
from sipenv.physics import PhysicsModel
from sipenv.validation import check_int, check_nonnegative, check_positive

__all__ = ["ControlCore", "FieldCore", "Policy", "Rollout", "TaskCore", "TaskSampler", "core_of",
           "relative_squared_error"]

Policy = Callable[[torch.Tensor], torch.Tensor]
"""Maps a batch of observations ``(B, 2N + 1)`` to normalised actions ``(B, N)``."""


class TaskSampler(Protocol):
    """Draws ``batch`` tasks ``(s_0, s*)``, each ``(batch, N)``, from ``generator`` (a picklable
    callable, e.g. a frozen dataclass, so that envs pickle)."""

    def __call__(self, batch: int, generator: torch.Generator, *,
                 device: torch.device | str | None = ...,
                 dtype: torch.dtype = ...) -> tuple[torch.Tensor, torch.Tensor]: ...


class Rollout(NamedTuple):
    """A batched trajectory.

    Attributes:
        states: ``(T + 1, B, N)`` states ``s_0 … s_T``.
        actions: ``(T, B, N)`` normalised actions as applied (already clipped to ``[-1, 1]``).
        target: ``(B, N)`` target states.
    """

    states: torch.Tensor
    actions: torch.Tensor
    target: torch.Tensor


@runtime_checkable
class TaskCore(Protocol):
    """The functional, batched core of a field task (control or correction): what the env
    shells step and what agents differentiate through.

    ``ControlCore`` and ``CorrectionCore`` implement it; get an
    env's core with ``core_of``. Shapes: states ``(B, *action_shape)``; normalised actions
    ``(B, *action_shape)`` in ``[-1, 1]``; observations ``(B, *observation_shape)`` (float32);
    the ``target`` is whatever ``sample_tasks`` returns as the task's goal (``(B, N)`` for
    control, the reference trajectory ``(B, T + 1, N)`` for correction). Every method is pure
    batched torch; every attribute is read-only (the cores are frozen dataclasses).
    """

    @property
    def physics(self) -> PhysicsModel:
        """The model the agent steps (``step``, ``inverse_step``, ``force_for`` …)."""

    @property
    def horizon(self) -> int:
        """Steps per episode (≥ 1)."""

    @property
    def force_scale(self) -> float:
        """Force per unit action: ``force = force_scale · B · clip(action, −1, 1)``."""

    @property
    def force_penalty(self) -> float:
        """Weight of the per-step force cost in the reward (≥ 0)."""

    @property
    def sensing(self) -> Sensing:
        """Sensors, actuators and noise (``sipenv.envs.sensing.Sensing``)."""

    @property
    def n(self) -> int:
        """Grid cells of the state (the action size for a 1-D field without actuators)."""

    @property
    def obs_dim(self) -> int:
        """Observation size (flat)."""

    @property
    def action_shape(self) -> tuple[int, ...]:
        """Shape of one action (and one state)."""

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """Shape of one observation."""

    def sample_tasks(self, batch: int, generator: torch.Generator, *,
                     device: torch.device | str | None = ...,
                     dtype: torch.dtype = ...) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch`` tasks ``(s_0, target)`` drawn from ``generator`` only."""

    @property
    def sensor_noise_mask(self) -> torch.Tensor:
        """``observation_shape`` booleans: the sensor readings of the state (where the env
        adds its sensor noise)."""

    def observe(self, state: torch.Tensor, target: torch.Tensor,
                time_fraction: float | torch.Tensor) -> torch.Tensor:
        """Float32 observations of states at ``t / horizon`` (a float or ``(B,)``)."""

    def action_to_force(self, action: torch.Tensor) -> torch.Tensor:
        """``force_scale · B · clip(action, −1, 1)`` (``B``: the actuator basis)."""

    def actuate(self, action: torch.Tensor) -> torch.Tensor:
        """``force_scale · B · action``, unclipped."""

    def force_to_action(self, force: torch.Tensor) -> torch.Tensor:
        """``B⁺ force / force_scale``: the least-squares, minimum-norm action of a force."""

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """One physics step under normalised ``action`` (clipped)."""

    def target_error(self, state: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Relative squared error of final states, ``(B,)``."""

    def force_cost(self, action: torch.Tensor) -> torch.Tensor:
        """Per-step force cost ``mean(clip(a)²)``, ``(B,)``."""

    def rollout(self, policy: Policy, s0: torch.Tensor, target: torch.Tensor) -> Rollout:
        """A ``horizon``-step trajectory of ``policy`` (differentiable if it is)."""

    def episode_loss(self, rollout: Rollout) -> torch.Tensor:
        """Negative return per sample, ``(B,)``."""


CoreT = TypeVar("CoreT")


@overload
def core_of(env: object) -> TaskCore: ...


@overload
def core_of(env: object, kind: type[CoreT]) -> CoreT: ...


def core_of(env: object, kind: type[Any] | None = None) -> Any:
    """The differentiable batched core of a sipenv field env (single, vector or wrapped): the
    documented way for agents to reach it (typed, unlike ``env.unwrapped.core``).

    Args:
        env: The env (``gym.make`` / ``gym.make_vec`` result, or the env itself).
        kind: Optionally the core class the caller needs (e.g. ``ControlCore``); the
            result is then typed as it, and any other core is refused.

    >>> import gymnasium as gym
    >>> import sipenv
    >>> from sipenv.envs.core import ControlCore, core_of
    >>> core_of(gym.make("sip/ControlledDiffusion-v0")).horizon
    16
    >>> core_of(gym.make("sip/ControlledDiffusion-v0"), ControlCore).max_mode
    8

    Raises:
        TypeError: If ``env`` has no task core (e.g. a one-step inverse problem, or a
            non-sipenv env), or one that is not a ``kind``; the message names the env.
    """
    inner = getattr(env, "unwrapped", env)
    core = getattr(inner, "core", None)
    if not isinstance(core, TaskCore):
        raise TypeError(f"{type(inner).__name__} has no task core (env.unwrapped.core); only "
                        "sipenv's control and correction envs have one.")
    if kind is not None and not isinstance(core, kind):
        raise TypeError(f"{type(inner).__name__}'s core is a {type(core).__name__}, not a "
                        f"{kind.__name__}.")
    return core


def relative_squared_error(state: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``‖s − r‖² / ‖r‖²`` over the last axis, per sample (``‖r‖²`` floored at ``1e-30``).

    Overflow-safe: where ``max|r| > 1`` both fields are scaled by the power of two ``2^-k``
    just below ``max|r|`` before squaring, so ``‖r‖²`` never overflows for a representable
    ``r`` (a float32 target of 1e19 has ``‖r‖² ≈ 1e40``). Scaling by a power of two is exact,
    so the result is bit for bit the unscaled formula wherever that did not overflow.
    """
    diff = state - reference
    peak = reference.detach().abs().amax(-1, keepdim=True)
    exponent = torch.frexp(peak).exponent.sub(1).clamp_min(0)  # 0 where max|r| ≤ 1: unscaled
    diff, reference = torch.ldexp(diff, -exponent), torch.ldexp(reference, -exponent)
    return (diff**2).sum(-1) / (reference**2).sum(-1).clamp_min(1e-30)


def _time_column(state: torch.Tensor, time_fraction: float | torch.Tensor) -> torch.Tensor:
    """``t / T`` as a float32 ``(B, 1)`` column (from a float or a ``(B,)`` tensor)."""
    tf = torch.as_tensor(time_fraction, dtype=torch.float32, device=state.device)
    tf = tf.expand(state.shape[0]) if tf.ndim == 0 else tf
    return tf[:, None]


class FieldCore:
    """What every field-task core shares (a 1-D state of ``physics.n`` cells, forced by
    ``force_scale · B · clip(a, −1, 1)``): shapes, sensing, actuation, stepping, the force cost
    and the rollout. A subclass (a frozen dataclass with ``physics``, ``horizon``,
    ``force_scale`` and ``sensing``) adds the task: ``sample_tasks``, ``target_error``,
    ``episode_loss``, and which target fields it observes (``_observed_targets``).

    Sensors and actuators (``sensing``, a :class:`sipenv.envs.sensing.Sensing`): an
    observation is ``[state at the K sensors, each observed target field (whole, or at the
    sensors), t/T]``; an action has one entry per actuator, ``B`` is the actuator basis (the
    identity by default).
    """

    physics: PhysicsModel
    horizon: int
    force_scale: float
    sensing: Sensing

    _observed_target_fields: ClassVar[int] = 0
    """How many ``(B, N)`` target fields the observation holds after the state."""

    @property
    def n(self) -> int:
        """Number of grid cells."""
        return self.physics.n

    @property
    def grid_shape(self) -> tuple[int, ...]:
        """The shape of one field: ``(N,)``."""
        return (self.physics.n,)

    @property
    def obs_dim(self) -> int:
        """Observation size: the state's readings (``K`` sensors, or ``N``), each observed
        target field (``N`` whole, ``K`` at the sensors) and the time fraction (1)."""
        readings = self.sensing.sensor_count(self.grid_shape)
        target = (readings if self.sensing.target_observation == "sensors"
                  else math.prod(self.grid_shape))
        return readings + self._observed_target_fields * target + 1

    @property
    def action_shape(self) -> tuple[int, ...]:
        """``(M,)``: one entry per actuator (``(N,)``, one force per cell, by default)."""
        return (self.sensing.actuator_count(self.grid_shape),)

    @property
    def observation_shape(self) -> tuple[int, ...]:
        """``(obs_dim,)``."""
        return (self.obs_dim,)

    @property
    def sensor_noise_mask(self) -> torch.Tensor:
        """``observation_shape`` booleans: the entries that are sensor readings of the state
        (where the env adds ``sensing.sensor_noise``)."""
        mask = torch.zeros(self.observation_shape, dtype=torch.bool)
        mask[:self.sensing.sensor_count(self.grid_shape)] = True
        return mask

    def _observed_targets(self, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The ``(B, N)`` target fields the observation holds (``_observed_target_fields``)."""
        del target
        return ()

    def observe(self, state: torch.Tensor, target: torch.Tensor,
                time_fraction: float | torch.Tensor) -> torch.Tensor:
        """Float32 observations ``(B, obs_dim)``: ``[state readings, observed targets, t/T]``
        (``[s_t, …, t/T]`` with every cell observed)."""
        grid, sensing = self.grid_shape, self.sensing
        parts = [sensing.sense(state.float(), grid)]
        for goal in self._observed_targets(target):
            goal = goal.float()
            parts.append(sensing.sense(goal, grid) if sensing.target_observation == "sensors"
                         else goal)
        parts.append(_time_column(state, time_fraction))
        return torch.cat(parts, dim=-1)

    def actuate(self, action: torch.Tensor) -> torch.Tensor:
        """The force of an *unclipped* normalised action, ``force_scale · B · a``
        ``(B, N)`` (linear: what the actuator-space inverse of ``agents.sip`` linearises)."""
        return self.force_scale * self.sensing.actuate(action, self.grid_shape)

    def action_to_force(self, action: torch.Tensor) -> torch.Tensor:
        """``force_scale · B · clip(action, −1, 1)``."""
        return self.actuate(action.clamp(-1.0, 1.0))

    def force_to_action(self, force: torch.Tensor) -> torch.Tensor:
        """The normalised action (unclipped) whose force is nearest to ``force`` ``(B, N)``,
        of least norm among those: ``B⁺ f / force_scale`` (``f / force_scale`` without
        actuators)."""
        return self.sensing.project(force, self.grid_shape) / self.force_scale

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """One physics step under normalised ``action`` (clipped to ``[-1, 1]``)."""
        return self.physics.step(state, self.action_to_force(action).to(state.dtype))

    def force_cost(self, action: torch.Tensor) -> torch.Tensor:
        """Per-step force cost ``mean(clip(a)²)`` over the action's entries (cells, or
        actuators), shape ``(B,)``."""
        return (action.clamp(-1.0, 1.0) ** 2).mean(-1)

    def rollout(self, policy: Policy, s0: torch.Tensor, target: torch.Tensor) -> Rollout:
        """Run ``policy`` for ``horizon`` steps from ``s0`` (differentiable if ``policy`` is).

        The policy sees float32 observations; its actions are clipped as in the env.
        """
        states = [s0]
        actions = []
        state = s0
        for t in range(self.horizon):
            action = policy(self.observe(state, target, t / self.horizon)).clamp(-1.0, 1.0)
            state = self.step(state, action)
            actions.append(action)
            states.append(state)
        return Rollout(torch.stack(states), torch.stack(actions), target)


@dataclass(frozen=True)
class ControlCore(FieldCore):
    """Batched, differentiable definition of a "reach the target state" control task.

    Args:
        physics: Physics model with ``step`` / ``inverse_step`` / ``force_for`` / ``sample_fields``.
        horizon: Number of control steps per episode (≥ 1).
        force_scale: Force per unit action: ``force = force_scale · clip(action, −1, 1)``.
        force_penalty: Weight of the per-step force cost ``mean(action²)`` in the reward.
        max_mode: Highest Fourier mode of sampled initial states and targets.
        amplitude: Amplitude of sampled fields (mode ``m`` has standard deviation ``amplitude/m``).
        task_sampler: Optional task distribution of its own (e.g. the reference Burgers tasks);
            ``None`` draws ``s_0`` and ``s*`` independently with ``physics.sample_fields``
            (``max_mode``, ``amplitude``).
        sensing: Sensors, actuators and noise (``sipenv.envs.sensing.Sensing``; default:
            every cell observed and actuated, no noise).
    """

    physics: PhysicsModel
    horizon: int
    force_scale: float
    force_penalty: float
    max_mode: int = 8
    amplitude: float = 1.0
    task_sampler: TaskSampler | None = None
    sensing: Sensing = field(default_factory=Sensing)

    _observed_target_fields: ClassVar[int] = 1

    def __post_init__(self) -> None:
        # Types first (bool is an int to Python, strings compare badly): a wrong type gets the
        # same clear ValueError as a wrong value, not a TypeError from deep inside a reset.
        check_int("horizon", self.horizon, minimum=1)
        check_positive("force_scale", self.force_scale)
        check_positive("amplitude", self.amplitude)
        check_nonnegative("force_penalty", self.force_penalty)
        check_int("max_mode", self.max_mode, minimum=1, maximum=self.physics.n // 2 - 1,
                  hint=f"(modes up to n/2 - 1 fit n={self.physics.n} cells)")
        self.sensing.check(self.grid_shape)

    # --- tasks ----------------------------------------------------------------------------------

    def sample_tasks(self, batch: int, generator: torch.Generator, *,
                     device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``batch`` independent tasks ``(s_0, s*)``, each ``(batch, N)``."""
        if self.task_sampler is not None:
            return self.task_sampler(batch, generator, device=device, dtype=dtype)
        kw = dict(max_mode=self.max_mode, amplitude=self.amplitude, device=device, dtype=dtype)
        s0 = self.physics.sample_fields(batch, generator, **kw)  # type: ignore[arg-type]
        target = self.physics.sample_fields(batch, generator, **kw)  # type: ignore[arg-type]
        return s0, target

    # --- one step -------------------------------------------------------------------------------

    def _observed_targets(self, target: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """The target ``s*``: the observation is ``[s_t, s*, t/T]``, shape ``(B, 2N + 1)``
        (with sensors: ``[s_t at the sensors, s* whole or at the sensors, t/T]``)."""
        return (target,)

    def target_error(self, state: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Relative squared error ``‖s − s*‖² / ‖s*‖²`` per sample, shape ``(B,)``."""
        return relative_squared_error(state, target)

    def episode_loss(self, rollout: Rollout) -> torch.Tensor:
        """Negative return per sample, shape ``(B,)``: terminal error + penalty · Σ force cost."""
        cost = self.force_cost(rollout.actions).sum(0)
        return self.target_error(rollout.states[-1], rollout.target) + self.force_penalty * cost


if TYPE_CHECKING:  # mypy proves that ControlCore is a TaskCore
    _control_core_is_a_task_core: type[TaskCore] = ControlCore

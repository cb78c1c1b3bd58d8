"""``sip/CoupledOscillators-v0``: return a chain of nonlinear oscillators to its initial state.

The control task of Schnell, Holl & Thuerey, "Half-Inverse Gradients for Physical Deep Learning"
(ICLR 2022), Sec. 4.1, on ``sipenv.physics.oscillators.OscillatorPhysics``. The state (positions
and velocities, ``2K`` values) is larger than the action (one force per controlled oscillator),
so the core (``OscillatorCore``) states its ``state_shape`` beside its ``action_shape``; the
Gymnasium shells are the control shells of ``sipenv.envs.control``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, SupportsFloat

import numpy as np
import torch

from sipenv.envs.control import ControlEnv, ControlVectorEnv
from sipenv.envs.core import ControlCore, FieldCore, TaskCore
from sipenv.envs.sensing import Sensing
from sipenv.envs.settings import Factory, Route
from sipenv.physics.oscillators import OscillatorPhysics
from sipenv.validation import check_int, check_nonnegative, check_positive

__all__ = ["CoupledOscillatorsEnv", "CoupledOscillatorsVectorEnv", "OscillatorCore",
           "make_core"]

ENV_ID = "sip/CoupledOscillators-v0"


@dataclass(frozen=True)
class OscillatorCore(FieldCore):
    """The batched, differentiable oscillator task: from ``s_0`` reach ``s*`` (by default
    ``s_0`` itself) after ``horizon`` steps.

    Args:
        physics: The oscillator chain.
        horizon: Steps per episode (≥ 1).
        force_scale: Force per unit action: ``u = force_scale · clip(a, −1, 1)``.
        force_penalty: Weight of the per-step cost ``mean(a²)`` (≥ 0; 0 in the published task).
        amplitude: Initial positions and velocities are uniform in ``[0, amplitude)``.

    Shapes: states ``(B, 2K)``, actions ``(B, n_controls)``; ``n`` is the action size (what a
    policy outputs).
    """

    physics: OscillatorPhysics
    horizon: int
    force_scale: float
    force_penalty: float
    amplitude: float = 1.0
    sensing: Sensing = field(default_factory=Sensing)
    """Always the default (every state value observed, one force per controlled oscillator):
    the field envs' sensor and actuator options do not apply to a 4-value state."""

    def __post_init__(self) -> None:
        if self.sensing != Sensing():
            raise ValueError("sip/CoupledOscillators-v0 has no sensors/actuators/noise options: "
                             "its state is the oscillators' positions and velocities and its "
                             "action one force per controlled oscillator. For observation or "
                             "action noise, wrap it in sipenv.wrappers.SensorNoise / "
                             "ActionNoise.")
        check_int("horizon", self.horizon, minimum=1)
        check_positive("force_scale", self.force_scale)
        check_nonnegative("force_penalty", self.force_penalty)
        check_positive("amplitude", self.amplitude)

    @property
    def n(self) -> int:
        """Forces per step (the action size)."""
        return self.physics.n_controls

    @property
    def action_shape(self) -> tuple[int, ...]:
        """``(n_controls,)``."""
        return (self.physics.n_controls,)

    @property
    def state_shape(self) -> tuple[int, ...]:
        """``(2K,)``: positions then velocities."""
        return (self.physics.n,)

    # the observation [s_t, s*, t/T] (4K + 1 values) and the episode loss (terminal error +
    # penalty · Σ force cost) are the control task's, over this core's state and error
    error_description: ClassVar[str] = "terminal error ‖s_T − s*‖² (absolute)"
    """What ``target_error`` measures (reports name it; the field tasks' error is relative)."""
    _observed_target_fields = ControlCore._observed_target_fields
    _observed_targets = ControlCore._observed_targets
    obs_dim = ControlCore.obs_dim
    observe = ControlCore.observe
    episode_loss = ControlCore.episode_loss

    def sample_tasks(self, batch: int, generator: torch.Generator, *,
                     device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch`` tasks: ``s_0`` uniform in ``[0, amplitude)``, target ``s* = s_0``."""
        s0 = self.physics.sample_fields(batch, generator, amplitude=self.amplitude,
                                        device=device, dtype=dtype)
        return s0, s0.clone()

    def target_error(self, state: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Squared error ``‖s − s*‖²`` per sample, ``(B,)`` (the published loss; absolute, as
        the targets are ``O(1)`` by construction)."""
        return (state - target).square().sum(-1)


if TYPE_CHECKING:  # mypy proves that OscillatorCore is a TaskCore
    _oscillator_core_is_a_task_core: type[TaskCore] = OscillatorCore


make_core: Factory[OscillatorCore] = Factory(
    ENV_ID,
    {"physics": Route(OscillatorPhysics), "core": Route(OscillatorCore, exclude=("physics",))},
    lambda kw: OscillatorCore(physics=OscillatorPhysics(**kw["physics"]), **kw["core"]),
    horizon=96, force_scale=3.0, force_penalty=0.0)
"""Builds the core of ``sip/CoupledOscillators-v0`` from its keywords; the physics defaults are
``OscillatorPhysics``'s."""


class _OscillatorFrames:
    """Phase portraits instead of the 1-D field drawing of the control shells."""

    def _frames(self, forces: list[np.ndarray | None]) -> tuple[np.ndarray, ...]:
        from sipenv.envs.rendering_oscillators import draw_oscillators

        shell = self  # a ControlEnv / ControlVectorEnv
        assert shell.state is not None  # type: ignore[attr-defined]
        err = shell._reported_errors()  # type: ignore[attr-defined]
        state = shell.state.detach().cpu().double().numpy()  # type: ignore[attr-defined]
        target = shell.target.detach().cpu().double().numpy()  # type: ignore[attr-defined]
        steps = shell._steps()  # type: ignore[attr-defined]
        trail = getattr(self, "_trail", None)  # (the single env keeps its episode's path)
        return tuple(
            draw_oscillators(state[i], target[i], forces[i],
                             trail=None if trail is None else np.stack(trail),
                             step=int(steps[i]),
                             horizon=shell.horizon,  # type: ignore[attr-defined]
                             force_limit=shell.core.force_scale,  # type: ignore[attr-defined]
                             target_error=float(err[i]),
                             title=shell.title)  # type: ignore[attr-defined]
            for i in range(len(forces)))


class CoupledOscillatorsEnv(_OscillatorFrames, ControlEnv):
    """
    ## Description

    ``K`` unit oscillators in a chain, neighbours coupled by a cubic spring force
    (``sipenv.physics.oscillators.OscillatorPhysics``), integrated by classical RK4:
    ``ẋ_i = v_i``, ``v̇_i = −x_i + α[(x_{i+1} − x_i)³ + (x_{i−1} − x_i)³] + u_i``. Each step the
    agent chooses the force on the controlled oscillator(s) (by default only the last one). The
    goal is to bring the chain back to its initial state at the end of the episode: the published
    nonlinear-oscillator task of the half-inverse-gradient paper (Schnell, Holl & Thuerey, ICLR
    2022): two oscillators, 96 steps of ``dt = 0.125``, initial states uniform in ``[0, 1)⁴``.

    ## Action Space

    ``Box(-1, 1, (C,), float32)``, ``C = 1`` (``control="last"``) or ``K`` (``"each"``): the
    force is ``u = force_scale · clip(a, −1, 1)``. The published setting drives the last
    oscillator with ``3 · u`` and an unbounded ``u``; here ``force_scale = 3`` and ``|a| ≤ 1``.

    ## Observation Space

    ``Box(-inf, inf, (4K + 1,), float32)``: ``[x, v, x*, v*, t / horizon]``.

    ## Rewards

    ``−force_penalty · mean(a²)`` every step (0 by default); minus the squared error
    ``‖s_T − s*‖²`` at the last step.

    ## Starting State

    Positions and velocities uniform in ``[0, amplitude)``; the target is the initial state.
    ``reset(options={"initial_state": ..., "target": ...})`` poses a task (``(2K,)`` each).

    ## Episode End

    After ``horizon`` steps.

    ## Arguments

    - ``horizon=96``, ``force_scale=3.0``, ``force_penalty=0.0``, ``amplitude=1.0``;
      physics: ``oscillators=2``, ``dt=0.125``, ``coupling=1.0``, ``linear_coupling=0.0``,
      ``control="last"``,
      ``inverse_iterations=6``, ``force_iterations=3``.

    ## Example

    >>> import gymnasium as gym
    >>> env = gym.make("sip/CoupledOscillators-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, env.action_space.shape
    ((9,), (1,))

    ## Version History

    - v0: initial release.
    """

    make_core = make_core

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        out = super().reset(seed=seed, options=options)
        self._trail = [self._state_row()]
        return out

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        out = super().step(action)
        self._trail.append(self._state_row())
        return out

    def _state_row(self) -> np.ndarray:
        """The current ``(2K,)`` state as float64 numpy (one row of the drawn path)."""
        assert self.state is not None
        return self.state[0].detach().cpu().double().numpy()


class CoupledOscillatorsVectorEnv(_OscillatorFrames, ControlVectorEnv):
    """Native batched ``sip/CoupledOscillators-v0`` (same arguments as the single env)."""

    make_core = make_core

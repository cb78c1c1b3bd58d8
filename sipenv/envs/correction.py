"""Correction tasks: a network corrects a coarse solver each step to follow a fine reference.

A :class:`CorrectionCore` couples a *coarse* physics model (the one the agent steps and
corrects) with a *fine* reference model. A task is an initial fine state; its reference
trajectory is the fine solution, down-sampled to the coarse grid at every coarse step::

    r_t = downsample(fine state after t · k fine steps),     k = coarse dt / fine dt
    s_0 = r_0,    s_{t+1} = coarse.step(s_t, force_scale · clip(a_t, −1, 1))

The correction enters the coarse model as its additive force (``s' = P₀(s) + dt · c``), so the
exact per-step correction is ``coarse.force_for(s_t, r_{t+1})``. The per-step deviation is the
relative squared error ``‖s_t − r_t‖² / ‖r_t‖²``; the reward is minus it (plus a force cost), every
step. The core has the same interface as :class:`sipenv.envs.core.ControlCore` (so the agents'
training loops, DP and evaluation run unchanged); its "target" is the whole reference trajectory
``(B, T + 1, N)``, and :meth:`CorrectionCore.target_error` of a final state compares it with the
last reference state.

The Gymnasium shells :class:`CorrectionEnv` and :class:`CorrectionVectorEnv` follow the
conventions of :mod:`sipenv.envs.control` (validation, NEXT_STEP autoreset, rendering).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from sipenv.envs.control import (
    FieldEnv,
    FieldVectorEnv,
    _as_field,
    _seed_generator,
    checked_options,
)
from sipenv.envs.core import Policy, Rollout
from sipenv.physics import PhysicsModel

__all__ = ["CorrectionCore", "CorrectionEnv", "CorrectionVectorEnv", "block_average"]

StateSampler = Callable[..., torch.Tensor]
"""``sampler(batch, generator, *, device, dtype) -> fine initial states (batch, N_fine)``."""


def block_average(fine: torch.Tensor, ratio: int) -> torch.Tensor:
    """Periodic finite-volume down-sampling by an integer ``ratio``: ``(B, r N) → (B, N)``.

    Coarse cell ``J`` is centred on fine cell ``r J`` and averages the fine cells it covers
    (for even ``r`` the two outermost fine cells are half inside: weights ``1/(2r)``). The mean
    is conserved exactly.
    """
    if ratio == 1:
        return fine
    half = ratio // 2
    if ratio % 2:
        weights = {k: 1.0 / ratio for k in range(-half, half + 1)}
    else:
        weights = {k: 1.0 / ratio for k in range(-half + 1, half)}
        weights[-half] = weights[half] = 0.5 / ratio
    out = sum(w * torch.roll(fine, -k, dims=-1) for k, w in weights.items())
    assert isinstance(out, torch.Tensor)
    return out[..., ::ratio]


@dataclass(frozen=True)
class CorrectionCore:
    """Batched, differentiable definition of a "follow the fine reference" correction task.

    Args:
        physics: The coarse model the agent corrects (``step`` / ``force_for``).
        reference: The fine model (``n`` a multiple of the coarse ``n``; ``dt`` dividing the
            coarse ``dt``; same domain length).
        horizon: Coarse steps per episode (≥ 1).
        force_scale: Correction per unit action: ``c = force_scale · clip(a, −1, 1)``.
        force_penalty: Weight of the per-step cost ``mean(a²)`` in the reward.
        initial_sampler: Draws fine initial states.
    """

    physics: PhysicsModel
    reference: PhysicsModel
    horizon: int
    force_scale: float
    force_penalty: float
    initial_sampler: StateSampler

    def __post_init__(self) -> None:
        if not isinstance(self.horizon, numbers.Integral) or isinstance(self.horizon, bool) \
                or self.horizon < 1:
            raise ValueError(f"horizon must be an int ≥ 1, got {self.horizon!r}.")
        if not (isinstance(self.force_scale, numbers.Real) and math.isfinite(self.force_scale)
                and self.force_scale > 0):
            raise ValueError(f"force_scale must be a finite number > 0, got "
                             f"{self.force_scale!r}.")
        if not (isinstance(self.force_penalty, numbers.Real)
                and math.isfinite(self.force_penalty) and self.force_penalty >= 0):
            raise ValueError(f"force_penalty must be finite and ≥ 0, got "
                             f"{self.force_penalty!r}.")
        if self.reference.n % self.physics.n:
            raise ValueError(f"The fine grid ({self.reference.n} cells) must be a multiple of the "
                             f"coarse grid ({self.physics.n} cells).")
        steps = self.physics.dt / self.reference.dt
        if abs(steps - round(steps)) > 1e-9 * steps or round(steps) < 1:
            raise ValueError(f"The fine dt ({self.reference.dt}) must divide the coarse dt "
                             f"({self.physics.dt}).")
        length = (getattr(self.physics, "length", 1.0), getattr(self.reference, "length", 1.0))
        if not math.isclose(*length):
            raise ValueError(f"Coarse and fine domain lengths differ: {length}.")

    @property
    def n(self) -> int:
        """Coarse grid cells (the action dimension)."""
        return self.physics.n

    @property
    def obs_dim(self) -> int:
        """Observation size: coarse state (N) + time fraction (1)."""
        return self.physics.n + 1

    @property
    def ratio(self) -> int:
        """Fine cells per coarse cell."""
        return self.reference.n // self.physics.n

    @property
    def fine_steps(self) -> int:
        """Fine steps per coarse step."""
        return round(self.physics.dt / self.reference.dt)

    # --- tasks ----------------------------------------------------------------------------------

    def reference_trajectory(self, fine_state: torch.Tensor) -> torch.Tensor:
        """Down-sampled fine solution ``(B, T + 1, N)`` from fine initial states ``(B, N_fine)``
        (computed in float64 without gradients, returned in the input's dtype)."""
        with torch.no_grad():
            state = fine_state.double()
            zero = torch.zeros_like(state)
            out = [block_average(state, self.ratio)]
            for _ in range(self.horizon):
                for _ in range(self.fine_steps):
                    state = self.reference.step(state, zero)
                out.append(block_average(state, self.ratio))
        return torch.stack(out, dim=1).to(fine_state.dtype)

    def sample_tasks(self, batch: int, generator: torch.Generator, *,
                     device: torch.device | str | None = None,
                     dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``batch`` tasks: coarse initial states ``(B, N)`` and references
        ``(B, T + 1, N)``."""
        fine = self.initial_sampler(batch, generator, dtype=torch.float64)
        reference = self.reference_trajectory(fine)
        dev = device if device is not None else generator.device
        reference = reference.to(device=dev, dtype=dtype)
        return reference[:, 0].clone(), reference

    # --- one step -------------------------------------------------------------------------------

    def observe(self, state: torch.Tensor, target: torch.Tensor | None,
                time_fraction: float | torch.Tensor) -> torch.Tensor:
        """Observation ``[s_t, t/T]`` as float32, shape ``(B, N + 1)``. The reference
        (``target``) is not observed: the corrector must infer the correction from the coarse
        state alone."""
        del target
        tf = torch.as_tensor(time_fraction, dtype=torch.float32, device=state.device)
        tf = tf.expand(state.shape[0]) if tf.ndim == 0 else tf
        return torch.cat([state.float(), tf[:, None]], dim=-1)

    def action_to_force(self, action: torch.Tensor) -> torch.Tensor:
        """``force_scale · clip(action, −1, 1)``."""
        return self.force_scale * action.clamp(-1.0, 1.0)

    def step(self, state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """One coarse step corrected by the normalised ``action`` (clipped to ``[-1, 1]``)."""
        return self.physics.step(state, self.action_to_force(action).to(state.dtype))

    def deviation(self, state: torch.Tensor, reference_state: torch.Tensor) -> torch.Tensor:
        """Relative squared deviation ``‖s − r‖² / ‖r‖²`` per sample, shape ``(B,)``."""
        return ((state - reference_state) ** 2).sum(-1) / \
            (reference_state**2).sum(-1).clamp_min(1e-30)

    def target_error(self, state: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """:meth:`deviation` from a reference state ``(B, N)``, or — given a whole reference
        trajectory ``(B, T + 1, N)`` — from its last state (the final-state error)."""
        return self.deviation(state, target[:, -1] if target.ndim == 3 else target)

    def force_cost(self, action: torch.Tensor) -> torch.Tensor:
        """Per-step cost ``mean(clip(a)²)`` over cells, shape ``(B,)``."""
        return (action.clamp(-1.0, 1.0) ** 2).mean(-1)

    # --- whole episodes -------------------------------------------------------------------------

    def rollout(self, policy: Policy, s0: torch.Tensor, target: torch.Tensor) -> Rollout:
        """Run ``policy`` for ``horizon`` corrected coarse steps (differentiable if it is)."""
        states, actions, state = [s0], [], s0
        for t in range(self.horizon):
            action = policy(self.observe(state, target, t / self.horizon)).clamp(-1.0, 1.0)
            state = self.step(state, action)
            actions.append(action)
            states.append(state)
        return Rollout(torch.stack(states), torch.stack(actions), target)

    def step_deviations(self, rollout: Rollout) -> torch.Tensor:
        """Per-step deviations ``(T, B)`` of ``s_1 … s_T`` from ``r_1 … r_T``."""
        reference = rollout.target.transpose(0, 1)[1:]  # (T, B, N)
        return ((rollout.states[1:] - reference) ** 2).sum(-1) / \
            (reference**2).sum(-1).clamp_min(1e-30)

    def episode_loss(self, rollout: Rollout) -> torch.Tensor:
        """Negative return per sample ``(B,)``: ``Σ_t deviation_t + penalty · Σ_t mean(a_t²)``."""
        cost = self.force_cost(rollout.actions).sum(0)
        return self.step_deviations(rollout).sum(0) + self.force_penalty * cost


def _parse_initial_state(options: Any, n_fine: int, batch: int | None, device: torch.device,
                         dtype: torch.dtype) -> torch.Tensor | None:
    """The fine ``initial_state`` option (or None), validated before anything changes."""
    options = checked_options(options, ("initial_state",), example="{'initial_state': ...}",
                              described="'initial_state' (the fine initial state)")
    if "initial_state" not in options:
        return None
    shape = (n_fine,) if batch is None else (batch, n_fine)
    return _as_field(options["initial_state"], "initial_state", shape, device, dtype)


class CorrectionEnv(FieldEnv):
    """A single episode of a :class:`CorrectionCore` task behind the Gymnasium API.

    Subclasses build the core and carry the user-facing documentation (see
    :class:`sipenv.envs.corrected_burgers.CorrectedBurgersEnv`). Stepping, validation and
    rendering are :class:`sipenv.envs.control.FieldEnv`'s.
    """

    core: CorrectionCore

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode from a sampled fine state, or ``options["initial_state"]`` (fine
        grid, shape ``(N_fine,)``); its down-sampled fine solution is the reference."""
        fine = _parse_initial_state(options, self.core.reference.n, None, self.device,
                                    torch.float64)
        super().reset(seed=seed)
        gen = _seed_generator(self.np_random, self.device)
        if fine is None:
            s0, reference = self.core.sample_tasks(1, gen, device=self.device, dtype=self.dtype)
        else:
            reference = self.core.reference_trajectory(fine[None]).to(self.dtype)
            s0 = reference[:, 0].clone()
        return self._start(s0, reference)

    def _obs(self) -> np.ndarray:
        assert self.state is not None
        return self.core.observe(self.state, None, self.t / self.horizon)[0].cpu().numpy()

    def _error(self) -> float:
        """The deviation from the current reference state."""
        assert self.state is not None and self.target is not None
        return float(self.core.deviation(self.state, self.target[:, self.t])[0])

    def _reward(self, error: float, force_cost: float, terminated: bool) -> float:
        """Minus the deviation and the force cost, every step."""
        return -error - self.core.force_penalty * force_cost

    def _frame_target(self) -> torch.Tensor:
        assert self.target is not None
        return self.target[0, self.t]


class CorrectionVectorEnv(FieldVectorEnv):
    """``num_envs`` episodes of a :class:`CorrectionCore` task, stepped as one torch batch.

    Autoreset follows Gymnasium 1.x ``AutoresetMode.NEXT_STEP`` (see
    :class:`sipenv.envs.control.FieldVectorEnv`). Given the same fine initial states and actions,
    trajectories equal those of ``num_envs`` single envs.
    """

    core: CorrectionCore

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every sub-env; ``options["initial_state"]`` may give the fine initial states
        ``(num_envs, N_fine)``."""
        fine = _parse_initial_state(options, self.core.reference.n, self.num_envs, self.device,
                                    torch.float64)
        super().reset(seed=seed)
        self._generator = _seed_generator(self.np_random, self.device)
        if fine is None:
            s0, reference = self.core.sample_tasks(self.num_envs, self._generator,
                                                   device=self.device, dtype=self.dtype)
        else:
            reference = self.core.reference_trajectory(fine).to(self.dtype)
            s0 = reference[:, 0].clone()
        return self._start(s0, reference)

    def _frame_targets(self) -> torch.Tensor:
        """Each sub-env's current reference state, ``(num_envs, N)``."""
        assert self.target is not None
        t = torch.as_tensor(self.t, device=self.device)
        return self.target[torch.arange(self.num_envs, device=self.device), t]

    def _errors(self) -> torch.Tensor:
        assert self.state is not None
        return self.core.deviation(self.state, self._frame_targets())

    def _rewards(self, errors: np.ndarray, force_cost: np.ndarray,
                 terminated: np.ndarray) -> np.ndarray:
        return -errors - self.core.force_penalty * force_cost

    def _obs(self) -> np.ndarray:
        assert self.state is not None
        return self.core.observe(self.state, None, self._time_fraction()).cpu().numpy()

"""Correction tasks: a network corrects a coarse solver each step to follow a fine reference.

A ``CorrectionCore`` couples a *coarse* physics model (the one the agent steps and
corrects) with a *fine* reference model. A task is an initial fine state; its reference
trajectory is the fine solution, down-sampled to the coarse grid at every coarse step::

    r_t = downsample(fine state after t · k fine steps),     k = coarse dt / fine dt
    s_0 = r_0,    s_{t+1} = coarse.step(s_t, force_scale · clip(a_t, −1, 1))

The correction enters the coarse model as its additive force (``s' = P₀(s) + dt · c``), so the
exact per-step correction is ``coarse.force_for(s_t, r_{t+1})``. The per-step deviation is the
relative squared error ``‖s_t − r_t‖² / ‖r_t‖²``; the reward is minus it (plus a force cost), every
step. The core has the same interface as ``sipenv.envs.core.ControlCore`` (so the agents'
training loops, DP and evaluation run unchanged); its "target" is the whole reference trajectory
``(B, T + 1, N)``, and ``CorrectionCore.target_error`` of a final state compares it with the
last reference state.

The task's env hooks (``CorrectionTask``, batched, written once) run in the shells of
``sipenv.envs.control``: ``CorrectionEnv`` and ``CorrectionVectorEnv`` (validation,
NEXT_STEP autoreset, rendering).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from gymnasium import spaces

from sipenv.envs.checks import as_field, checked_options
from sipenv.envs.control import FieldEnv, FieldTask, FieldVectorEnv
from sipenv.envs.core import FieldCore, Rollout, TaskCore, relative_squared_error
from sipenv.envs.sensing import Sensing
from sipenv.physics import PhysicsModel
from sipenv.validation import check_int, check_nonnegative, check_positive

__all__ = ["CorrectionCore", "CorrectionEnv", "CorrectionTask", "CorrectionVectorEnv",
           "block_average"]

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
class CorrectionCore(FieldCore):
    """Batched, differentiable definition of a "follow the fine reference" correction task.

    Args:
        physics: The coarse model the agent corrects (``step`` / ``force_for``).
        reference: The fine model (``n`` a multiple of the coarse ``n``; ``dt`` dividing the
            coarse ``dt``; same domain length).
        horizon: Coarse steps per episode (≥ 1).
        force_scale: Correction per unit action: ``c = force_scale · clip(a, −1, 1)``.
        force_penalty: Weight of the per-step cost ``mean(a²)`` in the reward.
        initial_sampler: Draws fine initial states.
        sensing: Sensors, actuators and noise (``sipenv.envs.sensing.Sensing``; default:
            every cell observed and corrected, no noise).
    """

    physics: PhysicsModel
    reference: PhysicsModel
    horizon: int
    force_scale: float
    force_penalty: float
    initial_sampler: StateSampler
    sensing: Sensing = field(default_factory=Sensing)

    def __post_init__(self) -> None:
        check_int("horizon", self.horizon, minimum=1)
        check_positive("force_scale", self.force_scale)
        check_nonnegative("force_penalty", self.force_penalty)
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
        self.sensing.check(self.grid_shape)

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

    # The observation is ``[s_t, t/T]`` (float32, ``(B, N + 1)``; with sensors ``[s_t at the
    # sensors, t/T]``): the reference is not observed (``FieldCore.observe`` with no target
    # fields), so the corrector must infer the correction from the coarse state alone.

    def deviation(self, state: torch.Tensor, reference_state: torch.Tensor) -> torch.Tensor:
        """Relative squared deviation ``‖s − r‖² / ‖r‖²`` per sample, shape ``(B,)``."""
        return relative_squared_error(state, reference_state)

    def target_error(self, state: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """``deviation`` from a reference state ``(B, N)``, or — given a whole reference
        trajectory ``(B, T + 1, N)`` — from its last state (the final-state error)."""
        return self.deviation(state, target[:, -1] if target.ndim == 3 else target)

    def step_deviations(self, rollout: Rollout) -> torch.Tensor:
        """Per-step deviations ``(T, B)`` of ``s_1 … s_T`` from ``r_1 … r_T``."""
        reference = rollout.target.transpose(0, 1)[1:]  # (T, B, N)
        return relative_squared_error(rollout.states[1:], reference)

    def episode_loss(self, rollout: Rollout) -> torch.Tensor:
        """Negative return per sample ``(B,)``: ``Σ_t deviation_t + penalty · Σ_t mean(a_t²)``."""
        cost = self.force_cost(rollout.actions).sum(0)
        return self.step_deviations(rollout).sum(0) + self.force_penalty * cost


class CorrectionTask(FieldTask):
    """Hooks of the "follow the fine reference" task of a ``CorrectionCore``, batched,
    shared by ``CorrectionEnv`` and ``CorrectionVectorEnv``: the observation
    ``[s_t, t/T]``, minus the deviation from the current reference state (and the force cost)
    every step; the reset option ``initial_state`` (the fine initial state)."""

    core: CorrectionCore

    def _options_space(self) -> spaces.Dict:
        return spaces.Dict({"initial_state": spaces.Box(
            -np.inf, np.inf, shape=(self.core.reference.n,), dtype=np.float64)})

    def _parse_reset(self, options: Any) -> torch.Tensor | None:
        options = checked_options(options, ("initial_state",), example="{'initial_state': ...}",
                                  described="'initial_state' (the fine initial state)")
        if "initial_state" not in options:
            return None
        shape = (*self._batch_shape, self.core.reference.n)
        return as_field(options["initial_state"], "initial_state", shape, self.device,
                        torch.float64)

    def _new_episodes(self, given: torch.Tensor | None, generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor]:
        if given is None:
            return self.core.sample_tasks(self._batch_size, generator, device=self.device,
                                          dtype=self.dtype)
        fine = given.reshape(self._batch_size, self.core.reference.n)
        reference = self.core.reference_trajectory(fine).to(self.dtype)
        return reference[:, 0].clone(), reference

    def _frame_targets(self) -> torch.Tensor:
        """Each episode's current reference state, ``(B, N)``."""
        assert self.target is not None
        t = torch.as_tensor(self._steps(), device=self.device)
        return self.target[torch.arange(self._batch_size, device=self.device), t]

    def _errors(self, dtype: torch.dtype | None = None) -> torch.Tensor:
        """The deviation from the current reference state."""
        assert self.state is not None
        dtype = dtype or self.state.dtype
        return self.core.deviation(self.state.to(dtype), self._frame_targets().to(dtype))

    def _rewards(self, errors: np.ndarray, force_cost: np.ndarray,
                 terminated: np.ndarray) -> np.ndarray:
        """Minus the deviation and the force cost, every step."""
        return -errors - self.core.force_penalty * force_cost


class CorrectionEnv(CorrectionTask, FieldEnv):
    """A single episode of a ``CorrectionCore`` task behind the Gymnasium API.

    Subclasses set ``make_core`` and carry the user-facing documentation (see
    ``sipenv.envs.corrected_burgers.CorrectedBurgersEnv``). Stepping, validation and
    rendering are ``sipenv.envs.control.FieldEnv``'s.
    """


class CorrectionVectorEnv(CorrectionTask, FieldVectorEnv):
    """``num_envs`` episodes of a ``CorrectionCore`` task, stepped as one torch batch.

    Autoreset follows Gymnasium 1.x ``AutoresetMode.NEXT_STEP`` (see
    ``sipenv.envs.control.FieldVectorEnv``). Given the same fine initial states and actions,
    trajectories equal those of ``num_envs`` single envs.
    """


if TYPE_CHECKING:  # mypy proves that CorrectionCore is a TaskCore
    _correction_core_is_a_task_core: type[TaskCore] = CorrectionCore

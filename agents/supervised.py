"""Supervised baseline: regression onto reference solutions.

* **Control tasks**: for every sampled task ``(s_0, s*)`` the reference is the exact
  minimum-force open-loop control of the linear problem: roll out zero forces, then take one
  SIP step with ``η = 1`` and the minimum-force split (``agents.sip.sip_control_targets``),
  which for linear spectral physics with an exact inverse *is* the least-``Σ‖F_t‖²`` solution
  reaching ``s*``. The reference trajectory is replayed under those forces, and the policy
  regresses ``π(s_t^ref, s*, t) ≈ a_t^ref`` on it (teacher forcing). Only physics with spectral
  factors has it (``sip/ControlledDiffusion-v0``).
* **Inverse problems with a known answer** (``sip/HeatInverse-v0``: the true ``x*`` of each
  sample): ``½‖f_θ(y*) − x*‖²`` averaged over the batch.

The data stream is the same as for SIP and DP; only the targets differ. Problems without a
reference solution (Burgers tasks, the sine problem) are refused by
``SupervisedConfig.check_problem`` before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from agents.problems import InverseProblem, Problem, TaskProblem
from agents.sip import sip_control_targets
from agents.trainer import Algorithm, Step, TrainConfig, TrainResult
from sipenv.envs.core import Rollout, TaskCore

__all__ = ["ALGORITHM", "SupervisedConfig", "loss", "reference_solution", "train"]


@dataclass
class SupervisedConfig(TrainConfig):
    """Supervised training (all ``agents.trainer.TrainConfig`` fields)."""

    algo: Literal["supervised"] = "supervised"

    def check_problem(self, problem: Problem) -> None:
        """Only problems with a reference solution."""
        super().check_problem(problem)
        if not problem.has_reference:
            raise ValueError(problem.reference_advice)


def reference_solution(core: TaskCore, s0: torch.Tensor, target: torch.Tensor) -> Rollout:
    """Minimum-force reference trajectory for each task (normalised, *unclipped* actions).

    Args:
        core: A control core on spectral-linear physics.
        s0, target: ``(B, N)`` tasks.

    Returns:
        Rollout with states ``(T + 1, B, N)`` and actions ``(T, B, N)``.
    """
    with torch.no_grad():
        zero = torch.zeros((core.horizon, *s0.shape), dtype=s0.dtype, device=s0.device)
        states = [s0]
        for t in range(core.horizon):
            states.append(core.physics.step(states[-1], zero[t]))
        forces = sip_control_targets(core.physics, torch.stack(states), zero, target, eta=1.0,
                                     split="minimum-force")
        ref_states = [s0]
        for t in range(core.horizon):
            ref_states.append(core.physics.step(ref_states[-1], forces[t]))
        return Rollout(torch.stack(ref_states), forces / core.force_scale, target)


def loss(network: nn.Module, problem: Problem, batch: Any, config: SupervisedConfig) -> Step:
    """Tasks: ``Σ_t ½‖π(s_t^ref, s*, t) − a_t^ref‖²`` averaged over the batch; inverse
    problems: ``½‖f_θ(y*) − x*‖²`` averaged over the batch."""
    del config
    if isinstance(problem, InverseProblem):
        x = problem.predict(network, batch.y_target)
        assert batch.x_true is not None  # (check_problem: has_reference)
        diff = (x - batch.x_true.to(x.dtype)).flatten(1)
        return Step(0.5 * diff.pow(2).sum(1).mean(), x)
    assert isinstance(problem, TaskProblem)
    core = problem.core
    s0, target = batch
    ref = reference_solution(core, s0, target)
    horizon, size = ref.actions.shape[:2]
    times = torch.arange(horizon, device=s0.device, dtype=torch.float32) / horizon
    obs = core.observe(ref.states[:-1].reshape(horizon * size, -1), target.repeat(horizon, 1),
                       times.repeat_interleave(size))
    diff = network(obs) - ref.actions.reshape(horizon * size, -1).float()
    value = diff.pow(2).sum(-1).sum() / (2 * size)
    return Step(value, None, {"reference_force_cost": float(
        core.force_cost(ref.actions).sum(0).mean())})


ALGORITHM = Algorithm("supervised", SupervisedConfig, loss=loss)
"""Supervised regression onto reference solutions, with the default gradient update."""


def train(config: SupervisedConfig, **kwargs: Any) -> TrainResult:
    """Train by supervised regression; see ``agents.trainer.run_training``."""
    return ALGORITHM.train(config, **kwargs)

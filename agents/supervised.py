"""Supervised baseline: regression onto reference solutions.

* **Control tasks**: for every sampled task ``(s_0, s*)`` the reference is the exact
  minimum-force open-loop control of the linear problem: roll out zero forces, then take one
  SIP step with ``η = 1`` and the minimum-force split (``agents.sip.sip_control_targets``),
  which for linear spectral physics with an exact inverse *is* the least-``Σ‖F_t‖²`` solution
  reaching ``s*``. The reference trajectory is replayed under those forces, and the policy
  regresses ``π(s_t^ref, s*, t) ≈ a_t^ref`` on it (teacher forcing). Only physics with spectral
  factors has it (``sip/ControlledDiffusion-v0``). With an actuator basis
  (``sipenv.envs.sensing``) the reference is computed in actuator space: the open-loop optimum
  of the episode loss over actions in ``[−1, 1]`` (``open_loop_optimum``), since the
  unconstrained least-squares actions of a few smooth actuators are far outside the box.
  The policy observes what the env observes (the sensors); the reference uses the full state.
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
from agents.sip import actuator_response, box_least_squares, sip_control_targets
from agents.trainer import Algorithm, Step, TrainConfig, TrainResult
from sipenv.envs.core import Rollout, TaskCore

__all__ = ["ALGORITHM", "SupervisedConfig", "loss", "open_loop_optimum", "reference_solution",
           "train"]


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
        Rollout with states ``(T + 1, B, N)`` and actions ``(T, B, N)`` (``(T, B, M)`` with
        ``M`` actuators: then the open-loop optimum, within ``[-1, 1]``).
    """
    if core.sensing.actuated:
        return open_loop_optimum(core, s0, target)
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


def open_loop_optimum(core: TaskCore, s0: torch.Tensor, target: torch.Tensor, *,
                      iterations: int = 1000) -> Rollout:
    """The open-loop optimum of each task's episode loss on linear physics, in actuator space:
    ``min_a ‖s_T(a) − s*‖²/‖s*‖² + force_penalty · Σ_t mean(a_t²)`` over actions
    ``a ∈ [−1, 1]^(T×M)`` (the box the env clips to), where ``s_T(a) = s_T(0) + K a`` with
    ``K`` of ``agents.sip.actuator_response``. A convex box-constrained quadratic, solved by
    accelerated projected gradient (FISTA, Beck & Teboulle 2009) in float64 for all tasks at
    once, with step ``1/L`` (``L`` the gradient's Lipschitz constant).

    Args:
        core: A control core with linear, homogeneous physics (e.g. ``DiffusionPhysics``).
        s0, target: ``(B, N)`` tasks.
        iterations: FISTA iterations.

    Returns:
        The optimal rollout: states ``(T + 1, B, N)`` (in ``s0``'s dtype) and actions
        ``(T, B, M)``.
    """
    with torch.no_grad():
        horizon = core.horizon
        k = actuator_response(core, device=s0.device)  # (N, T·M), float64
        free = s0.double()
        for _ in range(horizon):
            free = core.physics.step(free, torch.zeros_like(free))
        goal = target.double()
        m = k.shape[1] // horizon
        x = box_least_squares(k, goal - free, 1.0 / goal.square().sum(-1, keepdim=True).clamp_min(
            1e-30), core.force_penalty / m, torch.zeros(s0.shape[0], k.shape[1], device=s0.device,
                                                        dtype=torch.float64),
            iterations=iterations)
        actions = x.reshape(-1, horizon, m).transpose(0, 1)
        states = [s0.double()]
        for t in range(horizon):
            states.append(core.physics.step(states[-1], core.actuate(actions[t])))
        return Rollout(torch.stack(states).to(s0.dtype), actions.to(s0.dtype), target)


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

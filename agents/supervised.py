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

* **Nonlinear control tasks** (``sip/ShapeTransition-v0``) with ``references`` (a
  directory): the open-loop optimum of each task of a fixed pool, computed offline by
  ``agents.reference_cache`` (cached there with its settings, built at validation, outside the
  training clock); each batch draws its tasks from the pool (a finite training set, unlike
  the fresh tasks of SIP and DP), replays their references and regresses the policy onto them.

Otherwise the data stream is the same as for SIP and DP; only the targets differ. Problems without a
reference solution (Burgers tasks, the sine problem) are refused by
``SupervisedConfig.check_problem`` before anything runs.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from agents.problems import InverseProblem, Problem, TaskProblem
from agents.reference_cache import ReferencePool, ReferenceSettings, ensure_references
from agents.sip import actuator_response, box_least_squares, sip_control_targets
from agents.trainer import Algorithm, Step, TrainConfig, TrainResult
from sipenv.envs.core import Rollout, TaskCore
from sipenv.validation import check_int

__all__ = ["ALGORITHM", "SupervisedConfig", "loss", "open_loop_optimum", "reference_solution",
           "train"]


@dataclass
class SupervisedConfig(TrainConfig):
    """Supervised training (all ``agents.trainer.TrainConfig`` fields)."""

    algo: Literal["supervised"] = "supervised"
    references: str = ""
    """Directory of the cached open-loop references of a nonlinear control task (built there
    on first use; refused if made with other settings). Empty: only exact references."""
    reference_tasks: int = 256
    """Tasks in the reference pool (with --references)."""
    reference_iterations: int = 100
    """Adam steps of each task's open-loop optimisation (with --references)."""

    def reference_settings(self) -> ReferenceSettings:
        """The settings of the reference pool of this run (``agents.reference_cache``)."""
        return ReferenceSettings(env_id=self.env_id, env_kwargs=json.loads(self.env_kwargs),
                                 dtype=self.env_dtype, tasks=self.reference_tasks,
                                 seed=REFERENCE_SEED, iterations=self.reference_iterations)

    def check_fields(self) -> None:
        """``TrainConfig.check_fields`` plus the reference pool's settings.

        Raises:
            ValueError: Naming the setting and how to fix it.
        """
        super().check_fields()
        if not isinstance(self.references, str):
            raise ValueError(f"references must be a directory path (text), got "
                             f"{self.references!r}.")
        check_int("reference_tasks", self.reference_tasks, minimum=1)
        check_int("reference_iterations", self.reference_iterations, minimum=1)

    def check_problem(self, problem: Problem) -> None:
        """Only problems with a reference solution (or a reference pool: ``references``).

        Raises:
            ValueError: Without a reference, or with ``references`` where the problem has an
                exact one (the pool would be ignored).
        """
        super().check_problem(problem)
        if self.references and problem.has_reference:
            raise ValueError(f"--references has no effect on {problem.env_id}: it has exact "
                             "reference solutions. Leave --references out.")
        if self.references and isinstance(problem, TaskProblem) and problem.kind == "control" \
                and not problem.has_reference:
            _pool(self.references, self.reference_settings())  # (built once, cached)
            return
        if not problem.has_reference:
            raise ValueError(problem.reference_advice + (
                " Or pass --references DIR: open-loop optimum references computed offline."
                if isinstance(problem, TaskProblem) and problem.kind == "control" else ""))


REFERENCE_SEED = 3_000_000
"""Seed of the reference pool's tasks (disjoint from the held-out seeds of
``agents.problems``)."""


@functools.lru_cache(maxsize=4)
def _pool_cached(directory: str, settings_json: str) -> ReferencePool:
    return ensure_references(directory, ReferenceSettings(**json.loads(settings_json)))


def _pool(directory: str, settings: ReferenceSettings) -> ReferencePool:
    return _pool_cached(directory, json.dumps(settings.to_json(), sort_keys=True))


def pool_batch(pool: ReferencePool, core: TaskCore, s0: torch.Tensor) -> Rollout:
    """``len(s0)`` tasks of the pool (indices drawn from a generator seeded by the batch's
    content, so a seeded run is reproducible) with their reference trajectories."""
    seed = int(torch.randint(2**31 - 1, (), generator=torch.Generator().manual_seed(
        int(s0.double().abs().sum().item() * 1e6) % (2**31 - 1))))
    index = torch.randint(len(pool.s0), (s0.shape[0],), generator=torch.Generator().manual_seed(
        seed)).to(s0.device)
    actions = pool.actions.to(s0.device, s0.dtype)[:, index]
    with torch.no_grad():
        states = [pool.s0.to(s0.device, s0.dtype)[index]]
        for t in range(core.horizon):
            states.append(core.step(states[-1], actions[t]))
    return Rollout(torch.stack(states), actions, pool.target.to(s0.device, s0.dtype)[index])


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
    if isinstance(problem, InverseProblem):
        x = problem.predict(network, batch.y_target)
        assert batch.x_true is not None  # (check_problem: has_reference)
        diff = (x - batch.x_true.to(x.dtype)).flatten(1)
        return Step(0.5 * diff.pow(2).sum(1).mean(), x)
    assert isinstance(problem, TaskProblem)
    core = problem.core
    s0, target = batch
    if problem.has_reference:
        ref = reference_solution(core, s0, target)
    else:  # (a pool of open-loop references: check_problem)
        ref = pool_batch(_pool(config.references, config.reference_settings()), core, s0)
        target = ref.target
    horizon, size = ref.actions.shape[:2]
    times = torch.arange(horizon, device=s0.device, dtype=torch.float32) / horizon
    obs = core.observe(ref.states[:-1].flatten(0, 1),
                       target.repeat(horizon, *[1] * (target.ndim - 1)),
                       times.repeat_interleave(size))
    diff = network(obs).flatten(1) - ref.actions.reshape(horizon * size, -1).float()
    value = diff.pow(2).sum(-1).sum() / (2 * size)
    return Step(value, None, {"reference_force_cost": float(
        core.force_cost(ref.actions).sum(0).mean())})


ALGORITHM = Algorithm("supervised", SupervisedConfig, loss=loss)
"""Supervised regression onto reference solutions, with the default gradient update."""


def train(config: SupervisedConfig, **kwargs: Any) -> TrainResult:
    """Train by supervised regression; see ``agents.trainer.run_training``."""
    return ALGORITHM.train(config, **kwargs)

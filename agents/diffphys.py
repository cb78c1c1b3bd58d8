"""Differentiable-physics (DP) training: gradients of the problem's own loss through the physics.

On a control task the policy is rolled out through the env's differentiable core with autograd
on, and the loss is the env's objective (negative return): the relative terminal error
``‖s_T − s*‖² / ‖s*‖²`` plus ``force_penalty · Σ_t mean(a_t²)``; backpropagation runs through
all ``T`` physics steps. On a single-step inverse problem the loss is ``½‖P(f_θ(y*)) − y*‖²``
averaged over the batch, differentiated through ``P`` (in the physics' precision). "A plain
optimizer through the physics" (Adam, SGD, Adagrad, Adadelta, RMSprop: ``--optimizer``) is DP
with that optimizer. This is the baseline SIP is measured against: same network, data stream and
evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from torch import nn

from agents.problems import InverseProblem, Problem, TaskProblem
from agents.trainer import Algorithm, Step, TrainConfig, TrainResult

__all__ = ["ALGORITHM", "DPConfig", "loss", "train"]


@dataclass
class DPConfig(TrainConfig):
    """DP training (all ``agents.trainer.TrainConfig`` fields)."""

    algo: Literal["dp"] = "dp"


def loss(network: nn.Module, problem: Problem, batch: Any, config: DPConfig) -> Step:
    """The problem's loss, differentiable through the physics, averaged over the batch.

    Tasks: mean negative return of a differentiable rollout (prediction: the rollout).
    Inverse problems: mean ``½‖P(x) − y*‖²`` of ``x = f_θ(y*)`` (prediction: ``x``).
    """
    del config
    if isinstance(problem, InverseProblem):
        x = problem.predict(network, batch.y_target)
        value = problem.physics.loss(x.to(problem.physics_dtype), batch.y_target).mean()
        return Step(value, x)
    assert isinstance(problem, TaskProblem)
    s0, target = batch
    rollout = problem.core.rollout(network, s0, target)
    return Step(problem.core.episode_loss(rollout).mean(), rollout)


ALGORITHM = Algorithm("dp", DPConfig, loss=loss)
"""DP: the problem's loss through the physics, trained with the default gradient update."""


def train(config: DPConfig, **kwargs: Any) -> TrainResult:
    """Train with DP; see ``agents.trainer.run_training`` for ``kwargs``."""
    return ALGORITHM.train(config, **kwargs)

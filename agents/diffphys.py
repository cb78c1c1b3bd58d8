"""Differentiable-physics (DP) training: gradients of the episode loss through the rollout.

The policy is rolled out through the env's differentiable core with autograd on, and the loss is
the env's own objective (negative return): the relative terminal error
``‖s_T − s*‖² / ‖s*‖²`` plus ``force_penalty · Σ_t mean(a_t²)``. Backpropagation runs through all
``T`` physics steps; any torch optimizer (Adam, SGD, Adagrad, Adadelta, RMSprop) updates the
network. This is the baseline SIP is measured against: same network, data stream and evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from agents.trainer import TrainConfig, TrainResult, rollout_metrics, run_training
from sipenv.envs.core import ControlCore

__all__ = ["DPConfig", "loss_fn", "train"]


@dataclass
class DPConfig(TrainConfig):
    """DP training (all :class:`agents.trainer.TrainConfig` fields)."""

    algo: Literal["dp"] = "dp"


def loss_fn(policy: nn.Module, core: ControlCore, s0: torch.Tensor, target: torch.Tensor,
            config: DPConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean negative return of a differentiable rollout (gradients flow through the physics)."""
    rollout = core.rollout(policy, s0, target)
    loss = core.episode_loss(rollout).mean()
    return loss, rollout_metrics(core, rollout)


def train(config: DPConfig, **kwargs: Any) -> TrainResult:
    """Train a policy with DP; see :func:`agents.trainer.run_training` for ``kwargs``."""
    return run_training(config, loss_fn, **kwargs)

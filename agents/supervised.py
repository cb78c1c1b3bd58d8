"""Supervised baseline: regression onto reference solutions computed by an inverse solver.

For every sampled task ``(s_0, s*)`` the reference is the exact minimum-force open-loop control
of the linear problem: roll out zero forces, then take one SIP step with ``η = 1`` and the
minimum-force split (:func:`agents.sip.sip_control_targets`), which for linear spectral physics
with an exact inverse *is* the least-``Σ‖F_t‖²`` solution reaching ``s*``. The reference
trajectory is replayed under those forces, and the policy regresses ``π(s_t^ref, s*, t) ≈ a_t^ref``
on it (teacher forcing). The data stream is the same as for SIP and DP; only the targets differ:
supervised training sees the reference states, SIP its own rollout's states.

It needs physics with spectral factors and an exact inverse (``sip/ControlledDiffusion-v0``);
other physics raise ``TypeError`` from the minimum-force split.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from agents.sip import sip_control_targets
from agents.trainer import TrainConfig, TrainResult, run_training
from sipenv.envs.core import ControlCore, Rollout

__all__ = ["SupervisedConfig", "loss_fn", "reference_solution", "train"]


@dataclass
class SupervisedConfig(TrainConfig):
    """Supervised training (all :class:`agents.trainer.TrainConfig` fields)."""

    algo: Literal["supervised"] = "supervised"


def reference_solution(core: ControlCore, s0: torch.Tensor, target: torch.Tensor) -> Rollout:
    """Minimum-force reference trajectory for each task (normalised, *unclipped* actions)."""
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


def loss_fn(policy: nn.Module, core: ControlCore, s0: torch.Tensor, target: torch.Tensor,
            config: SupervisedConfig) -> tuple[torch.Tensor, dict[str, float]]:
    """``Σ_t ½‖π(s_t^ref, s*, t) − a_t^ref‖²`` averaged over the batch."""
    ref = reference_solution(core, s0, target)
    horizon, batch = ref.actions.shape[:2]
    times = torch.arange(horizon, device=s0.device, dtype=torch.float32) / horizon
    obs = core.observe(ref.states[:-1].reshape(horizon * batch, -1), target.repeat(horizon, 1),
                       times.repeat_interleave(batch))
    diff = policy(obs) - ref.actions.reshape(horizon * batch, -1).float()
    loss = diff.pow(2).sum(-1).sum() / (2 * batch)
    return loss, {"reference_force_cost": float(core.force_cost(ref.actions).sum(0).mean())}


def train(config: SupervisedConfig, **kwargs: Any) -> TrainResult:
    """Train a policy by supervised regression; see :func:`agents.trainer.run_training`."""
    return run_training(config, loss_fn, **kwargs)

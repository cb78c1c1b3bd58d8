"""Differentiable-physics (DP) training: gradients of the problem's own loss through the physics.

On a control task the policy is rolled out through the env's differentiable core with autograd
on, and the loss is the env's objective (negative return): the relative terminal error
``‖s_T − s*‖² / ‖s*‖²`` plus ``force_penalty · Σ_t mean(a_t²)``; backpropagation runs through
all ``T`` physics steps. On a single-step inverse problem the loss is ``½‖P(f_θ(y*)) − y*‖²``
averaged over the batch, differentiated through ``P`` (in the physics' precision). "A plain
optimizer through the physics" (Adam, SGD, Adagrad, Adadelta, RMSprop: ``--optimizer``) is DP
with that optimizer. This is the baseline SIP is measured against: same network, data stream and
evaluation.

Options for long horizons (each off by default; exploding or vanishing gradients and the memory
of the rollout's graph are what users of differentiable simulators hit first):

* ``max_grad_norm``: gradient-norm clipping — the global norm of the weights' gradient is
  scaled down to at most this before the optimizer's step (``torch.nn.utils.clip_grad_norm_``);
  the logged ``grad_norm`` is the norm before clipping;
* ``bptt_window = k``: truncated backpropagation through time — the state is detached from the
  graph every ``k`` steps, so no gradient travels back through more than ``k`` physics steps
  (the loss still sees the whole rollout; with a terminal loss the actions of the last ``k``
  steps get its gradient through the state, every action gets that of its force cost). It
  biases the gradient and bounds how far back it can explode; the graph of earlier segments is
  freed as soon as it is not needed, so peak memory no longer grows with the horizon where the
  loss is terminal;
* ``activation_checkpoint_every = c``: activation checkpointing — the rollout runs in segments
  of ``c`` steps under ``torch.utils.checkpoint`` (non-reentrant): only each segment's input
  state is kept, and the segment's network and physics are re-run during the backward pass. The
  gradient is unchanged (up to rounding); memory falls to about ``T/c`` segment inputs plus one
  segment's activations, for one extra forward pass of compute.

``scripts/reproduce_hig.py memory`` measures the peak memory of each against the horizon
(``docs/hig.md``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from agents.problems import InverseProblem, Problem, TaskProblem
from agents.trainer import (
    Algorithm,
    NonFiniteUpdate,
    Step,
    TrainConfig,
    TrainResult,
    check_finite,
)
from sipenv.envs.core import Rollout, TaskCore
from sipenv.validation import check_int, check_nonnegative

__all__ = ["ALGORITHM", "DPConfig", "loss", "loss_and_backward", "rollout", "train", "update"]


@dataclass
class DPConfig(TrainConfig):
    """DP training (all ``agents.trainer.TrainConfig`` fields, plus the long-horizon options)."""

    algo: Literal["dp"] = "dp"
    max_grad_norm: float = 0.0
    """Clip the global gradient norm to this before each step (0 = no clipping)."""
    bptt_window: int = 0
    """Truncated backpropagation through time: detach the state every this many steps
    (0 = backpropagate through the whole rollout)."""
    activation_checkpoint_every: int = 0
    """Activation checkpointing: recompute the rollout in segments of this many steps during
    the backward pass instead of storing it (0 = off)."""

    def check_fields(self) -> None:
        """``TrainConfig.check_fields`` plus the long-horizon options (≥ 0).

        Raises:
            ValueError: Naming the setting.
        """
        super().check_fields()
        check_nonnegative("max_grad_norm", self.max_grad_norm)
        if not math.isfinite(self.max_grad_norm):
            raise ValueError(f"max_grad_norm must be finite (0 = off), got {self.max_grad_norm}.")
        check_int("bptt_window", self.bptt_window, minimum=0)
        check_int("activation_checkpoint_every", self.activation_checkpoint_every, minimum=0)

    def plain_update(self) -> bool:
        """Without clipping and truncation DP's update is the plain gradient step of its loss
        (checkpointing only changes how the backward pass stores the rollout)."""
        return self.max_grad_norm == 0 and self.bptt_window == 0

    def check_problem(self, problem: Problem) -> None:
        """Refuse ``bptt_window`` / ``activation_checkpoint_every`` on a single-step inverse
        problem (no rollout to truncate or checkpoint).

        Raises:
            ValueError: With the fix in the message.
        """
        super().check_problem(problem)
        given = [f"--{n.replace('_', '-')}" for n in ("bptt_window", "activation_checkpoint_every")
                 if getattr(self, n)]
        if given and isinstance(problem, InverseProblem):
            raise ValueError(f"{' and '.join(given)} apply to multi-step tasks; "
                             f"{problem.env_id} is a single-step inverse problem. Leave them out.")


def rollout(core: TaskCore, policy: Any, s0: torch.Tensor, target: Any, *, window: int = 0,
            checkpoint_every: int = 0) -> Rollout:
    """``core.rollout`` with truncated backpropagation (``window``) and/or activation
    checkpointing (``checkpoint_every``); with both 0 it is ``core.rollout`` itself.

    The forward values are those of ``core.rollout`` (the same observations, clipped actions
    and steps); only what autograd keeps and where gradients stop differ.

    Args:
        core: The task core (its ``observe``, ``step`` and ``horizon``).
        policy: ``obs → action``.
        s0: ``(B, ...)`` initial states; target: the task's goal (as ``core.rollout``).
        window: Detach the state every ``window`` steps (0 = never).
        checkpoint_every: Steps per checkpointed segment (0 = no checkpointing).
    """
    if not window and not checkpoint_every:
        return core.rollout(policy, s0, target)
    horizon = core.horizon

    def run(state: torch.Tensor, start: int, stop: int
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        states, actions = [], []
        for t in range(start, stop):
            if window and t > 0 and t % window == 0:
                state = state.detach()
            action = policy(core.observe(state, target, t / horizon)).clamp(-1.0, 1.0)
            state = core.step(state, action)
            actions.append(action)
            states.append(state)
        return state, torch.stack(states), torch.stack(actions)

    segment = checkpoint_every or horizon
    states, actions, state = [s0], [], s0
    for start in range(0, horizon, segment):
        stop = min(start + segment, horizon)
        if checkpoint_every:
            state, seg_states, seg_actions = checkpoint(run, state, start, stop,
                                                        use_reentrant=False)
        else:
            state, seg_states, seg_actions = run(state, start, stop)
        states.append(seg_states)
        actions.append(seg_actions)
    return Rollout(torch.cat([states[0][None], *states[1:]]), torch.cat(actions), target)


def loss(network: nn.Module, problem: Problem, batch: Any, config: DPConfig) -> Step:
    """The problem's loss, differentiable through the physics, averaged over the batch.

    Tasks: mean negative return of a differentiable rollout (prediction: the rollout), with
    the truncation and checkpointing of ``config`` (``rollout``).
    Inverse problems: mean ``½‖P(x) − y*‖²`` of ``x = f_θ(y*)`` (prediction: ``x``).
    """
    if isinstance(problem, InverseProblem):
        x = problem.predict(network, batch.y_target)
        value = problem.physics.loss(x.to(problem.physics_dtype), batch.y_target).mean()
        return Step(value, x)
    assert isinstance(problem, TaskProblem)
    s0, target = batch
    traj = rollout(problem.core, network, s0, target,
                   window=getattr(config, "bptt_window", 0),
                   checkpoint_every=getattr(config, "activation_checkpoint_every", 0))
    return Step(problem.core.episode_loss(traj).mean(), traj)


def loss_and_backward(network: nn.Module, problem: Problem, batch: Any, config: DPConfig
                      ) -> Step:
    """``loss``, with its gradient accumulated into the weights' ``.grad``.

    With ``bptt_window = k`` on a task this is done segment by segment, so that only one
    window's graph is alive at a time: a forward pass without a graph gives every state; then
    each window re-runs from its (detached) start state with autograd, and the loss — the
    whole episode's, with the other windows' states and actions as constants — is
    backpropagated through that window alone. Since truncation cuts the graph at the window
    boundaries, the sum of these gradients is exactly the truncated gradient of ``loss``.

    Returns:
        The ``Step`` of ``loss`` (its loss detached when computed window by window).

    Raises:
        NonFiniteUpdate: For a non-finite loss (before any backward pass).
    """
    window = getattr(config, "bptt_window", 0)
    if not window or not isinstance(problem, TaskProblem):
        step = loss(network, problem, batch, config)
        if not bool(torch.isfinite(step.loss)):
            raise NonFiniteUpdate("loss")
        step.loss.backward()
        return step
    core = problem.core
    s0, target = batch
    with torch.no_grad():
        full = core.rollout(network, s0, target)
        value = core.episode_loss(full).mean()
    if not bool(torch.isfinite(value)):
        raise NonFiniteUpdate("loss")
    horizon = core.horizon
    for start in range(0, horizon, window):
        stop = min(start + window, horizon)
        state = full.states[start]
        states, actions = [], []
        for t in range(start, stop):
            action = network(core.observe(state, target, t / horizon)).clamp(-1.0, 1.0)
            state = core.step(state, action)
            actions.append(action)
            states.append(state)
        seg = Rollout(torch.cat([full.states[:start + 1], torch.stack(states),
                                 full.states[stop + 1:]]),
                      torch.cat([full.actions[:start], torch.stack(actions),
                                 full.actions[stop:]]), target)
        core.episode_loss(seg).mean().backward()
    return Step(value, full)


def update(network: nn.Module, optimizer: torch.optim.Optimizer, problem: Problem, batch: Any,
           config: DPConfig) -> Step:
    """The default gradient update (``agents.trainer.gradient_update``) through
    ``loss_and_backward``, with the gradient's global norm clipped to ``config.max_grad_norm``
    when that is > 0 (the norm before clipping is logged as ``grad_norm``).

    Raises:
        NonFiniteUpdate: For a non-finite loss or gradient (nothing was applied).
    """
    optimizer.zero_grad(set_to_none=True)
    step = loss_and_backward(network, problem, batch, config)
    check_finite((p.grad for p in network.parameters()), "gradient")
    max_norm = getattr(config, "max_grad_norm", 0.0)
    if max_norm > 0:
        norm = torch.nn.utils.clip_grad_norm_(network.parameters(), max_norm)
        step.metrics["grad_norm"] = float(norm)
    optimizer.step()
    return step


ALGORITHM = Algorithm("dp", DPConfig, loss=loss, update=update)
"""DP: the problem's loss through the physics, trained by gradient steps (optionally clipped)."""


def train(config: DPConfig, **kwargs: Any) -> TrainResult:
    """Train with DP; see ``agents.trainer.run_training`` for ``kwargs``."""
    return ALGORITHM.train(config, **kwargs)

"""Half-inverse gradients (HIG; Schnell, Holl & Thuerey, "Half-Inverse Gradients for Physical
Deep Learning", ICLR 2022).

One HIG iteration on a batch:

1. run the network and the physics with autograd, and collect the physics outputs ``y`` the loss
   sees, flattened over the batch into one vector of ``R = B · m`` values (control task: the
   final state, and the actions when the force penalty counts; correction task: every state and
   action; single-step inverse problem: ``P(x)``);
2. the Jacobian ``J = ∂y/∂θ`` (``R × P``, ``P`` network weights) of network and physics composed,
   row block by row block (``chunk_size`` rows per batched backward pass: the memory of one
   block is ``chunk_size`` times that of one backward pass);
3. its thin SVD ``J = U Σ Vᵀ`` and the gradient of the loss with respect to the outputs,
   ``g = ∂L/∂y``;
4. the update direction ``d = V Σ^{−κ} Uᵀ g``, where singular values below ``τ · σ_max`` are
   dropped (``truncation``), and the step ``θ ← θ − η d`` (``η`` = ``--lr``; with the default
   ``--optimizer sgd`` this is the published plain step; another optimizer is applied to ``d``
   as if it were a gradient).

``κ = 0`` gives ``d = V Uᵀ g``, a gradient step with all singular values set to one; ``κ = ½``
is the half-inverse; ``κ = 1`` is the Gauss–Newton (pseudo-inverse) step ``d = J⁺ g``.

The loss is the problem's own (the same as DP's: the mean episode loss of a control task, the
mean ``½‖P(x) − y*‖²`` of an inverse problem), so HIG and DP differ only in the update. Note that
``g`` scales with the loss (``1/B`` from the batch mean), so ``η`` of the Gauss–Newton limit is
not 1 in general: sweep it, as every method's learning rate.

Cost per iteration: one forward rollout, ``⌈R / chunk_size⌉`` batched backward passes and an SVD
of an ``R × P`` matrix (``O(R P min(R, P))``), against DP's one forward and one backward pass.
It is meant for small networks (the published ones have ~3·10³ weights); ``check_problem``
refuses runs whose Jacobian would not fit ``max_jacobian_mb``, naming its size and the fixes.

The published networks map an initial state to the whole control sequence (open loop); here the
network is sipenv's per-step policy ``π(s_t, s*, t/T)``, and the Jacobian is taken through the
closed-loop rollout (the policy's dependence on the states it visits included).
``scripts/reproduce_hig.py`` trains the published open-loop form on the small oscillator example
with the same functions (``jacobian``, ``half_inverse_direction``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from agents.problems import InverseProblem, Problem, TaskProblem
from agents.trainer import (
    Algorithm,
    NonFiniteUpdate,
    Step,
    TrainConfig,
    TrainResult,
    build_network,
    check_finite,
)
from sipenv.envs.core import Rollout
from sipenv.envs.correction import CorrectionCore
from sipenv.validation import check_choice, check_int, check_nonnegative, check_positive

__all__ = ["ALGORITHM", "GRAM_MIN_TRUNCATION", "HIGConfig", "OutputsFn", "PerSampleWeights",
           "half_inverse_direction", "jacobian", "jacobian_size", "outputs", "train", "update"]

GRAM_MIN_TRUNCATION = 1e-7
"""Smallest relative cutoff at which ``half_inverse_direction`` may use the Gram matrix
``J Jᵀ`` (float64 squares the condition number: σ below ~1e-8 σ_max are lost)."""

OutputsFn = Callable[[torch.Tensor], torch.Tensor]
"""``loss_of(y)``: the scalar loss as a function of the flat outputs ``y`` ``(R,)``."""


@dataclass
class HIGConfig(TrainConfig):
    """HIG training (all ``agents.trainer.TrainConfig`` fields, plus:)."""

    algo: Literal["hig"] = "hig"
    optimizer: Literal["adam", "sgd", "adagrad", "adadelta", "rmsprop"] = "sgd"
    """Optimizer applied to the HIG direction (sgd: the published plain step θ ← θ − η d)."""
    lr: float = 1.0
    """Step size η of the HIG direction (the published settings use 1 and 0.5)."""
    kappa: float = 0.5
    """Exponent κ of the singular values (0.5: half-inverse; 1: Gauss–Newton; 0: gradient with
    unit singular values)."""
    truncation: float = 1e-6
    """Relative cutoff τ: singular values below τ · σ_max are dropped."""
    chunk_size: int = 64
    """Jacobian rows per batched backward pass (memory of one pass × chunk_size)."""
    outputs: Literal["auto", "terminal", "trajectory"] = "auto"
    """Physics outputs y of the Jacobian: 'terminal' = final state (+ actions when the force
    penalty counts), 'trajectory' = every state and action; 'auto' = terminal for control tasks,
    trajectory for correction tasks (single-step problems: always P(x))."""
    svd_dtype: Literal["float32", "float64"] = "float64"
    """Precision of the SVD (float64 keeps singular values near a small --truncation)."""
    max_jacobian_mb: float = 2048.0
    """Refuse runs whose Jacobian and SVD would need more memory than this (MB)."""

    def check_fields(self) -> None:
        """``TrainConfig.check_fields`` plus HIG's fields.

        Raises:
            ValueError: Naming the setting and how to fix it.
        """
        super().check_fields()
        check_nonnegative("kappa", self.kappa)
        check_positive("truncation", self.truncation, hint="(e.g. 1e-6)")
        check_int("chunk_size", self.chunk_size, minimum=1)
        check_choice("outputs", self.outputs, ["auto", "terminal", "trajectory"])
        check_choice("svd_dtype", self.svd_dtype, ["float32", "float64"])
        check_positive("max_jacobian_mb", self.max_jacobian_mb)

    def check_problem(self, problem: Problem) -> None:
        """Refuse ``outputs='terminal'`` on a correction task (its loss sees every state) and
        runs whose Jacobian would not fit ``max_jacobian_mb``.

        Raises:
            ValueError: With the size and the fixes in the message.
        """
        super().check_problem(problem)
        if isinstance(problem, TaskProblem) and problem.kind == "correction" \
                and self.outputs == "terminal":
            raise ValueError(f"--outputs terminal cannot train {problem.env_id}: a correction "
                             "task's loss sees every state. Use --outputs trajectory (or auto).")
        rows, cols, mb = jacobian_size(problem, self)
        if mb > self.max_jacobian_mb:
            raise ValueError(
                f"HIG's Jacobian for this run is {rows} × {cols} ({rows // self.batch_size} "
                f"outputs per sample × batch {self.batch_size}, by {cols} network weights): about "
                f"{mb:.0f} MB with its SVD, above --max-jacobian-mb {self.max_jacobian_mb:g}. "
                "Lower --batch-size (rows grow with it), use a smaller network (--hidden; "
                "columns are the weights), "
                + ("--env-kwargs '{\"force_penalty\": 0}' (the actions are outputs while the "
                   "force penalty counts), " if isinstance(problem, TaskProblem)
                   and problem.core.force_penalty > 0 else "")
                + "or raise --max-jacobian-mb if the machine has the memory.")


def _uses_trajectory(problem: Problem, config: HIGConfig) -> bool:
    return isinstance(problem, TaskProblem) and (
        config.outputs == "trajectory"
        or (config.outputs == "auto" and isinstance(problem.core, CorrectionCore)))


def jacobian_size(problem: Problem, config: HIGConfig) -> tuple[int, int, float]:
    """``(rows, columns, MB)`` of the run's Jacobian: ``rows = batch · outputs per sample``,
    ``columns`` = network weights, MB = the Jacobian in float32 plus its SVD copy and factors in
    ``svd_dtype`` (an estimate of the peak of steps 2–4)."""
    if isinstance(problem, InverseProblem):
        per_sample = math.prod(problem.shape)
    else:
        assert isinstance(problem, TaskProblem)
        core = problem.core
        state = _state_size(problem)
        action = math.prod(core.action_shape)
        if _uses_trajectory(problem, config):
            per_sample = core.horizon * (state + action)
        else:
            per_sample = state + (core.horizon * action if core.force_penalty > 0 else 0)
    spec = problem.network_spec(config.network, tuple(config.hidden))
    cols = sum(p.numel() for p in build_network(spec).parameters())
    rows = config.batch_size * per_sample
    svd_bytes = 8 if config.svd_dtype == "float64" else 4
    small = min(rows, cols)
    total = rows * cols * (4 + 2 * svd_bytes) + (rows + cols) * small * svd_bytes
    return rows, cols, total / 2**20


def _state_size(problem: TaskProblem) -> int:
    """Values of one state of the task (its first sampled state)."""
    s0, _ = problem.core.sample_tasks(1, torch.Generator().manual_seed(0))
    return s0[0].numel()


# --- the three pieces --------------------------------------------------------------------------

def outputs(network: nn.Module, problem: Problem, batch: Any, config: HIGConfig
            ) -> tuple[torch.Tensor, OutputsFn, Any]:
    """The physics outputs the loss sees, as one flat vector with autograd to the weights.

    Returns:
        ``(y, loss_of, prediction)``: ``y`` ``(B, m)``, ``loss_of(y)`` the problem's loss
        (DP's loss) as a function of ``y`` alone, and what the problem scores (the rollout, or
        the guesses ``x``).
    """
    if isinstance(problem, InverseProblem):
        x = problem.predict(network, batch.y_target)
        y = problem.physics.forward(x.to(problem.physics_dtype))
        target = batch.y_target.to(y.dtype)
        shape = y.shape

        def inverse_loss(flat: torch.Tensor) -> torch.Tensor:
            diff = flat.reshape(shape) - target
            return 0.5 * diff.square().flatten(1).sum(1).mean()

        return y.reshape(y.shape[0], -1), inverse_loss, x
    assert isinstance(problem, TaskProblem)
    core = problem.core
    s0, target = batch
    rollout = core.rollout(network, s0, target)
    states, actions = rollout.states, rollout.actions  # (T + 1, B, ...), (T, B, ...)
    batch_size = s0.shape[0]
    trajectory = _uses_trajectory(problem, config)
    with_actions = trajectory or core.force_penalty > 0
    state_part = states[1:] if trajectory else states[-1:]
    parts = [state_part.transpose(0, 1).reshape(batch_size, -1)]
    if with_actions:
        parts.append(actions.transpose(0, 1).reshape(batch_size, -1).to(states.dtype))
    y = torch.cat(parts, dim=1)  # (B, m)
    fixed_states, fixed_actions = states.detach(), actions.detach()
    n_state = state_part[0, 0].numel()
    state_shape = state_part.shape

    def task_loss(flat: torch.Tensor) -> torch.Tensor:
        per = flat.reshape(batch_size, -1)
        seen = per[:, :n_state * state_shape[0]].reshape(
            batch_size, state_shape[0], *state_shape[2:]).transpose(0, 1)
        all_states = torch.cat([fixed_states[:-state_shape[0]], seen])
        acts = fixed_actions
        if with_actions:
            acts = per[:, n_state * state_shape[0]:].reshape(
                batch_size, *actions.shape[0:1], *actions.shape[2:]).transpose(0, 1).to(
                actions.dtype)
        return core.episode_loss(Rollout(all_states, acts, target)).mean()

    return y, task_loss, rollout


class PerSampleWeights(nn.Module):
    """``network`` with one copy of its weights per sample, so that one backward pass gives
    every sample's own gradient.

    Calling it on ``x`` ``(B, ...)`` evaluates row ``b`` with the weights ``weights[name][b]``
    (``torch.func.vmap`` of ``functional_call``); all copies hold the same values, so the
    outputs equal ``network(x)``. Since sample ``b``'s physics outputs depend on the weights only
    through the network calls on row ``b``, the gradient of ``Σ_b y_{b,j}`` with respect to
    ``weights`` is ``∂y_{b,j}/∂θ`` for every ``b`` at once: ``m`` backward passes give the whole
    ``(B · m) × P`` Jacobian, instead of ``B · m`` (each the cost of one DP backward pass).

    Args:
        network: The network (its attribute ``grid``, if any, is exposed too).
        batch: ``B``; every call must have ``B`` rows (``ValueError`` otherwise).
    """

    def __init__(self, network: nn.Module, batch: int) -> None:
        super().__init__()
        self.inner = network
        self.batch = batch
        self.names = [n for n, p in network.named_parameters() if p.requires_grad]
        self.weights = {n: p.detach().unsqueeze(0).expand(batch, *p.shape).clone()
                        .requires_grad_(True) for n, p in network.named_parameters()
                        if p.requires_grad}
        if hasattr(network, "grid"):
            self.grid = network.grid

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] != self.batch:
            raise ValueError(f"PerSampleWeights expects {self.batch} rows, got {x.shape[0]}.")

        def one(weights: dict[str, torch.Tensor], row: torch.Tensor) -> torch.Tensor:
            out: torch.Tensor = torch.func.functional_call(self.inner, weights, (row[None],))
            return out[0]

        result: torch.Tensor = torch.func.vmap(one)(self.weights, x)
        return result


def jacobian(y: torch.Tensor, weights: Sequence[torch.Tensor], *, chunk_size: int = 64
             ) -> torch.Tensor:
    """The per-sample Jacobian ``∂y_b/∂θ`` of outputs computed with ``PerSampleWeights``, as
    one ``(B · m, P)`` matrix (row ``b · m + j`` is ``∂y_{b,j}/∂θ``, columns the parameters
    flattened and concatenated in order).

    ``chunk_size`` output indices ``j`` share one batched backward pass (``is_grads_batched``;
    memory of one pass × ``chunk_size``); where an operation has no batching rule it falls back
    to one pass per ``j``. The graph of ``y`` is kept until the last pass.

    Args:
        y: ``(B, m)`` outputs with autograd to ``weights``.
        weights: The per-sample weights ``(B, *shape)`` (``PerSampleWeights.weights`` values).
        chunk_size: Output indices per pass (≥ 1).
    """
    check_int("chunk_size", chunk_size, minimum=1)
    batch, m = y.shape
    cols = sum(w[0].numel() for w in weights)
    out = torch.zeros(batch, m, cols, dtype=weights[0].dtype, device=weights[0].device)
    eye = torch.eye(m, dtype=y.dtype, device=y.device)
    batched = True
    for start in range(0, m, chunk_size):
        stop = min(start + chunk_size, m)
        last = stop == m
        if batched:
            try:
                cot = eye[start:stop, None, :].expand(stop - start, batch, m)
                grads = torch.autograd.grad(y, weights, grad_outputs=cot, is_grads_batched=True,
                                            retain_graph=not last, allow_unused=True)
                out[:, start:stop] = _flat(grads, weights, stop - start).transpose(0, 1)
                continue
            except RuntimeError:
                batched = False  # (an operation without a vmap rule) one pass per output
        for j in range(start, stop):
            grads = torch.autograd.grad(y[:, j].sum(), weights,
                                        retain_graph=not (last and j == stop - 1),
                                        allow_unused=True)
            out[:, j] = _flat(grads, weights, None)
    return out.reshape(batch * m, cols)


def _flat(grads: Sequence[torch.Tensor | None], weights: Sequence[torch.Tensor],
          chunk: int | None) -> torch.Tensor:
    """Gradients of the per-sample weights ``(B, *shape)`` (with a leading ``chunk`` axis from a
    batched pass), flattened per sample and concatenated (zeros for unused weights)."""
    lead = () if chunk is None else (chunk,)
    parts = []
    for g, w in zip(grads, weights, strict=True):
        if g is None:
            g = torch.zeros(*lead, *w.shape, dtype=w.dtype, device=w.device)
        parts.append(g.reshape(*lead, w.shape[0], -1))
    return torch.cat(parts, dim=-1)


def half_inverse_direction(jac: torch.Tensor, grad_y: torch.Tensor, *, kappa: float = 0.5,
                           truncation: float = 1e-6, dtype: torch.dtype = torch.float64,
                           method: str = "auto") -> tuple[torch.Tensor, dict[str, float]]:
    """``d = V Σ^{−κ} Uᵀ g`` of ``J = U Σ Vᵀ``, singular values below ``truncation · σ_max``
    dropped.

    Args:
        jac: ``(R, P)`` Jacobian of the outputs by the weights.
        grad_y: ``(R,)`` gradient of the loss by the outputs.
        kappa: Exponent κ ≥ 0 (½: HIG, 1: Gauss–Newton).
        truncation: Relative cutoff τ > 0.
        dtype: Precision of the SVD.
        method: ``"svd"`` (thin SVD of ``J``), ``"gram"`` (eigendecomposition of ``J Jᵀ``,
            ``R × R``: the same result in exact arithmetic and much cheaper when ``R ≪ P``; in
            float64 its singular values are accurate down to ~1e-8 σ_max, so it is used for
            ``truncation ≥ GRAM_MIN_TRUNCATION`` only) or ``"auto"`` (gram when ``2R ≤ P``, the
            dtype is float64 and the truncation allows it; else svd).

    Returns:
        ``(d, info)``: the direction ``(P,)`` in ``jac``'s dtype, and ``{"hig_rank": kept
        singular values, "hig_sigma_max": σ_max, "hig_sigma_min": smallest kept}``.
    """
    j = jac.to(dtype)
    rows, cols = j.shape
    g = grad_y.to(dtype)
    if method == "auto":
        method = "gram" if (rows * 2 <= cols and dtype == torch.float64
                            and truncation >= GRAM_MIN_TRUNCATION) else "svd"
    if method == "gram":
        # J Jᵀ = U Σ² Uᵀ (R × R, cheaper than the SVD when R ≪ P); V Σ^{−κ} = Jᵀ U Σ^{−κ−1}
        eig, u = torch.linalg.eigh(j @ j.transpose(0, 1))
        s = eig.clamp_min(0).sqrt()
        smax = s.max() if s.numel() else s.new_zeros(())
        keep = s > truncation * smax
        scale = torch.where(keep, s.clamp_min(torch.finfo(dtype).tiny) ** (-kappa - 1),
                            torch.zeros_like(s))
        direction = j.transpose(0, 1) @ (u @ (scale * (u.transpose(0, 1) @ g)))
    else:
        u, s, vh = torch.linalg.svd(j, full_matrices=False)
        smax = s.max() if s.numel() else s.new_zeros(())
        keep = s > truncation * smax
        scale = torch.where(keep, s.clamp_min(torch.finfo(dtype).tiny) ** -kappa,
                            torch.zeros_like(s))
        direction = vh.transpose(0, 1) @ (scale * (u.transpose(0, 1) @ g))
    kept = s[keep]
    info = {"hig_rank": float(keep.sum()), "hig_sigma_max": float(smax),
            "hig_sigma_min": float(kept.min()) if kept.numel() else 0.0}
    return direction.to(jac.dtype), info


# --- the update on the one training loop ---------------------------------------------------

def update(network: nn.Module, optimizer: torch.optim.Optimizer, problem: Problem, batch: Any,
           config: HIGConfig) -> Step:
    """One HIG step (module docstring): outputs, Jacobian, SVD, ``d``; ``d`` is written to
    the weights' ``.grad`` and ``optimizer.step()`` applies it (SGD: ``θ ← θ − η d``).

    Raises:
        NonFiniteUpdate: If the loss or the direction is not finite (nothing was applied).
    """
    params = [p for p in network.parameters() if p.requires_grad]
    per_sample = PerSampleWeights(network, _batch_size(batch))
    y, loss_of, prediction = outputs(per_sample, problem, batch, config)
    y_leaf = y.detach().requires_grad_(True)
    loss = loss_of(y_leaf)
    if not bool(torch.isfinite(loss)):
        raise NonFiniteUpdate("loss")
    (grad_y,) = torch.autograd.grad(loss, y_leaf)
    jac = jacobian(y, list(per_sample.weights.values()), chunk_size=config.chunk_size)
    check_finite([jac], "gradient")
    grad_y = grad_y.reshape(-1)
    svd_dtype = torch.float64 if config.svd_dtype == "float64" else torch.float32
    direction, info = half_inverse_direction(jac, grad_y, kappa=config.kappa,
                                             truncation=config.truncation, dtype=svd_dtype)
    if not bool(torch.isfinite(direction).all()):
        raise NonFiniteUpdate("update", "The HIG direction is not finite; raise --truncation "
                              "or lower --lr.")
    optimizer.zero_grad(set_to_none=True)
    offset = 0
    for p in params:
        p.grad = direction[offset:offset + p.numel()].reshape(p.shape).to(p.dtype).clone()
        offset += p.numel()
    optimizer.step()
    return Step(loss.detach(), prediction, info)


def _batch_size(batch: Any) -> int:
    """Samples in a batch: ``(s_0, target)`` of a task, or an ``InverseBatch``."""
    first = batch.y_target if hasattr(batch, "y_target") else batch[0]
    return int(first.shape[0])


def _loss(network: nn.Module, problem: Problem, batch: Any, config: HIGConfig) -> Step:
    """The loss HIG minimises (DP's), for callers that score without updating."""
    y, loss_of, prediction = outputs(network, problem, batch, config)
    return Step(loss_of(y), prediction)


ALGORITHM = Algorithm("hig", HIGConfig, loss=_loss, update=update)
"""HIG: the problem's loss, minimised by half-inverse steps (its own update)."""


def train(config: HIGConfig, **kwargs: Any) -> TrainResult:
    """Train with HIG; see ``agents.trainer.run_training`` for ``kwargs``."""
    return ALGORITHM.train(config, **kwargs)

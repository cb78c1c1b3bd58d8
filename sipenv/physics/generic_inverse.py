"""A generic inverse through a whole trajectory: matrix-free Gauss–Newton / Levenberg–Marquardt.

For physics without an analytic (or cheap local) inverse, this finds the force correction that
moves the final state of a controlled rollout onto a desired state, using nothing but the
differentiable ``step(state, force)``.

Problem
-------
A rollout ``s_{t+1} = step(s_t, F_t)``, ``t = 0 … T−1``, from ``s_0`` with forces ``F`` of shape
``(T, B, N)`` ends in ``s_T(F)``. Given a desired final state ``s̃_T`` (e.g. a Newton step on the
terminal loss), linearise ``s_T(F + δF) ≈ s_T(F) + J δF`` with ``J = ∂s_T/∂F`` (block-diagonal
over the batch: every sample is its own problem) and take the minimum-norm correction::

    δF = argmin ‖J δF − r‖² + λ ‖δF‖² = Jᵀ (J Jᵀ + λ I)⁻¹ r,      r = s̃_T − s_T(F).

With ``λ = 0`` this is the least-``Σ_t ‖δF_t‖²`` correction that solves the linearised problem
``J δF = r`` exactly (``J`` has full row rank for controllable physics); ``λ > 0`` is the
Levenberg–Marquardt damping (a smaller, more conservative step; it also regularises directions
the physics barely controls). For linear physics the step is exact: it equals the minimum-force
SIP split (``agents.sip.sip_control_targets(..., split="minimum-force")``) for diffusion, which
``tests/physics/test_generic_inverse.py`` checks.

Solver
------
Conjugate gradients on the ``(N × N)`` symmetric positive (semi-)definite system
``(J Jᵀ + λ I) y = r``, per sample, matrix-free, then ``δF = Jᵀ y`` (accumulated along the way,
so no extra product at the end). The products come from reverse-mode autograd:

* ``Jᵀ w`` (vector-Jacobian product): one backward pass through the recorded rollout;
* ``J v`` (Jacobian-vector product): the *double-backward trick* (what
  ``torch.autograd.functional.jvp`` does): ``g(c) = Jᵀ c`` is built once with ``create_graph``
  as a function of a dummy cotangent ``c``; it is linear in ``c``, and ``J v = ∂(g(c) · v)/∂c``
  is one backward pass through that graph. The rollout is never re-run.

Cost
----
One rollout recorded with autograd, one backward pass with ``create_graph`` (building
``g``), then **each CG iteration costs one vjp and one jvp, i.e. two backward passes through the
T-step rollout** (one through the rollout's graph, one through the graph of its backward).
``iterations`` CG iterations reach the solution's components along the ``iterations`` dominant
directions of ``J Jᵀ`` first — the well-controlled, large-scale part of the correction — so a
few iterations give a useful inexact step; exact convergence needs up to ``N`` iterations
(fewer where ``J Jᵀ`` has repeated eigenvalues, e.g. ``N/2 + 1`` for the per-mode diffusion).
``tol > 0`` stops early once every sample's CG residual is below ``tol · ‖r‖`` (one host sync
per iteration); ``tol = 0`` runs exactly ``iterations`` iterations without syncs.

Requirements: ``step`` must be differentiable with respect to the force, and its backward pass
must be differentiable with respect to its cotangent (true for plain torch operations and for
``sipenv.physics.BurgersPhysics``' hand-written derivatives).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch

from sipenv.validation import check_int, check_nonnegative

__all__ = [
    "GaussNewtonResult",
    "MinimumNormSolution",
    "RolloutJacobian",
    "gauss_newton_correction",
    "linearize_rollout",
    "solve_minimum_norm",
]

StepFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``step(state (B, N), force (B, N)) -> next_state (B, N)``, differentiable."""

ForceFn = Callable[[int, torch.Tensor], torch.Tensor]
"""``force_fn(t, state (B, N)) -> force (B, N)``: e.g. a policy, evaluated without gradients."""


class RolloutJacobian:
    """``J = ∂s_T/∂F`` of a recorded rollout, applied matrix-free by reverse-mode autograd.

    Args:
        final_state: ``s_T``, shape ``(B, N)``, computed with autograd from ``forces``.
        forces: The ``T`` force tensors ``F_t`` (each ``(B, N)``, requiring grad) the rollout
            used.

    The graph is kept alive (``retain_graph``) for as long as this object is used.
    """

    def __init__(self, final_state: torch.Tensor, forces: Sequence[torch.Tensor]) -> None:
        if not final_state.requires_grad:
            raise ValueError("final_state does not depend on the forces through autograd; record "
                             "the rollout with forces that require grad (see linearize_rollout).")
        self.final_state = final_state
        self.forces = tuple(forces)
        # g(c) = Jᵀ c as a differentiable function of a dummy cotangent c (double-backward trick).
        self._cotangent = torch.zeros_like(final_state, requires_grad=True)
        self._jt_c = torch.autograd.grad(final_state, self.forces, self._cotangent,
                                         create_graph=True, allow_unused=True)
        self._used = [g is not None for g in self._jt_c]

    def vjp(self, w: torch.Tensor) -> torch.Tensor:
        """``Jᵀ w``: ``(B, N)`` → ``(T, B, N)`` (one backward pass through the rollout)."""
        grads = torch.autograd.grad(self.final_state, self.forces, w, retain_graph=True,
                                    allow_unused=True)
        return torch.stack([torch.zeros_like(f) if g is None else g
                            for f, g in zip(self.forces, grads, strict=True)])

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        """``J v``: ``(T, B, N)`` → ``(B, N)`` (one backward pass through the backward graph)."""
        outputs = [g for g, used in zip(self._jt_c, self._used, strict=True) if used]
        if not outputs:
            return torch.zeros_like(self.final_state)
        tangents = [v[t] for t, used in enumerate(self._used) if used]
        (out,) = torch.autograd.grad(outputs, self._cotangent, tangents, retain_graph=True,
                                     allow_unused=True)
        return torch.zeros_like(self.final_state) if out is None else out


def linearize_rollout(step: StepFn, s0: torch.Tensor, forces: torch.Tensor | ForceFn, *,
                      horizon: int | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, RolloutJacobian]:
    """Run and record a rollout for ``RolloutJacobian``.

    Args:
        step: The differentiable physics step.
        s0: Initial states ``(B, N)``.
        forces: Either the forces ``(T, B, N)`` (open loop), or ``force_fn(t, s_t)`` evaluated
            without gradients at each recorded state (closed loop, e.g. a policy: its forces are
            then held fixed, as the Jacobian is taken with respect to the applied forces).
        horizon: Number of steps ``T`` (required with a ``force_fn``).

    Returns:
        ``(states, forces, jacobian)``: the detached states ``(T + 1, B, N)``, the detached
        forces ``(T, B, N)`` applied, and ``J = ∂s_T/∂F`` around them.
    """
    if callable(forces):
        steps = check_int("horizon", horizon, minimum=1,
                          hint="Pass horizon with a force function.")
        force_fn = forces
    else:
        if forces.ndim != 3 or forces.shape[1:] != s0.shape:
            raise ValueError(f"forces must have shape (T, *s0.shape) = (T, {s0.shape[0]}, "
                             f"{s0.shape[-1]}), got {tuple(forces.shape)}.")
        fixed = forces.detach()

        def force_fn(t: int, state: torch.Tensor) -> torch.Tensor:
            return fixed[t]

        steps = fixed.shape[0]
    with torch.enable_grad():
        state = s0.detach()
        states, leaves = [state], []
        for t in range(steps):
            with torch.no_grad():
                force = force_fn(t, state.detach()).to(s0.dtype)
            leaf = force.detach().requires_grad_()
            state = step(state, leaf)
            leaves.append(leaf)
            states.append(state.detach())
        jacobian = RolloutJacobian(state, leaves)
    return torch.stack(states), torch.stack([f.detach() for f in leaves]), jacobian


class MinimumNormSolution(NamedTuple):
    """Result of ``solve_minimum_norm``.

    Attributes:
        correction: ``δF = Jᵀ y``, shape ``(T, B, N)``.
        linear_residual: ``‖r − J δF‖`` per sample, shape ``(B,)``: the terminal error the
            linearisation predicts after the correction.
        iterations: CG iterations run.
    """

    correction: torch.Tensor
    linear_residual: torch.Tensor
    iterations: int


def solve_minimum_norm(jacobian: RolloutJacobian, residual: torch.Tensor, *,
                       iterations: int = 8, tol: float = 0.0,
                       damping: float = 0.0) -> MinimumNormSolution:
    """``δF = Jᵀ (J Jᵀ + λ I)⁻¹ r`` by batched conjugate gradients (see the module docstring).

    Args:
        jacobian: ``J`` of the rollout.
        residual: ``r = s̃_T − s_T``, shape ``(B, N)`` (or any ``(B, …)`` matching
            ``jacobian.jvp``'s output, e.g. fields; the forces keep their own shape).
        iterations: Maximum CG iterations (each: one vjp + one jvp through the rollout).
        tol: Stop once every sample's CG residual ``‖r − (J Jᵀ + λ) y‖ ≤ tol · ‖r‖`` (0: run all
            ``iterations``, without host syncs).
        damping: Levenberg–Marquardt ``λ ≥ 0``, in the units of ``J Jᵀ`` (state² per force²;
            compare with its largest eigenvalue, e.g. ``‖J Jᵀ r‖ / ‖r‖``).

    Raises:
        ValueError: For ``iterations < 1``, a negative ``tol`` or ``damping``.
    """
    iterations = check_int("iterations", iterations, minimum=1)
    tol = check_nonnegative("tol", tol)
    damping = check_nonnegative("damping (λ)", damping)
    with torch.no_grad():
        r = residual.detach().clone()
        y = torch.zeros_like(r)
        # (fields: a residual (B, …) and forces (B, …) of their own shapes; sums over all but B)
        dims = tuple(range(1, r.ndim))
        per_sample = (-1, *[1] * (r.ndim - 1))
        force_shape = jacobian.forces[0].shape if jacobian.forces else r.shape
        correction = torch.zeros((len(jacobian.forces), *force_shape), dtype=r.dtype,
                                 device=r.device)
        per_force = (1, -1, *[1] * (correction.ndim - 2))
        p = r.clone()
        rho = (r * r).sum(dims)
        goal = tol**2 * rho
        done = 0
    for done in range(1, iterations + 1):  # noqa: B007  (the count is reported)
        q = jacobian.vjp(p)  # Jᵀ p
        with torch.no_grad():
            ap = jacobian.jvp(q) + damping * p  # (J Jᵀ + λ) p
            pap = (p * ap).sum(dims)
            alpha = torch.where(pap > 0, rho / pap.clamp_min(torch.finfo(r.dtype).tiny),
                                torch.zeros_like(pap))
            y = y + alpha.view(per_sample) * p
            correction = correction + alpha.view(per_force) * q
            r = r - alpha.view(per_sample) * ap
            rho_new = (r * r).sum(dims)
            if tol > 0 and bool((rho_new <= goal).all()):
                break
            beta = torch.where(rho > 0, rho_new / rho.clamp_min(torch.finfo(r.dtype).tiny),
                               torch.zeros_like(rho))
            p = r + beta.view(per_sample) * p
            rho = rho_new
    with torch.no_grad():
        linear_residual = (r + damping * y).flatten(1).norm(dim=-1)  # r − J Jᵀ y
    return MinimumNormSolution(correction.detach(), linear_residual.detach(), done)


class GaussNewtonResult(NamedTuple):
    """Result of ``gauss_newton_correction``.

    Attributes:
        forces: The corrected forces ``F + δF``, shape ``(T, B, N)``.
        correction: ``δF``, shape ``(T, B, N)``.
        states: The states of the rollout under ``F`` (not ``F + δF``), ``(T + 1, B, N)``.
        residual: ``‖s̃_T − s_T(F)‖`` per sample, ``(B,)``.
        linear_residual: ``‖s̃_T − s_T(F) − J δF‖`` per sample (the linearised prediction).
        iterations: CG iterations run.
    """

    forces: torch.Tensor
    correction: torch.Tensor
    states: torch.Tensor
    residual: torch.Tensor
    linear_residual: torch.Tensor
    iterations: int


def gauss_newton_correction(step: StepFn, s0: torch.Tensor, forces: torch.Tensor,
                            desired: torch.Tensor, *, iterations: int = 8, tol: float = 0.0,
                            damping: float = 0.0) -> GaussNewtonResult:
    """One Gauss–Newton (Levenberg–Marquardt) step on the forces of a rollout.

    Args:
        step: Differentiable physics step ``step(state, force)``.
        s0: Initial states ``(B, N)``.
        forces: Current forces ``(T, B, N)``.
        desired: Desired final states ``s̃_T``, ``(B, N)``.
        iterations: CG iterations, see ``solve_minimum_norm``.
        tol: CG early-stop tolerance, see ``solve_minimum_norm``.
        damping: Levenberg–Marquardt damping, see ``solve_minimum_norm``.

    Returns:
        The corrected forces ``F + δF`` with ``δF = Jᵀ (J Jᵀ + λ I)⁻¹ (s̃_T − s_T(F))`` and
        diagnostics. Cost: one recorded rollout, one ``create_graph`` backward pass, and two
        backward passes through the ``T``-step rollout per CG iteration.
    """
    if desired.shape != s0.shape:
        raise ValueError(f"desired must have the shape of s0 {tuple(s0.shape)}, got "
                         f"{tuple(desired.shape)}.")
    states, applied, jacobian = linearize_rollout(step, s0, forces)
    residual = (desired - states[-1]).detach()
    sol = solve_minimum_norm(jacobian, residual, iterations=iterations, tol=tol, damping=damping)
    return GaussNewtonResult(applied + sol.correction, sol.correction, states,
                             residual.norm(dim=-1), sol.linear_residual, sol.iterations)

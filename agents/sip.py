"""SIP training: scale-invariant physics updates (Holl, Koltun & Thuerey, NeurIPS 2022).

One SIP iteration:

1. run the network / policy and the physics *without* gradients;
2. take a **Newton step on the loss** in the physics' output space
   (for ``L = ½‖y − y*‖²``: ``ỹ = y + η (y* − y)``);
3. map that step back through the **local inverse simulator** to a target for the network's
   output (``x̃``, or per-step forces ``F̃_t`` for a trajectory);
4. regress the network onto the targets held constant (proxy loss ``½‖f_θ − x̃‖²``) with any torch
   optimizer.

Over a trajectory the needed terminal correction ``Δ_T = s̃_T − s_T`` is swept backwards through the
per-step inverse simulators, and a **split rule** decides which share of the still-needed correction
``Δ_{t+1}`` step ``t``'s force takes; the rest goes to the earlier state (``Δ_t``, via
``inverse_step``):

* ``uniform``: each of the ``t + 1`` remaining steps takes an equal share ``Δ_{t+1}/(t + 1)``;
* ``minimum-force``: the Gramian-weighted share; for physics that is linear and diagonal in a
  spectral basis (``ŝ ← d ŝ + g f̂``) it is the exact least-norm control, per mode:
  ``W_0 = 0``, ``W_{t+1} = d² W_t + g²``, share ``g² / W_{t+1}``, so ``δF_t = g Δ_{t+1} / W_{t+1}``
  and ``Δ_t = d W_t Δ_{t+1} / W_{t+1}``.

For physics without spectral factors (e.g. Burgers) ``gauss-newton`` replaces the sweep by the
generic inverse of ``sipenv.physics.generic_inverse``: the minimum-norm force correction
``δF = Jᵀ (J Jᵀ + λ I)⁻¹ Δ_T`` (``J = ∂s_T/∂F``) by a few conjugate-gradient iterations, each one
Jacobian-vector and one vector-Jacobian product through the rollout; the targets are ``F + δF``.
For linear physics and enough iterations it equals ``minimum-force`` (``λ = 0``).

Correction tasks (``sipenv.envs.correction.CorrectionCore``: a coarse solver corrected every
step to follow a fine reference ``r_t``) have a loss at every step, so each step gets its own
Newton target ``s̃_{t+1} = s_{t+1} + η (r_{t+1} − s_{t+1})``, mapped through the exact inverse of
the additive correction: ``F̃_t = force_for(s_t, s̃_{t+1})`` (``sip_correction_targets``).

With linear physics, an exact inverse and ``η = 1``, replaying the targets ``F̃_t`` from ``s_0``
lands exactly on ``s*`` whichever split is used (``tests/agents/test_sip.py``): one SIP physics step
solves the problem, where a gradient step cannot.

Single-step inverse problems ``y = P(x)`` (``agents.problems.InverseProblem``: the sine and
heat problems) take one Newton step on the y-loss and one local inverse:
``x̃ = P⁻¹(y + η (y* − y); x)`` (``sip_inverse_targets``), with the proxy loss
``½‖x − x̃‖²`` (``l2``) or ``Σ|x − x̃|`` (``l1``, the published code) averaged over the batch.

**Objective-matched weighting** (``weighting="objective"``). The Newton step gives every sample
a target ``x̃_i`` that does not depend on how much the objective cares about sample ``i``: it is
the same for ``L_i`` and for ``c_i L_i``. The plain proxy ``Σ_i ½‖x_i − x̃_i‖²`` then weighs all
samples equally (a limit the SIP authors name). But the objective does not: near its minimum the
control objective's per-sample term is a quadratic form in the output ``y_i`` with curvature
``c_i`` (``L_i = c_i ½‖y_i − y*_i‖²``; the relative error ``‖y − y*‖²/‖y*‖²`` has
``c_i = 2/‖y*_i‖²``, which varies ~15× across default ``ControlledDiffusion`` tasks). Writing
the local model of ``L_i`` in ``x`` with SIP's scale-invariant replacement of ``JᵀJ`` by the
identity, ``L_i(x) ≈ c_i ½‖x − x̃_i‖² + const``, the proxy that keeps the objective's relative
weighting of the samples is ``Σ_i c_i ½‖x_i − x̃_i‖²``: its gradient scales each sample's pull
towards its target by the objective's own Newton scale for that sample. ``objective_weights``
measures ``c_i`` from the problem's error function (for a loss of the form ``c ½‖y − y*‖²`` the
probe is exact whatever the probe; for the relative error it is ``2/‖y*‖²``); correction tasks
get a weight per step (``2/‖r_{t+1}‖²``); single-step inverse problems train on
``½‖P(x) − y*‖²`` whose curvature is 1 for every sample, so both weightings coincide there.

The target computations are pure functions (``newton_step``, ``sip_inverse_targets``,
``sip_control_targets``); ``loss`` is SIP's proxy loss on a batch of any problem
(``control_loss`` for tasks, ``inverse_loss`` for inverse problems), and
``ALGORITHM`` registers it with the one training loop (``agents.trainer``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from agents.problems import (
    InverseBatch,
    InverseProblem,
    Problem,
    TaskProblem,
    terminal_readout,
)
from agents.trainer import Algorithm, Step, TrainConfig, TrainingDiverged, TrainResult
from sipenv.envs.core import Rollout, TaskCore
from sipenv.envs.correction import CorrectionCore
from sipenv.physics import PhysicsModel, SpectralLinearPhysics
from sipenv.physics.generic_inverse import (
    RolloutJacobian,
    gauss_newton_correction,
    linearize_rollout,
    solve_minimum_norm,
)
from sipenv.validation import check_choice, check_int, check_nonnegative, check_positive

__all__ = [
    "ALGORITHM",
    "SPLITS",
    "SIPConfig",
    "ShareFn",
    "actuator_control_targets",
    "actuator_response",
    "control_loss",
    "inverse_loss",
    "loss",
    "minimum_force_split",
    "newton_step",
    "objective_weights",
    "sip_control_targets",
    "sip_correction_targets",
    "sip_inverse_targets",
    "train",
    "uniform_split",
]

ShareFn = Callable[[int, torch.Tensor], torch.Tensor]
"""``share(t, Δ_{t+1})``: the part of the state correction ``Δ_{t+1}`` that step ``t``'s force
takes (in state space); the rest is passed to the earlier state."""

SplitRule = Callable[[PhysicsModel, int, torch.Tensor], ShareFn]
"""``rule(physics, horizon, like) -> share``; ``like`` gives the device and dtype."""


# --- split rules ----------------------------------------------------------------------------------

def uniform_split(physics: PhysicsModel, horizon: int, like: torch.Tensor) -> ShareFn:
    """Each remaining step takes an equal share: step ``t`` takes ``Δ_{t+1} / (t + 1)``.

    Limit: the part passed to earlier states goes through up to ``T − 1`` inverse steps, each
    amplifying mode ``k`` by up to ``1/d_k``. On strongly dissipative physics this is exact in
    exact arithmetic but overflows in floating point: on default ``sip/ControlledDiffusion-v0``
    the top mode grows by ``57^15 ≈ 10^26``, so even rounding noise yields forces of ~10^19 and
    training stops on the first iteration. Use it for short horizons or mildly dissipative
    physics; ``minimum-force`` (the default) contracts instead (``d W_t / W_{t+1} ≤ 1``).
    """
    del physics, horizon, like
    return lambda t, delta: delta / (t + 1)


def minimum_force_split(physics: PhysicsModel, horizon: int, like: torch.Tensor) -> ShareFn:
    """Gramian-weighted split: the exact least-``Σ‖F_t‖²`` correction for spectral-linear physics.

    Raises:
        TypeError: If ``physics`` has no spectral factors (``d_k``, ``g_k``); use ``uniform`` then.
    """
    if not isinstance(physics, SpectralLinearPhysics):
        raise TypeError(f"The minimum-force split needs linear spectral physics with "
                        f"spectral_factors(); {type(physics).__name__} has none. Use the "
                        f"'gauss-newton' split (generic inverse) or the 'uniform' split instead.")
    d, g = physics.spectral_factors(like.device, like.dtype)
    gramians = [torch.zeros_like(d)]
    for _ in range(horizon):
        gramians.append(d * d * gramians[-1] + g * g)
    # share_t = g² / W_{t+1} ∈ (0, 1]; share_0 = 1 (the first step must take all that is left).
    shares = [g * g / w for w in gramians[1:]]

    def share(t: int, delta: torch.Tensor) -> torch.Tensor:
        return physics.from_spectral(shares[t] * physics.to_spectral(delta))

    return share


SPLITS: dict[str, SplitRule] = {"uniform": uniform_split, "minimum-force": minimum_force_split}


# --- pure target computations ---------------------------------------------------------------

def newton_step(y: torch.Tensor, y_target: torch.Tensor, eta: float = 1.0) -> torch.Tensor:
    """Newton step on ``L = ½‖y − y*‖²`` (also on any positive multiple of it, e.g. the relative
    error ``‖y − y*‖²/‖y*‖²``): ``ỹ = y + η (y* − y)``."""
    return y + eta * (y_target - y)


def sip_inverse_targets(x: torch.Tensor, y: torch.Tensor, y_target: torch.Tensor,
                        inverse: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                        eta: float = 1.0) -> torch.Tensor:
    """SIP targets for a single-step inverse problem ``y = P(x)``.

    Args:
        x: Current network outputs, ``(B, ...)``.
        y: ``P(x)`` (computed without gradient), ``(B, ...)``.
        y_target: The desired outputs ``y*``.
        inverse: Local inverse ``P⁻¹(ỹ; x)`` returning the ``x̃`` closest to ``x``.
        eta: Newton step size on the y-loss (1 = full step).

    Returns:
        ``x̃ = P⁻¹(y + η (y* − y); x)``, detached (a constant for the proxy loss).
    """
    with torch.no_grad():
        return inverse(newton_step(y, y_target, eta), x).detach()


def sip_control_targets(physics: PhysicsModel, states: torch.Tensor, forces: torch.Tensor,
                        target: torch.Tensor, *, eta: float = 1.0,
                        split: str | SplitRule = "minimum-force", gn_iterations: int = 8,
                        gn_tol: float = 0.0, gn_damping: float = 0.0) -> torch.Tensor:
    """Per-step SIP force targets ``F̃_t`` for a trajectory ``s_{t+1} = P(s_t, F_t)``.

    Args:
        physics: Model with ``inverse_step`` and ``force_for`` (and spectral factors for the
            minimum-force split).
        states: ``(T + 1, B, N)`` states ``s_0 … s_T`` of the rollout.
        forces: ``(T, B, N)`` physical forces applied.
        target: ``(B, N)`` goal ``s*`` for the final state.
        eta: Newton step size on the terminal loss (1 = go all the way to ``s*``).
        split: ``"uniform"``, ``"minimum-force"``, ``"gauss-newton"`` or a custom
            ``SplitRule``.
        gn_iterations: Conjugate-gradient iterations of the ``"gauss-newton"`` split (see
            ``sipenv.physics.generic_inverse.solve_minimum_norm``).
        gn_tol: Its early-stop tolerance.
        gn_damping: Its Levenberg–Marquardt damping.

    Returns:
        ``(T, B, N)`` force targets, detached.
    """
    if states.ndim != 3 or forces.ndim != 3 or states.shape[0] != forces.shape[0] + 1:
        raise ValueError(f"states must be (T+1, B, N) and forces (T, B, N); got "
                         f"{tuple(states.shape)} and {tuple(forces.shape)}.")
    if split == "gauss-newton":
        # --- Newton step on the terminal loss, then the generic inverse through the rollout ---
        desired = newton_step(states[-1], target, eta)
        result = gauss_newton_correction(physics.step, states[0], forces, desired,
                                         iterations=gn_iterations, tol=gn_tol,
                                         damping=gn_damping)
        return result.forces.detach()
    rule = SPLITS[split] if isinstance(split, str) else split
    horizon = forces.shape[0]
    with torch.no_grad():
        share = rule(physics, horizon, states)
        # --- Newton step on the terminal loss ---
        delta = newton_step(states[-1], target, eta) - states[-1]
        # --- backward sweep through the per-step inverse simulators ---
        force_targets: list[torch.Tensor] = [torch.empty(0)] * horizon
        for t in reversed(range(horizon)):
            own = share(t, delta)
            force_targets[t] = physics.force_for(states[t], states[t + 1] + own)
            if t > 0:
                earlier = physics.inverse_step(states[t + 1] + (delta - own), forces[t], states[t])
                delta = earlier - states[t]
        return torch.stack(force_targets).detach()


def actuator_response(core: TaskCore, *, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``K = ∂s_T/∂(a_0, …, a_{T−1})``, ``(N, T·M)``, of a control core on linear physics with
    an actuator basis ``B`` (columns ``t·M … t·M + M − 1`` belong to step ``t``): block ``t`` is
    ``A^(T−1−t) G B · force_scale`` (``A``, ``G``: the physics' state and force maps), built
    by ``T`` physics steps of the ``M`` actuator fields (the physics must be linear and
    homogeneous, ``step(0, 0) = 0``, e.g. ``SpectralLinearPhysics``).
    """
    m = core.action_shape[-1]
    eye = torch.eye(m, device=device, dtype=dtype)
    zero = torch.zeros(m, core.n, device=device, dtype=dtype)
    blocks = [core.physics.step(zero, core.actuate(eye))]  # G B: one step's response
    for _ in range(core.horizon - 1):
        blocks.append(core.physics.step(blocks[-1], torch.zeros_like(blocks[-1])))
    return torch.cat([b.T for b in reversed(blocks)], dim=1)


ACTUATOR_RTOL = 1e-10
"""Relative cut-off of the singular values of ``K`` in ``actuator_control_targets``: directions
``K`` reaches more weakly than ``1e-10`` of its strongest count as unreachable (their float64
solution would be rounding noise amplified beyond ``1e10``)."""


def box_least_squares(k: torch.Tensor, delta: torch.Tensor, weight: torch.Tensor, ridge: float,
                      start: torch.Tensor, *, iterations: int) -> torch.Tensor:
    """``argmin_x weight · ‖K x − δ‖² + ridge · ‖x‖²`` over ``x ∈ [−1, 1]^P`` for each row:
    accelerated projected gradient (FISTA, Beck & Teboulle 2009) with step ``1/L`` (``L`` the
    gradient's Lipschitz constant), from ``start``.

    Args:
        k: ``(N, P)`` linear map.
        delta: ``(B, N)`` right-hand sides.
        weight: ``(B, 1)`` weights of the residuals (e.g. ``1/‖s*‖²``).
        ridge: Weight of ``‖x‖²`` (≥ 0).
        start: ``(B, P)`` starting points (projected onto the box first).
        iterations: Gradient steps.

    Returns:
        ``(B, P)`` solutions in the box.
    """
    lipschitz = 2 * torch.linalg.matrix_norm(k, ord=2).square() * weight + 2 * ridge
    x = start.clamp(-1.0, 1.0)
    y, momentum = x, 1.0
    for _ in range(iterations):
        grad = 2 * weight * ((y @ k.T - delta) @ k) + 2 * ridge * y
        x_next = (y - grad / lipschitz).clamp(-1.0, 1.0)
        momentum_next = (1 + math.sqrt(1 + 4 * momentum**2)) / 2
        y = x_next + (momentum - 1) / momentum_next * (x_next - x)
        x, momentum = x_next, momentum_next
    return x


BOX_ITERATIONS = 100
"""Projected-gradient iterations of the box-constrained actuator targets (``box=True``), warm
started at the policy's actions."""


def actuator_control_targets(core: TaskCore, states: torch.Tensor, actions: torch.Tensor,
                             target: torch.Tensor, *, eta: float = 1.0,
                             rtol: float = ACTUATOR_RTOL, box: bool = False) -> torch.Tensor:
    """Per-step SIP action targets of a control task with actuators on linear physics: the
    minimum-force split generalised by the actuator Gramian.

    The terminal Newton step ``Δ = s̃_T − s_T`` is mapped to the minimum-norm least-squares
    action correction ``δa = K⁺ Δ`` (``K`` from ``actuator_response``; for a basis of
    ``M = N`` unit columns this is the minimum-force split), so that replaying ``a + δa``
    reaches ``s_T + K K⁺ Δ``: the reachable state nearest to ``s̃_T`` (``s̃_T`` itself where it
    is reachable). Equivalently ``δa_t = (A^(T−1−t) G B)ᵀ W⁺ Δ`` with the actuator
    reachability Gramian ``W = K Kᵀ``; it is solved through ``K`` (in float64), not ``W``,
    whose condition number is ``K``'s squared.

    A few smooth actuators reach fine structure only with huge actions (on default
    ``sip/ControlledDiffusion-v0`` with 8 bumps ``K``'s singular values span 14 to 1e-15), far
    outside the ``[−1, 1]`` the env clips to. ``box=True`` therefore solves the same local
    inverse problem under the env's constraints instead: the targets minimise
    ``‖s_T + K (a' − a) − s̃_T‖² / ‖s*‖² + force_penalty · Σ_t mean(a'_t²)`` over
    ``a' ∈ [−1, 1]`` (``box_least_squares``, :data:`BOX_ITERATIONS` steps from ``a``): the
    episode loss, linearised, with the Newton target — what SIP training uses.

    Args:
        core: A control core with linear physics (``actuator_response``).
        states: ``(T + 1, B, N)`` states of the rollout.
        actions: ``(T, B, M)`` normalised actions applied.
        target: ``(B, N)`` goals ``s*``.
        eta: Newton step size on the terminal loss.
        rtol: Relative singular-value cut-off of ``K⁺`` (:data:`ACTUATOR_RTOL`).
        box: Solve under the action box and the force cost (see above).

    Returns:
        ``(T, B, M)`` action targets, detached, in ``actions``' dtype.
    """
    with torch.no_grad():
        horizon, batch, m = actions.shape
        final = states[-1].double()
        delta = newton_step(final, target.double(), eta) - final
        k = actuator_response(core, device=final.device)
        flat = actions.double().transpose(0, 1).reshape(batch, horizon * m)
        if box:
            goal = target.double().square().sum(-1, keepdim=True).clamp_min(1e-30)
            flat = box_least_squares(k, delta + flat @ k.T, 1.0 / goal,
                                     core.force_penalty / m, flat, iterations=BOX_ITERATIONS)
        else:
            flat = flat + delta @ torch.linalg.pinv(k, rtol=rtol).T  # (B, T·M)
        return flat.reshape(batch, horizon, m).transpose(0, 1).to(actions.dtype).detach()


def sip_correction_targets(physics: PhysicsModel, states: torch.Tensor, references: torch.Tensor,
                           *, eta: float = 1.0) -> torch.Tensor:
    """Per-step SIP targets of a correction task: ``F̃_t = force_for(s_t, s̃_{t+1})`` with
    ``s̃_{t+1} = s_{t+1} + η (r_{t+1} − s_{t+1})`` (a Newton step on each step's loss
    ``½‖s_{t+1} − r_{t+1}‖²``).

    Args:
        physics: The corrected (coarse) model; ``force_for`` inverts its additive correction.
        states: ``(T + 1, B, N)`` states of the corrected rollout.
        references: ``(B, T + 1, N)`` reference trajectory.
        eta: Newton step size (1 = onto the reference).

    Returns:
        ``(T, B, N)`` correction targets, detached.
    """
    horizon, batch, n = states.shape[0] - 1, states.shape[1], states.shape[2]
    if references.shape != (batch, horizon + 1, n):
        raise ValueError(f"references must have shape (B, T+1, N) = {(batch, horizon + 1, n)}, "
                         f"got {tuple(references.shape)}.")
    with torch.no_grad():
        nxt = states[1:]
        desired = newton_step(nxt, references.transpose(0, 1)[1:], eta)
        targets = physics.force_for(states[:-1].reshape(-1, n), desired.reshape(-1, n))
        return targets.reshape(horizon, batch, n).detach()


def objective_weights(error: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                      reference: torch.Tensor) -> torch.Tensor:
    """Per-sample curvature ``c`` of an error ``E(y, y*) = c ½‖y − y*‖²`` (the objective's
    Newton scale for each sample), measured with one probe ``u`` along the unit diagonal:
    ``c = 2 E(y* + u, y*) / ‖u‖²``.

    Exact for any error of that form (the probe's direction and size do not matter then):
    ``½‖·‖²`` gives 1, the relative error ``‖y − y*‖²/‖y*‖²`` gives ``2/‖y*‖²``. For other
    errors it is the secant curvature along the probe. The probe has the size of the reference
    (``‖u‖ = max(‖y*‖, 1)``) so that ``y* + u`` loses no precision.

    Args:
        error: ``E(y, y*)`` per sample over the last axis, e.g. ``core.target_error``.
        reference: ``(..., N)`` references ``y*``.

    Returns:
        ``(...)`` weights ``c ≥ 0``, detached, in ``reference``'s dtype.

    Raises:
        ValueError: If a weight is not finite (e.g. an all-zero reference for a relative
            error); the message says to use ``weighting="uniform"``.
    """
    with torch.no_grad():
        n = reference.shape[-1]
        size = torch.linalg.vector_norm(reference, dim=-1, keepdim=True).clamp_min(1.0)
        probe = size * reference.new_full((n,), 1.0 / math.sqrt(n))
        weights = 2.0 * error(reference + probe, reference) / size.squeeze(-1).pow(2)
    if not bool(torch.isfinite(weights).all()):
        raise ValueError("The objective-matched SIP weights are not finite (a reference whose "
                         "error has no finite curvature); use weighting='uniform'.")
    return weights.detach()


# --- training ------------------------------------------------------------------------------------

@dataclass
class SIPConfig(TrainConfig):
    """SIP training on any problem (all ``agents.trainer.TrainConfig`` fields, plus:)."""

    algo: Literal["sip"] = "sip"
    eta: float = 1.0
    """Newton step size on the loss in the physics' output space (1 = full step onto the
    target)."""
    split: Literal["minimum-force", "uniform", "gauss-newton"] = "minimum-force"
    """How the correction is shared between steps in the backward sweep ("gauss-newton": the
    generic inverse through the whole rollout, for physics without spectral factors)."""
    gn_iterations: int = 4
    """Conjugate-gradient iterations of the gauss-newton split (each: one jvp + one vjp through
    the rollout)."""
    gn_damping: float = 0.0
    """Levenberg–Marquardt damping λ ≥ 0 of the gauss-newton split."""

    proxy_loss: Literal["l2", "l1"] = "l2"
    """Proxy loss between the network's outputs and the SIP targets: 'l2' = ½‖·‖², 'l1' = Σ|·|
    (the published code's choice on the sine problem)."""
    weighting: Literal["objective", "uniform"] = "uniform"
    """How the samples' proxy terms are weighted: 'objective' = by the curvature the objective
    gives each sample (``objective_weights``; for the relative terminal error ``2/‖s*‖²``),
    'uniform' (default) = all equally (the published SIP). Identical on single-step inverse
    problems. Not yet the default: on ``sip/ControlledDiffusion-v0`` at 60 s it won a
    same-load repeat on every seed but tied in the full-protocol run, and it is unmeasured on
    the other envs (docs/results/controlled-diffusion.md)."""

    def check_fields(self) -> None:
        """``TrainConfig.check_fields`` plus SIP's own fields (type, range, choice).

        Raises:
            ValueError: Naming the setting and how to fix it.
        """
        super().check_fields()
        check_positive("eta", self.eta)
        check_choice("split", self.split, [*SPLITS, "gauss-newton"])
        check_int("gn_iterations", self.gn_iterations, minimum=1)
        check_nonnegative("gn_damping", self.gn_damping)
        check_choice("proxy_loss", self.proxy_loss, ["l2", "l1"])
        check_choice("weighting", self.weighting, ["objective", "uniform"])

    def check_problem(self, problem: Problem) -> None:
        """Refuse what cannot work, or would be silently ignored, on ``problem``: the
        minimum-force split without spectral-linear physics; the uniform split where passing
        corrections back through ``T − 1`` inverse steps amplifies rounding errors beyond the
        correction itself (it overflows on the first iteration); a split other than the default
        on a problem without a backward sweep (inverse problems, correction tasks); ``gn_*``
        settings without ``--split gauss-newton``.

        Raises:
            ValueError: With the fix in the message.
        """
        super().check_problem(problem)
        defaults = type(self).__dataclass_fields__
        sweep = isinstance(problem, TaskProblem) and problem.kind == "control"
        if not sweep and self.split != defaults["split"].default:
            raise ValueError(f"--split {self.split} has no effect on {problem.env_id} (a "
                             f"{problem.kind} problem: no backward sweep over a trajectory); "
                             "leave --split out.")
        gn_given = [f"--{name.replace('_', '-')}" for name in ("gn_iterations", "gn_damping")
                    if getattr(self, name) != defaults[name].default]
        if gn_given and self.split != "gauss-newton":
            raise ValueError(f"{' and '.join(gn_given)} only apply to --split gauss-newton; "
                             f"use that split or leave them out.")
        if not sweep:
            return
        assert isinstance(problem, TaskProblem)
        physics = problem.core.physics
        if problem.spatial is not None and self.split != "gauss-newton":
            raise ValueError(f"{problem.env_id}'s target is part of its state (2-D fields); only "
                             "the generic split takes that: use --split gauss-newton.")
        if self.split == "minimum-force" and not isinstance(physics, SpectralLinearPhysics):
            raise ValueError(f"The minimum-force split needs linear spectral physics; "
                             f"{problem.env_id}'s {type(physics).__name__} has "
                             "none. Use --split gauss-newton (the generic inverse) or --split "
                             "uniform.")
        if self.split == "uniform" and isinstance(physics, SpectralLinearPhysics):
            horizon = problem.core.horizon
            log_amp = uniform_split_log_amplification(physics, horizon)
            if log_amp >= UNIFORM_SPLIT_LOG_LIMIT:
                longest = max((t for t in range(1, horizon) if uniform_split_log_amplification(
                    physics, t) < UNIFORM_SPLIT_LOG_LIMIT), default=1)
                raise ValueError(
                    f"The uniform split cannot work on {problem.env_id} with horizon {horizon}: "
                    f"it passes the correction back through {horizon - 1} inverse steps, which "
                    f"amplify its fine modes by up to ~10^{log_amp / math.log(10):.0f}, beyond "
                    "what the float32 proxy loss can square. Use "
                    "--split minimum-force (it contracts), or a horizon ≤ "
                    f"{longest} (--env-kwargs '{{\"horizon\": {longest}}}').")


UNIFORM_SPLIT_LOG_LIMIT = 0.5 * math.log(torch.finfo(torch.float32).max)
"""``log`` of the largest amplification of the uniform split's backward sweep that the proxy
loss can take: its float32 targets are squared (``√(float32 max) ≈ 1.8e19``)."""


def uniform_split_log_amplification(physics: SpectralLinearPhysics, horizon: int) -> float:
    """``log A``, the largest amplification of a correction in the uniform split's backward
    sweep over ``horizon`` steps: ``A = max_k G_k^(T−1) / T`` with the inverse's per-step gain
    ``G_k = min(1/|d_k|, max_gain)`` (the shares ``t/(t+1)`` contribute ``1/T``)."""
    d, _ = physics.spectral_factors(torch.device("cpu"), torch.float64)
    gain = 1.0 / d.abs().clamp_min(1e-300)
    max_gain = getattr(physics, "max_gain", None)
    if max_gain is not None:
        gain = gain.clamp(max=float(max_gain))
    return (horizon - 1) * float(gain.max().log()) - math.log(horizon)


def control_loss(policy: nn.Module, core: TaskCore, s0: torch.Tensor, target: torch.Tensor,
                 config: SIPConfig) -> tuple[torch.Tensor, Rollout]:
    """The SIP proxy loss for a batch of control or correction tasks, and the rollout it
    came from.

    Args:
        policy: ``obs (B, obs_dim) → action (B, N)``.
        core: The task core.
        s0: ``(B, N)`` initial states.
        target: ``(B, N)`` goals, or ``(B, T + 1, N)`` references of a correction task.
        config: SIP settings (``eta``, ``split``, ``proxy_loss``, …).

    Raises:
        TrainingDiverged: If the proxy loss is not finite (the message names the cause).
    """
    # Targets in action space: forces mapped through the actuator basis by its least-squares
    # inverse (``core.force_to_action``; ``F / force_scale`` without actuators).
    if isinstance(core, CorrectionCore):
        # --- per-step Newton targets of a correction task (the split does not apply) ---
        with torch.no_grad():
            rollout = core.rollout(policy, s0, target)
        force_targets = sip_correction_targets(core.physics, rollout.states, target,
                                               eta=config.eta)
        action_targets = core.force_to_action(force_targets)
    elif config.split == "gauss-newton":
        rollout, action_targets = _gauss_newton_targets(policy, core, s0, target, config)
    elif config.split == "minimum-force" and core.sensing.actuated:
        # --- the minimum-force split through the actuator basis (exact, linear physics) ---
        with torch.no_grad():
            rollout = core.rollout(policy, s0, target)
        action_targets = actuator_control_targets(core, rollout.states, rollout.actions,
                                                  target, eta=config.eta, box=True)
    else:
        # --- 1. roll out the policy without gradients ---
        with torch.no_grad():
            rollout = core.rollout(policy, s0, target)
            forces = core.action_to_force(rollout.actions).to(rollout.states.dtype)
        # --- 2.+3. Newton step on the terminal loss, backward sweep through the inverse ---
        force_targets = sip_control_targets(core.physics, rollout.states, forces, target,
                                            eta=config.eta, split=config.split)
        action_targets = core.force_to_action(force_targets)
    action_targets = action_targets.float()
    # --- 4. proxy loss with the targets held constant; states are inputs (no physics grad) ---
    # All T steps go through the network as one batch: one forward/backward per iteration.
    horizon, batch = rollout.actions.shape[:2]
    times = torch.arange(horizon, device=s0.device, dtype=torch.float32) / horizon
    obs = core.observe(rollout.states[:-1].flatten(0, 1),
                       target.repeat(horizon, *[1] * (target.ndim - 1)),
                       times.repeat_interleave(batch))
    actions = policy(obs)
    diff = actions.flatten(1) - action_targets.reshape(horizon * batch, -1)
    per_sample = diff.pow(2).sum(-1) / 2 if config.proxy_loss == "l2" else diff.abs().sum(-1)
    if config.weighting == "objective":
        # the objective's curvature per task (terminal error) or per step (correction tasks)
        weights = _task_weights(core, target, horizon).reshape(horizon * batch)
        per_sample = per_sample * weights.to(per_sample.dtype)
    loss = per_sample.sum() / batch
    if not torch.isfinite(loss):
        if not bool(torch.isfinite(actions).all()):  # the network overflowed, not the split
            raise TrainingDiverged(
                "SIP proxy loss is not finite because the policy's outputs are not (its weights "
                "diverged). Lower --lr.")
        raise TrainingDiverged(
            f"SIP proxy loss is not finite with the {config.split!r} split: the correction "
            "passed back through the inverse simulator outgrew floating-point range. Use "
            "--split minimum-force (it contracts), a smaller --eta, or a shorter horizon.")
    return loss, rollout


def _task_weights(core: TaskCore, target: torch.Tensor, horizon: int) -> torch.Tensor:
    """``(T, B)`` objective weights of each step's proxy term: the terminal error's curvature
    for every step of a control task, each step's own deviation's curvature for a correction
    task (``target``: the ``(B, T + 1, N)`` references)."""
    if isinstance(core, CorrectionCore):
        return objective_weights(core.deviation, target.transpose(0, 1)[1:])
    return objective_weights(core.target_error, target).expand(horizon, -1)


def inverse_loss(network: nn.Module, problem: InverseProblem, batch: InverseBatch,
                 config: SIPConfig) -> Step:
    """SIP's proxy loss on a batch of a single-step inverse problem.

    ``x = f_θ(y*)``; ``y = P(x)`` without gradient (in the physics' precision); Newton step on
    the y-loss and the physics' local inverse, ``x̃ = P⁻¹(y + η (y* − y); x)``; proxy loss
    ``½‖x − x̃‖²`` or ``Σ|x − x̃|`` per sample (``x̃`` constant), averaged over the batch.
    ``config.weighting`` changes nothing here: the trained objective ``½‖P(x) − y*‖²`` has the
    same curvature (1) for every sample, so the objective-matched weights are all 1.

    Returns:
        The proxy loss, with the guesses ``x`` ``(B, ...)`` as the prediction.
    """
    x = problem.predict(network, batch.y_target)
    with torch.no_grad():
        y = problem.physics.forward(x.detach().to(problem.physics_dtype))
    x_tilde = sip_inverse_targets(x.detach(), y, batch.y_target, problem.physics.inverse,
                                  config.eta)
    diff = (x - x_tilde).flatten(1)
    per_sample = diff.abs().sum(1) if config.proxy_loss == "l1" else 0.5 * diff.pow(2).sum(1)
    return Step(per_sample.mean(), x)


def loss(network: nn.Module, problem: Problem, batch: Any, config: SIPConfig) -> Step:
    """SIP's proxy loss on a batch of any problem (``control_loss``,
    ``inverse_loss``)."""
    if isinstance(problem, InverseProblem):
        return inverse_loss(network, problem, batch, config)
    assert isinstance(problem, TaskProblem)
    s0, target = batch
    value, rollout = control_loss(network, problem.core, s0, target, config)
    return Step(value, rollout)


def _gauss_newton_targets(policy: nn.Module, core: TaskCore, s0: torch.Tensor,
                          target: torch.Tensor, config: SIPConfig
                          ) -> tuple[Rollout, torch.Tensor]:
    """Steps 1–3 with the generic inverse: the policy's rollout is recorded once (network
    without gradients, physics with autograd in the applied forces), then one Gauss–Newton step
    on the forces gives the targets ``F + δF``, returned as actions ``(F + δF) / force_scale``.
    With actuators the step works in actuator space: ``J = ∂s_T/∂a`` through the basis, and the
    targets are ``a + δa`` (the minimum-norm correction of the actions)."""
    actions: list[torch.Tensor] = []
    actuated = core.sensing.actuated

    def act(t: int, state: torch.Tensor) -> torch.Tensor:
        action = policy(core.observe(state, target, t / core.horizon)).clamp(-1.0, 1.0)
        actions.append(action)
        return action.to(state.dtype) if actuated else core.action_to_force(action).to(state.dtype)

    def actuated_step(state: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        return core.physics.step(state, core.actuate(action))

    # --- 1. roll out the policy (no network gradients), recording J = ∂s_T/∂F (or ∂a) ---
    states, inputs, jacobian = linearize_rollout(
        actuated_step if actuated else core.physics.step, s0, act, horizon=core.horizon)
    # --- 2. Newton step on the terminal loss; 3. minimum-norm correction through J ---
    readout = terminal_readout(core)  # (the part of s_T the target is compared with)
    final = readout(states[-1])
    delta = newton_step(final, target, config.eta) - final
    if final.shape != states[-1].shape:
        jacobian = _ReadoutJacobian(jacobian, readout, states[-1])
    solution = solve_minimum_norm(jacobian, delta, iterations=config.gn_iterations,
                                  damping=config.gn_damping)
    targets = (inputs + solution.correction).detach()
    return (Rollout(states, torch.stack(actions), target),
            targets if actuated else targets / core.force_scale)


class _ReadoutJacobian(RolloutJacobian):
    """``R J`` for a linear readout ``R`` of the final state (e.g. the marker channel), applied
    through ``J``'s products: ``(R J) v = R (J v)`` and ``(R J)ᵀ w = Jᵀ (Rᵀ w)``."""

    def __init__(self, jacobian: RolloutJacobian, readout: Callable[[torch.Tensor], torch.Tensor],
                 final: torch.Tensor) -> None:  # (no super().__init__: wraps a recorded one)
        self.inner, self.readout, self.forces = jacobian, readout, jacobian.forces
        self._transpose = torch.func.vjp(readout, final.detach())[1]

    def vjp(self, w: torch.Tensor) -> torch.Tensor:
        return self.inner.vjp(self._transpose(w)[0])

    def jvp(self, v: torch.Tensor) -> torch.Tensor:
        return self.readout(self.inner.jvp(v))


ALGORITHM = Algorithm("sip", SIPConfig, loss=loss)
"""SIP: the proxy loss, trained with the default gradient update."""


def train(config: SIPConfig, **kwargs: Any) -> TrainResult:
    """Train with SIP; see ``agents.trainer.run_training`` for ``kwargs``."""
    return ALGORITHM.train(config, **kwargs)

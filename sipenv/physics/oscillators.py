"""A chain of coupled nonlinear oscillators with cubic coupling, integrated by classical RK4.

The model is the nonlinear-oscillator control problem of Schnell, Holl & Thuerey, "Half-Inverse
Gradients for Physical Deep Learning" (ICLR 2022), Sec. 4.1: ``K`` unit oscillators in a chain,
neighbours coupled by a cubic spring force, a control force on selected oscillators::

    ẋ_i = v_i
    v̇_i = −x_i + α [(x_{i+1} − x_i)³ + (x_{i−1} − x_i)³] + β [(x_{i+1} − x_i) + (x_{i−1} − x_i)]
          + Σ_c C_{ic} u_c

(the neighbour terms are absent at the two ends of the chain; the published task has α = 1,
β = 0; ``β > 0, α = 0`` is a linear chain, as in the "Physics-based Deep Learning" book's small
example). This is Hamilton's equations of
``H = Σ_i (x_i²/2 + p_i²/2) + α/4 Σ_i (x_i − x_{i+1})⁴ − Σ_i x_i (C u)_i``. The state is
``s = [x_1 … x_K, v_1 … v_K]`` (``n = 2K`` values, positions first, as in the published code),
the force ``u`` has one value per controlled oscillator (``n_controls``): by default only the
last oscillator is driven (the published setting: one scalar control per step, on the last
oscillator, with gain 3 — here the env's ``force_scale = 3``), ``control="each"`` drives every
oscillator.

One ``step`` is one classical fourth-order Runge–Kutta step of length ``dt`` with ``u`` held
constant (local error ``O(dt⁵)``).

Inverse simulators
------------------
``inverse_step(next_state, force, state)`` solves the *implicit* equation ``RK4(s, u) = n`` for
``s`` by defect correction (``sipenv.physics.defect_correction``) preconditioned by the
time-reversed step (an RK4 step of ``−dt`` from ``n``, itself accurate to ``O(dt⁵)``): the
contraction factor is ``O(dt⁵)`` per iteration, so a few iterations reach rounding level for
states of order one at ``dt ≤ 0.5`` (``tests/physics/test_oscillators.py`` measures the round
trip ``step(inverse_step(step(s, u), u, ·), u) = step(s, u)`` to 1e-10 in float64 at the
default ``dt``). As the defect correction keeps the best iterate, the result is never worse than
``state`` and never NaN for finite inputs.

``force_for(state, next_state)`` is the least-squares force: with fewer controls than state
values (``n_controls < n``) most next states cannot be reached in one step, so it returns the
``u`` minimising ``‖RK4(s, u) − n‖²`` by Gauss–Newton on ``u`` (``force_iterations``
iterations from ``u = 0``; ``RK4(s, ·)`` is affine in ``u`` up to the cubic coupling, so two or
three iterations converge), with the 2×2/1×1 normal equations solved per sample.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from sipenv.physics.defect_correction import defect_correction
from sipenv.validation import (
    check_choice,
    check_finite,
    check_int,
    check_nonnegative,
    check_positive,
)

__all__ = ["OscillatorPhysics"]


@dataclass(frozen=True)
class OscillatorPhysics:
    """``K`` coupled oscillators with cubic nearest-neighbour coupling, RK4 in time.

    Args:
        oscillators: Number of oscillators ``K`` (≥ 1); the state has ``n = 2K`` values.
        dt: Time step (> 0). The published setting is ``0.125`` (96 steps); the book's small
            example uses ``0.5`` (24 steps).
        coupling: Cubic coupling strength ``α`` (≥ 0).
        linear_coupling: Linear (spring) coupling strength ``β`` (≥ 0); with ``α = β = 0`` the
            oscillators are independent (and those without a control uncontrollable).
        control: ``"last"`` (one force, on the last oscillator: the published setting) or
            ``"each"`` (one force per oscillator).
        inverse_iterations: Defect-correction iterations of ``inverse_step`` (≥ 0).
        force_iterations: Gauss–Newton iterations of ``force_for`` (≥ 1).

    Raises:
        ValueError: For an out-of-range or mistyped setting (the message names it).
    """

    oscillators: int = 2
    dt: float = 0.125
    coupling: float = 1.0
    linear_coupling: float = 0.0
    control: Literal["last", "each"] = "last"
    inverse_iterations: int = 6
    force_iterations: int = 3

    def __post_init__(self) -> None:
        check_int("oscillators", self.oscillators, minimum=1)
        check_positive("dt", self.dt)
        check_nonnegative("coupling", self.coupling)
        check_finite("coupling", self.coupling)
        check_nonnegative("linear_coupling", self.linear_coupling)
        check_finite("linear_coupling", self.linear_coupling)
        check_choice("control", self.control, ["last", "each"])
        check_int("inverse_iterations", self.inverse_iterations, minimum=0)
        check_int("force_iterations", self.force_iterations, minimum=1)

    # --- shapes ---------------------------------------------------------------------------------

    @property
    def n(self) -> int:
        """State size ``2K``: positions then velocities."""
        return 2 * self.oscillators

    @property
    def n_controls(self) -> int:
        """Forces per step: 1 (``control="last"``) or ``K`` (``"each"``)."""
        return 1 if self.control == "last" else self.oscillators

    def _check(self, name: str, x: torch.Tensor, size: int) -> None:
        if not isinstance(x, torch.Tensor) or not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor of shape (B, {size}), got "
                             f"{type(x).__name__} {getattr(x, 'dtype', '')}.")
        if x.ndim != 2 or x.shape[-1] != size:
            raise ValueError(f"{name} must have shape (B, {size}), got {tuple(x.shape)}.")

    # --- dynamics -------------------------------------------------------------------------------

    def _drive(self, force: torch.Tensor) -> torch.Tensor:
        """The control term ``C u`` of ``v̇``, ``(B, K)``."""
        if self.control == "each":
            return force
        zeros = force.new_zeros(force.shape[0], self.oscillators - 1)
        return torch.cat([zeros, force], dim=-1)

    def rhs(self, state: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        """``ṡ = [v, −x + α(Δ₊³ + Δ₋³) + β(Δ₊ + Δ₋) + C u]``, ``(B, 2K)``."""
        k = self.oscillators
        x, v = state[:, :k], state[:, k:]
        acc = -x + self._drive(force)
        if k > 1 and (self.coupling != 0 or self.linear_coupling != 0):
            diff = x[:, 1:] - x[:, :-1]  # x_{i+1} − x_i, (B, K − 1)
            pull = self.coupling * diff**3 + self.linear_coupling * diff
            zero = pull.new_zeros(pull.shape[0], 1)
            # oscillator i is pulled by +p(x_{i+1} − x_i) from its right, −p(x_i − x_{i−1}) from
            # its left
            acc = acc + torch.cat([pull, zero], -1) - torch.cat([zero, pull], -1)
        return torch.cat([v, acc], dim=-1)

    def _rk4(self, state: torch.Tensor, force: torch.Tensor, dt: float) -> torch.Tensor:
        k1 = self.rhs(state, force)
        k2 = self.rhs(state + 0.5 * dt * k1, force)
        k3 = self.rhs(state + 0.5 * dt * k2, force)
        k4 = self.rhs(state + dt * k3, force)
        return state + (dt / 6.0) * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    def step(self, state: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        """One RK4 step of length ``dt`` with ``force`` ``(B, n_controls)`` held constant.

        Args:
            state: ``(B, 2K)`` ``[x, v]``.
            force: ``(B, n_controls)``, cast to ``state``'s dtype.

        Returns:
            ``(B, 2K)``, in ``state``'s dtype.

        Raises:
            ValueError: For wrong shapes or non-floating-point tensors.
        """
        self._check("state", state, self.n)
        self._check("force", force, self.n_controls)
        return self._rk4(state, force.to(state.dtype), self.dt)

    def inverse_step(self, next_state: torch.Tensor, force: torch.Tensor,
                     state: torch.Tensor) -> torch.Tensor:
        """The ``s`` with ``step(s, force) = next_state``, by defect correction preconditioned
        by the time-reversed RK4 step, from the reversed step itself (``state`` only sets the
        dtype and is the fallback: the result is never worse than it).

        Returns:
            ``(B, 2K)`` in ``state``'s dtype.
        """
        self._check("next_state", next_state, self.n)
        self._check("state", state, self.n)
        self._check("force", force, self.n_controls)
        goal = next_state.to(state.dtype)
        u = force.to(state.dtype)

        def forward(s: torch.Tensor) -> torch.Tensor:
            return self._rk4(s, u, self.dt)

        def backward(s: torch.Tensor) -> torch.Tensor:
            return self._rk4(s, u, -self.dt)

        first = backward(goal)
        # never worse than `state`: compare the reversed step's residual with the start's
        res_first = (forward(first) - goal).square().sum(-1)
        res_state = (forward(state) - goal).square().sum(-1)
        start = torch.where((res_first <= res_state)[:, None] | ~torch.isfinite(res_state)[:, None],
                            first, state)
        return defect_correction(forward, backward, goal, start,
                                 iterations=self.inverse_iterations)

    def force_for(self, state: torch.Tensor, next_state: torch.Tensor) -> torch.Tensor:
        """The force ``u`` ``(B, n_controls)`` minimising ``‖step(state, u) − next_state‖²``
        (Gauss–Newton on ``u`` from 0; exact when ``next_state`` is reachable).

        Returns:
            ``(B, n_controls)`` in ``state``'s dtype (differentiable in both inputs).
        """
        self._check("state", state, self.n)
        self._check("next_state", next_state, self.n)
        goal = next_state.to(state.dtype)
        m = self.n_controls
        u = state.new_zeros(state.shape[0], m)
        eye = torch.eye(m, dtype=state.dtype, device=state.device)
        for _ in range(self.force_iterations):
            base = self._rk4(state, u, self.dt)
            # ∂RK4/∂u column by column (forward differences are not needed: the map is smooth
            # and cheap; m ≤ K columns by forward-mode products)
            cols = [torch.func.jvp(lambda w: self._rk4(state, w, self.dt), (u,),
                                   (eye[j].expand_as(u),))[1] for j in range(m)]
            jac = torch.stack(cols, dim=-1)  # (B, n, m)
            normal = jac.transpose(1, 2) @ jac  # (B, m, m)
            rhs = (jac.transpose(1, 2) @ (goal - base)[..., None])
            u = u + torch.linalg.solve(normal, rhs)[..., 0]
        return u

    # --- sampling -------------------------------------------------------------------------------

    def sample_fields(self, batch: int, generator: torch.Generator, *, max_mode: int = 1,
                      amplitude: float = 1.0, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``batch`` states with every entry uniform in ``[0, amplitude)`` (the published
        data: ``U[0, 1)`` positions and velocities), drawn on ``generator.device``.

        ``max_mode`` is accepted for the physics contract and unused (the state is not a field).
        """
        del max_mode
        check_int("batch", batch, minimum=1)
        check_positive("amplitude", amplitude)
        draw = torch.rand(batch, self.n, generator=generator, device=generator.device,
                          dtype=torch.float64)
        return (amplitude * draw).to(device=device or generator.device, dtype=dtype)

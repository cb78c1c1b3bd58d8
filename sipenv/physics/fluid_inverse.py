"""The fluid inverse problem of the SIP paper (Holl, Koltun & Thuerey, "Scale-invariant
Learning by Physics Inversion", NeurIPS 2022, Sec. 4.4 / Fig. 7): given a passive marker at
``t = 0`` and at ``t = T``, infer the initial velocity that carried one to the other.

Physics
-------
:class:`~sipenv.physics.flow.IncompressibleFlowPhysics` on a periodic ``64 × 64`` grid of a
``128 × 128`` box (``Δ = 2``), ``T = 2`` in 8 steps (``dt = 0.25``), inviscid, MacCormack
advection of velocity and marker, the velocity rescaled after every step to keep its kinetic
energy (``keep_energy=True``), no force. The answer ``v`` is made divergence-free (Leray
projection) before it is simulated.

Data (as published, with the approximations named)
---------------------------------------------------
* marker: smooth periodic noise (modes up to ``L / (2 · noise_scale)``, i.e. features of about
  ``noise_scale = 10`` length units; PhiFlow's ``Noise(scale=10)`` has a smooth power spectrum
  instead of a cut-off), thresholded so that a uniform ``5 … 15 %`` of a ``56 × 56`` box is
  filled, the box centred uniformly in ``[32, 96]²``;
* velocity: a uniform **drift** that carries the marker's centre of mass to the box centre
  ``(64, 64)`` in time ``T``, plus a Gaussian **swirl** around the centre of strength
  ``s ~ U(−2, 2)`` (``u_θ = s (r/σ) e^{−r²/(2σ²)}``, ``σ = 20``: angular velocity
  ``ω(r) = (s/σ) e^{−r²/(2σ²)}``), plus ``0.1 ×`` a smooth random divergence-free field of
  RMS speed 1; the sum is projected.

Loss and metric
---------------
The published marker loss is an L1 of the frequency-weighted FFT of the terminal marker error
(:meth:`FluidInversePhysics.marker_loss`): ``Σ_k w_k |FFT(m_T − m*)_k| / (H W)`` with
``w_k = exp(−½ |k|² ℓ²)`` (``k`` in cycles per unit length, ``ℓ = 80``), weights below
``1e-5`` and the mean (``k = 0``) dropped: essentially the few lowest modes, i.e. where the
marker is, not its outline. The published metric is the L1 error of the inferred initial
velocity (:meth:`FluidInversePhysics.velocity_l1`: mean over cells of ``|v_y − v*_y| +
|v_x − v*_x|`` after projecting ``v``).

Inverses (what SIP uses)
------------------------
* :meth:`FluidInversePhysics.drift_swirl_inverse` — the paper's problem-specific inverse in
  spirit: from a forward run of the current guess and a run backwards in time from the target
  marker (the negated guessed velocity), it corrects only the drift (the mismatch of the
  forward run's final centre of mass, divided by ``T``) and the swirl strength (the rotation
  of the backward run's marker against the observed initial one, divided by the swirl's mean
  local rotation rate along the path). The noise part is not recovered.
  This is a re-derivation from the paper's description, not a port of its code.
* :meth:`FluidInversePhysics.gauss_newton_inverse` — the generic one: one Gauss–Newton step on
  the terminal marker, ``δv = Jᵀ (J Jᵀ + λ)⁻¹ (m* − m_T)`` by conjugate gradients through the
  8-step rollout (``sipenv.physics.generic_inverse``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import NamedTuple

import torch

from sipenv.physics.flow import IncompressibleFlowPhysics
from sipenv.physics.generic_inverse import RolloutJacobian, solve_minimum_norm
from sipenv.validation import check_int, check_nonnegative, check_positive

__all__ = ["FluidInversePhysics", "FluidSample"]


class FluidSample(NamedTuple):
    """A batch of problems: ``marker`` ``(B, H, W)`` at ``t = 0``, the true initial ``velocity``
    ``(B, 2, H, W)`` (divergence-free), and the ``target`` marker ``(B, H, W)`` at ``t = T``;
    ``drift`` ``(B, 2)`` and ``swirl`` ``(B,)``: the true drift and swirl strength."""

    marker: torch.Tensor
    velocity: torch.Tensor
    target: torch.Tensor
    drift: torch.Tensor
    swirl: torch.Tensor


@dataclass(frozen=True)
class FluidInversePhysics:
    """Forward model, data, loss, metric and inverses of the fluid inverse problem (module
    docstring). Shapes: markers ``(B, H, W)``, velocities ``(B, 2, H, W)`` = ``[v_y, v_x]``
    (length units per time unit).

    Args:
        shape: Grid ``(H, W)`` (paper 64×64; ``--quick`` runs use 32×32).
        length: Box ``(L_y, L_x)`` (paper 128×128).
        steps: Steps of the rollout (paper 8).
        duration: ``T`` (paper 2).
        advection: ``"mac_cormack"`` (paper) or ``"semi_lagrangian"``.
        swirl_sigma: ``σ`` of the swirl (paper 20).
        swirl_max: Swirl strengths are ``U(−swirl_max, swirl_max)`` (paper 2).
        noise: Weight of the random velocity part (paper 0.1).
        noise_scale: Feature size of the marker noise (paper 10).
        loss_length: ``ℓ`` of the loss weights (paper 80).
        gn_iterations: CG iterations of the Gauss–Newton inverse.

    Raises:
        ValueError: For a setting out of range.
    """

    shape: tuple[int, int] = (64, 64)
    length: tuple[float, float] = (128.0, 128.0)
    steps: int = 8
    duration: float = 2.0
    advection: str = "mac_cormack"
    swirl_sigma: float = 20.0
    swirl_max: float = 2.0
    noise: float = 0.1
    noise_scale: float = 10.0
    loss_length: float = 80.0
    gn_iterations: int = 8
    flow: IncompressibleFlowPhysics = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_int("steps", self.steps, minimum=1)
        check_positive("duration", self.duration)
        for name in ("swirl_sigma", "noise_scale", "loss_length"):
            check_positive(name, getattr(self, name))
        for name in ("swirl_max", "noise"):
            check_nonnegative(name, getattr(self, name))
        check_int("gn_iterations", self.gn_iterations, minimum=1)
        flow = IncompressibleFlowPhysics(shape=self.shape, length=self.length,
                                         dt=self.duration / self.steps, nu=0.0, markers=1,
                                         advection=self.advection, keep_energy=True)
        object.__setattr__(self, "shape", flow.shape)
        object.__setattr__(self, "length", flow.length)
        object.__setattr__(self, "flow", flow)

    # --- geometry -------------------------------------------------------------------------------

    def _coordinates(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """Cell positions ``(2, H, W)`` = ``[y, x]`` in length units."""
        (h, w), (ly, lx) = self.shape, self.length
        y = torch.arange(h, device=device, dtype=dtype) * (ly / h)
        x = torch.arange(w, device=device, dtype=dtype) * (lx / w)
        return torch.stack(torch.broadcast_tensors(y[:, None], x[None, :]))

    def _centre(self) -> tuple[float, float]:
        return self.length[0] / 2, self.length[1] / 2

    def centre_of_mass(self, marker: torch.Tensor) -> torch.Tensor:
        """Periodic centre of mass ``(B, 2)`` = ``[y, x]`` of markers ``(B, H, W)`` (the
        circular mean of each coordinate, weighted by ``max(m, 0)``), in ``[0, L)``."""
        weight = marker.clamp_min(0)
        pos = self._coordinates(marker.device, marker.dtype)
        out = []
        for axis, size in enumerate(self.length):
            angle = pos[axis] * (2 * math.pi / size)
            c = (weight * torch.cos(angle)).sum((-2, -1))
            s = (weight * torch.sin(angle)).sum((-2, -1))
            out.append(torch.remainder(torch.atan2(s, c), 2 * math.pi) * (size / (2 * math.pi)))
        return torch.stack(out, -1)

    def _wrap(self, delta: torch.Tensor) -> torch.Tensor:
        """Periodic differences ``(…, 2)`` into ``[−L/2, L/2)``."""
        size = torch.tensor(self.length, device=delta.device, dtype=delta.dtype)
        return torch.remainder(delta + size / 2, size) - size / 2

    def swirl_field(self, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The unit-strength swirl ``(2, H, W)`` around the box centre:
        ``u_θ = (r/σ) e^{−r²/(2σ²)}``, counter-clockwise in the ``(x, y)`` plane."""
        pos = self._coordinates(torch.device(device or "cpu"), dtype)
        cy, cx = self._centre()
        dy, dx = pos[0] - cy, pos[1] - cx
        sigma = self.swirl_sigma
        g = torch.exp(-(dy.square() + dx.square()) / (2 * sigma**2)) / sigma
        return torch.stack((dx * g, -dy * g))

    # --- forward --------------------------------------------------------------------------------

    def simulate(self, velocity: torch.Tensor, marker: torch.Tensor, *,
                 reverse: bool = False) -> torch.Tensor:
        """The marker ``(B, H, W)`` at ``t = T`` from ``marker`` at ``t = 0`` and the initial
        ``velocity`` (projected first); ``reverse=True`` runs with ``−velocity`` (back in time
        for an inviscid flow). Differentiable."""
        v = self.flow.project(-velocity if reverse else velocity)
        state = torch.cat((v, marker[:, None]), 1)
        zero = torch.zeros_like(v)
        for _ in range(self.steps):
            state = self.flow.step(state, zero)
        return state[:, 2]

    def _loss_weights(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        (h, w), (ly, lx) = self.shape, self.length
        ky = torch.fft.fftfreq(h, d=ly / h, device=device, dtype=dtype)[:, None]
        kx = torch.fft.fftfreq(w, d=lx / w, device=device, dtype=dtype)[None, :]
        weight = torch.exp(-0.5 * (ky.square() + kx.square()) * self.loss_length**2)
        weight = torch.where(weight < 1e-5, torch.zeros_like(weight), weight)
        weight[0, 0] = 0.0
        return weight

    def marker_loss(self, marker: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The published loss ``Σ_k w_k |FFT(m − m*)_k| / (H W)`` per sample, ``(B,)``."""
        h, w = self.shape
        weight = self._loss_weights(marker.device, marker.dtype)
        return (weight * torch.fft.fft2(marker - target).abs()).sum((-2, -1)) / (h * w)

    def velocity_l1(self, velocity: torch.Tensor, true: torch.Tensor) -> torch.Tensor:
        """The published metric: mean over cells of ``Σ_components |P v − v*|``, ``(B,)``."""
        return (self.flow.project(velocity) - true).abs().sum(1).mean((-2, -1))

    # --- data -----------------------------------------------------------------------------------

    def sample(self, batch: int, generator: torch.Generator, *,
               device: torch.device | str | None = None,
               dtype: torch.dtype = torch.float32) -> FluidSample:
        """``batch`` problems drawn as published (module docstring), from ``generator`` (drawn
        in float64 on its device, then moved and cast)."""
        check_int("batch", batch, minimum=1)
        gdev = generator.device
        f64 = torch.float64
        (h, w), (ly, lx) = self.shape, self.length
        grid = self.flow.domain
        max_mode = max(1, min(min(h, w) // 2 - 1, round(min(ly, lx) / (2 * self.noise_scale))))
        noise = grid.sample_smooth(batch, generator, max_mode=max_mode, device=gdev, dtype=f64)
        pos = self._coordinates(gdev, f64)
        box = torch.tensor([ly, lx], device=gdev, dtype=f64)
        centre = (32.0 + 64.0 * torch.rand(batch, 2, generator=generator, device=gdev,
                                           dtype=f64)) * box / 128.0
        half = 28.0 * box / 128.0
        dy = self._wrap_cells(pos[0][None] - centre[:, 0, None, None], ly)
        dx = self._wrap_cells(pos[1][None] - centre[:, 1, None, None], lx)
        inside = (dy.abs() < half[0]) & (dx.abs() < half[1])
        fill = 0.05 + 0.1 * torch.rand(batch, generator=generator, device=gdev, dtype=f64)
        values = torch.where(inside, noise, torch.full_like(noise, -math.inf))
        count = inside.flatten(1).sum(1)
        k = (fill * count).round().clamp_min(1).long()
        threshold = torch.stack([values[i].flatten().topk(int(k[i])).values[-1]
                                 for i in range(batch)])
        marker = (values >= threshold[:, None, None]).to(f64)
        cy, cx = self._centre()
        com = self.centre_of_mass(marker)
        drift = self._wrap(torch.tensor([cy, cx], device=gdev, dtype=f64) - com) / self.duration
        swirl = self.swirl_max * (2 * torch.rand(batch, generator=generator, device=gdev,
                                                 dtype=f64) - 1)
        rand_v = self.flow.sample_velocities(batch, generator, max_mode=max_mode,
                                             device=gdev, dtype=f64)
        velocity = (drift[:, :, None, None] + swirl[:, None, None, None]
                    * self.swirl_field(gdev, f64) + self.noise * rand_v)
        velocity = self.flow.project(velocity)
        target = self.simulate(velocity, marker)
        out = (marker, velocity, target, drift, swirl)
        return FluidSample(*(t.to(device=device if device is not None else gdev, dtype=dtype)
                             for t in out))

    @staticmethod
    def _wrap_cells(delta: torch.Tensor, size: float) -> torch.Tensor:
        return torch.remainder(delta + size / 2, size) - size / 2

    # --- inverses -------------------------------------------------------------------------------

    def _mean_rate(self, start: torch.Tensor) -> torch.Tensor:
        """Mean local rotation rate per unit swirl strength, half the swirl's vorticity
        ``e^{−r²/(2σ²)} (1 − r²/(2σ²)) / σ``, along a straight path from ``start`` ``(B, 2)`` to
        the centre (the drift's path), ``(B,)``."""
        cy, cx = self._centre()
        r0 = self._wrap(start - torch.tensor([cy, cx], device=start.device,
                                             dtype=start.dtype)).norm(dim=-1)
        frac = (torch.arange(16, device=start.device, dtype=start.dtype) + 0.5) / 16
        q = (r0[:, None] * (1 - frac)).square() / (2 * self.swirl_sigma**2)
        return (torch.exp(-q) * (1 - q) / self.swirl_sigma).mean(-1)

    def _orientation(self, marker: torch.Tensor) -> torch.Tensor:
        """The second complex moment ``Σ m (z − z_c)²`` about the centre of mass (``z = x +
        i y``, periodic offsets), ``(B,)`` complex: a rotation by ``θ`` multiplies it by
        ``e^{2iθ}``."""
        weight = marker.clamp_min(0)
        com = self.centre_of_mass(marker)
        pos = self._coordinates(marker.device, marker.dtype)
        dy = self._wrap_cells(pos[0][None] - com[:, 0, None, None], self.length[0])
        dx = self._wrap_cells(pos[1][None] - com[:, 1, None, None], self.length[1])
        return (weight * torch.complex(dx, dy).square()).sum((-2, -1))

    def drift_swirl_inverse(self, velocity: torch.Tensor, marker: torch.Tensor,
                            target: torch.Tensor) -> torch.Tensor:
        """The problem-specific inverse: ``velocity`` corrected in drift and swirl strength
        only, ``(B, 2, H, W)``.

        Drift: the forward run's final centre of mass misses the target's by ``Δ``; the drift
        changes by ``Δ / T``. Swirl: the backward run (from the target, with the negated
        guess) returns the marker rotated by ``(s − s̃) T ω̄`` about its centre of mass against
        the observed initial one (``ω̄``: the swirl's mean local rotation rate along the
        drift's path); the angle is read from the markers' second complex moments, and the
        strength changes by ``angle / (T ω̄)``, clamped to ``±swirl_max`` (the orientation of
        a nearly isotropic marker is ill-defined).
        """
        with torch.no_grad():
            forward = self.simulate(velocity, marker)
            backward = self.simulate(velocity, target, reverse=True)
            d_drift = self._wrap(self.centre_of_mass(target) - self.centre_of_mass(forward))
            d_drift = d_drift / self.duration
            turn = self._orientation(backward) * self._orientation(marker).conj()
            angle = 0.5 * torch.angle(turn)
            d_swirl = angle / (self.duration * self._mean_rate(self.centre_of_mass(marker)))
            # (a near-isotropic marker has an ill-defined orientation: bounded step)
            d_swirl = d_swirl.clamp(-self.swirl_max, self.swirl_max)
            swirl = self.swirl_field(marker.device, marker.dtype)
            return (velocity + d_drift[:, :, None, None]
                    + d_swirl[:, None, None, None] * swirl)

    def gauss_newton_inverse(self, velocity: torch.Tensor, marker: torch.Tensor,
                             target: torch.Tensor, *, damping: float = 0.0) -> torch.Tensor:
        """The generic inverse: ``velocity + Jᵀ (J Jᵀ + λ)⁻¹ (m* − m_T)`` (``gn_iterations``
        CG iterations through the rollout), ``(B, 2, H, W)``."""
        with torch.enable_grad():
            leaf = velocity.detach().requires_grad_()
            final = self.simulate(leaf, marker.detach())
            jacobian = RolloutJacobian(final, [leaf])
            solution = solve_minimum_norm(jacobian, (target - final).detach(),
                                          iterations=self.gn_iterations, damping=damping)
        step = solution.correction[0]
        finite = torch.isfinite(step).flatten(1).all(1).view(-1, 1, 1, 1)
        # (a sample whose CG broke down, e.g. a marker the flow cannot move: no step)
        return (velocity + torch.where(finite, step, torch.zeros_like(step))).detach()

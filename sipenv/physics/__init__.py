"""Pure, batched, differentiable physics models with per-step inverse simulators.

Every time-dependent model exposes ``step(state, force)``, ``inverse_step(next_state, force,
state)``, ``force_for(state, next_state)`` and a seeded sampler ``sample_fields(batch, generator,
...)``; see ``PhysicsModel``. Single-step inverse problems (``SinePhysics``,
``HeatPhysics``) expose ``forward`` / ``inverse`` / ``sample_*`` instead. Nothing here imports
gymnasium or pygame.

Building blocks for new models:

* ``PeriodicGrid`` (``sipenv.physics.grid``): a periodic 1-D or 2-D grid — spacing, cell
  coordinates, wavenumbers and ``|k|²``, the real FFT pair over the grid axes, shape checks,
  smooth random fields — and ``FactorCache``, per-(device, dtype) precomputed factors.
* ``ExponentialIntegrator`` (``sipenv.physics.spectral``): the exact step, local
  inverse and ``force_for`` of any linear PDE with a Fourier symbol ``λ(k)``, given a grid and
  the symbol (``DiffusionPhysics`` and ``Diffusion2DPhysics`` are two); fields may have
  several components (``(B, C, *grid)``, e.g. a 2-D velocity).
  ``SemilinearExponentialIntegrator`` adds a nonlinear term, ``∂s/∂t = λ s + N(s) + f``
  (first-order exponential time differencing, exact ``force_for``, a defect-correction
  ``inverse_step``): Kuramoto–Sivashinsky is its symbol ``k² − k⁴`` and ``N(u) = −½ ∂ₓ(u²)``.
* ``defect_correction`` (``sipenv.physics.defect_correction``): a local inverse of any
  step from an approximate inverse (e.g. the time-reversed scheme), as Burgers uses it; beside
  the Gauss–Newton inverse of ``sipenv.physics.generic_inverse``, which needs only
  derivatives.
* ``AdvectionScheme`` (``UpwindAdvection``, ``SemiLagrangianAdvection``): Burgers'
  interchangeable advection sub-steps.
* ``sipenv.validation`` checks every setting.

Measured accuracies and speed ratios are in ``docs/results/physics_accuracy.md``
(``benchmarks/physics_accuracy.py`` regenerates it).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from sipenv.physics.burgers import (
    ADVECTION_SCHEMES,
    AdvectionScheme,
    BurgersPhysics,
    SemiLagrangianAdvection,
    UpwindAdvection,
)
from sipenv.physics.defect_correction import defect_correction
from sipenv.physics.diffusion import DiffusionPhysics
from sipenv.physics.grid import FactorCache, PeriodicGrid
from sipenv.physics.heat import Diffusion2DPhysics, HeatPhysics
from sipenv.physics.sine import SinePhysics
from sipenv.physics.spectral import (
    ExponentialIntegrator,
    SemilinearExponentialIntegrator,
    SpectralFactors,
)

__all__ = [
    "ADVECTION_SCHEMES",
    "AdvectionScheme",
    "BurgersPhysics",
    "Diffusion2DPhysics",
    "DiffusionPhysics",
    "ExponentialIntegrator",
    "FactorCache",
    "HeatPhysics",
    "PeriodicGrid",
    "PhysicsModel",
    "SemiLagrangianAdvection",
    "SemilinearExponentialIntegrator",
    "SinePhysics",
    "SpectralFactors",
    "SpectralLinearPhysics",
    "UpwindAdvection",
    "defect_correction",
]


@runtime_checkable
class PhysicsModel(Protocol):
    """The contract every time-dependent physics model meets.

    Tensors are batches of fields on the model's grid, ``(B, *grid)``: ``(B, N)`` in 1-D (``n``
    is ``N``) and ``(B, H, W)`` in 2-D; a model with several field components (e.g. a 2-D
    velocity) uses ``(B, C, *grid)``. The batch axis is always present (``x[None]`` for one
    field) and samples are independent. Every method is pure (inputs are never modified),
    batched, differentiable, and follows the input's dtype and device; wrong shapes and
    non-floating-point tensors raise ``ValueError`` naming the expected shape.

    **Mixed precision: the state's dtype governs.** The result of ``step``, ``inverse_step``
    and ``force_for`` has the dtype of their ``state`` argument (for ``inverse_step`` the
    linearisation point); every other tensor argument (``force``, ``next_state``) is cast to
    that dtype first (differentiably), so e.g. ``step(float32 state, float64 force)`` is a
    float32 step. The single-step models follow the same rule with their unknown ``x``
    (``HeatPhysics.loss(x, y*)``, ``SinePhysics.inverse(y*, x)`` … are in ``x``'s dtype).

    * ``step(state, force)``: the state after one step of length ``dt`` with the force held
      constant over it.
    * ``inverse_step(next_state, force, state)``: a local inverse with respect to the state,
      taken around (and never worse than, nor inf/NaN from finite inputs) ``state``:
      ``step(inverse_step(n, f, s), f) ≈ n``.
    * ``force_for(state, next_state)``: the force with ``step(state, force) = next_state``
      (exact for additive forcing).
    * ``sample_fields(batch, generator, ...)``: seeded smooth random fields ``(batch, *grid)``,
      drawn on ``generator.device`` so a seed fixes them on any device and dtype.
    """

    @property
    def n(self) -> int: ...

    @property
    def dt(self) -> float: ...

    def step(self, state: torch.Tensor, force: torch.Tensor) -> torch.Tensor: ...

    def inverse_step(self, next_state: torch.Tensor, force: torch.Tensor,
                     state: torch.Tensor) -> torch.Tensor: ...

    def force_for(self, state: torch.Tensor, next_state: torch.Tensor) -> torch.Tensor: ...

    def sample_fields(self, batch: int, generator: torch.Generator, *, max_mode: int = ...,
                      amplitude: float = ..., device: torch.device | str | None = ...,
                      dtype: torch.dtype = ...) -> torch.Tensor: ...


@runtime_checkable
class SpectralLinearPhysics(PhysicsModel, Protocol):
    """Linear physics that is diagonal in a spectral basis: ``ŝ ← d ŝ + g f̂`` per mode.

    The minimum-force SIP split uses these factors to compute the exact least-norm controls.
    """

    def spectral_factors(self, device: torch.device | str | None = ...,
                         dtype: torch.dtype = ...) -> tuple[torch.Tensor, torch.Tensor]: ...

    def to_spectral(self, x: torch.Tensor) -> torch.Tensor: ...

    def from_spectral(self, x_hat: torch.Tensor) -> torch.Tensor: ...

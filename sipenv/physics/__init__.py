"""Pure, batched, differentiable physics models with per-step inverse simulators.

Every time-dependent model exposes ``step(state, force)``, ``inverse_step(next_state, force,
state)``, ``force_for(state, next_state)`` and a seeded sampler ``sample_fields(batch, generator,
...)``; see :class:`PhysicsModel`. Single-step inverse problems (``SinePhysics``) expose
``forward`` / ``inverse`` / ``sample_targets`` instead. Nothing here imports gymnasium or pygame.
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
from sipenv.physics.spectral import ExponentialIntegrator, SpectralFactors

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
    "SinePhysics",
    "SpectralFactors",
    "SpectralLinearPhysics",
    "UpwindAdvection",
    "defect_correction",
]


@runtime_checkable
class PhysicsModel(Protocol):
    """The contract every physics model meets (tensors are ``(B, N)``; see DESIGN.md)."""

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

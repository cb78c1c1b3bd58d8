"""Differentiable 1-D periodic diffusion with a source, integrated exactly in Fourier space.

The PDE is the forced heat equation on the periodic domain ``[0, L)``::

    ∂s/∂t = ν ∂²s/∂x² + f(x)

It is the :class:`~sipenv.physics.spectral.ExponentialIntegrator` of the symbol ``λ(k) = −ν k²``:
with the force held constant over one step of length ``dt``, every real Fourier mode ``k``
(angular wavenumber ``k = 2π m / L``) evolves independently and exactly::

    ŝ_k(t + dt) = d_k ŝ_k(t) + g_k f̂_k,    d_k = exp(−ν k² dt),
                                           g_k = (1 − d_k) / (ν k²),   g_0 = dt.

There is no time-step restriction: the scheme is exact for any ``dt > 0``. Everything here is
pure, batched torch on tensors of shape ``(B, N)``; dtype and device follow the input, and all
operations are differentiable.

Inverse simulators
------------------
``force_for(state, next_state)`` is exact: ``f̂ = (n̂ − d ŝ) / g`` with ``g_k ∈ (0, dt]``, which is
well conditioned for every mode.

``inverse_step(next_state, force, state)`` is the *local* inverse of :meth:`step` with respect to
the state, linearised at (and falling back to) ``state``::

    s_prev = state + IFFT( G_k · (n̂ − d_k ŝ − g_k f̂) ),      G_k = min(1 / d_k, max_gain).

Where ``1/d_k ≤ max_gain`` this is the exact inverse ``(n̂ − g f̂)/d`` whatever ``state`` is. Modes
whose amplification ``1/d_k = exp(ν k² dt)`` would exceed ``max_gain`` are clamped: they move from
``state`` towards the exact preimage by the gain ``max_gain`` only, so the result is never inf/NaN
for finite inputs. The largest gain applied is :attr:`DiffusionPhysics.max_inverse_gain`.
At the environment defaults (N = 64, L = 1, ν = 0.01, dt = 0.01) the largest exact gain is
``exp(0.01 · (2π·32)² · 0.01) ≈ 57``, so no mode is clamped and the inverse is exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from sipenv.physics.grid import FactorCache, PeriodicGrid, smooth_periodic_fields
from sipenv.physics.spectral import ExponentialIntegrator
from sipenv.validation import check_int, check_positive

__all__ = ["DiffusionPhysics", "ExactDiffusionBase", "smooth_periodic_fields"]


def check_max_gain(max_gain: object, what: str = "inversion") -> float:
    """``max_gain`` as a float ≥ 1 (``1`` disables the amplification of the inverse)."""
    gain = check_positive("max_gain", max_gain)
    if gain < 1:
        raise ValueError(f"max_gain must be ≥ 1 (1 disables {what}), got {max_gain}.")
    return gain


class ExactDiffusionBase(ExponentialIntegrator):
    """The diffusion symbol ``λ(k) = −ν |k|²`` on an
    :class:`~sipenv.physics.spectral.ExponentialIntegrator`, shared by the 1-D and 2-D models.

    A subclass adds its ``domain`` (grid), ``nu``, ``dt``, ``max_gain`` and ``_cache``.
    """

    nu: float

    def symbol(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``λ(k) = −ν |k|²`` (float64)."""
        return -(self.nu * self.domain.wavenumber_squared(device))

    def _nu_k2_dt(self, device: torch.device | str | None) -> torch.Tensor:
        """``ν |k|² dt ≥ 0`` per mode (float64): the exponent of the decay, ``−λ dt``."""
        return -self.exponent(device)


@dataclass(frozen=True)
class DiffusionPhysics(ExactDiffusionBase):
    """Exact spectral integrator of 1-D periodic diffusion with an additive source.

    Args:
        n: Number of grid cells (N ≥ 4). Cell centres are at ``x_j = j · L / N``.
        length: Domain length ``L`` (> 0).
        nu: Diffusivity ``ν`` (> 0).
        dt: Time step (> 0). Any value is stable: the integration is exact per mode.
        max_gain: Largest per-mode amplification :meth:`inverse_step` may apply (≥ 1). Modes
            with ``exp(ν k² dt) > max_gain`` are only partially inverted (see module docstring).

    Raises:
        ValueError: If a parameter is non-finite, non-positive, or ``n < 4``.

    Example:
        >>> import torch
        >>> phys = DiffusionPhysics(n=64, nu=0.01, dt=0.01)
        >>> s = phys.sample_fields(2, torch.Generator().manual_seed(0))
        >>> s1 = phys.step(s, torch.zeros_like(s))
        >>> torch.allclose(phys.inverse_step(s1, torch.zeros_like(s), s1), s, atol=1e-5)
        True
    """

    n: int = 64
    length: float = 1.0
    nu: float = 0.01
    dt: float = 0.01
    max_gain: float = 1e4
    _cache: FactorCache = field(default_factory=FactorCache, init=False, repr=False,
                                compare=False)
    _domain: PeriodicGrid = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_int("n (number of cells)", self.n, minimum=4)
        check_positive("length", self.length)
        check_positive("nu", self.nu)
        check_positive("dt", self.dt)
        check_max_gain(self.max_gain)
        object.__setattr__(self, "_domain", PeriodicGrid((self.n,), (self.length,)))

    @property
    def domain(self) -> PeriodicGrid:
        """The periodic 1-D grid of ``n`` cells on ``[0, length)``."""
        return self._domain

    def wavenumbers(self, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Angular wavenumbers ``k = 2π m / L`` of the ``N//2 + 1`` real FFT modes."""
        return self.domain.wavenumbers(device, dtype)[0]

    @property
    def grid(self) -> torch.Tensor:
        """Cell positions ``x_j = j L / N`` (float64, CPU), shape ``(N,)``."""
        return self.domain.positions()

"""Differentiable 1-D periodic diffusion with a source, integrated exactly in Fourier space.

The PDE is the forced heat equation on the periodic domain ``[0, L)``::

    ∂s/∂t = ν ∂²s/∂x² + f(x)

With the force held constant over one step of length ``dt``, every real Fourier mode ``k``
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

import math
import numbers
from dataclasses import dataclass, field

import torch

__all__ = ["DiffusionPhysics", "ExactDiffusionBase", "smooth_periodic_fields"]


def _check_finite_positive(name: str, value: float) -> None:
    if not (isinstance(value, numbers.Real) and not isinstance(value, bool)
            and math.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")


def smooth_periodic_fields(n: int, batch: int, generator: torch.Generator, *, max_mode: int,
                           amplitude: float, device: torch.device | str | None,
                           dtype: torch.dtype) -> torch.Tensor:
    """``(batch, n)`` fields ``amplitude · Σ_{m=1}^{max_mode} (a_m cos + b_m sin)(2π m x/L) / m``
    with ``a_m, b_m ~ N(0, 1)`` drawn from ``generator`` (on ``generator.device``); the sampler
    of every 1-D model.

    Raises:
        ValueError: If ``max_mode`` is not an int in ``[1, n/2)``.
    """
    if not isinstance(max_mode, numbers.Integral) or not 1 <= max_mode < n // 2:
        raise ValueError(f"max_mode must be an int in [1, {n // 2 - 1}] for n={n}, "
                         f"got {max_mode!r}.")
    coeffs = torch.randn(batch, max_mode, 2, generator=generator, device=generator.device,
                         dtype=torch.float64)
    m = torch.arange(1, max_mode + 1, device=generator.device, dtype=torch.float64)
    spec = torch.zeros(batch, n // 2 + 1, device=generator.device, dtype=torch.complex128)
    # irfft of X_m = (N/2)(a − i b) gives a cos + b sin (for 0 < m < N/2).
    spec[:, 1:max_mode + 1] = torch.complex(coeffs[..., 0], -coeffs[..., 1]) * (
        amplitude * n / 2 / m)
    out = torch.fft.irfft(spec, n=n, dim=-1)
    return out.to(device=device if device is not None else generator.device, dtype=dtype)


class ExactDiffusionBase:
    """Spectral machinery shared by the 1-D and 2-D exact diffusion integrators.

    A subclass provides the per-mode exponent ``ν |k|² dt`` (:meth:`_nu_k2_dt`, float64, shaped
    like its real FFT), the transforms :meth:`to_spectral` / :meth:`from_spectral`, the shape
    check :meth:`_check`, and the fields ``dt`` and ``max_gain``. Everything else — the cached
    factors ``d = e^{−ν|k|²dt}``, ``g = (1 − d)/(ν|k|²)``, the clamped inverse gain — and the
    ``step`` / ``inverse_step`` / ``force_for`` simulators are written once here.
    """

    dt: float
    max_gain: float
    _cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]]

    def _nu_k2_dt(self, device: torch.device | str | None) -> torch.Tensor:
        raise NotImplementedError

    def to_spectral(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def from_spectral(self, x_hat: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _check(self, name: str, x: torch.Tensor) -> None:
        raise NotImplementedError

    def _factors(self, device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        key = (device, dtype)
        cached = self._cache.get(key)
        if cached is None:
            # Computed once per (device, dtype) in float64, then cast: the step itself is then
            # only FFT → multiply-add → inverse FFT.
            x = self._nu_k2_dt(device)  # ν |k|² dt ≥ 0
            d = torch.exp(-x)
            # g = (1 − d)/(ν k²) = dt · (1 − e^{−x})/x, written with expm1 for small x; g_0 = dt.
            safe_x = torch.where(x > 0, x, torch.ones_like(x))
            g = torch.where(x > 0, -torch.expm1(-safe_x) / safe_x, torch.ones_like(x)) * self.dt
            gain = torch.exp(torch.clamp(x, max=math.log(self.max_gain)))
            cached = tuple(t.to(dtype) for t in (d, g, gain))
            self._cache[key] = cached
        return cached

    def spectral_factors(self, device: torch.device | str | None = None,
                         dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-mode decay ``d_k`` and force gain ``g_k``, shaped like the real FFT.

        One step is ``ŝ ← d ŝ + g f̂`` in the basis of :meth:`to_spectral`.
        """
        d, g, _ = self._factors(torch.device(device) if device is not None else
                                torch.device("cpu"), dtype)
        return d, g

    @property
    def max_inverse_gain(self) -> float:
        """Largest amplification :meth:`inverse_step` applies to any mode."""
        x_max = float(self._nu_k2_dt("cpu").max())
        return min(math.exp(min(x_max, 700.0)), self.max_gain)

    # --- forward and inverse simulators -----------------------------------------------------

    def step(self, state: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        """Advance ``state`` by one exact step of length ``dt`` under the constant ``force``.

        Args:
            state: Field ``s(t)``, shape ``(B, *grid)``.
            force: Source ``f``, same shape, held constant over the step.

        Returns:
            ``s(t + dt)``, same shape, dtype and device as ``state``.
        """
        self._check("state", state)
        self._check("force", force)
        d, g, _ = self._factors(state.device, state.dtype)
        # In place on the fresh spectra: 5 tensor operations instead of 6 and no temporaries
        # (at control-task sizes a step costs its number of operations; see docs/performance.md).
        # Autograd-safe: neither rfft nor the constant-factor multiply saves the spectrum.
        spec = self.to_spectral(state).mul_(d)
        return self.from_spectral(spec.addcmul_(g, self.to_spectral(force)))

    def free_step(self, state: torch.Tensor) -> torch.Tensor:
        """``P₀(s)``: one exact step without a source, ``ŝ ← d ŝ`` (3 tensor operations).

        The same operator as PhiFlow's ``diffuse.fourier``; :meth:`step` with a zero force gives
        the same values at about 1.7× the cost (it also transforms the force).
        """
        self._check("state", state)
        d = self._factors(state.device, state.dtype)[0]
        return self.from_spectral(self.to_spectral(state).mul_(d))

    def inverse_step(self, next_state: torch.Tensor, force: torch.Tensor,
                     state: torch.Tensor) -> torch.Tensor:
        """Local inverse of :meth:`step` with respect to the state, around ``state``.

        Returns ``s_prev`` with ``step(s_prev, force) ≈ next_state``: exact for every mode whose
        amplification ``exp(ν k² dt)`` is at most ``max_gain``; the others move from ``state``
        towards the exact preimage with gain ``max_gain`` (never inf/NaN for finite inputs).

        Args:
            next_state: The state to reach, shape ``(B, *grid)``.
            force: The force applied during the step, same shape.
            state: The current state the inverse is taken around, same shape.
        """
        self._check("next_state", next_state)
        self._check("force", force)
        self._check("state", state)
        d, g, gain = self._factors(state.device, state.dtype)
        residual = (self.to_spectral(next_state) - d * self.to_spectral(state)
                    - g * self.to_spectral(force))
        return state + self.from_spectral(gain * residual)

    def force_for(self, state: torch.Tensor, next_state: torch.Tensor) -> torch.Tensor:
        """The force that takes ``state`` exactly to ``next_state`` in one step.

        ``f̂ = (n̂ − d ŝ) / g``; ``g_k ∈ (0, dt]`` so this is well conditioned for every mode.
        """
        self._check("state", state)
        self._check("next_state", next_state)
        d, g, _ = self._factors(state.device, state.dtype)
        return self.from_spectral(
            (self.to_spectral(next_state) - d * self.to_spectral(state)) / g)


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
    _cache: dict[tuple[torch.device, torch.dtype], tuple[torch.Tensor, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if not isinstance(self.n, numbers.Integral) or isinstance(self.n, bool) or self.n < 4:
            raise ValueError(f"n (number of cells) must be an int ≥ 4, got {self.n!r}.")
        _check_finite_positive("length", self.length)
        _check_finite_positive("nu", self.nu)
        _check_finite_positive("dt", self.dt)
        _check_finite_positive("max_gain", self.max_gain)
        if self.max_gain < 1:
            raise ValueError(f"max_gain must be ≥ 1 (1 disables inversion), got {self.max_gain}.")

    # --- spectral factors -------------------------------------------------------------------

    def wavenumbers(self, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Angular wavenumbers ``k = 2π m / L`` of the ``N//2 + 1`` real FFT modes."""
        m = torch.arange(self.n // 2 + 1, device=device, dtype=torch.float64)
        return (2 * math.pi / self.length * m).to(dtype)

    def _nu_k2_dt(self, device: torch.device | str | None) -> torch.Tensor:
        return self.nu * self.wavenumbers(device) ** 2 * self.dt

    @property
    def grid(self) -> torch.Tensor:
        """Cell positions ``x_j = j L / N`` (float64, CPU), shape ``(N,)``."""
        return torch.arange(self.n, dtype=torch.float64) * (self.length / self.n)

    def to_spectral(self, x: torch.Tensor) -> torch.Tensor:
        """Real FFT along the last axis: ``(B, N)`` → complex ``(B, N//2 + 1)``."""
        return torch.fft.rfft(x, dim=-1)

    def from_spectral(self, x_hat: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`to_spectral`: complex ``(B, N//2 + 1)`` → real ``(B, N)``."""
        return torch.fft.irfft(x_hat, n=self.n, dim=-1)

    def _check(self, name: str, x: torch.Tensor) -> None:
        if x.ndim != 2 or x.shape[-1] != self.n:
            raise ValueError(
                f"{name} must have shape (B, {self.n}) (batch, cells), got {tuple(x.shape)}; "
                f"add a batch axis with x[None] for a single field."
            )
        if not x.is_floating_point():
            raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}.")

    # --- samplers -----------------------------------------------------------------------------

    def sample_fields(self, batch: int, generator: torch.Generator, *,
                      max_mode: int = 8, amplitude: float = 1.0,
                      device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Random smooth zero-mean periodic fields, shape ``(batch, N)``.

        ``s(x) = amplitude · Σ_{m=1}^{max_mode} (a_m cos(2π m x/L) + b_m sin(2π m x/L)) / m`` with
        ``a_m, b_m ~ N(0, 1)`` drawn from ``generator`` (on ``generator.device``), so the
        amplitude of mode ``m`` decays like ``1/m``.

        Raises:
            ValueError: If ``max_mode`` is not in ``[1, N/2)`` or ``batch < 1``.
        """
        if batch < 1:
            raise ValueError(f"batch must be ≥ 1, got {batch}.")
        return smooth_periodic_fields(self.n, batch, generator, max_mode=max_mode,
                                      amplitude=amplitude, device=device, dtype=dtype)

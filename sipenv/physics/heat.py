"""2-D periodic diffusion and the heat-equation inverse problem of the SIP paper.

``Diffusion2DPhysics`` is the 2-D sibling of ``DiffusionPhysics``:
the exact spectral integrator of ``∂s/∂t = ν ∇²s + f`` (the
``ExponentialIntegrator`` of the symbol ``λ = −ν|k|²``) on a periodic
``H × W`` grid (``PeriodicGrid``), batched over tensors ``(B, H, W)``.

``HeatPhysics`` is the single-step inverse problem of Holl, Koltun & Thuerey ("Scale-invariant
learning by physics inversion", NeurIPS 2022, § "Heat equation"): reconstruct the initial
temperature ``x`` from its image after diffusing for a time ``t``::

    y = P(x),     ŷ_k = x̂_k · exp(−(2π)² |k|² νt),     k in cycles per cell, unit cells.

With the published ``νt = 8`` on 64×64 cells, the highest modes are damped by ``e^{−158}``: the
exact inverse does not exist in floating point. ``HeatPhysics.inverse`` is the paper's
**noise-aware regularised inverse**: per frequency it decides from the residual's spectrum
whether the mode carries signal or only round-off noise, and applies a power ``a_k ∈ [−1, 1]`` of
the inverse kernel (1 = exact inverse, 0 = identity, −1 = one more forward diffusion).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from sipenv.physics.diffusion import ExactDiffusionBase, check_max_gain
from sipenv.physics.grid import (
    FactorCache,
    PeriodicGrid,
    as_dtype_of,
    check_grid_shape,
    planar_domain,
)
from sipenv.validation import check_int, check_nonnegative, check_positive

__all__ = ["Diffusion2DPhysics", "HeatPhysics"]


@dataclass(frozen=True)
class Diffusion2DPhysics(ExactDiffusionBase):
    """Exact spectral integrator of 2-D periodic diffusion with an additive source.

    Every real Fourier mode with angular wavenumber ``(k_y, k_x) = 2π (m / L_y, n / L_x)``
    evolves as ``ŝ ← d ŝ + g f̂`` with ``d = exp(−ν |k|² dt)`` and ``g = (1 − d)/(ν |k|²)``
    (``g_0 = dt``), exact for any ``dt``. Same contract as the 1-D model — ``step``,
    ``inverse_step`` (clamped at ``max_gain``), ``force_for`` — on tensors ``(B, H, W)``.

    Args:
        shape: Grid ``(H, W)`` (each ≥ 4).
        length: Domain size ``(L_y, L_x)``; default: unit cells, ``(H, W)``.
        nu: Diffusivity ``ν`` (> 0).
        dt: Time step (> 0).
        max_gain: Largest per-mode amplification ``inverse_step`` may apply (≥ 1).

    Example:
        >>> phys = Diffusion2DPhysics(shape=(16, 16), nu=1.0, dt=0.1)
        >>> s = torch.rand(2, 16, 16, dtype=torch.float64)
        >>> s1 = phys.step(s, torch.zeros_like(s))
        >>> torch.allclose(phys.inverse_step(s1, torch.zeros_like(s), s1), s)
        True
    """

    shape: tuple[int, int] = (64, 64)
    length: tuple[float, float] | None = None
    nu: float = 1.0
    dt: float = 1.0
    max_gain: float = 1e4
    _cache: FactorCache = field(default_factory=FactorCache, init=False, repr=False,
                                compare=False)
    _domain: PeriodicGrid = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        domain = planar_domain(self.shape, self.length)
        object.__setattr__(self, "shape", domain.shape)
        object.__setattr__(self, "length", domain.length)
        check_positive("nu", self.nu)
        check_positive("dt", self.dt)
        check_max_gain(self.max_gain)
        object.__setattr__(self, "_domain", domain)

    @property
    def domain(self) -> PeriodicGrid:
        """The periodic ``H × W`` grid."""
        return self._domain

    def wavenumbers_squared(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``|k|²`` (angular) of the real 2-D FFT modes, float64 of shape ``(H, W//2 + 1)``."""
        return self.domain.wavenumber_squared(device)


@dataclass(frozen=True)
class HeatPhysics:
    """The heat-equation inverse problem: ``y = P(x)``, diffusion of ``x`` for a time ``νt``.

    Args:
        shape: Grid ``(H, W)`` of unit cells (paper: 64×64).
        nu_t: Diffusivity times duration ``νt`` (paper: 8). The forward kernel is
            ``exp(−(2π)² |k|² νt)`` with ``k`` in cycles per cell.
        noise_rel: Relative round-off noise level ``σ = noise_rel · ‖r‖₂`` of the signal-vs-noise
            test (paper: 1e-6).
        signal_scale: Expected spectral amplitude of an undamped signal mode, ``E_k =
            signal_scale · exp(−(2π)²|k|²νt)`` (paper: 64 = √(H·W), the magnitude of an
            unnormalised FFT of an O(1) field).
        max_log_gain: Clamp of the log inverse kernel ``a_k (2π)²|k|²νt`` against overflow
            (paper: 88, about the float32 limit ``e^{88.7}``).

    Tensors are ``(B, H, W)``. ``forward`` follows the input's dtype and device;
    ``inverse`` computes in float64 (the paper's physics precision) and returns the dtype of
    its ``x``.

    Example:
        >>> phys = HeatPhysics(shape=(16, 16), nu_t=0.5)
        >>> x_true = phys.sample_initial(2, torch.Generator().manual_seed(0))
        >>> y_star = phys.forward(x_true)
        >>> x_tilde = phys.inverse(y_star, torch.zeros_like(x_true))
        >>> bool(phys.x_error(x_tilde, x_true).max() < phys.x_error(0 * x_true, x_true).min())
        True
    """

    shape: tuple[int, int] = (64, 64)
    nu_t: float = 8.0
    noise_rel: float = 1e-6
    signal_scale: float = 64.0
    max_log_gain: float = 88.0
    diffusion: Diffusion2DPhysics = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", check_grid_shape(self.shape, 2))
        for name in ("nu_t", "noise_rel", "signal_scale", "max_log_gain"):
            check_positive(name, getattr(self, name))
        # Unit cells: L = shape, ν = 1, dt = νt, so ν|k_ang|²dt = (2π)²|k_cycles|²νt.
        object.__setattr__(self, "diffusion", Diffusion2DPhysics(
            shape=self.shape, nu=1.0, dt=self.nu_t, max_gain=math.exp(self.max_log_gain)))

    # --- forward ------------------------------------------------------------------------------

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``y = P(x)``: exact diffusion for ``νt``. Shape ``(B, H, W)``, differentiable."""
        self.diffusion._check("x", x)
        d = self.diffusion.factors(x.device, x.dtype).decay
        return self.diffusion.from_spectral(d * self.diffusion.to_spectral(x))

    def loss(self, x: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
        """Per-sample ``½ ‖P(x) − y*‖²`` (sum over cells), shape ``(B,)``, in ``x``'s dtype."""
        return 0.5 * (self.forward(x) - as_dtype_of(y_target, x)).pow(2).sum(dim=(-2, -1))

    @staticmethod
    def x_error(x: torch.Tensor, x_true: torch.Tensor) -> torch.Tensor:
        """Per-sample ``Σ_cells |x − x*|`` (the paper's metric), shape ``(B,)``, in ``x``'s
        dtype."""
        return (x - as_dtype_of(x_true, x)).abs().sum(dim=(-2, -1))

    # --- noise-aware inverse --------------------------------------------------------------------

    def inverse_powers(self, residual_hat: torch.Tensor, residual_norm: torch.Tensor
                       ) -> torch.Tensor:
        """Per-mode power ``a_k ∈ [−1, 1]`` of the inverse kernel (float64).

        Args:
            residual_hat: Unnormalised real FFT ``A_k`` of the y-residual, ``(B, H, W//2+1)``.
            residual_norm: ``‖r‖₂`` per sample, ``(B,)``.

        The signal-vs-noise test of the paper: ``p_sig = ½ exp(−½(|A|/E)²)``, ``p_noise =
        ½ exp(−½(|A|/σ)²)``, ``P = p_sig / (p_sig + p_noise)``, ``a = 2(P − ½)`` where
        ``P ≤ 0.5`` or ``P ≥ 0.68``, else 0. ``P`` is evaluated as the logistic function of
        ``½(|A|/σ)² − ½(|A|/E)²`` so that it never forms ``0/0`` when both densities underflow.
        """
        x = self.diffusion._nu_k2_dt(residual_hat.device)  # (2π)²|k|²νt
        abs_a = residual_hat.abs().to(torch.float64)
        sigma = (self.noise_rel * residual_norm.to(torch.float64)).clamp_min(1e-300)
        noise_term = (abs_a / sigma[:, None, None]) ** 2
        # (|A| / E)² = exp(2 (log|A| − log E)), log E = log(scale) − x; clamped below overflow.
        log_ratio = torch.log(abs_a) - (math.log(self.signal_scale) - x)
        signal_term = torch.exp(torch.clamp(2 * log_ratio, max=700.0))
        p = torch.sigmoid(0.5 * noise_term - 0.5 * signal_term)
        a = 2 * (p - 0.5)
        return torch.where((p <= 0.5) | (p >= 0.68), a, torch.zeros_like(a))

    def inverse(self, y_target: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Noise-aware local inverse ``x̃ = x + IFFT(A_k K_k)`` around the guess ``x``.

        ``A_k`` is the spectrum of the residual ``r = y_target − P(x)``; ``K_k = exp(a_k x_k)``
        with ``x_k = (2π)²|k|²νt`` and ``a_k`` from ``inverse_powers``, the log kernel
        clamped at ``max_log_gain``. Modes detectably above round-off get the exact inverse, modes
        lost in noise are left alone or damped. Never inf/NaN for finite inputs.

        Args:
            y_target: The output to reach (for SIP: ``y + η (y* − y)``), ``(B, H, W)``.
            x: The current guess, ``(B, H, W)``.

        Returns:
            ``x̃`` in the dtype of ``x``, detached.
        """
        self.diffusion._check("y_target", y_target)
        self.diffusion._check("x", x)
        if y_target.shape != x.shape:
            raise ValueError(f"y_target and x must have the same shape, got "
                             f"{tuple(y_target.shape)} and {tuple(x.shape)}.")
        with torch.no_grad():
            x64 = x.detach().to(torch.float64)
            r = y_target.detach().to(torch.float64) - self.forward(x64)
            a_hat = self.diffusion.to_spectral(r)
            a = self.inverse_powers(a_hat, r.flatten(1).norm(dim=1))
            log_k = torch.clamp(a * self.diffusion._nu_k2_dt(x.device), max=self.max_log_gain)
            dx = self.diffusion.from_spectral(a_hat * torch.exp(log_k))
            return (x64 + dx).to(x.dtype)

    # --- data -------------------------------------------------------------------------------------

    def sample_initial(self, batch: int, generator: torch.Generator, *, min_rects: int = 4,
                       max_rects: int = 10, max_half_size: float = 10.0,
                       centre_fraction: float = 0.8, device: torch.device | str | None = None,
                       dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Initial temperatures: the sum of ``min_rects … max_rects`` hot unit rectangles.

        Per sample the count is uniform in ``[min_rects, max_rects]``; each rectangle's centre is
        uniform in the central ``centre_fraction`` of the domain and its half-sizes uniform in
        ``[0, max_half_size]`` cells per axis; cell ``(i, j)`` (centre ``(i + ½, j + ½)``) is
        inside where ``|i + ½ − c_y| ≤ h_y`` and ``|j + ½ − c_x| ≤ h_x``; each rectangle adds 1
        (overlaps add up; rectangles are clipped at the domain edge). Drawn from ``generator``
        (on ``generator.device``), so a seed fixes the batch.

        Returns:
            ``(batch, H, W)`` tensor.

        Raises:
            ValueError: If ``batch < 1``, not ``1 ≤ min_rects ≤ max_rects``, ``centre_fraction``
                is not in ``(0, 1]`` or ``max_half_size < 0``.
        """
        batch = check_int("batch", batch, minimum=1)
        min_rects = check_int("min_rects", min_rects, minimum=1)
        max_rects = check_int("max_rects", max_rects, minimum=min_rects,
                              hint="(need 1 ≤ min_rects ≤ max_rects)")
        check_positive("centre_fraction", centre_fraction)
        if centre_fraction > 1:
            raise ValueError(f"centre_fraction must be in (0, 1], got {centre_fraction!r}.")
        check_nonnegative("max_half_size", max_half_size)
        h, w = self.shape
        gen_dev = generator.device
        size = torch.tensor([h, w], device=gen_dev, dtype=torch.float64)
        count = torch.randint(min_rects, max_rects + 1, (batch,), generator=generator,
                              device=gen_dev)
        u = torch.rand(batch, max_rects, 4, generator=generator, device=gen_dev,
                       dtype=torch.float64)
        centre = ((1 - centre_fraction) / 2 + centre_fraction * u[..., :2]) * size  # (B, R, 2)
        half = max_half_size * u[..., 2:]  # (B, R, 2)
        active = torch.arange(max_rects, device=gen_dev)[None, :] < count[:, None]  # (B, R)
        iy = torch.arange(h, device=gen_dev, dtype=torch.float64) + 0.5
        ix = torch.arange(w, device=gen_dev, dtype=torch.float64) + 0.5
        in_y = (iy[None, None, :] - centre[..., 0:1]).abs() <= half[..., 0:1]  # (B, R, H)
        in_x = (ix[None, None, :] - centre[..., 1:2]).abs() <= half[..., 1:2]  # (B, R, W)
        inside = (in_y[..., :, None] & in_x[..., None, :]) & active[..., None, None]
        out = inside.to(torch.float64).sum(dim=1)
        return out.to(device=device if device is not None else gen_dev, dtype=dtype)

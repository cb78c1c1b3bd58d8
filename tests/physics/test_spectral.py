"""ExponentialIntegrator for symbols other than diffusion, against closed forms (float64).

Two models are built here from the block alone — a grid and a symbol:

* damped, dispersive waves ``λ(k) = −a − b k² + i c k`` (1-D; complex factors), whose mode
  ``cos(k x)`` evolves as ``e^{−(a + b k²) t} cos(k x + c k t)``;
* a Kuramoto–Sivashinsky-like linear part ``λ(k) = k² − k⁴`` (growing low modes, strongly damped
  high modes, ``λ = 0`` at ``k = 1``), where ``max_gain`` clamps the inverse;
* 2-D advection–diffusion ``λ = −ν|k|² − i c k_x``: diffusion plus an exact translation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

import pytest
import torch

from sipenv.physics import (
    Diffusion2DPhysics,
    DiffusionPhysics,
    ExponentialIntegrator,
    FactorCache,
    PeriodicGrid,
    SpectralLinearPhysics,
)
from sipenv.physics.spectral import (
    SemilinearExponentialIntegrator,
    exponential_factors,
    phi1,
)

F64 = torch.float64


@dataclass(frozen=True)
class OnALine:
    """The grid of the 1-D test models: ``n`` cells on ``[0, length)``."""

    n: int = 32
    length: float = 2 * math.pi
    _cache: FactorCache = field(default_factory=FactorCache, init=False, compare=False)

    @property
    def domain(self) -> PeriodicGrid:
        return PeriodicGrid((self.n,), (self.length,))


@dataclass(frozen=True)
class DampedWaves(OnALine, ExponentialIntegrator):
    a: float = 0.3
    b: float = 0.05
    c: float = 1.7
    dt: float = 0.2
    max_gain: float = 1e4

    def symbol(self, device: torch.device | str | None = None) -> torch.Tensor:
        (k,) = self.domain.wavenumbers(device)
        return torch.complex(-self.a - self.b * k**2, self.c * k)


@dataclass(frozen=True)
class KSLinear(OnALine, ExponentialIntegrator):
    """On [0, 2π): k = m, so λ = 0 at m = 0 and m = 1."""

    dt: float = 0.05
    max_gain: float = 100.0

    def symbol(self, device: torch.device | str | None = None) -> torch.Tensor:
        k2 = self.domain.wavenumber_squared(device)
        return k2 - k2**2


@dataclass(frozen=True)
class OnAPlane:
    """The grid of the 2-D test models: ``shape`` cells on a box of side lengths ``length``."""

    shape: tuple[int, int] = (8, 16)
    length: tuple[float, float] = (1.0, 2.0)
    _cache: FactorCache = field(default_factory=FactorCache, init=False, compare=False)

    @property
    def domain(self) -> PeriodicGrid:
        return PeriodicGrid(self.shape, self.length)


@dataclass(frozen=True)
class AdvectionDiffusion2D(OnAPlane, ExponentialIntegrator):
    nu: float = 0.01
    c: float = 0.4
    dt: float = 0.25
    max_gain: float = 1e4

    def symbol(self, device: torch.device | str | None = None) -> torch.Tensor:
        _, kx = self.domain.wavenumbers(device)
        return torch.complex(-self.nu * self.domain.wavenumber_squared(device),
                             (-self.c * kx).expand(*self.domain.spectral_shape))


def _rand(shape: tuple[int, ...], seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


# --- closed forms -------------------------------------------------------------------------------


def test_damped_waves_evolve_every_mode_by_exp_lambda_t() -> None:
    phys = DampedWaves()
    x = phys.domain.positions()
    for m in (0, 1, 3, 7):
        k = 2 * math.pi * m / phys.length
        s = torch.cos(k * x)[None]
        for _ in range(3):  # three steps: t = 3 dt
            s = phys.free_step(s)
        t = 3 * phys.dt
        expected = math.exp(-(phys.a + phys.b * k**2) * t) * torch.cos(k * x + phys.c * k * t)
        torch.testing.assert_close(s[0], expected, atol=1e-13, rtol=0)


def test_damped_waves_constant_force_matches_the_variation_of_constants_formula() -> None:
    phys = DampedWaves()
    x = phys.domain.positions()
    m, k = 2, 2.0  # L = 2π
    lam = complex(-phys.a - phys.b * k**2, phys.c * k)
    s0, f = torch.sin(k * x)[None], 0.5 * torch.cos(k * x)[None]
    # s(t) = Re[(e^{λt} ŝ₀ + (e^{λt} − 1)/λ f̂) e^{ikx}] with ŝ₀ = −i, f̂ = ½ (per e^{ikx}).
    e = complex(math.exp(lam.real * phys.dt) * math.cos(lam.imag * phys.dt),
                math.exp(lam.real * phys.dt) * math.sin(lam.imag * phys.dt))
    coef = e * (-1j) + (e - 1) / lam * 0.5
    expected = coef.real * torch.cos(m * x) - coef.imag * torch.sin(m * x)
    torch.testing.assert_close(phys.step(s0, f)[0], expected, atol=1e-13, rtol=0)


def test_complex_factors_are_exact_and_follow_the_dtype() -> None:
    phys = DampedWaves()
    f = phys.factors(dtype=F64)
    (k,) = phys.domain.wavenumbers()
    lam = torch.complex(-phys.a - phys.b * k**2, phys.c * k)
    lam[-1] = lam[-1].real.clone()  # Nyquist: the odd term i c k vanishes for a real operator
    torch.testing.assert_close(f.decay, torch.exp(lam * phys.dt))
    torch.testing.assert_close(f.forcing, (torch.exp(lam * phys.dt) - 1) / lam)
    torch.testing.assert_close(f.inverse_gain * f.decay, torch.ones_like(f.decay))
    assert phys.factors(dtype=torch.float32).decay.dtype == torch.complex64
    s = _rand((2, 32), 0).float()
    assert phys.step(s, s).dtype == torch.float32


def test_ks_symbol_has_a_zero_at_k_1_where_g_is_dt() -> None:
    phys = KSLinear()
    f = phys.factors(dtype=F64)
    k = torch.arange(17, dtype=F64)
    lam = k**2 - k**4
    torch.testing.assert_close(f.decay, torch.exp(lam * phys.dt))
    assert f.forcing[0] == f.forcing[1] == phys.dt  # λ = 0: g = dt exactly
    torch.testing.assert_close(f.forcing[2:], torch.expm1(lam[2:] * phys.dt) / lam[2:])
    gain = torch.minimum(torch.exp(-lam * phys.dt), torch.tensor(phys.max_gain, dtype=F64))
    torch.testing.assert_close(f.inverse_gain, gain)
    assert phys.max_inverse_gain == phys.max_gain  # high modes are clamped


def test_phi1_is_accurate_near_zero_and_for_complex_arguments() -> None:
    z = torch.tensor([0.0, 1e-12, -1e-9, 1e-3, -2.0, 30.0], dtype=F64)
    series = 1 + z / 2 + z**2 / 6 + z**3 / 24
    torch.testing.assert_close(phi1(z)[:3], series[:3], rtol=1e-15, atol=0)
    torch.testing.assert_close(phi1(z)[3], series[3], rtol=1e-13, atol=0)
    torch.testing.assert_close(phi1(z)[4:], torch.expm1(z[4:]) / z[4:])
    zc = torch.tensor([1e-10j, 0.3 + 0.5j, 0j], dtype=torch.complex128)
    torch.testing.assert_close(phi1(zc), torch.tensor(
        [1 + 0.5e-10j, (math.e ** (0.3 + 0.5j) - 1) / (0.3 + 0.5j), 1], dtype=torch.complex128))
    f = exponential_factors(torch.tensor([0.0, -50.0], dtype=F64), dt=0.1, max_gain=10.0)
    torch.testing.assert_close(f.inverse_gain, torch.tensor([1.0, 10.0], dtype=F64))


def test_2d_advection_diffusion_translates_and_decays() -> None:
    phys = AdvectionDiffusion2D()
    y, x = phys.domain.coordinates()
    kx, ky = 2 * math.pi * 2 / 2.0, 2 * math.pi * 1 / 1.0
    s = (torch.cos(kx * x) * torch.sin(ky * y))[None]
    out = phys.free_step(s)
    decay = math.exp(-phys.nu * (kx**2 + ky**2) * phys.dt)
    expected = decay * torch.cos(kx * (x - phys.c * phys.dt)) * torch.sin(ky * y)
    torch.testing.assert_close(out[0], expected, atol=1e-13, rtol=0)


# --- inverse simulators ---------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [DampedWaves, KSLinear, AdvectionDiffusion2D])
def test_force_for_and_inverse_step_round_trip(cls: type[ExponentialIntegrator]) -> None:
    phys = cls()
    shape = (3, *phys.domain.shape)
    s, f = _rand(shape, 1), _rand(shape, 2)
    nxt = phys.step(s, f)
    torch.testing.assert_close(phys.step(s, phys.force_for(s, nxt)), nxt)
    # Linearised at the true state the local inverse is exact, clamped modes included.
    torch.testing.assert_close(phys.inverse_step(nxt, f, s), s)


def test_ks_inverse_from_the_next_state_is_exact_below_max_gain_and_clamped_above() -> None:
    phys = KSLinear()
    s, f = _rand((2, 32), 3), _rand((2, 32), 4)
    nxt = phys.step(s, f)
    back = phys.inverse_step(nxt, f, nxt)
    k = torch.arange(17, dtype=F64)
    lam = k**2 - k**4
    exact = torch.exp(-lam * phys.dt) <= phys.max_gain
    s_hat, back_hat, n_hat = (torch.fft.rfft(v) for v in (s, back, nxt))
    torch.testing.assert_close(back_hat[:, exact], s_hat[:, exact])
    # Clamped modes move from the next state towards the preimage by max_gain exactly.
    moved = (back_hat - n_hat)[:, ~exact] / (s_hat - n_hat)[:, ~exact]
    expected = phys.max_gain * torch.exp(lam[~exact] * phys.dt)
    torch.testing.assert_close(moved, expected.to(moved.dtype).expand_as(moved))
    assert torch.isfinite(back).all()


@pytest.mark.parametrize("cls", [DampedWaves, KSLinear])
def test_gradcheck_step_inverse_and_force_for(cls: type[ExponentialIntegrator]) -> None:
    phys = cls(n=8)  # type: ignore[call-arg]
    s, f, g = (_rand((2, 8), i).requires_grad_() for i in (5, 6, 7))
    assert torch.autograd.gradcheck(phys.step, (s, f))
    assert torch.autograd.gradcheck(phys.inverse_step, (s, f, g))
    assert torch.autograd.gradcheck(phys.force_for, (s, f))


def test_inputs_are_not_modified() -> None:
    phys = DampedWaves()
    s, f = _rand((2, 32), 8), _rand((2, 32), 9)
    s0, f0 = s.clone(), f.clone()
    phys.inverse_step(phys.step(s, f), f, phys.free_step(s))
    phys.force_for(s, f)
    assert torch.equal(s, s0) and torch.equal(f, f0)


# --- diffusion is an instance ---------------------------------------------------------------------


def test_diffusion_models_are_exponential_integrators_of_minus_nu_k2() -> None:
    for phys in (DiffusionPhysics(n=16, nu=0.3), Diffusion2DPhysics(shape=(8, 8), nu=0.5)):
        assert isinstance(phys, ExponentialIntegrator)
        torch.testing.assert_close(phys.symbol(), -phys.nu * phys.domain.wavenumber_squared())
    assert isinstance(DiffusionPhysics(), SpectralLinearPhysics)
    assert isinstance(DampedWaves(), SpectralLinearPhysics)  # a grid and a symbol suffice


def test_complex_symbols_are_made_real_operator_compatible_at_nyquist() -> None:
    grid = PeriodicGrid((6, 8))
    ky, kx = grid.wavenumbers()
    lam = torch.complex(-grid.wavenumber_squared(), (ky + 2 * kx).expand(6, 5))
    real = grid.real_symbol(lam)
    assert torch.equal(real[:, 1:4], lam[:, 1:4])  # columns holding one of ±k: unchanged
    for col in (0, 4):  # columns holding both k and −k: λ(−k) = conj λ(k)
        torch.testing.assert_close(real[[0, 5, 4, 3, 2, 1], col], real[:, col].conj())
    assert float(real[3, 0].imag) == 0.0  # (Nyquist, 0): its own partner
    assert torch.equal(grid.real_symbol(lam.real), lam.real)


# --- semi-linear models and vector fields ---------------------------------------------------------


@dataclass(frozen=True)
class KSToy(OnALine, SemilinearExponentialIntegrator):
    """Kuramoto–Sivashinsky on [0, 8π): λ = k² − k⁴, N(u) = −½ ∂ₓ(u²) (2/3-dealiased)."""

    length: float = 8 * math.pi
    dt: float = 0.05
    max_gain: float = 1e4
    inverse_iterations: int = 30

    def symbol(self, device: torch.device | str | None = None) -> torch.Tensor:
        k2 = self.domain.wavenumber_squared(device)
        return k2 - k2**2

    def nonlinear(self, state: torch.Tensor) -> torch.Tensor:
        (k,) = self.domain.wavenumbers(state.device, state.dtype)
        keep = self.domain.dealias_mask(device=state.device)
        spec = torch.where(keep, -0.5j * k * self.to_spectral(state * state), 0)
        return self.from_spectral(spec)


def _ks_reference_step(u: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    """ETD1 written out: û' = e^{λdt} û + (e^{λdt} − 1)/λ (N̂ + f̂), λ = k² − k⁴, k = m/4."""
    k = torch.arange(17, dtype=F64) / 4
    lam = k**2 - k**4
    e = torch.exp(lam * 0.05)
    g = torch.where(lam != 0, (e - 1) / torch.where(lam != 0, lam, 1), 0.05)
    n_hat = -0.5j * k * torch.fft.rfft(u * u)
    n_hat[..., 11:] = 0  # |m| < 32/3
    return torch.fft.irfft(e * torch.fft.rfft(u) + g * (n_hat + torch.fft.rfft(f)), n=32)


def _ks_state(batch: int, seed: int, amplitude: float = 0.5) -> torch.Tensor:
    return KSToy().sample_fields(batch, torch.Generator().manual_seed(seed), max_mode=4,
                                 amplitude=amplitude, dtype=F64)


def test_semilinear_step_is_etd1_and_force_for_is_exact() -> None:
    phys = KSToy()
    s, f = _ks_state(3, 0), _ks_state(3, 1)
    nxt = phys.step(s, f)
    torch.testing.assert_close(nxt, _ks_reference_step(s, f), atol=1e-13, rtol=0)
    torch.testing.assert_close(phys.free_step(s) + phys.forced_part(f), nxt)
    torch.testing.assert_close(phys.step(s, phys.force_for(s, nxt)), nxt)


def test_semilinear_inverse_step_recovers_the_state_by_defect_correction() -> None:
    phys = KSToy()
    s, f = _ks_state(4, 2), _ks_state(4, 3)
    nxt = phys.step(s, f)
    back = phys.inverse_step(nxt, f, nxt)
    assert float(((back - s).norm(dim=-1) / s.norm(dim=-1)).max()) < 1e-8
    # Never worse than the start, and finite, even when it cannot converge.
    wild = 1e3 * _ks_state(4, 4)
    out = phys.inverse_step(wild, f, nxt)
    assert torch.isfinite(out).all()
    res_out = (phys.step(out, f) - wild).norm(dim=-1)
    res_start = (phys.step(nxt, f) - wild).norm(dim=-1)
    assert bool((res_out <= res_start).all())


def test_semilinear_gradcheck() -> None:
    phys = KSToy(n=16, length=4 * math.pi)
    s, f = (_ks_state(2, i)[:, ::2].contiguous().requires_grad_() for i in (5, 6))
    assert torch.autograd.gradcheck(phys.step, (s, f))
    assert torch.autograd.gradcheck(phys.force_for, (s, f))


@dataclass(frozen=True)
class VectorDiffusion2D(OnAPlane, ExponentialIntegrator):
    """A 2-D velocity ``(B, 2, H, W)`` diffused per component: ``components = 2``."""

    components: ClassVar[int | None] = 2
    shape: tuple[int, int] = (8, 12)
    length: tuple[float, float] = (8.0, 12.0)
    nu: float = 0.5
    dt: float = 0.3
    max_gain: float = 1e4

    def symbol(self, device: torch.device | str | None = None) -> torch.Tensor:
        return -self.nu * self.domain.wavenumber_squared(device)


def test_vector_fields_step_each_component_like_the_scalar_model() -> None:
    phys, scalar = VectorDiffusion2D(), Diffusion2DPhysics(shape=(8, 12), nu=0.5, dt=0.3)
    v, f = _rand((3, 2, 8, 12), 10), _rand((3, 2, 8, 12), 11)
    out = phys.step(v, f)
    for c in range(2):
        torch.testing.assert_close(out[:, c], scalar.step(v[:, c], f[:, c]))
    torch.testing.assert_close(phys.inverse_step(out, f, out), v)
    with pytest.raises(ValueError, match=r"\(B, 2, 8, 12\) \(batch, components, rows"):
        phys.step(v[:, 0], f[:, 0])

"""2-D exact diffusion and the heat-equation inverse problem (sipenv.physics.heat)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sipenv.physics import Diffusion2DPhysics, DiffusionPhysics, HeatPhysics

F64 = torch.float64


def _mode(shape: tuple[int, int], m: int, n: int, phase: float = 0.3) -> torch.Tensor:
    """``cos(2π (m i / H + n j / W) + phase)`` on the cell grid, shape ``(1, H, W)``."""
    h, w = shape
    i = torch.arange(h, dtype=F64)[:, None]
    j = torch.arange(w, dtype=F64)[None, :]
    return torch.cos(2 * math.pi * (m * i / h + n * j / w) + phase)[None]


# --- 2-D diffusion --------------------------------------------------------------------------------

@pytest.mark.parametrize(("m", "n"), [(0, 0), (1, 0), (0, 3), (2, 5), (7, 7), (16, 8)])
def test_heat_forward_matches_analytic_mode_decay(m: int, n: int) -> None:
    phys = HeatPhysics(shape=(32, 48), nu_t=0.3)
    x = _mode((32, 48), m, n)
    decay = math.exp(-phys.nu_t * (2 * math.pi) ** 2 * ((m / 32) ** 2 + (n / 48) ** 2))
    torch.testing.assert_close(phys.forward(x), decay * x, atol=1e-12, rtol=0)


def test_diffusion2d_step_with_source_matches_analytic() -> None:
    # ∂s/∂t = ν∇²s + f with f ∝ a single mode: s(dt) = d s0 + (1 − d)/(ν|k|²) f.
    shape, nu, dt = (16, 16), 0.05, 0.7
    phys = Diffusion2DPhysics(shape=shape, length=(2.0, 3.0), nu=nu, dt=dt)
    h, w = shape
    i = torch.arange(h, dtype=F64)[:, None] * (2.0 / h)
    j = torch.arange(w, dtype=F64)[None, :] * (3.0 / w)
    k2 = (2 * math.pi * 3 / 2.0) ** 2 + (2 * math.pi * 2 / 3.0) ** 2
    mode = torch.sin(2 * math.pi * (3 * i / 2.0 + 2 * j / 3.0))[None]
    s0, f = 1.5 * mode, -0.4 * mode
    d = math.exp(-nu * k2 * dt)
    expected = d * s0 + (1 - d) / (nu * k2) * f
    torch.testing.assert_close(phys.step(s0, f), expected, atol=1e-12, rtol=0)
    # The constant mode only integrates the source: s += dt · f.
    ones = torch.ones(1, h, w, dtype=F64)
    torch.testing.assert_close(phys.step(ones, 2 * ones), ones + 2 * dt * ones)


def test_diffusion2d_round_trips() -> None:
    phys = Diffusion2DPhysics(shape=(12, 20), nu=0.5, dt=0.02)
    gen = torch.Generator().manual_seed(0)
    s = torch.randn(3, 12, 20, generator=gen, dtype=F64)
    f = torch.randn(3, 12, 20, generator=gen, dtype=F64)
    s1 = phys.step(s, f)
    assert phys.max_inverse_gain < phys.max_gain  # nothing clamped: the inverse is exact
    torch.testing.assert_close(phys.inverse_step(s1, f, torch.zeros_like(s)), s)
    torch.testing.assert_close(phys.force_for(s, s1), f)


def test_diffusion2d_shares_the_1d_spectral_factors() -> None:
    # A field constant along the rows is a 1-D problem: both models must agree.
    one = DiffusionPhysics(n=16, length=1.0, nu=0.01, dt=0.3)
    two = Diffusion2DPhysics(shape=(4, 16), length=(1.0, 1.0), nu=0.01, dt=0.3)
    gen = torch.Generator().manual_seed(1)
    s = torch.randn(2, 16, generator=gen, dtype=F64)
    f = torch.randn(2, 16, generator=gen, dtype=F64)
    out2 = two.step(s[:, None].expand(2, 4, 16), f[:, None].expand(2, 4, 16))
    torch.testing.assert_close(out2, one.step(s, f)[:, None].expand(2, 4, 16))


def test_diffusion2d_gradcheck() -> None:
    phys = Diffusion2DPhysics(shape=(6, 8), nu=0.3, dt=0.1)
    gen = torch.Generator().manual_seed(2)
    s = torch.randn(2, 6, 8, generator=gen, dtype=F64, requires_grad=True)
    f = torch.randn(2, 6, 8, generator=gen, dtype=F64, requires_grad=True)
    assert torch.autograd.gradcheck(phys.step, (s, f))


def test_heat_loss_gradcheck() -> None:
    phys = HeatPhysics(shape=(8, 8), nu_t=0.05)
    gen = torch.Generator().manual_seed(3)
    x = torch.randn(2, 8, 8, generator=gen, dtype=F64, requires_grad=True)
    y = torch.randn(2, 8, 8, generator=gen, dtype=F64)
    assert torch.autograd.gradcheck(lambda v: phys.loss(v, y), (x,))


@pytest.mark.parametrize("kwargs", [
    {"shape": (3, 8)}, {"shape": (8,)}, {"shape": (8.0, 8)}, {"nu": 0.0},
    {"dt": math.inf}, {"max_gain": 0.5}, {"length": (1.0, -1.0)},
])
def test_diffusion2d_rejects_invalid_configuration(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        Diffusion2DPhysics(**kwargs)  # type: ignore[arg-type]


def test_diffusion2d_rejects_wrong_shapes_with_a_fix() -> None:
    phys = Diffusion2DPhysics(shape=(8, 8))
    with pytest.raises(ValueError, match=r"x\[None\]"):
        phys.step(torch.zeros(8, 8), torch.zeros(8, 8))
    with pytest.raises(ValueError, match="floating-point"):
        phys.step(torch.zeros(1, 8, 8, dtype=torch.int64), torch.zeros(1, 8, 8))


# --- noise-aware inverse -------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs", [{"nu_t": 0.0}, {"noise_rel": -1.0}, {"shape": (64, 2)},
                                    {"max_log_gain": math.nan}])
def test_heat_rejects_invalid_configuration(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        HeatPhysics(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("scale", [0.0, 1e-12, 1e-9, 1e-6, 1e-3, 1.0, 1e3, 1e6])
def test_inverse_is_finite_for_residuals_over_18_orders(scale: float) -> None:
    phys = HeatPhysics()
    gen = torch.Generator().manual_seed(4)
    x = phys.sample_initial(4, gen)
    y = phys.forward(x)
    for noise in (torch.randn(4, 64, 64, generator=gen, dtype=F64),  # white: every mode
                  phys.forward(torch.randn(4, 64, 64, generator=gen, dtype=F64))):  # smooth
        x_tilde = phys.inverse(y + scale * noise, torch.zeros_like(x))
        assert torch.isfinite(x_tilde).all()
        a = phys.inverse_powers(torch.fft.rfft2(y + scale * noise), torch.ones(4, dtype=F64))
        assert torch.isfinite(a).all() and a.min() >= -1 and a.max() <= 1


def test_inverse_is_identity_for_a_zero_residual() -> None:
    phys = HeatPhysics(shape=(16, 16), nu_t=1.0)
    x = phys.sample_initial(2, torch.Generator().manual_seed(5))
    torch.testing.assert_close(phys.inverse(phys.forward(x), x), x)


def test_inverse_recovers_the_noise_free_low_modes_exactly() -> None:
    phys = HeatPhysics()  # 64×64, νt = 8: mode 4 is damped by e^{−1.2}, mode 6 by e^{−2.8}
    gen = torch.Generator().manual_seed(6)
    x_true = torch.zeros(2, 64, 64, dtype=F64)
    for m in range(0, 5):
        for n in range(0, 5):
            x_true += torch.randn((), generator=gen, dtype=F64) * _mode((64, 64), m, n,
                                                                        phase=0.1 * (m + n))
    for guess in (torch.zeros_like(x_true), torch.randn(2, 64, 64, generator=gen, dtype=F64)):
        x_tilde = phys.inverse(phys.forward(x_true), guess)
        # Compare the modes |m|, |n| ≤ 4 (what x* is made of); the guess's high modes are below
        # round-off after diffusion and rightly left as they were.
        diff = torch.fft.fft2(x_tilde - x_true)
        low = torch.cat([diff[:, :5], diff[:, -4:]], dim=1)
        low = torch.cat([low[:, :, :5], low[:, :, -4:]], dim=2)
        err = low.abs().max() / torch.fft.fft2(x_true).abs().max()
        assert err < 1e-8


def test_inverse_uses_exact_inverse_above_noise_and_damps_pure_noise() -> None:
    phys = HeatPhysics()
    k = phys.diffusion._nu_k2_dt("cpu")
    norm = torch.ones(1, dtype=F64)
    # A residual far above the noise floor on a low mode → a ≈ 1 (exact inverse) there.
    big = torch.zeros(1, 64, 33, dtype=torch.complex128)
    big[0, 1, 1] = 1.0
    assert phys.inverse_powers(big, norm)[0, 1, 1] > 0.99
    # Round-off-sized residual on a mode whose expected signal is far smaller → a = −1 (damp).
    tiny = torch.zeros(1, 64, 33, dtype=torch.complex128)
    tiny[0, 30, 30] = 1e-7
    assert k[30, 30] > 100
    assert phys.inverse_powers(tiny, norm)[0, 30, 30] < -0.99


def test_sip_target_improves_x_error_where_a_gradient_step_barely_does() -> None:
    phys = HeatPhysics()
    x_true = phys.sample_initial(1, torch.Generator().manual_seed(7))
    y_star = phys.forward(x_true)
    x0 = torch.full_like(x_true, float(x_true.mean()))  # right mean, no structure
    start = float(phys.x_error(x0, x_true))
    sip = float(phys.x_error(phys.inverse(y_star, x0), x_true)) / start
    # The loss Hessian PᵀP has eigenvalues in (0, 1]: steps up to 2 are stable; take the best.
    x = x0.clone().requires_grad_(True)
    phys.loss(x, y_star).sum().backward()
    assert x.grad is not None
    grad = min(float(phys.x_error(x0 - lr * x.grad, x_true)) / start
               for lr in (0.25, 0.5, 1.0, 1.5, 1.99))
    assert sip < 0.35
    assert grad > 0.55
    # From zero (wrong mean too) the gradient step does not help at all; SIP still does.
    zero = torch.zeros_like(x_true)
    z = zero.clone().requires_grad_(True)
    phys.loss(z, y_star).sum().backward()
    assert z.grad is not None
    base = float(phys.x_error(zero, x_true))
    assert float(phys.x_error(zero - z.grad, x_true)) / base > 0.95
    assert float(phys.x_error(phys.inverse(y_star, zero), x_true)) / base < 0.5


def test_inverse_is_float32_safe_and_keeps_the_dtype() -> None:
    phys = HeatPhysics()
    x_true = phys.sample_initial(2, torch.Generator().manual_seed(8), dtype=torch.float32)
    y = phys.forward(x_true.double())
    out = phys.inverse(y, torch.zeros_like(x_true))
    assert out.dtype == torch.float32 and torch.isfinite(out).all()


def test_sample_initial_is_seeded_and_matches_the_published_statistics() -> None:
    phys = HeatPhysics()
    a = phys.sample_initial(200, torch.Generator().manual_seed(9))
    b = phys.sample_initial(200, torch.Generator().manual_seed(9))
    torch.testing.assert_close(a, b)
    assert a.shape == (200, 64, 64) and a.dtype == F64
    assert (a >= 0).all() and (a == a.round()).all() and a.max() <= 10
    # Centres in the central 80 %: the outer rows/columns are hot only through half-sizes.
    assert a[:, :2].sum() < a[:, 30:34].sum()
    # Mean area per rectangle ≈ E[(2h)²] with h ~ U[0, 10] per axis → (2·5)² = 100 cells; 7 of
    # them on average (clipped and rounded to cells: a bit less).
    mean_mass = float(a.sum(dim=(1, 2)).mean())
    assert 450 < mean_mass < 800
    with pytest.raises(ValueError):
        phys.sample_initial(0, torch.Generator())
    with pytest.raises(ValueError):
        phys.sample_initial(1, torch.Generator(), min_rects=5, max_rects=4)


# --- properties over the whole valid range (the 2-D counterpart of the reliability suite) --------

@settings(max_examples=60, deadline=None)
@given(h=st.integers(4, 40), w=st.integers(4, 40), log_nu=st.floats(-4, 1),
       log_dt=st.floats(-4, 1), log_gain=st.floats(0, 6), seed=st.integers(0, 2**31),
       log_amp=st.floats(-6, 6))
def test_diffusion2d_round_trip_and_mean_over_the_valid_range(
        h: int, w: int, log_nu: float, log_dt: float, log_gain: float, seed: int,
        log_amp: float) -> None:
    phys = Diffusion2DPhysics(shape=(h, w), nu=10**log_nu, dt=10**log_dt, max_gain=10**log_gain)
    gen = torch.Generator().manual_seed(seed)
    s = 10**log_amp * torch.randn(2, h, w, generator=gen, dtype=F64)
    f = torch.randn(2, h, w, generator=gen, dtype=F64)
    nxt = phys.step(s, f)
    assert torch.isfinite(nxt).all()
    # Mean conservation with additive forcing: mean(s') = mean(s) + dt · mean(f).
    torch.testing.assert_close(nxt.mean(dim=(1, 2)), s.mean(dim=(1, 2)) + phys.dt * f.mean(
        dim=(1, 2)), rtol=1e-10, atol=1e-10 * float(s.abs().max() + phys.dt * f.abs().max()))
    # Round trip, exact on the modes the clamp leaves alone (linearised at the true state).
    back = phys.inverse_step(nxt, f, s)
    scale = float(s.abs().max() + nxt.abs().max() + phys.dt * f.abs().max())
    tol = 8 * torch.finfo(F64).eps * math.log2(h * w) * phys.max_inverse_gain * scale
    torch.testing.assert_close(back, s, rtol=0, atol=tol)
    torch.testing.assert_close(phys.force_for(s, nxt), f, rtol=1e-6, atol=1e-6 * float(
        f.abs().max()) + tol / phys.dt)

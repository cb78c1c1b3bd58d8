"""DiffusionPhysics against analytic solutions, round trips and gradcheck (float64).

Every reference below is written out in closed form here (``exp(−ν k² t)``,
``(1 − e^{−ν k² dt}) / (ν k²)``, …) rather than read from the implementation's cached factors, so
a wrong factor, sign, wavenumber or FFT normalisation in ``sipenv/physics/diffusion.py`` fails.
"""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sipenv.physics import DiffusionPhysics, PhysicsModel, SpectralLinearPhysics

F64 = torch.float64


def _grid(phys: DiffusionPhysics) -> torch.Tensor:
    """Cell positions ``x_j = j L / N`` computed here, independently of ``phys.grid``."""
    return torch.arange(phys.n, dtype=F64) * phys.length / phys.n


def _rand(b: int, n: int, dtype: torch.dtype = F64, seed: int = 0) -> torch.Tensor:
    """Full-spectrum random fields (every mode, including the mean and Nyquist)."""
    return torch.randn(b, n, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def _exact_decay(phys: DiffusionPhysics, m: int, t: float) -> float:
    k = 2 * math.pi * m / phys.length
    return math.exp(-phys.nu * k**2 * t)


# --- protocol -----------------------------------------------------------------------------------


def test_satisfies_the_physics_protocols() -> None:
    phys = DiffusionPhysics()
    assert isinstance(phys, PhysicsModel)
    assert isinstance(phys, SpectralLinearPhysics)


# --- forward step against analytic solutions --------------------------------------------------


@pytest.mark.parametrize("length", [1.0, 2.5])
@pytest.mark.parametrize("m", [1, 3, 8, 20])
@pytest.mark.parametrize("wave", ["sin", "cos"])
def test_single_fourier_mode_decays_as_exp_minus_nu_k2_t(length: float, m: int,
                                                          wave: str) -> None:
    phys = DiffusionPhysics(n=64, length=length, nu=0.01, dt=0.01)
    k = 2 * math.pi * m / length
    x = _grid(phys)
    shape = torch.sin(k * x) if wave == "sin" else torch.cos(k * x)
    s = (3.0 * shape)[None]
    zero = torch.zeros_like(s)
    for step in range(1, 6):
        s = phys.step(s, zero)
        expected = 3.0 * _exact_decay(phys, m, step * phys.dt) * shape
        torch.testing.assert_close(s[0], expected, rtol=1e-10, atol=1e-12)


def test_decay_with_large_time_step_is_exact_not_unstable() -> None:
    # An explicit scheme would blow up at ν k² dt ≫ 1; the spectral step is exact for any dt.
    phys = DiffusionPhysics(n=32, nu=0.5, dt=0.3)
    x = _grid(phys)
    s = (torch.sin(2 * math.pi * x) + torch.cos(2 * math.pi * 3 * x))[None]
    out = phys.step(s, torch.zeros_like(s))
    expected = (_exact_decay(phys, 1, phys.dt) * torch.sin(2 * math.pi * x)
                + _exact_decay(phys, 3, phys.dt) * torch.cos(2 * math.pi * 3 * x))
    torch.testing.assert_close(out[0], expected, rtol=1e-10, atol=1e-14)
    assert float(out.abs().max()) < 3e-3  # ν k² dt ≈ 5.9 for m = 1, ≈ 53 for m = 3


@pytest.mark.parametrize("length", [1.0, 3.0])
@pytest.mark.parametrize("m", [1, 4, 11])
def test_forced_step_matches_analytic_solution_for_constant_source(length: float,
                                                                    m: int) -> None:
    """∂s/∂t = ν s_xx + sin(kx) + c from s₀ = A sin(kx) + B cos(2kx) + C has the solution

    s(t) = [A e^{−νk²t} + (1 − e^{−νk²t})/(νk²)] sin(kx) + B e^{−4νk²t} cos(2kx) + C + c t.
    """
    nu, dt = 0.02, 0.005
    phys = DiffusionPhysics(n=64, length=length, nu=nu, dt=dt)
    x = _grid(phys)
    k = 2 * math.pi * m / length
    a_amp, b_amp, c0, c = 0.7, -1.3, 0.25, 2.0
    s = (a_amp * torch.sin(k * x) + b_amp * torch.cos(2 * k * x) + c0)[None]
    f = (torch.sin(k * x) + c)[None]
    for step in range(1, 5):
        prev_mean = float(s.mean())
        s = phys.step(s, f)
        t = step * dt
        decay = math.exp(-nu * k**2 * t)
        expected = ((a_amp * decay + (1 - decay) / (nu * k**2)) * torch.sin(k * x)
                    + b_amp * math.exp(-nu * (2 * k) ** 2 * t) * torch.cos(2 * k * x)
                    + c0 + c * t)
        torch.testing.assert_close(s[0], expected, rtol=1e-10, atol=1e-12)
        # The mean (mode 0) does not diffuse: it grows by dt·c per step.
        assert float(s.mean()) - prev_mean == pytest.approx(dt * c, rel=1e-10)


def test_step_is_linear_and_does_not_modify_inputs() -> None:
    phys = DiffusionPhysics(n=32, nu=0.03, dt=0.02)
    s1, s2, f1, f2 = (_rand(3, 32, seed=i) for i in range(4))
    copies = [t.clone() for t in (s1, s2, f1, f2)]
    lhs = phys.step(2.0 * s1 - 0.5 * s2, 2.0 * f1 - 0.5 * f2)
    rhs = 2.0 * phys.step(s1, f1) - 0.5 * phys.step(s2, f2)
    torch.testing.assert_close(lhs, rhs, rtol=1e-12, atol=1e-12)
    phys.inverse_step(s1, f1, s2)
    phys.force_for(s1, s2)
    for orig, copy in zip((s1, s2, f1, f2), copies, strict=True):
        assert torch.equal(orig, copy), "a physics call edited its input in place"


def test_spectral_factors_are_the_closed_form_decay_and_gain() -> None:
    phys = DiffusionPhysics(n=16, length=2.0, nu=0.07, dt=0.03)
    d, g = phys.spectral_factors(dtype=F64)
    assert d.shape == g.shape == (16 // 2 + 1,)
    k = 2 * math.pi * torch.arange(9, dtype=F64) / 2.0
    d_ref = torch.exp(-0.07 * k**2 * 0.03)
    g_ref = torch.empty_like(k)
    g_ref[0] = 0.03
    g_ref[1:] = (1 - d_ref[1:]) / (0.07 * k[1:] ** 2)
    torch.testing.assert_close(d, d_ref, rtol=1e-13, atol=0)
    torch.testing.assert_close(g, g_ref, rtol=1e-12, atol=0)
    # to_spectral / from_spectral are a round trip.
    s = _rand(2, 16)
    torch.testing.assert_close(phys.from_spectral(phys.to_spectral(s)), s)


def test_max_inverse_gain_default_and_clamped() -> None:
    default = DiffusionPhysics()
    # exp(ν (2π·32)² dt) at the env defaults: no mode is clamped by max_gain = 1e4.
    assert default.max_inverse_gain == pytest.approx(math.exp(0.01 * (2 * math.pi * 32) ** 2
                                                              * 0.01), rel=1e-12)
    assert default.max_inverse_gain < default.max_gain
    assert DiffusionPhysics(nu=10.0, dt=10.0, max_gain=7.0).max_inverse_gain == 7.0


# --- inverse simulators ---------------------------------------------------------------------


def test_inverse_step_recovers_state_exactly_at_default_settings() -> None:
    phys = DiffusionPhysics()
    gen = torch.Generator().manual_seed(1)
    s = phys.sample_fields(16, gen, max_mode=8, dtype=F64)
    f = 50.0 * phys.sample_fields(16, gen, max_mode=8, dtype=F64)
    nxt = phys.step(s, f)
    # The linearisation point does not matter when no mode is clamped.
    for around in (s, nxt, torch.zeros_like(s), 5.0 * _rand(16, 64, seed=3)):
        rec = phys.inverse_step(nxt, f, around)
        assert float((rec - s).norm() / s.norm()) <= 1e-6
    a = phys.inverse_step(nxt, f, torch.zeros_like(s))
    b = phys.inverse_step(nxt, f, 5.0 * _rand(16, 64, seed=4))
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_inverse_step_is_exact_for_full_spectrum_fields_at_default_settings() -> None:
    # Highest gain is ≈ 57 here, so even the Nyquist mode is inverted exactly.
    phys = DiffusionPhysics()
    s, f = _rand(4, 64, seed=5), _rand(4, 64, seed=6)
    rec = phys.inverse_step(phys.step(s, f), f, torch.zeros_like(s))
    assert float((rec - s).norm() / s.norm()) <= 1e-10


@pytest.mark.parametrize("nu,dt", [(0.1, 0.1), (1.0, 1.0), (1e3, 1.0)])
@pytest.mark.parametrize("scale", [1e-12, 1e-6, 1.0, 1e3, 1e6])
def test_clamped_inverse_is_finite_and_moves_towards_the_preimage(nu: float, dt: float,
                                                                   scale: float) -> None:
    """With ``max_gain = 2`` and large ν dt almost every mode is clamped (and for ν dt ≥ 1 the
    decay of the high modes underflows to 0 in float64, so no finite preimage exists)."""
    n, max_gain = 16, 2.0
    phys = DiffusionPhysics(n=n, nu=nu, dt=dt, max_gain=max_gain)
    around, f = _rand(3, n, seed=7), _rand(3, n, seed=8)
    base = phys.step(around, f)
    nxt = base + scale * _rand(3, n, seed=9)  # residual of size `scale` w.r.t. `around`
    prev = phys.inverse_step(nxt, f, around)
    assert torch.isfinite(prev).all()

    # Per mode: ŝ_prev = ŝ' + λ (p̂ − ŝ'), with preimage p̂ = (n̂ − g f̂)/d and
    # λ = min(1, max_gain · d) ∈ (0, 1] — i.e. ŝ_prev − ŝ' = min(1/d, max_gain) · r where
    # r = n̂ − d ŝ' − g f̂ is the forward residual. Written without dividing by d (it may be 0).
    k = 2 * math.pi * torch.arange(n // 2 + 1, dtype=F64)
    d = torch.exp(-nu * k**2 * dt)
    g = torch.where(k > 0, (1 - d) / (nu * k.clamp_min(1e-300) ** 2), torch.full_like(k, dt))
    fft = torch.fft.rfft
    r = fft(nxt) - d * fft(around) - g * fft(f)
    gain = torch.minimum(1 / d, torch.full_like(d, max_gain))  # 1/0 = inf → max_gain
    # Round-off of the O(1) fields is ~1e-15 · n per mode, whatever the residual's size.
    tol = 1e-9 * scale * n + 1e-12 * n
    torch.testing.assert_close(fft(prev) - fft(around), gain * r, rtol=1e-9, atol=tol)

    # The forward residual never grows, and shrinks by (1 − max_gain·d) in clamped modes.
    r_new = fft(nxt) - fft(phys.step(prev, f))
    assert (r_new.abs() <= r.abs() * (1 + 1e-9) + tol).all()
    assert float(r_new.norm()) <= float(r.norm()) + tol
    if scale >= 1e-6:  # above round-off: strictly closer (mode 0 and, at ν dt = 0.01, m = 1)
        assert float(r_new.norm()) < 0.999 * float(r.norm())


def test_clamped_inverse_of_an_exact_preimage_is_exact_in_unclamped_modes() -> None:
    # ν k² dt for m = 1 is 0.395 < log 2: mode 1 (and the mean) are inverted exactly.
    phys = DiffusionPhysics(n=16, nu=0.1, dt=0.1, max_gain=2.0)
    s, f = _rand(2, 16, seed=10), _rand(2, 16, seed=11)
    prev = phys.inverse_step(phys.step(s, f), f, torch.zeros_like(s))
    spec_prev, spec_s = phys.to_spectral(prev), phys.to_spectral(s)
    torch.testing.assert_close(spec_prev[:, :2], spec_s[:, :2], rtol=1e-10, atol=1e-10)
    assert not torch.allclose(spec_prev[:, 2:], spec_s[:, 2:])  # clamped modes are not


@pytest.mark.parametrize("kw", [{}, {"n": 32, "length": 2.0, "nu": 0.05, "dt": 0.02}])
def test_force_for_round_trips(kw: dict[str, float]) -> None:
    phys = DiffusionPhysics(**kw)  # type: ignore[arg-type]
    n = phys.n
    s, s_next, f = _rand(5, n, seed=12), _rand(5, n, seed=13), _rand(5, n, seed=14)
    torch.testing.assert_close(phys.step(s, phys.force_for(s, s_next)), s_next,
                               rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(phys.force_for(s, phys.step(s, f)), f, rtol=1e-9, atol=1e-9)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(4, 40), length=st.floats(0.2, 5.0), nu=st.floats(1e-4, 0.2),
       dt=st.floats(1e-4, 0.1), seed=st.integers(0, 2**31 - 1))
def test_force_for_round_trip_property(n: int, length: float, nu: float, dt: float,
                                       seed: int) -> None:
    phys = DiffusionPhysics(n=n, length=length, nu=nu, dt=dt)
    s, s_next = _rand(2, n, seed=seed), _rand(2, n, seed=seed + 1)
    force = phys.force_for(s, s_next)
    assert torch.isfinite(force).all()
    torch.testing.assert_close(phys.step(s, force), s_next, rtol=1e-8, atol=1e-8)


# --- gradients ------------------------------------------------------------------------------


@pytest.mark.parametrize("max_gain", [1e4, 1.5])
def test_gradcheck_step_inverse_and_force_for(max_gain: float) -> None:
    phys = DiffusionPhysics(n=8, nu=0.05, dt=0.1, max_gain=max_gain)

    def leaf(seed: int) -> torch.Tensor:
        return _rand(2, 8, seed=seed).requires_grad_(True)

    s, f, s_next = leaf(20), leaf(21), leaf(22)
    assert torch.autograd.gradcheck(phys.step, (s, f))
    assert torch.autograd.gradcheck(phys.inverse_step, (s_next, f, s))
    assert torch.autograd.gradcheck(phys.force_for, (s, s_next))
    assert torch.autograd.gradgradcheck(phys.step, (s, f))


# --- batching, precision, dtype and device --------------------------------------------------


def test_batched_equals_per_sample() -> None:
    phys = DiffusionPhysics(n=32, nu=0.02, dt=0.01)
    s, f, s_next = _rand(6, 32, seed=30), _rand(6, 32, seed=31), _rand(6, 32, seed=32)
    for fn, args in ((phys.step, (s, f)), (phys.inverse_step, (s_next, f, s)),
                     (phys.force_for, (s, s_next))):
        batched = fn(*args)
        single = torch.cat([fn(*(a[i:i + 1] for a in args)) for i in range(6)])
        torch.testing.assert_close(batched, single, rtol=1e-12, atol=1e-12)


def test_float32_agrees_with_float64_and_dtype_follows_input() -> None:
    phys = DiffusionPhysics()
    s, f, s_next = _rand(4, 64, seed=40), _rand(4, 64, seed=41), _rand(4, 64, seed=42)
    for fn, args in ((phys.step, (s, f)), (phys.inverse_step, (s_next, f, s)),
                     (phys.force_for, (s, s_next))):
        out64 = fn(*args)
        out32 = fn(*(a.float() for a in args))
        assert out64.dtype == torch.float64 and out32.dtype == torch.float32
        assert out32.device == s.device
        scale = float(out64.abs().max())
        torch.testing.assert_close(out32.double(), out64, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_device_follows_input_on_cuda() -> None:  # pragma: no cover - no GPU in CI
    phys = DiffusionPhysics()
    s, f = _rand(2, 64, seed=50), _rand(2, 64, seed=51)
    out = phys.step(s.cuda(), f.cuda())
    assert out.device.type == "cuda"
    torch.testing.assert_close(out.cpu(), phys.step(s, f))


# --- samplers -------------------------------------------------------------------------------


@pytest.mark.parametrize("max_mode", [1, 3, 8, 31])
def test_sample_fields_shape_mean_and_modes(max_mode: int) -> None:
    phys = DiffusionPhysics(n=64)
    out = phys.sample_fields(50, torch.Generator().manual_seed(0), max_mode=max_mode,
                             dtype=F64)
    assert out.shape == (50, 64) and out.dtype == F64
    torch.testing.assert_close(out.mean(-1), torch.zeros(50, dtype=F64), rtol=0, atol=1e-12)
    spec = torch.fft.rfft(out, dim=-1).abs()
    assert (spec[:, max_mode + 1:] < 1e-10).all(), "energy above max_mode"
    assert (spec[:, 1:max_mode + 1] > 1e-8).float().mean() > 0.99, "modes 1..max_mode empty"


def test_sample_fields_amplitude_decays_like_one_over_m() -> None:
    phys = DiffusionPhysics(n=64)
    out = phys.sample_fields(4000, torch.Generator().manual_seed(1), max_mode=8,
                             amplitude=2.0, dtype=F64)
    # Mode m has coefficients a, b ~ N(0, (amplitude/m)²): E|X_m|² = 2 (N/2)² (amplitude/m)².
    power = (torch.fft.rfft(out, dim=-1).abs() ** 2).mean(0)[1:9]
    m = torch.arange(1, 9, dtype=F64)
    expected = 2 * (64 / 2) ** 2 * (2.0 / m) ** 2
    torch.testing.assert_close(power, expected, rtol=0.1, atol=0)


def test_sample_fields_is_seeded() -> None:
    phys = DiffusionPhysics()
    a = phys.sample_fields(8, torch.Generator().manual_seed(123))
    b = phys.sample_fields(8, torch.Generator().manual_seed(123))
    c = phys.sample_fields(8, torch.Generator().manual_seed(124))
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)
    assert a.dtype == torch.float32 and a.device.type == "cpu"


@pytest.mark.parametrize("kw", [{"max_mode": 0}, {"max_mode": 32}, {"max_mode": 40}])
def test_sample_fields_rejects_bad_max_mode(kw: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="max_mode"):
        DiffusionPhysics(n=64).sample_fields(2, torch.Generator(), **kw)  # type: ignore[arg-type]


def test_sample_fields_rejects_empty_batch() -> None:
    with pytest.raises(ValueError, match="batch"):
        DiffusionPhysics().sample_fields(0, torch.Generator())


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("kw,field", [
    ({"n": 3}, "n"), ({"n": 2}, "n"), ({"n": 0}, "n"), ({"n": 8.0}, "n"),
    ({"nu": 0.0}, "nu"), ({"nu": -0.1}, "nu"), ({"nu": math.nan}, "nu"), ({"nu": math.inf}, "nu"),
    ({"dt": 0.0}, "dt"), ({"dt": -1.0}, "dt"), ({"dt": math.nan}, "dt"), ({"dt": math.inf}, "dt"),
    ({"length": 0.0}, "length"), ({"length": math.nan}, "length"),
    ({"length": -math.inf}, "length"),
    ({"max_gain": 0.5}, "max_gain"), ({"max_gain": math.nan}, "max_gain"),
    ({"max_gain": math.inf}, "max_gain"), ({"max_gain": 0.0}, "max_gain"),
])
def test_bad_parameters_raise_value_error(kw: dict[str, float], field: str) -> None:
    with pytest.raises(ValueError, match=field):
        DiffusionPhysics(**kw)  # type: ignore[arg-type]


def test_max_gain_of_one_is_allowed_and_disables_inversion() -> None:
    phys = DiffusionPhysics(n=16, max_gain=1.0)
    s, f, around = _rand(2, 16, seed=60), _rand(2, 16, seed=61), _rand(2, 16, seed=62)
    nxt = phys.step(s, f)
    # Gain 1 everywhere: ŝ_prev = ŝ' + (n̂ − d ŝ' − g f̂).
    expected = around + nxt - phys.step(around, f)
    torch.testing.assert_close(phys.inverse_step(nxt, f, around), expected)


@pytest.mark.parametrize("bad_shape", [(64,), (2, 32), (2, 65), (2, 64, 1), (2, 1, 64)])
def test_wrong_shapes_raise_with_expected_shape_in_message(bad_shape: tuple[int, ...]) -> None:
    phys = DiffusionPhysics(n=64)
    good = torch.zeros(2, 64)
    bad = torch.zeros(bad_shape)
    expected = r"\(B, 64\)"
    with pytest.raises(ValueError, match=expected):
        phys.step(bad, good)
    with pytest.raises(ValueError, match=expected):
        phys.step(good, bad)
    with pytest.raises(ValueError, match=expected):
        phys.inverse_step(bad, good, good)
    with pytest.raises(ValueError, match=expected):
        phys.inverse_step(good, good, bad)
    with pytest.raises(ValueError, match=expected):
        phys.force_for(good, bad)


def test_integer_tensors_raise() -> None:
    phys = DiffusionPhysics(n=8)
    with pytest.raises(ValueError, match="floating-point"):
        phys.step(torch.zeros(1, 8, dtype=torch.int64), torch.zeros(1, 8))

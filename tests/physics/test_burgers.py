"""BurgersPhysics against analytic solutions, conservation laws, round trips and gradcheck.

The references are written out here in closed form: the Cole–Hopf solution of viscous Burgers,
``exp(−ν k² t)`` decay of a small mode carried at the grid speed, the Rankine–Hugoniot shock speed
and the rarefaction fan of a Riemann problem.
"""

from __future__ import annotations

import itertools
import math
import warnings

import pytest
import torch

from sipenv.physics import BurgersPhysics, PhysicsModel, SpectralLinearPhysics
from sipenv.physics.burgers import BurgersTaskSampler, periodic_gaussian

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _grid(phys: BurgersPhysics) -> torch.Tensor:
    return torch.arange(phys.n, dtype=F64) * phys.length / phys.n


def _run(phys: BurgersPhysics, u: torch.Tensor, steps: int) -> torch.Tensor:
    for _ in range(steps):
        u = phys.step(u, torch.zeros_like(u))
    return u


def _bumps(phys: BurgersPhysics, batch: int, amplitude: float, min_width: float,
           seed: int) -> torch.Tensor:
    """Reference-like two-bump states with a smaller amplitude / larger width (smooth ones)."""
    g = _gen(seed)

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(batch, generator=g, dtype=F64)

    x = _grid(phys)
    return (periodic_gaussian(x, u(0, amplitude), u(0.2, 0.4), u(min_width, 0.15), 1.0)
            + periodic_gaussian(x, u(-amplitude, 0), u(0.6, 0.8), u(min_width, 0.15), 1.0))


def _rel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).norm(dim=-1) / b.norm(dim=-1)


# --- protocol -----------------------------------------------------------------------------------


def test_satisfies_the_physics_protocol_but_is_not_spectral_linear() -> None:
    phys = BurgersPhysics()
    assert isinstance(phys, PhysicsModel)
    assert not isinstance(phys, SpectralLinearPhysics)
    assert phys.n == 128 and phys.nu == 0.003 and phys.dt == 0.03
    assert phys.max_stable_speed == pytest.approx((1 / 128) / (0.03 / 20))


# --- forward step against analytic solutions --------------------------------------------------


@pytest.mark.parametrize("m", [1, 3, 8])
def test_small_mode_carried_at_grid_speed_shifts_and_decays_exactly(m: int) -> None:
    """u = ū + ε sin(k x) with ū τ = Δx: the upwind sub-step is an exact one-cell shift, so
    u(t) = ū + ε exp(−ν k² t) sin(k (x − ū t)) up to O(ε²) and O(1 − ū τ/Δx)."""
    phys = BurgersPhysics()
    speed = (1 - 1e-8) * phys.max_stable_speed
    eps, k, steps = 1e-9, 2 * math.pi * m, 5
    x = _grid(phys)
    u = _run(phys, (speed + eps * torch.sin(k * x))[None], steps)
    t = steps * phys.dt
    expected = eps * math.exp(-phys.nu * k**2 * t) * torch.sin(k * (x - speed * t))
    assert torch.allclose(u[0] - speed, expected, rtol=0, atol=1e-4 * expected.abs().max())


def test_diffusion_only_limit_of_a_small_amplitude_mode() -> None:
    """ε → 0 removes the advection: each mode decays as exp(−ν k² t)."""
    phys = BurgersPhysics(nu=0.01)
    eps, k = 1e-9, 2 * math.pi * 4
    x = _grid(phys)
    u = _run(phys, (eps * torch.cos(k * x))[None], 10)
    expected = eps * math.exp(-phys.nu * k**2 * 10 * phys.dt) * torch.cos(k * x)
    assert torch.allclose(u[0], expected, rtol=0, atol=1e-5 * eps)


def _cole_hopf(x: torch.Tensor, t: float, nu: float, a: float) -> torch.Tensor:
    """Exact periodic viscous Burgers solution u = −2ν φ_x/φ, φ = 1 + a e^{−ν k² t} cos(k x)."""
    k = 2 * math.pi
    e = a * math.exp(-nu * k * k * t)
    return 2 * nu * k * e * torch.sin(k * x) / (1 + e * torch.cos(k * x))


def test_cole_hopf_solution_converges_at_first_order() -> None:
    nu, a, steps = 0.02, 0.5, 10
    errors = []
    for n in (64, 128, 256):
        phys = BurgersPhysics(n=n, nu=nu)
        x = _grid(phys)
        u = _run(phys, _cole_hopf(x, 0.0, nu, a)[None], steps)
        errors.append(float(_rel(u, _cole_hopf(x, steps * phys.dt, nu, a)[None])[0]))
    assert errors[1] < 5e-3  # at the default grid
    for coarse, fine in itertools.pairwise(errors):
        assert 1.8 < coarse / fine < 2.2  # first order in Δx


def test_riemann_problem_shock_speed_and_rarefaction_fan() -> None:
    """u = 1 on [0.2, 0.5), 0 elsewhere (ν → 0): the shock moves at the Rankine–Hugoniot speed
    ½ and the rarefaction fan is u = (x − 0.2)/t."""
    phys = BurgersPhysics(n=256, nu=1e-6)
    x = _grid(phys)
    u0 = ((x >= 0.2) & (x < 0.5)).to(F64)[None]
    t = 10 * phys.dt
    u = _run(phys, u0, 10)[0]
    behind = [i for i in range(phys.n - 1) if x[i] > 0.5 and u[i] >= 0.5 > u[i + 1]]
    i = behind[0]
    shock = float(x[i] + (u[i] - 0.5) / (u[i] - u[i + 1]) * phys.dx)
    assert shock == pytest.approx(0.5 + 0.5 * t, abs=2 * phys.dx)
    fan = (x > 0.2 + 0.2 * t) & (x < 0.2 + 0.8 * t)
    assert torch.allclose(u[fan], (x[fan] - 0.2) / t, atol=0.03)
    # No oscillations, up to the ringing of the exact spectral diffusion at a 2-cell front.
    assert float(u.max()) <= 1.0 + 1e-3 and float(u.min()) >= -1e-3


# --- conservation and stability -----------------------------------------------------------------


def test_mean_is_conserved_and_force_adds_dt_times_its_mean() -> None:
    phys = BurgersPhysics()
    u = phys.sample_initial_states(8, _gen(1), dtype=F64)
    force = phys.sample_forces(8, _gen(2), dtype=F64)
    mean0 = u.mean(-1)
    free = _run(phys, u, 32)
    torch.testing.assert_close(free.mean(-1), mean0, rtol=0, atol=1e-13)
    forced = u
    for _ in range(32):
        forced = phys.step(forced, force)
    torch.testing.assert_close(forced.mean(-1), mean0 + 32 * phys.dt * force.mean(-1),
                               rtol=0, atol=1e-12)


def test_energy_and_max_speed_never_grow_without_force() -> None:
    phys = BurgersPhysics()
    u = phys.sample_initial_states(16, _gen(3), dtype=F64)
    for _ in range(32):
        nxt = phys.step(u, torch.zeros_like(u))
        assert bool(((nxt**2).sum(-1) <= (u**2).sum(-1) * (1 + 1e-12)).all())
        assert bool((nxt.abs().amax(-1) <= u.abs().amax(-1) * (1 + 1e-3)).all())
        u = nxt


def test_cfl_violation_warns_and_names_the_cure() -> None:
    phys = BurgersPhysics()
    ok = torch.full((1, 128), 0.99 * phys.max_stable_speed, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        phys.step(ok, torch.zeros_like(ok))
        BurgersPhysics(check_cfl=False).step(5 * ok, torch.zeros_like(ok))
    fast = torch.zeros(2, 128, dtype=F64)
    fast[1, 5] = -6.5  # max|u| · τ/Δx = 6.5 · 0.0015 · 128 = 1.248
    with pytest.warns(RuntimeWarning, match=r"CFL.*1\.25.*bound the 20 sub-steps were chosen "
                                            r"for \(max_speed = 5.*max_speed ≥ 6\.5 \(or "
                                            r"substeps ≥ 25\)"):
        phys.step(fast, torch.zeros_like(fast))


@pytest.mark.parametrize("n", [4, 32, 128, 129, 1024, 4096])
@pytest.mark.parametrize("dt", [1e-3, 0.03, 0.5])
@pytest.mark.parametrize("max_speed", [0.1, 5.0, 40.0])
def test_default_substeps_are_stable_for_the_velocity_bound(
        n: int, dt: float, max_speed: float) -> None:
    """Chosen at construction from the settings and ``max_speed``: stable for every
    ``|u| ≤ max_speed``, never fewer than the reference 20, and above 20 one fewer would not
    be stable."""
    phys = BurgersPhysics(n=n, dt=dt, max_speed=max_speed)
    assert phys.max_stable_speed >= max_speed * (1 - 1e-12)
    assert phys.n_substeps >= 20
    if phys.n_substeps > 20:
        assert phys.dx / (dt / (phys.n_substeps - 1)) < max_speed
    assert BurgersPhysics(n=n, dt=dt, max_speed=max_speed, substeps=3).n_substeps == 3
    assert BurgersPhysics(n=n, dt=dt, advection="semi_lagrangian").n_substeps == 1


def test_reference_settings_keep_20_substeps_and_other_resolutions_stay_stable() -> None:
    """The committed results' 20 sub-steps at the defaults; at n = 1024 (which 20 sub-steps
    would run at CFL 2.5) the default is stable for the reference tasks: no warning."""
    assert BurgersPhysics().n_substeps == 20
    assert BurgersPhysics(max_speed=5.2).n_substeps == 20  # any bound up to 5.2 gives 20
    assert BurgersPhysics(n=32).n_substeps == 20  # settings that were stable keep their count
    fine = BurgersPhysics(n=1024)
    assert fine.n_substeps == 154
    u = fine.sample_initial_states(4, _gen(0), dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for _ in range(3):
            u = fine.step(u, torch.zeros_like(u))
    with pytest.raises(ValueError, match="max_speed"):
        BurgersPhysics(max_speed=0.0)


def test_step_does_not_modify_inputs_and_follows_dtype() -> None:
    phys = BurgersPhysics()
    u = phys.sample_initial_states(3, _gen(4), dtype=F64)
    f = phys.sample_forces(3, _gen(5), dtype=F64)
    u_copy, f_copy = u.clone(), f.clone()
    out = phys.step(u, f)
    assert torch.equal(u, u_copy) and torch.equal(f, f_copy)
    assert out.dtype == F64
    out32 = phys.step(u.float(), f.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), out, rtol=0, atol=1e-5)


def test_batched_equals_per_sample() -> None:
    phys = BurgersPhysics()
    u = phys.sample_initial_states(4, _gen(6), dtype=F64)
    f = phys.sample_forces(4, _gen(7), dtype=F64)
    batched = phys.step(u, f)
    for i in range(4):
        torch.testing.assert_close(phys.step(u[i:i + 1], f[i:i + 1]), batched[i:i + 1],
                                   rtol=0, atol=1e-14)


def _tiny_inputs(seed: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen(seed)
    # |u| ≥ 0.2: away from the kink of the upwind flux's second derivative at u = 0.
    sign = torch.where(torch.rand(2, 8, generator=g) < 0.5, -1.0, 1.0).to(F64)
    u = (sign * (0.2 + torch.rand(2, 8, generator=g, dtype=F64))).requires_grad_()
    f = torch.randn(2, 8, generator=g, dtype=F64, requires_grad=True)
    return u, f


@pytest.mark.parametrize("analytic", [True, False])
def test_gradcheck_step_and_force_for_reverse_and_forward_mode(analytic: bool) -> None:
    phys = BurgersPhysics(n=8, substeps=3, dt=0.01, nu=0.01, analytic_derivatives=analytic)
    u, f = _tiny_inputs()
    nxt = phys.step(u.detach(), f.detach()).requires_grad_()
    assert torch.autograd.gradcheck(phys.step, (u, f), check_forward_ad=True)
    assert torch.autograd.gradcheck(phys.force_for, (u, nxt), check_forward_ad=True)


def test_plain_autograd_mode_has_exact_second_derivatives() -> None:
    phys = BurgersPhysics(n=8, substeps=3, dt=0.01, nu=0.01, analytic_derivatives=False)
    assert torch.autograd.gradgradcheck(phys.step, _tiny_inputs())


def test_analytic_derivatives_give_jacobian_products_by_double_backward() -> None:
    """What the Gauss–Newton inverse uses: J v = ∂/∂c [(Jᵀ c) · v]; both modes agree."""
    u, _ = _tiny_inputs(9)
    v = torch.randn(2, 8, generator=_gen(10), dtype=F64)
    products = []
    for analytic in (True, False):
        phys = BurgersPhysics(n=8, substeps=3, dt=0.01, nu=0.01, analytic_derivatives=analytic)
        out = phys.free_step(u)
        c = torch.zeros_like(out, requires_grad=True)
        (jt_c,) = torch.autograd.grad(out, u, c, create_graph=True)
        products.append(torch.autograd.grad(jt_c, c, v)[0])
    torch.testing.assert_close(products[0], products[1], rtol=1e-12, atol=1e-12)
    expected = torch.func.jvp(BurgersPhysics(n=8, substeps=3, dt=0.01, nu=0.01).free_step,
                              (u.detach(),), (v,))[1]
    torch.testing.assert_close(products[0], expected, rtol=1e-12, atol=1e-12)


# --- inverse simulators -------------------------------------------------------------------------


def test_force_for_is_exact() -> None:
    phys = BurgersPhysics()
    u = phys.sample_initial_states(4, _gen(9), dtype=F64)
    target = phys.sample_fields(4, _gen(10), dtype=F64)
    f = phys.force_for(u, target)
    torch.testing.assert_close(phys.step(u, f), target, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", ["fields", "bumps"])
def test_inverse_step_from_the_next_state_recovers_smooth_states(kind: str) -> None:
    """The accuracy bar: ≤ 1e-3 relative at the defaults, starting from the next state itself,
    for states without a shock within the step (max|∂u/∂x| · dt ≈ 0.1)."""
    phys = BurgersPhysics()
    if kind == "fields":
        s0 = phys.sample_fields(32, _gen(11), max_mode=4, amplitude=0.1, dtype=F64)
    else:
        s0 = _bumps(phys, 32, amplitude=1.0, min_width=0.1, seed=11)
    force = phys.sample_fields(32, _gen(12), max_mode=4, dtype=F64)
    s1 = phys.step(s0, force)
    back = phys.inverse_step(s1, force, s1)
    err = _rel(back, s0)
    assert float(err.max()) <= 1e-3
    assert float(err.median()) <= 3e-4


def test_local_inverse_around_a_nearby_state_for_reference_states() -> None:
    """As SIP uses it: start near the preimage (here 10 % off); even the steep reference states
    (shocks forming within the step) are recovered to ~1e-3."""
    phys = BurgersPhysics()
    s0 = phys.sample_initial_states(32, _gen(13), dtype=F64)
    force = phys.sample_forces(32, _gen(14), dtype=F64)
    s1 = phys.step(s0, force)
    pert = phys.sample_fields(32, _gen(15), max_mode=4, dtype=F64)
    start = s0 + 0.1 * pert * s0.norm(dim=-1, keepdim=True) / pert.norm(dim=-1, keepdim=True)
    err = _rel(phys.inverse_step(s1, force, start), s0)
    assert float(err.median()) <= 1e-3
    assert float(err.max()) <= 5e-2
    assert float(_rel(start, s0).min()) > 0.09  # it really started 10 % away


def test_inverse_step_from_the_next_state_on_the_steep_reference_states() -> None:
    """Pins the upwind row of docs/results/physics_accuracy.md (same seeds): shocks form within
    the step, so the next state alone recovers the preimage less well than a nearby start."""
    phys = BurgersPhysics()
    s0 = phys.sample_initial_states(32, _gen(13), dtype=F64)
    force = phys.sample_forces(32, _gen(14), dtype=F64)
    s1 = phys.step(s0, force)
    err = _rel(phys.inverse_step(s1, force, s1), s0)
    assert float(err.median()) <= 3e-2 and float(err.max()) <= 0.2


def test_inverse_step_of_an_exact_preimage_returns_it_and_zero_iterations_return_state() -> None:
    phys = BurgersPhysics()
    s0 = phys.sample_initial_states(3, _gen(16), dtype=F64)
    f = torch.zeros_like(s0)
    s1 = phys.step(s0, f)
    assert torch.equal(phys.inverse_step(s1, f, s0), s0)
    assert torch.equal(BurgersPhysics(inverse_iterations=0).inverse_step(s1, f, s1), s1)


def test_inverse_step_never_returns_nan_or_a_worse_state() -> None:
    phys = BurgersPhysics(check_cfl=False)
    g = _gen(17)
    state = torch.randn(4, 128, generator=g, dtype=F64)
    wild = 1e3 * torch.randn(4, 128, generator=g, dtype=F64)  # far outside the stable range
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        out = phys.inverse_step(wild, torch.zeros_like(wild), state)
    assert bool(torch.isfinite(out).all())

    def res(s: torch.Tensor) -> torch.Tensor:
        return (phys.free_step(s) - wild).norm(dim=-1)

    assert bool((res(out) <= res(state)).all())


# --- samplers -----------------------------------------------------------------------------------


def test_sample_fields_is_seeded_and_zero_mean() -> None:
    phys = BurgersPhysics()
    a = phys.sample_fields(5, _gen(18), max_mode=6, amplitude=0.5)
    b = phys.sample_fields(5, _gen(18), max_mode=6, amplitude=0.5)
    assert a.shape == (5, 128) and a.dtype == torch.float32
    assert torch.equal(a, b)
    assert float(a.double().mean(-1).abs().max()) < 1e-6
    with pytest.raises(ValueError, match="max_mode"):
        phys.sample_fields(2, _gen(0), max_mode=64)
    with pytest.raises(ValueError, match="batch"):
        phys.sample_fields(0, _gen(0))


def test_initial_states_are_two_bumps_in_the_reference_ranges() -> None:
    phys = BurgersPhysics()
    s0 = phys.sample_initial_states(512, _gen(19), dtype=F64)
    assert torch.equal(s0, phys.sample_initial_states(512, _gen(19), dtype=F64))
    x = _grid(phys)
    # Peaks ≤ 3 (tails of the other bump can only lower a peak), troughs ≥ −3.
    assert float(s0.max()) <= 3.0 + 1e-9 and float(s0.min()) >= -3.0 - 1e-9
    big = (s0.amax(-1) > 0.5) & (s0.amin(-1) < -0.5)
    assert float(x[s0[big].argmax(-1)].min()) >= 0.19
    assert float(x[s0[big].argmax(-1)].max()) <= 0.41
    assert float(x[s0[big].argmin(-1)].min()) >= 0.59
    assert float(x[s0[big].argmin(-1)].max()) <= 0.81
    assert float(s0.amax(-1).max()) > 2.8 and float(s0.amin(-1).min()) < -2.8  # full range


def test_task_sampler_targets_are_reached_by_the_generating_force() -> None:
    phys = BurgersPhysics()
    sampler = BurgersTaskSampler(phys, horizon=32)
    s0, target, force = sampler.with_forces(16, _gen(20))
    # Peak ≤ 1.6 Σ_m exp(−m²/(2 · 0.4²)) ≈ 1.74: the periodic images of the widest forces add up.
    assert float(force.abs().max()) <= 1.6 * (1 + 2 * math.exp(-1 / 0.32) + 1e-5)
    state = s0
    for _ in range(32):
        state = phys.step(state, force)
    torch.testing.assert_close(state, target, rtol=0, atol=0)
    a0, at = sampler(16, _gen(20))
    assert a0.dtype == torch.float32
    torch.testing.assert_close(a0, s0.float())
    torch.testing.assert_close(at, target.float())
    assert float(_rel(target, s0).median()) > 0.5  # a real task: the target differs from s0


def test_task_sampler_chunks_change_nothing() -> None:
    """The target rollout in chunks (to bound temporaries) gives the whole-batch rollout's
    tasks bit for bit, for chunks that do and do not divide the batch."""
    phys = BurgersPhysics()
    whole = BurgersTaskSampler(phys, horizon=4, chunk=10_000).with_forces(20, _gen(21))
    for chunk in (1, 7, 20):
        parts = BurgersTaskSampler(phys, horizon=4, chunk=chunk).with_forces(20, _gen(21))
        assert all(torch.equal(a, b) for a, b in zip(whole, parts, strict=True)), chunk
    with pytest.raises(ValueError, match="chunk"):
        BurgersTaskSampler(phys, chunk=0)


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kw", [
    {"n": 3}, {"n": 8.0}, {"nu": 0.0}, {"nu": -1e-3}, {"nu": float("nan")}, {"dt": 0.0},
    {"dt": float("inf")}, {"length": -1.0}, {"substeps": 0}, {"substeps": 2.5},
    {"substeps": True}, {"max_gain": 0.5}, {"max_gain": float("nan")},
    {"inverse_iterations": -1}, {"check_cfl": "yes"},
])
def test_bad_parameters_raise_value_error(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        BurgersPhysics(**kw)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(128,), (2, 64), (2, 128, 1)])
def test_wrong_shapes_raise_with_the_expected_shape(shape: tuple[int, ...]) -> None:
    phys = BurgersPhysics()
    bad = torch.zeros(shape)
    good = torch.zeros(2, 128)
    with pytest.raises(ValueError, match=r"\(B, 128\)"):
        phys.step(bad, good)
    with pytest.raises(ValueError, match=r"\(B, 128\)"):
        phys.inverse_step(good, good, bad)
    with pytest.raises(ValueError, match=r"\(B, 128\)"):
        phys.force_for(good, bad)


def test_integer_tensors_raise() -> None:
    with pytest.raises(ValueError, match="floating-point"):
        BurgersPhysics().step(torch.zeros(1, 128, dtype=torch.int64), torch.zeros(1, 128))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_device_follows_input_on_cuda() -> None:  # pragma: no cover - no GPU in CI
    phys = BurgersPhysics()
    u = phys.sample_initial_states(2, _gen(0), dtype=F64)
    out = phys.step(u.cuda(), torch.zeros_like(u).cuda())
    assert out.is_cuda
    torch.testing.assert_close(out.cpu(), phys.step(u, torch.zeros_like(u)))

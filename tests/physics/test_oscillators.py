"""OscillatorPhysics: closed forms, the implicit RK4 inverse, force_for, gradcheck (float64)."""

from __future__ import annotations

import math

import pytest
import torch

from sipenv.physics import PhysicsModel
from sipenv.physics.oscillators import OscillatorPhysics

F64 = torch.float64


def _states(b: int, n: int, seed: int = 0) -> torch.Tensor:
    return torch.rand(b, n, generator=torch.Generator().manual_seed(seed), dtype=F64)


def test_satisfies_the_physics_protocol() -> None:
    assert isinstance(OscillatorPhysics(), PhysicsModel)


def test_uncoupled_free_oscillators_rotate_in_phase_space() -> None:
    # α = β = 0, u = 0: x(t) = x cos t + v sin t, v(t) = −x sin t + v cos t (RK4: O(dt⁴) per
    # unit time)
    phys = OscillatorPhysics(oscillators=3, dt=0.01, coupling=0.0)
    s = _states(4, 6)
    state = s
    for _ in range(100):
        state = phys.step(state, torch.zeros(4, 1, dtype=F64))
    c, sn = math.cos(1.0), math.sin(1.0)
    x, v = s[:, :3], s[:, 3:]
    torch.testing.assert_close(state, torch.cat([x * c + v * sn, -x * sn + v * c], -1),
                               rtol=0, atol=1e-9)


def test_the_rhs_is_hamiltons_equations_of_the_documented_hamiltonian() -> None:
    phys = OscillatorPhysics(oscillators=3, coupling=0.7, linear_coupling=0.3, control="each")
    s = _states(5, 6).requires_grad_(True)
    u = _states(5, 3, seed=1)
    x, p = s[:, :3], s[:, 3:]
    d = x[:, 1:] - x[:, :-1]
    ham = (0.5 * x**2 + 0.5 * p**2).sum(-1) + (0.7 / 4 * d**4 + 0.3 / 2 * d**2).sum(-1) \
        - (x * u).sum(-1)
    (grad,) = torch.autograd.grad(ham.sum(), s)
    expected = torch.cat([grad[:, 3:], -grad[:, :3]], -1)  # ẋ = ∂H/∂p, ṗ = −∂H/∂x
    torch.testing.assert_close(phys.rhs(s.detach(), u), expected)


def test_one_step_is_classical_rk4_written_out() -> None:
    phys = OscillatorPhysics()
    s, u = _states(3, 4), _states(3, 1, seed=2)
    h = phys.dt
    k1 = phys.rhs(s, u)
    k2 = phys.rhs(s + h / 2 * k1, u)
    k3 = phys.rhs(s + h / 2 * k2, u)
    k4 = phys.rhs(s + h * k3, u)
    torch.testing.assert_close(phys.step(s, u), s + h / 6 * (k1 + 2 * k2 + 2 * k3 + k4))


@pytest.mark.parametrize("dt", [0.125, 0.5])
@pytest.mark.parametrize("control", ["last", "each"])
def test_inverse_step_round_trip(dt: float, control: str) -> None:
    phys = OscillatorPhysics(dt=dt, control=control)
    s = _states(16, 4)
    u = 2 * _states(16, phys.n_controls, seed=3) - 1
    nxt = phys.step(s, u)
    back = phys.inverse_step(nxt, u, torch.zeros_like(s))
    torch.testing.assert_close(back, s, rtol=0, atol=1e-10)
    torch.testing.assert_close(phys.step(back, u), nxt, rtol=0, atol=1e-10)


def test_inverse_step_is_never_worse_than_its_start() -> None:
    phys = OscillatorPhysics(inverse_iterations=0)
    s, u = _states(8, 4), _states(8, 1, seed=4)
    nxt = phys.step(s, u)
    back = phys.inverse_step(nxt, u, s)  # the start is exact: kept
    torch.testing.assert_close(back, s, rtol=0, atol=0)


def test_force_for_recovers_the_force_and_is_least_squares_otherwise() -> None:
    phys = OscillatorPhysics(control="each")
    s, u = _states(8, 4), 2 * _states(8, 2, seed=5) - 1
    torch.testing.assert_close(phys.force_for(s, phys.step(s, u)), u, rtol=0, atol=1e-10)
    one = OscillatorPhysics()
    goal = _states(8, 4, seed=6)  # not reachable with one force
    f = one.force_for(s, goal)
    res = (one.step(s, f) - goal).square().sum()
    for delta in (1e-3, -1e-3):
        assert res <= (one.step(s, f + delta) - goal).square().sum()


def test_gradcheck_in_float64() -> None:
    phys = OscillatorPhysics()
    s = _states(1, 4).requires_grad_(True)
    u = _states(1, 1, seed=7).requires_grad_(True)
    assert torch.autograd.gradcheck(phys.step, (s, u))


@pytest.mark.slow
def test_gradcheck_of_force_for_in_float64() -> None:
    phys = OscillatorPhysics()
    s = _states(2, 4).requires_grad_(True)
    u = _states(2, 1, seed=7).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda a, b: phys.force_for(a, phys.step(a, b)), (s, u))


def test_bad_input_names_the_argument() -> None:
    for kw in ({"oscillators": 0}, {"dt": 0.0}, {"coupling": -1.0}, {"control": "first"},
               {"linear_coupling": float("inf")}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            OscillatorPhysics(**kw)  # type: ignore[arg-type]
    phys = OscillatorPhysics()
    with pytest.raises(ValueError, match="state"):
        phys.step(torch.zeros(2, 3), torch.zeros(2, 1))
    with pytest.raises(ValueError, match="force"):
        phys.step(torch.zeros(2, 4), torch.zeros(2, 2))


def test_batched_equals_per_sample_and_float32_follows_float64() -> None:
    phys = OscillatorPhysics()
    s, u = _states(5, 4), _states(5, 1, seed=8)
    batched = phys.step(s, u)
    for i in range(5):
        torch.testing.assert_close(phys.step(s[i:i + 1], u[i:i + 1])[0], batched[i])
    torch.testing.assert_close(phys.step(s.float(), u.float()).double(), batched, rtol=1e-5,
                               atol=1e-6)

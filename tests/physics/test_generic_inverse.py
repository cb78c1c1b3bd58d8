"""The generic Gauss–Newton inverse: exact on linear physics, helpful on Burgers, and its
matrix-free Jacobian products against independent references."""

from __future__ import annotations

import pytest
import torch

from agents.sip import sip_control_targets
from sipenv.physics import BurgersPhysics, DiffusionPhysics
from sipenv.physics.burgers import BurgersTaskSampler
from sipenv.physics.generic_inverse import (
    StepFn,
    gauss_newton_correction,
    linearize_rollout,
    solve_minimum_norm,
)

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rollout(step: StepFn, s0: torch.Tensor, forces: torch.Tensor) -> torch.Tensor:
    states = [s0]
    for f in forces:
        states.append(step(states[-1], f))
    return torch.stack(states)


def _rel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).norm(dim=-1) / b.norm(dim=-1)


@pytest.mark.parametrize("horizon", [1, 4, 16])
def test_equals_the_minimum_force_split_on_diffusion(horizon: int) -> None:
    """Linear physics: the converged Gauss–Newton step is the exact least-norm correction, i.e.
    the analytic minimum-force SIP targets, and replaying it lands on the target."""
    phys = DiffusionPhysics()
    g = _gen(0)
    s0 = phys.sample_fields(3, g, dtype=F64)
    target = phys.sample_fields(3, g, dtype=F64)
    forces = 10 * torch.randn(horizon, 3, 64, generator=g, dtype=F64)
    states = _rollout(phys.step, s0, forces)
    expected = sip_control_targets(phys, states, forces, target, split="minimum-force")
    result = gauss_newton_correction(phys.step, s0, forces, target, iterations=96, tol=1e-14)
    torch.testing.assert_close(result.forces, expected, rtol=1e-9, atol=1e-9 * expected.abs().max())
    # J Jᵀ has 33 distinct eigenvalues per sample; rounding costs CG some extra iterations.
    assert result.iterations < 96
    torch.testing.assert_close(result.states, states)
    replay = _rollout(phys.step, s0, result.forces)[-1]
    assert float(_rel(replay, target).max()) < 1e-10
    assert float(result.linear_residual.max()) < 1e-10 * float(target.norm(dim=-1).min())


def test_gauss_newton_split_of_sip_control_targets_equals_minimum_force() -> None:
    phys = DiffusionPhysics()
    g = _gen(1)
    s0, target = phys.sample_fields(2, g, dtype=F64), phys.sample_fields(2, g, dtype=F64)
    forces = torch.randn(8, 2, 64, generator=g, dtype=F64)
    states = _rollout(phys.step, s0, forces)
    for eta in (1.0, 0.5):
        mf = sip_control_targets(phys, states, forces, target, eta=eta, split="minimum-force")
        gn = sip_control_targets(phys, states, forces, target, eta=eta, split="gauss-newton",
                                 gn_iterations=96, gn_tol=1e-14)
        torch.testing.assert_close(gn, mf, rtol=1e-9, atol=1e-9 * mf.abs().max())


def _small_burgers() -> BurgersPhysics:
    return BurgersPhysics(n=32, substeps=8, dt=0.03, nu=0.01)


def test_jacobian_products_are_adjoint_and_match_forward_mode() -> None:
    phys = _small_burgers()
    g = _gen(2)
    s0 = phys.sample_fields(2, g, max_mode=3, amplitude=0.5, dtype=F64)
    forces = 0.5 * torch.randn(5, 2, 32, generator=g, dtype=F64)
    _, _, jac = linearize_rollout(phys.step, s0, forces)
    v = torch.randn(5, 2, 32, generator=g, dtype=F64)
    w = torch.randn(2, 32, generator=g, dtype=F64)
    jv, jtw = jac.jvp(v), jac.vjp(w)
    torch.testing.assert_close((jv * w).sum(), (v * jtw).sum(), rtol=1e-12, atol=0)

    def final(f: torch.Tensor) -> torch.Tensor:
        return _rollout(phys.step, s0, f)[-1]

    expected = torch.func.jvp(final, (forces,), (v,))[1]
    torch.testing.assert_close(jv, expected, rtol=1e-10, atol=1e-12)


def test_closed_loop_linearisation_equals_open_loop_on_its_forces() -> None:
    phys = _small_burgers()
    g = _gen(3)
    s0 = phys.sample_fields(2, g, max_mode=3, amplitude=0.5, dtype=F64)

    def policy(t: int, state: torch.Tensor) -> torch.Tensor:
        return -0.5 * state + 0.1 * t

    states, forces, jac = linearize_rollout(phys.step, s0, policy, horizon=4)
    torch.testing.assert_close(forces[2], policy(2, states[2]))
    states2, _, jac2 = linearize_rollout(phys.step, s0, forces)
    torch.testing.assert_close(states, states2)
    w = torch.randn(2, 32, generator=g, dtype=F64)
    torch.testing.assert_close(jac.vjp(w), jac2.vjp(w))


def test_reduces_the_terminal_error_on_reference_burgers_tasks() -> None:
    """One step from zero forces roughly halves the error of the nonlinear problem; near a
    solution (the generating force, perturbed) it converges fast, like Newton's method."""
    phys = BurgersPhysics()
    s0, target, force = BurgersTaskSampler(phys).with_forces(4, _gen(4))
    zero = torch.zeros(32, 4, 128, dtype=F64)
    step = gauss_newton_correction(phys.step, s0, zero, target, iterations=8)
    before = step.residual / target.norm(dim=-1)
    after = _rel(_rollout(phys.step, s0, step.forces)[-1], target)
    assert float((after / before).mean()) < 0.6
    assert bool((step.linear_residual < 0.05 * step.residual).all())  # the linearised problem

    perturbed = force.expand(32, 4, 128) + 0.2 * torch.randn(32, 4, 128, generator=_gen(5),
                                                             dtype=F64)
    near = gauss_newton_correction(phys.step, s0, perturbed, target, iterations=16)
    before = near.residual / target.norm(dim=-1)
    after = _rel(_rollout(phys.step, s0, near.forces)[-1], target)
    assert bool((after < 0.05 * before).all())


def test_damping_shrinks_the_correction_and_few_iterations_still_help() -> None:
    phys = _small_burgers()
    g = _gen(6)
    s0 = phys.sample_fields(3, g, max_mode=3, amplitude=0.5, dtype=F64)
    target = phys.sample_fields(3, g, max_mode=3, amplitude=0.5, dtype=F64)
    forces = torch.zeros(6, 3, 32, dtype=F64)
    norms = []
    for damping in (0.0, 1e-4, 1e-2):
        res = gauss_newton_correction(phys.step, s0, forces, target, iterations=32,
                                      damping=damping)
        norms.append(float(res.correction.norm()))
    assert norms[0] > norms[1] > norms[2] > 0
    one = gauss_newton_correction(phys.step, s0, forces, target, iterations=1)
    assert bool((one.linear_residual < one.residual).all())


def test_early_stop_and_float32() -> None:
    phys = DiffusionPhysics()
    g = _gen(7)
    s0, target = phys.sample_fields(2, g), phys.sample_fields(2, g)
    forces = torch.zeros(4, 2, 64)
    res = gauss_newton_correction(phys.step, s0, forces, target, iterations=100, tol=1e-3)
    assert res.iterations < 100 and res.forces.dtype == torch.float32
    assert float((res.linear_residual / res.residual).max()) < 2e-3


@pytest.mark.parametrize("kwargs,match", [
    ({"iterations": 0}, "iterations"), ({"tol": -1.0}, "tol"), ({"damping": -1.0}, "damping"),
])
def test_bad_settings_raise(kwargs: dict[str, float], match: str) -> None:
    phys = DiffusionPhysics()
    s0 = torch.zeros(1, 64)
    _, _, jac = linearize_rollout(phys.step, s0, torch.zeros(2, 1, 64))
    with pytest.raises(ValueError, match=match):
        solve_minimum_norm(jac, torch.ones(1, 64), **kwargs)  # type: ignore[arg-type]


def test_bad_shapes_raise() -> None:
    phys = DiffusionPhysics()
    with pytest.raises(ValueError, match="forces must have shape"):
        linearize_rollout(phys.step, torch.zeros(2, 64), torch.zeros(3, 64))
    with pytest.raises(ValueError, match="desired"):
        gauss_newton_correction(phys.step, torch.zeros(2, 64), torch.zeros(3, 2, 64),
                                torch.zeros(64))
    with pytest.raises(ValueError, match="horizon"):
        linearize_rollout(phys.step, torch.zeros(2, 64), lambda t, s: s)

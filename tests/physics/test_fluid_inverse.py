"""The fluid inverse problem's physics: energy-keeping flow, data as published, loss, metric and
the two inverses SIP uses."""

from __future__ import annotations

import pytest
import torch

from sipenv.physics.flow import IncompressibleFlowPhysics
from sipenv.physics.fluid_inverse import FluidInversePhysics

SMALL = FluidInversePhysics(shape=(16, 16), steps=4)


@pytest.fixture(scope="module")
def batch() -> tuple[FluidInversePhysics, object]:
    phys = FluidInversePhysics(shape=(32, 32))
    return phys, phys.sample(8, torch.Generator().manual_seed(0), dtype=torch.float64)


def test_keep_energy_conserves_kinetic_energy_and_is_off_by_default() -> None:
    kept = IncompressibleFlowPhysics(shape=(16, 16), advection="mac_cormack", keep_energy=True)
    plain = IncompressibleFlowPhysics(shape=(16, 16), advection="mac_cormack")
    state = plain.sample_fields(3, torch.Generator().manual_seed(1), amplitude=2.0,
                                dtype=torch.float64)
    zero = torch.zeros_like(state[:, :2])
    energy = state[:, :2].square().sum((1, 2, 3))
    out = kept.step(state, zero)
    torch.testing.assert_close(out[:, :2].square().sum((1, 2, 3)), energy)
    lost = plain.step(state, zero)[:, :2].square().sum((1, 2, 3))
    assert bool((lost < energy).all())  # (the interpolation dissipates without it)
    with pytest.raises(ValueError, match="keep_energy=False"):
        kept.force_for(state, out)
    at_rest = torch.zeros_like(state).requires_grad_()
    kept.step(at_rest, zero).sum().backward()
    assert at_rest.grad is not None and bool(torch.isfinite(at_rest.grad).all())


def test_data_as_published(batch) -> None:
    phys, s = batch
    fill = s.marker.mean((-2, -1))
    assert bool(((fill > 0) & (fill < 0.05)).all())  # 5–15 % of a box of 19 % of the domain
    assert bool((s.swirl.abs() <= 2).all())
    assert phys.flow.divergence(s.velocity).abs().max() < 1e-9
    torch.testing.assert_close(s.target, phys.simulate(s.velocity, s.marker))
    # the drift carries the centre of mass to the box centre (up to the swirl and noise)
    com = phys.centre_of_mass(s.target)
    assert bool(((com - 64.0).abs() < 8).all())


def test_loss_and_metric_vanish_at_the_truth_and_ignore_the_mean(batch) -> None:
    phys, s = batch
    assert float(phys.marker_loss(s.target, s.target).abs().max()) == 0.0
    assert float(phys.velocity_l1(s.velocity, s.velocity).abs().max()) < 1e-12
    torch.testing.assert_close(phys.marker_loss(s.target + 0.3, s.target),
                               torch.zeros(8, dtype=torch.float64))
    zero = torch.zeros_like(s.velocity)
    assert bool((phys.marker_loss(phys.simulate(zero, s.marker), s.target) > 0).all())


def test_drift_swirl_inverse_recovers_a_drift_offset(batch) -> None:
    phys, s = batch
    offset = torch.tensor([1.0, -0.5], dtype=torch.float64)[None, :, None, None]
    guess = s.velocity + offset
    corrected = phys.drift_swirl_inverse(guess, s.marker, s.target)
    step = (corrected - guess).mean((-2, -1))  # (the swirl field has zero mean)
    want = -offset[:, :, 0, 0].expand(8, 2)
    # per sample within the path's nonlinearity (the swirl bends a shifted path differently)
    torch.testing.assert_close(step, want, atol=0.5, rtol=0)
    torch.testing.assert_close(step.mean(0), want.mean(0), atol=0.1, rtol=0)


def test_drift_swirl_inverse_iterated_from_rest_recovers_most_of_the_velocity(batch) -> None:
    phys, s = batch
    x = torch.zeros_like(s.velocity)
    start = phys.velocity_l1(x, s.velocity).mean()
    for _ in range(3):
        x = phys.drift_swirl_inverse(x, s.marker, s.target)
    assert phys.velocity_l1(x, s.velocity).mean() < 0.1 * start


def test_gauss_newton_inverse_reduces_the_marker_residual() -> None:
    s = SMALL.sample(4, torch.Generator().manual_seed(2), dtype=torch.float64)
    x = s.velocity + torch.tensor([0.5, 0.5], dtype=torch.float64)[None, :, None, None]
    before = (SMALL.simulate(x, s.marker) - s.target).norm()
    after = (SMALL.simulate(SMALL.gauss_newton_inverse(x, s.marker, s.target), s.marker)
             - s.target).norm()
    assert after < before

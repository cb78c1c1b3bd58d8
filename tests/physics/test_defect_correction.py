"""defect_correction on toy maps with known inverses, its safeguards, and Burgers' use of it."""

from __future__ import annotations

import math

import pytest
import torch

from sipenv.physics import BurgersPhysics, defect_correction

F64 = torch.float64


def _expm1(s: torch.Tensor) -> torch.Tensor:
    return torch.expm1(s)


def _log1p_series(y: torch.Tensor) -> torch.Tensor:
    """A crude approximate inverse of expm1: ``log1p`` truncated after the cubic term."""
    return y - y**2 / 2 + y**3 / 3


def test_converges_to_the_known_inverse() -> None:
    goal = torch.tensor([[0.4, -0.3, 0.1], [0.0, 0.25, -0.45]], dtype=F64)
    out = defect_correction(_expm1, _log1p_series, goal, torch.zeros_like(goal), iterations=30)
    torch.testing.assert_close(out, torch.log1p(goal), atol=1e-12, rtol=0)


def test_works_on_2d_fields_and_with_a_weight() -> None:
    goal = 0.3 * torch.rand(2, 4, 5, generator=torch.Generator().manual_seed(0), dtype=F64)
    out = defect_correction(_expm1, _log1p_series, goal, goal, iterations=60,
                            weight=lambda u: 0.7 * u)
    torch.testing.assert_close(out, torch.log1p(goal), atol=1e-12, rtol=0)


def test_zero_iterations_or_a_zero_weight_return_the_start() -> None:
    goal, start = torch.full((2, 3), 0.2, dtype=F64), torch.full((2, 3), 0.1, dtype=F64)
    assert defect_correction(_expm1, _log1p_series, goal, start, iterations=0) is start
    out = defect_correction(_expm1, _log1p_series, goal, start, iterations=3,
                            weight=lambda u: 0 * u)
    assert torch.equal(out, start)


def test_keeps_the_best_iterate_per_sample_and_never_returns_inf_or_nan() -> None:
    """Sample 0 converges; sample 1's approximate inverse blows up to inf/NaN: it keeps its start.
    """
    def forward(s: torch.Tensor) -> torch.Tensor:
        return s

    def inverse(y: torch.Tensor) -> torch.Tensor:
        return y * torch.tensor([[1.0], [1e308]], dtype=F64) * 10  # sample 1: inf, then NaN

    goal = torch.tensor([[1.0, 2.0], [1.0, 2.0]], dtype=F64)
    start = torch.zeros_like(goal)
    out = defect_correction(forward, inverse, goal, start, iterations=5,
                            weight=lambda u: u / 10)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out[0], goal[0])  # exact after one iteration
    assert torch.equal(out[1], start[1])


def test_result_is_never_worse_than_the_start() -> None:
    """An approximate inverse with the wrong sign diverges; the start is returned."""
    goal = torch.tensor([[0.5, -0.2]], dtype=F64)
    start = torch.tensor([[0.4, -0.1]], dtype=F64)
    out = defect_correction(_expm1, lambda y: -3 * y, goal, start, iterations=4)
    assert torch.equal(out, start)


def test_gradients_flow_through_the_iterations() -> None:
    goal = torch.tensor([[0.2, -0.1]], dtype=F64, requires_grad=True)
    out = defect_correction(_expm1, _log1p_series, goal, torch.zeros_like(goal), iterations=25)
    (grad,) = torch.autograd.grad(out.sum(), goal)
    torch.testing.assert_close(grad, 1 / (1 + goal.detach()), atol=1e-8, rtol=0)  # d log1p


def test_bad_arguments_raise() -> None:
    x = torch.zeros(1, 3)
    with pytest.raises(ValueError, match="iterations must be an int ≥ 0"):
        defect_correction(_expm1, _log1p_series, x, x, iterations=-1)
    with pytest.raises(ValueError, match="iterations"):
        defect_correction(_expm1, _log1p_series, x, x, iterations=math.inf)  # type: ignore
    with pytest.raises(ValueError, match="same shape"):
        defect_correction(_expm1, _log1p_series, x, torch.zeros(1, 4), iterations=1)


def test_burgers_inverse_step_is_defect_correction_of_its_scheme() -> None:
    phys = BurgersPhysics(n=32, inverse_iterations=4)
    gen = torch.Generator().manual_seed(1)
    s = phys.sample_fields(2, gen, max_mode=3, amplitude=0.5, dtype=F64)
    f = phys.sample_fields(2, gen, max_mode=3, amplitude=0.5, dtype=F64)
    nxt = phys.step(s, f)
    trust = phys.factors(dtype=F64).trust

    def weight(u: torch.Tensor) -> torch.Tensor:
        return torch.fft.irfft(trust * torch.fft.rfft(u), n=32)

    expected = defect_correction(phys.free_step, phys.reverse_step, nxt - phys.dt * f, nxt,
                                 iterations=4, weight=weight)
    assert torch.equal(phys.inverse_step(nxt, f, nxt), expected)

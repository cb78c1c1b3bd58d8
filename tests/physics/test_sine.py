"""SinePhysics: forward model against an independent reference, closed-form derivatives against
autograd, the saddle-free Newton inverse, the nearest-solution helper and the sampler.

References here are written out independently of ``sipenv/physics/sine.py`` (numpy formulas,
brute-force enumeration of solution branches, autograd Hessians), so a wrong sign, rotation
direction or branch choice in the implementation fails.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sipenv.physics import SinePhysics
from sipenv.physics.sine import saddle_free_newton_step, saddle_free_step, symmetric_eigh_2x2

F64 = torch.float64
SETTINGS = [(1.0, 0.0), (1.0, 45.0), (3.0, 23.0), (32.0, 45.0), (64.0, 0.0), (20.0, -10.0)]


def _rand(b: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return scale * torch.randn(b, 2, generator=torch.Generator().manual_seed(seed), dtype=F64)


def _targets(b: int, seed: int) -> torch.Tensor:
    return torch.rand(b, 2, generator=torch.Generator().manual_seed(seed), dtype=F64) * 2 - 1


def _ref_forward(x: np.ndarray, xi: float, phi: float, gamma: float = 10.0) -> np.ndarray:
    """``x̂ = R_φ x`` (counter-clockwise rotation by φ degrees), ``(sin(γ x̂₁/ξ), γ ξ x̂₂)``."""
    c, s = np.cos(np.radians(phi)), np.sin(np.radians(phi))
    x1 = c * x[:, 0] - s * x[:, 1]
    x2 = s * x[:, 0] + c * x[:, 1]
    return np.stack([np.sin(gamma * x1 / xi), gamma * xi * x2], -1)


# --- forward model -------------------------------------------------------------------------------


@pytest.mark.parametrize("xi,phi", SETTINGS)
def test_forward_matches_the_reference_formula(xi: float, phi: float) -> None:
    phys = SinePhysics(xi=xi, phi=phi)
    x = _rand(64, 0, scale=xi / 5)
    np.testing.assert_allclose(phys.forward(x).numpy(), _ref_forward(x.numpy(), xi, phi),
                               rtol=1e-12, atol=1e-12)
    assert phys.a == pytest.approx(10 / xi) and phys.b == pytest.approx(10 * xi)


def test_rotation_is_orthogonal_and_unrotate_inverts_it() -> None:
    phys = SinePhysics(xi=2.0, phi=30.0)
    rot = phys.rotation(dtype=F64)
    torch.testing.assert_close(rot @ rot.T, torch.eye(2, dtype=F64))
    x = _rand(5, 1)
    torch.testing.assert_close(phys.unrotate(phys.rotate(x)), x)
    # φ = 90°: the rotated first coordinate is −x₂.
    x_hat = SinePhysics(phi=90.0).rotate(torch.tensor([[1.0, 2.0]], dtype=F64))
    torch.testing.assert_close(x_hat, torch.tensor([[-2.0, 1.0]], dtype=F64))


def test_gradcheck_forward_and_loss_in_float64() -> None:
    for xi, phi in [(1.0, 45.0), (32.0, 10.0)]:
        phys = SinePhysics(xi=xi, phi=phi)
        x = _rand(4, 2).requires_grad_(True)
        y = _targets(4, 3).requires_grad_(True)
        assert torch.autograd.gradcheck(phys.forward, (x,))
        assert torch.autograd.gradgradcheck(phys.forward, (x,))
        assert torch.autograd.gradcheck(phys.loss, (x, y))


def test_does_not_modify_inputs_and_dtype_follows_input() -> None:
    phys = SinePhysics(xi=5.0, phi=20.0)
    x, y = _rand(6, 4), _targets(6, 5)
    copies = x.clone(), y.clone()
    for fn in (phys.inverse, phys.nearest_solution):
        fn(y, x) if fn is phys.inverse else fn(x, y)  # type: ignore[operator]
    phys.loss_hessian(x, y)
    assert torch.equal(x, copies[0]) and torch.equal(y, copies[1])
    for dtype in (torch.float32, F64):
        out = phys.inverse(y.to(dtype), x.to(dtype))
        assert out.dtype == dtype and phys.forward(x.to(dtype)).dtype == dtype


def test_batched_equals_per_sample() -> None:
    phys = SinePhysics(xi=10.0, phi=35.0)
    x, y = _rand(7, 6, scale=2.0), _targets(7, 7)
    for fn in (lambda a, b: phys.inverse(b, a), phys.nearest_solution, phys.loss_hessian):
        batched = fn(x, y)
        single = torch.cat([fn(x[i:i + 1], y[i:i + 1]) for i in range(7)])
        torch.testing.assert_close(batched, single, rtol=1e-13, atol=1e-13)


# --- closed-form derivatives ---------------------------------------------------------------------


@pytest.mark.parametrize("xi,phi", SETTINGS)
def test_closed_form_gradient_jacobian_and_hessian_match_autograd(xi: float, phi: float) -> None:
    phys = SinePhysics(xi=xi, phi=phi)
    x, y = _rand(6, 8, scale=xi / 5), _targets(6, 9)
    grad = phys.loss_gradient(x, y)
    hess = phys.loss_hessian(x, y)
    jac = phys.jacobian(x)
    for i in range(6):
        def loss(v: torch.Tensor, i: int = i) -> torch.Tensor:
            return phys.loss(v[None], y[i:i + 1])[0]

        h_ref = torch.autograd.functional.hessian(loss, x[i])
        g_ref = torch.autograd.functional.jacobian(loss, x[i])
        j_ref = torch.autograd.functional.jacobian(lambda v: phys.forward(v[None])[0], x[i])
        scale = float(h_ref.abs().max())
        torch.testing.assert_close(hess[i], h_ref, rtol=1e-10, atol=1e-12 * scale)
        torch.testing.assert_close(grad[i], g_ref, rtol=1e-10, atol=1e-12 * max(scale, 1))
        torch.testing.assert_close(jac[i], j_ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("xi,phi", SETTINGS)
def test_hessian_eigh_is_an_exact_eigendecomposition(xi: float, phi: float) -> None:
    phys = SinePhysics(xi=xi, phi=phi)
    x, y = _rand(20, 10, scale=xi / 5), _targets(20, 11)
    lam, vec = phys.hessian_eigh(x, y)
    hess = phys.loss_hessian(x, y)
    torch.testing.assert_close(vec @ torch.diag_embed(lam) @ vec.transpose(1, 2), hess)
    torch.testing.assert_close(vec.transpose(1, 2) @ vec, torch.eye(2, dtype=F64).expand(20, 2, 2))
    ref = torch.linalg.eigvalsh(hess)
    torch.testing.assert_close(lam.sort(-1).values, ref, rtol=1e-7, atol=1e-9 * ref.abs().max())
    assert (lam[:, 1] == phys.b**2).all()  # the linear direction's curvature


def test_generic_symmetric_eigh_2x2_matches_torch() -> None:
    gen = torch.Generator().manual_seed(12)
    a = torch.randn(200, 2, 2, generator=gen, dtype=F64)
    sym = torch.cat([a + a.transpose(1, 2),
                     torch.diag_embed(torch.tensor([[3.0, 3.0], [0.0, 0.0], [-1.0, 2.0]],
                                                   dtype=F64))])
    lam, vec = symmetric_eigh_2x2(sym)
    torch.testing.assert_close(lam, torch.linalg.eigvalsh(sym), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(vec @ torch.diag_embed(lam) @ vec.transpose(1, 2), sym,
                               rtol=1e-12, atol=1e-12)
    with pytest.raises(ValueError, match=r"\(B, 2, 2\)"):
        symmetric_eigh_2x2(torch.zeros(3, 3, 3))


# --- saddle-free Newton inverse ------------------------------------------------------------------


def test_well_conditioned_quadratic_is_solved_in_one_step() -> None:
    """L = ½ (x − m)ᵀ A (x − m): Newton lands on m. Eigenvalues 2 and 3 (rotated): the smaller
    one is below the geometric mean, so it takes the limited step, which equals the Newton step
    here because the predicted decrease g²/(2λ) is below the limit (close to the minimum)."""
    gen = torch.Generator().manual_seed(13)
    angle = torch.rand(50, generator=gen, dtype=F64) * math.pi
    c, s = torch.cos(angle), torch.sin(angle)
    q = torch.stack([torch.stack([c, -s], -1), torch.stack([s, c], -1)], -1)
    a = q @ torch.diag_embed(torch.tensor([2.0, 3.0], dtype=F64).expand(50, 2)) @ q.transpose(1, 2)
    m = torch.randn(50, 2, generator=gen, dtype=F64)
    x = m + 0.1 * torch.randn(50, 2, generator=gen, dtype=F64)
    grad = torch.einsum("bij,bj->bi", a, x - m)
    step = saddle_free_newton_step(grad, a)
    torch.testing.assert_close(x + step, m, rtol=1e-12, atol=1e-12)
    # Isotropic curvature: every direction is at the geometric mean → full Newton, any distance.
    far = m + 50 * torch.randn(50, 2, generator=gen, dtype=F64)
    iso = 4.0 * torch.eye(2, dtype=F64).expand(50, 2, 2)
    torch.testing.assert_close(far + saddle_free_newton_step(4.0 * (far - m), iso), m)


@pytest.mark.parametrize("xi,phi", [(1.0, 0.0), (1.0, 45.0), (32.0, 45.0), (64.0, 23.0)])
def test_inverse_converges_quadratically_near_a_solution(xi: float, phi: float) -> None:
    """Near an exact solution (the near-linear regime of P) one step of the inverse is a full
    Newton step: the error falls from δ to O(δ²) in both the well- and ill-conditioned
    directions, whatever ξ."""
    phys = SinePhysics(xi=xi, phi=phi)
    y = _targets(100, 14) * 0.9  # keep away from |y₁| = 1, where cos u = 0
    x_star = phys.nearest_solution(_rand(100, 15, scale=xi / 5), y)
    delta = 1e-4 * xi * _rand(100, 16)
    x_new = phys.inverse(y, x_star + delta)
    err0 = phys.solution_distance(x_star + delta, y)
    err1 = phys.solution_distance(x_new, y)
    # Newton on L = ½ r², r = sin u − y₁ (exact Hessian): e_new ≈ (3/2)|r''/r'| a e² with
    # |r''/r'| = |tan u| ≤ tan(arcsin 0.9) ≈ 2.06, so e_new ≲ 3.1 a e².
    assert (err1 <= 3.5 * phys.a * err0**2 + 1e-12).all()
    assert float((err1 / err0).median()) < 1e-2  # a first-order method would keep O(1)
    # The same step is produced by the generic route (assembled Hessian, generic 2x2 eigh).
    step = saddle_free_newton_step(phys.loss_gradient(x_star + delta, y),
                                   phys.loss_hessian(x_star + delta, y))
    torch.testing.assert_close(x_star + delta + step, x_new, rtol=1e-6, atol=1e-6 * xi)


def test_negative_curvature_step_descends_and_is_limited() -> None:
    """At u = a x̂₁ = π/2 with y₁* = −1 the sine direction has curvature a²(0 − 2·1) < 0 (a
    maximum of sin); a plain Newton step would climb. The saddle-free step descends, its predicted
    decrease is at most max_loss_change, and the loss actually drops."""
    for xi, phi in [(1.0, 0.0), (4.0, 30.0)]:
        phys = SinePhysics(xi=xi, phi=phi, max_loss_change=0.2)
        u = torch.tensor([math.pi / 2 - 0.3, math.pi / 2 + 0.2, math.pi / 2 - 0.01], dtype=F64)
        x_hat = torch.stack([u / phys.a, torch.tensor([0.01, -0.02, 0.0], dtype=F64)], -1)
        x = phys.unrotate(x_hat)
        y = torch.tensor([[-1.0, 0.3], [-1.0, -0.5], [-0.9, 0.0]], dtype=F64)
        lam, vec = phys.hessian_eigh(x, y)
        assert (lam[:, 0] < 0).all()
        grad = phys.loss_gradient(x, y)
        step = phys.newton_step(x, y)
        g_eig = torch.einsum("bij,bi->bj", vec, grad)
        s_eig = torch.einsum("bij,bi->bj", vec, step)
        assert (g_eig[:, 0] * s_eig[:, 0] < 0).all(), "not a descent direction"
        assert ((g_eig[:, 0] * s_eig[:, 0]).abs() <= 0.2 * (1 + 1e-12)).all(), "not limited"
        assert ((grad * step).sum(-1) < 0).all()
        assert (phys.loss(x + step, y) < phys.loss(x, y)).all()
        # A plain Newton step along the negative direction would go uphill (sign flipped).
        assert ((g_eig[:, 0] * (-g_eig[:, 0] / lam[:, 0])) > 0).all()


def test_saddle_free_step_rules_in_eigen_coordinates() -> None:
    g = torch.tensor([[1.0, 2.0], [3.0, -4.0], [0.5, 1.0], [0.0, 0.0], [1.0, 0.0],
                      [10.0, -10.0]], dtype=F64)
    lam = torch.tensor([[2.0, -1.0], [1.0, 100.0], [-4.0, -1.0], [0.0, 0.0], [0.0, 5.0],
                        [1e-310, 1e-310]], dtype=F64)
    step = saddle_free_step(g, lam, 0.2)
    assert torch.isfinite(step).all()
    # row 0: λ = 2 ≥ τ = √2 → Newton −g/λ; λ = −1 → limited descent min(2/1, 0.2/2) = 0.1.
    torch.testing.assert_close(step[0], torch.tensor([-0.5, -0.1], dtype=F64))
    # row 1: λ = 100 ≥ τ = 10 → Newton; λ = 1 < τ → min(3/1, 0.2/3).
    torch.testing.assert_close(step[1], torch.tensor([-0.2 / 3, 0.04], dtype=F64))
    # row 2: both negative → both limited and descending: min(0.125, 0.4), min(1, 0.2).
    torch.testing.assert_close(step[2], torch.tensor([-0.125, -0.2], dtype=F64))
    # row 3: zero gradient and zero curvature → no step, no NaN.
    assert torch.equal(step[3], torch.zeros(2, dtype=F64))
    # row 4: zero curvature with a gradient → the limited step 0.2/|g|; λ = 5 → Newton (g = 0).
    torch.testing.assert_close(step[4], torch.tensor([-0.2, 0.0], dtype=F64))
    # row 5: subnormal positive curvature: a Newton step that overflows to inf is replaced by
    # the limited step 0.2/|g|.
    torch.testing.assert_close(step[5], torch.tensor([-0.02, 0.02], dtype=F64))


def test_inverse_is_finite_for_extreme_inputs() -> None:
    phys = SinePhysics(xi=64.0, phi=45.0)
    x = torch.tensor([[0.0, 0.0], [1e6, -1e6], [1e-30, 1e-30], [3e4, 7.0]], dtype=torch.float32)
    y = torch.tensor([[0.0, 0.0], [1.0, 1.0], [-1.0, -1.0], [0.3, -0.2]], dtype=torch.float32)
    assert torch.isfinite(phys.inverse(y, x)).all()
    # At an exact solution (zero gradient) the inverse does not move.
    x_star = phys.nearest_solution(_rand(8, 17, scale=5.0), _targets(8, 18))
    torch.testing.assert_close(phys.inverse(_targets(8, 18), x_star), x_star, rtol=0, atol=1e-12)


# --- exact solutions -----------------------------------------------------------------------------


@pytest.mark.parametrize("xi,phi", SETTINGS)
def test_nearest_solution_is_exact_and_nearest_over_all_branches(xi: float, phi: float) -> None:
    phys = SinePhysics(xi=xi, phi=phi)
    y = _targets(200, 19)
    x = _rand(200, 20, scale=xi)  # several periods away from the origin
    sol = phys.nearest_solution(x, y)
    torch.testing.assert_close(phys.forward(sol), y, rtol=0, atol=1e-9)
    # Brute force: every solution of both arcsin branches with |k| ≤ K, built independently.
    a, b = 10 / xi, 10 * xi
    c, s = math.cos(math.radians(phi)), math.sin(math.radians(phi))
    ks = torch.arange(-60, 61, dtype=F64)
    base = torch.asin(y[:, 0])[:, None]
    u = torch.cat([base + 2 * math.pi * ks, math.pi - base + 2 * math.pi * ks], 1)  # (B, K)
    x1_hat, x2_hat = u / a, (y[:, 1] / b)[:, None].expand_as(u)
    cand = torch.stack([c * x1_hat + s * x2_hat, -s * x1_hat + c * x2_hat], -1)  # R_φᵀ x̂
    all_dist = (cand - x[:, None, :]).norm(dim=-1)
    torch.testing.assert_close(phys.solution_distance(x, y), all_dist.min(1).values,
                               rtol=1e-9, atol=1e-9)
    assert (phys.solution_distance(x, y) <= all_dist.min(1).values + 1e-9).all()


def test_nearest_solution_for_unreachable_targets_is_the_loss_minimiser() -> None:
    phys = SinePhysics(xi=2.0, phi=10.0)
    x = _rand(10, 21)
    y = torch.tensor([[1.5, 0.2], [-3.0, -0.1]], dtype=F64).repeat(5, 1)
    sol = phys.nearest_solution(x, y)
    torch.testing.assert_close(phys.forward(sol)[:, 0], y[:, 0].clamp(-1, 1))
    assert torch.isfinite(sol).all()


# --- sampler, validation -------------------------------------------------------------------------


def test_sample_targets_is_seeded_uniform_and_shaped() -> None:
    phys = SinePhysics()
    a = phys.sample_targets(5000, torch.Generator().manual_seed(0), dtype=F64)
    b = phys.sample_targets(5000, torch.Generator().manual_seed(0), dtype=F64)
    c = phys.sample_targets(5000, torch.Generator().manual_seed(1), dtype=F64)
    assert a.shape == (5000, 2) and a.dtype == F64
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert float(a.abs().max()) <= 1.0
    assert float(a.mean().abs()) < 0.03 and float(a.var()) == pytest.approx(1 / 3, rel=0.05)
    f32 = phys.sample_targets(5, torch.Generator().manual_seed(0))
    assert f32.dtype == torch.float32
    torch.testing.assert_close(f32.double(), a[:5], rtol=0, atol=1e-7)
    with pytest.raises(ValueError, match="batch"):
        phys.sample_targets(0, torch.Generator())


@pytest.mark.parametrize("kwargs", [
    {"xi": 0.0}, {"xi": -1.0}, {"xi": float("nan")}, {"xi": float("inf")}, {"xi": True},
    {"phi": float("nan")}, {"phi": float("inf")}, {"gamma": 0.0}, {"max_loss_change": 0.0},
    {"max_loss_change": -0.2},
])
def test_invalid_parameters_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SinePhysics(**kwargs)


@pytest.mark.parametrize("shape", [(2,), (3, 3), (4, 2, 1), (0,)])
def test_wrong_shapes_raise_with_the_expected_shape(shape: tuple[int, ...]) -> None:
    phys = SinePhysics()
    bad = torch.zeros(shape, dtype=F64)
    good = torch.zeros(4, 2, dtype=F64)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        phys.forward(bad)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        phys.inverse(bad, good)
    with pytest.raises(ValueError, match=r"\(B, 2\)"):
        phys.nearest_solution(good, bad)
    with pytest.raises(ValueError, match="floating"):
        phys.forward(torch.zeros(4, 2, dtype=torch.int64))

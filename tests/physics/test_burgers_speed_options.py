"""The speed/memory options of :class:`sipenv.physics.BurgersPhysics` that ``bench_peers.py``
measures: ``diffuse_every_substep=False`` (one diffusion per step) and ``save_substeps=False``
(recompute the sub-steps in the backward pass). Float64 derivative checks, as in
``tests/physics/test_burgers.py``."""

from __future__ import annotations

import pytest
import torch
import torch.autograd.forward_ad as fwAD

from sipenv.physics import BurgersPhysics


def _state(batch: int = 2, n: int = 16, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.3 * torch.randn(batch, n, generator=gen, dtype=torch.float64)


@pytest.mark.parametrize("options", [{"diffuse_every_substep": False},
                                     {"save_substeps": False},
                                     {"diffuse_every_substep": False, "save_substeps": False}])
def test_analytic_derivatives_of_options_match_autograd(options: dict[str, bool]) -> None:
    fast = BurgersPhysics(n=16, substeps=3, **options)
    plain = BurgersPhysics(n=16, substeps=3, analytic_derivatives=False, **options)
    x = _state().requires_grad_(True)
    assert torch.autograd.gradcheck(fast.free_step, (x,))
    w, t = _state(seed=1), _state(seed=2)
    vjp_fast = torch.autograd.grad(fast.free_step(x), x, w)[0]
    vjp_plain = torch.autograd.grad(plain.free_step(x), x, w)[0]
    torch.testing.assert_close(vjp_fast, vjp_plain, rtol=1e-12, atol=1e-12)
    with fwAD.dual_level():
        jvp = fwAD.unpack_dual(fast.free_step(fwAD.make_dual(x.detach(), t))).tangent
    jvp_plain = torch.func.jvp(plain.free_step, (x.detach(),), (t,))[1]
    torch.testing.assert_close(jvp, jvp_plain, rtol=1e-12, atol=1e-12)


def test_save_substeps_false_changes_nothing_but_memory() -> None:
    saved, recomputed = BurgersPhysics(), BurgersPhysics(save_substeps=False)
    gen = torch.Generator().manual_seed(0)
    s0 = saved.sample_initial_states(3, gen, dtype=torch.float64)
    force = 0.3 * saved.sample_fields(3, gen, dtype=torch.float64)

    def grads(phys: BurgersPhysics) -> tuple[torch.Tensor, ...]:
        x, f = s0.clone().requires_grad_(True), force.clone().requires_grad_(True)
        u = x
        for _ in range(3):
            u = phys.step(u, f)
        return (u.detach(), *torch.autograd.grad(u.square().sum(), (x, f)))

    for a, b in zip(grads(saved), grads(recomputed), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_diffuse_once_per_step_is_close_and_conserves_the_mean() -> None:
    every, once = BurgersPhysics(), BurgersPhysics(diffuse_every_substep=False)
    gen = torch.Generator().manual_seed(0)
    s = every.sample_fields(4, gen, max_mode=4, amplitude=0.3, dtype=torch.float64)
    a, b = every.free_step(s), once.free_step(s)
    assert float((a - b).norm() / (a - s).norm()) < 0.05  # the splitting error only
    torch.testing.assert_close(b.mean(-1), s.mean(-1), rtol=0, atol=1e-13)


def test_diffuse_once_inverse_step_recovers_smooth_states() -> None:
    phys = BurgersPhysics(diffuse_every_substep=False)
    gen = torch.Generator().manual_seed(0)
    s = phys.sample_fields(4, gen, max_mode=4, amplitude=0.3, dtype=torch.float64)
    zero = torch.zeros_like(s)
    nxt = phys.step(s, zero)
    back = phys.inverse_step(nxt, zero, nxt)
    assert float(((back - s).norm(dim=-1) / s.norm(dim=-1)).max()) < 1e-3


def test_options_must_be_bools() -> None:
    for name in ("save_substeps", "diffuse_every_substep"):
        with pytest.raises(ValueError, match=name):
            BurgersPhysics(**{name: 1})  # type: ignore[arg-type]

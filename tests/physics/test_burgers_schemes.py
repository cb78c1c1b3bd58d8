"""Burgers' advection schemes are strategy objects chosen once from the ``advection`` string."""

from __future__ import annotations

import math
import pickle

import torch

from sipenv.physics import (
    ADVECTION_SCHEMES,
    AdvectionScheme,
    BurgersPhysics,
    SemiLagrangianAdvection,
    UpwindAdvection,
)

F64 = torch.float64


def test_the_string_option_picks_the_scheme_object() -> None:
    assert ADVECTION_SCHEMES == ("upwind", "semi_lagrangian")
    up, sl = BurgersPhysics(), BurgersPhysics(advection="semi_lagrangian")
    assert isinstance(up.scheme, UpwindAdvection) and isinstance(sl.scheme, SemiLagrangianAdvection)
    assert all(isinstance(p.scheme, AdvectionScheme) for p in (up, sl))
    assert "advection='semi_lagrangian'" in repr(sl) and "scheme" not in repr(sl)
    assert up.substeps == UpwindAdvection.default_substeps == 20
    assert sl.substeps == SemiLagrangianAdvection.default_substeps == 1
    assert sl.max_stable_speed == math.inf and up.max_stable_speed == up.dx / up.sub_dt


def test_models_pickle_and_compare_by_their_settings() -> None:
    phys = BurgersPhysics(n=16, advection="semi_lagrangian")
    s = torch.randn(2, 16, dtype=F64, generator=torch.Generator().manual_seed(0))
    out = phys.step(s, s)  # warms the factor cache
    clone = pickle.loads(pickle.dumps(phys))
    assert clone == phys and isinstance(clone.scheme, SemiLagrangianAdvection)
    assert torch.equal(clone.step(s, s), out)
    assert phys != BurgersPhysics(n=16)


def test_upwind_reverse_is_the_velocity_reversed_step() -> None:
    scheme, cells = UpwindAdvection(), torch.arange(8, dtype=F64)
    u = torch.randn(3, 8, dtype=F64, generator=torch.Generator().manual_seed(1))
    assert torch.equal(scheme.reverse(u, 0.3, cells), -scheme.advect(-u, 0.3, cells))
    # Conservative: the flux differences telescope.
    torch.testing.assert_close(scheme.advect(u, 0.3, cells).sum(-1), u.sum(-1))


def test_semi_lagrangian_step_moves_a_constant_flow_by_whole_cells_exactly() -> None:
    scheme, cells = SemiLagrangianAdvection(), torch.arange(8, dtype=F64)
    base = torch.zeros(1, 8, dtype=F64)
    u = base + 2.0  # u τ / Δx = 2 · 0.5 = 1 cell: a pure shift (of a constant: itself)
    torch.testing.assert_close(scheme.advect(u, 0.5, cells), u)
    torch.testing.assert_close(scheme.reverse(scheme.advect(u, 0.5, cells), 0.5, cells), u)

"""The procedural shape library: range, seeding, periodic wrap, geometry of each kind."""

from __future__ import annotations

import math

import pytest
import torch

from sipenv.physics.shapes import (
    SHAPE_KINDS,
    ShapeParams,
    render_shapes,
    sample_shape_params,
    sample_shapes,
)

F64 = torch.float64


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _one_of_each(size: float = 12.0, centre: tuple[float, float] = (32.0, 32.0),
                 angle: float = 0.0) -> ShapeParams:
    n = len(SHAPE_KINDS)
    return ShapeParams(torch.arange(n), torch.tensor([centre], dtype=F64).expand(n, 2),
                       torch.full((n,), size, dtype=F64), torch.full((n,), angle, dtype=F64))


def test_at_least_ten_kinds_all_distinct_in_unit_range() -> None:
    assert len(SHAPE_KINDS) >= 10 and len(set(SHAPE_KINDS)) == len(SHAPE_KINDS)
    m = render_shapes(_one_of_each(), (64, 64), dtype=F64)
    assert m.shape == (len(SHAPE_KINDS), 64, 64)
    assert float(m.min()) >= 0 and float(m.max()) <= 1
    flat = m.flatten(1)
    distance = torch.cdist(flat, flat)
    distance.fill_diagonal_(math.inf)
    assert float(distance.min()) > 1.0  # no two kinds draw the same picture


@pytest.mark.parametrize("kind", SHAPE_KINDS)
def test_each_kind_has_a_plausible_area_and_a_soft_edge(kind: str) -> None:
    i = SHAPE_KINDS.index(kind)
    r = 12.0
    m = render_shapes(_one_of_each(r, angle=0.3), (64, 64), dtype=F64)[i]
    area = float(m.sum())
    assert 0.1 * math.pi * r**2 < area <= 1.05 * math.pi * r**2, area
    # outside the outer radius (plus the rim) everything is empty
    y, x = torch.meshgrid(torch.arange(64.0, dtype=F64), torch.arange(64.0, dtype=F64),
                          indexing="ij")
    far = torch.hypot(y - 32, x - 32) > r + 1.5
    assert float(m[far].max()) == 0.0
    # a soft rim: some values strictly between 0 and 1
    assert int(((m > 0.05) & (m < 0.95)).sum()) > 0
    centre_inside = kind not in ("ring", "l_shape")
    if centre_inside:
        assert float(m[32, 32]) == 1.0


def test_circle_area_matches_pi_r_squared() -> None:
    m = render_shapes(_one_of_each(10.0), (64, 64), dtype=F64)[SHAPE_KINDS.index("circle")]
    assert float(m.sum()) == pytest.approx(math.pi * 100, rel=0.02)


def test_shapes_wrap_around_the_periodic_box() -> None:
    """A shape centred on a corner equals the centred shape rolled there."""
    centred = render_shapes(_one_of_each(10.0, (32.0, 32.0), 0.3), (64, 64), dtype=F64)
    corner = render_shapes(_one_of_each(10.0, (0.0, 0.0), 0.3), (64, 64), dtype=F64)
    assert torch.allclose(corner, torch.roll(centred, (-32, -32), (-2, -1)), atol=1e-12)


def test_sampling_is_seeded_batched_and_respects_kinds_and_sizes() -> None:
    a = sample_shapes(32, _gen(0), shape=(48, 64))
    assert a.shape == (32, 48, 64) and a.dtype == torch.float32
    assert torch.equal(a, sample_shapes(32, _gen(0), shape=(48, 64)))
    assert not torch.equal(a, sample_shapes(32, _gen(1), shape=(48, 64)))
    assert float(a.min()) >= 0 and float(a.max()) <= 1
    p = sample_shape_params(200, _gen(2), shape=(64, 64), kinds=("circle", "star"),
                            size_range=(0.1, 0.15))
    assert set(p.kind.tolist()) == {SHAPE_KINDS.index("circle"), SHAPE_KINDS.index("star")}
    assert float(p.size.min()) >= 6.4 and float(p.size.max()) <= 9.6
    assert float(p.centre.min()) >= 0 and float(p.centre.max()) < 64
    every = sample_shape_params(400, _gen(3), shape=(64, 64))
    assert set(every.kind.tolist()) == set(range(len(SHAPE_KINDS)))


def test_batched_render_equals_per_sample_render() -> None:
    p = sample_shape_params(6, _gen(4), shape=(32, 32))
    batched = render_shapes(p, (32, 32), dtype=F64)
    single = torch.cat([render_shapes(ShapeParams(*(t[i:i + 1] for t in p)), (32, 32),
                                      dtype=F64) for i in range(6)])
    assert torch.equal(batched, single)


def test_physical_lengths_scale_with_the_box() -> None:
    """The same params in a box of length 1 with 64 cells: sizes are in box units."""
    p = ShapeParams(torch.tensor([0]), torch.tensor([[0.5, 0.5]], dtype=F64),
                    torch.tensor([0.15], dtype=F64), torch.tensor([0.0], dtype=F64))
    m = render_shapes(p, (64, 64), length=(1.0, 1.0), dtype=F64)
    assert float(m.sum()) * (1 / 64) ** 2 == pytest.approx(math.pi * 0.15**2, rel=0.02)


def test_bad_arguments_fail_loudly() -> None:
    with pytest.raises(ValueError, match="kind must be one of"):
        sample_shapes(2, _gen(), shape=(32, 32), kinds=("blob",))
    with pytest.raises(ValueError, match="kinds must be a non-empty sequence"):
        sample_shapes(2, _gen(), shape=(32, 32), kinds="circle")
    with pytest.raises(ValueError, match="size_range"):
        sample_shapes(2, _gen(), shape=(32, 32), size_range=(0.2, 0.6))
    with pytest.raises(ValueError, match="softness"):
        sample_shapes(2, _gen(), shape=(32, 32), softness=0.0)
    bad = ShapeParams(torch.tensor([99]), torch.zeros(1, 2, dtype=F64), torch.ones(1, dtype=F64),
                      torch.zeros(1, dtype=F64))
    with pytest.raises(ValueError, match="shape kinds must be ids"):
        render_shapes(bad, (32, 32))

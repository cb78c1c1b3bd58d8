"""Procedural, smooth-edged marker shapes on a periodic 2-D grid (batched, seeded).

A shape is drawn from its signed distance ``d(p)`` (negative inside, in length units) in the
shape's own frame ``p = R(−θ) (x − c)``, where ``x − c`` is the **minimum-image** displacement from
the centre ``c`` on the periodic box (so a shape near an edge wraps around it). The value is a
smooth step of ``d`` over ``softness`` cells::

    v = S(½ − d / (softness · Δ)),    S(t) = t² (3 − 2t) on t clipped to [0, 1],

so ``v ∈ [0, 1]``: 1 inside, 0 outside, an anti-aliased rim about ``softness`` cells wide. The
distance is exact for most kinds and a close bound for ``ellipse`` and ``star`` (enough for a soft
edge). Shapes should stay smaller than half the box (the minimum image is then unique).

Kinds (:data:`SHAPE_KINDS`, ``size`` = the shape's outer radius ``r``: every kind fits in the
circle of radius ``r``): ``circle``, ``square`` (half side ``r/√2``), ``triangle`` (equilateral,
circumradius ``r``), ``ring`` (radii ``0.55 r … r``), ``cross`` (arms ``r`` long, ``0.35 r``
thick), ``bar`` (``2r × 0.6r``), ``diamond`` (a square turned 45°), ``l_shape`` (in the square
of half side ``r/√2``, arms ``0.8 r/√2`` thick), ``star`` (five points, inner radius
``≈ 0.45 r``), ``ellipse`` (semi-axes ``r``, ``0.55 r``), ``hexagon``.

Everything is batched torch without loops over samples or cells; sampling draws in float64 on
``generator.device``, so a seed fixes the shapes whatever the output device and dtype.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch

from sipenv.physics.grid import PeriodicGrid, check_grid_shape
from sipenv.validation import check_choice, check_int, check_positive

__all__ = ["SHAPE_KINDS", "ShapeParams", "render_shapes", "sample_shape_params", "sample_shapes"]

SHAPE_KINDS = ("circle", "square", "triangle", "ring", "cross", "bar", "diamond", "l_shape",
               "star", "ellipse", "hexagon")
"""The shape kinds, in the order of their integer ids."""


class ShapeParams(NamedTuple):
    """Parameters of a batch of shapes (float64 unless stated; length units of the box).

    Attributes:
        kind: Integer ids into :data:`SHAPE_KINDS`, ``(B,)`` int64.
        centre: ``(B, 2)`` as ``[y, x]``.
        size: Outer radius ``r``, ``(B,)``.
        angle: Rotation in radians (counter-clockwise in the ``(x, y)`` plane), ``(B,)``.
    """

    kind: torch.Tensor
    centre: torch.Tensor
    size: torch.Tensor
    angle: torch.Tensor


def _box(px: torch.Tensor, py: torch.Tensor, hx: torch.Tensor | float,
         hy: torch.Tensor | float) -> torch.Tensor:
    """Signed distance to an axis-aligned box of half sides ``(hx, hy)``."""
    qx, qy = px.abs() - hx, py.abs() - hy
    outside = torch.hypot(qx.clamp_min(0), qy.clamp_min(0))
    return outside + torch.maximum(qx, qy).clamp_max(0)


def _polygon(px: torch.Tensor, py: torch.Tensor, r: torch.Tensor, sides: int) -> torch.Tensor:
    """Signed distance (exact inside, a bound outside) to a regular polygon with inradius
    ``r cos(π/sides)`` and one vertex up: the max over its edges' half-planes."""
    inradius = r * math.cos(math.pi / sides)
    out = None
    for j in range(sides):
        a = math.pi / 2 + math.pi / sides + 2 * math.pi * j / sides
        d = px * math.cos(a) + py * math.sin(a) - inradius
        out = d if out is None else torch.maximum(out, d)
    assert out is not None
    return out


def _distance(kind: str, px: torch.Tensor, py: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
    if kind == "circle":
        return torch.hypot(px, py) - r
    if kind == "square":
        return _box(px, py, r / math.sqrt(2), r / math.sqrt(2))
    if kind == "triangle":
        return _polygon(px, py, r, 3)
    if kind == "ring":
        return (torch.hypot(px, py) - 0.775 * r).abs() - 0.225 * r
    if kind == "cross":
        return torch.minimum(_box(px, py, r, 0.175 * r), _box(px, py, 0.175 * r, r))
    if kind == "bar":
        return _box(px, py, r, 0.3 * r)
    if kind == "diamond":
        return (px.abs() + py.abs() - r) / math.sqrt(2)
    if kind == "l_shape":
        a = r / math.sqrt(2)  # the L fills the square of half side a (corners on the circle r)
        t = 0.4 * a
        upright = _box(px + a - t, py, t, a)          # left column, full height
        foot = _box(px, py + a - t, a, t)             # bottom row (low y), full width
        return torch.minimum(upright, foot)
    if kind == "star":
        theta = torch.atan2(py, px) - math.pi / 2
        radius = r * (0.725 + 0.275 * torch.cos(5 * theta))
        return (torch.hypot(px, py) - radius) * 0.6  # a bound: the boundary is not a circle
    if kind == "ellipse":
        a, b = r, 0.55 * r
        q = torch.hypot(px / a, py / b)
        return (q - 1) * b  # first-order distance, a bound scaled by the short semi-axis
    if kind == "hexagon":
        return _polygon(px, py, r, 6)
    raise ValueError(f"unknown shape kind {kind!r}")  # pragma: no cover - ids are checked


def render_shapes(params: ShapeParams, shape: Sequence[int], *,
                  length: Sequence[float] | None = None, softness: float = 1.0,
                  device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Draw a batch of shapes: ``(B, H, W)`` values in ``[0, 1]`` (module docstring).

    Args:
        params: The :class:`ShapeParams` (any device; used in float64).
        shape: Grid ``(H, W)``.
        length: Box ``(L_y, L_x)`` (default: unit cells).
        softness: Width of the smooth rim in cells (> 0).
        device: Output device (default: that of ``params.centre``).
        dtype: Output dtype.

    Raises:
        ValueError: For a bad grid, softness or a kind id outside :data:`SHAPE_KINDS`.
    """
    h, w = check_grid_shape(shape, 2)
    grid = PeriodicGrid((h, w), None if length is None else tuple(length))
    check_positive("softness", softness)
    dev = params.centre.device
    kind = params.kind.to(dev)
    if kind.numel() and not bool(((kind >= 0) & (kind < len(SHAPE_KINDS))).all()):
        raise ValueError(f"shape kinds must be ids in [0, {len(SHAPE_KINDS) - 1}] "
                         f"(SHAPE_KINDS), got {kind.tolist()}.")
    y, x = grid.coordinates(device=dev)
    ly, lx = grid.lengths
    centre = params.centre.to(dev, torch.float64)
    dy = torch.remainder(y - centre[:, 0, None, None] + ly / 2, ly) - ly / 2
    dx = torch.remainder(x - centre[:, 1, None, None] + lx / 2, lx) - lx / 2
    c = torch.cos(params.angle.to(dev, torch.float64))[:, None, None]
    s = torch.sin(params.angle.to(dev, torch.float64))[:, None, None]
    px, py = c * dx + s * dy, -s * dx + c * dy  # rotate the displacement by −θ
    r = params.size.to(dev, torch.float64)[:, None, None]
    dist = torch.full_like(px, math.inf)
    for i, name in enumerate(SHAPE_KINDS):  # a loop over kinds, not samples
        mine = (kind == i)[:, None, None]
        dist = torch.where(mine, _distance(name, px, py, r), dist)
    t = (0.5 - dist / (softness * min(grid.spacing))).clamp(0.0, 1.0)
    out = t * t * (3 - 2 * t)
    return out.to(device=device if device is not None else dev, dtype=dtype)


def _kind_ids(kinds: Sequence[str] | None) -> list[int]:
    if kinds is None:
        return list(range(len(SHAPE_KINDS)))
    if isinstance(kinds, str) or not kinds:
        raise ValueError(f"kinds must be a non-empty sequence of names from SHAPE_KINDS, got "
                         f"{kinds!r}; e.g. kinds=('circle', 'square').")
    return [SHAPE_KINDS.index(check_choice("kind", k, SHAPE_KINDS)) for k in kinds]


def sample_shape_params(batch: int, generator: torch.Generator, *, shape: Sequence[int],
                        length: Sequence[float] | None = None,
                        kinds: Sequence[str] | None = None,
                        size_range: tuple[float, float] = (0.1, 0.2)) -> ShapeParams:
    """Random :class:`ShapeParams` (on ``generator.device``, float64).

    Kinds uniform over ``kinds`` (default: all of :data:`SHAPE_KINDS`); centres uniform over the
    box; outer radius ``r = U(size_range) · min(L_y, L_x)``; angle uniform in ``[0, 2π)``.
    Draws, in this order: kind, centre, size, angle (fixed for a seed).

    Raises:
        ValueError: If ``batch < 1``, ``kinds`` names an unknown kind or ``size_range`` is not
            ``0 < low ≤ high < 0.5``.
    """
    check_int("batch", batch, minimum=1)
    h, w = check_grid_shape(shape, 2)
    grid = PeriodicGrid((h, w), None if length is None else tuple(length))
    ids = torch.tensor(_kind_ids(kinds), device=generator.device)
    low, high = (float(v) for v in size_range)
    if not 0 < low <= high < 0.5:
        raise ValueError(f"size_range must satisfy 0 < low ≤ high < 0.5 (fractions of the box), "
                         f"got {size_range!r}.")
    dev, f64 = generator.device, torch.float64
    pick = torch.randint(len(ids), (batch,), generator=generator, device=dev)
    box = torch.tensor(grid.lengths, device=dev, dtype=f64)
    centre = torch.rand(batch, 2, generator=generator, device=dev, dtype=f64) * box
    u = torch.rand(batch, generator=generator, device=dev, dtype=f64)
    size = (low + (high - low) * u) * min(grid.lengths)
    angle = 2 * math.pi * torch.rand(batch, generator=generator, device=dev, dtype=f64)
    return ShapeParams(ids[pick], centre, size, angle)


def sample_shapes(batch: int, generator: torch.Generator, *, shape: Sequence[int],
                  length: Sequence[float] | None = None, kinds: Sequence[str] | None = None,
                  size_range: tuple[float, float] = (0.1, 0.2), softness: float = 1.0,
                  device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Random smooth-edged shapes ``(batch, H, W)`` in ``[0, 1]``: :func:`sample_shape_params`
    then :func:`render_shapes`. Deterministic for a seed.

    Example:
        >>> m = sample_shapes(4, torch.Generator().manual_seed(0), shape=(64, 64))
        >>> m.shape, bool(m.min() >= 0), bool(m.max() <= 1)
        (torch.Size([4, 64, 64]), True, True)
    """
    params = sample_shape_params(batch, generator, shape=shape, length=length, kinds=kinds,
                                 size_range=size_range)
    dev = device if device is not None else generator.device
    return render_shapes(params, shape, length=length, softness=softness, device=dev,
                         dtype=dtype)

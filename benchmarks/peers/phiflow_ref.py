"""PhiFlow (``phiflow``, torch backend) versions of the operations ``bench_peers.py`` times.

Each ``make_*`` returns an object with ``to_field`` (torch ``(B, N)`` → PhiFlow field, outside
the timed region), ``step`` / ``grad`` (the timed PhiFlow call, field in, field out) and
``to_torch`` (field → torch ``(B, N)``), so that the agreement checks and the timings use the
same code.

Two PhiFlow 3.4 facts, found by trying it and re-checked by ``tests/benchmarks/``, shape
these references:

* ``diffuse.fourier`` ignores the grid spacing (it assumes ``Δx = 1``), so the diffusivity is
  passed as ``ν / Δx²``; the agreement check against ``sipenv.physics.DiffusionPhysics``
  would fail by orders of magnitude otherwise.
* 1-D advection crashes on the torch backend (``grid_sampler(): expected 4D or 5D input``), so
  Burgers runs on a **2-D grid with a singleton y axis** (``x = N``, ``y = 1``, cells square,
  periodic): the velocity has components ``(u, 0)``; the y component stays 0 and the y axis adds
  no physics (the semi-Lagrangian back-trace samples the single row exactly).

PhiFlow's Burgers step is its demo's: diffuse, then advect the velocity by itself
(``advect.semi_lagrangian`` by default, ``advect.mac_cormack`` optionally), with
``diffuse.fourier`` for the diffusion so that it matches sipenv's exact spectral diffusion; the
force is added once at the end of the step, as in sipenv. sipenv's scheme is different
(conservative upwind advection in sub-steps, see ``sipenv.physics.burgers``), so the two agree
only to discretisation error, which the harness reports against a fine-grid reference.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

INSTALL_HINT = 'install it with `pip install -e ".[bench]"`'


def phiflow_version() -> str | None:
    """PhiFlow's version, or ``None`` when it cannot be imported."""
    try:
        phi = importlib.import_module("phi")
        importlib.import_module("phi.torch.flow")  # also makes torch the default backend
    except Exception:  # ImportError, or a broken install: the harness skips PhiFlow rows
        return None
    return str(getattr(phi, "__version__", "unknown"))


def phiml_version() -> str | None:
    try:
        return str(importlib.import_module("phiml").__version__)
    except Exception:
        return None


def _phi() -> Any:
    """The PhiFlow names used here (imported lazily: PhiFlow is an optional dependency)."""
    importlib.import_module("phi.torch.flow")  # torch becomes the default backend
    from phi import field, math
    from phi.field import CenteredGrid
    from phi.geom import Box
    from phi.math import batch, channel, extrapolation, spatial
    from phi.physics import advect, diffuse

    return {"math": math, "field": field, "CenteredGrid": CenteredGrid, "Box": Box,
            "batch": batch, "channel": channel, "spatial": spatial,
            "extrapolation": extrapolation, "advect": advect, "diffuse": diffuse}


@dataclass
class PhiOp:
    """A PhiFlow operation with its converters (see the module docstring)."""

    to_field: Callable[..., Any]
    step: Callable[..., Any]
    to_torch: Callable[[Any], torch.Tensor]
    note: str


def make_diffusion(n: int, *, length: float, nu: float, dt: float) -> PhiOp:
    """``diffuse.fourier`` on a periodic 1-D grid of ``n`` cells over ``[0, length)``."""
    p = _phi()
    dx = length / n
    box = p["Box"](x=length)
    periodic = p["extrapolation"].PERIODIC

    def to_field(u: torch.Tensor) -> Any:
        values = p["math"].tensor(u, p["batch"]("b"), p["spatial"]("x"))
        return p["CenteredGrid"](values, periodic, bounds=box)

    def step(grid: Any) -> Any:
        return p["diffuse"].fourier(grid, nu / dx**2, dt)  # fourier assumes Δx = 1

    def to_torch(grid: Any) -> torch.Tensor:
        return grid.values.native(["b", "x"])

    return PhiOp(to_field, step, to_torch,
                 f"diffuse.fourier on a 1-D periodic grid, diffusivity ν/Δx² = {nu / dx**2:.6g} "
                 "(it assumes Δx = 1)")


def _burgers_grid(p: dict[str, Any], n: int, length: float) -> tuple[Any, Callable[..., Any]]:
    box = p["Box"](x=length, y=length / n)
    periodic = p["extrapolation"].PERIODIC

    def to_field(u: torch.Tensor, *, time_axis: bool = False) -> Any:
        """``(B, N)`` (or ``(T, B, N)`` with ``time_axis``) → velocity ``(u, 0)`` on x × y=1."""
        vec = torch.stack((u, torch.zeros_like(u)), dim=-1)[..., None, :]  # (..., N, 1, 2)
        dims = (p["batch"]("time", "b") if time_axis else p["batch"]("b"))
        values = p["math"].tensor(vec, dims, p["spatial"]("x", "y"),
                                  p["channel"](vector="x,y"))
        return p["CenteredGrid"](values, periodic, bounds=box)

    return box, to_field


def _burgers_to_torch(grid: Any) -> torch.Tensor:
    return grid.values.vector["x"].y[0].native(["b", "x"])


def make_burgers(n: int, *, length: float, nu: float, dt: float,
                 advection: str = "semi_lagrangian") -> PhiOp:
    """One Burgers step ``u ← advect(diffuse(u)) + dt·f`` (``f`` optional, default 0)."""
    p = _phi()
    dx = length / n
    _, to_field = _burgers_grid(p, n, length)
    advect = getattr(p["advect"], advection)

    def step(v: Any, force: Any = None) -> Any:
        v = p["diffuse"].fourier(v, nu / dx**2, dt)
        v = advect(v, v, dt)
        return v if force is None else v + dt * force

    return PhiOp(to_field, step, _burgers_to_torch,
                 f"diffuse.fourier (ν/Δx²) + advect.{advection} on a 2-D grid x={n}, y=1 "
                 "(1-D advection crashes on the torch backend)")


def make_burgers_rollout_grad(n: int, *, length: float, nu: float, dt: float, horizon: int,
                              jit: bool, advection: str = "semi_lagrangian") -> PhiOp:
    """Gradient of ``½‖u_T − u*‖²`` with respect to the ``horizon`` force fields.

    ``step(u0, forces, target)`` takes fields from ``to_field`` (``forces`` built with
    ``time_axis=True``, shape ``(T, B, N)``) and returns the gradient field ``(T, B, N)``;
    PhiFlow differentiates with torch autograd (``math.gradient``), optionally under
    ``math.jit_compile`` (which needs a few slow calls before it runs at speed).
    """
    p = _phi()
    math = p["math"]
    burgers = make_burgers(n, length=length, nu=nu, dt=dt, advection=advection)
    _, to_field = _burgers_grid(p, n, length)

    def loss(u0: Any, forces: Any, target: Any) -> Any:
        v = u0
        for t in range(horizon):
            v = burgers.step(v, forces.time[t])
        return math.l2_loss(v - target)

    grad = math.gradient(loss, wrt="forces", get_output=False)
    fn = math.jit_compile(grad) if jit else grad

    def to_torch(g: Any) -> torch.Tensor:
        return g.values.vector["x"].y[0].native(["time", "b", "x"])

    return PhiOp(to_field, fn, to_torch,
                 f"math.gradient of a {horizon}-step rollout"
                 + (" under math.jit_compile" if jit else " (eager)"))

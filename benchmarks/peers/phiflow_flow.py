"""PhiFlow (``phiflow``, torch backend) reference of sipenv's 2-D incompressible flow step.

PhiFlow's smoke-style step on a periodic box of unit cells (``Box(x=W, y=H)``, cell centres), with
the same splitting as :class:`sipenv.physics.flow.IncompressibleFlowPhysics`::

    v ← advect.semi_lagrangian(v, v, dt) + dt · f         (staggered velocity)
    v, p ← fluid.make_incompressible(v, (), Solve('CG', 1e-4, 1e-4, x0=p))
    m ← advect.semi_lagrangian(m, v, dt)                   (centred marker)

Where the two discretisations differ:

* PhiFlow keeps the velocity on a **staggered** grid and projects with a CG solve of the
  finite-difference Poisson equation (its 5-point Laplacian; divergence-free in the staggered
  finite-difference sense, to the solver tolerance); sipenv keeps it **collocated** and projects
  exactly in Fourier space (divergence-free in the spectral sense, to round-off).
* Self-advection of a staggered velocity samples each face component at its own face position;
  sipenv samples both components at the cell. So the velocities after one step differ by the
  discretisation error (reported by ``bench_flow.py``), not by round-off.
* What is comparable to round-off: the semi-Lagrangian advection of a centred marker by a given
  centred velocity (both bilinear interpolation at ``x − v dt`` with periodic wrap), checked
  first by ``bench_flow.py``.

The CG tolerance is the SIP paper's fluid setting (absolute 1e-4). On periodic boxes PhiFlow's CG
flags some float32 solves as ``Diverged`` (its residual grows 1e5-fold on the singular periodic
system, which has the constant pressure as a null space) even when the result is divergence-free
to ~1e-5; those flags are suppressed (``Solve(suppress=...)``) so that the timings run, and the
benchmark records the divergence PhiFlow reaches.

Tensor conversion: sipenv's ``(B, 2, H, W)`` with channels ``[u_y, u_x]`` ↔ PhiFlow's
``vector='x,y'`` over ``spatial('x', 'y')`` (transposed), outside the timed region.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

INSTALL_HINT = 'install it with `pip install -e ".[bench]"` (or `pip install phiflow`)'


def phiflow_version() -> str | None:
    """PhiFlow's version, or ``None`` when it cannot be imported."""
    try:
        phi = importlib.import_module("phi")
        importlib.import_module("phi.torch.flow")
    except Exception:  # ImportError or a broken install: the harness skips PhiFlow rows
        return None
    return str(getattr(phi, "__version__", "unknown"))


def _flow() -> Any:
    return importlib.import_module("phi.torch.flow")


@dataclass
class PhiFlowSmoke:
    """PhiFlow's step on an ``H × W`` periodic box of unit cells (module docstring)."""

    shape: tuple[int, int]
    dt: float = 1.0
    tolerance: float = 1e-4

    def __post_init__(self) -> None:
        p = _flow()
        self.p = p
        h, w = self.shape
        self.box = p.Box(x=w, y=h)
        self.periodic = p.extrapolation.PERIODIC

    # --- conversion (outside the timed region) ---------------------------------------------

    def _vector_tensor(self, u: torch.Tensor, time_axis: bool = False) -> Any:
        p = self.p
        # (…, 2, H, W) [u_y, u_x] → (…, W, H, 2) [x, y]
        vec = torch.stack((u[..., 1, :, :], u[..., 0, :, :]), -1).transpose(-3, -2)
        dims = p.batch("time", "b") if time_axis else p.batch("b")
        return p.math.tensor(vec, dims, p.spatial("x", "y"), p.channel(vector="x,y"))

    def centred_velocity(self, u: torch.Tensor) -> Any:
        """``(B, 2, H, W)`` → centred PhiFlow velocity."""
        return self.p.CenteredGrid(self._vector_tensor(u), self.periodic, bounds=self.box)

    def staggered_velocity(self, u: torch.Tensor, time_axis: bool = False) -> Any:
        """``(B, 2, H, W)`` (or ``(T, B, 2, H, W)``) → staggered velocity (interpolated to
        the faces by PhiFlow)."""
        h, w = self.shape
        centred = self.p.CenteredGrid(self._vector_tensor(u, time_axis), self.periodic,
                                      bounds=self.box)
        return self.p.StaggeredGrid(centred, self.periodic, x=w, y=h, bounds=self.box)

    def marker(self, m: torch.Tensor) -> Any:
        """``(B, H, W)`` → centred marker."""
        p = self.p
        values = p.math.tensor(m.transpose(-2, -1), p.batch("b"), p.spatial("x", "y"))
        return p.CenteredGrid(values, self.periodic, bounds=self.box)

    @staticmethod
    def marker_to_torch(grid: Any) -> torch.Tensor:
        return grid.values.native(["b", "y", "x"])

    def velocity_to_torch(self, grid: Any) -> torch.Tensor:
        """Any PhiFlow velocity → centred ``(B, 2, H, W)`` ``[u_y, u_x]``."""
        p = self.p
        h, w = self.shape
        centred = p.CenteredGrid(grid, self.periodic, x=w, y=h, bounds=self.box)
        values = centred.values
        return torch.stack((values.vector["y"].native(["b", "y", "x"]),
                            values.vector["x"].native(["b", "y", "x"])), 1)

    def divergence_max(self, v: Any) -> float:
        """max |finite-difference divergence| of a staggered velocity (PhiFlow's own measure)."""
        p = self.p
        return float(p.math.max(abs(p.field.divergence(v).values), dim=p.math.shape(
            p.field.divergence(v).values)).native())

    # --- the operations timed -------------------------------------------------------------

    def _solve(self, x0: Any = None) -> Any:
        p = self.p
        return p.Solve("CG", self.tolerance, self.tolerance, max_iterations=1000, x0=x0,
                       suppress=[p.math.Diverged, p.math.NotConverged])

    def advect_marker(self, m: Any, v: Any) -> Any:
        """``advect.semi_lagrangian(m, v, dt)`` (the comparable operation)."""
        return self.p.advect.semi_lagrangian(m, v, self.dt)

    def step(self, v: Any, m: Any, force: Any, pressure: Any = None) -> tuple[Any, Any, Any]:
        """One step: ``(v, m, pressure)`` after; ``pressure`` warm-starts the next CG."""
        p = self.p
        v = p.advect.semi_lagrangian(v, v, self.dt) + self.dt * force
        v, pressure = p.fluid.make_incompressible(v, (), self._solve(pressure))
        m = p.advect.semi_lagrangian(m, v, self.dt)
        return v, m, pressure

    def step_fn(self, jit: bool) -> Callable[..., Any]:
        fn = self.step
        return self.p.math.jit_compile(fn) if jit else fn

    def rollout_grad_fn(self, horizon: int, jit: bool) -> Callable[..., Any]:
        """``(v0, m0, forces, target) → ∂ ½‖m_T − target‖² / ∂forces`` (``forces`` staggered
        with a ``time`` batch axis), by PhiFlow's ``math.gradient`` (torch autograd)."""
        p = self.p

        def loss(v0: Any, m0: Any, forces: Any, target: Any) -> Any:
            v, m, pressure = v0, m0, None
            for t in range(horizon):
                v, m, pressure = self.step(v, m, forces.time[t], pressure)
            return p.math.l2_loss(m - target)

        grad = p.math.gradient(loss, wrt="forces", get_output=False)
        return p.math.jit_compile(grad) if jit else grad

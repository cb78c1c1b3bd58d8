"""Differentiable 2-D periodic incompressible flow with passive markers and an additive force.

The PDE on the periodic box ``[0, L_y) × [0, L_x)`` is the forced (Navier–)Stokes system of an
incompressible fluid of unit density carrying ``M`` passive markers ``m_j`` (smoke, dye)::

    ∂u/∂t + (u·∇)u = −∇p + ν ∇²u + f + b m_0 ŷ,      ∇·u = 0,
    ∂m_j/∂t + u·∇m_j = 0.

``f`` is the force (acceleration, length/time²), ``b ≥ 0`` an optional buoyancy that lifts the
first marker along ``+y`` (increasing row index; smoke), ``ν ≥ 0`` the kinematic viscosity.

Units and layout
----------------
The grid is a :class:`~sipenv.physics.grid.PeriodicGrid` of ``H × W`` cells on a box of side
lengths ``(L_y, L_x)`` (default: unit cells, ``L = (H, W)``, so velocities are in cells per unit
time; PDE-Control's shape-transition task is 64×64 with ``dt = 1`` in these units). Cell ``(i, j)``
sits at ``(y, x) = (i Δy, j Δx)``; every field is collocated there (no staggering).

The **state** is one tensor ``(B, 2 + M, H, W)`` with channels ``[u_y, u_x, m_0, …, m_{M−1}]``:
the velocity components in the order of the tensor axes (rows = ``y``, columns = ``x``), then the
markers. A **force** is ``(B, 2, H, W)`` with channels ``[f_y, f_x]``: it acts on the velocity
only (no marker sources).

Scheme
------
One step of length ``dt`` (Lie splitting, as in Stam's "Stable Fluids" and PhiFlow's smoke demos)::

    ũ  = A(u; u)                        self-advection with the current velocity
    ũ ← ũ + dt (f + b m_0 ŷ)            force and buoyancy
    û' = e^{−ν|k|² dt} P_k ũ̂            exact viscosity and exact spectral projection
    m' = A(m; u')                       markers advected by the new velocity

``A(φ; v)`` is one of two advection schemes (strategy objects, chosen once by ``advection=``):

* :class:`SemiLagrangian` (default, PhiFlow's ``advect.semi_lagrangian``): every cell takes the
  value at its departure point ``x − v(x) dt`` by periodic bilinear interpolation. Unconditionally
  stable, never overshoots (monotone), **first order** and diffusive: at a fixed Courant number
  the error after a fixed time falls like ``Δx`` (measured order ≈ 1, ``tests/physics/
  test_flow.py``); a whole-cell displacement is an exact shift.
* :class:`MacCormack` (PhiFlow's ``advect.mac_cormack``, Selle et al. 2008): a semi-Lagrangian
  step back, one forward, and half the round-trip error as a correction; then a **limiter** clamps
  every value to the range of the 2×2 cells around its departure point, so no new extrema appear.
  **Second order** for smooth fields (measured order ≈ 2 for pure advection, where the limiter
  rarely acts), unconditionally stable with the limiter, ≈ 3–4× the cost of a semi-Lagrangian step.

Either way the projection after the advection is a Lie splitting, first order in ``dt``: the
whole step converges at first order in time (Taylor–Green test: order ≈ 1 at a fixed Courant
number for both schemes, MacCormack with a far smaller constant).

**Marker mass** (``Σ m``) is not conserved in general by either scheme. Under a *uniform*
velocity the semi-Lagrangian step is a convolution whose weights sum to one: mass is conserved to
round-off. In a non-uniform flow the departure map does not preserve areas exactly: at the
defaults (sampled flows, strain ``dt·max|∇u| ≈ 0.5``) the mass drifts by up to ≈ 12 % over 16
steps. MacCormack conserves mass under a uniform velocity only where its limiter is inactive
(smooth fields: to round-off); on the one-cell soft edges of shapes the limiter clips
undershoots and adds mass (≈ 12 % over 16 steps of uniform translation).

Projection
----------
On a periodic grid the Leray projection is diagonal in Fourier space::

    P_k û = û − k (k·û) / |k|²      (k ≠ 0),     P_0 û = û   (the mean flow is kept),

computed with the real FFT of :class:`~sipenv.physics.grid.PeriodicGrid`, in one pass together
with the viscous decay. **Nyquist modes** (row ``H/2`` or column ``W/2`` for even sizes) carry no
sign of ``k``: the spectral derivative of a real field there is undefined, so neither the
divergence nor the gradient part can be told apart. The projection **sets them to zero**. The
result is divergence-free in the spectral sense — :meth:`IncompressibleFlowPhysics.divergence`,
``∇·u = IFFT(i k_y û_y + i k_x û_x)``, is zero to round-off whatever convention is used for the
Nyquist wavenumbers — and ``P`` is an orthogonal projection (``P² = P = Pᵀ``). A finite-difference
divergence (e.g. central differences) of the result is *not* zero; it is of the order of the
truncation error of that difference. PhiFlow's ``make_incompressible`` instead makes a staggered
grid's finite-difference divergence zero by a CG pressure solve: the two discrete operators
differ by the truncation error of the difference stencil.

Inverse simulators
------------------
``force_for(state, next_state)`` returns the **divergence-free force** ``f = P f`` (zero Nyquist
modes) that takes the velocity of ``state`` to ``P u'`` (``u'`` = the velocity of
``next_state``), i.e. exactly to ``u'`` when ``u'`` is divergence-free with zero Nyquist modes
(every velocity :meth:`~IncompressibleFlowPhysics.step` produces is)::

    f = [ E⁻¹ P û' − P (ũ̂ + dt b m̂_0 ŷ) ] / dt,     ũ = A(u; u),  E = e^{−ν|k|² dt},

with ``E⁻¹ = e^{ν|k|² dt}`` clamped at ``max_gain`` (exact where ``e^{ν|k|² dt} ≤ max_gain``,
always for ``ν = 0``). Any force differing from it by a gradient (or by Nyquist modes) gives the
same step — the projection removes those parts — so this is also the least-norm force. The
markers of ``next_state`` are ignored: a one-step force cannot set a marker directly, only through
the velocity it produces; the marker reached is ``step(state, f)[:, 2:]``.

``inverse_step(next_state, force, state)`` is a local inverse by defect correction
(:func:`~sipenv.physics.defect_correction.defect_correction`), in two stages:

1. markers: solve ``A(m; u') = m'`` for ``m`` (``u'`` is known from ``next_state``), preconditioned
   by the advection with the reversed velocity, ``A(·; −u')``;
2. velocity: with the recovered markers (buoyancy), solve ``P A(u; u) = E⁻¹ u' − dt P(f + b m_0
   ŷ)`` for a divergence-free ``u``, preconditioned by the time-reversed self-advection
   ``P w``, ``w(x) = y(x + w(x) dt)`` (two fixed-point sweeps), started from the velocity of
   ``state``.

Each stage keeps, per sample, the iterate with the smallest residual, so the result is never worse
than ``state`` and never inf/NaN for finite inputs. Accuracy of the round trip
``inverse_step(step(s, f), f, step(s, f))`` at the defaults (64², ``dt = 1``,
``inverse_iterations = 8``, states from :meth:`~IncompressibleFlowPhysics.sample_fields`: RMS
speed 1 cell per step, modes ≤ 3; ``tests/physics/test_flow.py``, numbers from
``benchmarks/bench_flow.py``), relative L2 errors over 16 states:

* velocity: median 2.2e-4, worst 4.5e-4. The inverse degrades with the strain number
  ``dt · max|∇u|`` (the departure map ``x − u dt`` folds as it nears 1): median 4e-5 at strain
  0.26, 2e-4 at 0.52, 2.5e-2 at 1.05;
* markers: median 6 %, worst 13 % for the smooth-edged shapes of
  :mod:`~sipenv.physics.shapes`. The step's interpolation damps the shortest waves of a marker
  (at half a cell of displacement the Nyquist mode is erased), which no inverse restores; the
  iteration keeps the best iterate, so it never does worse than its start.

With ``advection="mac_cormack"`` the preconditioners stay semi-Lagrangian: on the same states the
velocity's round trip is median 7e-4, worst 1.5e-3 (markers: 7 %, worst 16 %).

Derivatives
-----------
Everything is pure, batched torch; dtype (float32/float64) and device follow the input; nothing is
edited in place and no value is read back to the host during a step. Interpolation weights are
differentiable in the departure points (``floor`` has zero derivative), so gradients flow through
the values and the velocity that carries them. The MacCormack limiter is a clamp (piecewise
linear): it has no derivative where the clamped value ties with a bound, e.g. in flat regions of
a marker, where autograd returns one of the one-sided derivatives.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar, NamedTuple

import torch

from sipenv.physics.defect_correction import defect_correction
from sipenv.physics.grid import FactorCache, PeriodicGrid, planar_domain
from sipenv.physics.shapes import sample_shapes
from sipenv.validation import check_choice, check_int, check_nonnegative, check_positive

__all__ = [
    "ADVECTION_SCHEMES",
    "FlowAdvection",
    "FlowFactors",
    "IncompressibleFlowPhysics",
    "MacCormack",
    "SemiLagrangian",
    "periodic_bilinear",
]


class FlowFactors(NamedTuple):
    """Per-``(device, dtype)`` constants of :class:`IncompressibleFlowPhysics`.

    Attributes:
        cells: Cell indices ``(2, H, W)``: ``[i, j]`` (row, column), the departure base.
        sizes: ``[H, W]`` as ``(2, 1, 1)`` (positions wrap modulo these).
        cells_per_time: ``dt / Δ`` per axis, ``(2, 1, 1)``: a velocity times this is a
            displacement in cells over one step.
        mask: ``1[not Nyquist]`` on the spectral shape ``(H, W//2+1)`` (real 0/1).
        keep: ``E · mask`` (real): the decay of the kept modes.
        unit_k: ``E k / |k|`` per axis, ``(2, H, W//2+1)`` (real; zero at ``k = 0`` and on the
            Nyquist modes): ``E P û = keep · û − unit_k (k̂ · û)`` with ``k̂ = k/|k|``.
        direction: ``k / |k|`` per axis, ``(2, H, W//2+1)`` (zero where ``unit_k`` is).
        gain: ``min(e^{ν|k|² dt}, max_gain)``, the clamped inverse decay, ``(H, W//2+1)``.
        derivative: ``i k`` per axis with zero Nyquist wavenumbers, complex ``(2, H, W//2+1)``.
    """

    cells: torch.Tensor
    sizes: torch.Tensor
    cells_per_time: torch.Tensor
    mask: torch.Tensor
    keep: torch.Tensor
    unit_k: torch.Tensor
    direction: torch.Tensor
    gain: torch.Tensor
    derivative: torch.Tensor


# --- interpolation ------------------------------------------------------------------------------

class _Stencil(NamedTuple):
    """Where to read a field: the flat indices of the 2×2 cells around each departure point
    (``(B, 1, 4·H·W)``) and their bilinear weights (``(B, 1, 4, H·W)``)."""

    flat_index: torch.Tensor
    weights: torch.Tensor


def _wrap(i: torch.Tensor, n: int) -> torch.Tensor:
    # A bit mask when n is a power of two (much faster than remainder), else remainder.
    return i.bitwise_and(n - 1) if n & (n - 1) == 0 else i.remainder(n)


def _stencil(pos: torch.Tensor) -> _Stencil:
    """The :class:`_Stencil` of departure points ``pos`` ``(B, 2, H, W)`` (in cells, ``[y, x]``,
    any real value; periodic)."""
    b, _, h, w = pos.shape
    left = pos.floor()
    frac = pos - left
    i = left.long()
    y0, x0 = _wrap(i[:, 0], h), _wrap(i[:, 1], w)
    y1, x1 = _wrap(y0 + 1, h), _wrap(x0 + 1, w)
    r0, r1 = y0 * w, y1 * w
    index = torch.stack((r0 + x0, r0 + x1, r1 + x0, r1 + x1), 1).reshape(b, 1, 4 * h * w)
    fy, fx = frac[:, 0], frac[:, 1]
    gy, gx = 1 - fy, 1 - fx
    weights = torch.stack((gy * gx, gy * fx, fy * gx, fy * fx), 1).reshape(b, 1, 4, h * w)
    return _Stencil(index, weights)


def _corners(values: torch.Tensor, stencil: _Stencil) -> torch.Tensor:
    """The 2×2 cell values around each departure point: ``(B, C, H, W)`` → ``(B, C, 4, H·W)``."""
    b, c, h, w = values.shape
    flat = values.reshape(b, c, h * w)
    return flat.gather(2, stencil.flat_index.expand(b, c, 4 * h * w)).view(b, c, 4, h * w)


def periodic_bilinear(values: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``values`` at the points ``pos``, periodic bilinear interpolation.

    The points are wrapped into ``[0, H) × [0, W)``, the fields padded by one periodic row and
    column, and read by ``torch.nn.functional.grid_sample`` (``align_corners=True``): the same
    interpolation as gathering the 2×2 cells and weighting them (to float round-off, ~1e-6 of a
    cell in float32 from the coordinate normalisation), 2–3× faster forward and backward.

    Args:
        values: Fields ``(B, C, H, W)``.
        pos: Points ``(B, 2, H, W)`` in cells, ``[row, column]`` (any real value: wrapped
            periodically). A point on a cell reads that cell's value (to round-off).

    Returns:
        ``(B, C, H, W)``; differentiable in ``values`` and ``pos``.
    """
    h, w = values.shape[-2:]
    sizes = torch.tensor([float(h), float(w)], device=pos.device, dtype=pos.dtype).view(2, 1, 1)
    return _grid_sample(values, pos, sizes)


def _grid_sample(values: torch.Tensor, pos: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    # Unnormalised pixel = (g + 1)/2 · (size_padded − 1) = (g + 1)/2 · N  ⇒  g = 2 pos/N − 1.
    unit = torch.remainder(pos, sizes).div_(sizes).mul_(2.0).sub_(1.0)
    grid = unit.permute(0, 2, 3, 1).flip(-1)  # (B, H, W, [x, y])
    padded = torch.nn.functional.pad(values, (0, 1, 0, 1), mode="circular")
    return torch.nn.functional.grid_sample(padded, grid, mode="bilinear",
                                           padding_mode="border", align_corners=True)


# --- advection schemes --------------------------------------------------------------------------

class FlowAdvection:
    """An advection scheme ``A(φ; v)`` over one step, as a strategy object.

    ``advect(values, velocity, factors)`` transports ``values`` ``(B, C, H, W)`` along
    ``velocity`` ``(B, 2, H, W)`` for one step (``factors``: the model's :class:`FlowFactors`).
    Schemes are stateless.
    """

    name: ClassVar[str]
    order: ClassVar[int]
    """Documented order of accuracy of pure advection at a fixed Courant number."""

    def advect(self, values: torch.Tensor, velocity: torch.Tensor,
               factors: FlowFactors) -> torch.Tensor:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class SemiLagrangian(FlowAdvection):
    """``φ'(x) = φ(x − v(x) dt)``, periodic bilinear interpolation (first order, monotone)."""

    name = "semi_lagrangian"
    order = 1

    def advect(self, values: torch.Tensor, velocity: torch.Tensor,
               factors: FlowFactors) -> torch.Tensor:
        pos = torch.addcmul(factors.cells, velocity, factors.cells_per_time, value=-1.0)
        return _grid_sample(values, pos, factors.sizes)


class MacCormack(FlowAdvection):
    """MacCormack with the min/max limiter of Selle et al. (2008), as PhiFlow's
    ``advect.mac_cormack`` (``correction_strength = 1``, Euler back-trace)::

        φ̂ = SL(φ; v),   φ̃ = SL(φ̂; −v),   φ' = clamp(φ̂ + (φ − φ̃)/2, lo, hi)

    where ``lo``/``hi`` are the min/max of ``φ`` over the 2×2 cells around the departure point
    (second order where the limiter is inactive; no new extrema).
    """

    name = "mac_cormack"
    order = 2

    def advect(self, values: torch.Tensor, velocity: torch.Tensor,
               factors: FlowFactors) -> torch.Tensor:
        cells, cpt = factors.cells, factors.cells_per_time
        back = _stencil(torch.addcmul(cells, velocity, cpt, value=-1.0))
        corners = _corners(values, back)
        predicted = (corners * back.weights).sum(2).view(values.shape)
        returned = _grid_sample(predicted, torch.addcmul(cells, velocity, cpt), factors.sizes)
        corrected = torch.add(predicted, values - returned, alpha=0.5)
        lo = corners.amin(2).view(values.shape)
        hi = corners.amax(2).view(values.shape)
        return torch.clamp(corrected, lo, hi)


_SCHEMES: dict[str, type[FlowAdvection]] = {c.name: c for c in (SemiLagrangian, MacCormack)}

ADVECTION_SCHEMES = tuple(_SCHEMES)
"""Names accepted by ``IncompressibleFlowPhysics(advection=...)``."""


# --- the model ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class IncompressibleFlowPhysics:
    """Periodic 2-D incompressible flow with ``markers`` passive markers (module docstring).

    Args:
        shape: Grid ``(H, W)`` (each ≥ 4).
        length: Box ``(L_y, L_x)``; default: unit cells, ``(H, W)``.
        dt: Time step (> 0). Any value is stable (semi-Lagrangian advection, exact projection
            and viscosity); accuracy needs ``max|u| dt`` of a few cells at most.
        nu: Kinematic viscosity ``ν`` (≥ 0), integrated exactly in Fourier space.
        markers: Number ``M`` of passive marker channels (≥ 0).
        advection: ``"semi_lagrangian"`` (default) or ``"mac_cormack"``.
        buoyancy: ``b`` (≥ 0): acceleration ``b · m_0`` along ``+y`` (needs ``markers ≥ 1``).
        inverse_iterations: Defect-correction iterations per stage of :meth:`inverse_step`
            (≥ 0).
        max_gain: Clamp of the inverse viscous decay ``e^{ν|k|² dt}`` (≥ 1) in
            :meth:`force_for` and :meth:`inverse_step`.
        keep_energy: After each step, rescale the velocity so that its kinetic energy
            ``Σ|u|²`` equals the one before the step (per sample): the energy-conserving
            inviscid flow of the SIP paper's fluid experiment (Holl, Koltun & Thuerey, 2022),
            which removes the energy the advection's interpolation dissipates. Meant for
            unforced flows (a force's work is undone too); :meth:`force_for` and
            :meth:`inverse_step` refuse it. Default ``False`` (bit-identical steps).

    State ``(B, 2 + M, H, W)`` = ``[u_y, u_x, m_0, …]``; force ``(B, 2, H, W)`` = ``[f_y, f_x]``.

    Example:
        >>> phys = IncompressibleFlowPhysics(shape=(32, 32), markers=1)
        >>> s = phys.sample_fields(2, torch.Generator().manual_seed(0))
        >>> f = torch.zeros(2, 2, 32, 32)
        >>> s1 = phys.step(s, f)
        >>> bool(phys.divergence(s1[:, :2]).abs().max() < 1e-5)
        True
    """

    shape: tuple[int, int] = (64, 64)
    length: tuple[float, float] | None = None
    dt: float = 1.0
    nu: float = 0.0
    markers: int = 1
    advection: str = "semi_lagrangian"
    buoyancy: float = 0.0
    inverse_iterations: int = 8
    max_gain: float = 1e4
    keep_energy: bool = False
    _cache: FactorCache = field(default_factory=FactorCache, init=False, repr=False,
                                compare=False)
    _domain: PeriodicGrid = field(init=False, repr=False, compare=False)
    _scheme: FlowAdvection = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        domain = planar_domain(self.shape, self.length)
        object.__setattr__(self, "shape", domain.shape)
        object.__setattr__(self, "length", domain.length)
        object.__setattr__(self, "_domain", domain)
        object.__setattr__(self, "dt", check_positive("dt", self.dt))
        object.__setattr__(self, "nu", check_nonnegative("nu", self.nu))
        check_int("markers", self.markers, minimum=0)
        check_choice("advection", self.advection, ADVECTION_SCHEMES)
        object.__setattr__(self, "buoyancy", check_nonnegative("buoyancy", self.buoyancy))
        if self.buoyancy > 0 and self.markers < 1:
            raise ValueError("buoyancy > 0 needs a marker to act on; pass markers ≥ 1 or "
                             "buoyancy=0.")
        check_int("inverse_iterations", self.inverse_iterations, minimum=0)
        gain = check_positive("max_gain", self.max_gain)
        if gain < 1:
            raise ValueError(f"max_gain must be ≥ 1, got {self.max_gain}.")
        object.__setattr__(self, "_scheme", _SCHEMES[self.advection]())
        if not isinstance(self.keep_energy, bool):
            raise ValueError(f"keep_energy must be True or False, got {self.keep_energy!r}.")

    # --- geometry -------------------------------------------------------------------------------

    @property
    def domain(self) -> PeriodicGrid:
        """The periodic ``H × W`` grid."""
        return self._domain

    @property
    def n(self) -> int:
        """Cells per field, ``H · W`` (the physics contract's size)."""
        return self.domain.cells

    @property
    def channels(self) -> int:
        """Channels of a state, ``2 + markers``."""
        return 2 + self.markers

    @property
    def scheme(self) -> FlowAdvection:
        """The advection strategy object chosen by ``advection``."""
        return self._scheme

    def _build(self, device: torch.device) -> FlowFactors:
        g = self.domain
        h, w = g.shape
        iy = torch.arange(h, device=device, dtype=torch.float64)[:, None].expand(h, w)
        ix = torch.arange(w, device=device, dtype=torch.float64)[None, :].expand(h, w)
        cells = torch.stack((iy, ix))
        cpt = torch.tensor([self.dt / d for d in g.spacing], device=device,
                           dtype=torch.float64).view(2, 1, 1)
        ky, kx = g.wavenumbers(device)
        my, mx = g.mode_numbers(device)
        nyquist = torch.zeros(g.spectral_shape, dtype=torch.bool, device=device)
        if h % 2 == 0:
            nyquist = nyquist | (my.abs() == h // 2)
        if w % 2 == 0:
            nyquist = nyquist | (mx == w // 2)
        k = torch.stack(torch.broadcast_tensors(ky, kx))  # (2, H, Wh)
        k = torch.where(nyquist, torch.zeros_like(k), k)
        k2 = g.wavenumber_squared(device)
        decay = torch.exp(-self.nu * self.dt * k2)
        knorm = k.square().sum(0).sqrt()
        direction = torch.where(knorm > 0, k / knorm.clamp_min(1e-300), torch.zeros_like(k))
        mask = (~nyquist).to(torch.float64)
        keep = decay * mask
        gain = torch.exp(torch.clamp(self.nu * self.dt * k2, max=math.log(self.max_gain)))
        sizes = torch.tensor([float(h), float(w)], device=device,
                             dtype=torch.float64).view(2, 1, 1)
        return FlowFactors(cells, sizes, cpt, mask, keep, decay * direction, direction, gain,
                           1j * k)

    def factors(self, device: torch.device | str | None = None,
                dtype: torch.dtype = torch.float32) -> FlowFactors:
        """The cached :class:`FlowFactors` for ``(device, dtype)``."""
        return self._cache.get(device, dtype, self._build)

    # --- checks ---------------------------------------------------------------------------------

    def _check_state(self, name: str, x: torch.Tensor) -> None:
        self.domain.check(name, x, components=self.channels)

    def _check_force(self, name: str, x: torch.Tensor) -> None:
        self.domain.check(name, x, components=2)

    def _check_no_energy_rescaling(self, what: str) -> None:
        if self.keep_energy:
            raise ValueError(f"{what} inverts the step without the energy rescaling; build the "
                             "physics with keep_energy=False to use it.")

    # --- building blocks ------------------------------------------------------------------------

    def _project(self, velocity: torch.Tensor, f: FlowFactors, *, viscous: bool = True
                 ) -> torch.Tensor:
        """``E P u`` (or ``P u`` with ``viscous=False``) via one real FFT pair."""
        spec = torch.fft.rfft2(velocity)
        if viscous:
            keep, unit = f.keep, f.unit_k
        else:
            keep, unit = f.mask, f.direction
        along = (f.direction * spec).sum(1, keepdim=True)  # k̂·û, (B, 1, H, Wh)
        return torch.fft.irfft2(torch.addcmul(keep * spec, unit, along, value=-1.0),
                                s=self.shape)

    def project(self, velocity: torch.Tensor) -> torch.Tensor:
        """The Leray projection ``P u`` (divergence-free, zero Nyquist modes), ``(B, 2, H, W)``."""
        self._check_force("velocity", velocity)
        return self._project(velocity, self.factors(velocity.device, velocity.dtype),
                             viscous=False)

    def divergence(self, velocity: torch.Tensor) -> torch.Tensor:
        """Spectral divergence ``IFFT(i k_y û_y + i k_x û_x)`` (Nyquist wavenumbers 0),
        ``(B, 2, H, W)`` → ``(B, H, W)``; zero to round-off after every step."""
        self._check_force("velocity", velocity)
        d = self.factors(velocity.device, velocity.dtype).derivative
        return torch.fft.irfft2((d * torch.fft.rfft2(velocity)).sum(1), s=self.shape)

    def gradient_norm(self, velocity: torch.Tensor) -> torch.Tensor:
        """``‖∇u‖₂`` per sample (spectral, Parseval), ``(B,)``: the scale that
        :meth:`divergence` is measured against (``‖∇·u‖ ≤ √2 ‖∇u‖``)."""
        self._check_force("velocity", velocity)
        d = self.factors(velocity.device, velocity.dtype).derivative
        spec = torch.fft.rfft2(velocity)
        grads = torch.fft.irfft2(d[:, None] * spec[:, None], s=self.shape)  # (B, 2, 2, H, W)
        return grads.flatten(1).norm(dim=1)

    def advect(self, values: torch.Tensor, velocity: torch.Tensor) -> torch.Tensor:
        """``A(φ; v)``: transport ``values`` ``(B, C, H, W)`` by ``velocity`` ``(B, 2, H, W)``
        for one step ``dt`` with the model's scheme."""
        self._check_force("velocity", velocity)
        if values.ndim != 4 or values.shape[0] != velocity.shape[0] or tuple(
                values.shape[2:]) != self.shape:
            got = tuple(values.shape)
            raise ValueError(f"values must have shape ({velocity.shape[0]}, C, {self.shape[0]}, "
                             f"{self.shape[1]}) (batch, channels, rows, columns), got {got}.")
        return self._scheme.advect(values, velocity, self.factors(values.device, values.dtype))

    def _advected_velocity(self, u: torch.Tensor, m: torch.Tensor, force: torch.Tensor,
                           f: FlowFactors) -> torch.Tensor:
        """``ũ + dt (force + b m_0 ŷ)`` (before projection)."""
        adv = self._scheme.advect(u, u, f)
        total = torch.add(adv, force, alpha=self.dt)
        if self.buoyancy > 0:
            lift = torch.nn.functional.pad(m[:, :1] * (self.dt * self.buoyancy), (0, 0, 0, 0, 0, 1))
            total = total + lift
        return total

    # --- forward and inverse simulators -----------------------------------------------------

    def step(self, state: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        """One step of length ``dt`` (module docstring).

        Args:
            state: ``(B, 2 + M, H, W)`` = ``[u_y, u_x, markers…]``.
            force: ``(B, 2, H, W)`` = ``[f_y, f_x]`` (acceleration), constant over the step.

        Returns:
            The next state ``(B, 2 + M, H, W)``; its velocity is divergence-free with zero
            Nyquist modes.

        Raises:
            ValueError: If a tensor does not have its shape.
        """
        self._check_state("state", state)
        self._check_force("force", force)
        f = self.factors(state.device, state.dtype)
        u, m = state[:, :2], state[:, 2:]
        u_new = self._project(self._advected_velocity(u, m, force, f), f)
        if self.keep_energy:  # (rescaled to the kinetic energy before the step)
            tiny = torch.finfo(u.dtype).tiny  # (at rest: a factor 1, finite derivatives)
            before = u.square().sum((1, 2, 3), keepdim=True).clamp_min(tiny)
            after = u_new.square().sum((1, 2, 3), keepdim=True).clamp_min(tiny)
            u_new = u_new * torch.sqrt(before / after)
        if self.markers == 0:
            return u_new
        m_new = self._scheme.advect(m, u_new, f)
        return torch.cat((u_new, m_new), 1)

    def force_for(self, state: torch.Tensor, next_state: torch.Tensor) -> torch.Tensor:
        """The divergence-free force ``(B, 2, H, W)`` that takes the velocity of ``state`` to
        the velocity of ``next_state`` (exact when that velocity is divergence-free with zero
        Nyquist modes and ``e^{ν|k|²dt} ≤ max_gain``; the markers of ``next_state`` are ignored;
        see the module docstring)."""
        self._check_state("state", state)
        self._check_state("next_state", next_state)
        self._check_no_energy_rescaling("force_for")
        f = self.factors(state.device, state.dtype)
        u, m = state[:, :2], state[:, 2:]
        zero = torch.zeros_like(u)
        before = self._advected_velocity(u, m, zero, f)
        spec = f.gain * torch.fft.rfft2(next_state[:, :2]) - torch.fft.rfft2(before)
        along = (f.direction * spec).sum(1, keepdim=True)
        out = torch.addcmul(f.mask * spec, f.direction, along, value=-1.0)
        return torch.fft.irfft2(out, s=self.shape) / self.dt

    def _reverse_self_advection(self, y: torch.Tensor, f: FlowFactors) -> torch.Tensor:
        """``P w`` with ``w(x) = y(x + w(x) dt)`` (two fixed-point sweeps from ``w = y``)."""
        w = y
        for _ in range(2):
            w = _grid_sample(y, torch.addcmul(f.cells, w, f.cells_per_time), f.sizes)
        return self._project(w, f, viscous=False)

    def inverse_step(self, next_state: torch.Tensor, force: torch.Tensor,
                     state: torch.Tensor) -> torch.Tensor:
        """Local inverse of :meth:`step` w.r.t. the state, started from ``state``.

        Returns ``s`` ``(B, 2 + M, H, W)`` with ``step(s, force) ≈ next_state`` (two-stage
        defect correction; module docstring). Its velocity is divergence-free.
        """
        self._check_state("next_state", next_state)
        self._check_force("force", force)
        self._check_state("state", state)
        self._check_no_energy_rescaling("inverse_step")
        f = self.factors(state.device, state.dtype)
        u_next = next_state[:, :2]
        it = self.inverse_iterations
        if self.markers:
            m = defect_correction(
                lambda x: self._scheme.advect(x, u_next, f),
                lambda x: _grid_sample(x, torch.addcmul(f.cells, u_next, f.cells_per_time),
                                       f.sizes),
                next_state[:, 2:], state[:, 2:], iterations=it)
        else:
            m = state[:, 2:]
        # goal: P A(u) = E⁻¹ u' − dt P(force + b m_0 ŷ)
        zero_u = torch.zeros_like(u_next)
        sources = self._advected_velocity(zero_u, m, force, f) if self.buoyancy > 0 else (
            force * self.dt)
        spec = f.gain * torch.fft.rfft2(u_next) - torch.fft.rfft2(sources)
        along = (f.direction * spec).sum(1, keepdim=True)
        goal = torch.fft.irfft2(torch.addcmul(f.mask * spec, f.direction, along, value=-1.0),
                                s=self.shape)
        u = defect_correction(
            lambda x: self._project(self._scheme.advect(x, x, f), f, viscous=False),
            lambda x: self._reverse_self_advection(x, f),
            goal, self._project(state[:, :2], f, viscous=False), iterations=it)
        return torch.cat((u, m), 1)

    # --- samplers -------------------------------------------------------------------------------

    def sample_velocities(self, batch: int, generator: torch.Generator, *, max_mode: int = 3,
                          amplitude: float = 1.0, device: torch.device | str | None = None,
                          dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Smooth divergence-free velocities ``(batch, 2, H, W)``: ``u = ∇⊥ψ`` (``u_y = −∂ψ/∂x``,
        ``u_x = ∂ψ/∂y``) of a stream function ``ψ`` from
        :meth:`~sipenv.physics.grid.PeriodicGrid.sample_smooth` (modes ``|p|, |q| ≤ max_mode``),
        scaled per sample to the RMS speed ``amplitude`` (length/time; ``√⟨|u|²⟩``). Drawn in
        float64 on ``generator.device``; zero mean, exactly divergence-free, no Nyquist modes.

        Raises:
            ValueError: If ``max_mode`` is not in ``[1, min(H, W)/2)``, ``batch < 1`` or
                ``amplitude < 0``.
        """
        check_nonnegative("amplitude", amplitude)
        psi = self.domain.sample_smooth(batch, generator, max_mode=max_mode,
                                        device=generator.device, dtype=torch.float64)
        ky, kx = self.domain.wavenumbers(generator.device)
        spec = torch.fft.rfft2(psi)
        u = torch.fft.irfft2(torch.stack((-1j * kx * spec, 1j * ky * spec), 1), s=self.shape)
        rms = u.square().sum(1).mean((-2, -1)).sqrt().clamp_min(1e-300)
        u = u * (amplitude / rms).view(-1, 1, 1, 1)
        return u.to(device=device if device is not None else generator.device, dtype=dtype)

    def sample_fields(self, batch: int, generator: torch.Generator, *, max_mode: int = 3,
                      amplitude: float = 1.0, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Random states ``(batch, 2 + M, H, W)``: a velocity from :meth:`sample_velocities`
        and, per marker, a random shape from :func:`~sipenv.physics.shapes.sample_shapes`
        (values in ``[0, 1]``). The contract's seeded sampler."""
        u = self.sample_velocities(batch, generator, max_mode=max_mode, amplitude=amplitude,
                                   device=device, dtype=dtype)
        if self.markers == 0:
            return u
        dev = device if device is not None else generator.device
        m = torch.stack([sample_shapes(batch, generator, shape=self.shape, device=dev,
                                       dtype=dtype) for _ in range(self.markers)], 1)
        return torch.cat((u, m), 1)

"""Differentiable 1-D periodic viscous Burgers equation with an additive force.

The PDE on the periodic domain ``[0, L)`` is::

    ∂u/∂t + u ∂u/∂x = ν ∂²u/∂x² + f(x),     i.e.   ∂u/∂t + ∂(u²/2)/∂x = ν ∂²u/∂x² + f.

Scheme
------
One step of length ``dt`` is ``S = substeps`` sub-steps of ``τ = dt / S``, each a conservative
first-order upwind finite-volume step of the advection followed by the exact spectral diffusion of
length ``τ`` (Lie splitting; diffusion in sub-steps as in the reference setting), and the force is
added once at the end of the step::

    u ← u − (τ/Δx) (F_{i+½} − F_{i−½}),    F_{i+½} = ½ max(u_i, 0)² + ½ min(u_{i+1}, 0)²
    û_k ← exp(−ν k² τ) û_k                  (every real Fourier mode k, exactly)
    s' = P₀(s) + dt · f                     (after the S sub-steps)

``F`` is the Engquist–Osher flux of ``u²/2`` (upwind, continuously differentiable). The scheme
conserves the mean exactly (the flux differences telescope; diffusion leaves mode 0 alone), never
increases ``½∫u²`` without force, and captures shocks without oscillations (the upwind step is
monotone; the exact spectral diffusion rings by ≲ 1e-3 of the jump at a front two cells wide), under
the **CFL condition** ``max|u| · τ / Δx ≤ 1``. It is first order: its numerical viscosity is about
``|u| Δx / 2 · (1 − |u| τ/Δx)`` (≈ 0.005 for ``|u| = 3`` at the defaults), larger than ``ν = 0.003``
of the reference setting, so fronts are a few cells wide rather than ``ν/|u|``.

At the defaults (128 cells on ``[0, 1]``, ``ν = 0.003``, ``dt = 0.03``, 20 sub-steps) the scheme
is stable for ``max|u| ≤ Δx / τ ≈ 5.2``: the reference states stay below 3, and 32 steps of a
force of at most 2 add at most ``32 · 0.03 · 2 ≈ 1.9``.
:meth:`BurgersPhysics.step` warns (``RuntimeWarning``, once per model instance) when a state
breaks the condition, naming the number of sub-steps needed. Until then the check reads ``max|u|``
back to the host (one sync per step); pass ``check_cfl=False`` to skip it, e.g. for GPU
throughput once the settings are known to be safe.

Speed option: ``diffuse_every_substep=False`` applies the exact diffusion once per step,
``exp(−ν k² dt)`` after the ``S`` advection sub-steps (Lie splitting at the step instead of the
sub-step). That removes the FFT pair and the multiply (3 of 11 tensor operations) from every
sub-step but the last; at these sizes the cost is the number of operations, so steps and their
backward passes get markedly faster (``docs/performance.md`` has the measured ratio). The
splitting error grows from ``O(τ)`` to ``O(dt)``: ``benchmarks/bench_peers.py`` records both
variants' error against an independent fine-grid solution, and the default stays the sub-step
splitting that the reference setting prescribes.

Forcing is additive, so ``force_for`` is exact: ``f = (s' − P₀(s)) / dt``.

Semi-Lagrangian option: ``advection="semi_lagrangian"`` replaces each sub-step by PhiFlow's
Burgers step (its demo's ``diffuse`` then ``advect.semi_lagrangian``): the exact diffusion of
length ``τ``, then every cell takes the value at its departure point, linearly interpolated::

    u ← D_τ u,      u_i ← u(x_i − u_i τ)     (linear interpolation between the two cells around it)

It is unconditionally stable (linear interpolation never overshoots, so without force ``max|u|``
grows only by the ringing of the grid's spectral heat kernel, ≲ 1e-4 of a jump), needs no CFL
sub-steps (default ``substeps=1``: one step per ``dt``, about 12 tensor operations instead of
about 220) and no host sync for a CFL check, and agrees with PhiFlow's step to float32 round-off
(``benchmarks/bench_peers.py`` checks this before timing). The price is physics: the scheme is
not conservative, and it gets shocks wrong. Ahead of a shock into still fluid, and behind a
rarefaction, the departure point samples ``u = 0``; so on the Riemann problem of
``tests/physics/test_burgers.py`` the shock stalls (at 0.51 instead of 0.65 after 10 steps) and
the plateau loses 97 % of its mass at one sub-step per ``dt`` (43 % at 20 sub-steps), where the
upwind default puts the shock within two cells and conserves the mean exactly
(``tests/physics/test_burgers_semi_lagrangian.py``). On smooth fields one step is about 3× less
accurate than upwind at N = 128 (``docs/performance.md``). Use it for speed, or to reproduce
PhiFlow's numbers; keep the default for shock-forming tasks such as the reference ones. It is
differentiated by plain autograd (``analytic_derivatives`` and ``save_substeps`` concern the
upwind scheme only).

Inverse simulator
-----------------
``inverse_step(next_state, force, state)`` solves ``P₀(s) = y``, ``y = next_state − dt · f``, for
the state ``s`` by defect-correction iterations started from ``state``::

    s ← s + W [Q(y) − Q(P₀(s))]

where ``Q`` is the time-reversed scheme: the sub-steps in reverse order, each the inverse diffusion
``exp(+ν k² τ)`` (its total gain over a step clamped at ``max_gain``, so that modes diffusion has
erased are not amplified from rounding noise) followed by the upwind advection with the velocity
reversed, ``−A(−u)`` (the inviscid Burgers equation is reversible under ``u → −u``), and ``W``
weights the update of mode ``k`` by ``w_k = min(1, max_gain · exp(−2 ν k² dt))``: modes that one
step damps below ``1/√max_gain`` by viscosity alone (at the defaults ``m ≳ 25``; the numerical
viscosity damps them further) are barely visible in ``P₀(s)``, so they mostly keep their values
from ``state`` instead of being amplified from rounding and splitting errors. The iterate
with the smallest residual ``‖P₀(s) − y‖`` is returned per sample, so the result is never worse
than ``state`` and never inf/NaN for finite inputs.

Accuracy (measured in ``tests/physics/test_burgers.py``, relative L2 errors at the defaults):

* from the next state itself, ``inverse_step(step(s, f), f, step(s, f))``: ≤ 1e-3 (worst of 32)
  for smooth states without a shock within the step (``max|∂u/∂x| · dt ≈ 0.1``); on the steep
  reference states, where a shock forms within the step and the step dissipates information,
  ≈ 3e-3 for the median state and up to ≈ 0.2 for the steepest;
* as a local inverse, started 10 % away from the preimage (how SIP uses it): ≈ 4e-4 median and
  ≤ 3e-2 worst on the reference states.

With ``advection="semi_lagrangian"`` (``tests/physics/test_burgers_semi_lagrangian.py``; the
departure points lie several cells away, so the reversed step is a cruder preconditioner):
from the next state ≈ 4e-4 median and ≤ 5e-2 worst on smooth states at one sub-step per ``dt``
(≈ 6e-5 and ≤ 1.5e-3 with ``substeps=4``). On the steep reference states it is weak at one
sub-step: median 0.13 (worst 0.9) from the next state, 1.1e-2 (worst 5.6e-2) as a local inverse
10 % away; with ``substeps=4``, 1.4e-3 and 1.5e-4 (32 states, seed 0). Prefer the upwind scheme,
or ``substeps=4``, where SIP training leans on the inverse.

High modes that the step damps by more than ``max_gain`` stay at their values in ``state``.

Derivatives
-----------
Everything is pure, batched torch on ``(B, N)`` tensors; dtype and device follow the input; all
operations are differentiable. By default (``analytic_derivatives=True``) a step is one autograd
node whose backward and forward-mode derivatives are hand-written adjoint and tangent sweeps
through the saved sub-step states (:meth:`BurgersPhysics.adjoint`, :meth:`BurgersPhysics.tangent`):
at the defaults this makes a backward pass through a rollout 3–5× cheaper than plain autograd,
which differentiates some 13 operations per sub-step. The adjoint is itself differentiable with
respect to its cotangent, so the double-backward Jacobian-vector products of the Gauss–Newton
inverse (:mod:`sipenv.physics.generic_inverse`) work; second derivatives with respect to the
state drop the flux curvature there (use ``analytic_derivatives=False`` for exact
Hessian-vector products). The backward pass needs the ``S`` sub-step states of every step;
``save_substeps=False`` keeps only each step's input and recomputes them (``S``× less memory,
one more forward step per backward step, identical results).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Any, ClassVar, NamedTuple

import torch

from sipenv.physics.defect_correction import defect_correction
from sipenv.physics.diffusion import check_max_gain
from sipenv.physics.grid import FactorCache, PeriodicGrid
from sipenv.validation import check_bool, check_choice, check_int, check_positive

__all__ = [
    "ADVECTION_SCHEMES",
    "AdvectionScheme",
    "BurgersFactors",
    "BurgersPhysics",
    "BurgersTaskSampler",
    "SemiLagrangianAdvection",
    "UpwindAdvection",
    "periodic_gaussian",
]


class BurgersFactors(NamedTuple):
    """Per-mode factors of :class:`BurgersPhysics`, cached per (device, dtype).

    Attributes:
        decay: ``exp(−ν k² τ_D)`` of one diffusion (``τ_D = τ``, or ``dt`` when diffusing once).
        gain: Inverse diffusion ``exp(+ν k² τ_D)``, its total over a step clamped at
            ``max_gain``.
        trust: The defect correction's weight ``min(1, max_gain · exp(−2 ν k² dt))``.
        cells: Cell indices ``0 … N−1`` (the semi-Lagrangian departure base).
    """

    decay: torch.Tensor
    gain: torch.Tensor
    trust: torch.Tensor
    cells: torch.Tensor


class AdvectionScheme:
    """One advection sub-step of the inviscid Burgers flux, as a strategy object.

    :class:`BurgersPhysics` picks its scheme once (from ``advection=``) and delegates to it; a
    scheme says what it does (:meth:`advect`), how to approximately undo it (:meth:`reverse`),
    how fast a flow it can carry (:meth:`max_stable_speed`), and its properties below. Schemes
    are stateless; ``cells`` is the ``(N,)`` tensor of cell indices and ``ratio = τ / Δx``.
    """

    name: ClassVar[str]
    default_substeps: ClassVar[int]
    """Sub-steps per step when ``substeps`` is not given."""
    hand_written_derivatives: ClassVar[bool]
    """Whether :meth:`BurgersPhysics.tangent` / :meth:`BurgersPhysics.adjoint` apply."""
    diffusion_first: ClassVar[bool]
    """Where the diffusion sits in a sub-step: before (``True``) or after the advection."""
    has_cfl_limit: ClassVar[bool]
    """Whether the scheme is only stable under a CFL condition (then checked in ``step``)."""

    def advect(self, u: torch.Tensor, ratio: float, cells: torch.Tensor) -> torch.Tensor:
        """One advection sub-step of ``u`` (``(B, N)``)."""
        raise NotImplementedError

    def reverse(self, u: torch.Tensor, ratio: float, cells: torch.Tensor) -> torch.Tensor:
        """An approximate inverse of :meth:`advect` (the preconditioner of the inverse)."""
        raise NotImplementedError

    def max_stable_speed(self, dx: float, sub_dt: float) -> float:
        """Largest ``max|u|`` the scheme is stable for (``inf`` without a CFL limit)."""
        return dx / sub_dt if self.has_cfl_limit else math.inf

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


class UpwindAdvection(AdvectionScheme):
    """Conservative first-order Engquist–Osher upwind step (CFL-limited; module docstring)."""

    name = "upwind"
    default_substeps = 20
    hand_written_derivatives = True
    diffusion_first = False
    has_cfl_limit = True

    def advect(self, u: torch.Tensor, ratio: float, cells: torch.Tensor) -> torch.Tensor:
        """``u ← u − (τ/Δx)(F_{i+½} − F_{i−½})``, ``2F_{i+½} = max(u_i,0)² + min(u_{i+1},0)²``."""
        pos, neg = u.clamp_min(0.0), u.clamp_max(0.0)
        # 2 F_{i+½} = max(u_i, 0)² + min(u_{i+1}, 0)²  (addcmul: one pass over memory fewer)
        flux2 = torch.addcmul(torch.roll(neg * neg, -1, dims=-1), pos, pos)
        return torch.add(u, flux2 - torch.roll(flux2, 1, dims=-1), alpha=-0.5 * ratio)

    def reverse(self, u: torch.Tensor, ratio: float, cells: torch.Tensor) -> torch.Tensor:
        """``−A(−u)``: the inviscid Burgers equation is reversible under ``u → −u``."""
        return -self.advect(-u, ratio, cells)


class SemiLagrangianAdvection(AdvectionScheme):
    """PhiFlow's ``advect.semi_lagrangian``: ``u_i ← u(x_i − u_i τ)``, linear interpolation.

    Unconditionally stable, not conservative (module docstring).
    """

    name = "semi_lagrangian"
    default_substeps = 1
    hand_written_derivatives = False
    diffusion_first = True
    has_cfl_limit = False

    def advect(self, u: torch.Tensor, ratio: float, cells: torch.Tensor) -> torch.Tensor:
        """``u_i ← u(x_i − u_i τ)`` by periodic linear interpolation."""
        return periodic_interpolate(u, torch.add(cells, u, alpha=-ratio))

    def reverse(self, u: torch.Tensor, ratio: float, cells: torch.Tensor) -> torch.Tensor:
        """Approximate inverse of :meth:`advect`: ``w(x) = v(x + w(x) τ)``.

        Values travel along characteristics, so the state one sub-step earlier satisfies this
        implicit relation; two fixed-point sweeps from ``w = v`` (the first is the plain
        reversed step ``−SL(−v)``) make the defect correction of
        :meth:`BurgersPhysics.inverse_step` converge about 4× further at one sub-step per ``dt``,
        where the departure points lie several cells away.
        """
        w = u
        for _ in range(2):
            w = periodic_interpolate(u, torch.add(cells, w, alpha=ratio))
        return w


_SCHEMES: dict[str, type[AdvectionScheme]] = {
    cls.name: cls for cls in (UpwindAdvection, SemiLagrangianAdvection)}

ADVECTION_SCHEMES = tuple(_SCHEMES)
"""The names accepted by ``BurgersPhysics(advection=...)``: ``("upwind", "semi_lagrangian")``."""


def periodic_interpolate(u: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``u`` at positions ``pos`` (in cells, any real value), periodic linear interpolation.

    ``u_j + w (u_{j+1} − u_j)`` with ``j = ⌊pos⌋ mod N``, ``w = pos − ⌊pos⌋``: seven tensor
    operations, all differentiable (``floor`` has zero derivative, so the derivative flows
    through the gathered values and the weight). Both gathers share one index tensor and the
    fused multiply-add saves two fields, so autograd keeps about half of what ``lerp`` of two
    gathers would. Indices stay in range for any input, so inf/NaN propagate as values.

    Args:
        u: Fields ``(B, N)``.
        pos: Positions ``(B, N)`` in cells.
    """
    left = pos.floor()
    weight = pos - left
    index = left.long()
    n = u.shape[-1]  # wrap into [0, N): a bit mask when N is a power of two (4× faster)
    index = index.bitwise_and_(n - 1) if n & (n - 1) == 0 else index.remainder_(n)
    slope = torch.roll(u, -1, dims=-1).sub_(u)  # u_{j+1} − u_j, periodic
    return torch.addcmul(u.gather(-1, index), weight, slope.gather(-1, index))


def periodic_gaussian(x: torch.Tensor, amplitude: torch.Tensor, centre: torch.Tensor,
                      width: torch.Tensor, length: float) -> torch.Tensor:
    """Periodic Gaussian bumps ``A Σ_m exp(−½ ((x − c + m L) / w)²)``, images ``m = −2 … 2``.

    Args:
        x: Positions, shape ``(N,)``.
        amplitude, centre, width: Per-sample parameters, shape ``(B,)``.
        length: Period ``L``. The images make the bump smooth across the boundary; for
            ``w ≤ 0.4 L`` the neglected images are below ``e^{−7}`` of the peak.

    Returns:
        ``(B, N)`` fields.
    """
    out = torch.zeros(amplitude.shape[0], x.shape[0], dtype=x.dtype, device=x.device)
    for m in (-2, -1, 0, 1, 2):
        z = (x[None] - centre[:, None] + m * length) / width[:, None]
        out = out + torch.exp(-0.5 * z * z)
    return amplitude[:, None] * out


@dataclass(frozen=True)
class BurgersPhysics:
    """Conservative upwind / exact-diffusion integrator of 1-D periodic viscous Burgers.

    See the module docstring for the scheme, its stability limit and the inverse.

    Args:
        n: Number of grid cells (N ≥ 4). Cell positions ``x_j = j · L / N``.
        length: Domain length ``L`` (> 0).
        nu: Viscosity ``ν`` (> 0).
        dt: Time step (> 0).
        substeps: Advection/diffusion sub-steps per step (≥ 1). Default (``None``): 20 for the
            upwind scheme, stable while ``max|u| · dt / (substeps · Δx) ≤ 1``; 1 for the
            semi-Lagrangian scheme, stable for any ``dt``.
        advection: ``"upwind"`` (default: conservative Engquist–Osher upwind sub-steps, exact
            mean, sharp shocks, CFL-limited) or ``"semi_lagrangian"`` (PhiFlow's scheme: one
            unconditionally stable step per ``dt``, ~20× fewer operations; not conservative,
            shocks stall, about 3× less accurate on smooth flow; module docstring).
        max_gain: Largest total amplification of a Fourier mode by the inverse diffusion in
            :meth:`inverse_step` (≥ 1).
        inverse_iterations: Defect-correction iterations of :meth:`inverse_step` (≥ 0; each costs
            one forward and one time-reversed step).
        check_cfl: Warn (``RuntimeWarning``) when a state passed to :meth:`step` breaks the CFL
            condition (costs one host sync per step; the semi-Lagrangian scheme has no CFL
            condition and never checks).
        analytic_derivatives: Differentiate the step with hand-written tangent/adjoint sweeps
            (one autograd node per step; backward 3–5× faster than plain autograd). Their
            derivatives with respect to the cotangent are exact too (what Gauss–Newton's
            double-backward Jacobian products need), but second derivatives with respect to the
            state drop the flux curvature; ``False`` differentiates every operation with plain
            autograd (exact to any order, slower).
        save_substeps: With ``analytic_derivatives``, keep every sub-step state of a step for its
            backward pass (``True``: ``S`` fields per step) or only the step's input and recompute
            the sub-steps in the backward pass (``False``: ``S``× less memory for a rollout, at
            the cost of one more forward step per backward step; results are identical).
            Upwind only: ``False`` with ``advection="semi_lagrangian"`` raises.
        diffuse_every_substep: Apply the exact diffusion after every advection sub-step
            (``True``, the reference splitting) or once per step after the last one (``False``:
            faster, splitting error ``O(dt)`` instead of ``O(τ)``; see the module docstring).

    Raises:
        ValueError: If a parameter is non-finite, non-positive or of the wrong type.

    Example:
        >>> import torch
        >>> phys = BurgersPhysics()
        >>> s = phys.sample_fields(2, torch.Generator().manual_seed(0), max_mode=4,
        ...                        amplitude=0.3)
        >>> s1 = phys.step(s, torch.zeros_like(s))
        >>> back = phys.inverse_step(s1, torch.zeros_like(s), s1)
        >>> bool(((back - s).norm() / s.norm()) < 1e-3)
        True
    """

    n: int = 128
    length: float = 1.0
    nu: float = 0.003
    dt: float = 0.03
    substeps: int | None = None
    advection: str = "upwind"
    max_gain: float = 100.0
    inverse_iterations: int = 10
    check_cfl: bool = True
    analytic_derivatives: bool = True
    save_substeps: bool = True
    diffuse_every_substep: bool = True
    _cache: FactorCache = field(default_factory=FactorCache, init=False, repr=False,
                                compare=False)
    _warned: list[bool] = field(default_factory=list, init=False, repr=False, compare=False)
    _domain: PeriodicGrid = field(init=False, repr=False, compare=False)
    _scheme: AdvectionScheme = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_int("n (number of cells)", self.n, minimum=4)
        check_positive("length", self.length)
        check_positive("nu", self.nu)
        check_positive("dt", self.dt)
        scheme = _SCHEMES[check_choice("advection", self.advection, ADVECTION_SCHEMES)]()
        object.__setattr__(self, "_scheme", scheme)
        if self.substeps is None:  # the scheme's default, fixed here (the dataclass is frozen)
            object.__setattr__(self, "substeps", scheme.default_substeps)
        check_int("substeps", self.substeps, minimum=1)
        check_max_gain(self.max_gain, "inverse diffusion")
        check_int("inverse_iterations", self.inverse_iterations, minimum=0)
        for name in ("check_cfl", "analytic_derivatives", "save_substeps",
                     "diffuse_every_substep"):
            check_bool(name, getattr(self, name))
        object.__setattr__(self, "_domain", PeriodicGrid((self.n,), (self.length,)))
        if not scheme.hand_written_derivatives and not self.save_substeps:
            raise ValueError(
                "save_substeps=False applies to the upwind scheme's hand-written derivatives; "
                "the semi-Lagrangian scheme is differentiated by autograd (it saves an index "
                "and two fields per sub-step). Leave save_substeps=True.")

    # --- grid and factors -------------------------------------------------------------------

    @property
    def domain(self) -> PeriodicGrid:
        """The periodic 1-D grid of ``n`` cells on ``[0, length)``."""
        return self._domain

    @property
    def scheme(self) -> AdvectionScheme:
        """The advection scheme object chosen by ``advection``."""
        return self._scheme

    @property
    def dx(self) -> float:
        """Cell width ``Δx = L / N``."""
        return self.length / self.n

    @property
    def n_substeps(self) -> int:
        """Sub-steps per step ``S`` (``substeps`` with its scheme default filled in)."""
        assert self.substeps is not None  # set in __post_init__
        return self.substeps

    @property
    def sub_dt(self) -> float:
        """Sub-step ``τ = dt / substeps``."""
        return self.dt / self.n_substeps

    @property
    def max_stable_speed(self) -> float:
        """Largest ``max|u|`` the CFL condition allows: ``Δx / τ`` (upwind), or ``inf`` for the
        unconditionally stable semi-Lagrangian scheme."""
        return self._scheme.max_stable_speed(self.dx, self.sub_dt)

    @property
    def grid(self) -> torch.Tensor:
        """Cell positions ``x_j = j L / N`` (float64, CPU), shape ``(N,)``."""
        return self.domain.positions()

    def wavenumbers(self, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Angular wavenumbers ``k = 2π m / L`` of the ``N//2 + 1`` real FFT modes."""
        return self.domain.wavenumbers(device, dtype)[0]

    @property
    def _diffusions(self) -> int:
        """Diffusions per step: ``S``, or 1 without ``diffuse_every_substep``."""
        return self.n_substeps if self.diffuse_every_substep else 1

    @property
    def _diffusion_dt(self) -> float:
        return self.dt / self._diffusions

    def _diffuses(self, j: int) -> bool:
        """Whether sub-step ``j`` (0-based) has a diffusion: every one, or only the last
        (upwind: diffusion after the advection) / the first (semi-Lagrangian: before it)."""
        return self.diffuse_every_substep or j == (
            0 if self._scheme.diffusion_first else self.n_substeps - 1)

    def _build_factors(self, device: torch.device) -> BurgersFactors:
        nu_k2 = self.nu * self.domain.wavenumber_squared(device)
        x = nu_k2 * self._diffusion_dt  # ν k² τ (or ν k² dt, once per step) ≥ 0
        decay = torch.exp(-x)
        # Inverse diffusion per diffusion; total gain over a step ≤ max_gain.
        gain = torch.exp(torch.clamp(x, max=math.log(self.max_gain) / self._diffusions))
        # Weight of the inverse's update per mode: min(1, max_gain · exp(−2 ν k² dt)).
        trust = torch.clamp(self.max_gain * torch.exp(-2 * nu_k2 * self.dt), max=1.0)
        cells = torch.arange(self.n, device=device, dtype=torch.float64)  # departure base
        return BurgersFactors(decay, gain, trust, cells)

    def factors(self, device: torch.device | str | None = None,
                dtype: torch.dtype = torch.float32) -> BurgersFactors:
        """The cached :class:`BurgersFactors` for ``(device, dtype)`` (built in float64)."""
        return self._cache.get(device, dtype, self._build_factors)

    def _factors(self, device: torch.device, dtype: torch.dtype) -> BurgersFactors:
        return self.factors(device, dtype)

    def _check(self, name: str, x: torch.Tensor) -> None:
        self.domain.check(name, x)

    def _warn_if_unstable(self, state: torch.Tensor) -> None:
        if self._warned:  # once per model: a diverging policy would repeat it every step
            return
        speed = float(state.detach().abs().amax())
        cfl = speed / self.max_stable_speed
        if cfl > 1.0:
            self._warned.append(True)
            needed = math.ceil(speed * self.dt / self.dx)
            warnings.warn(
                f"Burgers CFL number max|u|·τ/Δx = {cfl:.2f} > 1 (max|u| = {speed:.3g}, "
                f"τ = dt/substeps = {self.sub_dt:.3g}, Δx = {self.dx:.3g}): the upwind scheme is "
                f"unstable. Increase substeps to ≥ {needed} (now {self.substeps}), or lower dt, "
                f"or keep velocities smaller (e.g. a smaller force_scale), or use "
                f"advection='semi_lagrangian' (stable for any dt, less accurate).",
                RuntimeWarning, stacklevel=3)

    # --- the scheme ------------------------------------------------------------------------------

    def _diffuse(self, u: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
        return self.domain.from_spectral(factor * self.domain.to_spectral(u))

    def free_step(self, state: torch.Tensor) -> torch.Tensor:
        """``P₀(s)``: one step without force (``S`` advection + diffusion sub-steps).

        With ``analytic_derivatives`` (and autograd on) the step is one autograd node whose
        backward and forward-mode derivatives are the hand-written adjoint / tangent sweeps
        (:meth:`tangent`, :meth:`adjoint`) through the saved sub-step states.
        """
        if (self.analytic_derivatives and self._scheme.hand_written_derivatives
                and torch.is_grad_enabled() and state.requires_grad):
            return _FreeStep.apply(state, self)[0]
        return self._substeps(state)[0]

    def _substeps(self, state: torch.Tensor, keep: bool = False
                  ) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The ``S`` sub-steps; returns the result and (if ``keep``) each sub-step's input."""
        factors = self._factors(state.device, state.dtype)
        decay, cells = factors.decay, factors.cells
        ratio = self.sub_dt / self.dx
        scheme = self._scheme
        first = scheme.diffusion_first
        u, inputs = state, []
        for j in range(self.n_substeps):
            if keep:
                inputs.append(u)
            if first and self._diffuses(j):
                u = self._diffuse(u, decay)
            u = scheme.advect(u, ratio, cells)
            if not first and self._diffuses(j):
                u = self._diffuse(u, decay)
        return u, inputs

    def tangent(self, inputs: torch.Tensor, du: torch.Tensor) -> torch.Tensor:
        """Jacobian-vector product ``(∂P₀/∂s) δs`` given the sub-step inputs ``(S, B, N)``.

        Per sub-step, at its input ``u``: ``δq = 2 max(u,0) δu + R₋₁(2 min(u,0) δu)``,
        ``δu ← D(δu − (τ/2Δx)(δq − R₁ δq))`` with ``(R_s x)_i = x_{i−s}`` and ``D`` the diffusion.
        Upwind scheme only (the semi-Lagrangian one is differentiated by autograd).
        """
        self._require_upwind("tangent")
        decay = self._factors(du.device, du.dtype).decay
        half = 0.5 * self.sub_dt / self.dx
        for j, u in enumerate(inputs):
            pos, neg = u.clamp_min(0.0), u.clamp_max(0.0)
            dq = 2 * pos * du + torch.roll(2 * neg * du, -1, dims=-1)
            du = torch.add(du, dq - torch.roll(dq, 1, dims=-1), alpha=-half)
            if self._diffuses(j):
                du = self._diffuse(du, decay)
        return du

    def adjoint(self, inputs: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        """Vector-Jacobian product ``(∂P₀/∂s)ᵀ w`` given the sub-step inputs ``(S, B, N)``.

        The transpose of :meth:`tangent`, sub-steps in reverse: ``w ← D w`` (``D`` is
        symmetric), ``q̄ = −(τ/2Δx)(w − R₋₁ w)``, ``w ← w + 2 max(u,0) q̄ + 2 min(u,0) R₁ q̄``.
        Upwind scheme only.
        """
        self._require_upwind("adjoint")
        decay = self._factors(w.device, w.dtype).decay
        ratio = self.sub_dt / self.dx
        for j in reversed(range(inputs.shape[0])):
            u = inputs[j]
            if self._diffuses(j):
                w = self._diffuse(w, decay)
            d = w - torch.roll(w, -1, dims=-1)  # 2 q̄ = −ratio · d; fused into two addcmuls
            w = torch.addcmul(w, u.clamp_min(0.0), d, value=-ratio)
            w = torch.addcmul(w, u.clamp_max(0.0), torch.roll(d, 1, dims=-1), value=-ratio)
        return w

    def _require_upwind(self, name: str) -> None:
        if not self._scheme.hand_written_derivatives:
            raise NotImplementedError(
                f"{name} is the upwind scheme's hand-written derivative; with "
                f"advection={self.advection!r} use torch.func.jvp / torch.autograd instead.")

    def reverse_step(self, state: torch.Tensor) -> torch.Tensor:
        """``Q(y)``: the time-reversed scheme, an approximate inverse of :meth:`free_step`.

        Sub-steps in reverse order, each reversed: clamped inverse diffusion and advection with
        the velocity reversed (upwind: ``−A(−u)``; semi-Lagrangian: the implicit characteristic
        relation, :meth:`SemiLagrangianAdvection.reverse`), in the opposite order to the forward
        sub-step. Exact for neither the schemes' dissipation nor shocks; it is the
        preconditioner of :meth:`inverse_step`.
        """
        factors = self._factors(state.device, state.dtype)
        gain, cells = factors.gain, factors.cells
        ratio = self.sub_dt / self.dx
        scheme = self._scheme
        first = scheme.diffusion_first
        u = state
        for j in reversed(range(self.n_substeps)):
            if not first and self._diffuses(j):
                u = self._diffuse(u, gain)
            u = scheme.reverse(u, ratio, cells)
            if first and self._diffuses(j):
                u = self._diffuse(u, gain)
        return u

    # --- forward and inverse simulators -----------------------------------------------------

    def step(self, state: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        """Advance ``state`` by one step of length ``dt``: ``s' = P₀(s) + dt · f``.

        Args:
            state: Velocity ``u(t)``, shape ``(B, N)``.
            force: Force ``f``, shape ``(B, N)``, added once per step.

        Returns:
            ``u(t + dt)``, shape ``(B, N)``, same dtype/device as ``state``.

        Warns:
            RuntimeWarning: If ``max|u| · τ / Δx > 1`` (and ``check_cfl``).
        """
        self._check("state", state)
        self._check("force", force)
        if self.check_cfl and self._scheme.has_cfl_limit:
            self._warn_if_unstable(state)
        return torch.add(self.free_step(state), force, alpha=self.dt)  # one op, not two

    def inverse_step(self, next_state: torch.Tensor, force: torch.Tensor,
                     state: torch.Tensor) -> torch.Tensor:
        """Local inverse of :meth:`step` with respect to the state, started from ``state``.

        Returns the ``s`` with the smallest residual ``‖step(s, force) − next_state‖`` among
        ``state`` and the ``inverse_iterations`` defect-correction iterates (module docstring).

        Args:
            next_state: The state to reach, shape ``(B, N)``.
            force: The force applied during the step, shape ``(B, N)``.
            state: Where the iteration starts (e.g. the current state), shape ``(B, N)``.
        """
        self._check("next_state", next_state)
        self._check("force", force)
        self._check("state", state)
        goal = next_state - self.dt * force
        trust = self._factors(state.device, state.dtype).trust
        return defect_correction(self.free_step, self.reverse_step, goal, state,
                                 iterations=self.inverse_iterations,
                                 weight=lambda update: self._diffuse(update, trust))

    def force_for(self, state: torch.Tensor, next_state: torch.Tensor) -> torch.Tensor:
        """The force that takes ``state`` exactly to ``next_state``: ``(s' − P₀(s)) / dt``."""
        self._check("state", state)
        self._check("next_state", next_state)
        return (next_state - self.free_step(state)) / self.dt

    # --- samplers -----------------------------------------------------------------------------

    def sample_fields(self, batch: int, generator: torch.Generator, *,
                      max_mode: int = 8, amplitude: float = 1.0,
                      device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Random smooth zero-mean periodic fields, shape ``(batch, N)``.

        ``u(x) = amplitude · Σ_{m=1}^{max_mode} (a_m cos(2π m x/L) + b_m sin(2π m x/L)) / m``
        with ``a_m, b_m ~ N(0, 1)`` from ``generator`` (the same law as
        :meth:`sipenv.physics.DiffusionPhysics.sample_fields`). The reference control tasks use
        :meth:`sample_initial_states` instead.

        Raises:
            ValueError: If ``max_mode`` is not in ``[1, N/2)`` or ``batch < 1``.
        """
        return self.domain.sample_smooth(batch, generator, max_mode=max_mode,
                                         amplitude=amplitude, device=device, dtype=dtype)

    def _uniform(self, batch: int, generator: torch.Generator, low: float,
                 high: float) -> torch.Tensor:
        u = torch.rand(batch, generator=generator, device=generator.device, dtype=torch.float64)
        return low + (high - low) * u

    def sample_initial_states(self, batch: int, generator: torch.Generator, *,
                              device: torch.device | str | None = None,
                              dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Two colliding Gaussian bumps (the reference initial states), shape ``(batch, N)``.

        Left bump: amplitude ``U[0, 3]`` at ``U[0.2, 0.4] L``; right bump: amplitude ``U[−3, 0]``
        at ``U[0.6, 0.8] L``; widths ``U[0.05, 0.15] L`` (see :func:`periodic_gaussian`).
        """
        check_int("batch", batch, minimum=1)
        L = self.length
        a1, c1, w1, a2, c2, w2 = (self._uniform(batch, generator, lo, hi) for lo, hi in (
            (0.0, 3.0), (0.2 * L, 0.4 * L), (0.05 * L, 0.15 * L),
            (-3.0, 0.0), (0.6 * L, 0.8 * L), (0.05 * L, 0.15 * L)))
        x = self.grid.to(generator.device)
        out = periodic_gaussian(x, a1, c1, w1, L) + periodic_gaussian(x, a2, c2, w2, L)
        return out.to(device=device if device is not None else generator.device, dtype=dtype)

    def sample_forces(self, batch: int, generator: torch.Generator, *,
                      amplitude: float = 0.05 * 32,
                      device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Random Gaussian forces (the reference target generator), shape ``(batch, N)``.

        Amplitude ``U[−1, 1] · amplitude`` (reference: ``U[−0.05, 0.05] · 32``), centre
        ``U[0.4, 0.6] L``, width ``U[0.1, 0.4] L``.
        """
        check_int("batch", batch, minimum=1)
        L = self.length
        amp = self._uniform(batch, generator, -amplitude, amplitude)
        centre = self._uniform(batch, generator, 0.4 * L, 0.6 * L)
        width = self._uniform(batch, generator, 0.1 * L, 0.4 * L)
        out = periodic_gaussian(self.grid.to(generator.device), amp, centre, width, length=L)
        return out.to(device=device if device is not None else generator.device, dtype=dtype)


@dataclass(frozen=True)
class BurgersTaskSampler:
    """The reference Burgers control tasks ``(s_0, s*)`` (SIP_REFERENCE.md §3).

    ``s_0`` is drawn by :meth:`BurgersPhysics.sample_initial_states`; the target ``s*`` is the
    state reached from ``s_0`` after ``horizon`` steps under a random constant Gaussian force
    (:meth:`BurgersPhysics.sample_forces`), so every task is solvable with a constant force of
    peak ``≤ 1.09 · force_amplitude`` (the periodic images of the widest bumps add up). The
    rollout runs in float64 and is cast to ``dtype``.

    Args:
        physics: The Burgers model the targets are simulated with.
        horizon: Steps of the target rollout (≥ 1).
        force_amplitude: Peak of the generating force (reference: ``0.05 · 32 = 1.6``).
        chunk: The target rollout runs over at most this many tasks at a time (≥ 1; the
            results are the same, the samples being independent). It bounds the temporaries:
            at 1024 tasks a whole-batch rollout makes 1 MiB float64 tensors, which glibc's
            allocator can hand back to the OS and fault in again on every operation; in chunks
            of 256 they stay in the heap (``docs/performance.md`` measures both).
    """

    physics: BurgersPhysics
    horizon: int = 32
    force_amplitude: float = 0.05 * 32
    chunk: int = 256

    def __post_init__(self) -> None:
        check_int("horizon", self.horizon, minimum=1)
        check_positive("force_amplitude", self.force_amplitude)
        check_int("chunk", self.chunk, minimum=1)

    def __call__(self, batch: int, generator: torch.Generator, *,
                 device: torch.device | str | None = None,
                 dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw ``batch`` tasks; returns ``(s_0, s*)``, each ``(batch, N)``."""
        s0, target, _ = self.with_forces(batch, generator)
        dev = device if device is not None else generator.device
        return s0.to(device=dev, dtype=dtype), target.to(device=dev, dtype=dtype)

    def with_forces(self, batch: int, generator: torch.Generator
                    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Like :meth:`__call__` (float64, on ``generator.device``) but also returns the
        generating force ``(batch, N)``: ``(s_0, s*, f)``."""
        s0 = self.physics.sample_initial_states(batch, generator, dtype=torch.float64)
        force = self.physics.sample_forces(batch, generator, amplitude=self.force_amplitude,
                                           dtype=torch.float64)
        targets = []
        with torch.no_grad():
            for start in range(0, batch, self.chunk):
                state, f = s0[start:start + self.chunk], force[start:start + self.chunk]
                for _ in range(self.horizon):
                    state = self.physics.step(state, f)
                targets.append(state)
        return s0, torch.cat(targets), force


# --- hand-written derivatives -------------------------------------------------------------------

class _FreeStep(torch.autograd.Function):
    """``P₀`` as one autograd node: backward = :meth:`BurgersPhysics.adjoint` (itself an
    autograd node, :class:`_FreeStepAdjoint`, so that double backward through the cotangent gives
    Jacobian-vector products), forward mode = :meth:`BurgersPhysics.tangent`."""

    @staticmethod
    def forward(state: torch.Tensor, physics: BurgersPhysics
                ) -> tuple[torch.Tensor, torch.Tensor]:
        if not physics.save_substeps:  # the backward pass recomputes them from `state`
            return physics._substeps(state)[0], state.detach()
        out, inputs = physics._substeps(state, keep=True)
        return out, torch.stack(inputs)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.physics = inputs[1]
        ctx.mark_non_differentiable(output[1])
        ctx.save_for_backward(output[1])
        ctx.save_for_forward(output[1])

    @staticmethod
    def _inputs(ctx: Any) -> torch.Tensor:
        """The ``(S, B, N)`` sub-step inputs: saved, or recomputed from the step's input."""
        (saved,) = ctx.saved_tensors
        if ctx.physics.save_substeps:
            return saved
        with torch.no_grad():
            return torch.stack(ctx.physics._substeps(saved, keep=True)[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor, _: Any) -> tuple[Any, ...]:
        return _FreeStepAdjoint.apply(grad, _FreeStep._inputs(ctx), ctx.physics), None

    @staticmethod
    def jvp(ctx: Any, tangent: torch.Tensor, _: Any) -> tuple[Any, ...]:
        return ctx.physics.tangent(_FreeStep._inputs(ctx), tangent), None


class _FreeStepAdjoint(torch.autograd.Function):
    """``w ↦ (∂P₀/∂s)ᵀ w``; linear in ``w``, so its backward is the tangent map ``J``."""

    @staticmethod
    def forward(grad: torch.Tensor, inputs: torch.Tensor,
                physics: BurgersPhysics) -> torch.Tensor:
        return physics.adjoint(inputs, grad)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        ctx.physics = inputs[2]
        ctx.save_for_backward(inputs[1])

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        (inputs,) = ctx.saved_tensors
        return ctx.physics.tangent(inputs, grad), None, None

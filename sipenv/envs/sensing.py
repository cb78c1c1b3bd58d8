"""Partial observation and limited actuation of a field task: point sensors, a smooth actuator
basis, and sensor and actuator noise.

A field env observes every cell and forces every cell by default. ``Sensing`` (one frozen
dataclass, held by every field core as its ``sensing`` field, set by the ``gym.make`` keywords
of :data:`SENSING_KEYWORDS`) changes that:

- **sensors**: the observation holds the state at ``K`` point sensors instead of every cell.
  ``sensors=K`` places ``K`` sensors evenly, sensor ``j`` at the fraction ``(j + ½)/K`` of the
  domain (2-D: on an ``r × c`` lattice, ``r`` the largest divisor of ``K`` not above ``√K``,
  sensor ``(i, j)`` at ``((i + ½)/r, (j + ½)/c)``); ``sensors=[p_0, p_1, …]`` places them at
  the given fractions of the domain (2-D: ``(y, x)`` pairs). A sensor reads the grid point
  nearest to its position (cell ``round(p · N) mod N``): point sensing, no interpolation.
  ``target_observation`` says how the control target is observed: ``"full"`` (the default: the
  target is the task's specification, handed to the controller, not measured) or
  ``"sensors"`` (the target at the same sensors).
- **actuators**: the action has one entry per actuator, and the force is the basis times it,
  ``f = force_scale · B · clip(a, −1, 1)`` with ``B`` of shape ``(cells, M)``.
  ``actuators=M`` gives ``M`` smooth periodic Gaussian bumps with unit peak,
  ``B[i, j] = exp(−½ (d(x_i, c_j) / σ)²)``, centred at ``c_j = (j + ½)/M`` of the domain
  (2-D: on the lattice above, the distance taken per axis in fractions of that axis), ``d``
  the periodic distance in fractions of the domain, ``σ = actuator_width`` (a fraction of the
  domain; default half the spacing of the bumps, ``1/(2M)`` in 1-D, where neighbouring bumps
  cross at ``e^(−½) ≈ 0.61`` of their peak). ``actuators=[[…], …]`` gives an explicit basis
  ``B`` (``cells`` rows, ``M`` columns). The least-squares inverse — the action whose force is
  nearest to a desired force, of least norm among those — is ``a = B⁺ f / force_scale``
  (``project``; ``B⁺`` the pseudo-inverse, ``(BᵀB)⁻¹Bᵀ`` for a basis of full column rank,
  i.e. through the actuator Gramian ``BᵀB``).
- **noise**: ``sensor_noise`` (standard deviation of Gaussian noise added to each sensor
  reading of the state, in state units; the target and the time are not noisy) and
  ``actuator_noise`` (standard deviation of Gaussian noise added to each normalised action
  entry after clipping; the noisy action is clipped again: actuators saturate). The env draws
  both from its own seeded generator, so ``reset(seed=…)`` reproduces them. The core
  (``sipenv.envs.core.core_of``) stays noise-free: it is the model agents differentiate
  through; noise is what the env adds around it.

Defaults: full observation, per-cell actuation, no noise — every env is then exactly what it was.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import torch

from sipenv.physics.grid import FactorCache
from sipenv.validation import check_choice, check_nonnegative, check_positive

__all__ = ["SENSING_KEYWORDS", "TARGET_OBSERVATIONS", "Sensing", "lattice", "make_sensed_core"]

TARGET_OBSERVATIONS = ("full", "sensors")
"""How the target is observed when sensors are set (``target_observation=``)."""


def lattice(count: int, dims: int) -> list[tuple[float, ...]]:
    """``count`` evenly spaced positions (fractions of the domain) in ``dims`` (1 or 2)
    dimensions: ``(j + ½)/count`` in 1-D; an ``r × c`` lattice in 2-D (``r`` the largest
    divisor of ``count`` not above ``√count``), row-major."""
    if dims == 1:
        return [((j + 0.5) / count,) for j in range(count)]
    rows = max(d for d in range(1, math.isqrt(count) + 1) if count % d == 0)
    cols = count // rows
    return [((i + 0.5) / rows, (j + 0.5) / cols) for i in range(rows) for j in range(cols)]


class _Factors(NamedTuple):
    """Per-``(device, dtype)`` matrices of one grid: the sensor cells (flat indices, ``(K,)``),
    the basis ``(cells, M)`` and its pseudo-inverse ``(M, cells)`` (empty when not set)."""

    indices: torch.Tensor
    basis: torch.Tensor
    pinv: torch.Tensor


def _as_count(name: str, value: Any) -> int | None:
    """``value`` as a count ≥ 1 if it is an integer (not a bool), else ``None``."""
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be a count, a list of positions or None, got {value!r}.")
    if isinstance(value, (int, np.integer)):
        if value < 1:
            raise ValueError(f"{name} must be ≥ 1 (or None: {_NONE[name]}), got {value}.")
        return int(value)
    return None


_NONE = {"sensors": "every cell observed", "actuators": "every cell actuated"}


def _as_nested(name: str, value: Any) -> tuple[Any, ...]:
    """A sequence (list, tuple, array) as nested tuples of floats."""
    if isinstance(value, (str, bytes)) or not isinstance(value, (Sequence, np.ndarray)):
        raise ValueError(f"{name} must be a count, a list (or array) or None, got "
                         f"{type(value).__name__} {value!r}.")
    arr = np.asarray(value, dtype=np.float64)
    if arr.size == 0 or not np.isfinite(arr).all():
        raise ValueError(f"{name} must be non-empty and finite, got {value!r}.")
    return tuple(arr.tolist()) if arr.ndim == 1 else tuple(map(tuple, arr.tolist()))


@dataclasses.dataclass(frozen=True)
class Sensing:
    """Sensors, actuators and noise of a field task (see the module docstring).

    Args:
        sensors: ``None`` (every cell), a count ``K ≥ 1`` of evenly spaced point sensors, or
            their positions as fractions of the domain in ``[0, 1)`` (1-D: ``[p, …]``; 2-D:
            ``[(y, x), …]``).
        target_observation: ``"full"`` (the whole target) or ``"sensors"`` (the target at the
            sensors); only with ``sensors``.
        actuators: ``None`` (every cell), a count ``M ≥ 1`` of Gaussian bumps, or an explicit
            basis ``(cells, M)``.
        actuator_width: ``σ`` of the bumps as a fraction of the domain (``> 0``); ``None``:
            half their spacing. Only with a count of actuators.
        sensor_noise: Standard deviation of the Gaussian noise on each state reading (≥ 0).
        actuator_noise: Standard deviation of the Gaussian noise on each normalised action
            entry (≥ 0).

    Raises:
        ValueError: Naming the option, for a wrong type or value; the grid-dependent checks
            (positions in ``[0, 1)``, at most one sensor or bump per cell, the basis' rows)
            are made by ``check`` when a core is built.
    """

    sensors: Any = None
    target_observation: str = "full"
    actuators: Any = None
    actuator_width: float | None = None
    sensor_noise: float = 0.0
    actuator_noise: float = 0.0
    _cache: dict[tuple[int, ...], FactorCache] = dataclasses.field(
        default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("sensors", "actuators"):
            value = getattr(self, name)
            if value is not None and _as_count(name, value) is None:
                object.__setattr__(self, name, _as_nested(name, value))
        check_choice("target_observation", self.target_observation, TARGET_OBSERVATIONS)
        if self.target_observation != "full" and self.sensors is None:
            raise ValueError("target_observation='sensors' needs sensors=...; without sensors "
                             "the whole target is observed.")
        if self.actuator_width is not None:
            if not isinstance(self.actuators, int):
                raise ValueError("actuator_width applies to a count of actuators (Gaussian "
                                 "bumps), not to an explicit basis or per-cell actuation; leave "
                                 "it out.")
            check_positive("actuator_width", self.actuator_width)
        check_nonnegative("sensor_noise", self.sensor_noise)
        check_nonnegative("actuator_noise", self.actuator_noise)

    # --- what is set ----------------------------------------------------------------------------

    @property
    def sensed(self) -> bool:
        """Whether point sensors replace the full observation."""
        return self.sensors is not None

    @property
    def actuated(self) -> bool:
        """Whether an actuator basis replaces per-cell forcing."""
        return self.actuators is not None

    @property
    def noisy(self) -> bool:
        """Whether the env adds sensor or actuator noise."""
        return self.sensor_noise > 0 or self.actuator_noise > 0

    def sensor_count(self, grid: tuple[int, ...]) -> int:
        """Readings per observed field: ``K``, or every cell without sensors."""
        if self.sensors is None:
            return math.prod(grid)
        return self.sensors if isinstance(self.sensors, int) else len(self.sensors)

    def actuator_count(self, grid: tuple[int, ...]) -> int:
        """Entries of the action per force component: ``M``, or every cell."""
        if self.actuators is None:
            return math.prod(grid)
        if isinstance(self.actuators, int):
            return self.actuators
        return len(self.actuators[0])

    # --- checks against a grid ------------------------------------------------------------------

    def _positions(self, name: str, value: Any, grid: tuple[int, ...]) -> list[tuple[float, ...]]:
        dims = len(grid)
        if isinstance(value, int):
            if value > math.prod(grid):
                raise ValueError(f"{name}={value} exceeds the {math.prod(grid)} cells of the "
                                 f"grid {grid}.")
            return lattice(value, dims)
        points = [tuple(p) if isinstance(p, tuple) else (p,) for p in value]
        example = "[0.1, 0.5, ...]" if dims == 1 else "[(0.25, 0.5), ...]"
        if any(len(p) != dims for p in points):
            raise ValueError(f"{name} positions must have {dims} coordinate(s) each on a "
                             f"{dims}-D grid, e.g. {name}={example}; got {value!r}.")
        if any(not 0.0 <= c < 1.0 for p in points for c in p):
            raise ValueError(f"{name} positions are fractions of the domain in [0, 1); got "
                             f"{value!r}.")
        return points

    def check(self, grid: tuple[int, ...]) -> None:
        """Check the options against a field grid (``(N,)`` or ``(H, W)``).

        Raises:
            ValueError: For positions outside ``[0, 1)`` or of the wrong dimension, more
                sensors or bumps than cells, two sensors on one cell, or an explicit basis whose
                rows are not the grid's cells; the message names the option.
        """
        if self.sensors is not None:
            cells = self._sensor_cells(grid)
            if len(set(cells.tolist())) != len(cells):
                raise ValueError(f"Two sensors read the same cell of the grid {grid}; use fewer "
                                 f"sensors or positions further apart (sensors={self.sensors!r}).")
        if isinstance(self.actuators, int):
            self._positions("actuators", self.actuators, grid)
        elif self.actuators is not None:
            rows = len(self.actuators)
            if rows != math.prod(grid) or not isinstance(self.actuators[0], tuple):
                raise ValueError(f"An explicit actuator basis must be a (cells, M) matrix with "
                                 f"{math.prod(grid)} rows (the cells of the grid {grid}, "
                                 f"row-major); got {rows} rows.")

    # --- matrices -------------------------------------------------------------------------------

    def _sensor_cells(self, grid: tuple[int, ...]) -> np.ndarray:
        points = np.asarray(self._positions("sensors", self.sensors, grid))
        cells = np.rint(points * np.asarray(grid)).astype(np.int64) % np.asarray(grid)
        return np.ravel_multi_index(tuple(cells.T), grid)

    def _bumps(self, grid: tuple[int, ...]) -> np.ndarray:
        assert isinstance(self.actuators, int)
        centres = np.asarray(lattice(self.actuators, len(grid)))  # (M, dims)
        if self.actuator_width is not None:
            sigma = float(self.actuator_width)
        elif len(grid) == 1:
            sigma = 0.5 / self.actuators
        else:
            rows = max(d for d in range(1, math.isqrt(self.actuators) + 1)
                       if self.actuators % d == 0)
            sigma = 0.5 / max(rows, self.actuators // rows)
        axes = np.meshgrid(*[np.arange(n) / n for n in grid], indexing="ij")
        points = np.stack([a.ravel() for a in axes], -1)  # (cells, dims)
        d = np.abs(points[:, None, :] - centres[None, :, :])
        d = np.minimum(d, 1.0 - d)  # periodic distance, fractions of the domain
        return np.exp(-0.5 * (d**2).sum(-1) / sigma**2)

    def _build(self, grid: tuple[int, ...], device: torch.device) -> _Factors:
        f64 = torch.float64
        indices = torch.as_tensor(self._sensor_cells(grid) if self.sensed else np.zeros(0),
                                  device=device, dtype=torch.int64)
        if self.actuators is None:
            empty = torch.zeros(0, device=device, dtype=f64)
            return _Factors(indices, empty, empty)
        matrix = (self._bumps(grid) if isinstance(self.actuators, int)
                  else np.asarray(self.actuators, dtype=np.float64))
        basis = torch.as_tensor(matrix, device=device, dtype=f64)
        return _Factors(indices, basis, torch.linalg.pinv(basis))

    def _factors(self, grid: tuple[int, ...], device: torch.device | str | None,
                 dtype: torch.dtype) -> _Factors:
        cache = self._cache.setdefault(tuple(grid), FactorCache())
        return cache.get(device, dtype, lambda dev: self._build(tuple(grid), dev))

    def basis(self, grid: tuple[int, ...], device: torch.device | str | None = None,
              dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """The actuator basis ``B`` ``(cells, M)`` (the identity without actuators)."""
        if self.actuators is None:
            return torch.eye(math.prod(grid), device=device, dtype=dtype)
        return self._factors(grid, device, dtype).basis

    def sensor_cells(self, grid: tuple[int, ...]) -> np.ndarray:
        """Flat (row-major) indices ``(K,)`` of the cells the sensors read (every cell without
        sensors)."""
        return self._sensor_cells(grid) if self.sensed else np.arange(math.prod(grid))

    # --- maps -----------------------------------------------------------------------------------

    def sense(self, field: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
        """The readings ``(…, K)`` of fields ``(…, *grid)`` (flattened fields without
        sensors)."""
        flat = field.flatten(-len(grid))
        if not self.sensed:
            return flat
        return flat[..., self._factors(grid, field.device, field.dtype).indices]

    def actuate(self, values: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
        """``B · values``: actuator values ``(…, M)`` as fields ``(…, *grid)`` (linear;
        without actuators ``values`` already are the fields)."""
        if self.actuators is None:
            return values
        basis = self._factors(grid, values.device, values.dtype).basis
        # A product and a sum per cell, not a matmul: the same rounding whatever the batch
        # (a vector env's sub-env equals the single env to the last bit).
        fields = (values[..., None, :] * basis).sum(-1)
        return fields.reshape(*values.shape[:-1], *grid)

    def project(self, fields: torch.Tensor, grid: tuple[int, ...]) -> torch.Tensor:
        """``B⁺ · fields``: the least-squares, minimum-norm actuator values ``(…, M)`` whose
        ``actuate`` is nearest to fields ``(…, *grid)`` (the identity without actuators)."""
        if self.actuators is None:
            return fields
        pinv = self._factors(grid, fields.device, fields.dtype).pinv
        return fields.flatten(-len(grid)) @ pinv.T


SENSING_KEYWORDS: tuple[str, ...] = tuple(
    f.name for f in dataclasses.fields(Sensing) if f.init)
"""The ``gym.make`` keywords every control and correction env takes for ``Sensing``."""

def make_sensed_core(factory: Any, kwargs: Mapping[str, Any]) -> Any:
    """Build a field core from ``gym.make`` keywords: the env's own (``factory``, a
    ``sipenv.envs.settings.Factory``) and :data:`SENSING_KEYWORDS`, which set the core's
    ``sensing``.

    Raises:
        TypeError: For a keyword neither accepts, listing every accepted one.
    """
    from sipenv.envs.settings import Route, route

    # The cores' own ``sensing`` field is set from these keywords, not given whole.
    routes = {group: dataclasses.replace(r, exclude=(*r.exclude, "sensing"))
              for group, r in getattr(factory, "routes", {}).items()}
    routes["sensing"] = Route(Sensing)
    sensing = route(kwargs, routes, owner=getattr(factory, "owner", "env"))["sensing"]
    core = factory(**{k: v for k, v in kwargs.items() if k not in SENSING_KEYWORDS})
    return dataclasses.replace(core, sensing=Sensing(**sensing)) if sensing else core

"""Periodic spectral grids in 1-D and 2-D, and a per-device, per-dtype cache of their factors.

``PeriodicGrid`` is the domain every spectral model in ``sipenv.physics`` is built on: a
periodic box ``[0, L_1) × … `` of ``N_1 × …`` cells (one or two axes), with

* its geometry: ``shape``, ``length``,
  ``spacing``, cell positions (``positions``,
  ``coordinates``);
* its spectral side: angular wavenumbers per axis (``wavenumbers``) and
  ``|k|²`` (``wavenumber_squared``) on the half spectrum of the real FFT pair
  ``to_spectral`` / ``from_spectral`` (over the last one or
  two axes, so leading batch and component axes pass through: a velocity ``(B, 2, H, W)``
  transforms like a scalar field ``(B, H, W)``);
* the input check ``check`` with the message every model uses;
* seeded smooth random fields (``sample_smooth``; the 1-D law is
  ``smooth_periodic_fields``).

``FactorCache`` holds a model's precomputed per-mode factors (any ``NamedTuple`` of tensors)
per ``(device, dtype)``: built once in float64 (complex128 for complex factors) and cast, so a step
is only FFT → multiply-add → inverse FFT.

Tensor conventions: fields are ``(B, *shape)`` (or ``(B, C, *shape)`` with ``C`` components),
real floating point; spectra are complex ``(B, …, *spectral_shape)`` with ``spectral_shape =
(N_1, …, N_d // 2 + 1)`` (the real FFT halves the last axis). Wavenumbers are angular,
``k = 2π m / L`` with integer mode numbers ``m`` in FFT order.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from sipenv.validation import check_int, check_positive, is_int

__all__ = [
    "FactorCache",
    "PeriodicGrid",
    "as_dtype_of",
    "check_batch",
    "check_grid_shape",
    "planar_domain",
    "smooth_periodic_fields",
    "smooth_periodic_fields_2d",
]

F = TypeVar("F", bound=tuple[Any, ...])


def check_grid_shape(shape: Any, ndim: int | None = None, *, minimum: int = 4
                     ) -> tuple[int, ...]:
    """``shape`` as a tuple of ints ``≥ minimum`` (one or two of them, or exactly ``ndim``).

    Raises:
        ValueError: ``"shape must be a pair of ints ≥ 4 (H, W), got …"`` (2-D), or the 1-D /
            generic equivalent.
    """
    sizes = (1, 2) if ndim is None else (ndim,)
    if isinstance(shape, (tuple, list)) and len(shape) in sizes:
        try:
            return tuple(check_int("shape", v, minimum=minimum) for v in shape)
        except ValueError:
            pass
    what = {1: "one int ≥ {m} (N,)", 2: "a pair of ints ≥ {m} (H, W)"}
    wanted = " or ".join(what.get(d, f"{d} ints ≥ {{m}}").format(m=minimum) for d in sizes)
    raise ValueError(f"shape must be {wanted}, got {shape!r}.")


def check_batch(name: str, x: Any, shape: Sequence[int], axes: str, *,
                item: str = "field") -> None:
    """Check that ``x`` is a floating-point tensor of shape ``(B, *shape)``.

    Args:
        name: The argument's name, for the message.
        x: The value to check.
        shape: The expected shape after the batch axis.
        axes: Names of those axes for the message, e.g. ``"cells"`` or ``"rows, columns"``.
        item: What one sample is called in the hint (``"field"``, ``"vector"``).

    Raises:
        ValueError: ``"<name> must have shape (B, <shape>) (batch, <axes>), got <shape of x>;
            add a batch axis with x[None] for a single <item>."``, or ``"<name> must be a
            floating-point tensor, got <dtype>."``
    """
    expected = tuple(shape)
    if not isinstance(x, torch.Tensor) or x.ndim != len(expected) + 1 or tuple(
            x.shape[1:]) != expected:
        got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        dims = ", ".join(str(v) for v in expected)
        raise ValueError(f"{name} must have shape (B, {dims}) (batch, {axes}), got {got}; "
                         f"add a batch axis with x[None] for a single {item}.")
    if not x.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got {x.dtype}.")


def as_dtype_of(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``x`` in the dtype of ``reference`` (``x`` itself when they agree; differentiable).

    The mixed-precision rule of every physics model: the state's dtype governs, and the other
    tensor arguments (force, next state, target) are cast to it.
    """
    return x if x.dtype == reference.dtype else x.to(reference.dtype)


def planar_domain(shape: Any, length: Any = None) -> PeriodicGrid:
    """The 2-D grid of a model's ``shape`` and ``length`` fields, checked (``length=None``: unit
    cells, ``length = shape``); what every 2-D model's ``__post_init__`` builds its domain with.

    Raises:
        ValueError: For a shape that is not a pair of ints ≥ 4, or a length that is not a pair
            of finite numbers > 0.
    """
    shape = check_grid_shape(shape, 2)
    if length is not None and not (isinstance(length, (tuple, list)) and len(length) == 2):
        raise ValueError(f"length must be a pair (L_y, L_x), got {length!r}.")
    return PeriodicGrid(shape, None if length is None else tuple(length))


@dataclass(frozen=True)
class PeriodicGrid:
    """A periodic grid of ``shape`` cells on a box of side lengths ``length`` (1-D or 2-D).

    Cell ``j`` along an axis sits at ``x_j = j · Δ`` with ``Δ = L / N`` (cell positions, not
    centres; pass ``offset=0.5`` to ``positions`` for centres).

    Args:
        shape: Cells per axis, ``(N,)`` or ``(H, W)`` (each ≥ 4).
        length: Side lengths ``(L,)`` or ``(L_y, L_x)`` (each finite and > 0); default: unit
            cells, ``length = shape``.

    Raises:
        ValueError: For a bad shape or length.

    Example:
        >>> grid = PeriodicGrid((64,), (1.0,))
        >>> x = grid.sample_smooth(2, torch.Generator().manual_seed(0), max_mode=4)
        >>> torch.allclose(grid.from_spectral(grid.to_spectral(x)), x)
        True
    """

    shape: tuple[int, ...]
    length: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        shape = check_grid_shape(self.shape)
        object.__setattr__(self, "shape", shape)
        if self.length is None:
            object.__setattr__(self, "length", tuple(float(n) for n in shape))
        elif not (isinstance(self.length, (tuple, list)) and len(self.length) == len(shape)):
            raise ValueError(f"length must have one entry per axis of shape {shape}, got "
                             f"{self.length!r}.")
        else:
            object.__setattr__(self, "length", tuple(
                check_positive(f"length[{i}]", v) for i, v in enumerate(self.length)))

    # --- geometry -------------------------------------------------------------------------------

    @property
    def ndim(self) -> int:
        """Number of spatial axes (1 or 2)."""
        return len(self.shape)

    @property
    def lengths(self) -> tuple[float, ...]:
        """Side lengths (``length`` with its default filled in)."""
        assert self.length is not None  # set in __post_init__
        return self.length

    @property
    def spacing(self) -> tuple[float, ...]:
        """Cell widths ``Δ_i = L_i / N_i`` per axis."""
        return tuple(L / n for L, n in zip(self.lengths, self.shape, strict=True))

    @property
    def cells(self) -> int:
        """Total number of cells ``Π N_i``."""
        return math.prod(self.shape)

    @property
    def spectral_shape(self) -> tuple[int, ...]:
        """Shape of a spectrum from ``to_spectral``: ``(…, N_last // 2 + 1)``."""
        return (*self.shape[:-1], self.shape[-1] // 2 + 1)

    def positions(self, axis: int = -1, *, offset: float = 0.0,
                  device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
        """Positions ``(j + offset) · Δ`` of the cells along one axis, shape ``(N_axis,)``.

        Computed in float64 as ``arange(N) · (L / N)`` (for ``offset = 0``), then cast.
        """
        n, L = self.shape[axis], self.lengths[axis]
        j = torch.arange(n, dtype=torch.float64, device=device)
        if offset:
            j = j + offset
        return (j * (L / n)).to(dtype)

    def coordinates(self, *, offset: float = 0.0, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
        """Cell positions per axis, each of the full grid ``shape`` (``"ij"`` indexing)."""
        axes = [self.positions(a, offset=offset, device=device, dtype=dtype)
                for a in range(self.ndim)]
        return tuple(torch.meshgrid(*axes, indexing="ij")) if self.ndim > 1 else (axes[0],)

    # --- spectral side --------------------------------------------------------------------------

    def mode_numbers(self, device: torch.device | str | None = None
                     ) -> tuple[torch.Tensor, ...]:
        """Integer mode numbers ``m`` per axis (float64), broadcastable to
        ``spectral_shape``: full FFT order ``0, 1, …, −1`` on leading axes, ``0 … N//2`` on
        the last (real FFT) axis."""
        out = []
        for axis, n in enumerate(self.shape):
            if axis == self.ndim - 1:
                m = torch.arange(n // 2 + 1, device=device, dtype=torch.float64)
            else:
                m = torch.fft.fftfreq(n, d=1.0 / n, device=device, dtype=torch.float64).round()
            view = [1] * self.ndim
            view[axis] = m.shape[0]
            out.append(m.reshape(view))
        return tuple(out)

    def wavenumbers(self, device: torch.device | str | None = None,
                    dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, ...]:
        """Angular wavenumbers ``k_i = 2π m_i / L_i`` per axis, each broadcastable to
        ``spectral_shape`` (1-D: one tensor ``(N//2 + 1,)``; 2-D: ``(H, 1)`` and
        ``(1, W//2 + 1)``). Computed in float64, then cast."""
        return tuple((2 * math.pi / L * m).to(dtype)
                     for L, m in zip(self.lengths, self.mode_numbers(device), strict=True))

    def wavenumber_squared(self, device: torch.device | str | None = None) -> torch.Tensor:
        """``|k|² = Σ_i k_i²`` (angular) on ``spectral_shape``, float64."""
        ks = self.wavenumbers(device)
        out = ks[0] ** 2
        for k in ks[1:]:
            out = out + k ** 2
        return out

    def dealias_mask(self, fraction: float = 2 / 3, device: torch.device | str | None = None
                     ) -> torch.Tensor:
        """Boolean mask on ``spectral_shape``: ``True`` where ``|m_i| < fraction · N_i / 2``
        on every axis (Orszag's 2/3 rule by default), for products of fields."""
        check_positive("fraction", fraction)
        keep = None
        for n, m in zip(self.shape, self.mode_numbers(device), strict=True):
            axis_keep = m.abs() < fraction * n / 2
            keep = axis_keep if keep is None else keep & axis_keep
        assert keep is not None
        return keep.expand(self.spectral_shape)

    def real_symbol(self, symbol: torch.Tensor) -> torch.Tensor:
        """The part of a complex per-mode ``symbol`` that a real operator can apply.

        A multiplier ``λ`` on ``spectral_shape`` maps real fields to real fields only if
        ``λ(−k) = conj λ(k)``. The real FFT stores both ``k`` and ``−k`` only in its first and
        (for even ``N``) Nyquist bins of the last axis; there this returns ``½(λ(k) +
        conj λ(−k))``, elsewhere ``λ`` unchanged. So odd terms such as ``i c k`` vanish at the
        Nyquist frequency (the usual convention for spectral first derivatives), and a symbol
        that already is real-operator compatible is returned as it is.
        """
        if not symbol.is_complex():
            return symbol
        lead = self.shape[:-1]
        flat = symbol.reshape(math.prod(lead), symbol.shape[-1])
        # −k on the leading axis (row p ↦ −p mod H); 1-D: the bin is its own partner.
        partner = (-torch.arange(flat.shape[0], device=flat.device)).remainder(flat.shape[0])
        if len(lead) > 1:  # pragma: no cover - grids have at most two axes
            raise NotImplementedError("real_symbol supports 1-D and 2-D grids.")
        columns = [0] + ([self.shape[-1] // 2] if self.shape[-1] % 2 == 0 else [])
        out = flat.clone()
        for c in columns:
            out[:, c] = 0.5 * (flat[:, c] + flat[partner, c].conj())
        return out.reshape(symbol.shape)

    def to_spectral(self, x: torch.Tensor) -> torch.Tensor:
        """Unnormalised real FFT over the last ``ndim`` axes: ``(…, *shape)`` → complex
        ``(…, *spectral_shape)``. Leading (batch, component) axes pass through."""
        if self.ndim == 1:
            return torch.fft.rfft(x, dim=-1)
        return torch.fft.rfft2(x)

    def from_spectral(self, x_hat: torch.Tensor) -> torch.Tensor:
        """Inverse of ``to_spectral``: complex ``(…, *spectral_shape)`` → real
        ``(…, *shape)``."""
        if self.ndim == 1:
            return torch.fft.irfft(x_hat, n=self.shape[0], dim=-1)
        return torch.fft.irfft2(x_hat, s=self.shape)

    # --- input checks ---------------------------------------------------------------------------

    def check(self, name: str, x: torch.Tensor, *, components: int | None = None) -> None:
        """Check that ``x`` is a floating-point batch of fields on this grid.

        Args:
            name: The argument's name, for the message.
            x: Expected ``(B, *shape)``, or ``(B, components, *shape)`` when ``components`` is
                given (e.g. 2 for a 2-D velocity).
            components: Number of field components per sample, or ``None`` for scalar fields.

        Raises:
            ValueError: ``"<name> must have shape (B, 64) (batch, cells), got (64,); add a batch
                axis with x[None] for a single field."`` (or the 2-D / component equivalent), or
                ``"<name> must be a floating-point tensor, got torch.int64."``
        """
        axes = {1: "cells", 2: "rows, columns"}[self.ndim]
        if components is None:
            check_batch(name, x, self.shape, axes)
        else:
            check_batch(name, x, (components, *self.shape), "components, " + axes)

    # --- samplers -------------------------------------------------------------------------------

    def sample_smooth(self, batch: int, generator: torch.Generator, *, max_mode: int = 8,
                      amplitude: float = 1.0, device: torch.device | str | None = None,
                      dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Random smooth zero-mean periodic fields, ``(batch, *shape)``.

        1-D: ``smooth_periodic_fields``. 2-D: ``smooth_periodic_fields_2d``. Drawn on
        ``generator.device`` in float64 and then moved and cast, so a seed fixes the batch
        whatever ``device`` and ``dtype``.

        Raises:
            ValueError: If ``batch < 1`` or ``max_mode`` is not in ``[1, min_i N_i / 2)``.
        """
        check_int("batch", batch, minimum=1)
        if self.ndim == 1:
            return smooth_periodic_fields(self.shape[0], batch, generator, max_mode=max_mode,
                                          amplitude=amplitude, device=device, dtype=dtype)
        return smooth_periodic_fields_2d(self.shape, batch, generator, max_mode=max_mode,
                                         amplitude=amplitude, device=device, dtype=dtype)


def _check_max_mode(max_mode: Any, n: int) -> int:
    if not is_int(max_mode) or not 1 <= max_mode < n // 2:
        raise ValueError(f"max_mode must be an int in [1, {n // 2 - 1}] for n={n}, "
                         f"got {max_mode!r}.")
    return int(max_mode)


def smooth_periodic_fields(n: int, batch: int, generator: torch.Generator, *, max_mode: int,
                           amplitude: float, device: torch.device | str | None,
                           dtype: torch.dtype) -> torch.Tensor:
    """``(batch, n)`` fields ``amplitude · Σ_{m=1}^{max_mode} (a_m cos + b_m sin)(2π m x/L) / m``
    with ``a_m, b_m ~ N(0, 1)`` drawn from ``generator`` (on ``generator.device``); the sampler
    of every 1-D model (the amplitude of mode ``m`` decays like ``1/m``).

    Raises:
        ValueError: If ``max_mode`` is not an int in ``[1, n/2)``.
    """
    _check_max_mode(max_mode, n)
    coeffs = torch.randn(batch, max_mode, 2, generator=generator, device=generator.device,
                         dtype=torch.float64)
    m = torch.arange(1, max_mode + 1, device=generator.device, dtype=torch.float64)
    spec = torch.zeros(batch, n // 2 + 1, device=generator.device, dtype=torch.complex128)
    # irfft of X_m = (N/2)(a − i b) gives a cos + b sin (for 0 < m < N/2).
    spec[:, 1:max_mode + 1] = torch.complex(coeffs[..., 0], -coeffs[..., 1]) * (
        amplitude * n / 2 / m)
    out = torch.fft.irfft(spec, n=n, dim=-1)
    return out.to(device=device if device is not None else generator.device, dtype=dtype)


def smooth_periodic_fields_2d(shape: Sequence[int], batch: int, generator: torch.Generator, *,
                              max_mode: int, amplitude: float,
                              device: torch.device | str | None,
                              dtype: torch.dtype) -> torch.Tensor:
    """``(batch, H, W)`` fields ``amplitude · Σ_m (a_m cos + b_m sin)(2π (p y/L_y + q x/L_x)) /
    |m|`` over the modes ``m = (p, q) ≠ 0`` with ``|p|, |q| ≤ max_mode`` (each pair ``±m``
    once), ``|m| = √(p² + q²)`` and ``a_m, b_m ~ N(0, 1)`` from ``generator`` (on
    ``generator.device``): the 2-D sibling of ``smooth_periodic_fields``.

    Raises:
        ValueError: If ``max_mode`` is not an int in ``[1, min(H, W)/2)``.
    """
    h, w = (int(v) for v in shape)
    _check_max_mode(max_mode, min(h, w))
    dev = generator.device
    M = max_mode
    coeffs = torch.randn(batch, 2 * M + 1, M + 1, 2, generator=generator, device=dev,
                         dtype=torch.float64)
    p = torch.arange(-M, M + 1, device=dev, dtype=torch.float64)[:, None]
    q = torch.arange(0, M + 1, device=dev, dtype=torch.float64)[None, :]
    # One of each pair ±m: q > 0, or q = 0 and p > 0.
    half = (q > 0) | ((q == 0) & (p > 0))
    radius = torch.sqrt(p * p + q * q).clamp_min(1.0)
    # Inverse real 2-D FFT of X_m = (H W / 2)(a − i b) gives a cos + b sin for 0 < q < W/2;
    # on the column q = 0 the mirror mode −m is written explicitly as the complex conjugate.
    block = torch.complex(coeffs[..., 0], -coeffs[..., 1]) * torch.where(
        half, amplitude * h * w / 2 / radius, torch.zeros_like(radius))
    column = block[:, :, 0]
    block[:, :, 0] = column + column.flip(1).conj()  # rows p and −p: c_p and conj(c_{−p})
    spec = torch.zeros(batch, h, w // 2 + 1, device=dev, dtype=torch.complex128)
    rows = torch.arange(-M, M + 1, device=dev).remainder(h)
    spec[:, rows, :M + 1] = block
    out = torch.fft.irfft2(spec, s=(h, w))
    return out.to(device=device if device is not None else dev, dtype=dtype)


class FactorCache:
    """Per-``(device, dtype)`` cache of a model's precomputed factors (a ``NamedTuple``).

    ``get(device, dtype, build)`` returns the cached factors, or calls ``build(device)`` once —
    which returns the factors in float64 / complex128 on ``device`` — and casts every
    floating-point field to ``dtype`` (complex fields to the complex dtype of the same precision;
    integer fields stay as they are). Models keep one instance in a ``compare=False`` dataclass
    field; it pickles with its contents.

    Example:
        >>> from typing import NamedTuple
        >>> class Factors(NamedTuple):
        ...     decay: torch.Tensor
        >>> cache = FactorCache()
        >>> f = cache.get(torch.device("cpu"), torch.float32,
        ...               lambda dev: Factors(torch.ones(3, dtype=torch.float64, device=dev)))
        >>> f.decay.dtype
        torch.float32
    """

    def __init__(self) -> None:
        self._store: dict[tuple[torch.device, torch.dtype], Any] = {}

    def get(self, device: torch.device | str | None, dtype: torch.dtype,
            build: Callable[[torch.device], F]) -> F:
        """The factors for ``(device, dtype)`` (``None`` means CPU), built on first use."""
        if isinstance(device, torch.device):  # what steps pass: no torch.device to construct
            hit = self._store.get((device, dtype))
            if hit is not None:
                return hit
        dev = torch.device(device) if device is not None else torch.device("cpu")
        key = (dev, dtype)
        cached = self._store.get(key)
        if cached is None:
            built = build(dev)
            cast = (_cast(t, dtype) for t in built)
            cached = type(built)(*cast) if hasattr(built, "_fields") else tuple(cast)
            self._store[key] = cached
        return cached  # type: ignore[return-value]

    def clear(self) -> None:
        """Drop every cached entry (e.g. to free device memory)."""
        self._store.clear()

    def __len__(self) -> int:
        return len(self._store)

    def __repr__(self) -> str:
        return f"FactorCache({len(self)} entries)"


def _cast(t: Any, dtype: torch.dtype) -> Any:
    if not isinstance(t, torch.Tensor):
        return t
    if t.is_complex():
        return t.to(dtype.to_complex() if not dtype.is_complex else dtype)
    if t.is_floating_point():
        return t.to(dtype)
    return t

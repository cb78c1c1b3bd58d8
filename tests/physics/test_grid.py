"""PeriodicGrid (1-D and 2-D geometry, wavenumbers, FFT pair, checks, samplers) and FactorCache.

References are written out here (positions ``j L/N``, wavenumbers ``2π m/L``, the samplers'
sums of sines and cosines), independently of the implementation.
"""

from __future__ import annotations

import math
import pickle
from typing import NamedTuple

import pytest
import torch

from sipenv.physics import DiffusionPhysics, FactorCache, PeriodicGrid
from sipenv.physics.grid import check_grid_shape, smooth_periodic_fields

F64 = torch.float64


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- geometry -----------------------------------------------------------------------------------


def test_1d_geometry_and_wavenumbers() -> None:
    grid = PeriodicGrid((16,), (2.0,))
    assert grid.ndim == 1 and grid.shape == (16,) and grid.length == (2.0,)
    assert grid.spacing == (0.125,) and grid.cells == 16 and grid.spectral_shape == (9,)
    torch.testing.assert_close(grid.positions(), torch.arange(16, dtype=F64) * 0.125)
    torch.testing.assert_close(grid.positions(offset=0.5), (torch.arange(16, dtype=F64) + 0.5)
                               * 0.125)
    (k,) = grid.wavenumbers()
    torch.testing.assert_close(k, 2 * math.pi / 2.0 * torch.arange(9, dtype=F64))
    torch.testing.assert_close(grid.wavenumber_squared(), k**2)
    # The 1-D models expose the same numbers.
    assert torch.equal(DiffusionPhysics(n=16, length=2.0).wavenumbers(), k)


def test_2d_geometry_and_wavenumbers_in_fft_order() -> None:
    grid = PeriodicGrid((6, 8), (3.0, 4.0))
    assert grid.spacing == (0.5, 0.5) and grid.spectral_shape == (6, 5) and grid.cells == 48
    ky, kx = grid.wavenumbers()
    assert ky.shape == (6, 1) and kx.shape == (1, 5)
    torch.testing.assert_close(ky[:, 0], 2 * math.pi / 3.0 * torch.tensor(
        [0, 1, 2, -3, -2, -1], dtype=F64))
    torch.testing.assert_close(kx[0], 2 * math.pi / 4.0 * torch.arange(5, dtype=F64))
    torch.testing.assert_close(grid.wavenumber_squared(), ky**2 + kx**2)
    y, x = grid.coordinates()
    assert y.shape == x.shape == (6, 8)
    torch.testing.assert_close(y[:, 0], torch.arange(6, dtype=F64) * 0.5)
    torch.testing.assert_close(x[0], torch.arange(8, dtype=F64) * 0.5)
    assert PeriodicGrid((8, 8)).length == (8.0, 8.0)  # unit cells by default


def test_fft_pair_round_trips_with_batch_and_component_axes() -> None:
    for shape in [(12,), (8, 6)]:
        grid = PeriodicGrid(shape)
        x = torch.randn(3, 2, *shape, dtype=F64, generator=_gen(0))
        spec = grid.to_spectral(x)
        assert spec.shape == (3, 2, *grid.spectral_shape) and spec.is_complex()
        torch.testing.assert_close(grid.from_spectral(spec), x)


def test_wavenumbers_differentiate_a_sine_exactly() -> None:
    grid = PeriodicGrid((8, 16), (1.0, 2.0))
    y, x = grid.coordinates()
    field = torch.sin(2 * math.pi * 3 * x / 2.0) * torch.cos(2 * math.pi * y)
    _, kx = grid.wavenumbers()
    dx = grid.from_spectral(1j * kx * grid.to_spectral(field))
    expected = 2 * math.pi * 3 / 2.0 * torch.cos(2 * math.pi * 3 * x / 2.0) * torch.cos(
        2 * math.pi * y)
    torch.testing.assert_close(dx, expected, atol=1e-12, rtol=0)


def test_dealias_mask_keeps_two_thirds_of_the_modes() -> None:
    mask = PeriodicGrid((12,)).dealias_mask()
    assert mask.tolist() == [True] * 4 + [False] * 3  # |m| < 4
    mask2 = PeriodicGrid((12, 12)).dealias_mask()
    assert mask2.shape == (12, 7) and int(mask2.sum()) == 7 * 4


# --- checks -------------------------------------------------------------------------------------


def test_check_messages_name_the_expected_shape_and_the_fix() -> None:
    with pytest.raises(ValueError, match=r"x must have shape \(B, 64\) \(batch, cells\), got "
                                         r"\(64,\); add a batch axis with x\[None\]"):
        PeriodicGrid((64,)).check("x", torch.zeros(64))
    with pytest.raises(ValueError, match=r"\(B, 8, 6\) \(batch, rows, columns\)"):
        PeriodicGrid((8, 6)).check("u", torch.zeros(8, 6))
    with pytest.raises(ValueError, match=r"\(B, 2, 8, 6\) \(batch, components, rows, columns\)"):
        PeriodicGrid((8, 6)).check("v", torch.zeros(1, 8, 6), components=2)
    PeriodicGrid((8, 6)).check("v", torch.zeros(1, 2, 8, 6), components=2)
    with pytest.raises(ValueError, match="floating-point"):
        PeriodicGrid((8,)).check("x", torch.zeros(1, 8, dtype=torch.int64))
    with pytest.raises(ValueError, match="got list"):
        PeriodicGrid((8,)).check("x", [0.0] * 8)  # type: ignore[arg-type]


@pytest.mark.parametrize("shape", [(3,), (8, 2), (8.0,), (True, 8), (4, 4, 4), (), 8, "ab"])
def test_bad_shapes_raise(shape: object) -> None:
    with pytest.raises(ValueError, match="shape must be"):
        PeriodicGrid(shape)  # type: ignore[arg-type]


@pytest.mark.parametrize("length", [(0.0,), (math.nan,), (1.0, 1.0), (-1.0,), 1.0])
def test_bad_lengths_raise(length: object) -> None:
    with pytest.raises(ValueError, match="length"):
        PeriodicGrid((8,), length)  # type: ignore[arg-type]


def test_check_grid_shape_wording() -> None:
    with pytest.raises(ValueError, match=r"shape must be a pair of ints ≥ 4 \(H, W\)"):
        check_grid_shape((8,), 2)
    assert check_grid_shape([8, 5], 2) == (8, 5)


# --- samplers -----------------------------------------------------------------------------------


def test_1d_sampler_is_the_documented_law_and_the_models_use_it() -> None:
    n, batch, max_mode, amp = 32, 3, 5, 0.7
    out = PeriodicGrid((n,)).sample_smooth(batch, _gen(4), max_mode=max_mode, amplitude=amp,
                                           dtype=F64)
    coeffs = torch.randn(batch, max_mode, 2, generator=_gen(4), dtype=F64)
    x = torch.arange(n, dtype=F64) / n
    m = torch.arange(1, max_mode + 1, dtype=F64)[:, None]
    theta = 2 * math.pi * m * x
    expected = amp * ((coeffs[..., 0, None] * torch.cos(theta)
                       + coeffs[..., 1, None] * torch.sin(theta)) / m).sum(1)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    same = smooth_periodic_fields(n, batch, _gen(4), max_mode=max_mode, amplitude=amp,
                                  device=None, dtype=F64)
    assert torch.equal(out, same)
    assert torch.equal(DiffusionPhysics(n=n).sample_fields(batch, _gen(4), max_mode=max_mode,
                                                           amplitude=amp, dtype=F64), same)


def test_2d_sampler_is_the_documented_law() -> None:
    (h, w), batch, M, amp = (8, 12), 2, 2, 1.5
    grid = PeriodicGrid((h, w), (2.0, 3.0))
    out = grid.sample_smooth(batch, _gen(5), max_mode=M, amplitude=amp, dtype=F64)
    assert out.shape == (batch, h, w)
    coeffs = torch.randn(batch, 2 * M + 1, M + 1, 2, generator=_gen(5), dtype=F64)
    y, x = grid.coordinates()
    expected = torch.zeros(batch, h, w, dtype=F64)
    for i, p in enumerate(range(-M, M + 1)):
        for q in range(M + 1):
            if not (q > 0 or (q == 0 and p > 0)):
                continue
            theta = 2 * math.pi * (p * y / 2.0 + q * x / 3.0)
            a, b = coeffs[:, i, q, 0], coeffs[:, i, q, 1]
            expected += amp * (a[:, None, None] * torch.cos(theta)
                               + b[:, None, None] * torch.sin(theta)) / math.hypot(p, q)
    torch.testing.assert_close(out, expected, atol=1e-12, rtol=0)
    assert torch.equal(out, grid.sample_smooth(batch, _gen(5), max_mode=M, amplitude=amp,
                                               dtype=F64))


@pytest.mark.parametrize("shape,max_mode", [((16,), 8), ((16,), 0), ((16, 8), 4), ((8, 8), 2.0)])
def test_sampler_rejects_bad_max_mode(shape: tuple[int, ...], max_mode: object) -> None:
    with pytest.raises(ValueError, match="max_mode"):
        PeriodicGrid(shape).sample_smooth(1, _gen(0), max_mode=max_mode)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch"):
        PeriodicGrid(shape).sample_smooth(0, _gen(0), max_mode=1)


# --- factor cache -------------------------------------------------------------------------------


class _Factors(NamedTuple):
    real: torch.Tensor
    cplx: torch.Tensor
    index: torch.Tensor


def test_factor_cache_builds_once_per_device_and_dtype_and_casts() -> None:
    calls: list[torch.device] = []

    def build(device: torch.device) -> _Factors:
        calls.append(device)
        return _Factors(torch.full((3,), 1 / 3, dtype=F64, device=device),
                        torch.full((3,), 1 / 3 + 1j, dtype=torch.complex128, device=device),
                        torch.arange(3, device=device))

    cache = FactorCache()
    f32 = cache.get("cpu", torch.float32, build)
    assert isinstance(f32, _Factors)
    assert f32.real.dtype == torch.float32 and f32.cplx.dtype == torch.complex64
    assert f32.index.dtype == torch.int64
    assert f32.real[0] == torch.tensor(1 / 3, dtype=F64).float()  # rounded once, from float64
    assert cache.get(None, torch.float32, build) is f32 and len(calls) == 1
    f64 = cache.get(torch.device("cpu"), F64, build)
    assert f64.cplx.dtype == torch.complex128 and len(calls) == 2 and len(cache) == 2
    clone = pickle.loads(pickle.dumps(cache))
    assert torch.equal(clone.get("cpu", F64, build).real, f64.real) and len(calls) == 2
    cache.clear()
    assert len(cache) == 0

"""Property-based tests (hypothesis) of every physics model, on random fields, amplitudes and
parameters: finiteness, conservation, stated round-trip accuracy, batching and precision.

A new model joins the whole suite with one entry in :data:`MODELS`: a strategy that draws a valid
model, the largest valid state amplitude and the model's *stated* accuracy (see
:class:`ModelSpec`). The analytic checks of each model
(decay rates, closed-form sources, gradcheck) live in ``tests/physics/``; this suite checks the
properties every model must have over its whole valid parameter range.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st
from reliability_support import hyp_settings

from sipenv.physics import BurgersPhysics, DiffusionPhysics, PhysicsModel

F32, F64 = torch.float32, torch.float64


# --- the models -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A physics model family and its stated accuracy.

    Attributes:
        cls: The model class (also the test id).
        models: Strategy drawing a model anywhere in its valid parameter range.
        round_trip_rtol: Stated accuracy of ``inverse_step(step(s, f), f, s) ≈ s``, relative to the
            field scale ``‖s‖∞ + ‖step(s, f)‖∞ + dt‖f‖∞``, for a model and dtype.
        exact_part: Projection onto the part of a field where ``inverse_step`` is exact whatever
            the linearisation point (``None``: the inverse is only local, e.g. nonlinear physics).
        conserves_mean: ``mean(step(s, f)) = mean(s) + dt · mean(f)`` (periodic conservation law
            with additive forcing; with ``f = 0`` the mean is conserved).
        max_amplitude: Largest ``max|s|`` of a valid state (e.g. a CFL limit); forces and
            unrelated fields are drawn up to 1e6 regardless.
    """

    cls: type
    models: st.SearchStrategy[Any]
    round_trip_rtol: Callable[[Any, torch.dtype], float]
    exact_part: Callable[[Any, torch.Tensor], torch.Tensor] | None
    conserves_mean: bool
    max_amplitude: Callable[[Any], float] = lambda phys: 1e6


@st.composite
def diffusion_models(draw: st.DrawFn) -> DiffusionPhysics:
    """Anywhere in the valid range: every dt and ν from 1e-6 to 10 (exact integration is stable
    for all), grids of 4–128 cells (odd ones too), inverse gains from 1 (no inversion) to 1e6."""
    return DiffusionPhysics(
        n=draw(st.integers(4, 128)),
        length=10 ** draw(st.floats(-1, 1)),
        nu=10 ** draw(st.floats(-6, 1)),
        dt=10 ** draw(st.floats(-6, 1)),
        max_gain=10 ** draw(st.floats(0, 6)),
    )


def diffusion_round_trip_rtol(phys: DiffusionPhysics, dtype: torch.dtype) -> float:
    """Rounding of one step (FFT, ~eps·log₂N of the field scale) amplified by the inverse's
    largest gain: ``4 · eps · log₂N · max_inverse_gain`` (measured worst case over 3000 random
    models: 0.5 of it, so the factor 4 is an 8× margin)."""
    return 4 * torch.finfo(dtype).eps * math.log2(phys.n) * phys.max_inverse_gain


def diffusion_unclamped_modes(phys: DiffusionPhysics, x: torch.Tensor) -> torch.Tensor:
    """The part of ``x`` in the Fourier modes that ``inverse_step`` inverts exactly
    (``exp(ν k² dt) ≤ max_gain``)."""
    decay_exponent = phys.nu * phys.wavenumbers(dtype=F64) ** 2 * phys.dt
    exact = (decay_exponent <= math.log(phys.max_gain)).to(x.dtype)
    return torch.fft.irfft(torch.fft.rfft(x) * exact, n=phys.n)


@st.composite
def burgers_models(draw: st.DrawFn) -> BurgersPhysics:
    """Grids of 8–128 cells, ν from 3e-4 to 3e-2, dt from 3e-3 to 5e-2 in 1–20 sub-steps,
    inverse gains 1–1000 and 0–10 inverse iterations (states are kept within the CFL limit)."""
    return BurgersPhysics(
        n=draw(st.integers(8, 128)),
        length=10 ** draw(st.floats(-0.3, 0.3)),
        nu=10 ** draw(st.floats(-3.5, -1.5)),
        dt=10 ** draw(st.floats(-2.5, -1.3)),
        substeps=draw(st.integers(1, 20)),
        max_gain=10 ** draw(st.floats(0, 3)),
        inverse_iterations=draw(st.integers(0, 10)),
    )


def burgers_round_trip_rtol(phys: BurgersPhysics, dtype: torch.dtype) -> float:
    """Linearised at the true state the defect correction starts at the answer; its iterates
    differ by rounding amplified by at most ``max_gain`` (measured worst: 0.03 of this bound)."""
    return 4 * torch.finfo(dtype).eps * math.log2(phys.n) * phys.max_gain


MODELS: list[ModelSpec] = [
    ModelSpec(DiffusionPhysics, diffusion_models(), diffusion_round_trip_rtol,
              diffusion_unclamped_modes, conserves_mean=True),
    ModelSpec(BurgersPhysics, burgers_models(), burgers_round_trip_rtol, None,
              conserves_mean=True, max_amplitude=lambda phys: 0.9 * phys.max_stable_speed),
]

MODEL_PARAMS = [pytest.param(spec, id=spec.cls.__name__) for spec in MODELS]


# --- fields -------------------------------------------------------------------------------------


@st.composite
def fields(draw: st.DrawFn, n: int, batch: int, max_amplitude: float = 1e6) -> torch.Tensor:
    """``(batch, n)`` float64 fields: smooth (few modes plus a mean), rough (white noise) or a
    spike, with ``max|field|`` from 1e-8 to 1e6 (at most ``max_amplitude``)."""
    kind = draw(st.sampled_from(["smooth", "rough", "spike"]))
    amplitude = min(10 ** draw(st.floats(-8, 6)), max_amplitude)
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**32 - 1)))
    if kind == "smooth":
        m = torch.arange(1, 4, dtype=F64)
        x = torch.arange(n, dtype=F64) / n
        coeffs = torch.randn(batch, 3, 2, generator=gen, dtype=F64)
        field = (coeffs[..., :1] * torch.cos(2 * math.pi * m[:, None] * x)
                 + coeffs[..., 1:] * torch.sin(2 * math.pi * m[:, None] * x)).sum(1)
        field = field + torch.randn(batch, 1, generator=gen, dtype=F64)  # a non-zero mean
    elif kind == "rough":
        field = torch.randn(batch, n, generator=gen, dtype=F64)
    else:
        field = torch.zeros(batch, n, dtype=F64)
        field[:, draw(st.integers(0, n - 1))] = 1.0
    return amplitude * field / field.abs().amax()


def scale(*xs: torch.Tensor) -> float:
    return sum(float(x.abs().max()) for x in xs)


@st.composite
def cases(draw: st.DrawFn, spec: ModelSpec, batch: int | None = None
          ) -> tuple[PhysicsModel, torch.Tensor, torch.Tensor]:
    """A model, a (valid) state batch and a force batch (float64)."""
    phys = draw(spec.models)
    b = batch if batch is not None else draw(st.integers(1, 4))
    return phys, draw(fields(phys.n, b, spec.max_amplitude(phys))), draw(fields(phys.n, b))


def _finite(x: torch.Tensor) -> bool:
    return bool(torch.isfinite(x).all())


# --- finiteness ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", MODEL_PARAMS)
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@hyp_settings(80)
@given(data=st.data())
def test_step_and_inverse_never_return_inf_or_nan(spec: ModelSpec, dtype: torch.dtype,
                                                  data: st.DataObject) -> None:
    phys, s, f = data.draw(cases(spec))
    other = data.draw(fields(phys.n, s.shape[0]))  # an unrelated next state / linearisation
    s, f, other = s.to(dtype), f.to(dtype), other.to(dtype)
    nxt = phys.step(s, f)
    assert _finite(nxt) and nxt.dtype == dtype
    for out in (phys.inverse_step(nxt, f, s), phys.inverse_step(other, f, s),
                phys.inverse_step(nxt, f, other), phys.inverse_step(other, -f, nxt)):
        assert _finite(out) and out.dtype == dtype and out.shape == s.shape


# --- conservation -------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", [p for p in MODEL_PARAMS if p.values[0].conserves_mean])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@hyp_settings(80)
@given(data=st.data())
def test_mean_is_conserved_and_grows_by_dt_times_mean_force(spec: ModelSpec, dtype: torch.dtype,
                                                            data: st.DataObject) -> None:
    phys, s, f = data.draw(cases(spec))
    s, f = s.to(dtype), f.to(dtype)
    tol = 4 * torch.finfo(dtype).eps * math.log2(phys.n)
    free = phys.step(s, torch.zeros_like(s))
    torch.testing.assert_close(free.mean(-1), s.mean(-1), rtol=0,
                               atol=tol * scale(s, free))
    forced = phys.step(s, f)
    torch.testing.assert_close(forced.mean(-1), s.mean(-1) + phys.dt * f.mean(-1), rtol=0,
                               atol=tol * scale(s, forced, phys.dt * f))


# --- round trips at the stated accuracy ---------------------------------------------------------


@pytest.mark.parametrize("spec", MODEL_PARAMS)
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@hyp_settings(80)
@given(data=st.data())
def test_inverse_step_round_trip_meets_the_stated_accuracy(spec: ModelSpec, dtype: torch.dtype,
                                                           data: st.DataObject) -> None:
    """``inverse_step(step(s, f), f, s) ≈ s``: the inverse linearised at the true state."""
    phys, s, f = data.draw(cases(spec))
    s, f = s.to(dtype), f.to(dtype)
    nxt = phys.step(s, f)
    back = phys.inverse_step(nxt, f, s)
    atol = spec.round_trip_rtol(phys, dtype) * scale(s, nxt, phys.dt * f)
    torch.testing.assert_close(back, s, rtol=0, atol=atol)


@pytest.mark.parametrize("spec", [p for p in MODEL_PARAMS if p.values[0].exact_part])
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@hyp_settings(80)
@given(data=st.data())
def test_inverse_is_exact_in_its_exact_part_from_any_linearisation_point(
        spec: ModelSpec, dtype: torch.dtype, data: st.DataObject) -> None:
    """Linearised at an unrelated state, the inverse still recovers ``s`` exactly in the modes
    it does not clamp (to the stated accuracy, with the linearisation point in the scale)."""
    assert spec.exact_part is not None
    phys, s, f = data.draw(cases(spec))
    around = data.draw(fields(phys.n, s.shape[0]))
    s, f, around = s.to(dtype), f.to(dtype), around.to(dtype)
    nxt = phys.step(s, f)
    back = phys.inverse_step(nxt, f, around)
    atol = spec.round_trip_rtol(phys, dtype) * scale(s, nxt, phys.dt * f, around)
    torch.testing.assert_close(spec.exact_part(phys, back), spec.exact_part(phys, s), rtol=0,
                               atol=atol)


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@hyp_settings(80)
@given(data=st.data())
def test_diffusion_clamped_modes_move_towards_the_preimage_never_past_it(
        dtype: torch.dtype, data: st.DataObject) -> None:
    """Modes with ``exp(ν k² dt) > max_gain`` are only partly inverted: per mode, the result lies
    between the linearisation point and the exact preimage (contraction ``|1 − max_gain d_k|``)."""
    phys, s, f = data.draw(cases(MODELS[0]))
    around = data.draw(fields(phys.n, s.shape[0]))
    s, f, around = s.to(dtype), f.to(dtype), around.to(dtype)
    back = phys.inverse_step(phys.step(s, f), f, around)
    err_before = torch.fft.rfft(around - s).abs()
    err_after = torch.fft.rfft(back - s).abs()
    slack = diffusion_round_trip_rtol(phys, dtype) * scale(s, around, phys.dt * f) * phys.n
    assert bool((err_after <= err_before + slack).all())


@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@hyp_settings(40)
@given(data=st.data())
def test_burgers_inverse_from_the_next_state_meets_its_stated_accuracy(
        dtype: torch.dtype, data: st.DataObject) -> None:
    """BurgersPhysics' stated accuracy: at the defaults, started from the next state itself,
    smooth states (no shock within the step, ``max|∂u/∂x| · dt ≤ 0.2``) come back to ≤ 1e-3
    relative error, under any force of the reference size (|f| ≤ 2).

    In float32 the error is relative to the step's scale ``‖s‖ + dt‖f‖``: for a tiny state
    under a large force (``|s| ~ 1e-3``, ``dt·|f| = 0.06``) float32 rounding of the force alone
    exceeds 1e-3 of ``‖s‖`` (hypothesis found ``1.2e-3``); float64 meets it relative to ``‖s‖``.
    """
    phys = BurgersPhysics()
    gen = torch.Generator().manual_seed(data.draw(st.integers(0, 2**32 - 1)))
    s = phys.sample_fields(2, gen, max_mode=data.draw(st.integers(1, 8)),
                           amplitude=10 ** data.draw(st.floats(-3, 0.5)), dtype=F64)
    steepness = float(((s.roll(-1, -1) - s) / phys.dx).abs().max()) * phys.dt
    assume(steepness <= 0.2 and float(s.abs().max()) <= phys.max_stable_speed)
    f = phys.sample_fields(2, gen, max_mode=data.draw(st.integers(1, 8)), dtype=F64)
    f = data.draw(st.floats(0, 2)) * f / f.abs().amax()
    s, f = s.to(dtype), f.to(dtype)
    nxt = phys.step(s, f)
    back = phys.inverse_step(nxt, f, nxt)
    size = s.norm(dim=-1) + (phys.dt * f).norm(dim=-1) * (dtype == F32)
    assert float(((back - s).norm(dim=-1) / size).max()) <= 1e-3


@pytest.mark.parametrize("spec", MODEL_PARAMS)
@pytest.mark.parametrize("dtype", [F32, F64], ids=["f32", "f64"])
@hyp_settings(80)
@given(data=st.data())
def test_force_for_then_step_reaches_the_next_state(spec: ModelSpec, dtype: torch.dtype,
                                                    data: st.DataObject) -> None:
    """``step(s, force_for(s, n)) ≈ n`` for any ``n`` (the forward direction is well
    conditioned: ``force_for`` divides by ``g_k ∈ (0, dt]`` and ``step`` multiplies back)."""
    phys, s, nxt = data.draw(cases(spec))
    s, nxt = s.to(dtype), nxt.to(dtype)
    force = phys.force_for(s, nxt)
    assert _finite(force)
    reached = phys.step(s, force)
    tol = 8 * torch.finfo(dtype).eps * math.log2(phys.n)
    torch.testing.assert_close(reached, nxt, rtol=0,
                               atol=tol * scale(s, nxt, phys.dt * force))


# --- batching and precision ---------------------------------------------------------------------


@pytest.mark.parametrize("spec", MODEL_PARAMS)
@hyp_settings(60)
@given(data=st.data())
def test_batched_results_equal_per_sample_results(spec: ModelSpec, data: st.DataObject) -> None:
    phys, s, f = data.draw(cases(spec, batch=data.draw(st.integers(2, 5))))
    dtype = data.draw(st.sampled_from([F32, F64]))
    s, f = s.to(dtype), f.to(dtype)
    around = s.flip(-1)
    nxt = phys.step(s, f)
    batched = (nxt, phys.inverse_step(nxt, f, around), phys.force_for(s, nxt))
    for i in range(s.shape[0]):
        row = slice(i, i + 1)
        single = (phys.step(s[row], f[row]),
                  phys.inverse_step(nxt[row], f[row], around[row]),
                  phys.force_for(s[row], nxt[row]))
        for b, one in zip(batched, single, strict=True):
            # Same operations per row; allow only last-bit differences of batched kernels
            # (FFTs vectorise across rows), accumulated over the explicit sub-steps of a step
            # where the model has them. force_for divides a difference of states by ~dt, so its
            # rounding is that of the states over dt. Mixing rows up would be O(1).
            steps = getattr(phys, "substeps", 1)
            size = scale(b) if b is not batched[2] else max(scale(b), scale(s, nxt) / phys.dt)
            torch.testing.assert_close(b[row], one, rtol=0,
                                       atol=4 * steps * torch.finfo(dtype).eps * size)


@pytest.mark.parametrize("spec", MODEL_PARAMS)
@hyp_settings(80)
@given(data=st.data())
def test_float32_and_float64_agree_to_the_float32_accuracy(spec: ModelSpec,
                                                           data: st.DataObject) -> None:
    """The same (float32-representable) inputs give float32 results within the stated float32
    accuracy of the float64 ones."""
    phys, s, f = data.draw(cases(spec))
    s32, f32 = s.float(), f.float()
    s64, f64 = s32.double(), f32.double()
    n32, n64 = phys.step(s32, f32), phys.step(s64, f64)
    # Rounding of each FFT pair (~eps·log₂N) over S sub-steps adds up like a random walk (√S):
    # hypothesis found Burgers at S = 16 and max|u| near the CFL limit 1.15× over the bound
    # without that factor.
    substeps = getattr(phys, "n_substeps", 1)
    step_tol = (4 * torch.finfo(F32).eps * math.log2(phys.n) * math.sqrt(substeps)
                * scale(s64, n64, phys.dt * f64))
    torch.testing.assert_close(n32.double(), n64, rtol=0, atol=step_tol)
    # Same next state for both (the float32 one), so only the inverse's rounding differs.
    b32 = phys.inverse_step(n32, f32, s32)
    b64 = phys.inverse_step(n32.double(), f64, s64)
    inv_tol = spec.round_trip_rtol(phys, F32) * scale(s64, n64, phys.dt * f64)
    torch.testing.assert_close(b32.double(), b64, rtol=0, atol=inv_tol)


@pytest.mark.parametrize("spec", MODEL_PARAMS)
@pytest.mark.parametrize(("dtype", "other"), [(F32, F64), (F64, F32)], ids=["f32+f64", "f64+f32"])
@hyp_settings(20)
@given(data=st.data())
def test_mixed_precision_follows_the_state(spec: ModelSpec, dtype: torch.dtype,
                                           other: torch.dtype, data: st.DataObject) -> None:
    """The contract's one rule (``PhysicsModel``): results have the ``state``'s dtype, and the
    other tensors are cast to it first, so mixing dtypes equals casting by hand."""
    phys, s, f = data.draw(cases(spec))
    s, f_other = s.to(dtype), f.to(other)
    f_cast = f_other.to(dtype)  # what the rule makes of the other-dtype force
    nxt = phys.step(s, f_cast)
    n_other = nxt.to(other)
    cases_ = [(phys.step(s, f_other), nxt),
              (phys.inverse_step(n_other, f_other, s),
               phys.inverse_step(n_other.to(dtype), f_cast, s)),
              (phys.force_for(s, n_other), phys.force_for(s, n_other.to(dtype)))]
    for mixed, by_hand in cases_:
        assert mixed.dtype == dtype
        torch.testing.assert_close(mixed, by_hand, rtol=0, atol=0)


def test_mixed_precision_follows_the_unknown_in_2d_and_single_step_models() -> None:
    """The same rule for the models outside :data:`MODELS`: ``Diffusion2DPhysics`` follows its
    state, ``HeatPhysics`` and ``SinePhysics`` their unknown ``x``."""
    from sipenv.physics import Diffusion2DPhysics, HeatPhysics, SinePhysics

    gen = torch.Generator().manual_seed(0)
    for dtype, other in ((F32, F64), (F64, F32)):
        d2 = Diffusion2DPhysics(shape=(8, 6), nu=0.1, dt=0.1)
        s, f = torch.rand(2, 8, 6, generator=gen).to(dtype), torch.rand(2, 8, 6, generator=gen)
        assert d2.step(s, f.to(other)).dtype == dtype
        assert d2.inverse_step(s.to(other), f.to(other), s).dtype == dtype
        assert d2.force_for(s, s.to(other)).dtype == dtype
        heat = HeatPhysics(shape=(8, 6), nu_t=0.5)
        x = heat.sample_initial(2, gen, dtype=dtype)
        y = heat.forward(x).to(other)
        assert heat.loss(x, y).dtype == heat.x_error(x, x.to(other)).dtype == dtype
        assert heat.inverse(y, x).dtype == dtype
        sine = SinePhysics(xi=4.0)
        x2, y2 = torch.rand(3, 2, generator=gen).to(dtype), torch.rand(3, 2, generator=gen)
        for out in (sine.loss(x2, y2.to(other)), sine.inverse(y2.to(other), x2),
                    sine.nearest_solution(x2, y2.to(other)),
                    sine.loss_gradient(x2, y2.to(other))):
            assert out.dtype == dtype


# --- the suite covers every model ---------------------------------------------------------------


def test_every_exported_physics_model_is_in_the_suite() -> None:
    """A new 1-D step/inverse_step model exported by ``sipenv.physics`` must get a MODELS entry.

    2-D models (``Diffusion2DPhysics``) have their own property tests in
    ``tests/physics/test_heat.py`` (the field strategies here are 1-D)."""
    import sipenv.physics as physics

    covered = {spec.cls for spec in MODELS} | {physics.Diffusion2DPhysics}
    exported = {obj for name in physics.__all__
                if isinstance(obj := getattr(physics, name), type)
                and all(hasattr(obj, m) for m in ("step", "inverse_step", "force_for"))
                and obj not in (physics.PhysicsModel, physics.SpectralLinearPhysics,
                                # the abstract bases: tested through their instances and
                                # with other symbols in tests/physics/test_spectral.py
                                physics.ExponentialIntegrator,
                                physics.SemilinearExponentialIntegrator)}
    assert exported <= covered, f"add a ModelSpec for {exported - covered} to MODELS"

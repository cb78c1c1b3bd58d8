"""Half-inverse gradients (agents/hig.py): the direction against its closed form, the per-sample
Jacobian against row-by-row autograd, learning on tiny problems through the one loop, the memory
refusal, and training on every control env."""

from __future__ import annotations

import json

import pytest
import torch

from agents.hig import (
    HIGConfig,
    PerSampleWeights,
    half_inverse_direction,
    jacobian,
    jacobian_size,
    outputs,
)
from agents.registry import get_algorithm
from agents.trainer import build_network, run_training

F64 = torch.float64


def _tiny(env_id: str = "sip/CoupledOscillators-v0", **kw: object) -> HIGConfig:
    base: dict[str, object] = dict(env_id=env_id, env_kwargs=json.dumps({"horizon": 8}),
                                   hidden=(16,), batch_size=8, iterations=6, eval_episodes=16,
                                   progress=False, threads=1)
    base.update(kw)
    return HIGConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("rows, cols", [(6, 20), (20, 6)])
@pytest.mark.parametrize("kappa", [0.0, 0.5, 1.0])
def test_direction_is_v_sigma_to_minus_kappa_u_transpose_g(rows: int, cols: int,
                                                           kappa: float) -> None:
    gen = torch.Generator().manual_seed(0)
    jac = torch.randn(rows, cols, generator=gen, dtype=F64)
    g = torch.randn(rows, generator=gen, dtype=F64)
    u, s, vh = torch.linalg.svd(jac, full_matrices=False)
    expected = vh.T @ (s**-kappa * (u.T @ g))
    for method in ("svd", "gram"):
        d, info = half_inverse_direction(jac, g, kappa=kappa, truncation=1e-7, method=method)
        torch.testing.assert_close(d, expected, rtol=1e-8, atol=1e-10)
        assert info["hig_rank"] == min(rows, cols)
    if kappa == 1.0:  # Gauss–Newton: the pseudo-inverse
        d, _ = half_inverse_direction(jac, g, kappa=1.0, truncation=1e-12, method="svd")
        torch.testing.assert_close(d, torch.linalg.pinv(jac) @ g)


def test_truncation_drops_small_singular_values() -> None:
    u, _ = torch.linalg.qr(torch.randn(4, 4, dtype=F64, generator=torch.Generator().manual_seed(1)))
    s = torch.tensor([1.0, 0.5, 1e-3, 1e-9], dtype=F64)
    jac = u * s  # J = U diag(s), V = I
    g = torch.ones(4, dtype=F64)
    d, info = half_inverse_direction(jac, g, kappa=0.5, truncation=1e-6, method="svd")
    assert info["hig_rank"] == 3
    expected = torch.where(s > 1e-6, s**-0.5, torch.zeros_like(s)) * (u.T @ g)
    torch.testing.assert_close(d, expected)


@pytest.mark.parametrize("env_id", ["sip/CoupledOscillators-v0", "sip/ControlledDiffusion-v0",
                                    "sip/SineInversion-v0"])
def test_per_sample_jacobian_matches_row_by_row_autograd(env_id: str) -> None:
    kw = {"sip/ControlledDiffusion-v0": {"n": 8, "horizon": 3, "max_mode": 3,
                                          "force_penalty": 0.0},
          "sip/CoupledOscillators-v0": {"horizon": 5}}.get(env_id, {})
    config = HIGConfig(env_id=env_id, env_kwargs=json.dumps(kw), hidden=(8,), batch_size=3)
    problem = config.make_problem()
    net = build_network(problem.network_spec("mlp", (8,)), seed=0)
    batch = problem.sample(3, problem.generator(0))
    per = PerSampleWeights(net, 3)
    y, _, _ = outputs(per, problem, batch, config)
    jac = jacobian(y, list(per.weights.values()), chunk_size=2)
    y_ref, _, _ = outputs(net, problem, batch, config)
    params = list(net.parameters())
    flat = y_ref.reshape(-1)
    for r in range(flat.numel()):
        grads = torch.autograd.grad(flat[r], params, retain_graph=True, allow_unused=True)
        row = torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                         for g, p in zip(grads, params, strict=True)])
        torch.testing.assert_close(jac[r], row.to(jac.dtype), rtol=1e-4, atol=1e-6)


def _losses(config: HIGConfig) -> list[float]:
    losses: list[float] = []
    run_training(config, get_algorithm("hig"), write=False, progress=False,
                 on_iteration=lambda i, t, m: losses.append(m["loss"]))
    return losses


@pytest.mark.slow
def test_hig_learns_the_oscillator_task_through_the_loop() -> None:
    # (a per-step closed-loop policy saturates its clipped actions under the published
    # τ = 1e-6 at η = 1; τ = 1e-2 keeps the step in the well-determined directions)
    config = _tiny(iterations=10, truncation=1e-2)
    problem = config.make_problem()
    held_out = problem.held_out_sets(config.eval_seed, 32)[""]
    before = problem.evaluate(build_network(problem.network_spec("mlp", (16,)), seed=0).eval(),
                              held_out)["target_error_mean"]
    result = run_training(config, get_algorithm("hig"), write=False, progress=False)
    after = problem.evaluate(result.policy, held_out)["target_error_mean"]
    assert after < 0.7 * before, (before, after)


def test_hig_is_reproducible_per_seed() -> None:
    a = run_training(_tiny(iterations=3), get_algorithm("hig"), write=False, progress=False)
    b = run_training(_tiny(iterations=3), get_algorithm("hig"), write=False, progress=False)
    for pa, pb in zip(a.policy.parameters(), b.policy.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def test_hig_learns_the_sine_inverse_problem() -> None:
    config = HIGConfig(env_id="sip/SineInversion-v0", hidden=(16, 16), batch_size=16,
                       iterations=15, eval_episodes=16, progress=False, lr=0.5)
    losses = _losses(config)
    assert min(losses[-3:]) < losses[0], losses


@pytest.mark.parametrize("env_id, kw", [
    ("sip/ControlledDiffusion-v0", {"n": 16, "horizon": 3, "max_mode": 4}),
    pytest.param("sip/ControlledBurgers-v0", {"n": 32, "horizon": 3, "substeps": 4},
                 marks=pytest.mark.slow),
    pytest.param("sip/CorrectedBurgers-v0", {"n": 16, "fine_n": 32, "horizon": 3},
                 marks=pytest.mark.slow),
])
def test_hig_trains_on_every_task_env(env_id: str, kw: dict[str, object]) -> None:
    config = _tiny(env_id, env_kwargs=json.dumps(kw), batch_size=2, iterations=2)
    result = run_training(config, get_algorithm("hig"), write=False, progress=False)
    assert result.iterations == 2
    assert all(torch.isfinite(p).all() for p in result.policy.parameters())


def test_a_jacobian_too_large_is_refused_with_its_size_and_the_fixes() -> None:
    config = _tiny("sip/ControlledDiffusion-v0", env_kwargs="{}", hidden=(256, 256),
                   batch_size=64)
    rows, cols, mb = jacobian_size(config.make_problem(), config)
    assert mb > config.max_jacobian_mb
    with pytest.raises(ValueError, match=rf"{rows} × {cols}.*--batch-size.*--hidden.*"
                                         r"force_penalty.*--max-jacobian-mb"):
        config.validate()


def test_bad_settings_name_the_option() -> None:
    for field, value in (("kappa", -1.0), ("truncation", 0.0), ("chunk_size", 0),
                         ("outputs", "all"), ("svd_dtype", "half")):
        with pytest.raises(ValueError, match=field):
            _tiny(**{field: value}).check_fields()
    with pytest.raises(ValueError, match="--outputs trajectory"):
        _tiny("sip/CorrectedBurgers-v0", env_kwargs=json.dumps(
            {"n": 16, "fine_n": 32, "horizon": 3}), outputs="terminal").validate()

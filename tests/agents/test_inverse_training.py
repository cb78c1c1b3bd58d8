"""Single-step inverse training (SIP vs optimizers) on the sine problem, and the reproduce CLI."""

from __future__ import annotations

import importlib.util
import json
import math
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from agents import sip
from agents.inverse_training import (
    METHODS,
    last_fraction_mean,
    reference_lr,
    sine_config,
    sweep_learning_rate,
    train,
)
from agents.networks import make_network
from agents.problems import InverseBatch, SineProblem
from sipenv.physics import SinePhysics

ROOT = Path(__file__).resolve().parents[2]


def _load_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("reproduce_sine_cli",
                                                  ROOT / "scripts/reproduce_sine.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


# --- pure pieces ---------------------------------------------------------------------------------


def test_reference_learning_rates() -> None:
    assert reference_lr("sip", 32.0) == 1e-3 and reference_lr("adam", 5.0) == 1e-3
    assert reference_lr("sgd", 10.0) == pytest.approx(1e-4)
    assert reference_lr("rmsprop", 1.0) == 3e-5
    with pytest.raises(ValueError, match="Unknown method"):
        reference_lr("lbfgs", 1.0)


def test_last_fraction_mean() -> None:
    assert last_fraction_mean(np.arange(100.0)) == pytest.approx(np.mean(np.arange(90, 100)))
    assert last_fraction_mean([3.0, 5.0]) == 5.0  # at least one value
    assert math.isnan(last_fraction_mean([]))


def _problem(xi: float, phi: float = 0.0, dtype: torch.dtype = torch.float64) -> SineProblem:
    return SineProblem("sip/SineInversion-v0", SinePhysics(xi=xi, phi=phi),
                       torch.device("cpu"), dtype)


@pytest.mark.parametrize(("kind", "expected"), [("l1", (3.0 + 1.0) / 2),
                                                 ("l2", (2.5 + 0.5) / 2)])
def test_proxy_losses(kind: str, expected: float) -> None:
    """SIP's proxy loss is the batch mean of Σ|x − x̃| or ½‖x − x̃‖², x̃ held constant."""
    problem = _problem(4.0, dtype=torch.float32)
    x = torch.tensor([[1.0, -2.0], [0.0, 0.5]])
    x_tilde = torch.tensor([[0.0, 0.0], [1.0, 0.5]])
    problem.physics = type("Fixed", (), {  # a physics whose inverse returns x̃
        "forward": staticmethod(lambda v: v), "inverse": staticmethod(lambda y, v: x_tilde)})()
    step = sip.inverse_loss(lambda y: x, problem, InverseBatch(x, None),  # type: ignore[arg-type]
                            sip.SIPConfig(proxy_loss=kind))  # type: ignore[arg-type]
    assert float(step.loss) == pytest.approx(expected)


def test_sip_targets_are_the_detached_saddle_free_newton_step() -> None:
    phys = SinePhysics(xi=8.0, phi=30.0)
    gen = torch.Generator().manual_seed(0)
    y = phys.sample_targets(16, gen, dtype=torch.float64)
    x = torch.randn(16, 2, generator=gen, dtype=torch.float64).requires_grad_(True)
    targets = sip.sip_inverse_targets(x.detach(), phys.forward(x.detach()), y, phys.inverse)
    assert not targets.requires_grad
    torch.testing.assert_close(targets, phys.inverse(y, x.detach()), rtol=1e-12, atol=1e-12)
    # η < 1: the inverse of a partial Newton step on y.
    half = sip.sip_inverse_targets(x.detach(), phys.forward(x.detach()), y, phys.inverse, 0.5)
    y_half = phys.forward(x.detach()) + 0.5 * (y - phys.forward(x.detach()))
    torch.testing.assert_close(half, phys.inverse(y_half, x.detach()))


def test_sip_proxy_gradient_does_not_flow_through_the_physics() -> None:
    problem = _problem(4.0, dtype=torch.float32)
    net = make_network("mlp", 2, 2, hidden=(8,), seed=0)
    batch = problem.sample(10, torch.Generator().manual_seed(1))
    step = sip.loss(net, problem, batch, sip.SIPConfig(proxy_loss="l1"))
    step.loss.backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in net.parameters())
    assert step.prediction.shape == (10, 2)


@pytest.mark.parametrize("kwargs,match", [
    ({"method": "lbfgs"}, "method"), ({"lr": 0.0}, "lr"), ({"xi": -1.0}, "xi"),
    ({"iterations": 0, "time_budget": 0.0}, "never stop"), ({"proxy_loss": "huber"}, "proxy"),
    ({"batch_size": 0}, "batch_size"), ({"phi": float("nan")}, "phi"),
])
def test_invalid_config_raises(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        sine_config(**{"iterations": 1, **kwargs}).validate()  # type: ignore[arg-type]


# --- training ------------------------------------------------------------------------------------


def test_sip_learns_the_ill_conditioned_rotated_problem_where_adam_does_not() -> None:
    """A tiny run (400 iterations, ≈ 0.3 s each method) at ξ = 32, φ = 45°."""
    sip = train(sine_config("sip", xi=32.0, phi=45.0, iterations=400, eval_size=256, lr=3e-3))
    adam = train(sine_config("adam", xi=32.0, phi=45.0, iterations=400, eval_size=256,
                             lr=1e-3))
    assert sip.iterations == adam.iterations == 400 and sip.diverged_at is None
    first = float(np.mean(sip.x_dist[:40]))
    assert sip.final_x_dist() < 0.2 * first, "SIP's distance did not decrease"
    assert sip.test_x_dist < 0.2 * first
    assert sip.final_x_dist() < 0.1 * adam.final_x_dist()
    # Same initial network and the same first batch for every method.
    assert sip.x_dist[0] == adam.x_dist[0]
    assert len(sip.times) == 400 and np.all(np.diff(sip.times) > 0)
    assert sip.train_time == pytest.approx(sip.times[-1])


def test_l2_proxy_and_time_budget() -> None:
    res = train(sine_config("sip", proxy_loss="l2", lr=3e-3, xi=4.0, time_budget=0.2,
                            eval_size=64))
    assert res.iterations > 10 and res.train_time >= 0.2
    assert res.final_x_dist() < float(np.mean(res.x_dist[:5]))


def test_training_is_deterministic() -> None:
    cfg = sine_config("adam", xi=2.0, phi=10.0, iterations=30, eval_size=32)
    a, b = train(cfg), train(cfg)
    np.testing.assert_array_equal(a.x_dist, b.x_dist)
    assert a.test_x_dist == b.test_x_dist


def test_divergence_stops_training_without_raising() -> None:
    res = train(sine_config("sgd", lr=1e6, xi=1.0, iterations=50, eval_size=16))
    assert res.diverged_at is not None and res.iterations < 50
    assert res.final_x_dist() == math.inf and res.val_x_dist == math.inf


def test_sweep_picks_the_lowest_validation_distance() -> None:
    cfg = sine_config("sgd", xi=1.0, iterations=40, eval_size=64)
    best, runs = sweep_learning_rate(cfg, [1.0, 1e8])
    assert len(runs) == 2 and runs[1].diverged_at is not None
    assert best is runs[0] and best.config.lr == pytest.approx(1e-2)


# --- the reproduce script ------------------------------------------------------------------------


def test_pick_factor_keeps_the_published_rate_on_ties() -> None:
    script = _load_script()
    assert script.pick_factor([(0.1, 1.0), (1.0, 1.01), (10.0, 0.5)], 0.02) == 10.0
    assert script.pick_factor([(0.1, 1.0), (1.0, 1.01), (10.0, 1.005)], 0.02) == 1.0
    assert script.pick_factor([(0.1, math.inf), (1.0, math.inf)], 0.02) == 1.0
    assert script.pick_factor([(0.1, 0.3), (1.0, math.inf)], 0.02) == 0.1


def test_reproduce_script_smoke_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = _load_script()
    out = tmp_path / "sine"
    args = ["--out", str(out), "--methods", "sip", "adam", "--curve-budget", "0.15",
            "--point-budget", "0.05", "--lr-budget", "0.05", "--lr-factors", "0.3", "1",
            "--xis", "1", "32", "--phis", "0", "45", "--eval-size", "32", "--lr-sweep", "once"]
    assert script.main(args) == 0
    for name in ("results.json", "results.md", "curves.png", "sweeps.png", "lr_sweep.png"):
        assert (out / name).stat().st_size > 0, name
    report = json.loads((out / "results.json").read_text())
    assert set(report["curves"]) == {"1", "32"} and set(report["phi_sweep"]) == {"0", "45"}
    assert set(report["curves"]["32"]) == {"sip", "adam"}
    assert {"xi32_phi45_adam_over_sip", "sip_over_adam_time_per_iteration",
            "phi_sweep_sip_max_over_min", "phi_sweep_adam_45_over_0"} <= set(report["bars"])
    assert "Bars stated in the issue" in capsys.readouterr().out
    # --quick changes exactly the documented settings.
    quick = script.quick(script.Args())
    assert (quick.curve_budget, quick.point_budget, quick.lr_budget, quick.lr_sweep) == \
        (20.0, 5.0, 4.0, "once")
    assert quick.xis == (1, 3, 10, 32, 64) and quick.phis == (0, 1, 5, 23, 45)
    assert quick.methods == METHODS
    # Bad settings are reported, not crashed on.
    assert script.main(["--methods", "lbfgs", "--out", str(tmp_path / "x")]) == 2
    assert script.main(["--point-budget", "0", "--out", str(tmp_path / "x")]) == 2

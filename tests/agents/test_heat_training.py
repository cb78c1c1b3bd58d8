"""SIP and plain optimizers on the heat inverse problem (agents.heat_training), small sizes."""

from __future__ import annotations

import math

import pytest
import torch

from agents import sip
from agents.heat_training import heat_config, sweep_learning_rate, train
from agents.networks import UNet, make_network
from agents.trainer import build_network

SMALL = dict(shape=(16, 16), nu_t=0.5, filters=(8, 8), batch_size=8, eval_size=8,
             eval_points=2)


def test_unet_matches_the_published_size_and_keeps_layouts() -> None:
    net = make_network("unet", 4096, 4096, hidden=(16, 16, 16, 16), spatial=(64, 64), seed=0)
    assert 36_000 < sum(p.numel() for p in net.parameters()) < 40_000  # paper: ≈ 38 k
    x = torch.randn(2, 64, 64)
    assert net(x).shape == (2, 64, 64)
    assert net(x.reshape(2, -1)).shape == (2, 4096)
    assert net(x[:, None]).shape == (2, 1, 64, 64)


def test_unet_is_periodic_translation_equivariant() -> None:
    # Circular padding + stride-2 pooling: a shift by 2^(levels−1) cells commutes with the net.
    net = make_network("unet", 256, 256, hidden=(4, 4, 4), spatial=(16, 16), seed=1).eval()
    x = torch.randn(1, 16, 16, dtype=torch.float32)
    with torch.no_grad():
        torch.testing.assert_close(net(torch.roll(x, 4, dims=-1)),
                                   torch.roll(net(x), 4, dims=-1), atol=1e-5, rtol=1e-5)


def test_unet_1d_reads_flat_observations_as_channels() -> None:
    net = make_network("unet", 3 * 32, 32, hidden=(8, 8), seed=0)
    assert net(torch.randn(5, 96)).shape == (5, 32)
    # 2 fields + 1 scalar (like ControlledDiffusion's [s_t, s*, t/T]): the scalar is a channel.
    net = make_network("unet", 2 * 32 + 1, 32, hidden=(8, 8), seed=0)
    obs = torch.randn(3, 65)
    out = net(obs)
    obs2 = obs.clone()
    obs2[:, -1] += 1.0
    assert out.shape == (3, 32) and not torch.allclose(net(obs2), out)
    with pytest.raises(ValueError, match="obs_dim"):
        UNet(16, 32)
    with pytest.raises(ValueError, match="divisible"):
        UNet(2 * 36, 36, hidden=(4, 4, 4, 4))
    with pytest.raises(ValueError, match="unet"):
        make_network("unet2", 4, 4)


def test_seeded_networks_start_identically() -> None:
    a = make_network("unet", 256, 256, hidden=(4, 4), spatial=(16, 16), seed=3)
    b = make_network("unet", 256, 256, hidden=(4, 4), spatial=(16, 16), seed=3)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize("method", ["sip", "adam"])
def test_training_reduces_the_test_x_error(method: str) -> None:
    torch.manual_seed(0)
    res = train(heat_config(method, lr=3e-3, iterations=40, **SMALL))  # type: ignore[arg-type]
    assert res.iterations == 40 and res.diverged_at is None
    assert len(res.test_x_error) == 3  # before training and at the 2 evaluation points
    assert res.test_x_error[-1] < 0.7 * res.test_x_error[0]
    assert list(res.eval_iterations) == [0, 20, 40]


def test_sip_loss_is_the_proxy_to_the_inverse_target() -> None:
    cfg = heat_config("sip", iterations=1, **SMALL)  # type: ignore[arg-type]
    problem = cfg.make_problem()
    physics = problem.physics
    net = build_network(problem.network_spec(cfg.network, cfg.hidden), seed=0)
    batch = problem.sample(4, torch.Generator().manual_seed(0))
    y_star = batch.y_target
    step = sip.loss(net, problem, batch, cfg)  # type: ignore[arg-type]
    loss, x = step.loss, step.prediction
    x_tilde = physics.inverse(y_star, x.detach())
    expected = 0.5 * (x.detach() - x_tilde).flatten(1).pow(2).sum(1).mean()
    torch.testing.assert_close(loss.detach(), expected)
    assert x.dtype == torch.float32  # network in float32, physics in float64


def test_divergence_stops_before_the_update_and_loses_the_sweep() -> None:
    cfg = heat_config("sgd", iterations=5, **SMALL)  # type: ignore[arg-type]
    best, runs = sweep_learning_rate(cfg, [1.0, 1e12])
    assert runs[1].diverged_at is not None and math.isinf(runs[1].final_test_x_error)
    assert best is runs[0]


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"method": "newton"}, "method"), ({"lr": -1.0}, "lr"), ({"iterations": 0}, "never stop"),
    ({"clock": "sundial"}, "clock"), ({"proxy_loss": "l3"}, "proxy_loss"),
])
def test_invalid_configurations_are_rejected(kwargs: dict[str, object], match: str) -> None:
    base = {"iterations": 1, **SMALL, **kwargs}
    with pytest.raises(ValueError, match=match):
        train(heat_config(**base))  # type: ignore[arg-type]

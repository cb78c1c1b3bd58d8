"""DP's long-horizon options (agents/diffphys.py): gradient clipping, truncated BPTT and
activation checkpointing — the gradients they give and the memory they save."""

from __future__ import annotations

import json

import pytest
import torch

from agents.diffphys import DPConfig, loss, loss_and_backward, update
from agents.trainer import build_network

HORIZON = 24


def _setup(**options: object) -> tuple[DPConfig, object, torch.nn.Module, object]:
    config = DPConfig(env_id="sip/CoupledOscillators-v0", env_kwargs=json.dumps(
        {"horizon": HORIZON, "force_penalty": 1e-2}), hidden=(16,), batch_size=8,
        **options)  # type: ignore[arg-type]
    problem = config.make_problem()
    net = build_network(problem.network_spec("mlp", (16,)), seed=0)
    return config, problem, net, problem.sample(8, problem.generator(0))


def _grad(net: torch.nn.Module) -> torch.Tensor:
    out = torch.cat([p.grad.reshape(-1) for p in net.parameters()])  # type: ignore[union-attr]
    net.zero_grad(set_to_none=True)
    return out


def _saved_peak(fn: object) -> int:
    live = {"now": 0, "peak": 0}

    class Packed:
        def __init__(self, t: torch.Tensor) -> None:
            self.t, self.size = t, t.numel() * t.element_size()
            live["now"] += self.size
            live["peak"] = max(live["peak"], live["now"])

        def __del__(self) -> None:
            live["now"] -= self.size

    with torch.autograd.graph.saved_tensors_hooks(Packed, lambda p: p.t):
        fn()  # type: ignore[operator]
    return live["peak"]


def test_checkpointing_keeps_the_gradient_and_the_values() -> None:
    config, problem, net, batch = _setup()
    plain = loss(net, problem, batch, config)
    plain.loss.backward()
    reference = _grad(net)
    ck = loss(net, problem, batch,
              DPConfig(**{**config.__dict__, "activation_checkpoint_every": 5}))
    ck.loss.backward()
    torch.testing.assert_close(ck.loss, plain.loss)
    torch.testing.assert_close(_grad(net), reference, rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("window", [1, 5, HORIZON])
def test_windowed_backward_gives_exactly_the_truncated_gradient(window: int) -> None:
    config, problem, net, batch = _setup(bptt_window=window)
    detached = loss(net, problem, batch, config)  # the graph cut every `window` steps
    detached.loss.backward()
    reference = _grad(net)
    step = loss_and_backward(net, problem, batch, config)
    torch.testing.assert_close(step.loss, detached.loss.detach())
    torch.testing.assert_close(_grad(net), reference, rtol=1e-5, atol=1e-7)
    full = loss(net, problem, batch, DPConfig(**{**config.__dict__, "bptt_window": 0}))
    full.loss.backward()
    same = torch.allclose(_grad(net), reference, rtol=1e-5, atol=1e-7)
    assert same == (window == HORIZON)  # a window shorter than the horizon truncates


def test_clipping_bounds_the_gradient_the_optimizer_sees() -> None:
    config, problem, net, batch = _setup(max_grad_norm=1e-3)
    seen: list[float] = []
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    opt.register_step_pre_hook(lambda o, a, k: seen.append(float(torch.linalg.vector_norm(
        torch.cat([p.grad.reshape(-1) for p in net.parameters()])))))  # type: ignore[union-attr]
    step = update(net, opt, problem, batch, config)
    assert step.metrics["grad_norm"] > 1e-3
    assert seen[0] == pytest.approx(1e-3, rel=1e-4)


def test_truncation_and_checkpointing_lower_the_saved_memory() -> None:
    config, problem, net, batch = _setup()
    peaks = {}
    for name, options in {"plain": {}, "window": {"bptt_window": 4},
                          "checkpoint": {"activation_checkpoint_every": 4}}.items():
        cfg = DPConfig(**{**config.__dict__, **options})
        peaks[name] = _saved_peak(lambda cfg=cfg: loss_and_backward(net, problem, batch, cfg))
    assert peaks["window"] * 2 < peaks["plain"]
    assert peaks["checkpoint"] * 2 < peaks["plain"]


def test_options_are_checked() -> None:
    for field, value in (("max_grad_norm", -1.0), ("max_grad_norm", float("inf")),
                         ("bptt_window", -1), ("activation_checkpoint_every", 1.5)):
        with pytest.raises(ValueError, match=field):
            DPConfig(**{field: value}).check_fields()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="single-step"):
        DPConfig(env_id="sip/SineInversion-v0", bptt_window=4).validate()

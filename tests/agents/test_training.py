"""Agents learn on a tiny budget; checkpoints, resume, divergence handling, evaluation."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from agents import diffphys, sip, supervised
from agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.evaluation import (
    evaluate_gym,
    evaluate_torch,
    make_eval_tasks,
    torch_policy_to_numpy,
)
from agents.networks import make_network
from agents.registry import load_policy
from agents.trainer import Step, TrainingDiverged, policy_from_checkpoint, run_training
from sipenv.envs.core import core_of

ENV = "sip/ControlledDiffusion-v0"
TINY = dict(hidden=(64, 64), batch_size=16, eval_episodes=32, log_every=5, progress=False)


def _initial_error() -> float:
    """Held-out error of the untrained (seeded) network on the same eval tasks."""
    cfg = sip.SIPConfig(**TINY)  # type: ignore[arg-type]
    import gymnasium as gym

    core = core_of(gym.make(ENV))
    net = make_network("mlp", core.obs_dim, core.n, hidden=cfg.hidden, seed=cfg.seed)
    s0, target = make_eval_tasks(ENV, range(cfg.eval_seed, cfg.eval_seed + cfg.eval_episodes))
    return evaluate_torch(net, core, s0, target).summary()["target_error_mean"]


@pytest.mark.parametrize(("module", "config_cls", "lr"), [
    (sip, sip.SIPConfig, 1e-3),
    (diffphys, diffphys.DPConfig, 1e-3),
    (supervised, supervised.SupervisedConfig, 1e-3),
])
def test_each_algorithm_learns_on_a_tiny_budget(module, config_cls, lr) -> None:
    before = _initial_error()
    result = module.train(config_cls(iterations=60, lr=lr, **TINY), write=False, progress=False)
    after = result.final_eval["target_error_mean"]
    assert np.isfinite(after)
    assert after < 0.25 * before, (before, after)


def test_sip_reaches_low_error_quickly() -> None:
    """SIP on the default env: 150 iterations bring the held-out error below 2 %."""
    result = sip.train(sip.SIPConfig(iterations=150, **{**TINY, "hidden": (256, 256),
                                                         "batch_size": 32}),
                       write=False, progress=False)
    assert result.final_eval["target_error_mean"] < 2e-2


def test_uniform_split_that_would_overflow_is_refused_before_work(tmp_path: Path) -> None:
    """The default horizon 16 amplifies the correction by ~10^25: refused up front, naming the
    longest horizon that works (which is accepted)."""
    cfg = sip.SIPConfig(iterations=3, split="uniform", runs_dir=str(tmp_path), run_name="u",
                        **TINY)
    with pytest.raises(ValueError, match=r"uniform split cannot work.*horizon ≤ 12"):
        sip.train(cfg, progress=False)
    assert not any(tmp_path.iterdir())
    replace(cfg, env_kwargs='{"horizon": 12}').validate()


def test_uniform_split_overflow_is_reported(tmp_path: Path,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """Past the pre-flight check (bypassed here), the overflow is still reported as such, with
    the last good state saved."""
    monkeypatch.setattr(sip.SIPConfig, "check_problem", lambda self, problem: None)
    cfg = sip.SIPConfig(iterations=3, split="uniform", runs_dir=str(tmp_path), run_name="u",
                        **TINY)
    with pytest.raises(TrainingDiverged, match=r"iteration 1;.*--split minimum-force"):
        sip.train(cfg, progress=False)
    assert load_checkpoint(tmp_path / "u" / "checkpoint.pt")["iteration"] == 0


def test_gym_evaluation_equals_torch_evaluation() -> None:
    result = sip.train(sip.SIPConfig(iterations=20, **TINY), write=False, progress=False)
    seeds = range(123, 123 + 12)
    s0, target = make_eval_tasks(ENV, seeds)
    t = evaluate_torch(result.policy, result.core, s0, target)
    g = evaluate_gym(torch_policy_to_numpy(result.policy), ENV, seeds)
    np.testing.assert_allclose(g.target_error, t.target_error, rtol=1e-4)
    np.testing.assert_allclose(g.force_cost, t.force_cost, rtol=1e-4)
    np.testing.assert_allclose(g.episode_return, t.episode_return, rtol=1e-4)


def test_checkpoint_round_trip_and_run_dir(tmp_path: Path) -> None:
    cfg = sip.SIPConfig(iterations=10, runs_dir=str(tmp_path), run_name="r", **TINY)
    result = sip.train(cfg, progress=False)
    run = tmp_path / "r"
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "final_eval.json",
                 "learning_curve.png"):
        assert (run / name).is_file(), name
    assert json.loads((run / "final_eval.json").read_text())["iteration"] == 10
    policy, ckpt = policy_from_checkpoint(run / "checkpoint.pt", env_id=ENV)
    obs = torch.randn(5, result.core.obs_dim)
    torch.testing.assert_close(policy(obs), result.policy(obs))
    assert ckpt["algo"] == "sip" and ckpt["iteration"] == 10 and "optimizer" in ckpt
    assert load_policy(run / "checkpoint.pt")[1]["env_id"] == ENV
    with pytest.raises(FileExistsError, match="--resume"):
        sip.train(cfg, progress=False)  # nothing already written is overwritten


def test_bad_checkpoints_are_refused(tmp_path: Path) -> None:
    cfg = sip.SIPConfig(iterations=2, runs_dir=str(tmp_path), run_name="r", **TINY)
    sip.train(cfg, progress=False)
    good = tmp_path / "r" / "checkpoint.pt"
    with pytest.raises(CheckpointError, match="No checkpoint"):
        load_checkpoint(tmp_path / "missing.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(truncated)
    with pytest.raises(CheckpointError, match="trained on"):
        load_checkpoint(good, env_id="sip/Other-v0")
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(1)}, other)
    with pytest.raises(CheckpointError, match="not a sipenv checkpoint"):
        load_checkpoint(other)
    data = load_checkpoint(good)
    data["network"] = {**data["network"], "hidden": [8]}
    mismatched = tmp_path / "mismatched.pt"
    save_checkpoint(mismatched, {k: v for k, v in data.items() if k not in ("format", "version")})
    with pytest.raises(CheckpointError, match="do not fit"):
        policy_from_checkpoint(mismatched)


def test_resume_gives_the_same_weights_as_an_uninterrupted_run(tmp_path: Path) -> None:
    base = sip.SIPConfig(iterations=24, checkpoint_every=0, runs_dir=str(tmp_path), **TINY)
    straight = sip.train(replace(base, run_name="straight"), progress=False)
    sip.train(replace(base, run_name="split", iterations=10), progress=False)
    resumed = sip.train(replace(base, run_name="split"), resume=True, progress=False)
    assert resumed.iterations == 24
    for a, b in zip(straight.policy.state_dict().values(), resumed.policy.state_dict().values(),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    lines = (tmp_path / "split" / "metrics.jsonl").read_text().splitlines()
    iters = [json.loads(x)["iteration"] for x in lines]
    assert iters == sorted(iters) and len(iters) == len(set(iters))


def test_non_finite_loss_stops_training_and_keeps_the_weights(tmp_path: Path) -> None:
    calls = {"n": 0}

    def flaky_loss(policy, problem, batch, config):
        calls["n"] += 1
        step = sip.loss(policy, problem, batch, config)
        return Step(step.loss * float("nan") if calls["n"] == 4 else step.loss)

    cfg = sip.SIPConfig(iterations=10, runs_dir=str(tmp_path), run_name="r", **TINY)
    with pytest.raises(TrainingDiverged, match="iteration 4"):
        run_training(cfg, flaky_loss, progress=False)
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert ckpt["iteration"] == 3
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


@pytest.mark.parametrize(("field", "value", "match"), [
    ("lr", -1.0, "lr"), ("lr", float("nan"), "lr"), ("batch_size", 0, "batch_size"),
    ("env_kwargs", "{nu: 1", "JSON"), ("env_id", "sip/Nope-v0", "Unknown env id"),
    ("network", "transformer", "network"), ("time_budget", -5.0, "time_budget"),
    ("device", "cuda:7" if not torch.cuda.is_available() else "cpu", "CUDA"),
])
def test_invalid_settings_are_refused_before_work(field, value, match) -> None:
    if field == "device" and value == "cpu":
        pytest.skip("CUDA present")
    with pytest.raises(ValueError, match=match):
        sip.SIPConfig(**{field: value}).validate()


def test_cpu_clock_budget_stops_training() -> None:
    cfg = sip.SIPConfig(iterations=10**6, time_budget=0.3, clock="cpu", **TINY)
    result = sip.train(cfg, write=False, progress=False)
    assert 0.3 <= result.train_time < 5 and result.iterations < 10**6
    with pytest.raises(ValueError, match="clock"):
        sip.SIPConfig(clock="sundial").validate()  # type: ignore[arg-type]


def test_env_kwargs_are_forwarded() -> None:
    cfg = sip.SIPConfig(iterations=2, env_kwargs='{"n": 32, "horizon": 4}', **TINY)
    result = sip.train(cfg, write=False, progress=False)
    assert result.core.n == 32 and result.core.horizon == 4


def test_unet_policy_trains_and_reloads_by_name(tmp_path: Path) -> None:
    """Every agent can use the U-Net by name; its checkpoint rebuilds the same network."""
    cfg = sip.SIPConfig(iterations=3, runs_dir=str(tmp_path), run_name="u", network="unet",
                        **{**TINY, "hidden": (8, 8, 8)})
    result = sip.train(cfg, progress=False)
    assert np.isfinite(result.final_eval["target_error_mean"])
    policy, _ = policy_from_checkpoint(tmp_path / "u" / "checkpoint.pt", env_id=ENV)
    obs = torch.randn(4, result.core.obs_dim)
    policy.eval()
    result.policy.eval()
    torch.testing.assert_close(policy(obs), result.policy(obs))

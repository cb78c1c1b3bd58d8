"""PPO baseline (stable-baselines3): interface, run directory, actor equivalence, learning.

Everything runs on a small ``sip/ControlledDiffusion-v0`` (16 cells, horizon 4) with a small
network, so the file stays well under a minute on two CPU cores.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

from agents.evaluation import evaluate_torch, make_eval_tasks
from agents.ppo import (
    NETWORK_NAME,
    PPOActor,
    PPOConfig,
    actor_from_model,
    load_policy,
    make_model,
    make_train_envs,
    train,
    train_env_seeds,
)
from agents.trainer import TrainingDiverged, TrainResult
from sipenv.envs.core import core_of

SMALL_ENV = json.dumps({"n": 16, "max_mode": 3, "horizon": 4})


def small_config(**overrides: Any) -> PPOConfig:
    base = PPOConfig(env_kwargs=SMALL_ENV, hidden=(32, 32), n_envs=2, n_steps=16, batch_size=16,
                     n_epochs=2, iterations=2, eval_episodes=8, progress=False)
    return replace(base, **overrides)


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Tiny networks: one thread is fastest and immune to oversubscribed CI cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def sb3() -> Any:
    return pytest.importorskip("stable_baselines3")


@pytest.fixture(scope="module")
def tiny_run(sb3: Any, tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[PPOConfig, TrainResult, list[dict[str, float]]]:
    config = small_config(eval_every=1)
    evals: list[dict[str, float]] = []
    result = train(config, write=True, run_dir=tmp_path_factory.mktemp("ppo") / "run",
                   progress=False, on_eval=evals.append)
    return config, result, evals


# --- without stable-baselines3 --------------------------------------------------------------------

def test_imports_without_sb3_and_says_how_to_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['stable_baselines3'] = None\n"
        "import agents.ppo as ppo\n"
        "try:\n"
        "    ppo.train(ppo.PPOConfig(iterations=1), write=False, progress=False)\n"
        "except ImportError as exc:\n"
        "    print('IMPORT-ERROR:', exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=Path(__file__).resolve().parents[2], timeout=120)
    assert out.returncode == 0, out.stderr
    assert "IMPORT-ERROR: PPO needs the rl extra: pip install 'sipenv[rl]'" in out.stdout


# --- configuration --------------------------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "match"), [
    ({"n_steps": 0}, "n_steps"),
    ({"batch_size": 64}, "batch_size"),
    ({"gamma": 1.5}, "gamma"),
    ({"clip_range": 0.0}, "clip_range"),
    ({"network": "cnn"}, "network"),
    ({"network": "unet"}, "must be 'mlp'"),  # the U-Net is for the SIP/DP/supervised agents
    ({"lr": -1.0}, "lr"),
    ({"seed": 500_000}, "overlap the held-out eval seeds"),
])
def test_invalid_settings_raise_before_any_work(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        train(small_config(**overrides), write=False, progress=False)


def test_training_seeds_never_meet_eval_seeds() -> None:
    config = small_config(seed=3, n_envs=8)
    assert train_env_seeds(config) == range(24, 32)
    assert max(train_env_seeds(config)) < config.eval_seed


def test_resume_is_not_supported(sb3: Any, tmp_path: Path) -> None:
    with pytest.raises(NotImplementedError, match="resume is not supported for ppo"):
        train(small_config(), resume=True, run_dir=tmp_path)


# --- the deterministic actor ----------------------------------------------------------------------

def test_actor_is_the_mean_of_sb3_policy(sb3: Any) -> None:
    config = small_config()
    venv = make_train_envs(config)
    model = make_model(config, venv)
    actor = actor_from_model(model)
    obs = np.random.default_rng(0).normal(size=(32, 33)).astype(np.float32)
    with torch.no_grad():
        mine = actor(torch.as_tensor(obs)).numpy()
        theirs = model.policy._predict(torch.as_tensor(obs), deterministic=True).numpy()
    predicted, _ = model.predict(obs, deterministic=True)
    venv.close()
    np.testing.assert_allclose(mine, theirs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.clip(mine, -1, 1), predicted, rtol=0, atol=1e-6)
    assert mine.shape == (32, 16)


def test_actor_starts_from_the_shared_network_weights(sb3: Any) -> None:
    from agents.networks import make_network

    config = small_config(seed=5)
    venv = make_train_envs(config)
    actor = actor_from_model(make_model(config, venv))
    venv.close()
    shared = make_network("mlp", 33, 16, hidden=(32, 32), seed=5)
    for (k, a), (k2, b) in zip(actor.state_dict().items(), shared.state_dict().items(),
                               strict=True):
        assert k == k2
        torch.testing.assert_close(a, b)


# --- a whole (tiny) run ---------------------------------------------------------------------------

def test_tiny_run_writes_a_complete_run_directory(
        tiny_run: tuple[PPOConfig, TrainResult, list[dict[str, float]]]) -> None:
    config, result, evals = tiny_run
    assert result.run_dir is not None and result.iterations == 2
    for name in ("config.json", "metrics.jsonl", "final_eval.json", "learning_curve.png",
                 "checkpoint.pt", "ppo_model.zip"):
        assert (result.run_dir / name).is_file(), name
    final = json.loads((result.run_dir / "final_eval.json").read_text())
    assert final["iteration"] == 2 and final["episodes"] == config.eval_episodes
    assert math.isfinite(final["target_error_mean"]) and final["target_error_mean"] > 0
    assert result.final_eval["target_error_mean"] == final["target_error_mean"]
    # One training record and one evaluation per update, as run_training writes them.
    records = [json.loads(line) for line in
               (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["iteration"] for r in records if "eval_target_error_mean" in r] == [1, 2]
    assert [r["iteration"] for r in records if "target_error" in r] == [1, 2]
    assert all(math.isfinite(r["target_error"]) for r in records if "target_error" in r)
    assert [e["iteration"] for e in evals] == [1, 2]
    assert all(set(e) >= {"iteration", "time", "eval_target_error_mean"} for e in evals)
    assert evals[0]["time"] <= evals[1]["time"] <= result.train_time
    assert json.loads((result.run_dir / "config.json").read_text())["algo"] == "ppo"


def test_run_directory_is_not_overwritten(
        tiny_run: tuple[PPOConfig, TrainResult, list[dict[str, float]]]) -> None:
    config, result, _ = tiny_run
    with pytest.raises(FileExistsError, match="already holds a run"):
        train(config, run_dir=result.run_dir)


def test_policy_evaluates_on_the_shared_held_out_tasks(
        tiny_run: tuple[PPOConfig, TrainResult, list[dict[str, float]]]) -> None:
    config, result, _ = tiny_run
    kwargs = config.env_make_kwargs()
    s0, target = make_eval_tasks(config.env_id, range(config.eval_seed,
                                                      config.eval_seed + config.eval_episodes),
                                 kwargs)
    summary = evaluate_torch(result.policy, result.core, s0, target).summary()
    assert summary["target_error_mean"] == pytest.approx(result.final_eval["target_error_mean"],
                                                         rel=1e-6)


def test_load_policy_round_trip(
        sb3: Any, tiny_run: tuple[PPOConfig, TrainResult, list[dict[str, float]]]) -> None:
    from agents.registry import load_policy as load_any

    _, result, _ = tiny_run
    assert result.run_dir is not None
    ckpt = torch.load(result.run_dir / "checkpoint.pt", weights_only=True)
    assert ckpt["algo"] == "ppo" and ckpt["network"]["name"] == NETWORK_NAME
    assert ckpt["iteration"] == 2
    loaded = load_policy(result.run_dir / "checkpoint.pt", device="cpu")
    via_registry, _ = load_any(result.run_dir / "checkpoint.pt")
    assert isinstance(loaded, PPOActor) and not loaded.training
    obs = torch.randn(64, 33)
    with torch.no_grad():
        expected = result.policy(obs)
        torch.testing.assert_close(loaded(obs), expected, rtol=0, atol=0)
        torch.testing.assert_close(via_registry(obs), expected, rtol=0, atol=0)
    # SB3's own archive holds the same actor.
    model = sb3.PPO.load(result.run_dir / "ppo_model.zip", device="cpu")
    predicted, _ = model.predict(obs.numpy(), deterministic=True)
    np.testing.assert_allclose(predicted, expected.clamp(-1, 1).numpy(), rtol=0, atol=1e-6)


def test_time_budget_stops_after_the_first_update(sb3: Any) -> None:
    result = train(small_config(iterations=1000, time_budget=1e-6), write=False, progress=False)
    assert result.iterations == 1
    assert result.train_time > 0


def test_divergence_is_reported_not_crashed(sb3: Any) -> None:
    with pytest.raises(TrainingDiverged, match="Lower --lr"):
        train(small_config(lr=1e4, iterations=20), write=False, progress=False)


# --- learning -------------------------------------------------------------------------------------

@pytest.mark.slow  # (≈ 6 s of PPO)
def test_ppo_learns_on_a_tiny_problem(sb3: Any) -> None:
    config = small_config(hidden=(64, 64), n_envs=4, n_steps=64, batch_size=64, n_epochs=5,
                          lr=1e-3, iterations=40, eval_episodes=64, seed=0)
    venv = make_train_envs(config)
    untrained = actor_from_model(make_model(config, venv))
    venv.close()
    kwargs = config.env_make_kwargs()
    core = core_of(gym.make(config.env_id, **kwargs))
    s0, target = make_eval_tasks(config.env_id, range(config.eval_seed,
                                                      config.eval_seed + config.eval_episodes),
                                 kwargs)
    before = evaluate_torch(untrained, core, s0, target).summary()["target_error_mean"]
    result = train(config, write=False, progress=False)
    after = result.final_eval["target_error_mean"]
    assert result.iterations == 40
    assert after < 0.95 * before, (before, after)

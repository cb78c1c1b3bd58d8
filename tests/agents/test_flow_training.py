"""Every algorithm trains on a tiny 2-D flow task (sip/ShapeTransition-v0) with the spatial
networks; the open-loop reference cache; the shape-general Gauss–Newton solve."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from agents import diffphys, sip, supervised
from agents.evaluation import evaluate_gym, evaluate_torch
from agents.networks import CNNPolicy, UNet, make_network
from agents.problems import VALIDATION_SEED, TaskProblem, make_problem
from agents.reference_cache import (
    ReferenceSettings,
    ensure_references,
    load_references,
    open_loop_optimum,
)
from agents.trainer import policy_from_checkpoint
from sipenv.physics.generic_inverse import linearize_rollout, solve_minimum_norm

ENV = "sip/ShapeTransition-v0"
TINY_ENV = {"shape": [8, 8], "horizon": 2, "kinds": ["square"], "size_range": [0.25, 0.35]}
"""8×8 cells, two steps, same-kind squares: a 2-D task small enough for the default suite."""
TINY = dict(env_id=ENV, env_kwargs=json.dumps(TINY_ENV), network="cnn", hidden=(8, 8),
            batch_size=16, eval_episodes=16, log_every=10, progress=False)


@pytest.fixture(scope="module")
def zero_force_error() -> float:
    """Held-out terminal error without force (the ceiling every method must beat)."""
    problem = make_problem(ENV, TINY_ENV)
    assert isinstance(problem, TaskProblem)
    s0, target = problem.held_out_sets(VALIDATION_SEED, 16)[""]

    def zero(obs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(obs.shape[0], 2, *obs.shape[2:])

    return evaluate_torch(zero, problem.core, s0, target).summary()["target_error_mean"]


def test_network_spec_of_a_spatial_task() -> None:
    problem = make_problem(ENV, TINY_ENV)
    spec = problem.network_spec("cnn", (8, 8))
    assert (spec["obs_dim"], spec["act_dim"], spec["spatial"]) == (5 * 64, 2 * 64, [8, 8])


@pytest.mark.parametrize("name", ["cnn", "unet", "unet-gn"])
def test_spatial_networks_map_fields_to_fields(name: str) -> None:
    net = make_network(name, 5 * 64, 2 * 64, hidden=(4, 4), spatial=(8, 8), seed=0)
    obs = torch.randn(3, 5, 8, 8)
    out = net(obs)
    assert out.shape == (3, 2, 8, 8)
    assert torch.allclose(net(obs.flatten(1)), out.flatten(1), atol=1e-6)


def test_unet_is_periodic_and_cnn_sees_the_whole_box() -> None:
    """Circular padding: a periodic shift of the input shifts the U-Net's output (eval mode);
    the CNN policy's head mixes every cell (a change in one corner reaches the opposite one)."""
    unet = UNet(5 * 64, 2 * 64, (4, 4), spatial=(8, 8)).eval()
    obs = torch.randn(2, 5, 8, 8)
    shifted = unet(torch.roll(obs, (2, 4), (-2, -1)))
    assert torch.allclose(shifted, torch.roll(unet(obs), (2, 4), (-2, -1)), atol=1e-5)
    cnn = CNNPolicy(5 * 64, 2 * 64, (4, 4), spatial=(8, 8))
    poked = obs.clone()
    poked[:, 0, 0, 0] += 1.0
    assert not torch.allclose(cnn(poked)[:, :, 7, 7], cnn(obs)[:, :, 7, 7])


def test_group_norm_unet_acts_on_each_sample_alone_in_training_and_evaluation() -> None:
    """``unet-gn`` (the U-Net for control policies): a sample's action depends neither on the
    rest of the batch nor on train/eval mode, unlike BatchNorm's ``unet`` in training."""
    obs = torch.randn(4, 5, 8, 8)
    gn = make_network("unet-gn", 5 * 64, 2 * 64, hidden=(4, 4), spatial=(8, 8), seed=0)
    alone = gn(obs[:1])
    assert torch.allclose(gn(obs)[:1], alone, atol=1e-6)
    assert torch.allclose(gn.eval()(obs)[:1], alone, atol=1e-6)
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in gn.modules())
    bn = make_network("unet", 5 * 64, 2 * 64, hidden=(4, 4), spatial=(8, 8), seed=0).train()
    assert not torch.allclose(bn(obs)[:1], bn(torch.cat([obs[:1], 3 * obs[1:]]))[:1])
    with pytest.raises(ValueError, match="norm must be one of"):
        UNet(5 * 64, 2 * 64, (4, 4), spatial=(8, 8), norm="layer")


@pytest.mark.parametrize(("network", "match"), [
    ("mlp", "spatial network: --network unet or unet-gn or cnn"),
])
def test_flat_networks_are_refused_on_fields(network: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        diffphys.DPConfig(**{**TINY, "network": network, "hidden": (8,)}).validate()


def test_sip_needs_the_generic_split_on_fields() -> None:
    with pytest.raises(ValueError, match="--split gauss-newton"):
        sip.SIPConfig(**{**TINY, "split": "uniform"}).validate()


@pytest.mark.parametrize(("module", "config_cls", "extra"), [
    pytest.param(diffphys, diffphys.DPConfig, {}, marks=pytest.mark.slow),
    (sip, sip.SIPConfig, {"split": "gauss-newton"}),
])
def test_dp_and_sip_learn_on_a_tiny_2d_task(module: Any, config_cls: Any, extra: dict[str, Any],
                                            zero_force_error: float) -> None:
    result = module.train(config_cls(iterations=20, lr=1e-2, **TINY, **extra), write=False,
                          progress=False)
    after = result.final_eval["target_error_mean"]
    assert after < 0.85 * zero_force_error, (zero_force_error, after)


def test_supervised_learns_from_cached_open_loop_references(tmp_path: Path,
                                                            zero_force_error: float) -> None:
    config = supervised.SupervisedConfig(iterations=40, lr=1e-2, references=str(tmp_path / "r"),
                                         reference_tasks=32, reference_iterations=40, **TINY)
    result = supervised.train(config, write=False, progress=False)
    assert (tmp_path / "r" / "settings.json").is_file()
    after = result.final_eval["target_error_mean"]
    assert after < 0.9 * zero_force_error, (zero_force_error, after)


def test_supervised_without_references_says_how_to_get_them() -> None:
    with pytest.raises(ValueError, match="--references DIR"):
        supervised.SupervisedConfig(**TINY).validate()


def test_reference_cache_refuses_settings_it_was_not_made_with(tmp_path: Path) -> None:
    settings = ReferenceSettings(ENV, TINY_ENV, tasks=4, iterations=2)
    pool = ensure_references(tmp_path, settings)
    assert pool.actions.shape == (2, 4, 2, 8, 8)
    again = load_references(tmp_path, settings)
    assert torch.equal(again.actions, pool.actions)
    for other in (ReferenceSettings(ENV, TINY_ENV, tasks=4, iterations=3),
                  ReferenceSettings(ENV, {**TINY_ENV, "horizon": 3}, tasks=4, iterations=2)):
        with pytest.raises(ValueError, match="made with other settings"):
            ensure_references(tmp_path, other)
    with pytest.raises(FileNotFoundError, match="no reference pool"):
        load_references(tmp_path / "empty", settings)


def test_open_loop_optimum_beats_zero_force(zero_force_error: float) -> None:
    problem = make_problem(ENV, TINY_ENV)
    assert isinstance(problem, TaskProblem)
    s0, target = problem.held_out_sets(VALIDATION_SEED, 16)[""]
    _, error = open_loop_optimum(problem.core, s0, target, iterations=40)
    assert float(error.mean()) < 0.6 * zero_force_error


def test_minimum_norm_solve_on_fields_matches_the_flat_solve() -> None:
    """The Gauss–Newton solve takes field-shaped residuals and forces of their own shapes (a
    flow state (B, 3, H, W), forces (B, 2, H, W)) and agrees with the same solve on flattened
    tensors."""
    problem = make_problem(ENV, TINY_ENV, dtype="float64")
    assert isinstance(problem, TaskProblem)
    step = problem.core.physics.step
    s0, _ = problem.core.sample_tasks(2, torch.Generator().manual_seed(0), dtype=torch.float64)
    forces = 0.1 * torch.randn(2, 2, 2, 8, 8, dtype=torch.float64)
    residual = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    _, _, jac = linearize_rollout(step, s0, lambda t, state: forces[t], horizon=2)
    fields = solve_minimum_norm(jac, residual, iterations=4)

    def flat_step(state: torch.Tensor, force: torch.Tensor) -> torch.Tensor:
        return step(state.view(-1, 3, 8, 8), force.view(-1, 2, 8, 8)).flatten(1)

    flat_forces = forces.flatten(2)
    _, _, flat_jac = linearize_rollout(flat_step, s0.flatten(1),
                                       lambda t, state: flat_forces[t], horizon=2)
    flat = solve_minimum_norm(flat_jac, residual.flatten(1), iterations=4)
    assert fields.correction.shape == forces.shape
    torch.testing.assert_close(fields.correction.flatten(2), flat.correction)
    torch.testing.assert_close(fields.linear_residual, flat.linear_residual)


def test_trained_2d_policy_plays_through_gymnasium(tmp_path: Path) -> None:
    """A checkpoint of a 2-D policy reloads and plays env.step with the same errors as the
    batched core rollout."""
    config = diffphys.DPConfig(iterations=2, runs_dir=str(tmp_path), run_name="r",
                               **{**TINY, "eval_episodes": 2})
    diffphys.train(config, progress=False)
    policy, _ = policy_from_checkpoint(tmp_path / "r" / "checkpoint.pt")
    problem = make_problem(ENV, TINY_ENV)
    assert isinstance(problem, TaskProblem)
    seeds = range(VALIDATION_SEED, 1_000_003)
    gym_result = evaluate_gym(problem.numpy_policy(policy), ENV, seeds, TINY_ENV)
    s0, target = problem.held_out_sets(VALIDATION_SEED, 3)[""]
    torch_result = evaluate_torch(policy, problem.core, s0, target)
    np.testing.assert_allclose(gym_result.target_error, torch_result.target_error, rtol=1e-4)


# --- PPO on fields: the CNN features extractor --------------------------------------------------

def _ppo_config(tmp_path: Path, **overrides: Any) -> Any:
    from agents.ppo import PPOConfig

    base = {**TINY, "batch_size": 8, "eval_episodes": 4, "eval_every": 1}
    return PPOConfig(**{**base, "n_envs": 2, "n_steps": 8, "n_epochs": 2,
                        "runs_dir": str(tmp_path), "run_name": "ppo", **overrides})


def test_ppo_trains_a_cnn_actor_on_fields(tmp_path: Path) -> None:
    """SB3 PPO with the spatial extractor: the actor is a CNNPolicy view of SB3's layers
    (its mean action, from the shared seeded weights), and a run reloads without SB3."""
    pytest.importorskip("stable_baselines3")
    from agents.ppo import actor_from_model, load_policy, make_model, make_train_envs

    config = _ppo_config(tmp_path)
    venv = make_train_envs(config)
    model = make_model(config, venv)
    actor = actor_from_model(model)
    venv.close()
    assert isinstance(actor, CNNPolicy)
    shared = make_network("cnn", 5 * 64, 2 * 64, hidden=(8, 8), spatial=(8, 8), seed=0)
    for (k, a), (k2, b) in zip(actor.state_dict().items(), shared.state_dict().items(),
                               strict=True):
        assert k == k2
        torch.testing.assert_close(a, b)
    obs = torch.randn(3, 5, 8, 8)
    with torch.no_grad():
        theirs = model.policy._predict(obs, deterministic=True)
        torch.testing.assert_close(actor(obs).flatten(1), theirs.flatten(1))

    from agents import ppo

    result = ppo.train(replace(config, iterations=2), progress=False)
    loaded = load_policy(tmp_path / "ppo" / "checkpoint.pt")
    with torch.no_grad():
        torch.testing.assert_close(loaded(obs), result.policy(obs))


@pytest.mark.slow
def test_ppo_learns_on_a_tiny_2d_task(tmp_path: Path, zero_force_error: float) -> None:
    from agents import ppo

    config = _ppo_config(tmp_path, iterations=60, n_envs=8, n_steps=32, batch_size=64,
                         n_epochs=5, lr=1e-3, eval_every=60, eval_episodes=16)
    result = ppo.train(config, write=False, progress=False)
    assert result.final_eval["target_error_mean"] < 0.95 * zero_force_error  # (60 updates: weak)


# --- sip/FluidInverse-v0 through the one training loop ------------------------------------------

FLUID = dict(env_id="sip/FluidInverse-v0", network="unet", hidden=(4, 4), batch_size=8,
             eval_episodes=16, log_every=0, progress=False)


@pytest.mark.parametrize(("module", "config_cls", "inverse"), [
    (sip, sip.SIPConfig, "drift-swirl"),
    pytest.param(sip, sip.SIPConfig, "gauss-newton", marks=pytest.mark.slow),
    pytest.param(diffphys, diffphys.DPConfig, "drift-swirl", marks=pytest.mark.slow),
    pytest.param(supervised, supervised.SupervisedConfig, "drift-swirl",
                 marks=pytest.mark.slow),
])
def test_every_algorithm_trains_on_the_fluid_inverse_problem(module: Any, config_cls: Any,
                                                             inverse: str) -> None:
    """SIP (both inverses), DP and supervised run on sip/FluidInverse-v0 through the one
    training loop (a few iterations: learning it takes hundreds, see the slow test)."""
    env = json.dumps({"shape": [16, 16], "steps": 1, "inverse": inverse})
    result = module.train(config_cls(iterations=2, env_kwargs=env,
                                     **{**FLUID, "eval_episodes": 4}),
                          write=False, progress=False)
    assert np.isfinite(result.final_eval["test_velocity_l1"])


@pytest.mark.slow
@pytest.mark.parametrize(("module", "config_cls", "inverse"), [
    (sip, sip.SIPConfig, "drift-swirl"),
    (supervised, supervised.SupervisedConfig, "drift-swirl"),
])
def test_fluid_inverse_learns_on_a_tiny_grid(module: Any, config_cls: Any, inverse: str) -> None:
    """SIP (drift-swirl inverse) and supervised learn in 300 iterations on 16×16 cells. DP
    (Adam through the solver) does not at this budget (16.6 against the zero guess's 15.8 when
    measured), which is the published finding, so it is not asserted here."""
    env = json.dumps({"shape": [16, 16], "steps": 2, "inverse": inverse})
    problem = make_problem("sip/FluidInverse-v0", env)
    test = problem.held_out_sets(VALIDATION_SEED, 16)["test_"]
    zero = float(problem.main_error(torch.zeros_like(test.x_true), test)[1].mean())
    result = module.train(config_cls(iterations=300, lr=1e-2, env_kwargs=env, **FLUID),
                          write=False, progress=False)
    assert result.final_eval["test_velocity_l1"] < 0.9 * zero, (zero, result.final_eval)

"""The device path: physics, envs, training and evaluation run on the requested torch device.

Every test runs on ``"cpu"``; the ``"cuda"`` variants are marked ``gpu`` and skipped when CUDA is
absent (run them on a GPU machine with ``pytest -m gpu tests/reliability/test_device.py``).
A CUDA device requested where there is none is a clear ``ValueError`` up front.
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch

import sipenv
from agents import diffphys, sip, supervised
from agents.evaluation import evaluate_gym, evaluate_torch, make_eval_tasks, torch_policy_to_numpy
from agents.networks import make_network
from agents.registry import ALGORITHMS, load_algorithm, load_policy
from agents.trainer import TrainConfig, policy_from_checkpoint
from sipenv.envs.core import ControlCore, core_of
from sipenv.physics import DiffusionPhysics

ENV_ID = "sip/ControlledDiffusion-v0"
HAS_CUDA = torch.cuda.is_available()
DEVICES = [
    pytest.param("cpu", id="cpu"),
    pytest.param("cuda", id="cuda", marks=[
        pytest.mark.gpu, pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")]),
]
TINY = dict(hidden=(16, 16), batch_size=8, eval_episodes=4, iterations=3, log_every=1,
            progress=False)


def _on(x: torch.Tensor, device: str) -> bool:
    return x.device.type == torch.device(device).type


# --- physics and envs ------------------------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
def test_physics_runs_on_the_device_of_its_inputs(device: str) -> None:
    phys = DiffusionPhysics(n=32, nu=0.02, dt=0.01)
    gen = torch.Generator().manual_seed(0)
    s = phys.sample_fields(3, gen, dtype=torch.float64)
    f = torch.randn(3, 32, generator=gen, dtype=torch.float64)
    sd, fd = s.to(device), f.to(device)
    nxt = phys.step(sd, fd)
    outs = (nxt, phys.inverse_step(nxt, fd, sd), phys.force_for(sd, nxt))
    refs = (phys.step(s, f), s, f)
    for out, ref in zip(outs, refs, strict=True):
        assert _on(out, device) and out.dtype == torch.float64
        torch.testing.assert_close(out.cpu(), ref, rtol=1e-9, atol=1e-9)
    sampled = phys.sample_fields(2, torch.Generator(device=device).manual_seed(1))
    assert _on(sampled, device)


@pytest.mark.parametrize("device", DEVICES)
def test_issue_13_rules_hold_on_the_device(device: str) -> None:
    """Mixed precision follows the state, the relative error scales before squaring (frexp /
    ldexp on the device), and the vector env truncates and reports sync mode's info layout."""
    from sipenv.envs.core import relative_squared_error
    from sipenv.physics import BurgersPhysics

    gen = torch.Generator().manual_seed(0)
    for phys in (DiffusionPhysics(n=32), BurgersPhysics(n=32)):
        s = phys.sample_fields(2, gen, max_mode=3, amplitude=0.5).to(device)
        f = s.double()
        assert phys.step(s, f).dtype == torch.float32 and _on(phys.step(s, f), device)
        assert phys.inverse_step(f, f, s).dtype == torch.float32
    target = torch.full((2, 64), 1e19, device=device)
    error = relative_squared_error(torch.zeros_like(target), target)
    assert _on(error, device)
    torch.testing.assert_close(error.cpu(), torch.ones(2))
    envs = gym.make_vec(ENV_ID, num_envs=2, device=device, max_episode_steps=2,
                        vectorization_mode="vector_entry_point")
    _, info = envs.reset(seed=0, options={"target": np.full((2, 64), 1e19)})
    assert set(info) == {"target_error", "_target_error", "force_cost", "_force_cost"}
    truncated = [envs.step(np.zeros((2, 64)))[3].all() for _ in range(2)]
    assert truncated == [False, True] and np.isfinite(info["target_error"]).all()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("device", DEVICES)
def test_single_env_steps_on_the_device_and_matches_cpu(device: str, dtype: str) -> None:
    env, ref = gym.make(ENV_ID, device=device, dtype=dtype), gym.make(ENV_ID, dtype=dtype)
    obs, _ = env.reset(seed=3)
    obs_ref, _ = ref.reset(seed=3) if device == "cpu" else ref.reset(
        options={"initial_state": env.unwrapped.state[0].cpu().numpy(),
                 "target": env.unwrapped.target[0].cpu().numpy()})
    np.testing.assert_array_equal(obs, obs_ref)
    tol = 1e-5 if dtype == "float32" else 1e-10
    rng = np.random.default_rng(0)
    for _ in range(16):
        a = rng.uniform(-1, 1, 64).astype(np.float32)
        out, out_ref = env.step(a), ref.step(a)
        assert _on(env.unwrapped.state, device)
        assert out[0].dtype == np.float32 and isinstance(out[1], float)
        np.testing.assert_allclose(out[0], out_ref[0], rtol=tol, atol=tol)
        assert out[1] == pytest.approx(out_ref[1], rel=1e-4, abs=1e-6)


@pytest.mark.parametrize("device", DEVICES)
def test_vector_env_takes_tensor_actions_on_its_device(device: str) -> None:
    envs = gym.make_vec(ENV_ID, num_envs=4, vectorization_mode="vector_entry_point",
                        device=device, horizon=3)
    envs.reset(seed=0)
    for _ in range(7):  # crosses autoresets: new tasks are sampled on the device
        obs, reward, *_, info = envs.step(
            torch.rand(4, 64, device=device) * 2 - 1)
        assert _on(envs.unwrapped.state, device) and _on(envs.unwrapped.target, device)
        assert isinstance(obs, np.ndarray) and np.isfinite(obs).all()
        assert np.isfinite(reward).all() and np.isfinite(info["target_error"]).all()


# --- training, evaluation, checkpoints -------------------------------------------------------


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("module", "config_cls"), [
    pytest.param(sip, sip.SIPConfig, id="sip"),
    pytest.param(diffphys, diffphys.DPConfig, id="dp"),
    pytest.param(supervised, supervised.SupervisedConfig, id="supervised"),
])
def test_a_few_training_iterations_on_the_device(module: Any, config_cls: Any,
                                                 device: str) -> None:
    result = module.train(config_cls(device=device, **TINY), write=False, progress=False)
    assert all(_on(p, device) for p in result.policy.parameters())
    assert np.isfinite(result.final_eval["target_error_mean"])
    assert _on(result.core.sample_tasks(2, torch.Generator(device=device).manual_seed(0),
                                        device=device)[0], device)


@pytest.mark.parametrize("device", DEVICES)
def test_evaluation_on_the_device_agrees_between_torch_and_gym(device: str) -> None:
    kwargs = {"device": device, "horizon": 4}
    core = core_of(gym.make(ENV_ID, **kwargs), ControlCore)
    policy = make_network("mlp", core.obs_dim, core.n, hidden=(16,), device=device, seed=0)
    seeds = range(10, 16)
    s0, target = make_eval_tasks(ENV_ID, seeds, kwargs)
    assert _on(s0, device) and _on(target, device)
    t = evaluate_torch(policy, core, s0, target)
    g = evaluate_gym(torch_policy_to_numpy(policy, device), ENV_ID, seeds, kwargs)
    np.testing.assert_allclose(g.target_error, t.target_error, rtol=1e-4)


@pytest.mark.parametrize("load_device", DEVICES)
@pytest.mark.parametrize("train_device", DEVICES)
def test_checkpoints_load_onto_any_device(train_device: str, load_device: str,
                                          tmp_path: Path) -> None:
    sip.train(sip.SIPConfig(device=train_device, runs_dir=str(tmp_path), run_name="r", **TINY))  # type: ignore[arg-type]
    for policy, _ in (policy_from_checkpoint(tmp_path / "r" / "checkpoint.pt",
                                             device=load_device),
                      load_policy(tmp_path / "r" / "checkpoint.pt", device=load_device)):
        assert all(_on(p, load_device) for p in policy.parameters())
    # Resuming on another device continues the run (the data stream state moves with it).
    resumed = sip.train(sip.SIPConfig(device=load_device, runs_dir=str(tmp_path), run_name="r",
                                      **{**TINY, "iterations": 5}), resume=True)  # type: ignore[arg-type]
    assert resumed.iterations == 5


# --- every entry point takes a device --------------------------------------------------------


@pytest.mark.parametrize("env_id", sipenv.ENV_IDS)
def test_every_registered_env_accepts_a_device(env_id: str) -> None:
    env = gym.make(env_id, device="cpu")
    env.reset(seed=0)
    envs = gym.make_vec(env_id, num_envs=2, vectorization_mode="vector_entry_point",
                        device="cpu")
    envs.reset(seed=0)


@pytest.mark.parametrize("algo", sorted(ALGORITHMS))
def test_every_algorithm_config_has_a_validated_device(algo: str) -> None:
    config_cls, train = load_algorithm(algo)
    assert issubclass(config_cls, TrainConfig)
    assert "device" in {f.name for f in dataclasses.fields(config_cls)}
    assert "config" in inspect.signature(train).parameters
    with pytest.raises(ValueError, match="device must be a torch device"):
        config_cls(device="gpu").validate()


@pytest.mark.skipif(HAS_CUDA, reason="CUDA is present")
def test_cuda_without_cuda_is_a_clear_error_up_front() -> None:
    for make in (lambda: gym.make(ENV_ID, device="cuda"),
                 lambda: gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point",
                                      device="cuda")):
        with pytest.raises(ValueError, match="'cuda' requested but CUDA is not available"):
            make()
    with pytest.raises(ValueError, match=r"CUDA is not available.*Use --device cpu"):
        sip.SIPConfig(device="cuda").validate()


@pytest.mark.gpu
@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_a_cuda_index_beyond_the_devices_is_a_clear_error() -> None:
    bad = f"cuda:{torch.cuda.device_count()}"
    with pytest.raises(ValueError, match="CUDA device"):
        gym.make(ENV_ID, device=bad)

"""SIP (Gauss–Newton split; per-step targets for corrections) and DP learn on tiny Burgers tasks,
through the same training loop and CLI as the diffusion env."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path
from types import ModuleType

import gymnasium as gym
import pytest
import torch

from agents import diffphys, sip
from agents.evaluation import evaluate_torch, make_eval_tasks
from agents.networks import make_network
from agents.sip import sip_correction_targets
from sipenv.envs.core import core_of
from sipenv.envs.correction import block_average

CONTROL = "sip/ControlledBurgers-v0"
CORRECTION = "sip/CorrectedBurgers-v0"
# Small grids and short horizons keep each run to a few seconds on 2 cores.
CONTROL_KW = json.dumps({"n": 32, "substeps": 4, "horizon": 8})
CORRECTION_KW = json.dumps({"n": 16, "fine_n": 64, "substeps": 8, "fine_substeps": 10,
                            "horizon": 6})
TINY = dict(hidden=(64, 64), batch_size=16, eval_episodes=32, log_every=0, progress=False,
            checkpoint_every=0)


def _untrained_error(env_id: str, env_kwargs: str) -> float:
    kwargs = json.loads(env_kwargs)
    core = core_of(gym.make(env_id, **kwargs))
    net = make_network("mlp", core.obs_dim, core.n, hidden=(64, 64), seed=0)
    s0, target = make_eval_tasks(env_id, range(1_000_000, 1_000_032), kwargs)
    return evaluate_torch(net, core, s0, target).summary()["target_error_mean"]


@pytest.mark.parametrize(("algo", "lr"), [("sip-gn", 3e-3), ("dp", 3e-3)])
def test_learns_to_control_burgers(algo: str, lr: float) -> None:
    before = _untrained_error(CONTROL, CONTROL_KW)
    if algo == "sip-gn":
        result = sip.train(sip.SIPConfig(env_id=CONTROL, env_kwargs=CONTROL_KW, lr=lr,
                                         split="gauss-newton", gn_iterations=4, iterations=40,
                                         **TINY),  # type: ignore[arg-type]
                           write=False, progress=False)
    else:
        result = diffphys.train(diffphys.DPConfig(env_id=CONTROL, env_kwargs=CONTROL_KW, lr=lr,
                                                  iterations=40, **TINY),  # type: ignore[arg-type]
                                write=False, progress=False)
    after = result.final_eval["target_error_mean"]
    assert math.isfinite(after)
    assert after < 0.5 * before, (before, after)


@pytest.mark.parametrize("algo", ["sip", "dp"])
def test_learns_to_correct_the_coarse_burgers_solver(algo: str) -> None:
    """Corrections beat the uncorrected coarse solver (zero actions) on held-out episodes."""
    kwargs = json.loads(CORRECTION_KW)
    core = core_of(gym.make(CORRECTION, **kwargs))
    s0, reference = make_eval_tasks(CORRECTION, range(1_000_000, 1_000_032), kwargs)

    def zero(obs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(obs.shape[0], core.n)

    uncorrected = evaluate_torch(zero, core, s0, reference).summary()["target_error_mean"]
    module, cls = (sip, sip.SIPConfig) if algo == "sip" else (diffphys, diffphys.DPConfig)
    result = module.train(cls(env_id=CORRECTION, env_kwargs=CORRECTION_KW, lr=1e-3,  # type: ignore[attr-defined]
                              iterations=60, **TINY),  # type: ignore[arg-type]
                          write=False, progress=False)
    after = result.final_eval["target_error_mean"]
    assert after < 0.6 * uncorrected, (uncorrected, after)


def test_per_step_correction_targets_replay_the_reference_exactly() -> None:
    """The SIP targets of a correction task with η = 1 are the exact corrections: applied
    step by step from the rollout's states they land on the next reference state."""
    core = core_of(gym.make(CORRECTION, dtype="float64"))
    s0, reference = core.sample_tasks(3, torch.Generator().manual_seed(0), dtype=torch.float64)
    actions = 0.1 * torch.randn(core.horizon, 3, core.n, dtype=torch.float64)
    states = [s0]
    for a in actions:
        states.append(core.step(states[-1], a))
    stacked = torch.stack(states)
    targets = sip_correction_targets(core.physics, stacked, reference)
    for t in range(core.horizon):
        nxt = core.physics.step(stacked[t], targets[t])
        torch.testing.assert_close(nxt, reference[:, t + 1], rtol=0, atol=1e-12)
    half = sip_correction_targets(core.physics, stacked, reference, eta=0.5)
    torch.testing.assert_close(core.physics.step(stacked[0], half[0]),
                               0.5 * (stacked[1] + reference[:, 1]), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="references"):
        sip_correction_targets(core.physics, stacked, reference[:, 1:])


def test_reference_is_the_block_averaged_fine_solution() -> None:
    core = core_of(gym.make(CORRECTION, dtype="float64"))
    fine = core.reference.sample_initial_states(2, torch.Generator().manual_seed(1),
                                                dtype=torch.float64)
    reference = core.reference_trajectory(fine)
    assert reference.shape == (2, core.horizon + 1, core.n)
    state = fine
    for _ in range(2 * core.fine_steps):
        state = core.reference.step(state, torch.zeros_like(state))
    torch.testing.assert_close(reference[:, 2], block_average(state, 4), rtol=0, atol=1e-12)
    # Finite-volume averaging keeps the mean; weights 1/8, 1/4, 1/4, 1/4, 1/8 around 4J.
    torch.testing.assert_close(block_average(fine, 4).mean(-1), fine.mean(-1))
    x = torch.zeros(1, 8, dtype=torch.float64)
    x[0, 2] = 8.0
    assert block_average(x, 4).tolist() == [[1.0, 1.0]]


def _load_script(name: str) -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"_script_{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("args", [
    ["sip", "--env-id", CONTROL, "--env-kwargs", CONTROL_KW, "--split", "gauss-newton",
     "--gn-iterations", "2"],
    ["dp", "--env-id", CONTROL, "--env-kwargs", CONTROL_KW],
    ["sip", "--env-id", CORRECTION, "--env-kwargs", CORRECTION_KW],
    ["dp", "--env-id", CORRECTION, "--env-kwargs", CORRECTION_KW],
])
def test_train_script_runs_on_the_burgers_envs(args: list[str], tmp_path: Path) -> None:
    train = _load_script("train")
    common = ["--iterations", "2", "--batch-size", "4", "--hidden", "16", "--eval-episodes",
              "2", "--runs-dir", str(tmp_path), "--run-name", "run", "--no-progress"]
    assert train.main([*args, *common]) == 0
    final = json.loads((tmp_path / "run" / "final_eval.json").read_text())
    assert final["iteration"] == 2 and math.isfinite(final["target_error_mean"])


def test_gauss_newton_settings_are_validated() -> None:
    with pytest.raises(ValueError, match="gn_iterations"):
        sip.SIPConfig(env_id=CONTROL, split="gauss-newton", gn_iterations=0).validate()
    with pytest.raises(ValueError, match="gn_damping"):
        sip.SIPConfig(env_id=CONTROL, split="gauss-newton", gn_damping=-1.0).validate()

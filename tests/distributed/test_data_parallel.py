"""Data-parallel training (agents.distributed): 2 gloo ranks on CPU equal one process.

The ranks are forked by ``ddp_harness.run_ranks`` (free port on 127.0.0.1, collective and
overall timeouts: a failing test never hangs). One launch trains every equivalence case and the
uninterrupted reference of the kill-and-resume test; a second kills one rank mid-run, a third
resumes. Tolerances (docs/distributed.md), on ‖w₂ − w₁‖/‖w₁‖ after ``K`` Adam iterations:
float64 ≤ 1e-6 (measured ~1e-17); float32 ≤ ``F32_TOL`` = 1e-4 (measured ≤ 3e-6: float32
rounding of matrix products whose kernels depend on the batch size, amplified where Adam
normalises near-zero gradient components).
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from ddp_harness import COLLECTIVE_TIMEOUT_S, run_ranks
from script_loading import ROOT, load_script

from agents import distributed
from agents.checkpoint import load_checkpoint
from agents.registry import get_algorithm
from agents.trainer import Algorithm, TrainConfig, run_training

K = 8
F32_TOL = 1e-4
F64_TOL = 1e-6
COMMON: dict[str, Any] = {"hidden": (32, 32), "batch_size": 8, "iterations": K,
                          "eval_episodes": 8, "log_every": 1, "checkpoint_every": 0,
                          "progress": False}
CASES: dict[str, tuple[str, dict[str, Any]]] = {
    "sip-sine-f64": ("sip", {"env_id": "sip/SineInversion-v0", "env_dtype": "float64"}),
    "dp-sine-f64": ("dp", {"env_id": "sip/SineInversion-v0", "env_dtype": "float64"}),
    "dp-sine-f64-cosine": ("dp", {"env_id": "sip/SineInversion-v0", "env_dtype": "float64",
                                  "lr_schedule": "cosine"}),
    "sip-diffusion": ("sip", {}),
    "dp-diffusion": ("dp", {}),
    "supervised-diffusion": ("supervised", {}),
}
RESUME = ("dp", {"iterations": 10, "checkpoint_every": 4})
KILL_AT = 6


def _config(algo: str, kwargs: dict[str, Any]) -> TrainConfig:
    return get_algorithm(algo).config(**{**COMMON, **kwargs})


def _weights(module: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().double().cpu().numpy() for k, v in module.state_dict().items()}


def _train(algo: str, kwargs: dict[str, Any], **train_kwargs: Any) -> dict[str, Any]:
    result = run_training(_config(algo, kwargs), get_algorithm(algo), progress=False,
                          **{"write": False, **train_kwargs})
    return {"weights": _weights(result.policy), "final": result.final_eval,
            "history": result.history, "run_dir": result.run_dir}


def _rel(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> float:
    """‖a − b‖ / ‖b‖ over all tensors."""
    num = sum(float(np.sum((a[k] - b[k]) ** 2)) for k in b)
    den = sum(float(np.sum(b[k] ** 2)) for k in b)
    return (num / den) ** 0.5


def _all_cases(rank: int, folder: str) -> dict[str, Any]:
    out = {name: _train(*case) for name, case in CASES.items()}
    out["resume-reference"] = _train(*RESUME, write=True, run_dir=Path(folder) / "full")
    out["time-budget"] = _train("dp", {"iterations": 10**6, "time_budget": 0.3,
                                       "eval_points": 2, "log_every": 0,
                                       "lr_schedule": "cosine"})
    return out


def _killed(rank: int, folder: str) -> None:
    def die(iteration: int, *_: Any) -> None:
        if rank == 1 and iteration == KILL_AT:
            os.kill(os.getpid(), signal.SIGKILL)

    with distributed.collective_errors(distributed.current()):
        _train(*RESUME, write=True, run_dir=Path(folder) / "killed", on_iteration=die)


def _resumed(rank: int, folder: str) -> dict[str, Any]:
    return _train(*RESUME, write=True, run_dir=Path(folder) / "killed", resume=True)


@pytest.fixture(scope="module")
def two_ranks(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Any], Path]:
    folder = tmp_path_factory.mktemp("ddp")
    ranks = run_ranks(_all_cases, 2, (str(folder),))
    for r in ranks:
        assert r.exitcode == 0 and r.error is None, r.error
    return [r.value for r in ranks], folder


@pytest.mark.parametrize("name", list(CASES))
def test_two_ranks_equal_one_process(two_ranks: tuple[list[Any], Path], name: str) -> None:
    """Global batch B sliced over 2 ranks (B/2 each) = one process with batch B, after K
    iterations: weights, the reduced training metrics and the sharded evaluation."""
    (rank0, rank1), _ = two_ranks
    single = _train(*CASES[name])
    tol = F64_TOL if "f64" in name else F32_TOL
    for k in rank0[name]["weights"]:  # every rank holds identical weights
        np.testing.assert_array_equal(rank0[name]["weights"][k], rank1[name]["weights"][k])
    assert _rel(rank0[name]["weights"], single["weights"]) <= tol
    assert rank0[name]["final"] == rank1[name]["final"]
    assert rank0[name]["final"].keys() == single["final"].keys()
    for key, value in single["final"].items():
        assert rank0[name]["final"][key] == pytest.approx(value, rel=tol), key
    last, ref = rank0[name]["history"][-1], single["history"][-1]
    assert last["iteration"] == ref["iteration"] == K
    for key in ref.keys() - {"time"}:
        assert last[key] == pytest.approx(ref[key], rel=tol), key


def test_time_budget_stops_every_rank_at_the_same_iteration(
        two_ranks: tuple[list[Any], Path]) -> None:
    """The step time is the slowest rank's, so a time budget (and the evaluation points placed
    in it) end every rank at the same iteration, with the same weights (with a cosine
    schedule, whose rate follows the training time: every rank steps at the same rate)."""
    (rank0, rank1), _ = two_ranks
    a, b = rank0["time-budget"], rank1["time-budget"]
    assert [h["iteration"] for h in a["history"]] == [h["iteration"] for h in b["history"]]
    assert len(a["history"]) == 3 and a["history"][-1]["time"] >= 0.3  # (0 and 2 points)
    for k, v in a["weights"].items():
        np.testing.assert_array_equal(v, b["weights"][k])


def test_killed_rank_stops_the_job_and_resume_is_bit_identical(
        two_ranks: tuple[list[Any], Path], capsys: pytest.CaptureFixture[str]) -> None:
    """Rank 1 dies (SIGKILL) at iteration 6: rank 0 stops at once with a clear error instead of
    hanging; resuming with 2 ranks from the iteration-4 checkpoint ends with the same weights,
    optimizer state and metrics as the uninterrupted 2-rank run, bit for bit."""
    (rank0, _), folder = two_ranks
    start = time.monotonic()
    killed = run_ranks(_killed, 2, (str(folder),), deadline=2 * COLLECTIVE_TIMEOUT_S)
    assert time.monotonic() - start < COLLECTIVE_TIMEOUT_S  # (gloo saw the closed connection)
    assert killed[1].exitcode == -signal.SIGKILL
    assert killed[0].exitcode == 1
    assert killed[0].error is not None and "DistributedError" in killed[0].error
    assert "lost contact with another process" in killed[0].error and "--resume" in killed[0].error
    assert load_checkpoint(folder / "killed" / "checkpoint.pt")["iteration"] == 4

    shutil.copytree(folder / "killed", folder / "killed-copy")
    resumed = run_ranks(_resumed, 2, (str(folder),))
    for r in resumed:
        assert r.exitcode == 0 and r.error is None, r.error
    full = load_checkpoint(folder / "full" / "checkpoint.pt")
    again = load_checkpoint(folder / "killed" / "checkpoint.pt")
    assert again["iteration"] == full["iteration"] == 10 and again["world_size"] == 2
    for k, v in full["model"].items():
        assert torch.equal(again["model"][k], v), k
    for k, v in _weights_of_optimizer(full).items():
        assert torch.equal(_weights_of_optimizer(again)[k], v), k
    assert torch.equal(again["data_rng"], full["data_rng"])
    for a, b in zip(resumed[0].value["history"], rank0["resume-reference"]["history"],
                    strict=True):
        assert {k: v for k, v in a.items() if k != "time"} == \
            {k: v for k, v in b.items() if k != "time"}

    # The same checkpoint, resumed by ONE process: the global batches are re-sliced (here: not
    # sliced at all), so the run continues the same training, equal up to float32 rounding.
    capsys.readouterr()
    single = _train(*RESUME, write=True, run_dir=folder / "killed-copy", resume=True)
    assert _rel(single["weights"], {k: v.double().numpy() for k, v in full["model"].items()}) \
        <= F32_TOL
    assert "resuming a run trained by 2 process(es) with 1" in capsys.readouterr().err


def _weights_of_optimizer(ckpt: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {f"{i}.{k}": v for i, s in ckpt["optimizer"]["state"].items()
            for k, v in s.items() if isinstance(v, torch.Tensor)}


def test_batch_size_must_split_over_the_ranks() -> None:
    distributed.check_batch_size(256, 2)
    with pytest.raises(ValueError, match=r"not divisible by 3.*e\.g\. 255 or 258"):
        distributed.check_batch_size(256, 3)


def test_plain_run_has_no_process_group() -> None:
    ctx = distributed.current()
    assert not ctx.active and ctx.is_main and ctx.world_size == 1
    assert distributed.shard((torch.ones(4), None), ctx)[0].shape == (4,)


def test_torchrun_refuses_ppo_and_custom_updates(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """Under torchrun (faked: RANK/WORLD_SIZE set) PPO is refused before any process group
    is joined, with exit 2; so is an odd batch size."""
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "2")
    train = load_script("scripts/train.py")
    assert train.main(["ppo", "--iterations", "1"]) == 2
    assert "trains in a single process" in capsys.readouterr().err
    assert train.main(["dp", "--batch-size", "7", "--iterations", "1"]) == 2
    assert "not divisible by 2" in capsys.readouterr().err
    assert not torch.distributed.is_initialized()
    custom = Algorithm("custom", TrainConfig, update=lambda *a: None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="its own update"):
        distributed.check_supported(custom)
    # DP trains data-parallel with its plain gradient step, not with clipping or truncation
    from agents import diffphys

    dp = diffphys.ALGORITHM
    remat = diffphys.DPConfig(activation_checkpoint_every=4)
    assert distributed.check_supported(dp, remat) is dp.loss
    for option in ({"max_grad_norm": 1.0}, {"bptt_window": 4}):
        with pytest.raises(ValueError, match="leave those options out under torchrun"):
            distributed.check_supported(dp, diffphys.DPConfig(**option))


def test_sharding_slices_named_tuples_and_none() -> None:
    from agents.problems import InverseBatch

    batch = InverseBatch(torch.arange(8.0)[:, None], None)
    parts = [distributed._slice(batch, r, 2) for r in range(2)]
    assert [p.y_target[:, 0].tolist() for p in parts] == [[0, 1, 2, 3], [4, 5, 6, 7]]
    assert all(p.x_true is None for p in parts)


SLOW_CASES: dict[str, tuple[str, dict[str, Any]]] = {
    # the generic (Gauss-Newton) inverse: the network runs inside linearize_rollout
    "sip-burgers-gauss-newton": ("sip", {"env_id": "sip/ControlledBurgers-v0",
                                         "split": "gauss-newton", "lr": 3e-3, "iterations": 3}),
    # a U-Net with BatchNorm on CPU: per-rank batch statistics (a warning), so only close
    "sip-heat-unet": ("sip", {"env_id": "sip/HeatInverse-v0", "network": "unet",
                              "hidden": (8, 8), "iterations": 3}),
    "supervised-heat": ("supervised", {"env_id": "sip/HeatInverse-v0", "iterations": 3}),
}


def _slow_cases(rank: int) -> dict[str, Any]:
    return {name: _train(*case) for name, case in SLOW_CASES.items()}


@pytest.mark.slow
def test_more_paths_two_ranks() -> None:
    """Burgers with the Gauss-Newton split, the heat problem with a U-Net (BatchNorm) and
    supervised (≈ 30 s)."""
    ranks = run_ranks(_slow_cases, 2, deadline=300)
    for r in ranks:
        assert r.exitcode == 0 and r.error is None, r.error
    for name, case in SLOW_CASES.items():
        single = _train(*case)
        for k, v in ranks[0].value[name]["weights"].items():  # buffers included
            np.testing.assert_array_equal(v, ranks[1].value[name]["weights"][k])
        tol = 2e-2 if "unet" in name else 1e-3  # (measured 5e-3 and ≤ 3e-5)
        assert _rel(ranks[0].value[name]["weights"], single["weights"]) <= tol, name


@pytest.mark.slow
def test_readme_torchrun_command_runs(tmp_path: Path) -> None:
    """The documented one-liner, through the real torchrun launcher (≈15 s: three fresh
    interpreters import torch)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "GLOO_SOCKET_IFNAME": "lo"}
    torchrun = str(Path(sys.executable).with_name("torchrun"))
    cmd = [torchrun, "--standalone", "--nproc_per_node=2", "scripts/train.py", "dp",
           "--batch-size", "8", "--iterations", "3", "--hidden", "16", "16",
           "--eval-episodes", "8", "--runs-dir", str(tmp_path), "--no-progress"]
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    run = tmp_path / "dp-ControlledDiffusion-s0"
    assert {p.name for p in run.iterdir()} >= {"config.json", "metrics.jsonl", "checkpoint.pt",
                                               "final_eval.json", "learning_curve.png"}
    assert done.stdout.count('"run_dir"') == 1  # rank 0 alone reports
    refused = subprocess.run([*cmd[:4], "ppo", "--iterations", "1"], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=180)
    assert refused.returncode != 0 and "trains in a single process" in refused.stderr


def test_collective_timeout_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(distributed.TIMEOUT_ENV, raising=False)
    assert distributed.timeout_s() == distributed.DEFAULT_TIMEOUT_S
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "12.5")
    assert distributed.timeout_s() == 12.5
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(ValueError, match="SIPENV_DIST_TIMEOUT must be a number of seconds"):
        distributed.timeout_s()

"""Evaluate a trained checkpoint through the plain Gymnasium API on held-out seeds.

    python scripts/evaluate.py runs/sip-ControlledDiffusion-s0/checkpoint.pt --episodes 256

Every episode is played with ``env.step`` and numpy actions; the same episodes are also
evaluated with one batched torch rollout of the env's core, and the two must agree (relative
difference of the mean target error ≤ 1e-4; exit code 1 otherwise). A run on a single-step
inverse problem (sip/SineInversion-v0, sip/HeatInverse-v0) is checked the same way on its main
metric (x_dist, x_error): one ``env.step`` per seed against the same problems scored in torch.
"""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import gymnasium as gym
import numpy as np
import torch
import tyro
from torch import nn

from agents.checkpoint import CheckpointError
from agents.evaluation import evaluate_gym, evaluate_torch, make_eval_tasks, torch_policy_to_numpy
from agents.outputs import check_output_file, refuse
from agents.problems import (
    VALIDATION_SEED,
    InverseBatch,
    InverseProblem,
)
from agents.registry import load_run
from sipenv.envs.control import parse_device
from sipenv.envs.core import core_of


@dataclass
class Args:
    checkpoint: Annotated[Path, tyro.conf.Positional]
    """Path to a run's checkpoint.pt."""
    episodes: int = 256
    """Number of held-out episodes."""
    seed: int = VALIDATION_SEED
    """Episodes use env.reset(seed=seed + i)."""
    device: str = "cpu"
    """Torch device for the policy and the env."""
    out: Path | None = None
    """Also write the per-episode results and summaries to this JSON file."""
    tolerance: float = 1e-4
    """Largest allowed relative difference between the gym and torch evaluations."""


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(Args, args=argv, description=__doc__)
    # --- every argument is checked before any work (exit code 2, nothing written) ---
    problems = []
    if args.episodes < 1:
        problems.append("--episodes must be ≥ 1")
    if args.seed < 0:
        problems.append(f"--seed must be ≥ 0 (env.reset seeds), got {args.seed}")
    if not (math.isfinite(args.tolerance) and args.tolerance >= 0):
        problems.append(f"--tolerance must be a finite number ≥ 0, got {args.tolerance}")
    try:
        parse_device(args.device)
    except ValueError as exc:
        problems.append(f"--device: {exc}")
    if args.out is not None:
        try:
            check_output_file(args.out, "--out")
        except ValueError as exc:
            problems.append(str(exc).rstrip("."))
    if problems:
        print("error: " + "; ".join(problems), file=sys.stderr)
        return 2
    try:
        policy, ckpt, problem, env_kwargs = load_run(args.checkpoint, device=args.device)
    except CheckpointError as exc:
        return refuse(exc)
    env_id = ckpt["env_id"]
    if isinstance(problem, InverseProblem):
        return _evaluate_inverse(args, policy, problem, ckpt, env_kwargs)
    seeds = range(args.seed, args.seed + args.episodes)
    gym_res = evaluate_gym(torch_policy_to_numpy(policy, args.device), env_id, seeds,
                           env_kwargs)
    core = core_of(gym.make(env_id, **env_kwargs))
    s0, target = make_eval_tasks(env_id, seeds, env_kwargs)
    torch_res = evaluate_torch(policy, core, s0, target)
    g, t = gym_res.summary(), torch_res.summary()
    rel = abs(g["target_error_mean"] - t["target_error_mean"]) / max(t["target_error_mean"],
                                                                      1e-30)
    print(f"{ckpt['algo']} on {env_id}, {args.episodes} held-out episodes (seeds {args.seed}…)")
    print(f"{'':24s}{'gym API (env.step)':>20s}{'torch (batched)':>18s}")
    for key in ("target_error_mean", "target_error_median", "force_cost_mean", "return_mean"):
        print(f"{key:24s}{g[key]:>20.6g}{t[key]:>18.6g}")
    print(f"relative difference of mean target error: {rel:.2e} (tolerance {args.tolerance:g})")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"checkpoint": str(args.checkpoint), "env_id": env_id,
                                        "gym": gym_res.to_dict(), "torch": torch_res.to_dict(),
                                        "relative_difference": rel}, indent=2) + "\n")
    if not np.isfinite(rel) or rel > args.tolerance:
        print("error: gym and torch evaluations disagree", file=sys.stderr)
        return 1
    return 0


def _evaluate_inverse(args: Args, network: nn.Module, problem: InverseProblem,
                      ckpt: dict[str, Any], env_kwargs: dict[str, Any]) -> int:
    """A single-step inverse problem: one ``env.step`` per seed through the Gymnasium API,
    against the same problems scored in torch (the guesses as the env scores them)."""
    info_key, metric = problem.info_metric
    env = gym.make(problem.env_id, **env_kwargs)
    act = problem.numpy_policy(network)
    gym_metric, gym_loss, posed = [], [], []
    for seed in range(args.seed, args.seed + args.episodes):
        obs, _ = env.reset(seed=seed)
        posed.append(problem.posed(env))
        _, reward, _, _, info = env.step(act(obs))
        gym_metric.append(float(info[info_key]))
        gym_loss.append(-float(reward))
    env.close()
    batch = InverseBatch(torch.cat([p.y_target for p in posed]),
                         None if posed[0].x_true is None
                         else torch.cat([p.x_true for p in posed if p.x_true is not None]))
    with torch.no_grad():
        x = problem.as_env_scores(problem.predict(network.eval(), batch.y_target))
    t = problem.batch_metrics(x, batch)
    g = {metric: float(np.mean(gym_metric)), "y_loss": float(np.mean(gym_loss))}
    rel = abs(g[metric] - t[metric]) / max(abs(t[metric]), 1e-30)
    print(f"{ckpt['algo']} on {problem.env_id}, {args.episodes} held-out problems "
          f"(seeds {args.seed}…)")
    print(f"{'':24s}{'gym API (env.step)':>20s}{'torch (batched)':>18s}")
    for key in (metric, "y_loss"):
        print(f"{key + '_mean':24s}{g[key]:>20.6g}{t[key]:>18.6g}")
    print(f"relative difference of mean {metric}: {rel:.2e} (tolerance {args.tolerance:g})")
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"checkpoint": str(args.checkpoint),
                                        "env_id": problem.env_id, "gym": g, "torch": t,
                                        f"gym_{metric}": gym_metric,
                                        "relative_difference": rel}, indent=2) + "\n")
    if not np.isfinite(rel) or rel > args.tolerance:
        print("error: gym and torch evaluations disagree", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

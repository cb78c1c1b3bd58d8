"""Partial observation and limited actuation: SIP vs DP vs supervised vs PPO with the
controlgym defaults (10 point sensors, 8 Gaussian actuators) on sip/ControlledDiffusion-v0 and
sip/ControlledBurgers-v0, and the open-loop optimum of each held-out diffusion task.

    python scripts/partial_observation.py              # writes docs/results/partial/compare.*
    python scripts/partial_observation.py --budget 5   # a smoke run (seconds per method)
    python scripts/partial_observation.py --sensing '{"actuators": 8}' \
        --envs sip/ControlledDiffusion-v0 --methods sip supervised dp --budget 45 \
        --out docs/results/partial/actuators_only/compare     # the ablation: every cell observed

Every method trains one seed for the same CPU-time budget (torch threads 1, the process CPU
clock) at a learning rate fixed in advance (no sweep: a reduced budget, see
docs/partial_observation.md), and is scored on the same held-out test episodes
(``env.reset(seed=TEST_SEED + i)``). Supervised training needs a reference solution, which only
the linear diffusion task has. The open-loop optimum (``agents.supervised.open_loop_optimum``)
knows the full initial state and solves each task's episode loss over the actions in
``[-1, 1]`` exactly (a convex box-constrained least-squares problem); the issue's bar is a
trained policy within 2x of its terminal error.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.evaluation import make_eval_tasks
from agents.problems import TEST_SEED
from agents.registry import load_algorithm
from agents.supervised import open_loop_optimum
from sipenv.envs.core import core_of

SENSING = {"sensors": 10, "actuators": 8}
"""The controlgym defaults: 10 point sensors, 8 actuators."""

RUNS: dict[str, list[tuple[str, str, float, dict[str, Any]]]] = {
    # env id: [(label, algorithm, learning rate, extra settings)]
    "sip/ControlledDiffusion-v0": [
        ("SIP (minimum-force, actuator space)", "sip", 1e-3, {}),
        ("DP (Adam)", "dp", 1e-3, {}),
        ("Supervised (open-loop optimum)", "supervised", 1e-3, {}),
        ("PPO (SB3)", "ppo", 3e-4, {}),
    ],
    "sip/ControlledBurgers-v0": [
        ("SIP (Gauss-Newton, actuator space)", "sip", 1e-3, {"split": "gauss-newton"}),
        ("DP (Adam)", "dp", 1e-3, {}),
        ("PPO (SB3)", "ppo", 3e-4, {}),
    ],
}


def train_one(env_id: str, algo: str, lr: float, extra: dict[str, Any], budget: float,
              episodes: int, runs_dir: str, sensing: dict[str, Any]) -> dict[str, Any]:
    config_cls, train = load_algorithm(algo)
    config = config_cls(env_id=env_id, env_kwargs=json.dumps(sensing), lr=lr,
                        time_budget=budget, clock="cpu", threads=1, seed=0,
                        eval_episodes=episodes, eval_seed=TEST_SEED, progress=False,
                        runs_dir=runs_dir, run_name=f"{env_id.split('/')[1]}-{algo}",
                        **extra)
    result = train(config)
    return {"algo": algo, "lr": lr, **extra, "iterations": result.iterations,
            "train_time": result.train_time, **result.final_eval}


def optimum(env_id: str, episodes: int, sensing: dict[str, Any]) -> dict[str, float]:
    """Terminal error of the open-loop optimum on the test episodes (linear physics)."""
    import gymnasium as gym

    core = core_of(gym.make(env_id, dtype="float64", **sensing))
    s0, target = make_eval_tasks(env_id, range(TEST_SEED, TEST_SEED + episodes),
                                 {**sensing, "dtype": "float64"})
    start = time.process_time()
    rollout = open_loop_optimum(core, s0, target, iterations=5000)
    err = core.target_error(rollout.states[-1], target).numpy()
    loss = core.episode_loss(rollout).numpy()
    return {"target_error_mean": float(err.mean()), "target_error_median": float(np.median(err)),
            "episode_loss_mean": float(loss.mean()),
            "saturated_fraction": float((rollout.actions.abs() > 0.999).double().mean()),
            "cpu_seconds": time.process_time() - start}


def write_markdown(out: Path, results: dict[str, Any]) -> None:
    lines = ["# Partial observation and limited actuation: committed comparison", "",
             f"Made by `{results['command']}` ({results['budget']:.0f} CPU "
             f"seconds of training per method, one seed, torch threads 1; "
             f"{results['episodes']} held-out test episodes, "
             "`env.reset(seed=2_000_000 + i)`). Env options: "
             f"`{json.dumps(results['sensing'])}` (target observed in full).", ""]
    for env_id, runs in results["envs"].items():
        lines += [f"## {env_id}", "", "| method | lr | iterations | terminal error (mean) | "
                  "median | force cost (mean) |", "|---|---|---|---|---|---|"]
        for label, r in runs.items():
            if "error" in r:
                lines.append(f"| {label} | {r['lr']:g} | – | failed: {r['error']} | | |")
                continue
            lines.append(f"| {label} | {r['lr']:g} | {r['iterations']} | "
                         f"{r['target_error_mean']:.4f} | {r['target_error_median']:.4f} | "
                         f"{r['force_cost_mean']:.3f} |")
        best = results.get("optimum", {}).get(env_id)
        if best is not None:
            lines += ["", f"Open-loop optimum (full state known, actions in [-1, 1]): terminal "
                      f"error mean {best['target_error_mean']:.4f} (median "
                      f"{best['target_error_median']:.4f}); {100 * best['saturated_fraction']:.0f}"
                      " % of its actions at the bounds."]
        lines.append("")
    out.write_text("\n".join(lines))


def plot(out: Path, results: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results["envs"]), figsize=(11, 4))
    for ax, (env_id, runs) in zip(np.atleast_1d(axes), results["envs"].items(), strict=True):
        labels = [k for k, r in runs.items() if "error" not in r]
        values = [runs[k]["target_error_mean"] for k in labels]
        ax.bar(range(len(values)), values, color="tab:blue")
        best = results.get("optimum", {}).get(env_id)
        if best is not None:
            ax.axhline(best["target_error_mean"], color="k", ls="--", label="open-loop optimum")
            ax.axhline(2 * best["target_error_mean"], color="tab:red", ls=":", label="2x optimum")
            ax.legend()
        ax.set_xticks(range(len(values)), [s.split(" (")[0] for s in labels])
        ax.set_yscale("log")
        ax.set_ylabel("terminal error (mean, test)")
        ax.set_title(f"{env_id}\n{json.dumps(results['sensing'])}", fontsize=9)
    fig.tight_layout()
    fig.savefig(out, dpi=100)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--budget", type=float, default=60.0, help="CPU seconds per method")
    parser.add_argument("--episodes", type=int, default=64, help="held-out test episodes")
    parser.add_argument("--out", default="docs/results/partial/compare",
                        help="output path without suffix (.json, .md, .png)")
    parser.add_argument("--envs", nargs="*", default=list(RUNS))
    parser.add_argument("--methods", nargs="*", default=None,
                        help="algorithms to run (default: all of each env's)")
    parser.add_argument("--sensing", default=json.dumps(SENSING),
                        help="the env's sensing options as JSON, e.g. '{\"actuators\": 8}'")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sensing = json.loads(args.sensing)
    command = " ".join(["python scripts/partial_observation.py",
                        *(shlex.quote(a) for a in (sys.argv[1:] if argv is None else argv))])
    results: dict[str, Any] = {"command": command, "budget": args.budget,
                               "episodes": args.episodes,
                               "sensing": sensing, "envs": {}, "optimum": {}}
    with tempfile.TemporaryDirectory() as runs_dir:
        for env_id in args.envs:
            if env_id == "sip/ControlledDiffusion-v0":
                results["optimum"][env_id] = optimum(env_id, args.episodes, sensing)
                print(env_id, "open-loop optimum", results["optimum"][env_id], flush=True)
            results["envs"][env_id] = {}
            for label, algo, lr, extra in RUNS[env_id]:
                if args.methods is not None and algo not in args.methods:
                    continue
                try:
                    r = train_one(env_id, algo, lr, extra, args.budget, args.episodes, runs_dir,
                                  sensing)
                except Exception as exc:  # reported in the results, not hidden
                    r = {"algo": algo, "lr": lr, "error": f"{type(exc).__name__}: {exc}"}
                results["envs"][env_id][label] = r
                print(env_id, label, {k: r.get(k) for k in (
                    "iterations", "target_error_mean", "force_cost_mean", "error")}, flush=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")
    write_markdown(out.with_suffix(".md"), results)
    plot(out.with_suffix(".png"), results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

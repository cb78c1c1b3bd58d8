"""SIP, DP, supervised and PPO side by side on sip/ShapeTransition-v0, with the zero-force
ceiling and the open-loop optimum floor.

    python scripts/reproduce_shape_transition.py --quick   # ≈ 14 CPU-minutes, one thread
    python scripts/reproduce_shape_transition.py --quick --sweep-budget 60 --time-budget 60 \
        --eval-every 25                                     # the committed run, ≈ 20 CPU-minutes
    python scripts/reproduce_shape_transition.py           # larger budgets (not run here)

(``scripts/compare.py`` takes no reference cache for supervised training, so this small driver
runs the same protocol for the 2-D task: SIP, DP and supervised train the same seeded network —
by default the U-Net with GroupNorm, ``--network unet-gn``; PPO always through the ``cnn``
encoder, the one spatial actor its adapter has — on the same task distribution; each gets
its best learning rate from a short sweep scored on validation episodes
(``VALIDATION_SEED``), then trains two seeds for an equal CPU-time budget; the final
policies are scored on test episodes (``TEST_SEED``) through the batched core, and the best one
also through ``env.step``.)

Writes docs/results/shape_transition/results.json, results.md and results.png (held-out error
against CPU seconds). Reference points on the same test episodes: the **ceiling** (no force)
and the **floor** (each task's open-loop optimum, ``agents.reference_cache.open_loop_optimum``:
per-task Adam through the physics, no network). Supervised regresses onto open-loop optima of a
fixed pool of training tasks, computed offline (their CPU time is reported, not charged to the
training budget).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

from agents import diffphys, ppo, sip, supervised
from agents.curves import plot_curves
from agents.evaluation import evaluate_gym, evaluate_torch
from agents.problems import TEST_SEED, VALIDATION_SEED, TaskProblem, make_problem
from agents.reference_cache import open_loop_optimum

ENV_ID = "sip/ShapeTransition-v0"
QUICK_ENV = {"shape": [16, 16], "horizon": 8, "kinds": ["circle"], "size_range": [0.15, 0.25]}
"""The quick task: 16×16 cells, 8 steps, circles (a target is the initial circle moved)."""
FULL_ENV = {"shape": [32, 32], "horizon": 16}
"""The larger task of a non-quick run (all 11 shape kinds)."""

METHODS: dict[str, dict[str, Any]] = {
    "sip": {"module": sip, "config": sip.SIPConfig, "options": {"split": "gauss-newton"},
            "lrs": (1e-3, 3e-3), "label": "SIP, Gauss–Newton split (Adam)"},
    "dp": {"module": diffphys, "config": diffphys.DPConfig, "options": {},
           "lrs": (1e-3, 3e-3), "label": "DP (Adam through the rollout)"},
    "supervised": {"module": supervised, "config": supervised.SupervisedConfig, "options": {},
                   "lrs": (1e-3, 3e-3), "label": "Supervised on open-loop optima (Adam)"},
    "ppo": {"module": ppo, "config": ppo.PPOConfig,
            "options": {"n_envs": 8, "n_steps": 32, "n_epochs": 5, "batch_size": 64},
            "lrs": (3e-4, 1e-3), "label": "PPO (SB3, CNN encoder)"},
}


def _config(name: str, args: argparse.Namespace, env: dict[str, Any], *, lr: float, seed: int,
            budget: float, eval_seed: int, eval_every: int) -> Any:
    method = METHODS[name]
    # (PPO's actor is the CNN encoder whatever --network says: SB3 takes no U-Net policy here)
    network, hidden = ("cnn", args.ppo_hidden) if name == "ppo" else (args.network, args.hidden)
    kw: dict[str, Any] = dict(env_id=ENV_ID, env_kwargs=json.dumps(env), network=network,
                              hidden=tuple(hidden), batch_size=args.batch_size, lr=lr,
                              seed=seed, time_budget=budget, clock="cpu", threads=1,
                              eval_seed=eval_seed, eval_episodes=args.episodes,
                              eval_every=eval_every, log_every=0, checkpoint_every=0,
                              progress=False)
    kw.update(method["options"])  # (PPO's own minibatch size replaces the batch size)
    if name == "supervised":
        kw.update(references=str(Path(args.references)), reference_tasks=args.reference_tasks,
                  reference_iterations=args.reference_iterations)
    if name == "ppo":
        kw["eval_every"] = max(1, eval_every // 20)
    return method["config"](**kw)


def _curve(result: Any) -> list[dict[str, float]]:
    return [{"iteration": h["iteration"], "time": h["time"],
             "error": h["eval_target_error_mean"]}
            for h in result.history if "eval_target_error_mean" in h]


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(1)
    env = QUICK_ENV if args.quick else FULL_ENV
    problem = make_problem(ENV_ID, env)
    assert isinstance(problem, TaskProblem)
    test = problem.held_out_sets(TEST_SEED, args.episodes)[""]

    # --- reference points on the test episodes ---
    def zero(obs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(obs.shape[0], *problem.core.action_shape)

    ceiling = evaluate_torch(zero, problem.core, *test).summary()
    start = time.process_time()
    actions, floor_error = open_loop_optimum(problem.core, *test,
                                             iterations=args.reference_iterations * 2)
    floor_cost = problem.core.force_cost(actions).sum(0).mean()
    floor = {"target_error_mean": float(floor_error.mean()), "force_cost_mean": float(floor_cost),
             "cpu_seconds": round(time.process_time() - start, 1)}
    print(f"ceiling {ceiling['target_error_mean']:.3f}  floor {floor['target_error_mean']:.3f}",
          flush=True)

    # --- supervised's offline references (built once, cached; timed here) ---
    start = time.process_time()
    _config("supervised", args, env, lr=1e-3, seed=0, budget=1.0, eval_seed=VALIDATION_SEED,
            eval_every=1).validate()
    reference_seconds = round(time.process_time() - start, 1)

    report: dict[str, Any] = {
        "env_id": ENV_ID, "env_kwargs": env, "quick": args.quick, "network": args.network,
        "hidden": list(args.hidden), "ppo_network": ["cnn", list(args.ppo_hidden)],
        "batch_size": args.batch_size, "episodes": args.episodes,
        "sweep_budget_s": args.sweep_budget, "time_budget_s": args.time_budget,
        "seeds": list(args.seeds), "clock": "process CPU time, 1 torch thread",
        "zero_force": ceiling, "open_loop_optimum": floor,
        "reference_pool": {"tasks": args.reference_tasks,
                           "iterations": args.reference_iterations,
                           "cpu_seconds_to_build": reference_seconds},
        "methods": {}}
    for name in args.methods:
        method = METHODS[name]
        sweep: dict[str, float] = {}
        lrs = args.lrs.get(name, method["lrs"])
        for lr in lrs if len(lrs) > 1 else ():
            cfg = _config(name, args, env, lr=lr, seed=args.seeds[0], budget=args.sweep_budget,
                          eval_seed=VALIDATION_SEED, eval_every=10**9)
            result = method["module"].train(cfg, write=False, progress=False)
            sweep[str(lr)] = result.final_eval["target_error_mean"]
            print(f"{name} sweep lr {lr:g}: {sweep[str(lr)]:.3f}", flush=True)
        best = min(lrs, key=lambda v: sweep.get(str(v), 0.0))
        runs = []
        for seed in args.seeds:
            cfg = _config(name, args, env, lr=best, seed=seed, budget=args.time_budget,
                          eval_seed=VALIDATION_SEED, eval_every=args.eval_every)
            result = method["module"].train(cfg, write=False, progress=False)
            test_eval = problem.evaluate(result.policy, test)
            runs.append({"seed": seed, "iterations": result.iterations,
                         "train_time_s": round(result.train_time, 2),
                         "ms_per_iteration": round(1e3 * result.train_time
                                                   / max(result.iterations, 1), 1),
                         "test": test_eval, "curve": _curve(result)})
            print(f"{name} seed {seed}: test error {test_eval['target_error_mean']:.3f} "
                  f"({result.iterations} its)", flush=True)
            if seed == args.seeds[0]:
                best_policy = result.policy
        errors = [r["test"]["target_error_mean"] for r in runs]
        entry = {"label": method["label"], "sweep": sweep, "lr": best, "runs": runs,
                 "test_error_mean": sum(errors) / len(errors),
                 "force_cost_mean": sum(r["test"]["force_cost_mean"] for r in runs) / len(runs),
                 "ms_per_iteration": sum(r["ms_per_iteration"] for r in runs) / len(runs),
                 "ratio_to_zero_force": sum(errors) / len(errors)
                 / ceiling["target_error_mean"]}
        # --- the first seed's policy through the plain Gymnasium API ---
        seeds = range(TEST_SEED, TEST_SEED + args.gym_episodes)
        gym_result = evaluate_gym(problem.numpy_policy(best_policy), ENV_ID, seeds, env)
        zero_gym = evaluate_gym(lambda obs: zero(torch.as_tensor(obs)[None])[0].numpy(), ENV_ID,
                                seeds, env)
        entry["env_step"] = {"episodes": args.gym_episodes,
                             "target_error_mean": float(gym_result.target_error.mean()),
                             "zero_force_error_mean": float(zero_gym.target_error.mean())}
        entry["env_step"]["ratio_to_zero_force"] = (entry["env_step"]["target_error_mean"]
                                                    / entry["env_step"]["zero_force_error_mean"])
        report["methods"][name] = entry
        if args.out:  # (after every method: a stopped run keeps what it finished)
            Path(args.out).mkdir(parents=True, exist_ok=True)
            (Path(args.out) / "results.json").write_text(json.dumps(report, indent=1))
    return report


def markdown(report: dict[str, Any]) -> str:
    zero, floor = report["zero_force"], report["open_loop_optimum"]
    swept = any(m["sweep"] for m in report["methods"].values())
    sweep = (f"after a {report['sweep_budget_s']:g} s sweep per learning rate" if swept
             else "learning rates given, no sweep")
    lines = [
        f"Task: `{report['env_id']}` with `{json.dumps(report['env_kwargs'])}`; network "
        f"`{report['network']}` {report['hidden']} (PPO: `cnn` encoder "
        f"{report.get('ppo_network', ['cnn', report['hidden']])[1]}), batch "
        f"{report['batch_size']}; "
        f"{report['time_budget_s']:g} CPU-s per run ({sweep}), seeds {report['seeds']}; "
        f"{report['episodes']} test episodes.", "",
        "| method | lr | test error (mean of seeds) | × zero-force | via env.step (× zero) "
        "| force cost Σ_t mean(a²) | ms / iteration |",
        "|---|---|---|---|---|---|---|",
        f"| zero force (ceiling) | – | {zero['target_error_mean']:.3f} | 1.00 | – | 0 | – |",
        f"| open-loop optimum (floor, per task, no network) | – | "
        f"{floor['target_error_mean']:.3f} | "
        f"{floor['target_error_mean'] / zero['target_error_mean']:.2f} | – | "
        f"{floor['force_cost_mean']:.3f} | – |"]
    for m in report["methods"].values():
        lines.append(f"| {m['label']} | {m['lr']:g} | {m['test_error_mean']:.3f} | "
                     f"{m['ratio_to_zero_force']:.2f} | "
                     f"{m['env_step']['target_error_mean']:.3f} "
                     f"({m['env_step']['ratio_to_zero_force']:.2f}) | "
                     f"{m['force_cost_mean']:.3f} | {m['ms_per_iteration']:.0f} |")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    plot_curves(report["methods"].values(), path, key="error",
                ylabel="validation terminal error ‖m_T − m*‖²/‖m*‖²",
                lines=[(report["zero_force"]["target_error_mean"], "--", "zero force (ceiling)"),
                       (report["open_loop_optimum"]["target_error_mean"], ":",
                        "open-loop optimum (floor)")])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1])
    parser.add_argument("--sweep-budget", type=float, default=None)
    parser.add_argument("--time-budget", type=float, default=None)
    parser.add_argument("--eval-every", type=int, default=100)
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--gym-episodes", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--network", default="unet-gn", choices=["unet-gn", "cnn", "unet"],
                        help="network of SIP, DP and supervised (PPO: always the cnn encoder); "
                             "unet-gn, the U-Net with GroupNorm, by default (the BatchNorm unet "
                             "evaluates far worse than it trains on control tasks)")
    parser.add_argument("--hidden", nargs="+", type=int, default=None,
                        help="filters per level (default: 16 16 16 for the U-Nets, 16 32 for "
                             "the cnn; non-quick 16 32 32)")
    parser.add_argument("--ppo-hidden", nargs="+", type=int, default=None,
                        help="PPO's CNN encoder filters (default 16 32; non-quick 16 32 32)")
    parser.add_argument("--reference-tasks", type=int, default=512)
    parser.add_argument("--reference-iterations", type=int, default=100)
    parser.add_argument("--references", default="runs/references/shape_transition")
    parser.add_argument("--out", default="docs/results/shape_transition")
    parser.add_argument("--lrs", type=json.loads, default={},
                        help='learning rates per method as JSON, e.g. \'{"sip": [1e-3]}\' '
                             "(one rate: no sweep)")
    args = parser.parse_args(argv)
    args.sweep_budget = args.sweep_budget or (20.0 if args.quick else 120.0)
    args.time_budget = args.time_budget or (60.0 if args.quick else 600.0)
    wide = [16, 32] if args.quick else [16, 32, 32]
    args.ppo_hidden = args.ppo_hidden or wide
    args.hidden = args.hidden or ([16, 16, 16] if args.network != "cnn" else wide)
    if args.references == "runs/references/shape_transition":
        args.references += "-quick" if args.quick else ""
    report = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=1))
    (out / "results.md").write_text(markdown(report))
    plot(report, out / "results.png")
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

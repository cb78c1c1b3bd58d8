"""Reference points for the Burgers comparisons (``docs/results/burgers.md``), three commands:

    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/burgers_references.py reference-solutions
    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/burgers_references.py iteration-timing --reps 8
    OMP_NUM_THREADS=1 nice -n 19 python benchmarks/burgers_references.py uncorrected-baseline

* ``reference-solutions`` (``sip/ControlledBurgers-v0``, on the test episodes of the committed
  comparison, ``env.reset(seed=1_000_000 + i)``): the final error with no force at all; the
  constant Gaussian force that generated each target (it reaches the target exactly): its
  ``Σ_t ‖F_t‖₁`` (summed over cells and steps) and ``Σ_t mean(a_t²)``; and the
  least-``Σ_t ‖F_t‖²`` controls, converged by Gauss–Newton on the forces
  (``F ← Jᵀ (J Jᵀ)⁻¹ (r + J F)``, ``sipenv.physics.generic_inverse``): the same costs, their
  peak action and final error. Writes ``docs/results/burgers/reference_solutions.json``.
* ``iteration-timing``: one training iteration on ``sip/ControlledBurgers-v0`` (loss on a batch
  of 64 tasks + backward + Adam step; the batch is drawn once per repetition and shared by all
  methods, its draw timed as "sample"): DP versus SIP with the Gauss–Newton inverse at 2, 4 and
  8 CG iterations, interleaved in one process so the ratios share the machine's state; with the
  physics' hand-written derivatives (default) and with plain autograd. Writes
  ``docs/results/burgers/iteration_timing.json``.
* ``uncorrected-baseline`` (``sip/CorrectedBurgers-v0``, the same test episodes): the
  uncorrected coarse solver's error, and the exact per-step corrections (``force_for`` onto the
  reference) for scale. Writes ``docs/results/burgers/corrected/uncorrected_baseline.json``.

The committed comparisons scored their test episodes at seeds ``1_000_000 + i``; ``--seed``
changes that (the training code's ``agents.problems.TEST_SEED`` is 2,000,000 since the seed
roles were unified, so a new comparison's test episodes start there).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import seeding

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/burgers_references.py` from a checkout
    sys.path.insert(0, str(ROOT))

from agents import diffphys, sip  # noqa: E402
from agents.evaluation import evaluate_torch, make_eval_tasks  # noqa: E402
from agents.networks import make_network  # noqa: E402
from agents.problems import TaskProblem, make_problem  # noqa: E402
from sipenv.envs import ControlCore, core_of  # noqa: E402
from sipenv.physics.generic_inverse import linearize_rollout, solve_minimum_norm  # noqa: E402

CONTROL = "sip/ControlledBurgers-v0"
CORRECTION = "sip/CorrectedBurgers-v0"
RESULTS = ROOT / "docs" / "results" / "burgers"
COMMITTED_TEST_SEED = 1_000_000


def reference_solutions(episodes: int, seed: int) -> dict[str, Any]:
    env = gym.make(CONTROL, dtype="float64")
    core = core_of(env, ControlCore)
    assert core.task_sampler is not None
    s0s, targets, forces = [], [], []
    for i in range(episodes):
        env.reset(seed=seed + i)
        # Replay the env's own draw (reset seeds a torch generator from np_random) to recover
        # the generating force, which reset does not expose.
        np_random, _ = seeding.np_random(seed + i)
        gen = torch.Generator().manual_seed(int(np_random.integers(2**62)))
        s0, target, force = core.task_sampler.with_forces(1, gen)  # type: ignore[attr-defined]
        s0s.append(s0)
        targets.append(target)
        forces.append(force)
    s0, target, force = torch.cat(s0s), torch.cat(targets), torch.cat(forces)
    horizon, scale = core.horizon, core.force_scale

    def final(f: torch.Tensor) -> torch.Tensor:
        state = s0
        for t in range(horizon):
            state = core.physics.step(state, f[t])
        return state

    def summary(f: torch.Tensor) -> dict[str, float]:
        err = core.target_error(final(f), target)
        return {"target_error_mean": float(err.mean()),
                "force_l1_mean": float(f.abs().sum(dim=(0, 2)).mean()),
                "force_cost_mean": float(((f / scale) ** 2).mean(-1).sum(0).mean()),
                "peak_action_max": float((f.abs().amax(dim=(0, 2)) / scale).max())}

    zero = torch.zeros(horizon, *s0.shape, dtype=s0.dtype)
    generating = force.expand(horizon, *force.shape)
    optimal = zero.clone()
    for k in range(12):
        states, _, jac = linearize_rollout(core.physics.step, s0, optimal)
        rhs = target - states[-1] + jac.jvp(optimal)
        new = solve_minimum_norm(jac, rhs, iterations=48, tol=1e-10).correction
        optimal = optimal + 0.7 * (new - optimal) if k < 3 else new
    report = {"env_id": CONTROL, "episodes": episodes, "test_seeds_from": seed,
              "no_force": summary(zero), "generating_force": summary(generating),
              "least_squares_force": summary(optimal)}
    for key in ("no_force", "generating_force", "least_squares_force"):
        print(f"{key:22s}", {k: float(np.round(v, 4)) for k, v in report[key].items()})
    return report


def iteration_timing(reps: int) -> dict[str, Any]:
    report: dict[str, Any] = {"machine": platform.platform(), "torch": torch.__version__,
                              "reps": reps, "unit": "ms, median"}
    for analytic in (True, False):
        problem = make_problem(CONTROL, {"analytic_derivatives": analytic})
        assert isinstance(problem, TaskProblem)
        core = problem.core
        gen = torch.Generator().manual_seed(0)
        policy = make_network("mlp", core.obs_dim, core.n, hidden=(256, 256), seed=0)
        optimizer = torch.optim.Adam(policy.parameters(), 1e-3)
        methods: dict[str, tuple[Any, Any]] = {
            "dp": (diffphys.ALGORITHM, diffphys.DPConfig(env_id=CONTROL))}
        for k in (2, 4, 8):
            methods[f"sip-gn{k}"] = (sip.ALGORITHM, sip.SIPConfig(
                env_id=CONTROL, split="gauss-newton", gn_iterations=k))
        times: dict[str, list[float]] = {k: [] for k in (*methods, "sample")}
        for rep in range(reps + 1):  # the first repetition warms up
            t0 = time.perf_counter()
            batch = problem.sample(64, gen)
            if rep:
                times["sample"].append(time.perf_counter() - t0)
            for name, (algorithm, config) in methods.items():
                t0 = time.perf_counter()
                loss = algorithm.loss(policy, problem, batch, config).loss
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if rep:
                    times[name].append(time.perf_counter() - t0)
        med = {k: round(1e3 * statistics.median(v), 1) for k, v in times.items()}
        ratios = {f"{k}/dp": round(med[k] / med["dp"], 2) for k in methods if k != "dp"}
        ratios_with_sampling = {f"{k}/dp": round((med[k] + med["sample"])
                                                 / (med["dp"] + med["sample"]), 2)
                                for k in methods if k != "dp"}
        key = "analytic_derivatives" if analytic else "plain_autograd"
        report[key] = {"median_ms": med, "ratio": ratios,
                       "ratio_including_sampling": ratios_with_sampling}
        print(key, json.dumps(report[key]), flush=True)
    return report


def uncorrected_baseline(episodes: int, seed: int) -> dict[str, Any]:
    core = core_of(gym.make(CORRECTION))
    s0, reference = make_eval_tasks(CORRECTION, range(seed, seed + episodes))

    def zero(obs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(obs.shape[0], core.n)

    res = evaluate_torch(zero, core, s0, reference)
    errors = torch.as_tensor(res.target_error)
    with torch.no_grad():
        exact = torch.stack([core.physics.force_for(reference[:, t], reference[:, t + 1])
                             for t in range(core.horizon)])
    report = {"env_id": CORRECTION, "episodes": episodes,
              "uncorrected": {"final_error_mean": float(errors.mean()),
                              "final_error_median": float(errors.median())},
              "exact_corrections": {
                  "force_l1_mean": float(exact.abs().sum(dim=(0, 2)).mean()),
                  "peak_action_median": float((exact.abs().amax(dim=(0, 2))
                                               / core.force_scale).median())}}
    print(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("what", choices=("reference-solutions", "iteration-timing",
                                         "uncorrected-baseline"))
    parser.add_argument("--episodes", type=int, default=128, help="test episodes")
    parser.add_argument("--seed", type=int, default=COMMITTED_TEST_SEED,
                        help="seed of the first test episode")
    parser.add_argument("--reps", type=int, default=8, help="timed repetitions")
    parser.add_argument("--out", type=Path, default=None, help="JSON file to write")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    if args.what == "reference-solutions":
        report = reference_solutions(args.episodes, args.seed)
        out = RESULTS / "reference_solutions.json"
    elif args.what == "iteration-timing":
        report = iteration_timing(args.reps)
        out = RESULTS / "iteration_timing.json"
    else:
        report = uncorrected_baseline(args.episodes, args.seed)
        out = RESULTS / "corrected" / "uncorrected_baseline.json"
    out = args.out or out
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

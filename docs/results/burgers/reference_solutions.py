"""Reference points for the sip/ControlledBurgers-v0 comparison, on its test episodes.

    OMP_NUM_THREADS=1 nice -n 19 python docs/results/burgers/reference_solutions.py

For the test episodes of scripts/compare.py (``env.reset(seed=1_000_000 + i)``) this reports

* the final error with no force at all;
* the constant Gaussian force that generated each target (it reaches the target exactly): its
  ``Σ_t ‖F_t‖₁`` (summed over cells and steps) and ``Σ_t mean(a_t²)``;
* the least-``Σ_t ‖F_t‖²`` controls, converged by Gauss–Newton on the forces
  (``F ← Jᵀ (J Jᵀ)⁻¹ (r + J F)``, :mod:`sipenv.physics.generic_inverse`): the same costs, their
  peak action and final error.

A trained policy's numbers in compare.md can be read against these. Writes
reference_solutions.json next to this file.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from gymnasium.utils import seeding

import sipenv  # noqa: F401  (registers the ids)
from sipenv.physics.generic_inverse import linearize_rollout, solve_minimum_norm

ENV = "sip/ControlledBurgers-v0"
TEST_SEED = 1_000_000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--episodes", type=int, default=128)
    parser.add_argument("--out", default=str(Path(__file__).with_name("reference_solutions.json")))
    args = parser.parse_args()
    torch.set_num_threads(1)
    env = gym.make(ENV, dtype="float64")
    core = env.unwrapped.core  # type: ignore[attr-defined]
    s0s, targets, forces = [], [], []
    for i in range(args.episodes):
        env.reset(seed=TEST_SEED + i)
        # Replay the env's own draw (reset seeds a torch generator from np_random) to recover
        # the generating force, which reset does not expose.
        np_random, _ = seeding.np_random(TEST_SEED + i)
        gen = torch.Generator().manual_seed(int(np_random.integers(2**62)))
        s0, target, force = core.task_sampler.with_forces(1, gen)
        assert torch.allclose(s0, env.unwrapped.state) and torch.allclose(  # type: ignore[attr-defined]
            target, env.unwrapped.target)  # type: ignore[attr-defined]
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
    report = {"env_id": ENV, "episodes": args.episodes, "test_seeds_from": TEST_SEED,
              "no_force": summary(zero), "generating_force": summary(generating),
              "least_squares_force": summary(optimal)}
    for key in ("no_force", "generating_force", "least_squares_force"):
        print(f"{key:22s}", {k: float(np.round(v, 4)) for k, v in report[key].items()})
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""The uncorrected coarse solver on the test episodes of the sip/CorrectedBurgers-v0 comparison,
and the exact per-step corrections (force_for onto the reference) for scale.

    OMP_NUM_THREADS=1 nice -n 19 python docs/results/burgers/corrected/uncorrected_baseline.py

Writes uncorrected_baseline.json next to this file.
"""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import torch

import sipenv  # noqa: F401  (registers the ids)
from agents.evaluation import evaluate_torch, make_eval_tasks

ENV = "sip/CorrectedBurgers-v0"


def main() -> None:
    torch.set_num_threads(1)
    core = gym.make(ENV).unwrapped.core  # type: ignore[attr-defined]
    s0, reference = make_eval_tasks(ENV, range(1_000_000, 1_000_128))

    def zero(obs: torch.Tensor) -> torch.Tensor:
        return torch.zeros(obs.shape[0], core.n)

    res = evaluate_torch(zero, core, s0, reference)
    with torch.no_grad():
        exact = torch.stack([core.physics.force_for(reference[:, t], reference[:, t + 1])
                             for t in range(core.horizon)])
    report = {"env_id": ENV, "episodes": 128,
              "uncorrected": {"final_error_mean": float(res.target_error.mean()),
                              "final_error_median": float(torch.tensor(res.target_error)
                                                          .median())},
              "exact_corrections": {
                  "force_l1_mean": float(exact.abs().sum(dim=(0, 2)).mean()),
                  "peak_action_median": float((exact.abs().amax(dim=(0, 2))
                                               / core.force_scale).median())}}
    print(json.dumps(report, indent=2))
    Path(__file__).with_name("uncorrected_baseline.json").write_text(
        json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

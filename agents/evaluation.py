"""Evaluation on a fixed set of seeded episodes, two ways that must agree:

* ``evaluate_torch`` — one batched torch rollout of the env's differentiable core;
* ``evaluate_gym`` — episode by episode through the plain Gymnasium API (``env.step`` with
  numpy actions), exactly as any user of the env would.

The episodes are those that ``env.reset(seed=s)`` poses for ``s`` in ``seeds``; held-out seeds
(default ``agents.problems.VALIDATION_SEED`` ``+ i``) never overlap the training stream,
which draws from its own generator.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import sipenv  # noqa: F401  (registers the sip/ ids)
from sipenv.envs.core import TaskCore

__all__ = [
    "EvalResult",
    "evaluate_gym",
    "evaluate_torch",
    "make_eval_tasks",
    "torch_policy_to_numpy",
]

NumpyPolicy = Callable[[np.ndarray], np.ndarray]


@dataclass
class EvalResult:
    """Per-episode results and their summary.

    Attributes:
        target_error: Final relative squared error ``‖s_T − s*‖²/‖s*‖²`` per episode.
        force_cost: ``Σ_t mean(a_t²)`` per episode (normalised actions).
        episode_return: Sum of rewards per episode.
    """

    target_error: np.ndarray
    force_cost: np.ndarray
    episode_return: np.ndarray

    def summary(self) -> dict[str, float]:
        """Mean/median target error, mean force cost and return, episode count."""
        return {
            "episodes": len(self.target_error),
            "target_error_mean": float(np.mean(self.target_error)),
            "target_error_median": float(np.median(self.target_error)),
            "force_cost_mean": float(np.mean(self.force_cost)),
            "return_mean": float(np.mean(self.episode_return)),
        }

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict with the per-episode lists and the summary."""
        out = {k: np.asarray(v).tolist() for k, v in asdict(self).items()}
        out["summary"] = self.summary()
        return out


def make_eval_tasks(env_id: str, seeds: Sequence[int], env_kwargs: dict[str, Any] | None = None
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``(s_0, s*)`` that ``env.reset(seed=s)`` poses for each seed, stacked ``(E, N)``."""
    env = gym.make(env_id, **(env_kwargs or {}))
    s0, targets = [], []
    for seed in seeds:
        env.reset(seed=int(seed))
        s0.append(env.unwrapped.state)  # type: ignore[attr-defined]
        targets.append(env.unwrapped.target)  # type: ignore[attr-defined]
    env.close()
    return torch.cat(s0), torch.cat(targets)


def evaluate_torch(policy: Callable[[torch.Tensor], torch.Tensor], core: TaskCore,
                   s0: torch.Tensor, target: torch.Tensor) -> EvalResult:
    """Evaluate ``policy`` on the tasks ``(s0, target)`` with one batched core rollout."""
    with torch.no_grad():
        rollout = core.rollout(policy, s0, target)
        err = core.target_error(rollout.states[-1], target)
        cost = core.force_cost(rollout.actions)  # (T, B)
        ret = -core.force_penalty * cost.sum(0) - err
    return EvalResult(err.double().cpu().numpy(), cost.sum(0).double().cpu().numpy(),
                      ret.double().cpu().numpy())


def evaluate_gym(policy: NumpyPolicy, env_id: str, seeds: Sequence[int],
                 env_kwargs: dict[str, Any] | None = None) -> EvalResult:
    """Evaluate a numpy policy ``obs (obs_dim,) → action (N,)`` through ``env.step``."""
    env = gym.make(env_id, **(env_kwargs or {}))
    errs, costs, rets = [], [], []
    for seed in seeds:
        obs, info = env.reset(seed=int(seed))
        total_cost, total_reward, done = 0.0, 0.0, False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total_cost += float(info["force_cost"])
            total_reward += float(reward)
            done = terminated or truncated
        errs.append(float(info["target_error"]))
        costs.append(total_cost)
        rets.append(total_reward)
    env.close()
    return EvalResult(np.array(errs), np.array(costs), np.array(rets))


def torch_policy_to_numpy(policy: Callable[[torch.Tensor], torch.Tensor],
                          device: str | torch.device = "cpu") -> NumpyPolicy:
    """Wrap a torch policy for single numpy observations (as ``evaluate_gym`` needs)."""

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(obs, dtype=torch.float32, device=device)[None]
            return policy(x)[0].cpu().numpy()

    return act

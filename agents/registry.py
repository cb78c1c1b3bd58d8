"""Algorithms by name: each algorithm module defines ``ALGORITHM`` (an
``agents.trainer.Algorithm``) and is listed here once.

Adding an algorithm (e.g. half-inverse gradients) is one new module with its config, its loss
and/or its own update and ``ALGORITHM = Algorithm("name", Config, loss=…, update=…)``, plus one
line in ``ALGORITHMS``. PPO's module imports without stable-baselines3; SB3 is only needed
when PPO trains.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from agents import diffphys, hig, ppo, sip, supervised
from agents.checkpoint import CheckpointError, load_checkpoint
from agents.problems import InverseProblem, TaskProblem, env_error, make_problem
from agents.trainer import Algorithm, TrainConfig, TrainResult, policy_from_checkpoint

__all__ = ["ALGORITHMS", "TrainedRun", "get_algorithm", "load_algorithm", "load_policy", "load_run"]

ALGORITHMS: dict[str, Algorithm] = {
    "sip": sip.ALGORITHM,
    "dp": diffphys.ALGORITHM,
    "supervised": supervised.ALGORITHM,
    "ppo": ppo.ALGORITHM,
    "hig": hig.ALGORITHM,
}


def get_algorithm(name: str) -> Algorithm:
    """The registered algorithm ``name``.

    Raises:
        ValueError: For an unknown name (the message lists the known ones).
    """
    if name not in ALGORITHMS:
        raise ValueError(f"Unknown algorithm {name!r}; choose one of {sorted(ALGORITHMS)}.")
    return ALGORITHMS[name]


def load_algorithm(name: str) -> tuple[type[TrainConfig], Callable[..., TrainResult]]:
    """The config class and training function of an algorithm (kept for callers of the
    earlier registry; ``get_algorithm`` gives the ``Algorithm`` itself).

    Raises:
        ValueError: For an unknown name (the message lists the known ones).
    """
    algorithm = get_algorithm(name)
    return algorithm.config, algorithm.train


def load_policy(path: str | Path, *, device: str | torch.device = "cpu",
                env_id: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The trained network (a torch module, eval mode) and checkpoint data of any algorithm.

    Raises:
        CheckpointError: If the checkpoint is missing, corrupt or does not match ``env_id``.
    """
    ckpt = load_checkpoint(path, env_id=env_id, map_location=device)
    if ckpt["algo"] == "ppo":
        return ppo.load_policy(path, device=device), ckpt
    return policy_from_checkpoint(path, device=device, env_id=env_id)


class TrainedRun(NamedTuple):
    """What ``load_run`` returns.

    Attributes:
        policy: The trained network (eval mode).
        checkpoint: The checkpoint's data (``env_id``, ``env_kwargs``, ``config``, …).
        problem: The problem it was trained on, rebuilt from the saved settings.
        env_kwargs: ``gym.make`` keywords of its env, with ``device`` and ``dtype``.
    """

    policy: nn.Module
    checkpoint: dict[str, Any]
    problem: TaskProblem | InverseProblem
    env_kwargs: dict[str, Any]


def load_run(path: str | Path, *, device: str | torch.device = "cpu") -> TrainedRun:
    """A checkpoint's policy together with the problem and env settings it was trained on.

    Raises:
        CheckpointError: If the checkpoint is missing or corrupt, or its saved env settings no
            longer fit the env (the message names the setting).
    """
    policy, ckpt = load_policy(path, device=device)
    env_id, dtype = ckpt["env_id"], ckpt["config"].get("env_dtype", "float32")
    try:
        problem = make_problem(env_id, ckpt["env_kwargs"], device=device, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path}'s env settings do not fit {env_id}: "
                              f"{env_error(env_id, exc)}") from exc
    return TrainedRun(policy, ckpt, problem,
                      {**ckpt["env_kwargs"], "device": str(device), "dtype": dtype})

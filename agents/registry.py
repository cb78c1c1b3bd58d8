"""Algorithms by name: ``sip``, ``dp``, ``supervised`` and ``ppo`` (the latter needs the ``rl``
extra only when it trains)."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from agents.checkpoint import load_checkpoint
from agents.trainer import TrainConfig, TrainResult, policy_from_checkpoint

__all__ = ["ALGORITHMS", "load_algorithm", "load_policy"]

# name -> (module, config class)
ALGORITHMS: dict[str, tuple[str, str]] = {
    "sip": ("agents.sip", "SIPConfig"),
    "dp": ("agents.diffphys", "DPConfig"),
    "supervised": ("agents.supervised", "SupervisedConfig"),
    "ppo": ("agents.ppo", "PPOConfig"),
}


def load_algorithm(name: str) -> tuple[type[TrainConfig], Callable[..., TrainResult]]:
    """The config class and ``train`` function of an algorithm.

    Raises:
        ValueError: For an unknown name (the message lists the known ones).
    """
    if name not in ALGORITHMS:
        raise ValueError(f"Unknown algorithm {name!r}; choose one of {sorted(ALGORITHMS)}.")
    module_name, config_name = ALGORITHMS[name]
    module: Any = importlib.import_module(module_name)
    return getattr(module, config_name), module.train


def load_policy(path: str | Path, *, device: str | torch.device = "cpu",
                env_id: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The trained policy (a torch module, eval mode) and checkpoint data of any algorithm.

    Raises:
        CheckpointError: If the checkpoint is missing, corrupt or does not match ``env_id``.
    """
    ckpt = load_checkpoint(path, env_id=env_id, map_location=device)
    if ckpt["algo"] == "ppo":
        from agents.ppo import load_policy as load_ppo

        return load_ppo(path, device=device), ckpt
    return policy_from_checkpoint(path, device=device, env_id=env_id)

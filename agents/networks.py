"""Policy networks shared by every algorithm (same architecture and initialisation for a fair
comparison). Build them by name with :func:`make_network`."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["NETWORKS", "MLPPolicy", "make_network"]


class MLPPolicy(nn.Module):
    """Fully connected policy ``obs (B, obs_dim) → action (B, act_dim)`` with ReLU hidden layers.

    The last layer is initialised ×0.1 so that an untrained policy applies small forces.

    Args:
        obs_dim: Observation size.
        act_dim: Action size.
        hidden: Widths of the hidden layers.
    """

    def __init__(self, obs_dim: int, act_dim: int, hidden: Sequence[int] = (256, 256)) -> None:
        super().__init__()
        if obs_dim < 1 or act_dim < 1 or any(h < 1 for h in hidden):
            raise ValueError(f"obs_dim, act_dim and hidden widths must be ≥ 1, got {obs_dim}, "
                             f"{act_dim}, {tuple(hidden)}.")
        layers: list[nn.Module] = []
        width = obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        out = nn.Linear(width, act_dim)
        with torch.no_grad():
            out.weight.mul_(0.1)
            out.bias.zero_()
        layers.append(out)
        self.net = nn.Sequential(*layers)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B, obs_dim) → (B, act_dim)``."""
        return self.net(obs)


NETWORKS: dict[str, Callable[..., nn.Module]] = {"mlp": MLPPolicy}


def make_network(name: str, obs_dim: int, act_dim: int, *, hidden: Sequence[int] = (256, 256),
                 device: str | torch.device = "cpu", seed: int | None = None,
                 **kwargs: Any) -> nn.Module:
    """Build a registered network by name, seeded so that every method starts identically.

    Raises:
        ValueError: For an unknown name (the message lists the known ones).
    """
    if name not in NETWORKS:
        raise ValueError(f"Unknown network {name!r}; choose one of {sorted(NETWORKS)}.")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        net = NETWORKS[name](obs_dim, act_dim, hidden=tuple(hidden), **kwargs)
    return net.to(device)

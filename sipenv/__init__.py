"""sipenv: differentiable, time-dependent physics as Gymnasium environments with per-step inverse
simulators, for training networks with SIP (scale-invariant physics) and its baselines.

``import sipenv`` registers every ``sip/<Name>-v0`` environment id with Gymnasium.
"""

from __future__ import annotations

from sipenv import envs, physics
from sipenv.envs import ENV_IDS

__all__ = ["ENV_IDS", "__version__", "envs", "physics"]
__version__ = "0.1.0"

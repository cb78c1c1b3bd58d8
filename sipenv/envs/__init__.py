"""Gymnasium environments of sipenv. Importing this module registers every ``sip/...`` id.

All registrations live here, with string entry points, namespaced and versioned; a change of
behaviour bumps the version.
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from sipenv.envs.control import ControlEnv, ControlVectorEnv
from sipenv.envs.core import ControlCore, Rollout

__all__ = ["ENV_IDS", "ControlCore", "ControlEnv", "ControlVectorEnv", "Rollout"]

ENV_IDS: tuple[str, ...] = (
    "sip/ControlledDiffusion-v0",
    "sip/SineInversion-v0",
    "sip/ControlledBurgers-v0",
    "sip/CorrectedBurgers-v0",
    "sip/HeatInverse-v0",
)


def _register() -> None:
    if "sip/ControlledDiffusion-v0" not in registry:
        register(
            id="sip/ControlledDiffusion-v0",
            entry_point="sipenv.envs.controlled_diffusion:ControlledDiffusionEnv",
            vector_entry_point="sipenv.envs.controlled_diffusion:ControlledDiffusionVectorEnv",
        )
    if "sip/ControlledBurgers-v0" not in registry:
        register(
            id="sip/ControlledBurgers-v0",
            entry_point="sipenv.envs.controlled_burgers:ControlledBurgersEnv",
            vector_entry_point="sipenv.envs.controlled_burgers:ControlledBurgersVectorEnv",
        )
    if "sip/CorrectedBurgers-v0" not in registry:
        register(
            id="sip/CorrectedBurgers-v0",
            entry_point="sipenv.envs.corrected_burgers:CorrectedBurgersEnv",
            vector_entry_point="sipenv.envs.corrected_burgers:CorrectedBurgersVectorEnv",
        )
    if "sip/SineInversion-v0" not in registry:
        register(
            id="sip/SineInversion-v0",
            entry_point="sipenv.envs.sine_inversion:SineInversionEnv",
            vector_entry_point="sipenv.envs.sine_inversion:SineInversionVectorEnv",
        )
    if "sip/HeatInverse-v0" not in registry:
        register(
            id="sip/HeatInverse-v0",
            entry_point="sipenv.envs.heat_inverse:HeatInverseEnv",
            vector_entry_point="sipenv.envs.heat_inverse:HeatInverseVectorEnv",
        )


_register()

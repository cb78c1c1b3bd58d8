"""Gymnasium environments of sipenv. Importing this module registers every ``sip/...`` id.

All registrations live here, with string entry points, namespaced and versioned; a change of
behaviour bumps the version. A new env is one line in ``_ENTRY_POINTS`` (and gets the
conformance tests of ``tests/envs/test_conformance.py`` by being in ``ENV_IDS``).
"""

from __future__ import annotations

from gymnasium.envs.registration import register, registry

from sipenv.envs.control import ControlEnv, ControlVectorEnv
from sipenv.envs.core import ControlCore, Rollout, TaskCore, core_of

__all__ = ["ENV_IDS", "ControlCore", "ControlEnv", "ControlVectorEnv", "Rollout", "TaskCore",
           "core_of"]

_ENTRY_POINTS: dict[str, tuple[str, str]] = {
    # id: (module under sipenv.envs, class prefix); the classes are <prefix>Env and
    # <prefix>VectorEnv.
    "sip/ControlledDiffusion-v0": ("controlled_diffusion", "ControlledDiffusion"),
    "sip/SineInversion-v0": ("sine_inversion", "SineInversion"),
    "sip/ControlledBurgers-v0": ("controlled_burgers", "ControlledBurgers"),
    "sip/CorrectedBurgers-v0": ("corrected_burgers", "CorrectedBurgers"),
    "sip/HeatInverse-v0": ("heat_inverse", "HeatInverse"),
    "sip/ShapeTransition-v0": ("shape_transition", "ShapeTransition"),
    "sip/CoupledOscillators-v0": ("coupled_oscillators", "CoupledOscillators"),
    "sip/FluidInverse-v0": ("fluid_inverse", "FluidInverse"),
}

ENV_IDS: tuple[str, ...] = tuple(_ENTRY_POINTS)


def _register() -> None:
    # Gymnasium's passive env checker is off by default (``gym.make(id,
    # disable_env_checker=False)`` turns it back on): in Gymnasium 1.4 it marks the env checked
    # before the first ``reset`` returns, so a first reset that sipenv rejects (bad options)
    # left the env unable to step. Every id passes ``check_env`` in the conformance suite.
    for env_id, (module, prefix) in _ENTRY_POINTS.items():
        if env_id not in registry:
            register(id=env_id, entry_point=f"sipenv.envs.{module}:{prefix}Env",
                     vector_entry_point=f"sipenv.envs.{module}:{prefix}VectorEnv",
                     disable_env_checker=True)


_register()

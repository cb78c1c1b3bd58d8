"""Fixtures of the env tests: ``env_id`` runs a test once per registered id
(:data:`sipenv.ENV_IDS`, plus the test-only ``sip-test/Recipe-v0`` of ``recipe_env.py`` and the
sensor / actuator / noise variants of :data:`env_support.SENSED_VARIANTS`), so a new env gets
every conformance check by being registered."""

from __future__ import annotations

import pytest
from env_support import SENSED_VARIANTS
from gymnasium.envs.registration import register, registry

import sipenv

RECIPE_ID = "sip-test/Recipe-v0"
if RECIPE_ID not in registry:
    register(id=RECIPE_ID, entry_point="recipe_env:RecipeEnv", disable_env_checker=True,
             vector_entry_point="recipe_env:RecipeVectorEnv")


for _variant, (_base, _options) in SENSED_VARIANTS.items():
    if _variant not in registry:  # the base env's classes, with the options as spec kwargs
        _spec = registry[_base]
        register(id=_variant, entry_point=_spec.entry_point, disable_env_checker=True,
                 vector_entry_point=_spec.vector_entry_point, kwargs=dict(_options))


@pytest.fixture(params=[*sipenv.ENV_IDS, RECIPE_ID, *(
    # One variant in the default run (the options go through the shared shells and core); the
    # others, the same code on the other cores, under -m slow.
    variant if i == 0 else pytest.param(variant, marks=pytest.mark.slow)
    for i, variant in enumerate(SENSED_VARIANTS))])
def env_id(request: pytest.FixtureRequest) -> str:
    """Each registered env id in turn."""
    return str(request.param)

"""Fixtures of the env tests: ``env_id`` runs a test once per registered id
(:data:`sipenv.ENV_IDS`, plus the test-only ``sip-test/Recipe-v0`` of ``recipe_env.py``), so a
new env gets every conformance check by being registered."""

from __future__ import annotations

import pytest
from gymnasium.envs.registration import register, registry

import sipenv

RECIPE_ID = "sip-test/Recipe-v0"
if RECIPE_ID not in registry:
    register(id=RECIPE_ID, entry_point="recipe_env:RecipeEnv", disable_env_checker=True,
             vector_entry_point="recipe_env:RecipeVectorEnv")


@pytest.fixture(params=[*sipenv.ENV_IDS, RECIPE_ID])
def env_id(request: pytest.FixtureRequest) -> str:
    """Each registered env id in turn."""
    return str(request.param)

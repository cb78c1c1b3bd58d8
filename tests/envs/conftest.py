"""Fixtures of the env tests: ``env_id`` runs a test once per registered id
(:data:`sipenv.ENV_IDS`), so a new env gets every conformance check by being registered."""

from __future__ import annotations

import pytest

import sipenv


@pytest.fixture(params=sipenv.ENV_IDS)
def env_id(request: pytest.FixtureRequest) -> str:
    """Each registered env id in turn."""
    return str(request.param)

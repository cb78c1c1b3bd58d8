"""The runnable examples in the env docstrings (Gymnasium's template asks every env for one) run
and print what they say, for every registered env module and the shells."""

from __future__ import annotations

import doctest
import importlib

import pytest

import sipenv
from sipenv.envs import _ENTRY_POINTS

MODULES = sorted({f"sipenv.envs.{module}" for module, _ in _ENTRY_POINTS.values()}
                 | {"sipenv.envs.control", "sipenv.envs.one_step", "sipenv.envs.core",
                    "sipenv.wrappers"})


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_every_env_module_has_an_example() -> None:
    for env_id in sipenv.ENV_IDS:
        module, prefix = _ENTRY_POINTS[env_id]
        cls = getattr(importlib.import_module(f"sipenv.envs.{module}"), f"{prefix}Env")
        assert ">>> " in (cls.__doc__ or ""), f"{env_id}: {prefix}Env has no example"

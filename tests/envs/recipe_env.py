"""A new control env as the env layer means it to be written: a physics dataclass, its own
defaults in one line, a documented class, a vector class, one registration line
(``tests/envs/conftest.py``). Registered as ``sip-test/Recipe-v0`` for the tests only, where the
conformance suite runs on it like on every ``sipenv.ENV_IDS`` id."""

from __future__ import annotations

from sipenv.envs.control import ControlEnv, ControlVectorEnv, control_factory
from sipenv.physics.diffusion import DiffusionPhysics

ENV_ID = "sip-test/Recipe-v0"

make_core = control_factory(ENV_ID, DiffusionPhysics, n=16, max_mode=3, horizon=2,
                            force_scale=50.0, force_penalty=0.0)


class RecipeEnv(ControlEnv):
    """
    ## Description

    Reach a target field of the forced 1-D heat equation in two steps (a test fixture).

    ## Action Space

    ``Box(-1, 1, (N,), float32)``, force ``force_scale · clip(a, −1, 1)``.

    ## Observation Space

    ``Box(-inf, inf, (2N + 1,), float32)``.

    ## Rewards

    Minus the relative squared terminal error.

    ## Starting State

    Random smooth fields; see ``reset_options_space``.

    ## Episode End

    After ``horizon`` steps.

    ## Arguments

    - ``n=16``, ``max_mode=3``, ``horizon=2``, ``force_scale=50.0``, ``force_penalty=0.0``;
      ``nu=0.01`` and the rest: :class:`~sipenv.physics.DiffusionPhysics`'s.

    ## Version History

    - v0: the recipe.

    ## Example

    >>> import gymnasium as gym
    """

    make_core = make_core


class RecipeVectorEnv(ControlVectorEnv):
    """Native batched ``sip-test/Recipe-v0``."""

    make_core = make_core

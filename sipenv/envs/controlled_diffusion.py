"""``sip/ControlledDiffusion-v0``: drive a diffusing 1-D field onto a target with forces."""

from __future__ import annotations

from sipenv.envs.control import ControlEnv, ControlVectorEnv, control_factory
from sipenv.physics.diffusion import DiffusionPhysics

__all__ = ["ControlledDiffusionEnv", "ControlledDiffusionVectorEnv", "make_core"]

ENV_ID = "sip/ControlledDiffusion-v0"


make_core = control_factory(ENV_ID, DiffusionPhysics, horizon=16, force_scale=100.0,
                            force_penalty=1e-3)
"""Builds the core of ``sip/ControlledDiffusion-v0`` from its keywords (see the env's
Arguments); the physics defaults are ``DiffusionPhysics``'s."""


class ControlledDiffusionEnv(ControlEnv):
    """
    ## Description

    A 1-D periodic field ``s(x, t)`` on ``[0, L)`` obeys the forced heat equation
    ``∂s/∂t = ν ∂²s/∂x² + f(x, t)``, integrated exactly in Fourier space
    (``sipenv.physics.DiffusionPhysics``). Each step the agent chooses a force field ``f``
    (constant over the step). The goal is to reach a target field ``s*`` at the final step with
    little force. High Fourier modes decay fast, so reaching a target with fine detail needs
    large, well-timed forces: the problem is badly scaled for gradient descent, which is what
    SIP training addresses.

    ## Action Space

    ``Box(-1, 1, (N,), float32)``: the normalised force per cell. The physical force is
    ``f = force_scale · clip(a, −1, 1)``; out-of-range actions are **clipped** (documented
    behaviour, not an error). NaN/inf or wrongly shaped actions raise ``ValueError`` and leave
    the state unchanged. The default ``force_scale = 100`` is chosen so that the exact
    minimum-force solution of a random default task fits in the box (peak ≈ 0.34 for the median
    task, ≈ 0.65 at the 99.9th percentile; ``tests/envs/test_controlled_diffusion.py`` checks it).

    ## Observation Space

    ``Box(-inf, inf, (2N + 1,), float32)``: ``[s_t (N), s* (N), t / horizon (1)]``.

    ## Rewards

    Every step: ``−force_penalty · mean(a²)``. At the last step additionally
    ``−‖s_T − s*‖² / ‖s*‖²`` (relative squared terminal error). ``info`` holds
    ``target_error`` (the relative error of the current state) and ``force_cost`` (``mean(a²)``).

    ## Starting State

    ``s_0`` and ``s*`` are independent random smooth zero-mean fields: Fourier modes
    ``1 … max_mode`` with Gaussian coefficients of standard deviation ``amplitude / m``.
    ``reset(options={"initial_state": ..., "target": ...})`` poses a specific task (arrays of shape
    ``(N,)``; either may be given alone).
    ``env.unwrapped.reset_options_space`` (a ``gymnasium.spaces.Dict``) describes the options.

    ## Episode End

    The episode terminates after ``horizon`` steps (``terminated=True``; the time is part of the
    observation). Stepping again without ``reset()`` raises ``RuntimeError``.

    ## Arguments

    - ``n=64``: grid cells; ``length=1.0``: domain length; ``nu=0.01``: diffusivity;
      ``dt=0.01``: step; ``horizon=16``: steps per episode.
    - ``force_scale=100.0``: force per unit action; ``force_penalty=1e-3``: force-cost weight.
    - ``max_mode=8``, ``amplitude=1.0``: the task sampler.
    - ``max_gain=1e4``: largest per-mode gain of the inverse simulator.
    - Keywords are routed by name to ``DiffusionPhysics`` and
      ``ControlCore`` (the lists above are all of their fields); an
      unknown keyword raises ``TypeError`` naming the accepted ones.
    - ``device="cpu"``, ``dtype="float32"``: where and in which precision the physics runs.
    - ``render_mode``: ``"human"`` (pygame window) or ``"rgb_array"`` (``(440, 640, 3)`` frames).

    Agents reach the differentiable batched core with
    ``sipenv.envs.core.core_of`` (``core_of(env)``, typed; it is ``env.unwrapped.core``)
    (``sipenv.envs.core.ControlCore``: physics, sampler, horizon, costs).

    ## Example

    Pose a task (from rest to one sine wave), then step it:

    >>> import gymnasium as gym
    >>> import numpy as np
    >>> import sipenv
    >>> env = gym.make("sip/ControlledDiffusion-v0", nu=0.02)
    >>> wave = np.sin(2 * np.pi * np.arange(64) / 64)
    >>> obs, info = env.reset(seed=0, options={"initial_state": np.zeros(64), "target": wave})
    >>> obs.shape, info["target_error"]
    ((129,), 1.0)
    >>> obs, reward, terminated, truncated, info = env.step(0.1 * wave)

    ## Version History

    - v0: initial release.
    """

    make_core = make_core


class ControlledDiffusionVectorEnv(ControlVectorEnv):
    """Native batched ``sip/ControlledDiffusion-v0`` (same arguments as the single env).

    Made by ``gym.make_vec(id, num_envs=..., vectorization_mode="vector_entry_point")``.
    """

    make_core = make_core

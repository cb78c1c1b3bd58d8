"""``sip/ControlledBurgers-v0``: steer a 1-D Burgers flow onto a target state with forces."""

from __future__ import annotations

from typing import Any

from sipenv.envs.control import ControlEnv, ControlVectorEnv, control_factory
from sipenv.physics.burgers import BurgersPhysics, BurgersTaskSampler, forced_speed_bound

__all__ = ["ControlledBurgersEnv", "ControlledBurgersVectorEnv", "make_core"]

ENV_ID = "sip/ControlledBurgers-v0"


def _stable_substeps(kw: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """``max_speed`` for the sub-steps, from the horizon, ``dt`` and the forces
    (``forced_speed_bound``), unless ``substeps`` or ``max_speed`` is given."""
    phys = kw["physics"]
    if "substeps" in phys or "max_speed" in phys:
        return {}
    fields = BurgersPhysics.__dataclass_fields__
    bound = forced_speed_bound(
        kw["core"].get("horizon"), phys.get("dt", fields["dt"].default),
        kw["core"].get("force_scale"),
        force_amplitude=kw["sampler"].get(
            "force_amplitude", BurgersTaskSampler.__dataclass_fields__["force_amplitude"].default))
    return {} if bound is None else {"max_speed": bound}


make_core = control_factory(ENV_ID, BurgersPhysics, sampler=BurgersTaskSampler, horizon=32,
                            force_scale=2.0, force_penalty=1e-3,
                            physics_defaults=_stable_substeps)
"""Builds the core of ``sip/ControlledBurgers-v0`` from its keywords (see the env's Arguments);
the physics defaults are ``BurgersPhysics``'s, ``force_amplitude``'s is
``BurgersTaskSampler``'s."""


class ControlledBurgersEnv(ControlEnv):
    """
    ## Description

    A 1-D periodic velocity field ``u(x, t)`` on ``[0, L)`` obeys the forced viscous Burgers
    equation ``∂u/∂t + u ∂u/∂x = ν ∂²u/∂x² + f(x, t)``, integrated by conservative upwind
    advection and exact spectral diffusion in sub-steps (``sipenv.physics.BurgersPhysics``).
    Each step the agent chooses a force field ``f``, added as ``u ← P₀(u) + dt · f``. Two
    Gaussian bumps of opposite sign collide and form a shock; the goal is to reach a target
    field ``u*`` at the final step with little force. This is the Burgers control benchmark of
    Holl, Thuerey & Koltun (ICLR 2020) as used for SIP training: 128 cells, ``ν = 0.003``,
    32 steps of ``dt = 0.03``.

    ## Action Space

    ``Box(-1, 1, (N,), float32)``: the normalised force per cell. The physical force is
    ``f = force_scale · clip(a, −1, 1)``; out-of-range actions are **clipped** (documented
    behaviour, not an error). NaN/inf or wrongly shaped actions raise ``ValueError`` and leave
    the state unchanged. The default ``force_scale = 2`` makes every task solvable inside the
    box: the constant force that generated the target peaks at ≤ 1.74 (``|a| ≤ 0.87``), and the
    converged least-``Σ‖F_t‖²`` solutions (Gauss–Newton, ``sipenv.physics.generic_inverse``)
    peak at ``|a| ≈ 0.48`` for the median task and 0.89 at the 99th percentile (the largest of
    384 measured tasks: 1.006, where the generating force stays inside); they cost 0.94–1.0×
    the ``Σ‖F_t‖²`` of the generating force (``docs/results/burgers/reference_solutions.json``).
    ``tests/envs/test_burgers_envs.py`` checks the first claim, and the second on a sample
    (marked slow). It also keeps the flow
    stable: ``max|u| ≤ 3 + 32 · 0.03 · 2 ≈ 4.9`` stays below the CFL limit ``≈ 5.2`` of 20
    sub-steps, whatever the actions.

    ## Observation Space

    ``Box(-inf, inf, (2N + 1,), float32)``: ``[u_t (N), u* (N), t / horizon (1)]``.

    ## Rewards

    Every step: ``−force_penalty · mean(a²)``. At the last step additionally
    ``−‖u_T − u*‖² / ‖u*‖²`` (relative squared terminal error). ``info`` holds
    ``target_error`` (the relative error of the current state) and ``force_cost`` (``mean(a²)``).

    ## Starting State

    ``u_0``: two periodic Gaussian bumps, left amplitude ``U[0, 3]`` at ``U[0.2, 0.4]``, right
    amplitude ``U[−3, 0]`` at ``U[0.6, 0.8]``, widths ``U[0.05, 0.15]``. ``u*``: the state reached
    from ``u_0`` after ``horizon`` steps under a random constant Gaussian force (amplitude
    ``U[−1, 1] · force_amplitude``, centre ``U[0.4, 0.6]``, width ``U[0.1, 0.4]``), simulated in
    float64 with the env's own physics. ``reset(options={"initial_state": ..., "target": ...})``
    poses a specific task (arrays of shape ``(N,)``; either may be given alone).
    ``env.unwrapped.reset_options_space`` (a ``gymnasium.spaces.Dict``) describes the options.

    ## Episode End

    The episode terminates after ``horizon`` steps (``terminated=True``; the time is part of the
    observation). Stepping again without ``reset()`` raises ``RuntimeError``.

    ## Arguments

    - ``n=128``: grid cells; ``length=1.0``: domain length; ``nu=0.003``: viscosity;
      ``dt=0.03``: step; ``horizon=32``: steps per episode.
    - ``substeps``: advection/diffusion sub-steps per step. By default chosen when the env is
      made (deterministic, no per-step cost): at least 20, and as many as the upwind scheme's
      CFL limit ``max|u| ≤ n · substeps / (length · dt)`` needs to cover the velocity bound
      ``max_speed = max(5, 3 + horizon · dt · force_scale)`` (initial bumps ≤ 3 plus the most
      any action can add): 20 at the defaults, 154 at 1024 cells. So changing ``n``, ``dt``,
      ``length``, ``horizon`` or ``force_scale`` keeps the env stable. ``substeps=`` (explicit) or
      ``max_speed=`` override it; a state beyond the limit at run time gives a
      ``RuntimeWarning`` naming the cure.
    - ``advection="upwind"``: the scheme. ``"semi_lagrangian"`` is PhiFlow's: one
      unconditionally stable step per ``dt`` by default and many times faster, but not
      conservative (shocks stall, mass is lost at fronts) and with a weaker local inverse on
      shocks; targets are then simulated with it too, so it is a different task.
    - ``diffuse_every_substep=True``, ``save_substeps=True``: the upwind scheme's speed options
      (``sipenv.physics.BurgersPhysics``; ``docs/performance.md`` measures them).
    - ``force_scale=2.0``: force per unit action; ``force_penalty=1e-3``: force-cost weight.
    - ``force_amplitude=1.6``: peak of the force that generates targets (``0.05 · 32``).
    - ``max_gain=100``, ``inverse_iterations=10``: the physics' local inverse simulator.
    - ``check_cfl=True``: the CFL check (one host sync per step).
    - Keywords are routed by name: every field of ``BurgersPhysics`` (also
      ``analytic_derivatives``), of ``ControlCore`` and of
      ``BurgersTaskSampler`` (also ``chunk``); an unknown keyword
      raises ``TypeError`` naming the accepted ones.
    - ``device="cpu"``, ``dtype="float32"``: where and in which precision the physics runs.
    - ``render_mode``: ``"human"`` (pygame window) or ``"rgb_array"`` (``(440, 640, 3)`` frames).

    Agents reach the differentiable batched core with
    ``sipenv.envs.core.core_of`` (``core_of(env)``, typed; it is ``env.unwrapped.core``)
    (``sipenv.envs.core.ControlCore``: physics, task sampler, horizon, costs).

    ## Example

    PhiFlow's semi-Lagrangian scheme instead of the conservative default:

    >>> import gymnasium as gym
    >>> import sipenv
    >>> from sipenv.envs import core_of
    >>> env = gym.make("sip/ControlledBurgers-v0", advection="semi_lagrangian")
    >>> core_of(env).physics.n_substeps  # one unconditionally stable step per dt
    1
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape
    (257,)

    ## Version History

    - v0: initial release.
    """

    make_core = make_core


class ControlledBurgersVectorEnv(ControlVectorEnv):
    """Native batched ``sip/ControlledBurgers-v0`` (same arguments as the single env).

    Made by ``gym.make_vec(id, num_envs=..., vectorization_mode="vector_entry_point")``.
    """

    make_core = make_core

"""``sip/CorrectedBurgers-v0``: correct a coarse Burgers solver to follow a fine reference."""

from __future__ import annotations

from typing import Any

from sipenv.envs.correction import CorrectionCore, CorrectionEnv, CorrectionVectorEnv
from sipenv.envs.settings import Factory, Route
from sipenv.physics.burgers import BurgersPhysics, forced_speed_bound

__all__ = ["CorrectedBurgersEnv", "CorrectedBurgersVectorEnv", "make_core"]

ENV_ID = "sip/CorrectedBurgers-v0"


_SHARED = ("length", "nu", "check_cfl")
"""Settings of the coarse model that the fine reference shares (one domain, one fluid)."""


def _build(kw: dict[str, dict[str, Any]]) -> CorrectionCore:
    coarse_kw = kw["coarse"]
    if "substeps" not in coarse_kw and "max_speed" not in coarse_kw:
        # Corrections are the coarse model's forces: |u| ≤ 3 + horizon · dt · force_scale.
        bound = forced_speed_bound(kw["core"].get("horizon"), coarse_kw.get("dt"),
                                   kw["core"].get("force_scale"))
        coarse_kw = coarse_kw if bound is None else {**coarse_kw, "max_speed": bound}
    coarse = BurgersPhysics(**coarse_kw)
    fine = BurgersPhysics(**{k: v for k, v in kw["coarse"].items() if k in _SHARED}, **kw["fine"])
    return CorrectionCore(physics=coarse, reference=fine,
                          initial_sampler=fine.sample_initial_states, **kw["core"])


make_core: Factory[CorrectionCore] = Factory(
    ENV_ID,
    {"coarse": Route(BurgersPhysics),
     "fine": Route(BurgersPhysics, prefix="fine_", exclude=_SHARED),
     "core": Route(CorrectionCore, exclude=("physics", "reference", "initial_sampler"))},
    _build,
    # The coarse solver (its 21 sub-steps follow from forced_speed_bound: 3 + 16·0.06·8 =
    # 10.68); the fine one keeps BurgersPhysics' defaults (128 cells, dt = 0.03, 20 sub-steps).
    n=32, dt=0.06,
    horizon=16, force_scale=8.0, force_penalty=0.0)
"""Builds the core of ``sip/CorrectedBurgers-v0`` from its keywords (see the env's Arguments):
unprefixed physics keywords go to the coarse model (``length``, ``nu``, ``check_cfl`` to both),
``fine_*`` ones to the fine reference."""


class CorrectedBurgersEnv(CorrectionEnv):
    """
    ## Description

    A coarse solver of the viscous Burgers equation ``∂u/∂t + u ∂u/∂x = ν ∂²u/∂x²`` (32 cells,
    steps of ``dt = 0.06``; ``sipenv.physics.BurgersPhysics``) smears shocks: its
    first-order numerical viscosity (≈ ``|u| Δx / 2 · (1 − CFL) ≈ 0.03`` at ``|u| = 3``) dwarfs
    ``ν = 0.003``. The agent
    corrects the coarse state every step so that it follows the *reference*: the solution of a
    fine solver (128 cells, ``dt = 0.03``) from the same initial state, down-sampled to the
    coarse grid by finite-volume averaging (``sipenv.envs.correction.block_average``). The
    correction ``c`` enters as the coarse model's additive force, ``u ← P₀(u) + dt · c``. This is
    the "solver in the loop" correction task; the exact per-step correction is
    ``physics.force_for(u_t, r_{t+1})``. Without corrections the coarse solution drifts to a
    final relative squared error of ≈ 0.014 (median; Σ over the 16 steps ≈ 0.18).

    ## Action Space

    ``Box(-1, 1, (N,), float32)``: the normalised correction per coarse cell,
    ``c = force_scale · clip(a, −1, 1)``; out-of-range actions are clipped, NaN/inf or wrongly
    shaped ones raise ``ValueError`` (the state is unchanged). ``force_scale = 8`` covers the
    exact corrections (rms ≈ 0.6) except at the steepest shocks: their peak is ≈ 4.9 for the
    median task, 8.0 at the 90th and 9.8 at the 99th percentile (the excess is clipped).

    ## Observation Space

    ``Box(-inf, inf, (N + 1,), float32)``: ``[u_t (N), t / horizon (1)]``. The reference is not
    observed: a corrector must infer the correction from the coarse state alone.

    ## Rewards

    Every step: ``−‖u_t − r_t‖² / ‖r_t‖² − force_penalty · mean(a²)`` (the relative squared
    deviation from the reference after the step). ``info`` holds ``target_error`` (that
    deviation) and ``force_cost`` (``mean(a²)``).

    ## Starting State

    A fine initial state with two Gaussian bumps (left amplitude ``U[0, 3]`` at
    ``U[0.2, 0.4]``, right amplitude ``U[−3, 0]`` at ``U[0.6, 0.8]``, widths ``U[0.05, 0.15]``,
    as in ``sip/ControlledBurgers-v0``); the coarse state starts at its down-sampled value.
    ``reset(options={"initial_state": ...})`` poses a specific fine initial state (shape
    ``(fine_n,)``).
    ``env.unwrapped.reset_options_space`` (a ``gymnasium.spaces.Dict``) describes the options.

    ## Episode End

    The episode terminates after ``horizon`` steps; stepping again without ``reset()`` raises
    ``RuntimeError``.

    ## Arguments

    - ``n=32``, ``dt=0.06``: the coarse solver. Its ``substeps`` (default 21) are chosen from
      the settings: at least 20, enough for ``max_speed = 3 + horizon · dt · force_scale``
      (10.68 at the defaults), the largest ``|u|`` any action in the box can reach, so changing
      ``n``, ``dt``, ``horizon`` or ``force_scale`` keeps it stable; ``substeps=`` or
      ``max_speed=`` override it (a flow beyond the bound gives a CFL ``RuntimeWarning``).
    - ``fine_n=128``, ``fine_dt=0.03``: the reference solver (``fine_n`` a multiple of ``n``,
      ``fine_dt`` dividing ``dt``; its sub-steps, 20 at the defaults, are chosen for
      ``fine_max_speed=5.0``).
    - ``length=1.0``, ``nu=0.003``, ``horizon=16`` (coarse steps).
    - ``force_scale=8.0``, ``force_penalty=0.0``: correction per unit action and its cost weight.
    - Keywords are routed by name: unprefixed fields of ``BurgersPhysics``
      configure the coarse solver (``length``, ``nu``, ``check_cfl`` also the fine one), the same
      fields prefixed ``fine_`` (e.g. ``fine_advection``) the fine one; an unknown keyword
      raises ``TypeError`` naming the accepted ones.
    - ``check_cfl=True``; ``device="cpu"``, ``dtype="float32"``; ``render_mode`` ``"human"`` or
      ``"rgb_array"`` (the state against the current reference state).

    Agents reach the differentiable batched core with ``sipenv.envs.core.core_of``
    (``core_of(env)``, typed; it is ``env.unwrapped.core``)
    (``sipenv.envs.correction.CorrectionCore``); its "target" is the whole reference
    trajectory ``(B, horizon + 1, N)``.

    ## Example

    The episode starts on the reference; the uncorrected coarse solver (zero actions) leaves it:

    >>> import gymnasium as gym
    >>> import numpy as np
    >>> import sipenv
    >>> env = gym.make("sip/CorrectedBurgers-v0", horizon=8)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape, info["target_error"]
    ((33,), 0.0)
    >>> errors = [env.step(np.zeros(32))[4]["target_error"] for _ in range(8)]
    >>> min(errors) > 0.005
    True

    ## Version History

    - v0: initial release.
    """

    make_core = make_core


class CorrectedBurgersVectorEnv(CorrectionVectorEnv):
    """Native batched ``sip/CorrectedBurgers-v0`` (same arguments as the single env).

    Made by ``gym.make_vec(id, num_envs=..., vectorization_mode="vector_entry_point")``.
    """

    make_core = make_core

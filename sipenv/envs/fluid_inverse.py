"""``sip/FluidInverse-v0``: the SIP paper's fluid inverse problem — infer the initial velocity
of a 2-D incompressible flow from a passive marker at the start and at the end."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from sipenv.envs.checks import as_field, checked_options, seed_generator
from sipenv.envs.checks import validate_action as _check_action
from sipenv.envs.one_step import OneStepEnv, OneStepTask, OneStepVectorEnv, one_step_factory
from sipenv.physics.fluid_inverse import FluidInversePhysics
from sipenv.validation import check_choice

__all__ = ["FluidInverseEnv", "FluidInverseTask", "FluidInverseVectorEnv", "FluidSettings",
           "make_task"]

ENV_ID = "sip/FluidInverse-v0"
VELOCITY_LIMIT = 1e4
"""Largest ``|v|`` (length units per time unit) of an answer: ``10⁴`` is thousands of boxes per
episode, far beyond any sensible answer, and keeps the simulation's positions finite."""

INVERSES = ("drift-swirl", "gauss-newton")
"""The inverses SIP can use on this task (``inverse=``): the problem-specific one (drift and
swirl strength from a forward and a time-reversed run) and the generic Gauss–Newton one."""


@dataclass(frozen=True)
class FluidSettings:
    """The task's own setting (the physics' are ``FluidInversePhysics``'s).

    Args:
        inverse: The inverse simulator SIP trains with (one of :data:`INVERSES`); the env
            itself does not use it, training reads it from ``env.unwrapped.inverse``.
    """

    inverse: str = "drift-swirl"

    def __post_init__(self) -> None:
        check_choice("inverse", self.inverse, INVERSES)


make_task = one_step_factory(ENV_ID, FluidInversePhysics, FluidSettings)
"""Builds ``(physics, settings)`` of ``sip/FluidInverse-v0`` from its keywords."""


class FluidInverseTask(OneStepTask):
    """The hooks of ``sip/FluidInverse-v0``, batched, shared by the single and vector envs."""

    make_task = make_task
    physics: FluidInversePhysics
    inverse: str
    shape: tuple[int, int]
    marker: torch.Tensor | None  # (B, H, W) the marker at t = 0
    target: torch.Tensor | None  # (B, H, W) the marker at t = T
    v_true: torch.Tensor | None  # (B, 2, H, W) the true initial velocity

    def _configure(self, model: tuple[FluidInversePhysics, FluidSettings]
                   ) -> tuple[spaces.Space[Any], spaces.Space[Any]]:
        self.physics, settings = model
        self.inverse = settings.inverse
        self.shape = self.physics.shape
        self.marker = self.target = self.v_true = None
        field = (2, *self.shape)
        return (spaces.Box(-VELOCITY_LIMIT, VELOCITY_LIMIT, shape=field, dtype=np.float32),
                spaces.Box(-np.inf, np.inf, shape=field, dtype=np.float32))

    def _options_space(self) -> spaces.Dict:
        return spaces.Dict({
            "marker": spaces.Box(-np.inf, np.inf, shape=self.shape, dtype=np.float64),
            "velocity": spaces.Box(-np.inf, np.inf, shape=(2, *self.shape), dtype=np.float64)})

    def _parse_options(self, options: Any) -> dict[str, torch.Tensor] | None:
        options = checked_options(options, ("marker", "velocity"),
                                  example="{'marker': m0, 'velocity': v0}",
                                  described="'marker' (t = 0) and 'velocity' (the true initial "
                                            "velocity)")
        shapes = {"marker": self.shape, "velocity": (2, *self.shape)}
        limit = (VELOCITY_LIMIT, "the largest velocity the env simulates")
        given = {name: as_field(options[name], name, (*self._batch_shape, *shapes[name]),
                                self.device, self.dtype,
                                limit=limit if name == "velocity" else None)
                 for name in options}
        return given or None

    def _pose(self, given: dict[str, torch.Tensor] | torch.Tensor | None) -> None:
        """``given``: parsed reset options, or a posed problem's ``[v*, m_0]``
        ``(B, 3, H, W)`` (the first element of ``_problem()``)."""
        # Always drawn, so that later resets continue the same stream.
        sample = self.physics.sample(self._batch_size, seed_generator(self.np_random,
                                                                      self.device),
                                     device=self.device, dtype=self.dtype)
        marker, velocity, target = sample.marker, sample.velocity, sample.target
        b = self._batch_size
        if isinstance(given, torch.Tensor):
            given = {"velocity": given[:, :2], "marker": given[:, 2]}
        if given:
            if "marker" in given:
                marker = given["marker"].reshape(b, *self.shape)
            if "velocity" in given:
                velocity = self.physics.flow.project(given["velocity"].reshape(b, 2, *self.shape))
            target = self.physics.simulate(velocity, marker)
        self.marker, self.v_true, self.target = marker, velocity, target

    def _problem(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """``([v*, m_0] (B, 3, H, W), m_T* (B, H, W))``, or ``None`` before the first reset."""
        if self.marker is None or self.target is None or self.v_true is None:
            return None
        return torch.cat((self.v_true, self.marker[:, None]), 1), self.target

    def _answer(self, action: Any) -> torch.Tensor:
        shape = (*self._batch_shape, 2, *self.shape)
        arr = _check_action(action, shape, what=" (the initial velocity)",
                            fix="Pass a finite velocity field.",
                            limit=(VELOCITY_LIMIT, "the largest velocity the env simulates"))
        return torch.as_tensor(arr, device=self.device, dtype=self.dtype).reshape(
            self._batch_size, 2, *self.shape)

    def _score(self, x: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        assert self.marker is not None and self.target is not None and self.v_true is not None
        with torch.no_grad():
            reached = self.physics.simulate(x, self.marker)
            loss = self.physics.marker_loss(reached, self.target)
            l1 = self.physics.velocity_l1(x, self.v_true)
        loss_np = loss.cpu().double().numpy()
        return 0.0 - loss_np, {"marker_loss": loss_np, "velocity_l1": l1.cpu().double().numpy()}

    def _obs(self) -> np.ndarray:
        assert self.marker is not None and self.target is not None
        return torch.stack((self.marker, self.target), 1).cpu().float().numpy()

    def _frames(self) -> tuple[np.ndarray, ...]:
        from sipenv.envs.rendering_2d import draw_flow_frame

        problem = self._shown_problem()
        assert problem is not None
        posed, target = problem
        marker = posed[:, 2]
        info = self._last_info
        out = []
        for i in range(self._batch_size):
            if self.x is None:
                shown, velocity = marker[i], torch.zeros(2, *self.shape)
            else:
                with torch.no_grad():
                    shown = self.physics.simulate(self.x[i:i + 1], marker[i:i + 1])[0]
                velocity = self.physics.flow.project(self.x[i:i + 1])[0]
            out.append(draw_flow_frame(
                _np(shown), _np(velocity), _np(target[i]), None,
                step=0 if self.x is None else self.physics.steps, horizon=self.physics.steps,
                force_limit=1.0, mask=None,
                target_error=float("nan") if info is None else float(info["velocity_l1"][i]),
                frequency_l1=float("nan") if info is None else float(info["marker_loss"][i]),
                title=ENV_ID))
        return tuple(out)


def _np(field: torch.Tensor) -> np.ndarray:
    return field.detach().cpu().to(torch.float64).numpy()


class FluidInverseEnv(FluidInverseTask, OneStepEnv):
    """
    ## Description

    The fluid experiment of the SIP paper (Holl, Koltun & Thuerey, "Scale-invariant Learning by
    Physics Inversion", NeurIPS 2022): a passive marker is carried by a periodic, inviscid,
    incompressible 2-D flow whose kinetic energy is kept constant; given the marker at
    ``t = 0`` and at ``t = T``, infer the initial velocity. Defaults as published: 64×64 cells
    on a 128×128 box, ``T = 2`` in 8 steps, MacCormack advection of velocity and marker
    (``sipenv.physics.fluid_inverse.FluidInversePhysics``, built on
    ``IncompressibleFlowPhysics`` with ``keep_energy=True``). An episode is a single step.

    ## Action Space

    ``Box(-1e4, 1e4, (2, H, W), float32)``: the initial velocity ``[v_y, v_x]`` (length units
    per time unit), made divergence-free (Leray projection) before it is simulated. Wrongly
    shaped or NaN/inf actions, or entries beyond ``1e4``, raise ``ValueError`` and leave the
    env unchanged.

    ## Observation Space

    ``Box(-inf, inf, (2, H, W), float32)``: ``[m_0, m_T*]``, the marker at ``t = 0`` and the
    observed marker at ``t = T``.

    ## Rewards

    ``−`` the published frequency-weighted marker loss
    ``Σ_k w_k |FFT(m_T − m_T*)_k| / (H W)``, ``w_k = exp(−½ |k|² 80²)`` (``k`` in cycles per
    length unit; weights below ``1e-5`` and the mean dropped), where ``m_T`` is the marker the
    answered velocity carries to ``t = T``. ``info``: ``marker_loss`` (so ``reward =
    −marker_loss``) and ``velocity_l1`` (the published metric: mean over cells of
    ``|v_y − v*_y| + |v_x − v*_x|``, the answer projected first). The true velocity scores 0.

    ## Starting State

    As published: the marker is smooth noise thresholded to a ``5 … 15 %`` fill of a 56×56
    box centred uniformly in ``[32, 96]²``; the true velocity is the drift that carries the
    marker's centre of mass to the box centre in time ``T``, plus a Gaussian swirl about the
    centre (``σ = 20``, strength ``U(−2, 2)``), plus ``0.1 ×`` smooth noise, projected.
    ``reset(options={"marker": m0, "velocity": v0})`` poses a specific problem (either may be
    left out; ``m_T*`` is simulated from them).

    ## Episode End

    Every episode ends after one step (``terminated=True``).

    ## Arguments

    - Physics (``FluidInversePhysics``): ``shape=(64, 64)``, ``length=(128.0, 128.0)``,
      ``steps=8``, ``duration=2.0``, ``advection="mac_cormack"``, ``swirl_sigma=20.0``,
      ``swirl_max=2.0``, ``noise=0.1``, ``noise_scale=10.0``, ``loss_length=80.0``,
      ``gn_iterations=8``.
    - ``inverse="drift-swirl"`` (or ``"gauss-newton"``): the inverse SIP trains with.
    - ``device="cpu"``, ``dtype="float64"``; ``render_mode``: ``"rgb_array"`` or ``"human"``
      (the marker the answer reaches, its velocity, the target).

    ## Example

    >>> import gymnasium as gym
    >>> import sipenv
    >>> env = gym.make("sip/FluidInverse-v0", shape=(32, 32))
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape
    (2, 32, 32)
    >>> v_true = env.unwrapped.v_true[0].numpy()
    >>> obs, reward, terminated, truncated, info = env.step(v_true)
    >>> terminated, round(info["velocity_l1"], 6), round(info["marker_loss"], 6)
    (True, 0.0, 0.0)

    ## Version History

    - v0: initial release.
    """


class FluidInverseVectorEnv(FluidInverseTask, OneStepVectorEnv):
    """Native batched ``sip/FluidInverse-v0`` (same arguments as the single env; SAME_STEP
    autoreset, see ``sipenv.envs.one_step.OneStepVectorEnv``).

    Made by ``gym.make_vec(id, num_envs=..., vectorization_mode="vector_entry_point")``.
    """

"""``sip/SineInversion-v0``: a one-step inverse problem — find ``x`` with ``P(x) = y*``."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from sipenv.envs.checks import checked_options
from sipenv.envs.one_step import OneStepEnv, OneStepTask, OneStepVectorEnv, one_step_factory
from sipenv.envs.rendering import _pygame
from sipenv.physics.sine import SinePhysics
from sipenv.validation import is_real

__all__ = ["SineInversionEnv", "SineInversionTask", "SineInversionVectorEnv", "SineSettings",
           "draw_sine_frame", "make_task"]

ENV_ID = "sip/SineInversion-v0"
FRAME_SHAPE = (440, 640, 3)


@dataclass(frozen=True)
class SineSettings:
    """The task's own setting (the physics' are ``SinePhysics``'s).

    Args:
        action_scale: Physical ``x`` per unit action; ``None``: the physics'
            ``solution_radius`` (the box then holds an exact solution of every target).
    """

    action_scale: float | None = None


make_task = one_step_factory(ENV_ID, SinePhysics, SineSettings)
"""Builds ``(physics, settings)`` of ``sip/SineInversion-v0`` from its keywords (see the env's
Arguments)."""



def _action_scale(physics: SinePhysics, action_scale: float | None) -> float:
    if action_scale is None:
        return physics.solution_radius
    if not (is_real(action_scale) and math.isfinite(action_scale) and action_scale > 0):
        raise ValueError(f"action_scale must be a finite number > 0 or None, got "
                         f"{action_scale!r}.")
    return float(action_scale)


def _as_array(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Validate a numeric array of ``shape`` with finite entries; returns float64. Torch
    tensors (on any device, with or without grad) are read as their values."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        with np.errstate(over="raise"):
            arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array of shape {shape}, got "
                         f"{type(value).__name__}.") from exc
    except (OverflowError, FloatingPointError) as exc:  # 10**400, a long double of 1e400
        raise ValueError(f"{name} has entries beyond ±{np.finfo(np.float64).max:.4g}, the "
                         "largest magnitude float64 can hold; scale it down (the env state is "
                         "unchanged).") from exc
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf; pass finite values (the env state is "
                         "unchanged).")
    return arr


def _parse_target(options: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    """Validate ``reset`` options (only ``"target"``, of ``shape``, in ``[-1, 1]``) before
    anything changes; the target, or ``None`` if none is given."""
    options = checked_options(options, ("target",), example="{'target': [0.5, -0.2]}",
                              described="'target'")
    if "target" not in options:
        return None
    target = _as_array(options["target"], "options['target']", shape)
    if np.abs(target).max() > 1.0:
        raise ValueError("options['target'] must lie in [-1, 1]² (the observation space).")
    return target


def _guess(action: Any, shape: tuple[int, ...], scale: float, device: torch.device,
           dtype: torch.dtype) -> torch.Tensor:
    """The physical guess ``x = scale · clip(action, −1, 1)`` of an ``action`` of ``shape``
    (validated: numeric, of ``shape``, finite)."""
    arr = np.clip(_as_array(action, "action", shape), -1.0, 1.0)
    return scale * torch.as_tensor(arr, dtype=dtype, device=device)


def _box() -> spaces.Box:
    """The action and the observation space: ``Box(-1, 1, (2,), float32)``."""
    return spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)


class SineInversionTask(OneStepTask):
    """The hooks of ``sip/SineInversion-v0``, batched (a target ``y*`` per episode, answered by a
    guess ``x``), shared by ``SineInversionEnv`` and ``SineInversionVectorEnv``."""

    make_task = make_task
    physics: SinePhysics
    action_scale: float
    target: torch.Tensor | None  # (B, 2); self.x (from OneStepTask): (B, 2) physical guesses

    def _configure(self, model: tuple[SinePhysics, SineSettings]
                   ) -> tuple[spaces.Space[Any], spaces.Space[Any]]:
        self.physics, settings = model
        self.action_scale = _action_scale(self.physics, settings.action_scale)
        self.target = None
        return _box(), _box()

    def _options_space(self) -> spaces.Dict:
        return spaces.Dict({"target": spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float64)})

    def _parse_options(self, options: Any) -> np.ndarray | None:
        """``{"target": y*}``, shape ``(*batch, 2)``, finite, in ``[-1, 1]²``."""
        return _parse_target(options, (*self._batch_shape, 2))

    def _pose(self, given: np.ndarray | None) -> None:
        # Drawn even when a target is given, so later resets continue the same stream.
        target = self.np_random.uniform(-1.0, 1.0, size=(*self._batch_shape, 2))
        self.target = torch.as_tensor(target if given is None else given, dtype=self.dtype,
                                      device=self.device).reshape(self._batch_size, 2)

    def _problem(self) -> torch.Tensor | None:
        return self.target

    def _answer(self, action: Any) -> torch.Tensor:
        x = _guess(action, (*self._batch_shape, 2), self.action_scale, self.device, self.dtype)
        return x.reshape(self._batch_size, 2)

    def _score(self, x: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        assert self.target is not None
        reward = -self.physics.loss(x, self.target).cpu().numpy().astype(np.float64)
        nearest = self.physics.nearest_solution(x, self.target)
        return reward, {"x_distance": (x - nearest).norm(dim=-1).cpu().numpy(),
                        "x": x.cpu().numpy().copy(),
                        "nearest_solution": nearest.cpu().numpy().copy()}

    def _obs(self) -> np.ndarray:
        assert self.target is not None
        return self.target.cpu().numpy().astype(np.float32)

    def _frames(self) -> tuple[np.ndarray, ...]:
        target = self._shown_problem()
        assert target is not None
        return tuple(draw_sine_frame(self.physics, self.action_scale, target[i].cpu().numpy(),
                                     None if self.x is None else self.x[i].cpu().numpy())
                     for i in range(self._batch_size))


class SineInversionEnv(SineInversionTask, OneStepEnv):
    """
    ## Description

    The synthetic inverse problem of the SIP paper (Holl, Koltun & Thuerey, NeurIPS 2022): given
    a target ``y* ∈ [-1, 1]²``, choose ``x ∈ ℝ²`` such that ``P(x) = y*`` for

    ``x̂ = R_φ x``,  ``P(x) = (sin(γ x̂₁ / ξ), γ ξ x̂₂)``,  ``γ = 10``

    (``sipenv.physics.SinePhysics``). ``ξ`` makes the problem ill-conditioned (the two
    directions' gradients differ by ``ξ²``), ``φ`` rotates the ill-conditioned axes away from the
    coordinate axes. An episode is a single step: a bandit-like one-shot inverse problem, meant
    for learning ``x = f_θ(y*)`` over many targets (``agents.inverse_training``).

    ## Action Space

    ``Box(-1, 1, (2,), float32)``: the normalised guess. The physical guess is
    ``x = action_scale · clip(a, −1, 1)``; out-of-range actions are **clipped** (documented
    behaviour, not an error); NaN/inf or wrongly shaped actions raise ``ValueError``. The default
    ``action_scale = π ξ/(2γ) + 1/(γ ξ)`` bounds both components of the principal
    (``arcsin``-branch) exact solution of every ``y* ∈ [-1, 1]²`` for every ``φ``, so the box
    always contains an exact solution: e.g. 0.257 at ``ξ = 1``, 5.03 at ``ξ = 32``, 10.05 at
    ``ξ = 64`` (``tests/envs/test_sine_inversion.py`` checks it over ``ξ ∈ [0.1, 64]``).

    ## Observation Space

    ``Box(-1, 1, (2,), float32)``: the target ``y*``.

    ## Rewards

    ``−½‖P(x) − y*‖²`` after the single step. ``info`` holds ``x_distance`` (the distance from
    ``x`` to the nearest exact solution, the paper's metric), ``x`` (the physical guess) and
    ``nearest_solution``.

    ## Starting State

    ``y* ~ U([-1, 1]²)``; ``reset(options={"target": y})`` poses a specific target (shape
    ``(2,)``, entries in ``[-1, 1]``).
    ``env.unwrapped.reset_options_space`` (a ``gymnasium.spaces.Dict``) describes the options.

    ## Episode End

    Every episode ends after one step (``terminated=True``). Stepping again without ``reset()``
    raises ``RuntimeError``.

    ## Arguments

    - ``xi=1.0``: conditioning ``ξ`` (> 0); the paper uses 1 … 64.
    - ``phi=0.0``: rotation ``φ`` in degrees; the paper uses 0 … 45.
    - ``gamma=10.0``: global scale ``γ``.
    - ``action_scale=None``: physical ``x`` per unit action (default above).
    - ``max_loss_change=0.2``: limit of the saddle-free Newton inverse of the physics.
    - Keywords are routed by name to ``SinePhysics`` and
      ``SineSettings`` (``action_scale``); an unknown keyword raises ``TypeError`` naming
      the accepted ones.
    - ``device="cpu"``, ``dtype="float64"``: where and in which precision the physics runs
      (observations are float32 numpy arrays).
    - ``render_mode``: ``"rgb_array"`` (``(440, 640, 3)`` frames: the loss landscape
      ``log₁₀ L`` over the action box, the exact solutions in it, the guess) or ``"human"``.

    Agents reach the differentiable batched physics through ``env.unwrapped.physics``.

    ## Example

    >>> import gymnasium as gym
    >>> import sipenv
    >>> env = gym.make("sip/SineInversion-v0", xi=32.0, phi=45.0)
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape
    (2,)
    >>> obs, reward, terminated, truncated, info = env.step(env.action_space.sample())
    >>> terminated
    True

    ## Version History

    - v0: initial release.
    """


class SineInversionVectorEnv(SineInversionTask, OneStepVectorEnv):
    """Native batched ``sip/SineInversion-v0`` (same arguments as the single env).

    Every step ends every episode, so autoreset is ``AutoresetMode.SAME_STEP``: ``step`` scores
    the actions against the current targets, draws new targets and returns them as the
    observation; the answered targets are in ``info["final_obs"]`` and the per-env step infos in
    ``info["final_info"]`` (with the ``_key`` masks Gymnasium's ``SyncVectorEnv`` uses).
    Rewards, ``terminated`` and ``final_info`` equal those of ``num_envs`` single envs given the
    same targets and actions.

    Made by ``gym.make_vec(id, num_envs=..., vectorization_mode="vector_entry_point")``.
    """


# --- rendering ---------------------------------------------------------------------------------

_PANEL = 440  # the square landscape panel, in pixels


def _landscape(physics: SinePhysics, scale: float, target: np.ndarray) -> np.ndarray:
    """``log₁₀ L`` over the action box as an ``(_PANEL, _PANEL, 3)`` uint8 image (row 0 = top,
    i.e. the largest ``x₂``); dark = low loss."""
    coords = (np.arange(_PANEL) + 0.5) / _PANEL * 2 - 1
    x1, x2 = np.meshgrid(coords * scale, -coords * scale)
    x = torch.as_tensor(np.stack([x1.ravel(), x2.ravel()], -1))
    loss = physics.loss(x, torch.as_tensor(target, dtype=torch.float64).expand(x.shape[0], 2))
    level = np.log10(loss.numpy() + 1e-6).reshape(_PANEL, _PANEL)
    lo, hi = float(level.min()), float(level.max())
    v = (level - lo) / max(hi - lo, 1e-12)
    # dark blue (low loss) → light yellow (high loss)
    low, high = np.array([20.0, 30.0, 90.0]), np.array([250.0, 245.0, 200.0])
    return (low + v[..., None] * (high - low)).astype(np.uint8)


def _solutions_in_box(physics: SinePhysics, scale: float, target: np.ndarray) -> np.ndarray:
    """All exact solutions inside the action box, ``(K, 2)``."""
    base = math.asin(float(np.clip(target[0], -1.0, 1.0)))
    reach = math.ceil(physics.a * scale * math.sqrt(2) / (2 * math.pi)) + 1
    ks = np.arange(-reach, reach + 1)
    u = np.concatenate([base + 2 * math.pi * ks, math.pi - base + 2 * math.pi * ks])
    x_hat = np.stack([u / physics.a, np.full_like(u, target[1] / physics.b)], -1)
    x = physics.unrotate(torch.as_tensor(x_hat)).numpy()
    return x[np.all(np.abs(x) <= scale, axis=-1)]


def draw_sine_frame(physics: SinePhysics, scale: float, target: np.ndarray,
                    x: np.ndarray | None) -> np.ndarray:
    """One ``(440, 640, 3) uint8`` frame: the loss landscape over the action box (dark = low),
    the exact solutions inside it (green), the guess ``x`` (red) and a text panel.

    Args:
        physics: The physics.
        scale: The env's ``action_scale`` (half-width of the box in ``x``).
        target: ``y*``, shape ``(2,)``.
        x: The physical guess, shape ``(2,)``, or ``None`` before the step.
    """
    pygame = _pygame()  # lazily, and only the font module: no display, no audio
    height, width, _ = FRAME_SHAPE
    surf = pygame.Surface((width, height))
    surf.fill((255, 255, 255))
    image = _landscape(physics, scale, np.asarray(target, dtype=np.float64))
    surf.blit(pygame.surfarray.make_surface(np.transpose(image, (1, 0, 2))), (0, 0))

    def to_px(point: np.ndarray) -> tuple[int, int]:
        return (round(float((point[0] / scale + 1) / 2 * _PANEL)),
                round(float((1 - point[1] / scale) / 2 * _PANEL)))

    for sol in _solutions_in_box(physics, scale, np.asarray(target, dtype=np.float64)):
        pygame.draw.circle(surf, (40, 200, 60), to_px(sol), 6, 2)
    font = pygame.font.Font(None, 22)
    lines = [ENV_ID, f"xi = {physics.xi:g}   phi = {physics.phi:g} deg",
             f"box: |x_i| <= {scale:.3g}", f"y* = ({target[0]:+.3f}, {target[1]:+.3f})", ""]
    if x is not None:
        pygame.draw.circle(surf, (220, 30, 30), to_px(np.clip(x, -scale, scale)), 6)
        y = physics.forward(torch.as_tensor(np.asarray(x, dtype=np.float64))[None])[0].numpy()
        dist = float(physics.solution_distance(
            torch.as_tensor(np.asarray(x, dtype=np.float64))[None],
            torch.as_tensor(np.asarray(target, dtype=np.float64))[None])[0])
        lines += [f"x = ({x[0]:+.4g}, {x[1]:+.4g})", f"P(x) = ({y[0]:+.3f}, {y[1]:+.3f})",
                  f"x distance = {dist:.3g}"]
    else:
        lines += ["(no guess yet)"]
    lines += ["", "dark: low loss  log10 L", "green: exact solutions", "red: guess x"]
    for i, line in enumerate(lines):
        surf.blit(font.render(line, True, (30, 30, 30)), (_PANEL + 12, 14 + 22 * i))
    frame = pygame.surfarray.array3d(surf)  # (W, H, 3)
    return np.ascontiguousarray(np.transpose(frame, (1, 0, 2)), dtype=np.uint8)

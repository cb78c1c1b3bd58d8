"""``sip/SineInversion-v0``: a one-step inverse problem — find ``x`` with ``P(x) = y*``."""

from __future__ import annotations

import math
from typing import Any, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from sipenv.envs.control import parse_device, parse_dtype
from sipenv.envs.rendering import FramePresenter
from sipenv.physics.sine import SinePhysics

__all__ = ["SineInversionEnv", "SineInversionVectorEnv", "draw_sine_frame", "make_physics"]

_TITLE = "sip/SineInversion-v0"
FRAME_SHAPE = (440, 640, 3)


def make_physics(*, xi: float = 1.0, phi: float = 0.0, gamma: float = 10.0,
                 max_loss_change: float = 0.2) -> SinePhysics:
    """The physics of ``sip/SineInversion-v0`` (see the env's Arguments)."""
    return SinePhysics(xi=xi, phi=phi, gamma=gamma, max_loss_change=max_loss_change)


def _action_scale(physics: SinePhysics, action_scale: float | None) -> float:
    if action_scale is None:
        return physics.solution_radius
    if not (isinstance(action_scale, (int, float)) and not isinstance(action_scale, bool)
            and math.isfinite(action_scale) and action_scale > 0):
        raise ValueError(f"action_scale must be a finite number > 0 or None, got "
                         f"{action_scale!r}.")
    return float(action_scale)


def _as_array(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Validate a numeric array of ``shape`` with finite entries; returns float64."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a numeric array of shape {shape}, got "
                         f"{type(value).__name__}.") from exc
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}.")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or inf; pass finite values (the env state is "
                         "unchanged).")
    return arr


def _check_target_range(target: np.ndarray) -> None:
    if np.abs(target).max() > 1.0:
        raise ValueError("options['target'] must lie in [-1, 1]² (the observation space).")


class SineInversionEnv(FramePresenter, gym.Env[np.ndarray, np.ndarray]):
    """
    ## Description

    The synthetic inverse problem of the SIP paper (Holl, Koltun & Thuerey, NeurIPS 2022): given
    a target ``y* ∈ [-1, 1]²``, choose ``x ∈ ℝ²`` such that ``P(x) = y*`` for

    ``x̂ = R_φ x``,  ``P(x) = (sin(γ x̂₁ / ξ), γ ξ x̂₂)``,  ``γ = 10``

    (:class:`sipenv.physics.SinePhysics`). ``ξ`` makes the problem ill-conditioned (the two
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

    ## Episode End

    Every episode ends after one step (``terminated=True``). Stepping again without ``reset()``
    raises ``RuntimeError``.

    ## Arguments

    - ``xi=1.0``: conditioning ``ξ`` (> 0); the paper uses 1 … 64.
    - ``phi=0.0``: rotation ``φ`` in degrees; the paper uses 0 … 45.
    - ``gamma=10.0``: global scale ``γ``.
    - ``action_scale=None``: physical ``x`` per unit action (default above).
    - ``max_loss_change=0.2``: limit of the saddle-free Newton inverse of the physics.
    - ``device="cpu"``, ``dtype="float64"``: where and in which precision the physics runs
      (observations are float32 numpy arrays).
    - ``render_mode``: ``"rgb_array"`` (``(440, 640, 3)`` frames: the loss landscape
      ``log₁₀ L`` over the action box, the exact solutions in it, the guess) or ``"human"``.

    Agents reach the differentiable batched physics through ``env.unwrapped.physics``.

    ## Version History

    - v0: initial release.

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
    """

    metadata: dict[str, Any] = {"render_modes": ["human", "rgb_array"], "render_fps": 4}

    def __init__(self, render_mode: str | None = None, *, xi: float = 1.0, phi: float = 0.0,
                 gamma: float = 10.0, action_scale: float | None = None,
                 max_loss_change: float = 0.2, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype = "float64") -> None:
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or "
                             f"None, got {render_mode!r}.")
        self.physics = make_physics(xi=xi, phi=phi, gamma=gamma,
                                    max_loss_change=max_loss_change)
        self.action_scale = _action_scale(self.physics, action_scale)
        self.device = parse_device(device)
        self.dtype = parse_dtype(dtype)
        self.render_mode = render_mode
        self.action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.target: torch.Tensor | None = None  # (1, 2)
        self.x: torch.Tensor | None = None  # (1, 2) physical guess of the last step
        self.done = False
        self._window: Any = None

    # --- Gymnasium API --------------------------------------------------------------------------

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw a target ``y* ~ U([-1, 1]²)`` (or take ``options["target"]``).

        Raises:
            ValueError: For unknown options or a target of the wrong shape, non-finite or outside
                ``[-1, 1]²``.
        """
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"target"}
        if unknown:
            raise ValueError(f"Unknown reset options {sorted(unknown)}; accepted: 'target'.")
        target = self.np_random.uniform(-1.0, 1.0, size=2)
        if "target" in options:
            target = _as_array(options["target"], "options['target']", (2,))
            _check_target_range(target)
        self.target = torch.as_tensor(target, dtype=self.dtype, device=self.device)[None]
        self.x, self.done = None, False
        if self.render_mode == "human":
            self.render()
        return self._obs(), {}

    def step(self, action: Any) -> tuple[np.ndarray, SupportsFloat, bool, bool, dict[str, Any]]:
        """Answer the target with the normalised guess ``action`` (shape ``(2,)``, clipped).

        Raises:
            RuntimeError: Before :meth:`reset` or after the (one-step) episode has ended.
            ValueError: For a wrong shape or NaN/inf entries (the env is left unchanged).
        """
        if self.target is None:
            raise RuntimeError("Call reset() before step().")
        if self.done:
            raise RuntimeError("The episode ended after its single step; call reset() to pose a "
                               "new target.")
        arr = np.clip(_as_array(action, "action", (2,)), -1.0, 1.0)
        x = self.action_scale * torch.as_tensor(arr, dtype=self.dtype, device=self.device)[None]
        reward = -float(self.physics.loss(x, self.target)[0])
        nearest = self.physics.nearest_solution(x, self.target)
        info = {"x_distance": float((x - nearest).norm()),
                "x": x[0].cpu().numpy().copy(), "nearest_solution": nearest[0].cpu().numpy().copy()}
        self.x, self.done = x, True
        if self.render_mode == "human":
            self.render()
        return self._obs(), reward, True, False, info

    def render(self) -> np.ndarray | None:
        """``"rgb_array"``: return an ``(440, 640, 3) uint8`` frame; ``"human"``: show it."""
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; pass "
                            "render_mode='rgb_array' or 'human' to gym.make.")
            return None
        if self.target is None:
            raise RuntimeError("Call reset() before render().")
        frame = draw_sine_frame(self.physics, self.action_scale, self.target[0].cpu().numpy(),
                                None if self.x is None else self.x[0].cpu().numpy())
        return self._present(frame, _TITLE)

    def _obs(self) -> np.ndarray:
        assert self.target is not None
        return self.target[0].cpu().numpy().astype(np.float32)


class SineInversionVectorEnv(VectorEnv[np.ndarray, np.ndarray, np.ndarray]):
    """Native batched ``sip/SineInversion-v0`` (same arguments as the single env).

    Every step ends every episode, so autoreset is ``AutoresetMode.SAME_STEP``: ``step`` scores
    the actions against the current targets, draws new targets and returns them as the
    observation; the answered targets are in ``info["final_obs"]`` and the per-env step infos in
    ``info["final_info"]`` (with the ``_key`` masks Gymnasium's ``SyncVectorEnv`` uses).
    Rewards, ``terminated`` and ``final_info`` equal those of ``num_envs`` single envs given the
    same targets and actions.

    >>> import gymnasium as gym
    >>> import sipenv
    >>> envs = gym.make_vec("sip/SineInversion-v0", num_envs=8,
    ...                     vectorization_mode="vector_entry_point")
    >>> obs, info = envs.reset(seed=0)
    >>> obs.shape
    (8, 2)
    """

    metadata: dict[str, Any] = {"render_modes": ["rgb_array"], "render_fps": 4,
                                "autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, num_envs: int = 1, render_mode: str | None = None, *, xi: float = 1.0,
                 phi: float = 0.0, gamma: float = 10.0, action_scale: float | None = None,
                 max_loss_change: float = 0.2, device: str | torch.device = "cpu",
                 dtype: str | torch.dtype = "float64") -> None:
        if not isinstance(num_envs, int) or isinstance(num_envs, bool) or num_envs < 1:
            raise ValueError(f"num_envs must be an int ≥ 1, got {num_envs!r}.")
        if render_mode is not None and render_mode not in self.metadata["render_modes"]:
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or "
                             f"None for the vector env, got {render_mode!r}.")
        self.physics = make_physics(xi=xi, phi=phi, gamma=gamma,
                                    max_loss_change=max_loss_change)
        self.action_scale = _action_scale(self.physics, action_scale)
        self.device = parse_device(device)
        self.dtype = parse_dtype(dtype)
        self.num_envs = num_envs
        self.render_mode = render_mode
        self.single_action_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.single_observation_space = spaces.Box(-1.0, 1.0, shape=(2,), dtype=np.float32)
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.target: torch.Tensor | None = None  # (B, 2)
        self.x: torch.Tensor | None = None  # (B, 2) last guesses (for rendering)
        self._answered: torch.Tensor | None = None  # targets the last guesses answered

    def reset(self, *, seed: int | None = None,
              options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        """Draw ``num_envs`` targets, or take ``options["target"]`` of shape ``(num_envs, 2)``."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - {"target"}
        if unknown:
            raise ValueError(f"Unknown reset options {sorted(unknown)}; accepted: 'target'.")
        target = self.np_random.uniform(-1.0, 1.0, size=(self.num_envs, 2))
        if "target" in options:
            target = _as_array(options["target"], "options['target']", (self.num_envs, 2))
            _check_target_range(target)
        self.target = torch.as_tensor(target, dtype=self.dtype, device=self.device)
        self.x = self._answered = None
        return self.target.cpu().numpy().astype(np.float32), {}

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                          dict[str, Any]]:
        """Score ``actions`` of shape ``(num_envs, 2)`` (clipped), then draw new targets.

        Raises:
            RuntimeError: Before :meth:`reset`.
            ValueError: For a wrong shape or NaN/inf entries (nothing is changed).
        """
        if self.target is None:
            raise RuntimeError("Call reset() before step().")
        if isinstance(actions, torch.Tensor):
            actions = actions.detach().cpu().numpy()
        arr = np.clip(_as_array(actions, "action", (self.num_envs, 2)), -1.0, 1.0)
        x = self.action_scale * torch.as_tensor(arr, dtype=self.dtype, device=self.device)
        reward = -self.physics.loss(x, self.target).cpu().numpy().astype(np.float64)
        nearest = self.physics.nearest_solution(x, self.target)
        mask = np.ones(self.num_envs, dtype=bool)
        final_obs = np.empty(self.num_envs, dtype=object)
        final_obs[:] = list(self.target.cpu().numpy().astype(np.float32))
        final_info = {"x_distance": (x - nearest).norm(dim=-1).cpu().numpy(),
                      "_x_distance": mask.copy(), "x": x.cpu().numpy().copy(), "_x": mask.copy(),
                      "nearest_solution": nearest.cpu().numpy().copy(),
                      "_nearest_solution": mask.copy()}
        info = {"final_obs": final_obs, "_final_obs": mask.copy(), "final_info": final_info,
                "_final_info": mask.copy()}
        # --- SAME_STEP autoreset: every episode ended; pose new targets ---
        self._answered, self.x = self.target, x
        self.target = torch.as_tensor(self.np_random.uniform(-1.0, 1.0, size=(self.num_envs, 2)),
                                      dtype=self.dtype, device=self.device)
        return (self.target.cpu().numpy().astype(np.float32), reward, mask.copy(),
                np.zeros(self.num_envs, dtype=bool), info)

    def render(self) -> tuple[np.ndarray, ...] | None:
        """``"rgb_array"``: one frame per sub-env, showing its last answered target and guess
        (or the current target before the first step)."""
        if self.render_mode is None:
            gym.logger.warn("render() called with render_mode=None; pass "
                            "render_mode='rgb_array' to gym.make_vec.")
            return None
        if self.target is None:
            raise RuntimeError("Call reset() before render().")
        target = self.target if self._answered is None else self._answered
        return tuple(draw_sine_frame(self.physics, self.action_scale, target[i].cpu().numpy(),
                                     None if self.x is None else self.x[i].cpu().numpy())
                     for i in range(self.num_envs))


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
    try:  # lazily, and only the font module: no display, no audio
        import pygame
    except ImportError as exc:  # pragma: no cover - pygame is a declared dependency
        raise ImportError("Rendering needs pygame: pip install pygame") from exc
    if not pygame.font.get_init():
        pygame.font.init()
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
    lines = [_TITLE, f"xi = {physics.xi:g}   phi = {physics.phi:g} deg",
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

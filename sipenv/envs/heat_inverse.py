"""``sip/HeatInverse-v0``: a one-step inverse problem — recover a field from its diffused image."""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from sipenv.envs.checks import OBSERVATION_MAX, as_field, checked_options, seed_generator
from sipenv.envs.checks import validate_action as _check_action
from sipenv.envs.one_step import OneStepEnv, OneStepTask, OneStepVectorEnv, one_step_factory
from sipenv.envs.rendering import _pygame
from sipenv.physics.heat import HeatPhysics
from sipenv.validation import check_positive

__all__ = ["FRAME_SHAPE", "HeatInverseEnv", "HeatInverseTask", "HeatInverseVectorEnv",
           "HeatSettings", "draw_heat_frame", "field_limit", "make_task"]

ENV_ID = "sip/HeatInverse-v0"
FRAME_SHAPE = (440, 640, 3)  # the size of rendering.HumanWindow's screen


@dataclass(frozen=True)
class HeatSettings:
    """The task's own setting (the physics' are ``HeatPhysics``'s).

    Args:
        action_scale: ``None`` (default): the action is the physical reconstruction ``x``,
            ``Box(-inf, inf)``. A number ``s > 0``: the action is normalised,
            ``Box(-1, 1, (H, W), float32)``, and the reconstruction is
            ``x = s · clip(a, −1, 1)`` (the bounded variant RL libraries need; the true fields
            take values 0 … 10, so ``s = 10`` covers them).
    """

    action_scale: float | None = None


make_task = one_step_factory(ENV_ID, HeatPhysics, HeatSettings)
"""Builds ``(physics, settings)`` of ``sip/HeatInverse-v0`` from its keywords (see the env's
Arguments)."""



def field_limit(dtype: torch.dtype, shape: tuple[int, int]) -> tuple[float, str]:
    """The largest ``|x|`` of a field (``x*`` or an answer ``x``) the env takes in ``dtype``:
    ``min(3.4e38, sqrt(max(dtype) / (8 H W)))``. Below it ``y* = P(x*)`` fits the float32
    observation, and neither the FFTs of ``P(x)`` (``≤ H W max|x|``) nor the loss
    ``½‖P(x) − y*‖² ≤ 2 H W max²`` overflow: the reward is always finite. (float32: 2.0e17
    at 64×64; float64: 3.4e38, the float32 observation's limit.)"""
    cells = shape[0] * shape[1]
    safe = math.sqrt(float(torch.finfo(dtype).max) / (8 * cells))
    if safe >= OBSERVATION_MAX:
        return OBSERVATION_MAX, "the largest magnitude a float32 observation y* = P(x*) can hold"
    name = str(dtype).removeprefix("torch.")
    return safe, (f"the largest magnitude for which the {name} loss ½‖P(x) − y*‖² over "
                  f"{shape[0]}×{shape[1]} cells cannot overflow")


def _parse_initial(options: Any, shape: tuple[int, ...], device: torch.device,
                   dtype: torch.dtype, limit: tuple[float, str]) -> torch.Tensor | None:
    """Validate ``reset`` options (only ``"initial"``, of ``shape``, within ``limit``) before
    anything changes."""
    options = checked_options(options, ("initial",), example="{'initial': x_true}",
                              described="'initial' (the true initial field x*)")
    if "initial" not in options:
        return None
    return as_field(options["initial"], "initial", shape, device, dtype, limit=limit)


def _validate_action(action: Any, shape: tuple[int, ...], limit: tuple[float, str] | None, *,
                     fix: str = "Pass a finite field, e.g. np.nan_to_num(action).") -> np.ndarray:
    """A reconstruction (or a normalised one) of ``shape``, checked (``validate_action``)."""
    return _check_action(action, shape, what=" (the reconstructed initial field)", fix=fix,
                         limit=limit)


def _action_scale(action_scale: Any, dtype: torch.dtype,
                  shape: tuple[int, int]) -> float | None:
    """``action_scale`` checked: ``None``, or a finite number in ``(0, field_limit]``."""
    if action_scale is None:
        return None
    limit, why = field_limit(dtype, shape)
    scale = check_positive("action_scale", action_scale,
                           hint="(or None for physical, unbounded actions)")
    if scale > limit:
        raise ValueError(f"action_scale must be at most {limit:.4g}, {why}; got "
                         f"{action_scale!r}.")
    return scale


def _field_space(shape: tuple[int, int]) -> spaces.Box:
    return spaces.Box(-np.inf, np.inf, shape=shape, dtype=np.float32)


def _sample(physics: HeatPhysics, n: int, np_random: np.random.Generator, device: torch.device,
            dtype: torch.dtype) -> torch.Tensor:
    """``n`` true fields ``x*``, ``(n, H, W)``. A fresh torch generator per draw, seeded from
    ``np_random``: the env's whole random stream lives in ``np_random`` (so it is seeded by
    ``reset(seed=...)`` and pickles with it)."""
    return physics.sample_initial(n, seed_generator(np_random, device), device=device,
                                  dtype=dtype)


class HeatInverseTask(OneStepTask):
    """The hooks of ``sip/HeatInverse-v0``, batched (``y* = P(x*)`` per episode, answered by a
    reconstruction ``x``), shared by ``HeatInverseEnv`` and ``HeatInverseVectorEnv``."""

    make_task = make_task
    physics: HeatPhysics
    action_scale: float | None  # None: physical actions; else x = action_scale · clip(a)
    shape: tuple[int, int]
    x_true: torch.Tensor | None  # (B, H, W) the true initial fields x*
    y_target: torch.Tensor | None  # (B, H, W) the observations y* = P(x*)
    # self.x (from OneStepTask): (B, H, W) the last actions (reconstructions)

    def _configure(self, model: tuple[HeatPhysics, HeatSettings]
                   ) -> tuple[spaces.Space[Any], spaces.Space[Any]]:
        self.physics, settings = model
        self.shape = self.physics.shape
        self.x_true = self.y_target = None
        self.action_scale = _action_scale(settings.action_scale, self.dtype, self.shape)
        action = (_field_space(self.shape) if self.action_scale is None else
                  spaces.Box(-1.0, 1.0, shape=self.shape, dtype=np.float32))
        return action, _field_space(self.shape)

    def _options_space(self) -> spaces.Dict:
        return spaces.Dict({"initial": spaces.Box(-np.inf, np.inf, shape=self.shape,
                                                  dtype=np.float64)})

    def _parse_options(self, options: Any) -> torch.Tensor | None:
        """``{"initial": x*}``, shape ``(*batch, H, W)``, finite; the env is left unchanged
        (its generator included) if they are rejected."""
        return _parse_initial(options, (*self._batch_shape, *self.shape), self.device,
                              self.dtype, field_limit(self.dtype, self.shape))

    def _pose(self, given: torch.Tensor | None) -> None:
        # Always drawn, even when `initial` is given, so the stream of later resets is the same.
        x_true = _sample(self.physics, self._batch_size, self.np_random, self.device, self.dtype)
        self.x_true = x_true if given is None else given.reshape(x_true.shape)
        self.y_target = self.physics.forward(self.x_true)

    def _problem(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        if self.x_true is None or self.y_target is None:
            return None
        return self.x_true, self.y_target

    def _answer(self, action: Any) -> torch.Tensor:
        shape = (*self._batch_shape, *self.shape)
        if self.action_scale is None:  # the physical answer, as it is
            arr = _validate_action(action, shape, field_limit(self.dtype, self.shape))
        else:  # normalised: clipped (any float64 clips exactly), then scaled
            arr = self.action_scale * np.clip(_validate_action(
                action, shape, None, fix="Pass finite values in [-1, 1] (larger ones are "
                "clipped)."), -1.0, 1.0)
        return torch.as_tensor(arr, device=self.device, dtype=self.dtype).reshape(
            self._batch_size, *self.shape)

    def _score(self, x: torch.Tensor) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        assert self.x_true is not None and self.y_target is not None
        y_loss = self.physics.loss(x, self.y_target).cpu().numpy().astype(np.float64)
        x_error = self.physics.x_error(x, self.x_true).cpu().numpy().astype(np.float64)
        return 0.0 - y_loss, {"x_error": x_error, "y_loss": y_loss}  # 0.0 - y: never -0.0

    def _obs(self) -> np.ndarray:
        assert self.y_target is not None
        return self.y_target.cpu().numpy().astype(np.float32)

    def _frames(self) -> tuple[np.ndarray, ...]:
        problem = self._shown_problem()
        assert problem is not None
        x_true, y_target = problem
        info = self._last_info
        return tuple(draw_heat_frame(_np(x_true[i]), _np(y_target[i]),
                                     None if self.x is None else _np(self.x[i]),
                                     nu_t=self.physics.nu_t,
                                     info=None if info is None else
                                     {k: float(v[i]) for k, v in info.items()})
                     for i in range(self._batch_size))


class HeatInverseEnv(HeatInverseTask, OneStepEnv):
    """
    ## Description

    The heat-equation inverse problem of the SIP paper (Holl, Koltun & Thuerey, NeurIPS 2022):
    an initial temperature field ``x*`` on a periodic ``H × W`` grid of unit cells diffuses for
    a time ``νt``,

    ``y = P(x)``,  ``ŷ_k = x̂_k · exp(−(2π)² |k|² νt)``  (``k`` in cycles per cell)

    (``sipenv.physics.HeatPhysics``), and the agent sees only ``y* = P(x*)`` and must
    reconstruct ``x*``. With the published ``νt = 8`` on 64×64 cells the finest modes are damped
    by ``e^{−158}``: they are lost in round-off, so the exact inverse does not exist and a good
    reconstruction has to *know* what hot rectangles look like. An episode is a single step:
    a one-shot inverse problem, meant for learning ``x = f_θ(y*)`` over many samples.

    ## Action Space

    ``Box(-inf, inf, (H, W), float32)``: the reconstructed initial field ``x`` itself (physical
    units, not normalised: the true fields take values 0 … 10). Wrongly shaped, non-numeric or
    NaN/inf actions raise ``ValueError`` and leave the env unchanged, and so do entries beyond
    ``field_limit`` (the float32 observation's ±3.4e38 in float64; in float32 the largest
    ``|x|`` whose loss cannot overflow, 2.0e17 at 64×64), so the reward is always finite.

    **Bounded variant** (for RL libraries, which need a finite box: stable-baselines3's
    ``check_env``, PPO, SAC, TD3, Gymnasium's ``RescaleAction``):
    ``gym.make("sip/HeatInverse-v0", action_scale=10.0)`` makes the action a normalised
    ``Box(-1, 1, (H, W), float32)`` and the reconstruction ``x = action_scale · clip(a, −1, 1)``
    (out-of-range actions are clipped, as in the control envs). Rewards and ``info`` are those
    of the physical ``x``; ``action_scale=10`` covers every true field.

    ## Observation Space

    ``Box(-inf, inf, (H, W), float32)``: the observed diffused field ``y* = P(x*)``.

    ## Rewards

    ``−½‖P(x) − y*‖²`` (sum over cells) after the single step. ``info`` holds ``y_loss``
    (``½‖P(x) − y*‖²``, so ``reward = −y_loss``) and ``x_error`` (``Σ_cells |x − x*|``, the
    paper's metric). The exact answer ``x = x*`` scores ``0`` on both.

    ## Starting State

    ``x*`` is the sum of 4 … 10 unit-height hot rectangles
    (``sample_initial``), drawn from the env's seeded generator;
    ``reset(options={"initial": x})`` poses a specific ``x*`` (shape ``(H, W)``, finite).
    ``env.unwrapped.reset_options_space`` (a ``gymnasium.spaces.Dict``) describes the options.

    ## Episode End

    Every episode ends after one step (``terminated=True``). Stepping again without ``reset()``
    raises ``RuntimeError``.

    ## Arguments

    - ``shape=(64, 64)``: the grid ``(H, W)`` (each ≥ 4).
    - ``nu_t=8.0``: diffusivity times duration ``νt`` (> 0); larger is harder.
    - ``action_scale=None``: physical actions (default); a number gives the bounded variant
      above (``HeatSettings``).
    - Keywords are routed by name to ``HeatPhysics`` (also ``noise_rel``,
      ``signal_scale``, ``max_log_gain``: its noise-aware inverse) and ``HeatSettings``
      (``action_scale``); an unknown keyword raises ``TypeError`` naming the accepted ones.
    - ``device="cpu"``, ``dtype="float64"``: where and in which precision the physics runs
      (the reference computes the physics in float64; observations are float32 numpy arrays).
    - ``render_mode``: ``"rgb_array"`` (``(440, 640, 3)`` frames: ``x*``, ``y*`` and the last
      action ``x`` as colour maps, ``x*`` and ``x`` under shared colour limits) or ``"human"``.

    Agents reach the differentiable batched physics (``forward``, ``loss``, the noise-aware
    ``inverse``, ``sample_initial``) through ``env.unwrapped.physics``.

    ## Example

    >>> import gymnasium as gym
    >>> import sipenv
    >>> env = gym.make("sip/HeatInverse-v0")
    >>> obs, info = env.reset(seed=0)
    >>> obs.shape
    (64, 64)
    >>> x_true = env.unwrapped.x_true[0].numpy()
    >>> obs, reward, terminated, truncated, info = env.step(x_true)
    >>> terminated, info["x_error"]
    (True, 0.0)

    ## Version History

    - v0: initial release.
    """


class HeatInverseVectorEnv(HeatInverseTask, OneStepVectorEnv):
    """Native batched ``sip/HeatInverse-v0`` (same arguments as the single env).

    All sub-envs are scored in one batched torch call. Every step ends every episode, so
    autoreset is ``AutoresetMode.SAME_STEP``: ``step`` scores the actions against the current
    problems, draws new ``x*`` and returns their ``y*`` as the observation; the answered
    observations are in ``info["final_obs"]`` and the per-env step infos (``x_error``,
    ``y_loss``) in ``info["final_info"]`` (with the ``_key`` masks Gymnasium's ``SyncVectorEnv``
    uses). Rewards, ``terminated`` and ``final_info`` equal those of ``num_envs`` single envs
    given the same ``x*`` and actions. ``reset(options={"initial": x})`` takes ``x`` of shape
    ``(num_envs, H, W)``.

    Made by ``gym.make_vec(id, num_envs=..., vectorization_mode="vector_entry_point")``.
    """


def _np(field: torch.Tensor) -> np.ndarray:
    return field.detach().cpu().to(torch.float64).numpy()


# --- rendering ---------------------------------------------------------------------------------

_PANEL = 192  # side of each square panel box, in pixels (3 px per cell at 64×64)
_MARGIN = (FRAME_SHAPE[1] - 3 * _PANEL) // 4
_PANEL_TOP, _BAR_H = 70, 10
_BG, _INK, _BLANK = (255, 255, 255), (30, 30, 30), (200, 200, 200)


@functools.lru_cache(maxsize=4)
def colormap_lut(name: str = "inferno") -> np.ndarray:
    """A matplotlib colour map as a ``(256, 3) uint8`` lookup table (perceptually uniform by
    default: dark = low)."""
    import matplotlib  # declared dependency; imported only to render

    lut = matplotlib.colormaps[name](np.linspace(0.0, 1.0, 256))[:, :3]
    lut = np.round(lut * 255).astype(np.uint8)
    lut.setflags(write=False)
    return lut


def colorize(field: np.ndarray, lo: float, hi: float, name: str = "inferno") -> np.ndarray:
    """Map ``field`` (any shape) to ``(*shape, 3) uint8`` colours, ``lo`` → first colour,
    ``hi`` → last; values outside are clipped, NaN shows as the lowest colour."""
    scale = 255.0 / max(hi - lo, 1e-12)
    idx = np.clip(np.nan_to_num((field - lo) * scale, nan=0.0), 0, 255).astype(np.intp)
    return colormap_lut(name)[idx]


def _panel_size(shape: tuple[int, int]) -> tuple[int, int]:
    """``(h, w)`` in pixels of a field of ``shape`` fitted into the square panel box."""
    s = _PANEL / max(shape)
    return max(1, round(shape[0] * s)), max(1, round(shape[1] * s))


def _upscale(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-neighbour resize of an ``(h, w, 3)`` image to ``size``."""
    rows = np.arange(size[0]) * image.shape[0] // size[0]
    cols = np.arange(size[1]) * image.shape[1] // size[1]
    return image[rows[:, None], cols[None, :]]


def draw_heat_frame(x_true: np.ndarray, y_target: np.ndarray, x: np.ndarray | None, *,
                    nu_t: float, info: dict[str, float] | None = None) -> np.ndarray:
    """One ``(440, 640, 3) uint8`` frame with three colour-map panels side by side: the true
    initial field ``x*``, the observation ``y* = P(x*)`` and the reconstruction ``x``.

    ``x*`` and ``x`` share colour limits: the range of ``x*`` widened to the 1st–99th percentile
    range of ``x`` (so a few wild cells of ``x`` don't wash out the picture; cells beyond the
    limits are clipped). ``y*`` has its own limits (diffusion lowers the peaks). Each panel has a
    title and a colour bar with its limits; below them, the metrics of the step.

    Args:
        x_true: ``x*``, shape ``(H, W)``.
        y_target: ``y*``, shape ``(H, W)``.
        x: The last action, shape ``(H, W)``, or ``None`` before the step (a blank panel).
        nu_t: ``νt`` of the physics (for the caption).
        info: The step's ``{"x_error": ..., "y_loss": ...}``, or ``None``.
    """
    pygame = _pygame()  # lazily, and only the font module: no display, no audio
    height, width, _ = FRAME_SHAPE
    image = np.empty(FRAME_SHAPE, dtype=np.uint8)
    image[:] = _BG

    x_true = np.asarray(x_true, dtype=np.float64)
    y_target = np.asarray(y_target, dtype=np.float64)
    lo, hi = float(x_true.min()), float(x_true.max())
    if x is not None:
        x = np.asarray(x, dtype=np.float64)
        finite = x[np.isfinite(x)]
        if finite.size:
            p_lo, p_hi = np.percentile(finite, [1.0, 99.0])
            lo, hi = min(lo, float(p_lo)), max(hi, float(p_hi))
    if hi <= lo:
        hi = lo + 1.0
    y_lo, y_hi = float(y_target.min()), float(y_target.max())
    if y_hi <= y_lo:
        y_hi = y_lo + 1.0

    ph, pw = _panel_size(x_true.shape)
    lefts = [_MARGIN + i * (_PANEL + _MARGIN) + (_PANEL - pw) // 2 for i in range(3)]
    top = _PANEL_TOP + (_PANEL - ph) // 2
    bar_top = _PANEL_TOP + _PANEL + 8
    panels = [(x_true, lo, hi, "true initial x*"), (y_target, y_lo, y_hi, "observed y* = P(x*)"),
              (x, lo, hi, "reconstruction x (action)")]
    gradient = colorize(np.linspace(0.0, 1.0, pw)[None, :], 0.0, 1.0)
    for left, (field, f_lo, f_hi, _) in zip(lefts, panels, strict=True):
        if field is None:
            image[top:top + ph, left:left + pw] = _BLANK
            continue
        image[top:top + ph, left:left + pw] = _upscale(colorize(field, f_lo, f_hi), (ph, pw))
        image[bar_top:bar_top + _BAR_H, left:left + pw] = gradient

    surf = pygame.surfarray.make_surface(np.transpose(image, (1, 0, 2)))
    font, big = pygame.font.Font(None, 20), pygame.font.Font(None, 24)

    def text(s: str, pos: tuple[int, int], f: Any = font, anchor: str = "topleft") -> None:
        img = f.render(s, True, _INK)
        surf.blit(img, img.get_rect(**{anchor: pos}))

    text(ENV_ID, (_MARGIN, 12), big)
    h, w = x_true.shape
    text(f"{h}x{w} cells   nu*t = {nu_t:g}", (width - _MARGIN, 12), big, anchor="topright")
    for left, (field, f_lo, f_hi, title) in zip(lefts, panels, strict=True):
        centre = left + pw // 2
        text(title, (centre, _PANEL_TOP - 8), anchor="midbottom")
        if field is None:
            text("no action yet", (centre, top + ph // 2), anchor="center")
            continue
        text(f"{f_lo:.3g}", (left, bar_top + _BAR_H + 3))
        text(f"{f_hi:.3g}", (left + pw, bar_top + _BAR_H + 3), anchor="topright")
    lines = ["x* and x share colour limits; y* has its own."]
    if info is not None:
        lines += [f"x_error = sum |x - x*| = {info['x_error']:.4g}",
                  f"y_loss = 1/2 |P(x) - y*|^2 = {info['y_loss']:.4g}   "
                  f"(reward = {-info['y_loss']:.4g})"]
    for i, line in enumerate(lines):
        text(line, (_MARGIN, bar_top + _BAR_H + 30 + 22 * i), big if i else font)
    frame = pygame.surfarray.array3d(surf)  # (W, H, 3)
    assert frame.shape[:2] == (width, height)
    return np.ascontiguousarray(np.transpose(frame, (1, 0, 2)), dtype=np.uint8)

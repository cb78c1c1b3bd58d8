"""Headless-safe frames of 2-D flow episodes (``sip/ShapeTransition-v0``).

A frame is ``(440, 640, 3) uint8`` (the size of ``rendering.HumanWindow``'s screen) with three
square panels over the periodic box, ``y`` drawn upwards (row 0 of a field at the bottom):

1. the marker ``m`` as a colour map (``inferno``, limits ``[0, 1]`` widened to its range) with
   the target's outline (the ``m* = ½`` contour, cyan);
2. the vorticity ``ω = ∂u_y/∂x − ∂u_x/∂y`` as a diverging colour map (red counter-clockwise,
   blue clockwise, symmetric limits) with velocity arrows on a coarse grid;
3. the force applied in the last step: its magnitude ``|f|`` as a colour map (limits
   ``[0, force_limit]``) with arrows (blank before the first step), and the outline of the
   actuated region (orange) when forces act only in part of the box;

each with a colour bar and its limits, and a header with the step, the relative target error
and the frequency-weighted L1 error. pygame is imported lazily (fonts only; no display).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sipenv.envs.heat_inverse import colorize
from sipenv.envs.rendering import _pygame

__all__ = ["FRAME_SHAPE", "draw_flow_frame"]

FRAME_SHAPE = (440, 640, 3)
_PANEL = 192  # side of each square panel box, in pixels (3 px per cell at 64×64)
_MARGIN = (FRAME_SHAPE[1] - 3 * _PANEL) // 4
_PANEL_TOP, _BAR_H = 70, 10
_ARROWS = 8  # arrows per side of a panel
_BG, _INK, _BLANK = (255, 255, 255), (30, 30, 30), (200, 200, 200)
_OUTLINE, _MASK = (0, 230, 255), (255, 140, 0)


def _cells_to_pixels(field: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest-cell resampling of ``(H, W, …)`` to ``size`` pixels, row 0 at the bottom."""
    rows = np.arange(size[0]) * field.shape[0] // size[0]
    cols = np.arange(size[1]) * field.shape[1] // size[1]
    return field[::-1][rows[:, None], cols[None, :]]


def _smooth_to_pixels(field: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Periodic bilinear resampling of ``(H, W)`` at the pixel centres, row 0 at the bottom
    (cell ``(i, j)`` is the value at ``(i, j)``)."""
    h, w = field.shape
    y = (np.arange(size[0])[::-1] + 0.5) * h / size[0] - 0.5
    x = (np.arange(size[1]) + 0.5) * w / size[1] - 0.5
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = (y - y0)[:, None], (x - x0)[None, :]
    r0, r1 = y0 % h, (y0 + 1) % h
    c0, c1 = x0 % w, (x0 + 1) % w
    top = field[r0][:, c0] * (1 - fx) + field[r0][:, c1] * fx
    bottom = field[r1][:, c0] * (1 - fx) + field[r1][:, c1] * fx
    return np.asarray(top * (1 - fy) + bottom * fy)


def _outline(inside: np.ndarray, thickness: int = 1) -> np.ndarray:
    """Boolean edge pixels of a boolean image: inside pixels with an outside 4-neighbour,
    grown by ``thickness − 1`` pixels."""
    edge = np.zeros_like(inside)
    for axis in (0, 1):
        for shift in (1, -1):
            edge |= inside & ~np.roll(inside, shift, axis)
    for _ in range(thickness - 1):
        edge = edge | np.roll(edge, 1, 0) | np.roll(edge, 1, 1)
    return edge


def vorticity(velocity: np.ndarray) -> np.ndarray:
    """``ω = ∂u_y/∂x − ∂u_x/∂y`` of ``[u_y, u_x]`` ``(2, H, W)`` by periodic central
    differences (unit cells), ``(H, W)``."""
    uy, ux = velocity
    return ((np.roll(uy, -1, 1) - np.roll(uy, 1, 1)) - (np.roll(ux, -1, 0) - np.roll(ux, 1, 0))) / 2


def _nice(v: float, floor: float = 1e-3) -> float:
    """A positive limit: ``v``, at least ``floor`` (a field at rest gets a readable scale)."""
    return float(v) if np.isfinite(v) and v > floor else floor


def draw_flow_frame(marker: np.ndarray, velocity: np.ndarray, target: np.ndarray,
                    force: np.ndarray | None, *, step: int, horizon: int, force_limit: float,
                    mask: np.ndarray | None, target_error: float, frequency_l1: float,
                    title: str) -> np.ndarray:
    """One ``(440, 640, 3) uint8`` frame (module docstring).

    Args:
        marker: ``m``, ``(H, W)``.
        velocity: ``[u_y, u_x]``, ``(2, H, W)``.
        target: ``m*``, ``(H, W)``.
        force: The force ``[f_y, f_x]`` applied in the last step on the physics grid,
            ``(2, H, W)``, or ``None`` before the first step (a blank panel).
        step: Steps taken; ``horizon``: steps per episode.
        force_limit: The force per unit action (the force panel's colour limit).
        mask: The actuated cells ``(H, W)`` (outlined), or ``None`` for the whole box.
        target_error: The relative squared marker error; ``frequency_l1``: the frequency-
            weighted L1 error.
        title: Text in the top-left corner.
    """
    pygame = _pygame()
    height, width, _ = FRAME_SHAPE
    image = np.empty(FRAME_SHAPE, dtype=np.uint8)
    image[:] = _BG
    marker = np.nan_to_num(np.asarray(marker, dtype=np.float64))
    velocity = np.nan_to_num(np.asarray(velocity, dtype=np.float64))
    target = np.asarray(target, dtype=np.float64)
    h, w = marker.shape
    scale = _PANEL / max(h, w)
    ph, pw = max(1, round(h * scale)), max(1, round(w * scale))
    lefts = [_MARGIN + i * (_PANEL + _MARGIN) + (_PANEL - pw) // 2 for i in range(3)]
    top = _PANEL_TOP + (_PANEL - ph) // 2
    bar_top = _PANEL_TOP + _PANEL + 8

    def put(i: int, pixels: np.ndarray) -> None:
        image[top:top + ph, lefts[i]:lefts[i] + pw] = pixels

    def bar(i: int, cmap: str, lo: float, hi: float) -> None:
        image[bar_top:bar_top + _BAR_H, lefts[i]:lefts[i] + pw] = colorize(
            np.linspace(lo, hi, pw)[None, :], lo, hi, cmap)

    # 1. marker and the target's outline
    m_lo, m_hi = min(0.0, float(marker.min())), max(1.0, float(marker.max()))
    panel = colorize(_cells_to_pixels(marker, (ph, pw)), m_lo, m_hi, "inferno")
    panel[_outline(_smooth_to_pixels(target, (ph, pw)) >= 0.5, 2)] = _OUTLINE
    put(0, panel)
    bar(0, "inferno", m_lo, m_hi)
    # 2. vorticity and velocity arrows
    omega = vorticity(velocity)
    w_lim = _nice(float(np.abs(omega).max()))
    put(1, colorize(_cells_to_pixels(omega, (ph, pw)), -w_lim, w_lim, "RdBu_r"))
    bar(1, "RdBu_r", -w_lim, w_lim)
    # 3. the applied force
    if force is None:
        panel = np.empty((ph, pw, 3), dtype=np.uint8)
        panel[:] = _BLANK
    else:
        force = np.nan_to_num(np.asarray(force, dtype=np.float64))
        magnitude = np.hypot(force[0], force[1])
        panel = colorize(_cells_to_pixels(magnitude, (ph, pw)), 0.0, force_limit, "Greens")
    if mask is not None:
        panel[_outline(_cells_to_pixels(np.asarray(mask, dtype=bool), (ph, pw)), 2)] = _MASK
    put(2, panel)
    bar(2, "Greens", 0.0, force_limit)

    surf = pygame.surfarray.make_surface(np.transpose(image, (1, 0, 2)))
    font, big = pygame.font.Font(None, 20), pygame.font.Font(None, 24)

    def text(s: str, pos: tuple[int, int], f: Any = font, anchor: str = "topleft") -> None:
        img = f.render(s, True, _INK)
        surf.blit(img, img.get_rect(**{anchor: pos}))

    def arrows(i: int, field: np.ndarray, limit: float) -> float:
        """Arrows of ``[f_y, f_x]`` sampled on a coarse grid; the longest is ``limit`` long
        in pixels ≈ 0.9 of the arrow spacing. Returns the speed an arrow of full length
        stands for."""
        ny, nx = min(_ARROWS, h), min(_ARROWS, w)
        rows = (np.arange(ny) * h) // ny + h // (2 * ny)
        cols = (np.arange(nx) * w) // nx + w // (2 * nx)
        vy, vx = field[0][rows[:, None], cols[None, :]], field[1][rows[:, None], cols[None, :]]
        spacing = min(ph / ny, pw / nx)
        surf.set_clip(pygame.Rect(lefts[i], top, pw, ph))  # arrows stay in their panel
        longest = _nice(max(limit, float(np.hypot(vy, vx).max())))
        k = 0.9 * spacing / longest
        for a, r in enumerate(rows):
            for b, c in enumerate(cols):
                x0 = lefts[i] + (c + 0.5) * scale
                y0 = top + ph - (r + 0.5) * scale
                dx, dy = vx[a, b] * k, -vy[a, b] * k
                length = float(np.hypot(dx, dy))
                if length < 1.5:
                    continue
                x1, y1 = x0 + dx, y0 + dy
                pygame.draw.line(surf, _INK, (x0, y0), (x1, y1), 1)
                ux, uy = dx / length, dy / length
                head = min(5.0, 0.4 * length)
                for side in (1, -1):
                    hx = x1 - head * (ux + 0.5 * side * -uy)
                    hy = y1 - head * (uy + 0.5 * side * ux)
                    pygame.draw.line(surf, _INK, (x1, y1), (hx, hy), 1)
        surf.set_clip(None)
        return longest

    speed = arrows(1, velocity, 0.0)
    force_arrow = arrows(2, force, force_limit) if force is not None else None

    text(title, (_MARGIN, 10), big)
    text(f"step {step}/{horizon}", (width - _MARGIN, 10), big, anchor="topright")
    titles = ("marker m (cyan: target m* = 0.5)", "vorticity, velocity arrows",
              "force f of the last step")
    limits = ((m_lo, m_hi), (-w_lim, w_lim), (0.0, force_limit))
    for left, name, (lo, hi) in zip(lefts, titles, limits, strict=True):
        centre = left + pw // 2
        text(name, (centre, _PANEL_TOP - 6), anchor="midbottom")
        text(f"{lo:.3g}", (left, bar_top + _BAR_H + 3))
        text(f"{hi:.3g}", (left + pw, bar_top + _BAR_H + 3), anchor="topright")
    if force is None:
        text("no force yet", (lefts[2] + pw // 2, top + ph // 2), anchor="center")
    text(f"target error |m - m*|^2 / |m*|^2 = {target_error:.3g}      "
         f"frequency-weighted L1 = {frequency_l1:.3g}", (_MARGIN, bar_top + _BAR_H + 28), big)
    notes = [f"{h}x{w} periodic cells, y up.  A full-length velocity arrow is "
             f"{speed:.3g} cells/step."]
    if force_arrow is not None:
        notes.append(f"Force: colour |f|; a full-length arrow is {force_arrow:.3g} cells/step^2"
                     + ("; orange: the actuated region." if mask is not None else "."))
    elif mask is not None:
        notes.append("Forces act only in the actuated region (orange outline).")
    for j, line in enumerate(notes):
        text(line, (_MARGIN, bar_top + _BAR_H + 58 + 22 * j))
    frame = pygame.surfarray.array3d(surf)  # (W, H, 3)
    assert frame.shape[:2] == (width, height)
    return np.ascontiguousarray(np.transpose(frame, (1, 0, 2)), dtype=np.uint8)

"""Frames of the coupled-oscillator env: one phase portrait per oscillator and the control.

Top left: for each oscillator ``i`` its phase plane ``(x_i, v_i)`` with the current point
(blue), the target (orange ring) and the path since the start of the episode (light blue, when
the env keeps one: the single env does). Top right: the force applied in the last step, one bar
per control. Below: each position ``x_i`` over the episode so far, with its target dashed.
Headless-safe like ``sipenv.envs.rendering`` (pygame, lazily imported).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sipenv.envs.rendering import HEIGHT, WIDTH, _fmt, _nice_limit, _pygame

__all__ = ["draw_oscillators"]

_BG, _AXIS, _GRID = (255, 255, 255), (40, 40, 40), (225, 225, 225)
_STATE, _TRAIL, _TARGET, _FORCE = (31, 119, 180), (160, 200, 230), (255, 127, 14), (44, 160, 44)
_SERIES = ((31, 119, 180), (214, 39, 40), (148, 103, 189), (140, 86, 75))
"""Colours of the oscillators' position curves (cycled past four)."""


def draw_oscillators(state: np.ndarray, target: np.ndarray, force: np.ndarray | None, *,
                     trail: np.ndarray | None, step: int, horizon: int, force_limit: float,
                     target_error: float, title: str) -> np.ndarray:
    """Draw one frame, ``(H, W, 3) uint8``.

    Args:
        state: ``(2K,)`` ``[x_1 … x_K, v_1 … v_K]``.
        target: ``(2K,)``, same layout.
        force: ``(C,)`` force of the last step, or ``None`` before the first.
        trail: ``(t, 2K)`` states visited so far in the episode, or ``None``.
        step: Steps taken so far; horizon: steps per episode.
        force_limit: Largest force magnitude (the bar axis).
        target_error: Current squared error to the target.
        title: Text in the top-left corner.
    """
    pygame = _pygame()
    surf = pygame.Surface((WIDTH, HEIGHT))
    surf.fill(_BG)
    font, big = pygame.font.Font(None, 18), pygame.font.Font(None, 22)
    k = state.shape[0] // 2
    seen = [state, target] + ([trail.reshape(-1)] if trail is not None else [])
    values = np.concatenate([v[np.isfinite(v)] for v in seen] + [np.array([1e-12])])
    lim = _nice_limit(float(np.abs(values).max()))

    def text(s: str, pos: tuple[float, float], f: Any = font, anchor: str = "topleft",
             colour: tuple[int, int, int] = _AXIS) -> None:
        img = f.render(s, True, colour)
        surf.blit(img, img.get_rect(**{anchor: (int(pos[0]), int(pos[1]))}))

    top, left, bar_w = 40, 40, 120
    size = min((WIDTH - left - bar_w - 30 - 10 * (k - 1)) // k, HEIGHT // 2)
    for i in range(k):
        x0 = left + i * (size + 10)

        def to_px(xv: np.ndarray, vv: np.ndarray, x0: int = x0) -> np.ndarray:
            px = x0 + (np.clip(xv / lim, -1.1, 1.1) + 1) / 2 * size
            py = top + (1 - (np.clip(vv / lim, -1.1, 1.1) + 1) / 2) * size
            return np.stack([px, py], -1)

        pygame.draw.line(surf, _GRID, (x0, top + size // 2), (x0 + size, top + size // 2))
        pygame.draw.line(surf, _GRID, (x0 + size // 2, top), (x0 + size // 2, top + size))
        pygame.draw.rect(surf, _AXIS, (x0, top, size, size), 1)
        text(f"oscillator {i + 1}: v vs x (±{_fmt(lim)})", (x0, top - 16))
        if trail is not None and len(trail) > 1:
            pts = to_px(np.nan_to_num(trail[:, i]), np.nan_to_num(trail[:, k + i]))
            pygame.draw.lines(surf, _TRAIL, False, [tuple(p) for p in pts.tolist()], 2)
        tx, ty = to_px(np.array(target[i]), np.array(target[k + i])).tolist()
        pygame.draw.circle(surf, _TARGET, (int(tx), int(ty)), 7, 2)
        sx, sy = to_px(np.nan_to_num(np.array(state[i])), np.nan_to_num(np.array(state[k + i]))
                       ).tolist()
        pygame.draw.circle(surf, _STATE, (int(sx), int(sy)), 5)
    # --- control bars ---
    bx0 = WIDTH - bar_w - 20
    mid = top + size // 2
    pygame.draw.rect(surf, _AXIS, (bx0, top, bar_w, size), 1)
    pygame.draw.line(surf, _GRID, (bx0, mid), (bx0 + bar_w, mid))
    text(f"force (±{_fmt(force_limit)})", (bx0, top - 16))
    if force is not None:
        width = max(2, bar_w // max(1, len(force)) - 6)
        for j, f in enumerate(np.nan_to_num(force).tolist()):
            h = int(np.clip(f / force_limit, -1, 1) * size / 2)
            pygame.draw.rect(surf, _FORCE, (bx0 + 3 + j * (width + 6), min(mid, mid - h), width,
                                            max(1, abs(h))))
    # --- positions over the episode (below the portraits) ---
    t0, t1 = top + size + 40, HEIGHT - 24
    pygame.draw.rect(surf, _AXIS, (left, t0, WIDTH - left - 20, t1 - t0), 1)
    pygame.draw.line(surf, _GRID, (left, (t0 + t1) // 2), (WIDTH - 20, (t0 + t1) // 2))
    text(f"positions x_i over the episode (±{_fmt(lim)}; dashed: targets)", (left, t0 - 16))

    def to_tx(step_index: np.ndarray, xv: np.ndarray) -> np.ndarray:
        px = left + step_index / max(horizon, 1) * (WIDTH - left - 20)
        py = t0 + (1 - (np.clip(xv / lim, -1.1, 1.1) + 1) / 2) * (t1 - t0)
        return np.stack([px, py], -1)

    for i in range(k):
        colour = _SERIES[i % len(_SERIES)]
        ty = float(to_tx(np.array(0.0), np.array(target[i]))[1])
        for xa in range(left, WIDTH - 20, 12):  # dashed target line
            pygame.draw.line(surf, colour, (xa, ty), (min(xa + 6, WIDTH - 20), ty), 1)
        if trail is not None and len(trail) > 1:
            pts = to_tx(np.arange(len(trail), dtype=float), np.nan_to_num(trail[:, i]))
            pygame.draw.lines(surf, colour, False, [tuple(p) for p in pts.tolist()], 2)
        text(f"x_{i + 1}", (WIDTH - 20 - 30 * (k - i), t1 + 4), colour=colour)
    text(title, (8, 6), big)
    text(f"step {step}/{horizon}   error {target_error:.3g}", (WIDTH - 8, 6), big,
         anchor="topright")
    frame = pygame.surfarray.array3d(surf)
    return np.ascontiguousarray(np.transpose(frame, (1, 0, 2)), dtype=np.uint8)

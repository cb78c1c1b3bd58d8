"""Headless-safe pygame rendering of 1-D control episodes.

pygame is imported lazily, and only ``pygame.display`` and ``pygame.font`` are initialised
(``pygame.init()`` would also open audio). Set ``SDL_VIDEODRIVER=dummy`` to run without a screen.

A frame has two panels over the same x axis: the state (blue) and the target (orange) on top, the
force applied in the last step (green bars) below, each with labelled axes, plus the step count and
the current relative target error.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["HumanWindow", "draw_frame"]

WIDTH, HEIGHT = 640, 440
_MARGIN_L, _MARGIN_R, _TOP, _GAP, _BOTTOM = 62, 16, 34, 34, 34
_BG, _AXIS, _GRID = (255, 255, 255), (40, 40, 40), (225, 225, 225)
_STATE, _TARGET, _FORCE = (31, 119, 180), (255, 127, 14), (44, 160, 44)


def _pygame(display: bool = False) -> Any:
    """Import pygame; initialise the font module, and the display only for a window."""
    try:
        import pygame
    except ImportError as exc:  # pragma: no cover - pygame is a declared dependency
        raise ImportError("Rendering needs pygame: pip install pygame") from exc
    if display and not pygame.display.get_init():
        pygame.display.init()
    if not pygame.font.get_init():
        pygame.font.init()
    return pygame


def _nice_limit(value: float) -> float:
    """Round ``value`` up to 1, 2 or 5 times a power of ten (for axis limits)."""
    if not math.isfinite(value) or value <= 0:
        return 1.0
    exp = math.floor(math.log10(value))
    for mult in (1, 2, 5, 10):
        if mult * 10**exp >= value:
            return float(mult * 10**exp)
    return float(10 ** (exp + 1))  # pragma: no cover


def _fmt(v: float) -> str:
    return f"{v:g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.0e}"


def draw_frame(x: np.ndarray, state: np.ndarray, target: np.ndarray,
               force: np.ndarray | None, *, step: int, horizon: int, force_limit: float,
               target_error: float, length: float, title: str) -> np.ndarray:
    """Draw one frame and return it as an ``(H, W, 3) uint8`` array.

    Args:
        x: Cell positions, shape ``(N,)``.
        state: Current state, shape ``(N,)``.
        target: Target state, shape ``(N,)``.
        force: Force applied in the last step (``None`` before the first step), shape ``(N,)``.
        step: Steps taken so far.
        horizon: Steps per episode.
        force_limit: Largest force magnitude (sets the force axis).
        target_error: Current relative squared error to the target.
        length: Domain length (sets the x axis).
        title: Text in the top-left corner.
    """
    pygame = _pygame()
    surf = pygame.Surface((WIDTH, HEIGHT))
    surf.fill(_BG)
    font = pygame.font.Font(None, 18)
    big = pygame.font.Font(None, 22)

    plot_w = WIDTH - _MARGIN_L - _MARGIN_R
    top_h = int((HEIGHT - _TOP - _GAP - _BOTTOM) * 0.65)
    bot_h = HEIGHT - _TOP - _GAP - _BOTTOM - top_h
    top_y0, bot_y0 = _TOP, _TOP + top_h + _GAP
    finite = np.concatenate([state[np.isfinite(state)], target[np.isfinite(target)], [1e-12]])
    ylim = _nice_limit(float(np.abs(finite).max()))

    def px(xv: np.ndarray) -> np.ndarray:
        return _MARGIN_L + xv / length * plot_w

    def py(yv: np.ndarray, y0: int, h: int, lim: float) -> np.ndarray:
        return y0 + h / 2 - np.clip(yv / lim, -1.2, 1.2) * (h / 2)

    def text(s: str, pos: tuple[float, float], f: Any = font, anchor: str = "topleft") -> None:
        img = f.render(s, True, _AXIS)
        rect = img.get_rect(**{anchor: (int(pos[0]), int(pos[1]))})
        surf.blit(img, rect)

    def axes(y0: int, h: int, lim: float, label: str) -> None:
        for frac in (-1.0, -0.5, 0.0, 0.5, 1.0):
            yy = int(py(np.array(frac * lim), y0, h, lim))
            pygame.draw.line(surf, _GRID, (_MARGIN_L, yy), (_MARGIN_L + plot_w, yy))
            text(_fmt(frac * lim), (_MARGIN_L - 4, yy), anchor="midright")
        pygame.draw.rect(surf, _AXIS, (_MARGIN_L, y0, plot_w, h), 1)
        text(label, (4, y0 - 16))

    # --- state and target ---
    axes(top_y0, top_h, ylim, "s(x)")
    for field, colour in ((target, _TARGET), (state, _STATE)):
        pts = np.stack([px(x), py(np.nan_to_num(field), top_y0, top_h, ylim)], 1)
        pygame.draw.lines(surf, colour, False, [tuple(p) for p in pts.tolist()], 2)
    # --- force bars ---
    axes(bot_y0, bot_h, force_limit, "force f(x)")
    if force is not None:
        zero = py(np.array(0.0), bot_y0, bot_h, force_limit)
        bar = max(1, int(plot_w / len(x)) - 1)
        for xi, yi in zip(px(x).tolist(), py(force, bot_y0, bot_h, force_limit).tolist(),
                          strict=True):
            top, height = min(yi, zero), abs(yi - zero)
            pygame.draw.rect(surf, _FORCE, (int(xi), int(top), bar, max(1, int(height))))
    # --- x axis ticks, legend, status ---
    for frac in (0.0, 0.25, 0.5, 0.75, 1.0):
        xx = int(px(np.array(frac * length)))
        text(_fmt(frac * length), (xx, bot_y0 + bot_h + 4), anchor="midtop")
    text("x", (_MARGIN_L + plot_w, bot_y0 + bot_h + 18), anchor="topright")
    text(title, (8, 6), big)
    status = f"step {step}/{horizon}   target error {target_error:.3g}"
    text(status, (WIDTH - 8, 6), big, anchor="topright")
    pygame.draw.line(surf, _STATE, (WIDTH - 250, top_y0 + 10), (WIDTH - 230, top_y0 + 10), 2)
    text("state", (WIDTH - 226, top_y0 + 4))
    pygame.draw.line(surf, _TARGET, (WIDTH - 170, top_y0 + 10), (WIDTH - 150, top_y0 + 10), 2)
    text("target", (WIDTH - 146, top_y0 + 4))

    frame = pygame.surfarray.array3d(surf)  # (W, H, 3)
    return np.ascontiguousarray(np.transpose(frame, (1, 0, 2)), dtype=np.uint8)


class FramePresenter:
    """Mixin for single envs: give a drawn frame to the caller (``"rgb_array"``) or show it in a
    ``HumanWindow`` (``"human"``, opened on first use), and close that window."""

    render_mode: str | None
    metadata: dict[str, Any]
    _window: Any = None

    def _present(self, frame: np.ndarray, title: str) -> np.ndarray | None:
        """Return ``frame`` in ``"rgb_array"`` mode; show it (and return None) in ``"human"``."""
        if self.render_mode == "rgb_array":
            return frame
        if self._window is None:
            self._window = HumanWindow(title, self.metadata["render_fps"])
        self._window.show(frame)
        return None

    def close(self) -> None:
        """Close the render window, if any (safe to call more than once)."""
        if self._window is not None:
            self._window.close()
            self._window = None


class HumanWindow:
    """A pygame window showing frames at a fixed rate (``render_mode="human"``).

    pygame has one display per process, shared by every open window: the display is opened by
    the first window and shut down (``pygame.display.quit``) only when the last open window
    closes, so closing one env never breaks another env's window.
    """

    _open = 0
    """How many ``HumanWindow`` objects are open in this process (the display's users)."""

    def __init__(self, caption: str, fps: int) -> None:
        pygame = _pygame(display=True)
        self._pygame = pygame
        self.caption = caption
        self.screen = pygame.display.set_mode((WIDTH, HEIGHT))
        pygame.display.set_caption(caption)
        self.clock = pygame.time.Clock()
        self.fps = fps
        self.closed = False
        HumanWindow._open += 1

    def show(self, frame: np.ndarray) -> None:
        """Blit an ``(H, W, 3)`` frame and wait to keep ``fps``.

        Raises:
            RuntimeError: After ``close()`` (the env opens a new window instead).
        """
        if self.closed:
            raise RuntimeError("This window is closed; render() opens a new one.")
        pg = self._pygame
        if not pg.display.get_init() or pg.display.get_surface() is None:
            # Someone else quit the display (e.g. pygame.quit()): open it again.
            _pygame(display=True)
            self.screen = pg.display.set_mode((WIDTH, HEIGHT))
        else:
            self.screen = pg.display.get_surface()
        pg.display.set_caption(self.caption)  # one display, shared: show whose frame it is
        pg.event.pump()
        surf = pg.surfarray.make_surface(np.transpose(frame, (1, 0, 2)))
        self.screen.blit(surf, (0, 0))
        pg.display.flip()
        self.clock.tick(self.fps)

    def close(self) -> None:
        """Release this window (safe to call twice); the display shuts down with the last
        open window."""
        if self.closed:
            return
        self.closed = True
        HumanWindow._open -= 1
        if HumanWindow._open == 0 and self._pygame.display.get_init():
            self._pygame.display.quit()

"""Play a policy in an env and record or show the frames (GIF/MP4 writing via imageio)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import sipenv  # noqa: F401  (registers the sip/ ids)

__all__ = ["play_episode", "save_video", "simple_policy"]


def play_episode(policy: Callable[[np.ndarray], np.ndarray], env_id: str, *, seed: int,
                 env_kwargs: dict[str, Any] | None = None,
                 render_mode: str = "rgb_array") -> tuple[list[np.ndarray], dict[str, Any]]:
    """Run one episode through ``env.step``; return its frames and the last ``info``.

    With ``render_mode="human"`` the env shows a pygame window and no frames are returned.
    """
    env = gym.make(env_id, render_mode=render_mode, **(env_kwargs or {}))
    frames: list[np.ndarray] = []
    obs, info = env.reset(seed=seed)
    if render_mode == "rgb_array":
        frames.append(env.render())  # type: ignore[arg-type]
    done = False
    while not done:
        obs, _, terminated, truncated, info = env.step(policy(obs))
        done = terminated or truncated
        if render_mode == "rgb_array":
            frames.append(env.render())  # type: ignore[arg-type]
    env.close()
    return frames, info


def save_video(frames: list[np.ndarray], path: str | Path, *, fps: int = 8) -> Path:
    """Write frames to ``.gif`` (Pillow) or ``.mp4`` (needs ``imageio-ffmpeg``).

    Raises:
        ValueError: For another suffix or no frames.
        ImportError: For ``.mp4`` without ``imageio-ffmpeg``, with the install command.
    """
    import imageio.v3 as iio

    path = Path(path)
    if not frames:
        raise ValueError("No frames to write.")
    suffix = path.suffix.lower()
    if suffix not in (".gif", ".mp4"):
        raise ValueError(f"Video path must end in .gif or .mp4, got {path.name!r}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".gif":
        # Hold the last frame so the final state can be read before the loop restarts.
        durations = [1000 / fps] * (len(frames) - 1) + [1500.0]
        iio.imwrite(path, np.stack(frames), extension=".gif", duration=durations, loop=0)
    else:
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError as exc:
            raise ImportError("Writing .mp4 needs imageio-ffmpeg: pip install 'sipenv[video]' "
                              "(or write a .gif).") from exc
        iio.imwrite(path, np.stack(frames), extension=".mp4", fps=fps)
    return path


def simple_policy(kind: str, space: gym.Space[Any],
                  seed: int = 0) -> Callable[[np.ndarray], np.ndarray]:
    """A policy that ignores its observation: ``"zero"`` actions, or ``"random"`` ones drawn
    uniformly (seeded) from the action space's bounds cut to ``[-1, 1]`` — the whole space of
    the control envs, a unit-scale field for the inverse problems' wide or open bounds.

    Raises:
        ValueError: For another ``kind``.
    """
    shape = space.shape or ()
    if kind == "zero":
        return lambda obs: np.zeros(shape, dtype=np.float32)
    if kind != "random":
        raise ValueError(f"kind must be 'zero' or 'random', got {kind!r}.")
    rng = np.random.default_rng(seed)
    low = np.maximum(getattr(space, "low", -1.0), -1.0)
    high = np.minimum(getattr(space, "high", 1.0), 1.0)
    return lambda obs: rng.uniform(low, high, size=shape).astype(np.float32)

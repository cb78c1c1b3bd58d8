"""Draw one frame of every registered sipenv env (``sipenv.ENV_IDS``) for the docs' gallery.

    python scripts/env_gallery.py                          # → docs/images/envs/<name>.png
    python scripts/env_gallery.py --out /tmp/gallery --steps 4

Each env is reset with ``--seed`` and played for ``--steps`` steps (at most its horizon; one for
the single-step inverse problems) with zero actions (the physics on its own), or with
``--policy random`` actions drawn uniformly from its action space's bounds cut to ``[-1, 1]``
(as ``scripts/render.py --policy random``); never a trained policy. The frame after the last
step is written as a PNG named after the id (``sip/ShapeTransition-v0`` →
``ShapeTransition-v0.png``). Headless (``SDL_VIDEODRIVER=dummy`` is set when unset).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import gymnasium as gym
import imageio.v3 as iio
import numpy as np
import tyro

import sipenv
from agents.outputs import check_output_dir, refuse
from agents.playback import simple_policy
from sipenv.validation import check_int


@dataclass
class Args:
    out: Path = Path("docs/images/envs")
    """Folder of the PNGs (created)."""
    steps: int = 8
    """Steps played before the frame is taken (capped at each env's episode length)."""
    seed: int = 0
    """Seed of each env's reset and of the actions."""
    policy: Literal["zero", "random"] = "zero"
    """Zero actions, or random ones in the action space's bounds cut to [-1, 1]."""


def gallery_frame(env_id: str, steps: int, seed: int,
                  policy: str = "zero") -> tuple[np.ndarray, int]:
    """The ``(H, W, 3) uint8`` frame of ``env_id`` after up to ``steps`` steps of ``policy``
    (``"zero"`` or ``"random"``), and the number of steps taken (fewer when the episode ends
    first)."""
    env = gym.make(env_id, render_mode="rgb_array")
    act = simple_policy(policy, env.action_space, seed=seed)
    obs, _ = env.reset(seed=seed)
    taken = 0
    for _ in range(steps):
        obs, _, terminated, truncated, _ = env.step(act(obs))
        taken += 1
        if terminated or truncated:
            break
    frame = env.render()
    env.close()
    assert isinstance(frame, np.ndarray)
    return frame, taken


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(Args, args=argv, description=__doc__)
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    try:
        check_int("steps", args.steps, minimum=1)
        out = check_output_dir(args.out)
    except ValueError as exc:
        return refuse(exc)
    out.mkdir(parents=True, exist_ok=True)
    for env_id in sipenv.ENV_IDS:
        frame, taken = gallery_frame(env_id, args.steps, args.seed, args.policy)
        path = out / f"{env_id.split('/')[-1]}.png"
        iio.imwrite(path, frame)
        print(f"{env_id}: frame after {taken} {args.policy}-action step(s) → {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

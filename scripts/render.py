"""Play a policy on a sipenv env: show it in a pygame window, or write a GIF/MP4.

    python scripts/render.py --checkpoint runs/sip-ControlledDiffusion-s0/checkpoint.pt \
        --out rollout.gif
    python scripts/render.py --policy zero --human          # watch the uncontrolled physics
    python scripts/render.py --policy random --out random.gif
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import tyro

from agents.checkpoint import CheckpointError
from agents.playback import play_episode, save_video
from agents.problems import VALIDATION_SEED, make_problem
from agents.registry import load_policy
from sipenv.envs.control import parse_device


@dataclass
class Args:
    checkpoint: Path | None = None
    """Trained checkpoint to play (overrides --policy)."""
    policy: Literal["zero", "random"] = "zero"
    """Policy to play when no checkpoint is given."""
    env_id: str = "sip/ControlledDiffusion-v0"
    """Env to play when no checkpoint is given (a checkpoint brings its own)."""
    env_kwargs: str = "{}"
    """Extra gym.make keyword arguments as a JSON object (ignored with a checkpoint)."""
    seed: int = VALIDATION_SEED
    """Seed of the episode (env.reset(seed=...))."""
    out: Path | None = None
    """Write the rollout to this .gif or .mp4 file."""
    human: bool = False
    """Show the rollout in a pygame window."""
    fps: int = 8
    """Frames per second of the video / window."""
    device: str = "cpu"
    """Torch device of the policy."""


def _check_args(args: Args) -> str | None:
    """The first problem with the arguments (checked before any work), or None."""
    if args.fps < 1:
        return f"--fps must be ≥ 1, got {args.fps}"
    if args.seed < 0:
        return f"--seed must be ≥ 0 (env.reset seeds), got {args.seed}"
    try:
        parse_device(args.device)
    except ValueError as exc:
        return f"--device: {exc}"
    if args.checkpoint is None:  # a checkpoint brings its own env id and kwargs
        try:
            kwargs = json.loads(args.env_kwargs)
        except json.JSONDecodeError as exc:
            return f"--env-kwargs must be a JSON object, got {args.env_kwargs!r} ({exc})"
        if not isinstance(kwargs, dict):
            return f"--env-kwargs must be a JSON object, got {args.env_kwargs!r}"
        if args.env_id not in gym.registry:
            known = sorted(k for k in gym.registry if k.startswith("sip/"))
            return f"unknown --env-id {args.env_id!r}; sipenv provides {known}"
        try:
            gym.make(args.env_id, **kwargs).close()
        except (TypeError, ValueError) as exc:
            return f"--env-kwargs {args.env_kwargs} do not fit {args.env_id}: {exc}"
    return None


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(Args, args=argv, description=__doc__)
    if args.out is None and not args.human:
        print("error: pass --out FILE.gif|.mp4 and/or --human", file=sys.stderr)
        return 2
    if args.out is not None and args.out.suffix.lower() not in (".gif", ".mp4"):
        print(f"error: --out must end in .gif or .mp4, got {args.out.name!r}", file=sys.stderr)
        return 2
    problem = _check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.checkpoint is not None:
        try:
            net, ckpt = load_policy(args.checkpoint, device=args.device)
        except CheckpointError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        env_id = ckpt["env_id"]
        env_kwargs = {**ckpt["env_kwargs"], "dtype": ckpt["config"].get("env_dtype", "float32")}
        task = make_problem(env_id, ckpt["env_kwargs"], device=args.device,
                            dtype=env_kwargs["dtype"])
        policy = task.numpy_policy(net)
        label = f"{ckpt['algo']} checkpoint"
    else:
        env_id, env_kwargs = args.env_id, json.loads(args.env_kwargs)
        space = gym.make(env_id, **env_kwargs).action_space
        rng = np.random.default_rng(args.seed)
        if args.policy == "zero":
            def policy(obs: np.ndarray) -> np.ndarray:
                return np.zeros(space.shape or (), dtype=np.float32)
        else:
            def policy(obs: np.ndarray) -> np.ndarray:
                return rng.uniform(-1, 1, size=space.shape).astype(np.float32)
        label = f"{args.policy} policy"
    if args.human:
        play_episode(policy, env_id, seed=args.seed, env_kwargs=env_kwargs, render_mode="human")
    if args.out is not None:
        frames, info = play_episode(policy, env_id, seed=args.seed, env_kwargs=env_kwargs)
        path = save_video(frames, args.out, fps=args.fps)
        print(f"{label} on {env_id} (seed {args.seed}): {_summary(info)}; wrote {path}")
    return 0


def _summary(info: dict[str, Any]) -> str:
    """The final step's scalar infos, e.g. ``target_error 0.012, force_cost 0.3`` (control
    envs) or ``x_error 231, y_loss 0.05`` (HeatInverse-v0); each env reports its own."""
    scalars = [f"{k} {float(v):.3g}" for k, v in info.items()
               if not k.startswith("_") and isinstance(v, (int, float, np.number))]
    return "final " + (", ".join(scalars) if scalars else "step done")

if __name__ == "__main__":
    sys.exit(main())

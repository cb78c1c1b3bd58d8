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
from agents.extras import require_extra
from agents.outputs import check_output_file, refuse
from agents.playback import play_episode, save_video, simple_policy
from agents.problems import VALIDATION_SEED, check_env_kwargs, env_error
from agents.registry import load_run
from sipenv.envs.control import parse_device


@dataclass
class Args:
    checkpoint: Path | None = None
    """Trained checkpoint to play (overrides --policy)."""
    policy: Literal["zero", "random"] = "zero"
    """Policy to play when no checkpoint is given: zero actions, or actions drawn uniformly
    from the action space's bounds cut to [-1, 1] (the whole space of the control envs; a
    unit-scale field for the inverse problems, whose bounds are wide or open)."""
    env_id: str = "sip/ControlledDiffusion-v0"
    """Env to play when no checkpoint is given (a checkpoint brings its own)."""
    env_kwargs: str = "{}"
    """Extra gym.make keyword arguments as a JSON object (not with a checkpoint; the device is
    --device's)."""
    seed: int = VALIDATION_SEED
    """Seed of the episode (env.reset(seed=...))."""
    out: Path | None = None
    """Write the rollout to this .gif or .mp4 file (.mp4 needs the video extra:
    pip install 'sipenv[video]')."""
    human: bool = False
    """Show the rollout in a pygame window."""
    fps: int = 8
    """Frames per second of the --out video (the --human window plays at the env's own
    rate)."""
    device: str = "cpu"
    """Torch device of the policy and the env."""


RENDER_OWNED_KWARGS = {
    "render_mode": "--human (a window) or --out (frames for a file)",
    "device": "--device",
}
"""Keys of ``--env-kwargs`` that a flag of this script owns."""


def _check_args(args: Args) -> str | None:
    """The problems with the arguments, the output file and the extras it needs (checked
    before any work), or None."""
    problems = []
    if args.out is None and not args.human:
        problems.append("pass --out FILE.gif|.mp4 and/or --human")
    if args.out is not None:
        try:
            check_output_file(args.out, "--out", (".gif", ".mp4"))
            if args.out.suffix.lower() == ".mp4":
                require_extra("video", "--out .mp4")
        except (ValueError, ImportError) as exc:
            problems.append(str(exc).rstrip("."))
    if args.fps < 1:
        problems.append(f"--fps must be ≥ 1, got {args.fps}")
    elif args.out is None and args.fps != Args.fps:
        problems.append("--fps sets the frame rate of the --out file; the --human window plays "
                        "at the env's own rate (its metadata['render_fps']): drop --fps or add "
                        "--out")
    if args.seed < 0:
        problems.append(f"--seed must be ≥ 0 (env.reset seeds), got {args.seed}")
    try:
        parse_device(args.device)
    except ValueError as exc:
        problems.append(f"--device: {exc}")
    if args.checkpoint is not None:  # a checkpoint brings its own env id, kwargs and policy
        given = [flag for flag, value, default in (
            ("--env-id", args.env_id, Args.env_id), ("--env-kwargs", args.env_kwargs,
                                                     Args.env_kwargs),
            ("--policy", args.policy, Args.policy)) if value != default]
        if given:
            problems.append(f"{', '.join(given)} cannot be used with --checkpoint (the "
                            "checkpoint brings its own env and policy); drop them")
    elif not problems:
        try:
            kwargs = check_env_kwargs(args.env_kwargs, RENDER_OWNED_KWARGS)
        except ValueError as exc:
            return str(exc).rstrip(".")
        if args.env_id not in gym.registry:
            known = sorted(k for k in gym.registry if k.startswith("sip/"))
            return f"unknown --env-id {args.env_id!r}; sipenv provides {known}"
        try:
            gym.make(args.env_id, **kwargs, device=args.device).close()
        except (TypeError, ValueError) as exc:
            return f"--env-kwargs {args.env_kwargs} do not fit {args.env_id}: " \
                   f"{env_error(args.env_id, exc)}"
    return "; ".join(problems) or None


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(Args, args=argv, description=__doc__)
    problem = _check_args(args)
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    if args.checkpoint is not None:
        try:
            net, ckpt, task, env_kwargs = load_run(args.checkpoint, device=args.device)
        except CheckpointError as exc:
            return refuse(exc)
        env_id = ckpt["env_id"]
        policy = task.numpy_policy(net)
        label = f"{ckpt['algo']} checkpoint"
    else:
        env_id = args.env_id
        env_kwargs = {**json.loads(args.env_kwargs), "device": args.device}
        space = gym.make(env_id, **env_kwargs).action_space
        policy = simple_policy(args.policy, space, seed=args.seed)
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
    envs) or ``x_error 231, y_loss 0.05`` (HeatInverse-v0); each env reports its own. A
    ``force_cost`` is that step's alone (``evaluate.py`` sums it over the episode), so it is
    printed as ``force_cost (last step)``."""
    scalars = [f"{k}{' (last step)' if k == 'force_cost' else ''} {float(v):.3g}"
               for k, v in info.items()
               if not k.startswith("_") and isinstance(v, (int, float, np.number))]
    return "final " + (", ".join(scalars) if scalars else "step done")


if __name__ == "__main__":
    sys.exit(main())

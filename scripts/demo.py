"""The README demo: train SIP on sip/ControlledDiffusion-v0 for about a minute on the CPU,
evaluate it through the Gymnasium API on 256 held-out episodes, write a GIF of a controlled
rollout and the learning curve, and print where everything is.

    python scripts/demo.py                      # ~1 minute
    python scripts/demo.py --time-budget 10     # quicker look
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass

import tyro

from agents.evaluation import evaluate_gym, torch_policy_to_numpy
from agents.outputs import check_output_dir, refuse
from agents.playback import play_episode, save_video
from agents.sip import SIPConfig, train
from sipenv.validation import check_positive


@dataclass
class Args:
    time_budget: float = 60.0
    """Seconds of SIP training."""
    episodes: int = 256
    """Held-out episodes for the evaluation through env.step."""
    seed: int = 0
    """Seed of the network initialisation and the training task stream."""
    device: str = "cpu"
    """Torch device ('cpu' or 'cuda')."""
    threads: int = 1
    """torch CPU threads (0 = torch's default; one is robust on small or busy machines)."""
    run_name: str = ""
    """Run directory under --runs-dir (default: demo-<date>-<time>, so nothing is
    overwritten)."""
    runs_dir: str = "runs"
    """Parent folder of run directories."""


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(Args, args=argv, description=__doc__)
    run_name = args.run_name or time.strftime("demo-%Y%m%d-%H%M%S")
    config = SIPConfig(time_budget=args.time_budget, seed=args.seed, device=args.device,
                       threads=args.threads, eval_episodes=args.episodes, eval_every=250,
                       run_name=run_name, runs_dir=args.runs_dir)
    try:  # --- every argument and the output folder, before any work ---
        check_positive("--time-budget", args.time_budget)
        config.validate()
        check_output_dir(config.run_dir(), "--run-name")
        if config.run_dir().joinpath("checkpoint.pt").exists():
            raise ValueError(f"{config.run_dir()} already holds a run; choose another "
                             "--run-name.")
    except ValueError as exc:
        return refuse(exc)
    print(f"Training SIP on {config.env_id} for {args.time_budget:g} s "
          f"(batch {config.batch_size}, Adam lr {config.lr:g}, {config.split} split)…")
    result = train(config)
    run_dir = result.run_dir
    assert run_dir is not None

    print(f"Evaluating through env.step on {args.episodes} held-out episodes…")
    policy = torch_policy_to_numpy(result.policy, args.device)
    env_kwargs = config.env_make_kwargs()
    seeds = range(config.eval_seed, config.eval_seed + args.episodes)
    summary = evaluate_gym(policy, config.env_id, seeds, env_kwargs).summary()
    frames, info = play_episode(policy, config.env_id, seed=config.eval_seed,
                                env_kwargs=env_kwargs)
    gif = save_video(frames, run_dir / "rollout.gif")
    zero_frames, zero_info = play_episode(lambda obs: 0 * obs[: result.core.n], config.env_id,
                                          seed=config.eval_seed, env_kwargs=env_kwargs)
    zero_gif = save_video(zero_frames, run_dir / "rollout_uncontrolled.gif")

    print()
    print(f"SIP, {result.iterations} iterations in {result.train_time:.1f} s of training")
    print(f"  held-out relative terminal error ‖s_T − s*‖²/‖s*‖²: mean "
          f"{summary['target_error_mean']:.3g}, median {summary['target_error_median']:.3g}")
    print(f"  force cost Σ_t mean(a_t²): {summary['force_cost_mean']:.3g}")
    print(f"  (same episode without control: error {zero_info['target_error']:.3g}; "
          f"with the trained policy: {info['target_error']:.3g})")
    print(f"Run directory:   {run_dir}")
    print(f"  rollout GIF:   {gif}")
    print(f"  uncontrolled:  {zero_gif}")
    print(f"  learning curve {run_dir / 'learning_curve.png'}")
    print(f"  checkpoint     {run_dir / 'checkpoint.pt'}")
    print(f"Evaluate again:  python scripts/evaluate.py {run_dir / 'checkpoint.pt'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

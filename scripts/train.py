"""Train an agent on a sipenv problem: a control or correction env, or a single-step inverse
problem (sip/SineInversion-v0, sip/HeatInverse-v0).

    python scripts/train.py sip --time-budget 60
    python scripts/train.py dp --optimizer sgd --lr 1e-2 --iterations 2000
    python scripts/train.py sip --env-id sip/SineInversion-v0 --env-kwargs '{"xi": 32, "phi": 45}'
    python scripts/train.py sip --env-id sip/HeatInverse-v0 --network unet --hidden 16 16 16 16
    python scripts/train.py sip --run-name my-run --iterations 4000 --resume   # extend a run
                                                   # (its env and settings are the saved ones)
    torchrun --standalone --nproc_per_node=2 scripts/train.py dp --batch-size 256  # data-parallel

Writes runs/<run-name>/ (config.json, metrics.jsonl, checkpoint.pt, final_eval.json,
learning_curve.png; under torchrun rank 0 alone writes them: docs/distributed.md). Every setting
is a flag: see `python scripts/train.py <algo> --help`.
A --time-budget alone governs the run; with --iterations too, whichever comes first ends it
(the output and final_eval.json say which: "stopped_by"). Settings, combinations that cannot
work (e.g. supervised on a problem without a reference solution, ppo on a one-step problem),
a --run-name outside --runs-dir and missing optional extras (ppo: 'rl') are refused before
anything is written (exit 2); so are the saved settings of a run to --resume that no longer
validate.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import tyro

from agents import distributed
from agents.checkpoint import CheckpointError
from agents.outputs import check_output_dir, refuse
from agents.registry import ALGORITHMS
from agents.trainer import TrainConfig, TrainingDiverged


def main(argv: list[str] | None = None) -> int:
    configs: dict[str, Callable[..., TrainConfig]] = {
        name: algorithm.config for name, algorithm in ALGORITHMS.items()}
    config: TrainConfig = tyro.extras.subcommand_cli_from_dict(
        configs, prog="train.py", description=__doc__, args=argv)
    algorithm = ALGORITHMS[config.algo]
    try:  # --- every argument and the extras it needs, before any work ---
        config = resumed_env(config, sys.argv[1:] if argv is None else argv)
        config.validate()
        check_output_dir(config.run_dir(), "--runs-dir/--run-name")
        algorithm.check_extras()
        group = distributed.launch(config, algorithm)  # (torchrun only)
    except (ValueError, ImportError) as exc:
        return refuse(exc)
    try:
        with distributed.collective_errors(group):
            return _train(config, group, sys.argv[1:] if argv is None else argv)
    except distributed.DistributedError as exc:
        return refuse(exc, 1)
    except ValueError as exc:  # (a resumed run's batch size that does not split over the ranks)
        if not group.active:
            raise
        return refuse(exc)
    finally:
        distributed.shutdown()


KEPT_ON_RESUME = {"iterations", "time_budget", "resume", "run_name", "runs_dir", "progress"}
"""Flags that take effect on --resume (the run's other settings are its saved ones)."""


def saved_settings(config: TrainConfig) -> dict[str, Any] | None:
    """The settings of the run ``--resume`` continues (its ``config.json``), or ``None`` when
    not resuming or the file is missing or unreadable (the usual errors then say so)."""
    if not config.resume:
        return None
    try:
        saved = json.loads((config.run_dir() / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def resumed_env(config: TrainConfig, argv: list[str]) -> TrainConfig:
    """``config`` with the env of the run it resumes when ``--resume --run-name NAME`` is given
    without ``--env-id``: the run's ``config.json`` names it, so the user need not repeat it
    (the default ``--env-id`` would otherwise be checked against the checkpoint and refused).
    Unchanged otherwise, and when the run or its ``config.json`` is missing or unreadable (the
    usual errors then say so).

    Raises:
        ValueError: If ``--env-id`` is given and is not the run's env.
    """
    saved = saved_settings(config) if config.run_name else None
    env_id = saved.get("env_id") if saved else None
    if not isinstance(env_id, str) or not env_id:
        return config
    if any(token == "--env-id" or token.startswith("--env-id=") for token in argv):
        if config.env_id != env_id:
            raise ValueError(f"--resume continues {config.run_dir()}, which trains on "
                             f"{env_id!r}, not {config.env_id!r}; leave --env-id out (or pass "
                             f"{env_id}), or start a new run with another --run-name.")
        return config
    return replace(config, env_id=env_id)


def schedule_note(config: TrainConfig) -> str | None:
    """A note when ``--resume`` changes the limits of a run with a learning-rate schedule: the
    schedule follows the new limits, so the run continues from a higher rate than where it
    stopped and does not end as a run planned with those limits from the start would."""
    saved = saved_settings(config)
    if not saved or saved.get("lr_schedule", "constant") == "constant":
        return None
    if (saved.get("iterations"), saved.get("time_budget")) == (config.iterations,
                                                              config.time_budget):
        return None
    return (f"note: {config.run_dir()} has --lr-schedule {saved['lr_schedule']}, which follows "
            "--iterations / --time-budget: with the new limits the rest of the schedule is "
            "stretched over them, so the extended run differs from one planned with these "
            "limits from the start.")


def ignored_on_resume(config: TrainConfig, argv: list[str]) -> list[str]:
    """The flags given on the command line that ``--resume`` overrides with the run's saved
    settings (read from its ``config.json``), as ``--flag VALUE (the run's: SAVED)``; empty
    when nothing given differs or the run has no ``config.json``."""
    saved = saved_settings(config)
    if not saved:
        return []
    given = {token[2:].split("=")[0].replace("-", "_") for token in argv
             if token.startswith("--")}
    given |= {name[3:] for name in given if name.startswith("no_")}  # (--no-flag booleans)
    ignored = []
    for name in sorted(given - KEPT_ON_RESUME):
        if name not in saved or not hasattr(config, name):
            continue
        mine = getattr(config, name)
        mine = list(mine) if isinstance(mine, tuple) else mine
        if mine != saved[name]:
            ignored.append(f"--{name.replace('_', '-')} {mine} (the run's: {saved[name]})")
    return ignored


def _train(config: TrainConfig, group: distributed.Context, argv: list[str]) -> int:
    note = schedule_note(config)
    if note and group.is_main:
        print(note, file=sys.stderr)
    ignored = ignored_on_resume(config, argv)
    if ignored and group.is_main:
        print(f"note: --resume continues {config.run_dir()} with its saved settings; ignored: "
              f"{', '.join(ignored)}. Only --iterations and --time-budget extend a run; start "
              "a new run (another --run-name) to change the others.", file=sys.stderr)
    try:
        result = ALGORITHMS[config.algo].train(config, resume=config.resume,
                                               progress=config.progress)
    except (FileExistsError, CheckpointError, ImportError, NotImplementedError) as exc:
        return refuse(exc)
    except TrainingDiverged as exc:
        return refuse(exc, 1)
    if not group.is_main:
        return 0
    print(json.dumps({"run_dir": str(result.run_dir), "iterations": result.iterations,
                      "train_time_s": round(result.train_time, 2),
                      "stopped_by": result.stopped_by, **result.final_eval}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

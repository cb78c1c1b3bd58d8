"""Train an agent on a sipenv control env.

    python scripts/train.py sip --time-budget 60
    python scripts/train.py dp --optimizer sgd --lr 1e-2 --iterations 2000
    python scripts/train.py sip --run-name my-run --iterations 4000 --resume   # extend a run

Writes runs/<run-name>/ (config.json, metrics.jsonl, checkpoint.pt, final_eval.json,
learning_curve.png). Every setting is a flag: see `python scripts/train.py <algo> --help`.
"""

from __future__ import annotations

import json
import sys

import tyro

from agents.checkpoint import CheckpointError
from agents.registry import ALGORITHMS, load_algorithm
from agents.trainer import TrainConfig, TrainingDiverged


def main(argv: list[str] | None = None) -> int:
    configs = {name: load_algorithm(name)[0] for name in ALGORITHMS}
    config: TrainConfig = tyro.extras.subcommand_cli_from_dict(
        configs, prog="train.py", description=__doc__, args=argv)
    try:
        config.validate()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    _, train = load_algorithm(config.algo)
    try:
        result = train(config, resume=config.resume, progress=config.progress)
    except (FileExistsError, CheckpointError, ImportError, NotImplementedError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingDiverged as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"run_dir": str(result.run_dir), "iterations": result.iterations,
                      "train_time_s": round(result.train_time, 2), **result.final_eval},
                     indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

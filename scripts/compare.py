"""Compare SIP with DP (Adam, SGD), supervised and PPO training on one env, honestly.

    python scripts/compare.py                          # full protocol (~30 min on 2 cores)
    python scripts/compare.py --quick                  # ~8 min
    python scripts/compare.py --methods sip dp-adam --time-budget 30
    python scripts/compare.py --from-json runs/compare/compare.json   # re-score, no training

Each method gets its best learning rate from a sweep (scored on validation episodes), then trains
with several seeds; results are read at equal wall-clock and at equal iterations on test episodes.
Writes <out>/compare.json, compare.md (the table) and compare.png (error vs time and iteration).
See agents/compare.py for the protocol.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import tyro

from agents.compare import (
    METHODS,
    CompareConfig,
    quick,
    rescore,
    run_comparison,
    write_report,
)
from agents.registry import get_algorithm


@dataclass
class Args(CompareConfig):
    quick: bool = False
    """Small budgets and two seeds (≈ 8 minutes on 2 CPU cores)."""
    resume: bool = False
    """Reuse the methods already in <out>/compare.json (same settings), train the rest."""
    from_json: Path | None = None
    """Only re-score an earlier compare.json (from its stored curves) and rewrite the table and
    plot next to it; trains nothing."""


def _check_runs(cfg: CompareConfig) -> None:
    """Check each method's training settings as train.py would (env id and kwargs, device,
    widths, seeds) before any run starts, so that a bad flag fails in seconds, not mid-sweep."""
    for name in cfg.methods:
        method = METHODS[name]
        config_cls = get_algorithm(method.algo).config
        for seed in cfg.seeds:
            config_cls(env_id=cfg.env_id, optimizer=method.optimizer,  # type: ignore[arg-type]
                       lr=min(method.lrs), batch_size=cfg.batch_size, hidden=cfg.hidden,
                       seed=seed, device=cfg.device, eval_episodes=cfg.eval_episodes,
                       progress=False).validate()


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(Args, args=argv, description=__doc__)
    if args.from_json is not None:
        try:
            report = rescore(json.loads(args.from_json.read_text()))
        except (OSError, ValueError, KeyError) as exc:
            print(f"error: cannot re-score {args.from_json}: {exc}", file=sys.stderr)
            return 2
        paths = write_report(report, args.from_json.parent)
        print(paths["md"].read_text())
        return 0
    cfg = CompareConfig(**{k: v for k, v in vars(args).items()
                           if k not in ("quick", "from_json", "resume")})
    if args.quick:
        cfg = quick(cfg)
    try:
        cfg.validate()
        _check_runs(cfg)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    previous_path = Path(cfg.out) / "compare.json"
    previous = json.loads(previous_path.read_text()) \
        if args.resume and previous_path.exists() else None
    try:
        report = run_comparison(cfg, out=cfg.out, previous=previous)
    except ImportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    paths = write_report(report, cfg.out)
    print(paths["md"].read_text())
    print("wrote", ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

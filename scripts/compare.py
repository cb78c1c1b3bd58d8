"""Compare SIP with DP (Adam, SGD), supervised and PPO training on one env, honestly.

    python scripts/compare.py                          # full protocol (~30 min on 2 cores)
    python scripts/compare.py --quick                  # ~8 min
    python scripts/compare.py --methods sip dp-adam --time-budget 30

Each method gets its best learning rate from a sweep (scored on validation episodes), then trains
with several seeds; results are read at equal wall-clock and at equal iterations on test episodes.
Writes <out>/compare.json, compare.md (the table) and compare.png (error vs time and iteration).
See agents/compare.py for the protocol.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass

import tyro

from agents.compare import CompareConfig, quick, run_comparison, write_report


@dataclass
class Args(CompareConfig):
    quick: bool = False
    """Small budgets and two seeds (≈ 8 minutes on 2 CPU cores)."""


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(Args, args=argv, description=__doc__)
    cfg = CompareConfig(**{k: v for k, v in vars(args).items() if k != "quick"})
    if args.quick:
        cfg = quick(cfg)
    try:
        cfg.validate()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    report = run_comparison(cfg)
    paths = write_report(report, cfg.out)
    print(paths["md"].read_text())
    print("wrote", ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

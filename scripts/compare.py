"""Compare SIP (objective-weighted and unweighted) with DP (Adam, SGD), supervised and PPO
training on one env, honestly.

    python scripts/compare.py                          # full protocol (≈ 2.5 CPU-hours)
    python scripts/compare.py --quick                  # ≈ 20 min
    python scripts/compare.py --methods sip dp-adam --time-budget 30
    python scripts/compare.py --from-json runs/compare/compare.json   # re-score, no training

Each method gets its best learning rate from a sweep at the reported budget (scored on validation
episodes; the grid is extended past an edge that holds the best), then trains with several
seeds; results are read at equal wall-clock and at equal iterations on test episodes.
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
    CompareConfig,
    check_runs,
    quick,
    rescore,
    run_comparison,
    write_report,
)
from agents.outputs import check_output_dir, refuse


@dataclass
class Args(CompareConfig):
    quick: bool = False
    """Small budgets and two seeds (≈ 20 minutes on an idle core)."""
    resume: bool = False
    """Reuse the methods already in <out>/compare.json (same settings), train the rest."""
    from_json: Path | None = None
    """Only re-score an earlier compare.json (from its stored curves) and rewrite the table and
    plot next to it; trains nothing."""


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(Args, args=argv, description=__doc__)
    if args.from_json is not None:
        try:
            check_output_dir(args.from_json.parent, "--from-json's folder")
            report = rescore(json.loads(args.from_json.read_text()))
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            print(f"error: cannot re-score {args.from_json}: {exc}", file=sys.stderr)
            return 2
        paths = write_report(report, args.from_json.parent)
        print(paths["md"].read_text())
        return 0
    cfg = CompareConfig(**{k: v for k, v in vars(args).items()
                           if k not in ("quick", "from_json", "resume")})
    if args.quick:
        cfg = quick(cfg)
    previous_path = Path(cfg.out) / "compare.json"
    previous = None
    try:  # --- every setting, every run's settings, the output folder and the extras ---
        check_runs(cfg)
        check_output_dir(cfg.out, "--out")
        if args.resume and previous_path.exists():
            try:
                previous = json.loads(previous_path.read_text())
            except (OSError, ValueError) as exc:
                raise ValueError(f"--resume cannot read {previous_path}: {exc}; move it away "
                                 "or drop --resume.") from exc
            if not isinstance(previous, dict) or not isinstance(previous.get("config"), dict):
                raise ValueError(f"--resume: {previous_path} is not a compare.json report; "
                                 "move it away or drop --resume.")
    except (ValueError, ImportError) as exc:
        return refuse(exc)
    report = run_comparison(cfg, out=cfg.out, previous=previous)
    paths = write_report(report, cfg.out)
    print(paths["md"].read_text())
    print("wrote", ", ".join(str(p) for p in paths.values()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

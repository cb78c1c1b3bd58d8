"""Characterise chained SIP for control over the conditioning: SIP (objective-weighted and
unweighted), DP-Adam (and optionally supervised) on sip/ControlledDiffusion-v0 over a grid of
diffusivity ν × horizon T, at equal CPU time — the control analogue of the SIP paper's ξ/φ
sweep.

    python scripts/characterise_sip.py --quick --out docs/results/sip_conditioning  # ≈ 10 min
    python scripts/characterise_sip.py --out runs/characterise          # full: 3 seeds, 60 s
    python scripts/characterise_sip.py --burgers --out runs/char-burgers  # Burgers' ν (slow)
    python scripts/characterise_sip.py --from-json docs/results/sip_conditioning/results.json

Conditioning. The field's Fourier mode ``k`` decays by ``d_k = exp(−ν (2πk/L)² dt)`` per step, so
reaching a target whose finest mode is ``max_mode`` after ``T`` steps asks the inverse for a gain
up to ``κ = exp(ν (2π max_mode/L)² T dt)`` (the target band's largest inverse gain over the
horizon; DP's gradient sees the same ratio between that mode's and the mean mode's
sensitivity). κ is the x-axis; the grid's own largest per-step gain is reported too.

Protocol per (ν, T) cell and method: a learning-rate sweep at the reported budget, seed
``seeds[0]``, scored on validation episodes (``VALIDATION_SEED``), the grid extended past an
edge holding the best up to ``--max-extensions`` times (``agents.compare.extend_grid``); the
best rate's policy — and, for further seeds, policies retrained at that rate — are scored on
separate test episodes (``TEST_SEED``); the table gives the median over seeds. Every run uses one
torch thread and the process CPU clock, so runs in parallel worker processes (``--workers``)
get equal training time. ``--quick`` is a reduced protocol (one seed, 15 s per run, a two-value
grid without extension); its results say so.

Writes <out>/results.json (every run), results.md (the table) and conditioning.png.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import torch
import tyro

from agents.compare import METHODS, extend_grid
from agents.evaluation import evaluate_torch, make_eval_tasks
from agents.outputs import check_output_dir, refuse
from agents.problems import TEST_SEED, VALIDATION_SEED
from agents.registry import get_algorithm

DIFFUSION = "sip/ControlledDiffusion-v0"
BURGERS = "sip/ControlledBurgers-v0"


@dataclass
class Args:
    out: str = "runs/characterise_sip"
    """Output folder (results.json, results.md, conditioning.png)."""
    quick: bool = False
    """Reduced protocol: one seed, 15 s per run, rates (3e-4, 1e-3) without extension, 64
    episodes (≈ 16 CPU-minutes: ≈ 8–10 minutes with 2 workers on 2 idle cores)."""
    burgers: bool = False
    """Sweep sip/ControlledBurgers-v0's viscosity instead (SIP with the Gauss–Newton split;
    ≈ 0.3 s per SIP iteration on one core: hours for the full protocol)."""
    nus: tuple[float, ...] = (0.001, 0.003, 0.01, 0.03)
    """Diffusivities (Burgers: viscosities, default there (0.001, 0.003, 0.01))."""
    horizons: tuple[int, ...] = (8, 16)
    """Horizons T (steps per episode)."""
    methods: tuple[str, ...] = ("sip-objective", "sip-unweighted", "dp-adam")
    """Keys of agents.compare.METHODS (add 'supervised' for the supervised baseline; on Burgers
    the SIP methods use the Gauss–Newton split)."""
    lrs: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3)
    """Initial learning-rate grid of every method."""
    max_extensions: int = 2
    """Most rates added past an edge of the grid that holds the best rate."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds (the sweep uses the first; the others retrain at the best rate)."""
    time_budget: float = 60.0
    """CPU seconds of training per run."""
    batch_size: int = 64
    hidden: tuple[int, ...] = (256, 256)
    eval_episodes: int = 128
    """Validation and test episodes."""
    workers: int = 2
    """Parallel worker processes (one torch thread each)."""
    from_json: Path | None = None
    """Only rewrite the table and plot from an earlier results.json; trains nothing."""


def quick(args: Args) -> Args:
    """The ``--quick`` protocol (see ``Args.quick``)."""
    return replace(args, seeds=args.seeds[:1], time_budget=15.0, lrs=(3e-4, 1e-3),
                   max_extensions=0, eval_episodes=64)


@dataclass(frozen=True)
class Job:
    """One training run: a cell (ν, T), a method, a learning rate and a seed."""

    env_id: str
    nu: float
    horizon: int
    method: str
    lr: float
    seed: int
    time_budget: float
    batch_size: int
    hidden: tuple[int, ...]
    eval_episodes: int

    def env_kwargs(self) -> dict[str, Any]:
        return {"nu": self.nu, "horizon": self.horizon}


def run_job(job: Job) -> dict[str, Any]:
    """Train ``job`` (CPU clock, one thread); its validation and test errors."""
    torch.set_num_threads(1)
    method = METHODS[job.method]
    options = dict(method.options)
    if job.env_id == BURGERS and method.algo == "sip":
        options["split"] = "gauss-newton"
    algorithm = get_algorithm(method.algo)
    config = algorithm.config(env_id=job.env_id, env_kwargs=json.dumps(job.env_kwargs()),
                              optimizer=method.optimizer, lr=job.lr,  # type: ignore[arg-type]
                              batch_size=job.batch_size, hidden=job.hidden, seed=job.seed,
                              eval_seed=VALIDATION_SEED, eval_episodes=job.eval_episodes,
                              eval_every=0, time_budget=job.time_budget, log_every=0,
                              checkpoint_every=0, progress=False, clock="cpu", threads=1,
                              **options)
    result = algorithm.train(config, write=False, progress=False)
    s0, target = make_eval_tasks(job.env_id, range(TEST_SEED, TEST_SEED + job.eval_episodes),
                                 job.env_kwargs())
    test = evaluate_torch(result.policy, result.core, s0, target)
    return {**asdict(job), "validation_error": float(result.final_eval["target_error_mean"]),
            "test_error": float(test.target_error.mean()),
            "force_cost": float(test.force_cost.mean()), "iterations": result.iterations,
            "train_time": result.train_time}


def conditioning(env_id: str, nu: float, horizon: int) -> dict[str, float]:
    """κ of a cell: the target band's largest inverse gain over the horizon, and the grid's
    largest per-step inverse gain (diffusion; for Burgers the diffusion part alone)."""
    from agents.problems import make_problem

    core = make_problem(env_id, {"nu": nu, "horizon": horizon}).core  # type: ignore[union-attr]
    phys = core.physics
    length, dt = float(getattr(phys, "length", 1.0)), float(phys.dt)
    max_mode = float(getattr(core.task_sampler, "max_mode", None)
                     or getattr(core, "max_mode", 8) or 8)
    n = int(phys.n)
    band = nu * (2 * math.pi * max_mode / length) ** 2 * horizon * dt
    top = nu * (2 * math.pi * (n // 2) / length) ** 2 * dt
    return {"kappa": math.exp(band), "log10_kappa": band / math.log(10),
            "grid_gain_per_step": math.exp(top)}


def _run_all(jobs: list[Job], workers: int, log: Any) -> list[dict[str, Any]]:
    if workers <= 1:
        return [_logged(run_job(j), log) for j in jobs]
    with ProcessPoolExecutor(max_workers=workers, mp_context=get_context("spawn")) as pool:
        return [_logged(r, log) for r in pool.map(run_job, jobs)]


def _logged(record: dict[str, Any], log: Any) -> dict[str, Any]:
    log(f"  ν={record['nu']:<6g} T={record['horizon']:<3d} {record['method']:14s} "
        f"lr={record['lr']:<8g} seed={record['seed']} val {record['validation_error']:.3g} "
        f"test {record['test_error']:.3g} ({record['iterations']} it)")
    return record


def characterise(args: Args, log: Any = print) -> dict[str, Any]:
    """Run the protocol of the module docstring; returns the JSON-ready report."""
    env_id = BURGERS if args.burgers else DIFFUSION
    cells = [(nu, t) for t in args.horizons for nu in args.nus]

    def job(nu: float, t: int, method: str, lr: float, seed: int) -> Job:
        return Job(env_id, nu, t, method, lr, seed, args.time_budget, args.batch_size,
                   tuple(args.hidden), args.eval_episodes)

    runs: list[dict[str, Any]] = []
    # --- sweep (seed 0), extended in rounds past an edge that holds the best ---
    pending = [job(nu, t, m, lr, args.seeds[0]) for nu, t in cells for m in args.methods
               for lr in args.lrs]
    for _ in range(args.max_extensions + 1):
        runs += _run_all(pending, args.workers, log)
        pending = []
        for nu, t in cells:
            for m in args.methods:
                scores = {r["lr"]: r["validation_error"] for r in runs
                          if (r["nu"], r["horizon"], r["method"], r["seed"]) ==
                          (nu, t, m, args.seeds[0])}
                scores = {k: (v if math.isfinite(v) else math.inf) for k, v in scores.items()}
                new = extend_grid(list(scores), scores)
                if new is not None and len(scores) < len(args.lrs) + args.max_extensions:
                    pending.append(job(nu, t, m, new, args.seeds[0]))
        if not pending:
            break
    best = {key: _best(runs, key, args.seeds[0]) for key in
            [(nu, t, m) for nu, t in cells for m in args.methods]}
    # --- further seeds at each cell's best rate ---
    runs += _run_all([job(nu, t, m, best[(nu, t, m)], s) for (nu, t, m) in best
                      for s in args.seeds[1:]], args.workers, log)
    table = []
    for nu, t in cells:
        row: dict[str, Any] = {"nu": nu, "horizon": t, **conditioning(env_id, nu, t)}
        for m in args.methods:
            lr = best[(nu, t, m)]
            swept = sorted(r["lr"] for r in runs if (r["nu"], r["horizon"], r["method"],
                                                     r["seed"]) == (nu, t, m, args.seeds[0]))
            errors = [r["test_error"] for r in runs if (r["nu"], r["horizon"], r["method"],
                                                        r["lr"]) == (nu, t, m, lr)]
            finite = [e for e in errors if math.isfinite(e)]
            row[m] = {"best_lr": lr, "best_on_grid_edge": lr in (swept[0], swept[-1]),
                      "test_error_median": statistics.median(finite) if finite else math.nan,
                      "test_errors": errors}
        table.append(row)
    return {"config": {k: (list(v) if isinstance(v, tuple) else v)
                       for k, v in asdict(args).items() if k != "from_json"},
            "env_id": env_id, "table": table, "runs": runs,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S")}


def _best(runs: list[dict[str, Any]], key: tuple[float, int, str], seed: int) -> float:
    nu, t, m = key
    scores = {r["lr"]: (r["validation_error"] if math.isfinite(r["validation_error"])
                        else math.inf) for r in runs
              if (r["nu"], r["horizon"], r["method"], r["seed"]) == (nu, t, m, seed)}
    return min(sorted(scores), key=lambda lr: scores[lr])


def markdown(report: dict[str, Any]) -> str:
    """The table: one row per (ν, T), per method the median test error and best rate."""
    cfg = report["config"]
    methods = cfg["methods"]
    labels = [METHODS[m].label for m in methods]
    lines = [f"Conditioning sweep on `{report['env_id']}`: median over seeds {cfg['seeds']} of "
             f"the mean relative terminal error on {cfg['eval_episodes']} test episodes after "
             f"{cfg['time_budget']:g} CPU seconds of training (one thread), each method at "
             f"its best rate of the grid {cfg['lrs']} (validation episodes, seed "
             f"{cfg['seeds'][0]}, up to {cfg['max_extensions']} rates added past an edge; "
             f"'edge' marks a best rate still on the grid's edge). "
             f"{'**Reduced (--quick) protocol.** ' if cfg['quick'] else ''}"
             f"Made by `scripts/characterise_sip.py` ({report['finished']}).", "",
             "| ν | T | κ (band gain) | " + " | ".join(labels)
             + " | SIP objective / DP-Adam |",
             "|---|---|---|" + "---|" * len(methods) + "---|"]
    for row in report["table"]:
        cells = []
        for m in methods:
            r = row[m]
            edge = ", edge" if r["best_on_grid_edge"] else ""
            cells.append(f"{r['test_error_median']:.3g} (lr {r['best_lr']:g}{edge})")
        ratio = (row["sip-objective"]["test_error_median"]
                 / row["dp-adam"]["test_error_median"]
                 if "sip-objective" in row and "dp-adam" in row else math.nan)
        lines.append(f"| {row['nu']:g} | {row['horizon']} | {row['kappa']:.3g} | "
                     + " | ".join(cells) + f" | {ratio:.2f} |")
    return "\n".join(lines) + "\n"


def plot(report: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = report["config"]
    horizons = sorted({row["horizon"] for row in report["table"]})
    fig, axes = plt.subplots(1, len(horizons), figsize=(5.5 * len(horizons), 4), squeeze=False)
    for ax, t in zip(axes[0], horizons, strict=True):
        rows = sorted((r for r in report["table"] if r["horizon"] == t),
                      key=lambda r: r["kappa"])
        for i, m in enumerate(cfg["methods"]):
            ax.loglog([r["kappa"] for r in rows], [r[m]["test_error_median"] for r in rows],
                      "o-", color=f"C{i}", label=METHODS[m].label)
        ax.set_title(f"T = {t}: ν = " + ", ".join(f"{r['nu']:g}" for r in rows))
        ax.set_xlabel("κ = exp(ν (2π max_mode)² T dt)  (target band's inverse gain)")
        ax.set_ylabel(f"test relative terminal error @ {cfg['time_budget']:g} s CPU")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle(f"{report['env_id']}" + (" (reduced --quick protocol)" if cfg["quick"] else ""))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(report: dict[str, Any], out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=2, default=float) + "\n")
    (out / "results.md").write_text(markdown(report))
    plot(report, out / "conditioning.png")


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(Args, args=argv, description=__doc__)
    if args.from_json is not None:
        report = json.loads(args.from_json.read_text())
        write(report, args.from_json.parent)
        print(markdown(report))
        return 0
    if args.quick:
        args = quick(args)
    if args.burgers and args.nus == Args.nus:
        args = replace(args, nus=(0.001, 0.003, 0.01))
    try:
        unknown = [m for m in args.methods if m not in METHODS]
        if unknown or not args.methods:
            raise ValueError(f"unknown --methods {unknown}; choose from {sorted(METHODS)}.")
        if not args.seeds or not args.nus or not args.horizons or len(args.lrs) < 1:
            raise ValueError("give at least one seed, --nus value, horizon and learning rate.")
        if not (args.time_budget > 0 and args.workers >= 1 and args.max_extensions >= 0):
            raise ValueError("--time-budget must be > 0, --workers ≥ 1, --max-extensions ≥ 0.")
        check_output_dir(args.out, "--out")
    except ValueError as exc:
        return refuse(exc)
    started = time.time()
    report = characterise(args)
    report["wall_seconds"] = time.time() - started
    report["cpu_seconds_of_training"] = sum(r["train_time"] for r in report["runs"])
    write(report, Path(args.out))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())

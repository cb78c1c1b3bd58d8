"""Reproduce the SIP paper's heat-equation inverse problem: SIP vs Adam vs SGD.

    python scripts/reproduce_heat.py --quick --out docs/results/heat   # ≈ 14 min on 2 CPU cores
    python scripts/reproduce_heat.py --out runs/heat-full               # the published protocol

A U-Net (4 levels × 16 filters, circular padding, 37.7 k parameters) reconstructs the initial
temperature ``x*`` (4–10 hot rectangles on 64×64 cells) from its image after diffusion for
``νt = 8`` (``sip/HeatInverse-v0``; ``agents/heat_training.py`` on the one training loop of
``agents/trainer.py``). Every method trains the
same seeded network on the same seeded stream of fresh batches for the same budget of training
work, with its own best learning rate from a two-stage sweep, both stages picked on a fixed
**validation** batch (mean over the last quarter of a run's evaluations, so that one noisy
evaluation does not decide): a coarse decade grid ``coarse_factors`` × its published rate
(SIP and Adam 1e-3, SGD 2e-6) with short runs of ``coarse_budget``, then ``lr_factors`` × the
coarse winner with full runs of ``budget``. The reported metric is the paper's:
``Σ_cells |x − x*|`` averaged over a fixed **test** batch, plus the y-loss ``½‖P(x) − y*‖²``.

Why a coarse stage: our losses are batch means, and the published SGD rate (2e-6) is about 100×
too small for that normalisation; a grid around the published rates alone would hand SGD a rate
far from its best.

The budget counts process CPU time of training work (``--clock cpu``; each run uses one torch
thread, so this is the wall time of an unloaded core) and runs go ``--workers`` at a time in
separate processes; evaluation is outside the budget. ``--iterations N`` also stops every
fine-stage run after N iterations; with ``--budget 0`` that is the only limit, a budget of work
that does not depend on the machine's load (the methods' iterations cost the same here).
Writes ``results.json``, ``results.md``, ``curves.png`` and ``examples.png`` into ``--out``.

If a method's best fine rate is on an edge of the fine grid, the grid is extended past that
edge (full-budget runs, at most ``max_extensions``), so no reported rate sits on the edge of
what was tried (the committed seed-0 quick run picked Adam's rate on the fine grid's lower edge,
before this rule).

``--quick`` changes exactly these settings: ``budget`` 1800 → 120 s, ``coarse_budget`` 300 →
30 s, ``batch_size`` 128 → 32, ``eval_size`` 128 → 64.
"""

from __future__ import annotations

import json
import math
import multiprocessing as mp
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import tyro

from agents.heat_training import METHODS, REFERENCE_LR, heat_config, train_summary
from agents.inverse_training import COLORS, LABELS
from agents.outputs import check_output_dir, refuse
from agents.problems import TEST_SEED, VALIDATION_SEED
from agents.trainer import TrainConfig

PUBLISHED = {"sip": 50.4, "adam": 125.0, "sgd": 118.9}  # Holl, Koltun & Thuerey 2022, Table 1
BAR = 0.6  # issue #5: SIP's test x-error ≤ 0.6 × Adam's and ≤ 0.6 × SGD's


@dataclass
class Args:
    """Reproduce the SIP heat-equation experiment (see the module docstring)."""

    out: str = "runs/heat"
    """Output folder (created; existing result files in it are replaced)."""
    quick: bool = False
    """Small settings that finish in about 14 minutes on 2 CPU cores."""
    methods: tuple[str, ...] = ("sip", "adam", "sgd")
    """Methods to compare: 'sip' and any of adam, sgd, adagrad, adadelta, rmsprop."""
    coarse_factors: tuple[float, ...] = (0.1, 1.0, 10.0, 100.0)
    """Coarse stage: learning rates as factors of each method's published rate (empty: no
    coarse stage; the fine stage is then around the published rate)."""
    coarse_budget: float = 300.0
    """Training budget of each coarse-stage run, in seconds on --clock."""
    lr_factors: tuple[float, ...] = (0.3, 1.0, 3.0)
    """Fine stage: learning rates as factors of the coarse winner."""
    max_extensions: int = 2
    """Fine stage: most rates added past an edge of its grid that holds a method's best (each
    a full-budget run at the grid's spacing; ``agents.compare.extend_grid``), so that no
    reported rate sits on the edge of what was tried."""
    budget: float = 1800.0
    """Training budget of every fine-stage (reported) run, in seconds on --clock (0: none;
    then --iterations must be > 0)."""
    iterations: int = 0
    """Fine stage: stop every run after this many iterations as well (0: no limit). With
    ``--budget 0`` the runs are limited by iterations alone and evaluated at evenly spaced
    iterations: an equal budget of work that does not depend on the machine's load (fair when
    the methods' iterations cost the same, as here)."""
    clock: Literal["cpu", "wall"] = "cpu"
    """'cpu' (process CPU time, robust on a shared machine) or 'wall'."""
    batch_size: int = 128
    """Fresh samples per iteration (paper: 128)."""
    eval_size: int = 128
    """Size of the fixed validation and test batches."""
    eval_points: int = 12
    """Evaluations per run (evenly spaced in training time)."""
    proxy_loss: Literal["l1", "l2"] = "l2"
    """SIP's proxy loss."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """Learning-rate schedule of every run, for every method alike: 'constant', or 'cosine'
    (from the swept rate to 0 over each run's budget; ``agents.trainer.lr_factor``)."""
    seed: int = 0
    """Network initialisation seed (the same for every method)."""
    data_seed: int = 0
    """Training data stream seed (the same for every method)."""
    workers: int = 2
    """Runs trained at the same time, each in its own process with one torch thread (1: one
    after another in this process, with one torch thread)."""
    device: str = "cpu"
    """Torch device ('cpu', 'cuda', ...)."""
    from_json: str | None = None
    """Re-score an existing results.json (pick, table, bars, markdown, plots) without training;
    its runs and settings are kept, --out is where the new files go."""


def quick(args: Args) -> Args:
    """The ``--quick`` settings (see the module docstring)."""
    return replace(args, budget=120.0, coarse_budget=30.0, batch_size=32, eval_size=64)


def validate(args: Args) -> None:
    """Raise ``ValueError`` naming the first invalid setting."""
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown or not args.methods:
        raise ValueError(f"methods must be a non-empty subset of {list(METHODS)}, got "
                         f"{list(args.methods)}.")
    if not args.lr_factors or not all(math.isfinite(f) and f > 0 for f in args.lr_factors):
        raise ValueError(f"lr_factors must be finite numbers > 0, got {args.lr_factors}.")
    if not (isinstance(args.max_extensions, int) and args.max_extensions >= 0):
        raise ValueError(f"max_extensions must be an integer ≥ 0, got {args.max_extensions!r}.")
    if not all(math.isfinite(f) and f > 0 for f in args.coarse_factors):
        raise ValueError(f"coarse_factors must be finite numbers > 0, got {args.coarse_factors}.")
    if not (isinstance(args.iterations, int) and args.iterations >= 0):
        raise ValueError(f"iterations must be an integer ≥ 0, got {args.iterations!r}.")
    for name in ("budget", "coarse_budget"):
        value = getattr(args, name)
        if name == "budget" and value == 0 and args.iterations > 0:
            continue
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number of seconds > 0 (budget may be 0 "
                             f"with iterations > 0), got {value}.")
    if args.workers < 1:
        raise ValueError(f"workers must be ≥ 1, got {args.workers}.")
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"device={args.device!r} but CUDA is not available; use --device cpu.")
    # Every training run's settings as the runs will build them (the learning rates at their
    # extremes; the env once per method), so that nothing fails mid-way.
    factors = [f * g for f in (*args.coarse_factors, 1.0) for g in args.lr_factors]
    for method in args.methods:
        for i, factor in enumerate((min(factors), max(factors))):
            config = run_config(args, method, factor, args.budget, args.iterations)
            config.validate() if i == 0 else config.check_fields()


def run_config(args: Args, method: str, factor: float, budget: float,
               iterations: int = 0) -> TrainConfig:
    """The training configuration of one run at ``lr = factor × published rate`` (at most
    ``iterations``, 0: no limit)."""
    return heat_config(
        method, lr=REFERENCE_LR[method] * factor,
        proxy_loss=args.proxy_loss, lr_schedule=args.lr_schedule,
        batch_size=args.batch_size, seed=args.seed,
        data_seed=args.data_seed, iterations=iterations, time_budget=budget, clock=args.clock,
        eval_points=args.eval_points, eval_size=args.eval_size, device=args.device)


def run_jobs(args: Args, jobs: list[tuple[str, float]], budget: float, stage: str,
             t0: float) -> list[dict[str, Any]]:
    """Train ``(method, factor of the published rate)`` jobs, ``args.workers`` at a time
    (fine-stage runs also stop at ``args.iterations``)."""
    its = args.iterations if stage == "fine" else 0
    limit = " or ".join(([f"{budget:g} s ({args.clock} clock)"] if budget > 0 else [])
                        + ([f"{its} iterations"] if its else []))
    print(f"{stage}: {len(jobs)} runs × {limit}, {args.workers} at a "
          f"time; batch {args.batch_size}, eval batches {args.eval_size}.", flush=True)
    runs: list[dict[str, Any]] = []
    pool: ProcessPoolExecutor | None = None
    if args.workers == 1:  # one at a time, in this process (one torch thread, as a worker)
        results: Any = (train_summary(run_config(args, m, f, budget, its), f)
                        for m, f in jobs)
    else:
        ctx = mp.get_context("spawn")  # fresh interpreters: no inherited torch thread pools
        pool = ProcessPoolExecutor(max_workers=args.workers, mp_context=ctx)
        futures = [pool.submit(train_summary, run_config(args, m, f, budget, its), f)
                   for m, f in jobs]
        results = (fut.result() for fut in futures)
    try:
        for (m, _f), r in zip(jobs, results, strict=True):
            r["stage"] = stage
            runs.append(r)
            print(f"  {LABELS[m]:<11} lr={r['lr']:.1e}: {r['iterations']:5d} it, "
                  f"test x-error {r['final_test_x_error'] or math.inf:8.2f}, val "
                  f"{r['final_val_x_error'] or math.inf:8.2f}   [{time.perf_counter() - t0:5.0f}"
                  f" s elapsed]", flush=True)
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)
    return runs


def _best(runs: list[dict[str, Any]], method: str) -> dict[str, Any]:
    """The run of ``method`` with the lowest validation x-error averaged over the last quarter
    of its evaluations (``late_val_x_error``; diverged runs lose)."""
    return min((r for r in runs if r["method"] == method),
               key=lambda r: r["late_val_x_error"] if r["late_val_x_error"] is not None
               else math.inf)


def _extension(runs: list[dict[str, Any]], method: str) -> float | None:
    """The lr factor to add to ``method``'s fine grid, or None if its best is interior (the
    same validation score as ``_best``)."""
    from agents.compare import extend_grid

    scores = {r["lr_factor"]: (r["late_val_x_error"] if r["late_val_x_error"] is not None
                               else math.inf) for r in runs if r["method"] == method}
    return extend_grid(list(scores), scores)


def run_all(args: Args) -> dict[str, Any]:
    """Both sweep stages, the best fine run per method (validation), and the bar check."""
    t0 = time.perf_counter()
    coarse: list[dict[str, Any]] = []
    centre = dict.fromkeys(args.methods, 1.0)
    if args.coarse_factors:
        coarse = run_jobs(args, [(m, f) for m in args.methods for f in args.coarse_factors],
                          args.coarse_budget, "coarse", t0)
        centre = {m: _best(coarse, m)["lr_factor"] for m in args.methods}
    fine = run_jobs(args, [(m, centre[m] * f) for m in args.methods for f in args.lr_factors],
                    args.budget, "fine", t0)
    for _ in range(args.max_extensions):  # --- past an edge holding the best, all in parallel ---
        jobs = [(m, f) for m in args.methods if (f := _extension(fine, m)) is not None]
        if not jobs:
            break
        fine += run_jobs(args, jobs, args.budget, "fine", t0)
    best = {m: _best(fine, m) for m in args.methods}
    return {"coarse_runs": coarse, "runs": fine,
            "best": {m: {"lr_factor": b["lr_factor"], "lr": b["lr"]} for m, b in best.items()},
            "table": _table(best), "bars": _bars(best), "elapsed_s": time.perf_counter() - t0}


def compact(report: dict[str, Any]) -> dict[str, Any]:
    """Keep the example reconstructions of the best run per method only (as ``best_examples``,
    4 significant digits) — all of them would make ``results.json`` megabytes large."""
    examples = report.setdefault("best_examples", {})
    for r in report["coarse_runs"] + report["runs"]:
        preds = r.pop("examples", None)
        if (preds is not None and r.get("stage") == "fine"
                and report["best"][r["method"]]["lr_factor"] == r["lr_factor"]):
            examples[r["method"]] = np.round(np.asarray(preds), 4).tolist()
    return report


def late_mean(curve: list[float | None]) -> float | None:
    """Mean over the last quarter of a run's evaluations after the initial one (None if any of
    them is missing, i.e. the run diverged)."""
    values = curve[1:] if len(curve) > 1 else curve
    tail = values[-max(1, math.ceil(len(values) / 4)):]
    present = [v for v in tail if v is not None]
    return None if len(present) < len(tail) else float(np.mean(present))


def _table(best: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"method": m, "label": LABELS[m], "lr": b["lr"], "lr_factor": b["lr_factor"],
             "iterations": b["iterations"], "time_per_iteration": b["time_per_iteration"],
             "test_x_error": b["final_test_x_error"], "test_y_loss": b["final_test_y_loss"],
             "test_x_error_late": (late_mean(b["curve"]["test_x_error"])
                                   if b["diverged_at"] is None else None),
             "published_test_x_error": PUBLISHED.get(m)} for m, b in best.items()]


def _bars(best: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sip = best.get("sip", {}).get("final_test_x_error")
    for other in ("adam", "sgd"):
        ref = best.get(other, {}).get("final_test_x_error")
        if sip is None or ref is None or "sip" not in best or other not in best:
            out[f"sip_over_{other}"] = None
            continue
        ratio = sip / ref
        out[f"sip_over_{other}"] = ratio
        out[f"sip_over_{other}_met"] = ratio <= BAR
        sip_late = late_mean(best["sip"]["curve"]["test_x_error"])
        ref_late = late_mean(best[other]["curve"]["test_x_error"])
        out[f"sip_over_{other}_late"] = (None if sip_late is None or ref_late is None
                                         else sip_late / ref_late)
    out["bar"] = BAR
    return out


def environment() -> dict[str, Any]:
    """Versions, machine and threads, recorded with the results."""
    return {"python": sys.version.split()[0], "torch": torch.__version__,
            "numpy": np.__version__, "platform": platform.platform(),
            "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads_per_run": 1,
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "date": datetime.now(timezone.utc).isoformat(timespec="seconds")}


def _fmt(v: float | None, digits: int = 1) -> str:
    return "—" if v is None else f"{v:.{digits}f}"


def _limit(a: dict[str, Any]) -> str:
    """A fine-stage run's limit in words (time, iterations or both)."""
    its = a.get("iterations", 0)
    parts = ([f"{a['budget']:g} s of {a['clock']} time"] if a["budget"] > 0 else []) + (
        [f"{its} iterations"] if its else [])
    schedule = a.get("lr_schedule", "constant")
    return " or ".join(parts) + ("" if schedule == "constant"
                                 else f", {schedule} learning-rate schedule")


def write_markdown(report: dict[str, Any], path: Path) -> None:
    """The readable summary: table beside the published numbers, the bar, the sweep."""
    a = report["args"]
    lines = [
        "# Heat-equation inverse problem: "
        + " vs ".join(LABELS[m] for m in dict.fromkeys(r["method"] for r in report["runs"])),
        "",
        f"Command: `{report['command']}`  ",
        f"Budget per run: {_limit(a)} (1 torch thread), batch "
        f"{a['batch_size']}, test/validation batches of {a['eval_size']}, seeds: network "
        f"{a['seed']}, data {a['data_seed']}, validation {VALIDATION_SEED}, test {TEST_SEED}.  ",
        f"Machine: {report['environment']['platform']}, {report['environment']['cpu_count']} "
        f"cores, torch {report['environment']['torch']}; {a['workers']} "
        f"run{'s' if a['workers'] != 1 else ''} at a time; total "
        f"{report['elapsed_s'] / 60:.1f} min.", "",
        "| method | best lr (×ref) | iterations | s/it | test Σ\\|x − x*\\| | same, mean of the "
        "last quarter | test ½‖P(x) − y*‖² | published Σ\\|x − x*\\| |",
        "|---|---|---|---|---|---|---|---|"]
    for row in report["table"]:
        lines.append(
            f"| {row['label']} | {row['lr']:.1e} (×{row['lr_factor']:g}) | {row['iterations']} "
            f"| {row['time_per_iteration']:.3f} | {_fmt(row['test_x_error'])} | "
            f"{_fmt(row.get('test_x_error_late'))} | "
            f"{_fmt(row['test_y_loss'], 3)} | {_fmt(row['published_test_x_error'])} |")
    bars = report["bars"]
    others = [LABELS[o] for o in ("adam", "sgd") if bars.get(f"sip_over_{o}") is not None]
    against = " and ".join(f"{o}'s" for o in others or [LABELS["adam"], LABELS["sgd"]])
    lines += ["", f"Bar (issue #5): SIP's test x-error ≤ {bars['bar']}× {against}."]
    for other in ("adam", "sgd"):
        ratio = bars.get(f"sip_over_{other}")
        if ratio is not None:
            met = "met" if bars[f"sip_over_{other}_met"] else "NOT met"
            late = bars.get(f"sip_over_{other}_late")
            late_text = "" if late is None else f"; {late:.2f} on the last-quarter means"
            lines.append(f"- SIP / {LABELS[other]} = {ratio:.2f} ({met}; published "
                         f"{PUBLISHED['sip'] / PUBLISHED[other]:.2f}{late_text})")
    lines += _ratio_lines(report)
    lines += ["", "## Learning-rate sweep (x-error: validation, mean of the last quarter of "
              "the evaluations, which picks; final test)", "",
              (f"Coarse stage: {a['coarse_budget']:g} s per run, lr = "
               f"{list(a['coarse_factors'])} × the published rate; fine stage: {_limit(a)} per "
               f"run, lr = {list(a['lr_factors'])} × the coarse winner. Both pick on validation."
               if a["coarse_factors"] else
               f"No coarse stage; fine stage: {_limit(a)} per run, lr = "
               f"{list(a['lr_factors'])} × the published rate. Picks on validation."), "",
              "| stage | method | lr | iterations | validation | test |",
              "|---|---|---|---|---|---|"]
    for r in report["coarse_runs"] + report["runs"]:
        mark = (" ← best" if r["stage"] == "fine"
                and report["best"][r["method"]]["lr_factor"] == r["lr_factor"] else "")
        lines.append(f"| {r['stage']} | {LABELS[r['method']]} | {r['lr']:.1e} | "
                     f"{r['iterations']} | {_fmt(r['late_val_x_error'])} | "
                     f"{_fmt(r['final_test_x_error'])}{mark} |")
    path.write_text("\n".join(lines) + "\n")


def _ratio_lines(report: dict[str, Any]) -> list[str]:
    """Markdown rows of SIP's test x-error over each other method's at every evaluation of the
    chosen runs (evaluations are at the same moments of the budget for every run), or nothing
    without SIP."""
    best = report["best"]
    chosen = {r["method"]: r for r in report["runs"]
              if r["stage"] == "fine" and best[r["method"]]["lr_factor"] == r["lr_factor"]}
    if "sip" not in chosen or len(chosen) < 2:
        return []
    sip = chosen["sip"]["curve"]
    by_time = report["args"]["budget"] > 0
    marks = [f"{t:.0f} s" if by_time else str(int(i))
             for t, i in zip(sip["time"][1:], sip["iteration"][1:], strict=True)]
    lines = ["", "SIP's test x-error over each method's at every evaluation of the chosen runs "
             f"(by {'training time' if by_time else 'iteration'}):", "",
             "| | " + " | ".join(marks) + " |", "|---" * (len(marks) + 1) + "|"]
    for method, run in chosen.items():
        if method == "sip":
            continue
        other = run["curve"]["test_x_error"][1:]
        ratios = [a / b if a is not None and b else None
                  for a, b in zip(sip["test_x_error"][1:], other, strict=False)]
        lines.append(f"| SIP / {LABELS[method]} | "
                     + " | ".join(_fmt(x, 2) for x in ratios) + " |")
    return lines


def write_plots(report: dict[str, Any], out: Path) -> list[Path]:
    """``curves.png`` (test x-error and y-loss vs training time) and ``examples.png``."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    best_runs = {m: next(r for r in report["runs"] if r["method"] == m
                         and r["lr_factor"] == b["lr_factor"]) for m, b in report["best"].items()}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for m, r in best_runs.items():
        c = r["curve"]
        for ax, key in zip(axes, ("test_x_error", "test_y_loss"), strict=True):
            vals = [np.nan if v is None else v for v in c[key]]
            ax.plot(c["time"], vals, color=COLORS[m], marker="o", ms=3,
                    label=f"{LABELS[m]} lr={r['lr']:.0e}")
    axes[0].set_ylabel("test Σ|x − x*| (mean over batch)")
    axes[1].set_ylabel("test ½‖P(x) − y*‖²")
    for ax in axes:
        ax.set_xlabel(f"training time [s, {report['args']['clock']}]")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Heat inverse problem (64×64, νt = 8): best learning rate per method")
    fig.tight_layout()
    curves = out / "curves.png"
    fig.savefig(curves, dpi=110)
    plt.close(fig)

    from sipenv.physics.heat import HeatPhysics
    physics = HeatPhysics()
    gen = torch.Generator().manual_seed(TEST_SEED)
    x_true = physics.sample_initial(report["args"]["eval_size"], gen)[:4]
    y_star = physics.forward(x_true)
    cols = [("x* (true)", x_true.numpy()), ("y* (observed)", y_star.numpy())]
    cols += [(LABELS[m], np.asarray(report["best_examples"][m])) for m in best_runs]
    rows = x_true.shape[0]
    fig, axes = plt.subplots(rows, len(cols), figsize=(2.2 * len(cols), 2.2 * rows))
    vmax = float(x_true.max())
    for i in range(rows):
        for j, (title, data) in enumerate(cols):
            ax = axes[i, j]
            ax.imshow(data[i], cmap="inferno", vmin=0, vmax=vmax if j != 1 else None)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=9)
    fig.tight_layout()
    examples = out / "examples.png"
    fig.savefig(examples, dpi=90)
    plt.close(fig)
    return [curves, examples]


def rescore(path: Path, out: Path) -> int:
    """Recompute the picks, table and bars of a saved report with this script's rules."""
    try:
        report = json.loads(path.read_text())
        runs = report["runs"]
    except (OSError, ValueError, KeyError) as exc:
        print(f"error: cannot read a results.json from {path}: {exc}", file=sys.stderr)
        return 2
    methods = list(dict.fromkeys(r["method"] for r in runs))
    best = {m: _best(runs, m) for m in methods}
    report["best"] = {m: {"lr_factor": b["lr_factor"], "lr": b["lr"]} for m, b in best.items()}
    report["table"], report["bars"] = _table(best), _bars(best)
    report["rescored"] = f"python scripts/reproduce_heat.py --from-json {path} --out {out}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=1))
    write_markdown(report, out / "results.md")
    write_plots(report, out)
    print((out / "results.md").read_text())
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit code (2 if a configuration error was reported, as every
    script here)."""
    args = tyro.cli(Args, args=argv)
    try:
        check_output_dir(args.out, "--out")
    except ValueError as exc:
        return refuse(exc)
    if args.from_json is not None:
        return rescore(Path(args.from_json), Path(args.out))
    if args.quick:
        args = quick(args)
    try:  # --- every setting, before any work ---
        validate(args)
    except ValueError as exc:
        return refuse(exc)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {"command": "python scripts/reproduce_heat.py " + " ".join(
        sys.argv[1:] if argv is None else argv), "args": asdict(args),
        "environment": environment()}
    report.update(run_all(args))
    compact(report)
    (out / "results.json").write_text(json.dumps(report, indent=1))
    write_markdown(report, out / "results.md")
    paths = write_plots(report, out)
    print((out / "results.md").read_text())
    print("wrote", ", ".join(str(p) for p in [out / "results.json", out / "results.md", *paths]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

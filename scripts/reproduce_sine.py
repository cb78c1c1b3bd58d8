"""Reproduce the SIP paper's characterisation on the rotated, ill-conditioned sine.

    python scripts/reproduce_sine.py --quick --out docs/results/sine   # ≈ 14 min on 2 CPU cores
    python scripts/reproduce_sine.py --out runs/sine-full               # full protocol, ≈ 14 h

SIP (saddle-free Newton inverse + Adam on an L1 proxy loss) against SGD, Adam, Adagrad, Adadelta
and RMSprop through the physics (DP with that optimizer; ``agents/inverse_training.py`` on the one
training loop of ``agents/trainer.py``), on ``sip/SineInversion-v0``'s
physics ``P(x) = (sin(γ x̂₁/ξ), γ ξ x̂₂)``, ``x̂ = R_φ x``. Every method trains the same seeded MLP
2 → 32 → 64 → 32 → 2 on the same seeded stream of fresh 100-target batches, for the same
wall-clock budget of training work, with its own best learning rate from a log sweep of
``lr_factors`` × the published rate (picked on a fixed validation batch). The metric is the
paper's: distance from the prediction to the nearest exact solution, averaged over the last 10 % of
iterations on the training batches; a fixed test batch is scored at the end as well.

Experiments (each a flag): (a) error-vs-time curves at ξ ∈ ``curve_xis``, φ = ``curve_phi``;
(b) ξ sweep at φ = ``xi_sweep_phi`` (relative distance x_dist/ξ); (c) φ sweep at ξ =
``phi_sweep_xi``. Writes ``results.json``, ``results.md``, ``curves.png``, ``sweeps.png`` and
``lr_sweep.png`` into ``--out``.

A best factor on an edge of ``lr_factors`` extends the grid past that edge (at most
``max_extensions`` factors). The sweep runs last ``lr_budget`` — shorter than the reported runs
(30 s against 120 s / 600 s; quick: 4 s against 5 s / 20 s): a full-budget sweep of seven
rates × six methods at every point is days of CPU. This differs from the comparison protocol of
``agents/compare.py`` (swept at the reported budget), and the committed sine results predate
the edge extension.

``--quick`` changes exactly these settings (everything else stays as given):
``curve_budget`` 600 → 20 s, ``point_budget`` 120 → 5 s, ``lr_budget`` 30 → 4 s, ``lr_sweep``
each → once (one sweep at ξ = 32, φ = 45°, the factor found reused for every setting; SGD's
reference rate keeps its 1/ξ² scaling), ``xis`` → (1, 3, 10, 32, 64), ``phis`` →
(0, 1, 5, 23, 45).
"""

from __future__ import annotations

import json
import math
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import tyro

from agents.compare import extend_grid
from agents.inverse_training import (
    COLORS,
    LABELS,
    METHODS,
    InverseTrainResult,
    reference_lr,
    sine_config,
    train,
)
from agents.outputs import check_output_dir, refuse
from sipenv.validation import check_finite

PUBLISHED_CURVES = {  # Holl, Koltun & Thuerey (NeurIPS 2022), Fig. 3; 600 s on a GPU; ≈ read off
    1.0: "everything converges; Adam ≈ 4e-4, SIP ≈ 8e-4",
    32.0: "SIP ≈ 1.3e-2; Adam ≈ 0.3; SGD/Adadelta/Adagrad/RMSprop ≈ 1.5–2",
}


@dataclass
class Args:
    out: str = "runs/reproduce_sine"
    """Output directory (created)."""
    quick: bool = False
    """Short budgets and fewer points (≈ 14 minutes on 2 CPU cores); see the module docstring."""
    methods: tuple[str, ...] = METHODS
    """Methods to compare: sip, adam, sgd, adagrad, adadelta, rmsprop."""
    curve_xis: tuple[float, ...] = (1.0, 32.0)
    """(a) ξ values of the error-vs-time curves."""
    curve_phi: float = 45.0
    """(a) φ of the curves (degrees)."""
    curve_budget: float = 600.0
    """(a) wall-clock budget of training work per run (s); the paper used 600 s on a GPU."""
    xis: tuple[float, ...] = (1, 3, 5, 10, 20, 32, 48, 64)
    """(b) ξ values of the conditioning sweep."""
    xi_sweep_phi: float = 0.0
    """(b) φ of the conditioning sweep."""
    phis: tuple[float, ...] = (0, 1, 3, 5, 10, 23, 35, 40, 45)
    """(c) φ values of the rotation sweep (degrees)."""
    phi_sweep_xi: float = 32.0
    """(c) ξ of the rotation sweep."""
    point_budget: float = 120.0
    """(b), (c) budget per run (s)."""
    lr_factors: tuple[float, ...] = (0.0316, 0.1, 0.316, 1.0, 3.16, 10.0, 31.6)
    """Learning-rate sweep: multiples of each method's published rate (SGD: 1e-2/ξ²)."""
    lr_budget: float = 30.0
    """Budget per learning-rate sweep run (s)."""
    max_extensions: int = 2
    """Most factors added past an edge of ``lr_factors`` that holds the best (at the grid's
    spacing; ``agents.compare.extend_grid``), so that no chosen rate sits on the grid's edge."""
    lr_tie_tolerance: float = 0.02
    """Keep the published rate unless another factor is more than this (relative) better."""
    lr_sweep: Literal["each", "once"] = "each"
    """'each': sweep at every (ξ, φ); 'once': sweep at (lr_sweep_xi, lr_sweep_phi), reuse."""
    lr_sweep_xi: float = 32.0
    """ξ of the single sweep when lr_sweep='once'."""
    lr_sweep_phi: float = 45.0
    """φ of the single sweep when lr_sweep='once'."""
    proxy_loss: Literal["l1", "l2"] = "l1"
    """SIP proxy loss (l1 = published code)."""
    batch_size: int = 100
    """Targets per iteration."""
    seed: int = 0
    """Network initialisation seed (same for all methods)."""
    data_seed: int = 0
    """Training target stream seed (same for all methods)."""
    eval_size: int = 1000
    """Size of the validation and test batches."""
    threads: int = 1
    """torch CPU threads."""
    experiments: tuple[str, ...] = ("curves", "xi", "phi")
    """Which experiments to run."""


def quick(args: Args) -> Args:
    """The ``--quick`` variant (see the module docstring for exactly what changes)."""
    return replace(args, curve_budget=20.0, point_budget=5.0, lr_budget=4.0, lr_sweep="once",
                   lr_sweep_xi=32.0, lr_sweep_phi=45.0, xis=(1, 3, 10, 32, 64),
                   phis=(0, 1, 5, 23, 45))


def validate(args: Args) -> None:
    """Raise ``ValueError`` for settings that cannot run."""
    bad = [m for m in args.methods if m not in METHODS]
    if bad or not args.methods:
        raise ValueError(f"methods must be a non-empty subset of {list(METHODS)}, got {bad}.")
    for name in ("curve_budget", "point_budget", "lr_budget"):
        if not getattr(args, name) > 0:
            raise ValueError(f"{name} must be > 0 seconds.")
    if len(args.lr_factors) < 1 or any(not f > 0 for f in args.lr_factors):
        raise ValueError("lr_factors must be positive numbers.")
    if any(not x > 0 for x in (*args.xis, *args.curve_xis, args.phi_sweep_xi)):
        raise ValueError("every ξ must be > 0.")
    bad = [e for e in args.experiments if e not in ("curves", "xi", "phi")]
    if bad:
        raise ValueError(f"experiments must be among curves, xi, phi; got {bad}.")
    if args.threads < 1:
        raise ValueError("threads must be ≥ 1.")
    if not (isinstance(args.max_extensions, int) and args.max_extensions >= 0):
        raise ValueError(f"max_extensions must be an integer ≥ 0, got {args.max_extensions!r}.")
    for name in ("curve_budget", "point_budget", "lr_budget", "curve_phi", "xi_sweep_phi",
                 "phi_sweep_xi", "lr_tie_tolerance", "lr_sweep_xi", "lr_sweep_phi"):
        check_finite(name, getattr(args, name))
    for value in (*args.lr_factors, *args.xis, *args.curve_xis, *args.phis):
        check_finite("every ξ, φ and lr factor", value)
    # Every training run's settings as the runs will build them (one per method and (ξ, φ);
    # the learning rate is checked at its extremes), so that nothing fails mid-way.
    points = {(xi, args.curve_phi) for xi in args.curve_xis}
    points |= {(xi, args.xi_sweep_phi) for xi in args.xis}
    points |= {(args.phi_sweep_xi, phi) for phi in args.phis}
    points.add((args.lr_sweep_xi, args.lr_sweep_phi))
    for method in args.methods:
        for i, (xi, phi) in enumerate(sorted(points)):
            for factor in ((min(args.lr_factors), max(args.lr_factors)) if i == 0 else (1.0,)):
                sine_config(method, xi=float(xi), phi=float(phi),
                            lr=factor * reference_lr(method, xi), time_budget=args.lr_budget,
                            proxy_loss=args.proxy_loss, batch_size=args.batch_size,
                            seed=args.seed, data_seed=args.data_seed, eval_size=args.eval_size,
                            threads=args.threads).validate()


# --- running, with a cache so shared settings train once ---------------------------------------

class Runner:
    """Trains (method, ξ, φ, lr, budget) combinations once each, and picks learning rates."""

    def __init__(self, args: Args) -> None:
        self.args = args
        self.cache: dict[tuple[Any, ...], InverseTrainResult] = {}
        self.curves: dict[tuple[Any, ...], dict[str, list[float]]] = {}
        self.sweeps: dict[tuple[float, float], dict[str, list[dict[str, Any]]]] = {}
        self.best_factor: dict[tuple[float, float, str], float] = {}

    def run(self, method: str, xi: float, phi: float, factor: float,
            budget: float) -> InverseTrainResult:
        key = (method, float(xi), float(phi), float(factor), float(budget))
        if key not in self.cache:
            a = self.args
            cfg = sine_config(method, xi=float(xi), phi=float(phi),
                              lr=factor * reference_lr(method, xi), time_budget=budget,
                              proxy_loss=a.proxy_loss, batch_size=a.batch_size, seed=a.seed,
                              data_seed=a.data_seed, eval_size=a.eval_size, threads=a.threads)
            t0 = time.perf_counter()
            res = train(cfg)
            # Keep what the report needs: the binned curve and x_dist (float32, for the
            # equal-iterations metric); long runs have ~10⁶ iterations.
            self.curves[key] = _binned_curve(res)
            res = replace(res, times=res.times[-1:], y_loss=res.y_loss[-1:],
                          x_dist=res.x_dist.astype(np.float32))
            self.cache[key] = res
            status = (f"diverged at {res.diverged_at}" if res.diverged_at else
                      f"x_dist {res.final_x_dist():.3g} (test {res.test_x_dist:.3g})")
            print(f"  {method:8s} ξ={xi:<4g} φ={phi:<4g} lr={cfg.lr:.3g} ({factor:g}×) "
                  f"{budget:g}s: {res.iterations} it, {status} [{time.perf_counter() - t0:.1f}s]",
                  file=sys.stderr, flush=True)
        return self.cache[key]

    def factor(self, method: str, xi: float, phi: float) -> float:
        """The best learning-rate factor for ``method`` at (ξ, φ), sweeping if needed."""
        a = self.args
        if a.lr_sweep == "once":
            xi, phi = a.lr_sweep_xi, a.lr_sweep_phi
        key = (float(xi), float(phi), method)
        if key not in self.best_factor:
            runs = [(f, self.run(method, xi, phi, f, a.lr_budget)) for f in a.lr_factors]
            for _ in range(a.max_extensions):  # past an edge that holds the best
                scores = {f: (r.val_x_dist if math.isfinite(r.val_x_dist) else math.inf)
                          for f, r in runs}
                new = extend_grid(list(scores), scores)
                if new is None:
                    break
                runs.append((new, self.run(method, xi, phi, new, a.lr_budget)))
            runs.sort(key=lambda fr: fr[0])
            best_f = pick_factor([(f, r.val_x_dist) for f, r in runs], a.lr_tie_tolerance)
            self.best_factor[key] = best_f
            self.sweeps.setdefault((float(xi), float(phi)), {})[method] = [
                {"factor": f, "lr": r.config.lr, "val_x_dist": _num(r.val_x_dist),
                 "iterations": r.iterations, "diverged_at": r.diverged_at} for f, r in runs]
        return self.best_factor[key]

    def best(self, method: str, xi: float, phi: float, budget: float) -> InverseTrainResult:
        """The run of ``method`` at (ξ, φ) with its best learning rate."""
        return self.run(method, xi, phi, self.factor(method, xi, phi), budget)

    def best_curve(self, method: str, xi: float, phi: float,
                   budget: float) -> dict[str, list[float]]:
        """The binned error-vs-time curve of ``best``."""
        self.best(method, xi, phi, budget)
        return self.curves[(method, float(xi), float(phi), self.factor(method, xi, phi),
                            float(budget))]


def pick_factor(scores: list[tuple[float, float]], tolerance: float) -> float:
    """The factor with the lowest validation distance; but when the factor closest to the
    published rate (1×) is within ``tolerance`` (relative) of the best, keep it — where no rate
    learns (all scores equal up to noise), the published rate is kept instead of a random one.
    Diverged runs (inf/NaN) never win unless all diverged."""
    finite = [(f, s) for f, s in scores if math.isfinite(s)]
    if not finite:
        return min(scores, key=lambda fs: abs(math.log(fs[0])))[0]
    best_f, best_s = min(finite, key=lambda fs: fs[1])
    ref_f, ref_s = min(finite, key=lambda fs: abs(math.log(fs[0])))
    return ref_f if ref_s <= best_s * (1 + tolerance) else best_f


def _num(v: float) -> float | None:
    """JSON-safe number (inf/NaN → None)."""
    return float(v) if math.isfinite(v) else None


def _binned_curve(res: InverseTrainResult, bins: int = 150) -> dict[str, list[float]]:
    """x_dist averaged in equal-time bins (what the curve plots show)."""
    if res.iterations == 0:
        return {"time": [], "x_dist": []}
    edges = np.linspace(0.0, float(res.times[-1]), bins + 1)
    idx = np.clip(np.searchsorted(edges, res.times, side="right") - 1, 0, bins - 1)
    sums = np.bincount(idx, weights=res.x_dist, minlength=bins)
    counts = np.bincount(idx, minlength=bins)
    keep = counts > 0
    centers = (edges[:-1] + edges[1:]) / 2
    return {"time": centers[keep].round(4).tolist(),
            "x_dist": (sums[keep] / counts[keep]).tolist()}


def _summary(res: InverseTrainResult, factor: float, upto: int | None = None) -> dict[str, Any]:
    out = {"lr": res.config.lr, "lr_factor": factor, "iterations": res.iterations,
           "train_time": res.train_time, "ms_per_iteration": 1e3 * res.time_per_iteration,
           "x_dist": _num(res.final_x_dist()), "test_x_dist": _num(res.test_x_dist),
           "val_x_dist": _num(res.val_x_dist), "diverged_at": res.diverged_at}
    if upto is not None:
        out["x_dist_equal_iterations"] = _num(res.final_x_dist(upto=upto))
    return out


# --- the experiments ---------------------------------------------------------------------------

def run_all(args: Args) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    runner = Runner(args)
    report: dict[str, Any] = {"config": asdict(args), "curves": {}, "xi_sweep": {},
                              "phi_sweep": {}}
    start = time.perf_counter()
    if "curves" in args.experiments:
        for xi in args.curve_xis:
            print(f"(a) curves at ξ={xi:g}, φ={args.curve_phi:g}°", file=sys.stderr)
            results = {m: runner.best(m, xi, args.curve_phi, args.curve_budget)
                       for m in args.methods}
            n_min = min(r.iterations for r in results.values())
            report["curves"][f"{xi:g}"] = {
                m: {**_summary(r, runner.factor(m, xi, args.curve_phi), upto=n_min),
                    "curve": runner.best_curve(m, xi, args.curve_phi, args.curve_budget)}
                for m, r in results.items()}
    if "xi" in args.experiments:
        for xi in args.xis:
            print(f"(b) ξ sweep: ξ={xi:g}, φ={args.xi_sweep_phi:g}°", file=sys.stderr)
            report["xi_sweep"][f"{xi:g}"] = {
                m: _summary(runner.best(m, xi, args.xi_sweep_phi, args.point_budget),
                            runner.factor(m, xi, args.xi_sweep_phi)) for m in args.methods}
    if "phi" in args.experiments:
        for phi in args.phis:
            print(f"(c) φ sweep: ξ={args.phi_sweep_xi:g}, φ={phi:g}°", file=sys.stderr)
            report["phi_sweep"][f"{phi:g}"] = {
                m: _summary(runner.best(m, args.phi_sweep_xi, phi, args.point_budget),
                            runner.factor(m, args.phi_sweep_xi, phi)) for m in args.methods}
    report["lr_sweeps"] = {f"xi={xi:g},phi={phi:g}": v for (xi, phi), v in runner.sweeps.items()}
    report["timing"] = _timing(runner)
    report["bars"] = _bars(report, args)
    report["runtime_s"] = time.perf_counter() - start
    report["machine"] = {"python": platform.python_version(), "torch": torch.__version__,
                         "threads": args.threads, "cpus": os.cpu_count(),
                         "platform": platform.platform(),
                         "finished": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    return report


def _timing(runner: Runner) -> dict[str, Any]:
    """SIP vs Adam time per iteration over every pair of runs at the same setting and budget."""
    ratios = []
    for (method, xi, phi, _factor, budget), res in runner.cache.items():
        if method != "sip":
            continue
        for (m2, xi2, phi2, _f2, b2), res2 in runner.cache.items():
            if m2 == "adam" and (xi2, phi2, b2) == (xi, phi, budget):
                ratios.append(res.time_per_iteration / res2.time_per_iteration)
    out: dict[str, Any] = {"sip_over_adam_all_pairs_median": _num(float(np.median(ratios)))
                           if ratios else None, "pairs": len(ratios)}
    return out


def _bars(report: dict[str, Any], args: Args) -> dict[str, Any]:
    """The issue's acceptance bars, computed from the report (no tuning, just reading)."""
    bars: dict[str, Any] = {}
    c32 = report["curves"].get("32")
    if c32 and "sip" in c32 and "adam" in c32 and args.curve_phi == 45:
        sip, adam = c32["sip"], c32["adam"]
        ratio = (adam["x_dist"] or math.inf) / max(sip["x_dist"] or math.inf, 1e-300)
        bars["xi32_phi45_adam_over_sip"] = {"value": ratio, "bar": "≥ 10", "met": ratio >= 10}
        t_ratio = sip["ms_per_iteration"] / adam["ms_per_iteration"]
        bars["sip_over_adam_time_per_iteration"] = {
            "value": t_ratio, "bar": "≤ 1.5 (ξ=32, φ=45° curve runs)", "met": t_ratio <= 1.5}
    ps = report["phi_sweep"]
    if ps and args.phi_sweep_xi == 32 and "0" in ps and "45" in ps:
        if all("sip" in v for v in ps.values()):
            vals = [v["sip"]["x_dist"] or math.inf for v in ps.values()]
            spread = max(vals) / min(vals)
            bars["phi_sweep_sip_max_over_min"] = {"value": spread, "bar": "≤ 2",
                                                  "met": spread <= 2}
        if all("adam" in ps[k] for k in ("0", "45")):
            worsen = (ps["45"]["adam"]["x_dist"] or math.inf) / ps["0"]["adam"]["x_dist"]
            bars["phi_sweep_adam_45_over_0"] = {"value": worsen, "bar": "≥ 5",
                                                "met": worsen >= 5}
    return bars


# --- outputs -----------------------------------------------------------------------------------

def _fmt(v: float | None) -> str:
    return "diverged" if v is None else f"{v:.3g}"


def write_markdown(report: dict[str, Any], path: Path) -> None:
    cfg = report["config"]
    lines = [
        "# SIP on the rotated, ill-conditioned sine (`sip/SineInversion-v0`)", "",
        f"Generated by `python scripts/reproduce_sine.py{' --quick' if cfg['quick'] else ''} "
        f"--out {cfg['out']}` in {report['runtime_s'] / 60:.1f} min "
        f"({report['machine']['finished']}, {report['machine']['cpus']} CPUs, "
        f"{cfg['threads']} torch thread(s), torch {report['machine']['torch']}). "
        "Numbers come from the script, not typed in.", "",
        "Metric `x_dist`: mean distance from the prediction to the nearest exact solution, on the "
        "training batches, averaged over the last 10 % of iterations (as published); `test`: "
        f"the same distance on a fixed batch of {cfg['eval_size']} held-out targets after "
        "training. Learning rates: best of "
        f"{list(cfg['lr_factors'])} × the published rate, chosen on a separate validation batch "
        + ("once at ξ = {:g}, φ = {:g}° and reused everywhere".format(
            cfg["lr_sweep_xi"], cfg["lr_sweep_phi"]) if cfg["lr_sweep"] == "once"
           else "at every setting") + f" ({cfg['lr_budget']:g} s per sweep run). Equal "
        "wall-clock budgets of training work per method; iterations reached are reported. "
        f"Same network init (seed {cfg['seed']}) and target stream (seed {cfg['data_seed']}) "
        f"for every method; SIP uses the {cfg['proxy_loss'].upper()} proxy loss.", ""]
    if report["curves"]:
        lines += [f"## (a) Error vs wall-clock, φ = {cfg['curve_phi']:g}° "
                  f"({cfg['curve_budget']:g} s per method)", "",
                  "`equal it.`: the same metric over the last 10 % of the first N iterations, "
                  "N = the fewest iterations any method reached.", ""]
        for xi, res in report["curves"].items():
            lines += [f"**ξ = {xi}** — published (600 s, GPU): "
                      f"{PUBLISHED_CURVES.get(float(xi), 'n/a')}", "",
                      "| method | lr | iterations | ms/iter | x_dist | equal it. | test |",
                      "|---|---|---|---|---|---|---|"]
            for m, r in res.items():
                lines.append(f"| {LABELS[m]} | {r['lr']:.3g} ({r['lr_factor']:g}×) | "
                             f"{r['iterations']} | "
                             f"{r['ms_per_iteration']:.3f} | {_fmt(r['x_dist'])} | "
                             f"{_fmt(r.get('x_dist_equal_iterations'))} | "
                             f"{_fmt(r['test_x_dist'])} |")
            lines.append("")
    methods = list(cfg["methods"])
    if report["xi_sweep"]:
        lines += [f"## (b) Conditioning sweep, φ = {cfg['xi_sweep_phi']:g}°: relative distance "
                  f"x_dist / ξ ({cfg['point_budget']:g} s per run)", "",
                  "Published (600 s): SIP flat ≈ 4e-4 for ξ ≥ 5; SGD degrades to ≈ 6e-2; "
                  "Adagrad/RMSprop ≈ 2e-2.", "",
                  "| ξ | " + " | ".join(LABELS[m] for m in methods) + " |",
                  "|---|" + "---|" * len(methods)]
        for xi, res in report["xi_sweep"].items():
            vals = [None if res[m]["x_dist"] is None else res[m]["x_dist"] / float(xi)
                    for m in methods]
            lines.append(f"| {xi} | " + " | ".join(_fmt(v) for v in vals) + " |")
        lines.append("")
    if report["phi_sweep"]:
        lines += [f"## (c) Rotation sweep, ξ = {cfg['phi_sweep_xi']:g}: x_dist "
                  f"({cfg['point_budget']:g} s per run)", "",
                  "Published (600 s): SIP flat ≈ 1.2e-2; Adam 1.3e-2 (0°) → 5e-2 (1°) → 1e-1 (3°) "
                  "→ 1.6e-1 (10°) → ≈ 0.33 (45°).", "",
                  "| φ | " + " | ".join(LABELS[m] for m in methods) + " |",
                  "|---|" + "---|" * len(methods)]
        for phi, res in report["phi_sweep"].items():
            lines.append(f"| {phi}° | " + " | ".join(_fmt(res[m]["x_dist"]) for m in methods)
                         + " |")
        lines.append("")
    lines += ["## Time per iteration", ""]
    t = report["timing"]
    if t["pairs"]:
        lines += [f"SIP / Adam time per iteration, median over the {t['pairs']} same-setting, "
                  f"same-budget pairs of this run: **{t['sip_over_adam_all_pairs_median']:.2f}** "
                  "(published: ≈ 3). Per-run values are in the tables above.", ""]
    lines += ["## Bars stated in the issue", "", "| bar | value | target | met |",
              "|---|---|---|---|"]
    names = {"xi32_phi45_adam_over_sip": "ξ=32, φ=45°: Adam x_dist / SIP x_dist",
             "sip_over_adam_time_per_iteration": "SIP / Adam time per iteration",
             "phi_sweep_sip_max_over_min": "φ sweep (ξ=32): SIP max / min over φ",
             "phi_sweep_adam_45_over_0": "φ sweep (ξ=32): Adam x_dist(45°) / x_dist(0°)"}
    for k, b in report["bars"].items():
        lines.append(f"| {names.get(k, k)} | {b['value']:.3g} | {b['bar']} | "
                     f"{'yes' if b['met'] else 'no'} |")
    lines.append("")
    if report["lr_sweeps"]:
        lines += ["## Learning-rate sweeps (validation x_dist)", ""]
        for where, sweep in report["lr_sweeps"].items():
            factors = list(cfg["lr_factors"])
            lines += [f"**{where}** ({cfg['lr_budget']:g} s per run; columns: × published lr)",
                      "", "| method | " + " | ".join(f"{f:g}×" for f in factors) + " |",
                      "|---|" + "---|" * len(factors)]
            for m, runs in sweep.items():
                lines.append(f"| {LABELS[m]} | " + " | ".join(_fmt(r["val_x_dist"])
                                                           for r in runs) + " |")
            lines.append("")
    path.write_text("\n".join(lines))


def write_plots(report: dict[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = report["config"]
    paths = []
    if report["curves"]:
        n = len(report["curves"])
        fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 3.4), squeeze=False)
        for ax, (xi, res) in zip(axes[0], report["curves"].items(), strict=True):
            for m, r in res.items():
                if r["curve"]["time"]:
                    ax.semilogy(r["curve"]["time"], r["curve"]["x_dist"], color=COLORS[m],
                                label=LABELS[m], lw=1.2)
            ax.set_title(f"ξ = {xi}, φ = {cfg['curve_phi']:g}°")
            ax.set_xlabel("training wall-clock [s]")
            ax.set_ylabel("x distance to nearest solution")
            ax.grid(True, which="major", axis="y", ls="--", lw=0.5)
        axes[0][-1].legend(fontsize=8)
        fig.tight_layout()
        paths.append(out / "curves.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    if report["xi_sweep"] or report["phi_sweep"]:
        fig, axes = plt.subplots(1, 2, figsize=(8.4, 3.4), squeeze=False)
        ax1, ax2 = axes[0]
        for m in cfg["methods"]:
            if report["xi_sweep"]:
                pts = [(float(xi), r[m]["x_dist"] / float(xi))
                       for xi, r in report["xi_sweep"].items() if r[m]["x_dist"] is not None]
                if pts:
                    ax1.plot(*zip(*pts, strict=True), "o-", color=COLORS[m], label=LABELS[m],
                             ms=3)
            if report["phi_sweep"]:
                pts = [(float(p), r[m]["x_dist"]) for p, r in report["phi_sweep"].items()
                       if r[m]["x_dist"] is not None]
                if pts:
                    ax2.plot(*zip(*pts, strict=True), "o-", color=COLORS[m], label=LABELS[m],
                             ms=3)
        ax1.set(xlabel="conditioning ξ", ylabel="relative x distance x_dist / ξ", yscale="log",
                title=f"φ = {cfg['xi_sweep_phi']:g}°")
        ax2.set(xlabel="rotation φ [°]", ylabel="mean x distance", yscale="log",
                title=f"ξ = {cfg['phi_sweep_xi']:g}")
        for ax in (ax1, ax2):
            ax.grid(True, which="major", axis="y", ls="--", lw=0.5)
        ax2.legend(fontsize=8)
        fig.tight_layout()
        paths.append(out / "sweeps.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    if report["lr_sweeps"]:
        shown = list(report["lr_sweeps"].items())[:4]
        fig, axes = plt.subplots(1, len(shown), figsize=(4.2 * len(shown), 3.4), squeeze=False)
        for ax, (where, sweep) in zip(axes[0], shown, strict=True):
            for m, runs in sweep.items():
                pts = [(r["factor"], r["val_x_dist"]) for r in runs
                       if r["val_x_dist"] is not None]
                if pts:
                    ax.loglog(*zip(*pts, strict=True), "o-", color=COLORS[m], label=LABELS[m],
                              ms=3)
            ax.set(xlabel="lr / published lr", ylabel="validation x distance", title=where)
            ax.grid(True, which="major", ls="--", lw=0.5)
        axes[0][-1].legend(fontsize=8)
        fig.tight_layout()
        paths.append(out / "lr_sweep.png")
        fig.savefig(paths[-1], dpi=120)
        plt.close(fig)
    return paths


def write_report(report: dict[str, Any], out: str | Path) -> list[Path]:
    """Write ``results.json``, ``results.md`` and the PNG plots into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(report, indent=1) + "\n")
    write_markdown(report, out / "results.md")
    return [out / "results.json", out / "results.md", *write_plots(report, out)]


def main(argv: list[str] | None = None) -> int:
    args = tyro.cli(Args, args=argv, description=__doc__)
    if args.quick:
        args = quick(args)
    try:  # --- every setting and the output folder, before any work ---
        validate(args)
        check_output_dir(args.out, "--out")
    except ValueError as exc:
        return refuse(exc)
    report = run_all(args)
    paths = write_report(report, args.out)
    print(Path(paths[1]).read_text())
    print("wrote", ", ".join(str(p) for p in paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())

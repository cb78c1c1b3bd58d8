"""Honest comparison of training methods on one control env.

Protocol (the seeds are the one convention of ``agents.problems``):

1. **Learning-rate sweep at the reported budget.** Every method trains once per learning rate in
   its grid (≥ 4 log-spaced values; ``lrs`` overrides every grid with one shared grid) with seed
   ``seeds[0]``, for ``sweep_budget`` seconds — by default the budget the results are reported
   at (``time_budget``): a rate that is best over a short sweep can be unstable over the full
   run (on ``sip/ControlledDiffusion-v0`` a 20 s sweep picked 3e-3 for SIP, which spikes and
   plateaus over 60 s). Each run is scored on **validation** episodes
   (``env.reset(seed=VALIDATION_SEED + i)``, ``VALIDATION_SEED = 1_000_000``) and the best rate
   is kept. **If the best rate sits on an edge of the grid, the grid is extended** past that
   edge by its own spacing and the new rate is trained, until the best is interior or
   ``max_extensions`` rates were added (the report says which rates were added and whether the
   best is still on an edge).
2. **Final runs.** With its best learning rate, every method trains for each seed (≥ 3 for a
   reported result), and is scored on separate **test** episodes
   (``env.reset(seed=TEST_SEED + i)``, ``TEST_SEED = 2_000_000``) every ``eval_every``
   iterations.
   Each run lasts until it has both used ``time_budget`` seconds of training and done
   ``iterations`` iterations, so the same runs give the error at **equal wall-clock** and at
   **equal iterations**. Each is the mean of the evaluations in the last 10 % of that budget
   (time in ``[0.9 T, T]``, iterations in ``[0.9 K, K]``; the published SIP protocol averages the
   last 10 % too), which is robust to the spikes of a single evaluation. The summary is the
   median over seeds.
3. Same network (architecture, widths, initial weights per seed), same task stream per seed, same
   evaluation episodes for all. PPO iterations are PPO updates (each many env steps), a different
   unit: PPO is compared at equal wall-clock only.

Training time excludes evaluation. Everything runs in one process, one method after another, so
ratios of time per iteration are measured on the same machine in the same run.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from agents.problems import TEST_SEED, VALIDATION_SEED
from agents.registry import get_algorithm
from agents.trainer import SEED_MAX
from sipenv.validation import check_bool, check_choice, check_int, is_int, is_real

__all__ = ["METHODS", "RELATIVE_ERROR", "CompareConfig", "Method", "check_runs",
           "error_description", "extend_grid", "rescore", "run_comparison", "run_config",
           "sweep_rates", "write_report"]


@dataclass(frozen=True)
class Method:
    """A training method: algorithm, optimizer and learning-rate grid."""

    algo: str
    optimizer: str
    lrs: tuple[float, ...]
    label: str
    eval_every: int | None = None
    """Evaluation interval of the final runs, if not the config's (PPO: ~1 update/s)."""
    options: tuple[tuple[str, Any], ...] = ()
    """Extra settings of the algorithm's config, e.g. (("split", "gauss-newton"),)."""


METHODS: dict[str, Method] = {
    "sip": Method("sip", "adam", (1e-4, 3e-4, 1e-3, 3e-3, 1e-2), "SIP (Adam)"),
    # SIP with each proxy weighting made explicit (agents.sip.SIPConfig.weighting), so that a
    # comparison does not depend on the default.
    "sip-objective": Method("sip", "adam", (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
                            "SIP objective-weighted (Adam)",
                            options=(("weighting", "objective"),)),
    "sip-unweighted": Method("sip", "adam", (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
                             "SIP unweighted (Adam)", options=(("weighting", "uniform"),)),
    "dp-adam": Method("dp", "adam", (1e-4, 3e-4, 1e-3, 3e-3, 1e-2), "DP, Adam"),
    "dp-sgd": Method("dp", "sgd", (1e-3, 3e-3, 1e-2, 3e-2, 1e-1), "DP, SGD"),
    "supervised": Method("supervised", "adam", (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
                         "Supervised (Adam)"),
    "ppo": Method("ppo", "adam", (3e-5, 1e-4, 3e-4, 1e-3), "PPO (SB3)", eval_every=5),
    # For physics without spectral factors (e.g. sip/ControlledBurgers-v0): the generic inverse.
    "sip-gn": Method("sip", "adam", (1e-4, 3e-4, 1e-3, 3e-3, 1e-2), "SIP, Gauss-Newton (Adam)",
                     options=(("split", "gauss-newton"),)),
    # Half-inverse gradients (agents/hig.py): η swept, plain steps; κ = 1 is Gauss–Newton.
    "hig": Method("hig", "sgd", (0.1, 0.3, 1.0, 3.0), "HIG (κ = ½, τ = 1e-2)",
                  options=(("truncation", 1e-2),)),
    "gn": Method("hig", "sgd", (0.1, 0.3, 1.0, 3.0), "Gauss-Newton (κ = 1, τ = 1e-2)",
                 options=(("kappa", 1.0), ("truncation", 1e-2))),
    # SIP through the per-step inverse simulators (e.g. the oscillators' implicit RK4 inverse).
    "sip-uniform": Method("sip", "adam", (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
                          "SIP, uniform split (Adam)", options=(("split", "uniform"),)),
    # DP with the long-horizon options of agents/diffphys.py.
    "dp-clip": Method("dp", "adam", (1e-4, 3e-4, 1e-3, 3e-3, 1e-2), "DP, Adam, clipped at 1",
                      options=(("max_grad_norm", 1.0),)),
    "dp-tbptt": Method("dp", "adam", (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
                       "DP, Adam, truncated BPTT (window 16)", options=(("bptt_window", 16),)),
    "sip-gn-objective": Method("sip", "adam", (1e-4, 3e-4, 1e-3, 3e-3, 1e-2),
                               "SIP, Gauss-Newton, objective-weighted (Adam)",
                               options=(("split", "gauss-newton"), ("weighting", "objective"))),
}


@dataclass
class CompareConfig:
    """Settings of a comparison run."""

    env_id: str = "sip/ControlledDiffusion-v0"
    """Env to compare on."""
    env_kwargs: str = "{}"
    """Extra ``gym.make`` keywords of the env as a JSON object, the same for every method (e.g.
    ``'{"sensors": 10, "actuators": 8}'``); checked with the runs before any starts."""
    methods: tuple[str, ...] = ("sip-objective", "sip-unweighted", "dp-adam", "dp-sgd",
                                "supervised", "ppo")
    """Methods (keys of agents.compare.METHODS)."""
    seeds: tuple[int, ...] = (0, 1, 2)
    """Seeds of the final runs (the sweep uses the first)."""
    sweep_budget: float = 0.0
    """Training seconds per learning rate in the sweep; 0 = the reported budget
    (``time_budget``), so the chosen rate is the best one at the budget it is reported at."""
    lrs: tuple[float, ...] = ()
    """One learning-rate grid for every Adam-trained method except PPO (SIP, DP-Adam,
    supervised), instead of each method's own; empty = the methods' grids."""
    max_extensions: int = 3
    """Most rates added past an edge of the grid when the best rate sits on it."""
    time_budget: float = 60.0
    """Equal time budget of the final runs (seconds of training on ``clock``)."""
    iterations: int = 1000
    """Equal-iterations budget of the final runs: each final run trains until it has used
    ``time_budget`` AND done ``iterations`` (lower it for a short run)."""
    eval_every: int = 50
    """Iterations between evaluations of the final runs."""
    eval_episodes: int = 128
    """Test (and validation) episodes."""
    batch_size: int = 64
    """Tasks per iteration, all methods."""
    hidden: tuple[int, ...] = (256, 256)
    """Network widths, all methods."""
    network: str = "mlp"
    """Network of every method ('mlp', or 'cnn'/'unet' for the 2-D envs)."""
    device: str = "cpu"
    """Torch device."""
    out: str = "runs/compare"
    """Output folder for compare.json, compare.md and compare.png."""
    progress: bool = False
    """Progress bars for each training run."""
    threads: int = 1
    """torch CPU threads for every run (1 avoids oversubscribing a small shared machine)."""
    clock: Literal["wall", "cpu"] = "cpu"
    """Training clock of every budget: 'cpu' (this process's CPU time: with one thread it equals
    wall-clock on an idle core and is unaffected by other jobs on a shared machine) or 'wall'
    (use on a GPU, or with several threads)."""

    def validate(self) -> None:
        """Check every setting (type, range, choice, finiteness).

        Raises:
            ValueError: Naming the setting.
        """
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"Unknown methods {unknown}; choose from {sorted(METHODS)}."
                             if unknown else f"Give at least one method of {sorted(METHODS)}.")
        if not self.seeds:
            raise ValueError("Give at least one seed.")
        for seed in self.seeds:
            check_int("seed", seed, minimum=0, maximum=SEED_MAX)
        check_choice("clock", self.clock, ["wall", "cpu"])
        if not (is_real(self.time_budget) and math.isfinite(self.time_budget)
                and self.time_budget > 0):
            raise ValueError(f"time_budget must be > 0 seconds, got {self.time_budget!r}.")
        if not (is_real(self.sweep_budget) and math.isfinite(self.sweep_budget)
                and self.sweep_budget >= 0):
            raise ValueError(f"sweep_budget must be ≥ 0 seconds (0 = time_budget), got "
                             f"{self.sweep_budget!r}.")
        if self.lrs and (len(self.lrs) < 2 or not all(
                is_real(lr) and math.isfinite(lr) and lr > 0 for lr in self.lrs)):
            raise ValueError(f"lrs must be ≥ 2 positive finite learning rates (or empty for "
                             f"each method's grid), got {self.lrs!r}.")
        check_int("max_extensions", self.max_extensions, minimum=0)
        for name in ("iterations", "eval_every", "eval_episodes", "batch_size", "threads"):
            if not (is_int(getattr(self, name)) and getattr(self, name) >= 1):
                raise ValueError(f"{name} must be ≥ 1, got {getattr(self, name)!r}.")
        check_bool("progress", self.progress)
        try:
            kwargs = json.loads(self.env_kwargs) if isinstance(self.env_kwargs, str) else None
        except json.JSONDecodeError:
            kwargs = None
        if not isinstance(kwargs, dict):
            raise ValueError(f"env_kwargs must be a JSON object as text, e.g. "
                             f"'{{\"sensors\": 10}}', got {self.env_kwargs!r}.")
        if not isinstance(self.out, str | Path) or not str(self.out):
            raise ValueError(f"out must be a folder path, got {self.out!r}.")


@dataclass
class RunRecord:
    """One final training run: its evaluation curve and the two budget points."""

    seed: int
    curve: list[dict[str, float]] = field(default_factory=list)
    error_at_time: float = math.nan
    error_at_iterations: float = math.nan
    force_cost_at_time: float = math.nan
    seconds_per_iteration: float = math.nan
    iterations_in_time: int = 0
    error_final: float = math.nan
    """Mean test error of the policy at the end of the run."""
    force_l1_final: float = math.nan
    """Mean Σ_t ‖F_t‖₁ (physical forces, summed over cells and steps) of that policy."""


def grid_of(method: Method, cfg: CompareConfig) -> tuple[float, ...]:
    """The learning-rate grid ``method`` is swept over: ``cfg.lrs`` if given and the method
    trains with Adam (SIP, DP, supervised: rates on one scale), else the method's own (PPO,
    SGD and step-size grids such as HIG's live on other scales)."""
    shared = cfg.lrs and method.optimizer == "adam" and method.algo != "ppo"
    return tuple(sorted(cfg.lrs)) if shared else method.lrs


def sweep_budget_of(cfg: CompareConfig) -> float:
    """Seconds per swept rate: ``cfg.sweep_budget``, or the reported budget if it is 0."""
    return cfg.sweep_budget or cfg.time_budget


def run_config(method: Method, cfg: CompareConfig, *, lr: float, seed: int, eval_seed: int,
               time_budget: float, iterations: int | None, eval_every: int) -> Any:
    """The training config of one run of ``method`` (what ``_train`` trains)."""
    algorithm = get_algorithm(method.algo)
    return algorithm.config(env_id=cfg.env_id, env_kwargs=cfg.env_kwargs,
                            optimizer=method.optimizer, lr=lr,  # type: ignore[arg-type]
                            batch_size=cfg.batch_size, hidden=cfg.hidden,
                            network=cfg.network, seed=seed,
                            device=cfg.device, eval_seed=eval_seed,
                            eval_episodes=cfg.eval_episodes, eval_every=eval_every,
                            iterations=iterations, time_budget=time_budget, log_every=0,
                            checkpoint_every=0, progress=cfg.progress, clock=cfg.clock,
                            threads=cfg.threads, **dict(method.options))


def check_runs(cfg: CompareConfig) -> None:
    """Check every run's training settings (each method, learning rate and seed, with the
    method's options) as ``run_comparison`` will build them, and the extras each method needs,
    before any run starts: a bad flag or a method that cannot train on ``cfg.env_id`` fails in
    seconds, not mid-sweep.

    Raises:
        ValueError: Naming the method and the setting.
        ImportError: For a missing extra (e.g. PPO without the ``rl`` extra).
    """
    cfg.validate()
    for name in cfg.methods:
        method = METHODS[name]
        get_algorithm(method.algo).check_extras()
        try:
            for i, (lr, seed) in enumerate((lr, seed) for lr in grid_of(method, cfg)
                                           for seed in cfg.seeds):
                config = run_config(method, cfg, lr=lr, seed=seed, eval_seed=TEST_SEED,
                                    time_budget=cfg.time_budget, iterations=cfg.iterations,
                                    eval_every=method.eval_every or cfg.eval_every)
                # (the problem is built once per method: the same env for every run)
                config.validate() if i == 0 else config.check_fields()
        except ValueError as exc:
            raise ValueError(f"method {name!r} cannot run: {exc} (Methods: "
                             f"{', '.join(f'{k} = {m.label}' for k, m in METHODS.items())}; "
                             "choose others with --methods.)") from exc


def _train(method: Method, cfg: CompareConfig, *, lr: float, seed: int, eval_seed: int,
           time_budget: float, iterations: int | None, eval_every: int
           ) -> tuple[Any, list[dict]]:
    config = run_config(method, cfg, lr=lr, seed=seed, eval_seed=eval_seed,
                        time_budget=time_budget, iterations=iterations, eval_every=eval_every)
    curve: list[dict] = []
    result = get_algorithm(method.algo).train(config, write=False, progress=cfg.progress,
                                              on_eval=curve.append)
    return result, curve


def extend_grid(lrs: Sequence[float], scores: dict[float, float]) -> float | None:
    """The rate to add to a swept grid, or ``None`` if the best is interior.

    The best-scoring rate (ties: the first in grid order) on the lowest or highest edge of
    ``lrs`` asks for one more rate past that edge, at the grid's own spacing (the ratio of its
    two outermost rates on that side), rounded to 12 significant digits (``8e-4``, not
    ``0.0007999999999999999``, in logs and JSON keys). If every score is infinite (every run
    diverged) there is no best to move towards and nothing is added.

    Args:
        lrs: The rates swept so far (any order).
        scores: Validation error per rate (``inf`` for a diverged run).
    """
    grid = sorted(lrs)
    finite = [lr for lr in grid if math.isfinite(scores[lr])]
    if not finite or len(grid) < 2:
        return None
    best = min(grid, key=lambda lr: scores[lr])
    if best == grid[0]:
        return float(f"{grid[0] * grid[0] / grid[1]:.12g}")
    if best == grid[-1]:
        return float(f"{grid[-1] * grid[-1] / grid[-2]:.12g}")
    return None


def sweep_rates(lrs: Sequence[float], score: Callable[[float], float], *,
                max_extensions: int) -> dict[str, Any]:
    """Score every rate of ``lrs``, then extend the grid past an edge holding the best
    (``extend_grid``) at most ``max_extensions`` times.

    Args:
        lrs: Initial grid (≥ 2 rates).
        score: ``lr → validation error`` (non-finite errors count as ``inf``).
        max_extensions: Most rates added.

    Returns:
        ``{"lrs", "validation_error", "best_lr", "best_on_grid_edge", "added_lrs"}`` with the
        final grid in increasing order.
    """
    scores: dict[float, float] = {}
    for lr in lrs:
        err = score(lr)
        scores[lr] = err if math.isfinite(err) else math.inf
    added: list[float] = []
    while len(added) < max_extensions:
        new = extend_grid(list(scores), scores)
        if new is None:
            break
        err = score(new)
        scores[new] = err if math.isfinite(err) else math.inf
        added.append(new)
    grid = sorted(scores)
    best = min(grid, key=lambda lr: scores[lr])
    return {"lrs": grid, "validation_error": [scores[lr] for lr in grid], "best_lr": best,
            "best_on_grid_edge": best in (grid[0], grid[-1]), "added_lrs": added}


def sweep(method: Method, cfg: CompareConfig, log: Any = print) -> dict[str, Any]:
    """Best learning rate of ``method`` on validation episodes (seed ``cfg.seeds[0]``), swept
    at ``sweep_budget_of(cfg)`` seconds per rate, the grid extended past an edge holding the
    best (``sweep_rates``). Also returns the seconds per iteration of each swept run."""
    speed: dict[float, float] = {}

    def score(lr: float) -> float:
        result, _ = _train(method, cfg, lr=lr, seed=cfg.seeds[0], eval_seed=VALIDATION_SEED,
                           time_budget=sweep_budget_of(cfg), iterations=None, eval_every=0)
        err = result.final_eval["target_error_mean"]
        speed[lr] = result.train_time / max(result.iterations, 1)
        log(f"  sweep {method.label:18s} lr={lr:<8g} validation error {err:.4g} "
            f"({result.iterations} it, {1 / max(speed[lr], 1e-9):.1f} it/s)")
        return float(err)

    result = sweep_rates(grid_of(method, cfg), score, max_extensions=cfg.max_extensions)
    if result["added_lrs"]:
        log(f"  sweep {method.label:18s} grid extended by {result['added_lrs']}")
    if result["best_on_grid_edge"]:
        log(f"  sweep {method.label:18s} best lr {result['best_lr']:g} is still on the grid's "
            f"edge after {cfg.max_extensions} extensions")
    result["seconds_per_iteration"] = [speed.get(lr, math.nan) for lr in result["lrs"]]
    result["budget"] = sweep_budget_of(cfg)
    return result


def final_run(method: Method, cfg: CompareConfig, lr: float, seed: int,
              seconds_per_iteration: float) -> RunRecord:
    """Train until both budgets are used; read the error at each budget from the curve."""
    # Enough iterations to fill the wall-clock budget too (speed estimated in the sweep, +20 %).
    # PPO is compared at equal wall-clock only: its iterations are updates of many env steps.
    needed = math.ceil(1.2 * cfg.time_budget / max(seconds_per_iteration, 1e-6))
    iterations = needed if method.algo == "ppo" else max(cfg.iterations, needed)
    eval_every = method.eval_every or cfg.eval_every
    iterations = math.ceil(iterations / eval_every) * eval_every
    result, curve = _train(method, cfg, lr=lr, seed=seed, eval_seed=TEST_SEED,
                           time_budget=0.0, iterations=iterations, eval_every=eval_every)
    rec = RunRecord(seed=seed, curve=[{k: float(v) for k, v in c.items()} for c in curve],
                    seconds_per_iteration=result.train_time / max(result.iterations, 1))
    rec.error_final, rec.force_l1_final = _final_error_and_force_l1(result, cfg)
    return score_run(rec, method.algo, cfg.time_budget, cfg.iterations)


def _final_error_and_force_l1(result: Any, cfg: CompareConfig) -> tuple[float, float]:
    """Mean test error and mean ``Σ_t ‖F_t‖₁`` (``F_t = force_scale · clip(a_t)``, ``‖·‖₁``
    summed over the cells) of a trained policy on the test episodes."""
    from agents.evaluation import make_eval_tasks

    core = result.core
    seeds = range(TEST_SEED, TEST_SEED + cfg.eval_episodes)
    s0, target = make_eval_tasks(cfg.env_id, seeds, {**json.loads(cfg.env_kwargs),
                                                     "device": cfg.device})
    with torch.no_grad():
        rollout = core.rollout(result.policy, s0, target)
        l1 = core.action_to_force(rollout.actions).abs().sum(dim=(0, 2))
        err = core.target_error(rollout.states[-1], target)
    return float(err.mean()), float(l1.mean())


def _window_mean(curve: list[dict[str, float]], key: str, axis: str, end: float) -> float:
    """Mean of ``key`` over evaluations with ``axis`` in ``[0.9 end, end]`` (else the last one
    ≤ ``end``)."""
    window = [c[key] for c in curve if 0.9 * end <= c[axis] <= end]
    if not window:
        window = [c[key] for c in curve if c[axis] <= end][-1:]
    return statistics.fmean(window) if window else math.nan


def score_run(rec: RunRecord, algo: str, time_budget: float, iterations: int) -> RunRecord:
    """Fill the budget readings of ``rec`` from its evaluation curve (see module docstring)."""
    curve = rec.curve
    rec.error_at_time = _window_mean(curve, "eval_target_error_mean", "time", time_budget)
    rec.force_cost_at_time = _window_mean(curve, "eval_force_cost_mean", "time", time_budget)
    in_time = [c for c in curve if c["time"] <= time_budget]
    rec.iterations_in_time = int(in_time[-1]["iteration"]) if in_time else 0
    reached = any(c["iteration"] >= iterations for c in curve)
    rec.error_at_iterations = math.nan if algo == "ppo" or not reached else _window_mean(
        curve, "eval_target_error_mean", "iteration", iterations)
    return rec


def rescore(report: dict[str, Any]) -> dict[str, Any]:
    """Recompute every run's budget readings and summaries from the stored curves."""
    cfg = report["config"]
    for m in report["methods"].values():
        runs = [score_run(RunRecord(**r), m["algo"], cfg["time_budget"], cfg["iterations"])
                for r in m["runs"]]
        m["runs"] = [vars(r) for r in runs]
        m["summary"] = _summarise(runs)
    return report


def _config_dict(cfg: CompareConfig) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(cfg).items()}


def run_comparison(cfg: CompareConfig, log: Any = print, *, out: str | Path | None = None,
                   previous: dict[str, Any] | None = None) -> dict[str, Any]:
    """Run the whole protocol; returns the JSON-ready report.

    Args:
        cfg: Settings.
        log: Progress printer.
        out: If given, the report so far is written there after every method, so a crash
            keeps the finished methods.
        previous: An earlier report; its methods are reused (not retrained) when it was made
            with the same settings (methods and output folder aside).

    Raises:
        ValueError: For invalid settings.
        ImportError: If a method's algorithm cannot be imported (e.g. PPO without the ``rl``
            extra) — checked before any training starts.
    """
    # Every run's settings and a missing dependency must fail before hours of training.
    check_runs(cfg)
    torch.set_num_threads(cfg.threads)
    ignore = ("methods", "out", "progress")
    reusable: dict[str, Any] = {}
    if previous is not None:
        same = all(previous["config"].get(k) == v for k, v in _config_dict(cfg).items()
                   if k not in ignore)
        if same:
            reusable = previous.get("methods", {})
        else:
            log("previous report was made with other settings: not reused")
    report: dict[str, Any] = {
        "config": _config_dict(cfg),
        "error": error_description(cfg),
        "machine": {"platform": platform.platform(), "python": platform.python_version(),
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "methods": {},
    }
    for name in cfg.methods:
        method = METHODS[name]
        if name in reusable:
            log(f"[{name}] reused from the previous report")
            report["methods"][name] = reusable[name]
            continue
        log(f"[{name}] learning-rate sweep over {list(grid_of(method, cfg))} "
            f"({sweep_budget_of(cfg):g} s each)")
        load_before = _loadavg()
        sw = sweep(method, cfg, log)
        # speed for sizing the final runs: the best rate's sweep run
        spi = sw["seconds_per_iteration"][sw["lrs"].index(sw["best_lr"])]
        runs = []
        for seed in cfg.seeds:
            rec = final_run(method, cfg, sw["best_lr"], seed, spi)
            log(f"  final {method.label:18s} seed={seed} error@{cfg.time_budget:g}s "
                f"{rec.error_at_time:.4g}, error@{cfg.iterations}it "
                f"{rec.error_at_iterations:.4g}, {rec.seconds_per_iteration * 1e3:.1f} ms/it")
            runs.append(rec)
        report["methods"][name] = {"label": method.label, "algo": method.algo,
                                   "optimizer": method.optimizer, "sweep": sw,
                                   "runs": [vars(r) for r in runs],
                                   "summary": _summarise(runs),
                                   # machine load (1-min average) before and after: timings of
                                   # methods measured under different load are not comparable
                                   "loadavg_1min": [load_before, _loadavg()]}
        if out is not None:
            write_report({**report, "finished": "(in progress)"}, out)
    report["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    return report


def _loadavg() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not available on every platform
        return None


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    return statistics.median(finite) if finite else math.nan


def _fmt_load(load: list[float | None] | None) -> str:
    if not load or any(v is None for v in load):
        return "n/a"
    return f"{load[0]:.1f} → {load[1]:.1f}"


def _summarise(runs: list[RunRecord]) -> dict[str, float]:
    return {"error_at_time_median": _median([r.error_at_time for r in runs]),
            "error_at_iterations_median": _median([r.error_at_iterations for r in runs]),
            "force_cost_at_time_median": _median([r.force_cost_at_time for r in runs]),
            "ms_per_iteration_median": 1e3 * _median([r.seconds_per_iteration for r in runs]),
            "error_final_median": _median([r.error_final for r in runs]),
            "force_l1_final_median": _median([r.force_l1_final for r in runs]),
            "iterations_in_time_median": _median([float(r.iterations_in_time) for r in runs])}


def markdown_table(report: dict[str, Any]) -> str:
    """The comparison as a markdown table (medians over seeds)."""
    cfg = report["config"]
    lines = [
        f"| method | best lr (sweep) | error @ {cfg['time_budget']:g} s | "
        f"error @ {cfg['iterations']} it | force cost Σ mean(a²) | ms / iteration | "
        f"iterations in {cfg['time_budget']:g} s | end of run: error, Σ_t‖F_t‖₁ | "
        f"load avg (1 min) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for m in report["methods"].values():
        s, sw = m["summary"], m["sweep"]
        edge = " (grid edge)" if sw["best_on_grid_edge"] else ""
        if sw.get("added_lrs"):
            edge += f" (grid extended by {', '.join(f'{lr:g}' for lr in sw['added_lrs'])})"
        at_it = "n/a (PPO updates)" if m["algo"] == "ppo" else \
            f"{s['error_at_iterations_median']:.3g}"
        lines.append(f"| {m['label']} | {sw['best_lr']:g}{edge} | "
                     f"{s['error_at_time_median']:.3g} | {at_it} | "
                     f"{s['force_cost_at_time_median']:.3g} | "
                     f"{s['ms_per_iteration_median']:.1f} | "
                     f"{s['iterations_in_time_median']:.0f} | "
                     f"{s.get('error_final_median', math.nan):.3g}, "
                     f"{s.get('force_l1_final_median', math.nan):.3g} | "
                     f"{_fmt_load(m.get('loadavg_1min'))} |")
    for name in ("sip", "sip-objective", "sip-unweighted", "sip-gn", "sip-gn-objective"):
        if name in report["methods"] and "dp-adam" in report["methods"]:
            ratio = (report["methods"][name]["summary"]["ms_per_iteration_median"]
                     / report["methods"]["dp-adam"]["summary"]["ms_per_iteration_median"])
            lines.append("")
            where = ("measured in separate processes under different loads, not comparable"
                     if report.get("note") else "same run")
            lines.append(f"{report['methods'][name]['label']} / DP-Adam time per iteration "
                         f"({where}): {ratio:.2f}×")
    return "\n".join(lines) + "\n"


RELATIVE_ERROR = "relative terminal error ‖s_T − s*‖²/‖s*‖²"
"""What a field task's ``target_error`` measures (a core that measures something else says so in
its ``error_description``)."""


def error_description(cfg: CompareConfig) -> str:
    """What the compared env's ``target_error`` measures, for the report's header: its core's
    ``error_description``, else :data:`RELATIVE_ERROR`."""
    import gymnasium as gym

    from sipenv.envs.core import core_of

    env = gym.make(cfg.env_id, **json.loads(cfg.env_kwargs))
    try:
        return str(getattr(core_of(env), "error_description", RELATIVE_ERROR))
    finally:
        env.close()


def write_report(report: dict[str, Any], out: str | Path) -> dict[str, Path]:
    """Write ``compare.json``, ``compare.md`` and ``compare.png`` (error vs time) to ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "compare.json", "md": out / "compare.md", "png": out / "compare.png"}
    paths["json"].write_text(json.dumps(report, indent=2, default=float) + "\n")
    cfg = report["config"]
    extended = ", grid auto-extended at its edges" if "max_extensions" in cfg else ""
    kwargs = cfg.get("env_kwargs", "{}")
    posed = f" with `{kwargs}`" if kwargs not in ("{}", "") else ""
    header = (f"Comparison on `{cfg['env_id']}`{posed}: median over seeds {cfg['seeds']} of "
              f"the mean "
              f"{report.get('error', RELATIVE_ERROR)} on {cfg['eval_episodes']} test "
              f"episodes, averaged over the evaluations in the last 10 % of each budget "
              f"(every {cfg['eval_every']} iterations; PPO every 5 updates); learning rates "
              f"from a {cfg['sweep_budget'] or cfg['time_budget']:g} s-per-value sweep on "
              f"separate validation episodes (seed {cfg['seeds'][0]}{extended}); batch "
              f"{cfg['batch_size']}, {cfg.get('network', 'mlp').upper()} {cfg['hidden']}, "
              f"device {cfg['device']}, "
              f"{cfg.get('threads', 1)} torch thread(s), budgets in "
              f"{cfg.get('clock', 'wall')} seconds of training. Made by `scripts/compare.py` "
              f"({report['started']} – {report['finished']}).\n\n")
    note = f"Note: {report['note']}\n\n" if report.get("note") else ""
    paths["md"].write_text(header + note + markdown_table(report))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for i, m in enumerate(report["methods"].values()):
        colour = f"C{i}"
        for j, run in enumerate(m["runs"]):
            curve = run["curve"]
            if not curve:
                continue
            label = f"{m['label']} (lr {m['sweep']['best_lr']:g})" if j == 0 else None
            axes[0].semilogy([c["time"] for c in curve],
                             [c["eval_target_error_mean"] for c in curve], color=colour,
                             alpha=0.8, lw=1.2, label=label)
            if m["algo"] != "ppo":
                axes[1].semilogy([c["iteration"] for c in curve],
                                 [c["eval_target_error_mean"] for c in curve], color=colour,
                                 alpha=0.8, lw=1.2, label=label)
    axes[0].axvline(cfg["time_budget"], color="k", ls=":", lw=1)
    axes[1].axvline(cfg["iterations"], color="k", ls=":", lw=1)
    axes[0].set_xlim(0, cfg["time_budget"] * 1.05)
    axes[1].set_xlim(0, cfg["iterations"] * 1.05)
    axes[0].set_xlabel(f"training time [s, {cfg.get('clock', 'wall')} clock]")
    axes[1].set_xlabel("iteration")
    for ax in axes:
        ax.set_ylabel("test relative terminal error")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"{cfg['env_id']}: one line per seed")
    fig.tight_layout()
    fig.savefig(paths["png"], dpi=110)
    plt.close(fig)
    return paths


def quick(cfg: CompareConfig) -> CompareConfig:
    """The ``--quick`` variant: small budgets, two seeds (minutes, not an hour); the sweep runs
    at the quick budget too."""
    return replace(cfg, seeds=cfg.seeds[:2], sweep_budget=0.0, time_budget=15.0,
                   iterations=300, eval_every=25, eval_episodes=64)

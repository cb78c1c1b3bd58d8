"""Throughput of ``sip/ControlledDiffusion-v0``: single env, native vector env, SyncVectorEnv, and
the raw physics step.

Every case is warmed up, then timed over several repeats; each repeat runs enough steps to last
about ``--target-s`` seconds (calibrated on the warm-up). Reported per case: the median and the
inter-quartile range (q25–q75) over repeats of the throughput in env-steps per second, where

    throughput = num_envs · steps / wall time,     time per env-step = 1 / throughput.

Environment loops include everything a user pays for: the Gymnasium wrappers added by
``gym.make`` / ``gym.make_vec``, numpy actions in and numpy observations out, and episode resets
(the single env is reset by the loop when an episode terminates; vector envs autoreset).

The headline ratio compares per-env-step throughput of the native vector env at 1024 envs with
Gymnasium's ``SyncVectorEnv`` of 64 single envs, measured in the same run (the project's bar is
≥ 50×).

Usage::

    python benchmarks/bench_envs.py            # full run (~2-3 min on 2 CPU cores)
    python benchmarks/bench_envs.py --quick    # smoke version (~30 s)
    python benchmarks/bench_envs.py --out DIR  # results to DIR/bench_envs.{json,md}
    python benchmarks/bench_envs.py --threads 0  # torch's default thread count (default: 1)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/bench_envs.py` from a checkout
    sys.path.insert(0, str(ROOT))

from benchmarks.common import cap, display_path, environment_info, loadavg  # noqa: E402
from sipenv.physics import DiffusionPhysics  # noqa: E402

ENV_ID = "sip/ControlledDiffusion-v0"
RATIO_BAR = 50.0


@dataclass
class Settings:
    """Benchmark settings (every one is a CLI flag)."""

    quick: bool = False
    """Short run: fewer repeats and shorter repeats."""
    out: Path = Path(__file__).resolve().parent / "results"
    """Folder for ``bench_envs.json`` and ``bench_envs.md``."""
    repeats: int = 9
    """Timed repeats per case (median and IQR are taken over these)."""
    target_s: float = 1.0
    """Approximate wall time of one repeat."""
    warmup_s: float = 0.5
    """Approximate warm-up time per case (also used to calibrate steps per repeat)."""
    threads: int = 1
    """``torch.set_num_threads`` value; 0 keeps torch's default (one thread per core).

    One thread is the default because the per-step tensors are small (``(1024, 64)``): intra-op
    threads barely help, and on a machine shared with other work (e.g. a 2-core box running a
    training job) torch's default thread pool makes every step wait for a descheduled thread —
    measured here at 10–100× slower. Run ``--threads 0`` to see that effect on your machine.
    """
    seed: int = 0
    """Seed of the env resets and of the action bank."""

    def __post_init__(self) -> None:
        if self.quick:
            cap(self, repeats=5, target_s=0.25, warmup_s=0.15)


@dataclass
class Case:
    """One timed case and its results."""

    name: str
    kind: str  # "env" or "physics"
    batch: int  # num_envs, or the physics batch B
    n: int  # grid cells
    steps_per_repeat: int = 0
    repeats: int = 0
    throughput: list[float] = field(default_factory=list)  # item-steps/s per repeat

    @property
    def median(self) -> float:
        return statistics.median(self.throughput)

    @property
    def iqr(self) -> tuple[float, float]:
        q25, q75 = np.percentile(self.throughput, [25, 75])
        return float(q25), float(q75)

    def summary(self) -> dict[str, Any]:
        q25, q75 = self.iqr
        return {**asdict(self), "median_per_s": self.median, "q25_per_s": q25,
                "q75_per_s": q75, "median_us_per_step": 1e6 / self.median}


# --- timing -------------------------------------------------------------------------------------


def _time_case(case: Case, step: Callable[[int], None], settings: Settings) -> Case:
    """Warm up ``step(i)`` (one call = ``case.batch`` item-steps), calibrate, then time it."""
    calls, start = 0, time.perf_counter()
    while calls < 5 or time.perf_counter() - start < settings.warmup_s:
        step(calls)
        calls += 1
    per_call = (time.perf_counter() - start) / calls
    case.steps_per_repeat = max(10, int(settings.target_s / per_call))
    case.repeats = settings.repeats
    for _ in range(settings.repeats):
        start = time.perf_counter()
        for i in range(case.steps_per_repeat):
            step(i)
        elapsed = time.perf_counter() - start
        case.throughput.append(case.batch * case.steps_per_repeat / elapsed)
    return case


def _action_bank(shape: tuple[int, ...], seed: int, size: int = 32) -> list[np.ndarray]:
    """Pre-drawn actions in [-1, 1], so that the timing does not include a random generator."""
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, shape).astype(np.float32) for _ in range(size)]


def _cells(action_space: gym.Space[Any]) -> int:
    """Grid cells N, the length of one env's action."""
    shape = action_space.shape
    assert shape is not None and len(shape) == 1, shape
    return shape[0]


def bench_single_env(settings: Settings) -> Case:
    env = gym.make(ENV_ID)
    n = _cells(env.action_space)
    env.reset(seed=settings.seed)
    bank = _action_bank((n,), settings.seed)

    def step(i: int) -> None:
        _, _, terminated, truncated, _ = env.step(bank[i % len(bank)])
        if terminated or truncated:
            env.reset()

    case = _time_case(Case("single env (gym.make)", "env", 1, n), step, settings)
    env.close()
    return case


def bench_vector_env(settings: Settings, num_envs: int, mode: str) -> Case:
    envs = gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode=mode)
    n = _cells(envs.single_action_space)
    envs.reset(seed=settings.seed)
    bank = _action_bank((num_envs, n), settings.seed, size=8)

    def step(i: int) -> None:
        envs.step(bank[i % len(bank)])

    label = "native vector env" if mode == "vector_entry_point" else "SyncVectorEnv"
    case = _time_case(Case(f"{label} @ {num_envs}", "env", num_envs, n), step, settings)
    envs.close()
    return case


def bench_physics(settings: Settings, batch: int, n: int) -> Case:
    phys = DiffusionPhysics(n=n)
    gen = torch.Generator().manual_seed(settings.seed)
    state = phys.sample_fields(batch, gen)
    force = phys.sample_fields(batch, gen)

    def step(i: int) -> None:
        phys.step(state, force)

    return _time_case(Case(f"DiffusionPhysics.step (B={batch}, N={n})", "physics", batch, n),
                      step, settings)


# --- reporting ----------------------------------------------------------------------------------


def _fmt_rate(x: float) -> str:
    return f"{x:,.0f}"


def markdown(cases: list[Case], ratio: float, env_info: dict[str, Any],
             settings: Settings) -> str:
    lines = [
        f"# `{ENV_ID}` throughput",
        "",
        f"{env_info['date_utc']} · torch {env_info['torch']} "
        f"({env_info['torch_num_threads']} threads) · gymnasium {env_info['gymnasium']} · "
        f"numpy {env_info['numpy']} · {env_info['cpu_count']} CPUs · {env_info['platform']}"
        f" · load average at start {env_info['loadavg_1_5_15_at_start']}"
        + (" · quick run" if settings.quick else ""),
        "",
        "Median over repeats (IQR = q25–q75). Env rows: env-steps/s = num_envs · steps / wall "
        "time. Physics rows: field-steps/s = B · calls / wall time.",
        "",
        "| case | batch | N | repeats × steps | median steps/s | IQR steps/s | µs / step |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for c in cases:
        q25, q75 = c.iqr
        lines.append(
            f"| {c.name} | {c.batch} | {c.n} | {c.repeats} × {c.steps_per_repeat} | "
            f"{_fmt_rate(c.median)} | {_fmt_rate(q25)}–{_fmt_rate(q75)} | "
            f"{1e6 / c.median:.3g} |")
    verdict = "meets" if ratio >= RATIO_BAR else "MISSES"
    lines += [
        "",
        f"**native vector @ 1024 / SyncVectorEnv @ 64 (per-env-step throughput): "
        f"{ratio:.0f}×** ({verdict} the ≥ {RATIO_BAR:.0f}× bar).",
        "",
    ]
    return "\n".join(lines)


def run(settings: Settings) -> dict[str, Any]:
    default_threads = torch.get_num_threads()
    if settings.threads > 0:
        torch.set_num_threads(settings.threads)
    env_info = environment_info()
    env_info["torch_default_num_threads"] = default_threads
    cases: list[Case] = []

    def add(case: Case) -> Case:
        print(f"  {case.name:<42s} {_fmt_rate(case.median):>14s} steps/s", flush=True)
        cases.append(case)
        return case

    print(f"Benchmarking {ENV_ID} ({'quick' if settings.quick else 'full'} run)", flush=True)
    add(bench_single_env(settings))
    native: dict[int, Case] = {}
    for num_envs in (1, 64, 1024):
        native[num_envs] = add(bench_vector_env(settings, num_envs, "vector_entry_point"))
    sync64 = add(bench_vector_env(settings, 64, "sync"))
    for n in (64, 1024):
        add(bench_physics(settings, 64, n))

    ratio = native[1024].median / sync64.median
    result = {
        "env_id": ENV_ID,
        "settings": {k: display_path(v) if isinstance(v, Path) else v
                     for k, v in asdict(settings).items()},
        "environment": env_info,
        "cases": [c.summary() for c in cases],
        "ratio_native1024_over_sync64": ratio,
        "ratio_bar": RATIO_BAR,
        "ratio_meets_bar": ratio >= RATIO_BAR,
    }
    env_info["loadavg_1_5_15_at_end"] = loadavg()
    table = markdown(cases, ratio, env_info, settings)
    settings.out.mkdir(parents=True, exist_ok=True)
    (settings.out / "bench_envs.json").write_text(json.dumps(result, indent=2) + "\n")
    (settings.out / "bench_envs.md").write_text(table)
    print()
    print(table)
    print(f"Wrote {settings.out / 'bench_envs.json'} and {settings.out / 'bench_envs.md'}")
    return result


def parse_args(argv: list[str] | None = None) -> Settings:
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short smoke run (~30 s)")
    parser.add_argument("--out", type=Path, default=defaults.out,
                        help="output folder (default: benchmarks/results)")
    parser.add_argument("--repeats", type=int, default=defaults.repeats,
                        help="timed repeats per case")
    parser.add_argument("--target-s", type=float, default=defaults.target_s,
                        help="approximate seconds per repeat")
    parser.add_argument("--warmup-s", type=float, default=defaults.warmup_s,
                        help="approximate warm-up seconds per case")
    parser.add_argument("--threads", type=int, default=defaults.threads,
                        help="torch.set_num_threads (default 1; 0: torch's default)")
    parser.add_argument("--seed", type=int, default=defaults.seed)
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.target_s <= 0 or args.warmup_s < 0:
        parser.error("--repeats must be ≥ 1, --target-s > 0 and --warmup-s ≥ 0")
    return Settings(quick=args.quick, out=args.out, repeats=args.repeats,
                    target_s=args.target_s, warmup_s=args.warmup_s, threads=args.threads,
                    seed=args.seed)


if __name__ == "__main__":
    run(parse_args())

"""Time controlgym's PDE envs; runs inside controlgym's own virtual environment.

controlgym 1.0.0 pins ``gymnasium==0.29.1`` and ``numpy<2`` and turns every warning into an
exception on import, so ``benchmarks/bench_peers.py`` runs this script in a subprocess with the
interpreter of ``benchmarks/.venv-controlgym`` and reads the one JSON object it prints last.
Only the standard library, numpy and controlgym are used here.

Each env is built with its defaults (``controlgym.make(id)``), reset with a seed, warmed up, and
then timed over ``--repeats`` repeats of about ``--target-s`` seconds each; actions are drawn in
advance uniformly from the action space (``[-1, 1]`` when it is unbounded). An episode end
triggers ``reset()`` inside the timed loop, as a user's loop would.

Usage (from the harness)::

    benchmarks/.venv-controlgym/bin/python benchmarks/peers/controlgym_runner.py \\
        --envs burgers convection_diffusion_reaction --repeats 5 --target-s 1.0
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import warnings
from typing import Any


def _time_env(env_id: str, repeats: int, target_s: float, warmup_s: float,
              seed: int) -> dict[str, Any]:
    import controlgym
    import numpy as np

    env = controlgym.make(env_id)
    env.reset(seed=seed)
    n_action = int(env.action_space.shape[0])
    low, high = env.action_space.low, env.action_space.high
    low = np.where(np.isfinite(low), low, -1.0)
    high = np.where(np.isfinite(high), high, 1.0)
    rng = np.random.default_rng(seed)
    bank = [rng.uniform(low, high).astype(env.action_space.dtype) for _ in range(32)]
    resets = 0

    def step(i: int) -> None:
        nonlocal resets
        _, _, terminated, truncated, _ = env.step(bank[i % len(bank)])
        if terminated or truncated:
            env.reset()
            resets += 1

    calls, start = 0, time.perf_counter()
    while calls < 3 or time.perf_counter() - start < warmup_s:
        step(calls)
        calls += 1
    per_call = (time.perf_counter() - start) / calls
    # Whole episodes per repeat, so that every repeat holds the same number of resets.
    episode = int(getattr(env, "n_steps", 1))
    steps = max(3, int(target_s / per_call))
    steps = episode * -(-steps // episode)
    rates, cpu = [], []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        for i in range(steps):
            step(i)
        rates.append(steps / (time.perf_counter() - start))
        cpu.append((time.process_time() - cpu_start) / steps)
    n_state = int(getattr(env, "n_state", 0)) or int(env.observation_space.shape[0])
    internal = getattr(env, "sample_time", None), getattr(env, "integration_time", None)
    return {
        "env_id": env_id,
        "n_state": n_state,
        "n_action": n_action,
        "n_observation": int(env.observation_space.shape[0]),
        "sample_time": internal[0],
        "integration_time": internal[1],
        "steps_per_repeat": steps,
        "steps_per_episode": episode,
        "repeats": repeats,
        "env_steps_per_s": rates,
        "median_env_steps_per_s": statistics.median(rates),
        "median_cpu_s_per_step": statistics.median(cpu),
        "resets_during_timing": resets,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=["burgers", "convection_diffusion_reaction"])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target-s", type=float, default=1.0)
    parser.add_argument("--warmup-s", type=float, default=0.5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import controlgym
    import gymnasium
    import numpy as np
    import torch

    # controlgym makes every warning an error on import; restore the default so that a
    # harmless warning does not abort the timing.
    warnings.resetwarnings()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out: dict[str, Any] = {
        "versions": {
            "python": sys.version.split()[0],
            "controlgym": getattr(controlgym, "__version__", None) or _dist_version("controlgym"),
            "gymnasium": gymnasium.__version__,
            "numpy": np.__version__,
            "torch": torch.__version__,
        },
        "torch_num_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "platform": platform.platform(),
        "cases": [],
        "errors": {},
    }
    for env_id in args.envs:
        try:
            out["cases"].append(_time_env(env_id, args.repeats, args.target_s, args.warmup_s,
                                          args.seed))
        except Exception as exc:  # report and go on: one broken env must not hide the others
            out["errors"][env_id] = f"{type(exc).__name__}: {exc}"
    print(json.dumps(out))
    return 0


def _dist_version(name: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version(name)
    except PackageNotFoundError:
        return None


if __name__ == "__main__":
    raise SystemExit(main())

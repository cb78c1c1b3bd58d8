"""Time one training iteration on sip/ControlledBurgers-v0: DP versus SIP with the generic
Gauss–Newton inverse, interleaved in one process (so the ratios share the machine's state).

    OMP_NUM_THREADS=1 nice -n 19 python docs/results/burgers/iteration_timing.py --reps 8

One iteration = loss on a batch of 64 tasks + backward + Adam step (the batch is drawn once per
repetition and shared by all methods; drawing it is timed separately as "sample"). Repeated with
the physics' hand-written derivatives (default) and with plain autograd. Writes
iteration_timing.json next to this file.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch

from agents import diffphys, sip
from agents.networks import make_network
from sipenv.envs.controlled_burgers import make_core

ENV = "sip/ControlledBurgers-v0"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=8)
    parser.add_argument("--out", default=str(Path(__file__).with_name("iteration_timing.json")))
    args = parser.parse_args()
    torch.set_num_threads(1)
    report: dict[str, object] = {"machine": platform.platform(), "torch": torch.__version__,
                                 "reps": args.reps, "unit": "ms, median"}
    for analytic in (True, False):
        core = make_core()
        core = replace(core, physics=replace(core.physics, analytic_derivatives=analytic))
        gen = torch.Generator().manual_seed(0)
        policy = make_network("mlp", core.obs_dim, core.n, hidden=(256, 256), seed=0)
        optimizer = torch.optim.Adam(policy.parameters(), 1e-3)
        methods = {"dp": (diffphys.loss_fn, diffphys.DPConfig(env_id=ENV))}
        for k in (2, 4, 8):
            methods[f"sip-gn{k}"] = (sip.loss_fn, sip.SIPConfig(env_id=ENV, split="gauss-newton",
                                                                gn_iterations=k))
        times: dict[str, list[float]] = {k: [] for k in (*methods, "sample")}
        for rep in range(args.reps + 1):  # the first repetition warms up
            t0 = time.perf_counter()
            s0, target = core.sample_tasks(64, gen)
            if rep:
                times["sample"].append(time.perf_counter() - t0)
            for name, (loss_fn, config) in methods.items():
                t0 = time.perf_counter()
                loss, _ = loss_fn(policy, core, s0, target, config)  # type: ignore[operator]
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                if rep:
                    times[name].append(time.perf_counter() - t0)
        med = {k: round(1e3 * statistics.median(v), 1) for k, v in times.items()}
        ratios = {f"{k}/dp": round(med[k] / med["dp"], 2) for k in methods if k != "dp"}
        ratios_with_sampling = {f"{k}/dp": round((med[k] + med["sample"])
                                                 / (med["dp"] + med["sample"]), 2)
                                for k in methods if k != "dp"}
        key = "analytic_derivatives" if analytic else "plain_autograd"
        report[key] = {"median_ms": med, "ratio": ratios,
                       "ratio_including_sampling": ratios_with_sampling}
        print(key, json.dumps(report[key]), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Throughput of data-parallel training (``agents.distributed``): samples per second of SIP and DP
on ``sip/ControlledDiffusion-v0`` at a global batch of 256 and on ``sip/ShapeTransition-v0``
(16×16 cells, 8 steps, the GroupNorm U-Net ``unet-gn``, SIP with the Gauss–Newton split) at a
global batch of 32, in 1 and 2 processes of one torch thread each.

Every case runs ``agents.trainer.run_training`` itself, as ``scripts/train.py`` would: 2
processes are ranks of a gloo process group on 127.0.0.1 (forked from this script, as
``torchrun`` would start them), each training on its half of every batch with the gradients
averaged by ``DistributedDataParallel``; 1 process is a plain run without a process group.
Throughput is measured on the wall clock over the timed iterations (after warm-up), everything
in the loop included (sampling, loss, backward, all-reduce, update, metrics):

    samples/s = batch_size · timed iterations / wall time.

Cases alternate (1, 2, 1, 2, …) over ``--repeats`` repeats so that a change in the machine's
load hits both alike; the tables give the median and every repeat, and the headline is the
ratio of the medians (the issue's bar, on an idle 2-core machine: ≥ 1.6× for DP). Beside it, the
single-process costs that predict the scaling: one iteration at the whole batch ``B`` and at
half of it, ``B/2``, and the all-reduce of the network's gradients between 2 ranks; the ideal
2-process speedup is ``t(B) / (t(B/2) + t_allreduce)``. A control case runs two plain processes
at ``B/2`` side by side without any communication: the most any 2-process scheme can reach on
this machine.

Usage::

    python benchmarks/bench_distributed.py            # full run (~3 min on 2 idle cores)
    python benchmarks/bench_distributed.py --quick    # smoke version (~2 min)
    python benchmarks/bench_distributed.py --out DIR  # results to DIR/bench_distributed.{json,md}

Needs ``fork`` (Linux, macOS). Run it on an otherwise idle machine: with other work on the
cores, the second process competes for a core and the ratio says little (the load average is
recorded).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import pickle
import socket
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import gymnasium as gym
import torch
import torch.distributed as dist

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/bench_distributed.py` from a checkout
    sys.path.insert(0, str(ROOT))

from agents.registry import get_algorithm  # noqa: E402
from agents.trainer import build_network, run_training  # noqa: E402
from benchmarks.common import display_path, environment_info, loadavg  # noqa: E402

ENV_ID = "sip/ControlledDiffusion-v0"
LATER_ENV_ID = "sip/ShapeTransition-v0"
FLOW_SETTINGS: dict[str, Any] = {
    "network": "unet-gn", "hidden": (16, 16, 16),
    "env_kwargs": json.dumps({"shape": [16, 16], "horizon": 8, "kinds": ["circle"],
                              "size_range": [0.15, 0.25]})}
"""Training settings of the 2-D flow cases (the task and network of
``scripts/reproduce_shape_transition.py --quick``); SIP there uses the Gauss–Newton split."""
ALGOS = ("sip", "dp")
BAR = 1.6
"""The issue's bar: 2 processes ≥ 1.6× the samples/s of one, DP at batch 256 (idle machine)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line settings (``--quick`` shortens every run)."""
    class Formatter(argparse.ArgumentDefaultsHelpFormatter,
                    argparse.RawDescriptionHelpFormatter):
        """The description as written, and every option's default in its help."""

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=Formatter)
    p.add_argument("--quick", action="store_true", help="short smoke run")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results",
                   help="folder of bench_distributed.{json,md}")
    p.add_argument("--batch-size", type=int, default=256,
                   help=f"global batch on {ENV_ID}")
    p.add_argument("--flow-batch-size", type=int, default=32,
                   help=f"global batch on {LATER_ENV_ID}")
    p.add_argument("--flow-iterations", type=int, default=None,
                   help=f"timed iterations per run on {LATER_ENV_ID} (≈ 0.4 s each for DP, "
                        "0.6 s for SIP on one core); None: 6 (2 with --quick)")
    p.add_argument("--no-flow", action="store_true", help=f"skip {LATER_ENV_ID}")
    p.add_argument("--repeats", type=int, default=None,
                   help="repeats per case; None: 3 (1 with --quick)")
    p.add_argument("--iterations", type=int, default=None,
                   help=f"timed iterations per run on {ENV_ID}; None: 20 (4 with --quick)")
    p.add_argument("--device", default="cpu",
                   help="cpu (gloo), or cuda (NCCL, rank r on cuda:r; the 2-process cases need "
                        "2 GPUs and are skipped with fewer)")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.iterations = args.iterations or (4 if args.quick else 20)
    args.flow_iterations = args.flow_iterations or (2 if args.quick else 6)
    args.warmup = 2 if args.quick else 3
    if args.batch_size % 2 or args.flow_batch_size % 2:
        p.error("--batch-size and --flow-batch-size must be even (they are split over 2 "
                "processes)")
    return args


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _settings(env_id: str, algo: str) -> dict[str, Any]:
    """The training settings of a case besides the batch (the flow's network and split)."""
    if env_id != LATER_ENV_ID:
        return {}
    return {**FLOW_SETTINGS, **({"split": "gauss-newton"} if algo == "sip" else {})}


def _train_rate(env_id: str, algo: str, batch: int, warmup: int, timed: int,
                device: str) -> tuple[float, float]:
    """Samples/s of ``run_training`` over the timed iterations: on the wall clock, and on the
    CPU time of the busiest process (what an idle machine's wall clock would show)."""
    marks: dict[int, tuple[float, float]] = {}

    def mark(iteration: int, *_: Any) -> None:
        if iteration in (warmup, warmup + timed):
            marks[iteration] = (time.perf_counter(), time.process_time())

    algorithm = get_algorithm(algo)
    config = algorithm.config(env_id=env_id, batch_size=batch, iterations=warmup + timed,
                              eval_episodes=8, log_every=10**6, checkpoint_every=0,
                              progress=False, threads=1, device=device,
                              **_settings(env_id, algo))
    run_training(config, algorithm, write=False, progress=False, on_iteration=mark)
    wall = marks[warmup + timed][0] - marks[warmup][0]
    cpu = torch.tensor([marks[warmup + timed][1] - marks[warmup][1]], dtype=torch.float64)
    if dist.is_initialized():
        cpu = cpu.to(device)
        dist.all_reduce(cpu, op=dist.ReduceOp.MAX)
    return batch * timed / wall, batch * timed / float(cpu.item())


def _allreduce_s(n: int, device: str, repeats: int = 50) -> float:
    """Seconds of one all-reduce of ``n`` float32 (the network's gradients) in this group."""
    grad = torch.zeros(n, device=device)
    dist.all_reduce(grad)
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(repeats):
        dist.all_reduce(grad)
    if grad.is_cuda:
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / repeats


def _rank(rank: int, world: int, port: int, folder: str, job: dict[str, Any]) -> None:
    """One forked process: joins a process group when ``world`` > 1 (unless the job says
    ``group: False``), runs ``job``, writes its result to ``folder``."""
    torch.set_num_threads(1)
    os.environ.update({"GLOO_SOCKET_IFNAME": "lo", "LOCAL_RANK": str(rank)})
    code = 0
    result: Any = None
    try:
        device = job["device"]
        if device == "cuda":
            torch.cuda.set_device(rank)
        if world > 1 and job.get("group", True):
            dist.init_process_group("nccl" if device == "cuda" else "gloo",
                                    init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                    world_size=world, timeout=timedelta(seconds=120))
        if job["kind"] == "train":
            result = _train_rate(job["env_id"], job["algo"], job["batch"], job["warmup"],
                                 job["timed"], device)
        else:
            result = _allreduce_s(job["n"], device)
    except BaseException as exc:
        result, code = f"error: {type(exc).__name__}: {exc}", 1
    finally:
        with open(os.path.join(folder, f"result{rank}.pkl"), "wb") as f:
            pickle.dump(result, f)
        if dist.is_initialized():
            dist.destroy_process_group()
    os._exit(code)


def run_job(world: int, job: dict[str, Any], timeout: float = 600.0) -> Any:
    """Run ``job`` in ``world`` fresh forked processes; rank 0's result (every process's, as a
    list, for a job without a process group).

    Raises:
        RuntimeError: If a process fails or runs past ``timeout`` seconds.
    """
    ctx = mp.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="bench-ddp-") as folder:
        port = _free_port()
        procs = [ctx.Process(target=_rank, args=(r, world, port, folder, job))
                 for r in range(world)]
        for p in procs:
            p.start()
        end = time.monotonic() + timeout
        for p in procs:
            p.join(max(end - time.monotonic(), 0.1))
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
        results = []
        for r in range(world):
            path = Path(folder) / f"result{r}.pkl"
            results.append(pickle.loads(path.read_bytes()) if path.exists()
                           else "error: no result")
    failed = [r for r in results if isinstance(r, str)]
    if failed or any(p.exitcode != 0 for p in procs):
        raise RuntimeError(f"{world}-process job {job} failed: {failed} (exit codes "
                           f"{[p.exitcode for p in procs]})")
    return results[0] if job.get("group", True) else results


def _cuda_count() -> int:
    """GPUs on this machine, asked in a child (so that this process never initialises CUDA,
    which would break the forked workers)."""
    ctx = mp.get_context("spawn")
    with ctx.Pool(1) as pool:
        return int(pool.apply(torch.cuda.device_count))


def _gradient_size(algo: str, env_id: str) -> int:
    algorithm = get_algorithm(algo)
    config = algorithm.config(env_id=env_id, **_settings(env_id, algo))
    spec = config.make_problem().network_spec(config.network, tuple(config.hidden))
    return sum(p.numel() for p in build_network(spec).parameters())


def measure(args: argparse.Namespace) -> dict[str, Any]:
    """Every case; see the module docstring."""
    refused = None if args.no_flow else _refusal(LATER_ENV_ID)
    env_ids = [ENV_ID] + ([] if args.no_flow or refused else [LATER_ENV_ID])
    results: dict[str, Any] = {"cases": [], "costs": []}
    # (a forked child cannot use CUDA once this process has: only the children touch it)
    worlds = (1, 2) if args.device == "cpu" or _cuda_count() >= 2 else (1,)
    if worlds == (1,):
        results["note_device"] = "fewer than 2 GPUs: only single-process costs were measured"
    # On a GPU the CPU time is not the work; costs are taken on the wall clock there.
    cost_clock = 1 if args.device == "cpu" else 0
    for env_id in env_ids:
        b = args.flow_batch_size if env_id == LATER_ENV_ID else args.batch_size
        for algo in ALGOS:
            flow = env_id == LATER_ENV_ID
            base = {"kind": "train", "env_id": env_id, "algo": algo,
                    "warmup": 1 if flow else args.warmup,
                    "timed": args.flow_iterations if flow else args.iterations,
                    "device": args.device}
            wall: dict[int, list[float]] = {w: [] for w in worlds}
            cpu: dict[int, list[float]] = {w: [] for w in worlds}
            half: list[float] = []
            independent: list[float] = []
            lockstep: list[float] = []
            for rep in range(args.repeats):
                for world in worlds:
                    w, c = run_job(world, {**base, "batch": b})
                    wall[world].append(w)
                    cpu[world].append(c)
                    print(f"{env_id} {algo} {world} process(es), repeat {rep + 1}: {w:.0f} "
                          f"samples/s (wall), {c:.0f} (CPU time)", flush=True)
                half.append(run_job(1, {**base, "batch": b // 2})[cost_clock])
                if 2 in worlds and args.device == "cpu":  # the machine's own limit
                    alone = run_job(2, {**base, "batch": b // 2, "group": False})
                    independent.append(sum(w for w, _ in alone))
                    # in lockstep, both would go at the slower one's pace
                    lockstep.append(len(alone) * min(w for w, _ in alone))
            med = {k: statistics.median(v) for k, v in wall.items()}
            med_cpu = {k: statistics.median(v) for k, v in cpu.items()}
            for world in worlds:
                results["cases"].append({
                    "env_id": env_id, "algo": algo, "processes": world, "batch_size": b,
                    "samples_per_s_wall": wall[world], "median_wall": med[world],
                    "samples_per_s_cpu": cpu[world], "median_cpu": med_cpu[world]})
            t_full = b / (med_cpu if cost_clock else med)[1]
            t_half = (b // 2) / statistics.median(half)
            n = _gradient_size(algo, env_id)
            cost: dict[str, Any] = {
                "env_id": env_id, "algo": algo, "cost_clock": "cpu" if cost_clock else "wall",
                "iteration_s_batch": t_full, "iteration_s_half_batch": t_half,
                "gradient_floats": n, "allreduce_s": None, "ideal_speedup_2": None,
                "measured_speedup_2_wall": None, "measured_speedup_2_cpu": None}
            if 2 in worlds:
                comm = run_job(2, {"kind": "allreduce", "n": n, "device": args.device})
                cost.update(allreduce_s=comm, ideal_speedup_2=t_full / (t_half + comm),
                            measured_speedup_2_wall=med[2] / med[1],
                            measured_speedup_2_cpu=med_cpu[2] / med_cpu[1])
            if independent:
                cost["independent_2_samples_per_s_wall"] = independent
                cost["independent_speedup_2_wall"] = statistics.median(independent) / med[1]
                cost["lockstep_2_samples_per_s_wall"] = lockstep
                cost["lockstep_speedup_2_wall"] = statistics.median(lockstep) / med[1]
            results["costs"].append(cost)
    if LATER_ENV_ID not in env_ids:
        results["note"] = f"{LATER_ENV_ID} was not measured ({refused or '--no-flow'})."
    return results


def _refusal(env_id: str) -> str | None:
    """Why the training loop would refuse the cases of ``env_id`` (``None`` if it accepts
    them: registered, and the pre-flight of SIP and DP with its settings passes)."""
    if env_id not in gym.registry:
        return f"{env_id} is not registered"
    for algo in ALGOS:
        try:
            get_algorithm(algo).config(env_id=env_id, iterations=1,
                                       **_settings(env_id, algo)).validate()
        except ValueError as exc:
            return f"{algo}: {exc}"
    return None


def _fmt(value: float | None, scale: float = 1.0, digits: int = 2, unit: str = "") -> str:
    return "–" if value is None else f"{scale * value:.{digits}f}{unit}"


def markdown(results: dict[str, Any], info: dict[str, Any], args: argparse.Namespace) -> str:
    """The results as Markdown tables."""
    lines = ["# Data-parallel training throughput (`benchmarks/bench_distributed.py`)", "",
             f"Global batch {args.batch_size} on {ENV_ID} and {args.flow_batch_size} on "
             f"{LATER_ENV_ID} ({FLOW_SETTINGS['env_kwargs']}, `{FLOW_SETTINGS['network']}` "
             f"policy {list(FLOW_SETTINGS['hidden'])}, SIP with the Gauss–Newton split), "
             f"device {args.device}, one torch thread per "
             "process, "
             f"{args.iterations} timed iterations after {args.warmup} warm-up "
             f"({args.flow_iterations} after 1 on the flow), "
             f"{args.repeats} repeat(s){' (--quick)' if args.quick else ''}. "
             f"Load average (1, 5, 15 min) at start {info.get('loadavg_1_5_15_at_start')}, "
             f"at end {info.get('loadavg_1_5_15_at_end')}, on {info.get('cpu_count')} CPUs. "
             "*wall*: samples/s on the wall clock (the bar's measure; on a busy machine the "
             "second process competes for a core and this understates the scaling). *CPU*: "
             "samples/s on the CPU time of the busiest process (what an idle machine's wall "
             "clock would show, less any time spent waiting for the other rank).", "",
             "| env | algo | processes | samples/s wall (median) | wall repeats "
             "| samples/s CPU (median) |",
             "|---|---|---:|---:|---|---:|"]
    for c in results["cases"]:
        reps = ", ".join(f"{v:.0f}" for v in c["samples_per_s_wall"])
        lines.append(f"| {c['env_id']} | {c['algo']} | {c['processes']} | "
                     f"{c['median_wall']:.0f} | {reps} | {c['median_cpu']:.0f} |")
    lines += ["", f"Single-process costs ({'CPU' if args.device == 'cpu' else 'wall'} time per "
              "iteration) and the 2-process speedup they "
              "predict, `t(B) / (t(B/2) + all-reduce)`, against the measured ones:", "",
              "| env | algo | iteration at B [ms] | at B/2 [ms] | gradient all-reduce [ms] "
              "| ideal 2-process speedup | measured (wall) | measured (CPU) "
              "| 2 independent processes (wall) | … at the slower one's pace (wall) "
              "| bar (wall) |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for c in results["costs"]:
        speedup = c["measured_speedup_2_wall"]
        bar = (f"≥ {BAR}×: {'met' if speedup >= BAR else 'not met'}"
               if speedup is not None and c["algo"] == "dp" and c["env_id"] == ENV_ID else "")
        lines.append(
            f"| {c['env_id']} | {c['algo']} | {_fmt(c['iteration_s_batch'], 1e3, 1)} | "
            f"{_fmt(c['iteration_s_half_batch'], 1e3, 1)} | {_fmt(c['allreduce_s'], 1e3)} | "
            f"{_fmt(c['ideal_speedup_2'], unit='×')} | {_fmt(speedup, unit='×')} | "
            f"{_fmt(c['measured_speedup_2_cpu'], unit='×')} | "
            f"{_fmt(c.get('independent_speedup_2_wall'), unit='×')} | "
            f"{_fmt(c.get('lockstep_speedup_2_wall'), unit='×')} | {bar} |")
    lines += ["", "*2 independent processes*: two plain runs at B/2 at the same time, no "
              "communication, their samples/s summed over one process's at B: what this machine "
              "allows any 2-process scheme (shared caches, memory bandwidth, other load). "
              "*… at the slower one's pace*: twice the slower of the two over one process at B: "
              "the most a synchronous scheme with equal slices can reach, since every "
              "iteration waits for the slower rank (cores of a shared virtual machine need not "
              "run at the same speed)."]
    for key in ("note", "note_device"):
        if key in results:
            lines += ["", f"Note: {results[key]}"]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(1)
    info = environment_info(threads_per_process=1)
    results = measure(args)
    info["loadavg_1_5_15_at_end"] = loadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    settings = {k: (display_path(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "bench_distributed.json").write_text(json.dumps(
        {"settings": settings, "environment": info, **results}, indent=2) + "\n")
    table = markdown(results, info, args)
    (args.out / "bench_distributed.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())

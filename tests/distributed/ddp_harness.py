"""Run a function on N gloo ranks on this machine, for the data-parallel tests.

The ranks are forked from the test process (``torch.multiprocessing``'s ``fork`` context), so
they start at once with torch and sipenv already imported. They meet on a free port of
127.0.0.1 (``GLOO_SOCKET_IFNAME=lo``: no traffic leaves the loopback interface), every
collective times out after ``COLLECTIVE_TIMEOUT_S`` and the whole run after ``deadline``
seconds, after which any rank still alive is killed: a test can fail, but never hang.
"""

from __future__ import annotations

import os
import pickle
import shutil
import socket
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

COLLECTIVE_TIMEOUT_S = 30.0


@dataclass
class RankResult:
    """What one rank left: its exit code, and its return value or error message."""

    exitcode: int | None
    value: Any = None
    error: str | None = None


def free_port() -> int:
    """A TCP port of 127.0.0.1 that is free now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _worker(fn: Callable[..., Any], rank: int, world: int, port: int, folder: str,
            args: tuple[Any, ...]) -> None:
    os.environ.update({"GLOO_SOCKET_IFNAME": "lo", "LOCAL_RANK": str(rank),
                       "RANK": str(rank), "WORLD_SIZE": str(world)})
    torch.set_num_threads(1)
    code, result = 0, None
    try:
        dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world,
                                timeout=timedelta(seconds=COLLECTIVE_TIMEOUT_S))
        result = (fn(rank, *args), None)
    except BaseException as exc:  # report every failure to the test, then exit non-zero
        result = (None, f"{type(exc).__name__}: {exc}\n{traceback.format_exc()}")
        code = 1
    finally:
        with open(os.path.join(folder, f"rank{rank}.pkl"), "wb") as f:
            pickle.dump(result, f)
        if dist.is_initialized():
            dist.destroy_process_group()
    os._exit(code)  # (skip the forked pytest's atexit handlers)


def run_ranks(fn: Callable[..., Any], world: int = 2, args: tuple[Any, ...] = (),
              deadline: float = 120.0) -> list[RankResult]:
    """Call ``fn(rank, *args)`` on ``world`` forked ranks of one gloo process group.

    Returns:
        One ``RankResult`` per rank. Values must be picklable (return numpy arrays, not
        tensors: torch would pass tensors through shared memory that dies with the rank).
    """
    ctx = mp.get_context("fork")
    folder = tempfile.mkdtemp(prefix="ddp-ranks-")
    port = free_port()
    procs = [ctx.Process(target=_worker, args=(fn, r, world, port, folder, args), daemon=True)
             for r in range(world)]
    try:
        for p in procs:
            p.start()
        end = time.monotonic() + deadline
        for p in procs:
            p.join(max(end - time.monotonic(), 0.1))
        timed_out = [r for r, p in enumerate(procs) if p.is_alive()]
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join(5)
        out = []
        for r, p in enumerate(procs):
            path = os.path.join(folder, f"rank{r}.pkl")
            value, error = None, f"rank {r} died (exit code {p.exitcode}) before reporting"
            if os.path.exists(path):
                with open(path, "rb") as f:
                    value, error = pickle.load(f)
            if r in timed_out:
                error = f"rank {r} did not finish within {deadline} s (killed)"
            out.append(RankResult(p.exitcode, value, error))
        return out
    finally:
        shutil.rmtree(folder, ignore_errors=True)

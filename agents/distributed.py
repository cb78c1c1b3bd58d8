"""Data-parallel training on ``torch.distributed``: N processes train one network as one process
would, each on a slice of every batch.

Launch ``scripts/train.py`` with ``torchrun`` (see ``docs/distributed.md``)::

    torchrun --standalone --nproc_per_node=2 scripts/train.py dp --batch-size 256

``launch`` (called by ``scripts/train.py``) joins the process group that ``torchrun`` set up
(gloo on CPU, NCCL with ``--device cuda``, where rank ``r`` uses ``cuda:LOCAL_RANK``); a plain
``python scripts/train.py`` run starts no process group and nothing here changes it.
``agents.trainer.run_training`` calls the hooks below, which do nothing without a process group
(``Context.active`` False), so library users may also create the group themselves (e.g. with
``torch.multiprocessing``) and call ``run_training`` on every rank. With a group:

* **Data**: every rank draws the same *global* batch of ``batch_size`` problems from the seeded
  data stream and keeps its contiguous slice ``[r·B/N, (r+1)·B/N)`` (``shard``), so the data
  stream, and the checkpoint's record of it, do not depend on the number of processes.
  ``batch_size`` must be divisible by the world size.
* **Gradients**: the network is wrapped in ``DistributedDataParallel`` (``wrap``), which averages
  the gradients over the ranks during ``backward``. Every loss of SIP, DP and supervised training
  is a mean over its batch, so the average of the N slice means is the mean over the global
  batch: N processes take the same step as one process with the whole batch (up to float
  rounding; ``tests/distributed``). Every rank applies the same averaged gradient with the same
  optimizer, so all hold identical weights (checked after a resume and at the end,
  ``check_in_sync``). A non-finite loss on any rank stops every rank (``prepare``).
  Algorithms with their own update or their own trainer (PPO) are refused: averaging their
  per-rank updates is not known to equal their update on the global batch.
* **BatchNorm** (``--network unet``): on CUDA the network's BatchNorm layers become
  ``SyncBatchNorm`` (statistics of the global batch, as one process); on CPU PyTorch has no
  synchronised BatchNorm, so each rank normalises with the statistics of its own slice (and
  evaluation and checkpoints use rank 0's running statistics, given to every rank): close to,
  but not equal to, one process. A warning says so.
* **Bookkeeping**: training-batch metrics are averaged over the ranks, the step time is the
  slowest rank's (so every rank sees the same ``train_time`` and stops at the same iteration
  under a ``time_budget``), evaluation is sharded over the ranks and reduced (``evaluate``).
  Rank 0 alone writes the run directory and shows the progress bar.
* **Faults**: collectives time out after ``SIPENV_DIST_TIMEOUT`` seconds (default 300) instead
  of hanging; a rank that dies makes the others' next collective fail at once (gloo reports the
  closed connection), and ``torchrun`` stops the job. ``--resume`` continues from rank 0's last
  checkpoint. Because the checkpoint holds the global data stream and the (global) optimizer
  state, a run may be resumed with any world size that divides ``batch_size``: the same world
  size continues bit-identically (CPU), another one re-slices the same global batches (equal up
  to float rounding).
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, fields
from datetime import timedelta
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from agents.evaluation import EvalResult, evaluate_torch
from agents.problems import InverseProblem, Problem, TaskProblem
from agents.trainer import (
    Algorithm,
    LossFn,
    NonFiniteUpdate,
    Step,
    TrainConfig,
    TrainingDiverged,
    UpdateFn,
    gradient_update,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TIMEOUT_ENV",
    "Context",
    "DistributedError",
    "check_batch_size",
    "check_in_sync",
    "check_supported",
    "collective_errors",
    "current",
    "evaluate",
    "launch",
    "launched_by_torchrun",
    "prepare",
    "reduce_step",
    "shard",
    "shutdown",
    "timeout_s",
    "wrap",
]

TIMEOUT_ENV = "SIPENV_DIST_TIMEOUT"
"""Environment variable: seconds a collective waits for the other ranks before it fails."""

DEFAULT_TIMEOUT_S = 300.0
"""Default of ``SIPENV_DIST_TIMEOUT``: longer than any step, evaluation or checkpoint write that
one rank does while the others wait, short enough that a stalled rank ends the job."""


class DistributedError(RuntimeError):
    """The ranks disagree (e.g. they resumed from different checkpoints) or lost each other."""


@dataclass(frozen=True)
class Context:
    """Where this process stands in the process group.

    Attributes:
        rank: This process's rank (0 without a process group).
        world_size: Number of processes (1 without a process group).
        local_rank: Rank on this machine (``LOCAL_RANK``; the GPU a CUDA rank uses).
        comm_device: Device of the tensors the collectives exchange (CPU for gloo, this rank's
            GPU for NCCL).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    comm_device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def active(self) -> bool:
        """Whether training is data-parallel (a process group of more than one process)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Whether this is rank 0, the one that writes and reports."""
        return self.rank == 0


def current() -> Context:
    """The ``Context`` of the default process group, or a single-process one without it."""
    if not (dist.is_available() and dist.is_initialized()):
        return Context()
    rank, world = dist.get_rank(), dist.get_world_size()
    local = int(os.environ.get("LOCAL_RANK", rank))
    comm = (torch.device("cuda", torch.cuda.current_device())
            if dist.get_backend() == "nccl" else torch.device("cpu"))
    return Context(rank, world, local, comm)


def launched_by_torchrun() -> bool:
    """Whether this process is one of several that ``torchrun`` started (``WORLD_SIZE`` > 1)."""
    return "RANK" in os.environ and int(os.environ.get("WORLD_SIZE", "1")) > 1


def timeout_s() -> float:
    """Collective timeout in seconds: ``SIPENV_DIST_TIMEOUT`` or ``DEFAULT_TIMEOUT_S``.

    Raises:
        ValueError: If the variable is not a number > 0.
    """
    raw = os.environ.get(TIMEOUT_ENV, "")
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(f"{TIMEOUT_ENV} must be a number of seconds > 0, got {raw!r}.")
    return value


def check_supported(algorithm: Algorithm | LossFn, config: Any = None) -> LossFn:
    """The loss of an algorithm that can train data-parallel (with ``config``'s settings).

    Raises:
        ValueError: For an algorithm with its own trainer (PPO), or its own update where
            ``config.plain_update()`` does not say the settings use the plain gradient step.
    """
    if not isinstance(algorithm, Algorithm):
        return algorithm
    if algorithm.trainer is not None:
        raise ValueError(
            f"{algorithm.name} trains in a single process (stable-baselines3 steps its own "
            f"--n-envs environments); it cannot run data-parallel under torchrun. Run it "
            f"without torchrun: python scripts/train.py {algorithm.name} ...")
    plain = config is not None and config.plain_update()
    if (algorithm.update is not None and not plain) or algorithm.loss is None:
        if algorithm.name == "dp":
            raise ValueError(
                "dp with --max-grad-norm or --bptt-window has its own update, which is not "
                "known to equal its update on the whole batch when averaged over ranks; leave "
                "those options out under torchrun, or run in one process (python "
                "scripts/train.py dp ...).")
        raise ValueError(
            f"{algorithm.name} has its own update, and averaging its per-rank updates is not "
            f"known to equal its update on the whole batch; run it in one process (python "
            f"scripts/train.py {algorithm.name} ...).")
    return algorithm.loss


def check_batch_size(batch_size: int, world_size: int) -> None:
    """``batch_size`` is the global batch; it must split evenly over the ranks.

    Raises:
        ValueError: If it does not, naming the nearest multiples.
    """
    if batch_size % world_size:
        lower = batch_size - batch_size % world_size
        upper = lower + world_size
        options = f"{lower} or {upper}" if lower > 0 else f"{upper}"
        raise ValueError(
            f"--batch-size {batch_size} is the global batch, split evenly over the "
            f"{world_size} processes; it is not divisible by {world_size}. Use a multiple of "
            f"{world_size}, e.g. {options}, or another --nproc_per_node.")


def launch(config: TrainConfig, algorithm: Algorithm) -> Context:
    """Join the process group that ``torchrun`` set up (does nothing in a plain run).

    Refuses what cannot run data-parallel *before* joining, so that every rank stops with the
    same message. With ``--device cuda`` rank ``r`` uses ``cuda:LOCAL_RANK`` (NCCL); on CPU the
    backend is gloo, and a single-machine run keeps its traffic on the loopback interface (unless
    ``GLOO_SOCKET_IFNAME`` says otherwise).

    Args:
        config: The validated settings.
        algorithm: The algorithm to train.

    Returns:
        This process's ``Context`` (single-process without ``torchrun``).

    Raises:
        ValueError: For PPO or another algorithm that cannot run data-parallel, a batch size not
            divisible by the world size, or an explicit GPU index (``--device cuda:1``).
    """
    if not launched_by_torchrun():
        return Context()
    world = int(os.environ["WORLD_SIZE"])
    check_supported(algorithm, config)
    check_batch_size(config.batch_size, world)
    timeout = timedelta(seconds=timeout_s())
    device = torch.device(config.device)
    if device.type == "cuda":
        if device.index is not None:
            raise ValueError(f"--device {config.device} names one GPU for every process; use "
                             "--device cuda, and torchrun places rank r on cuda:LOCAL_RANK.")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        if local >= torch.cuda.device_count():
            raise ValueError(f"Local rank {local} has no GPU (this machine has "
                             f"{torch.cuda.device_count()}); use at most that many processes "
                             "per node (--nproc_per_node).")
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", timeout=timeout, device_id=torch.device("cuda", local))
    else:
        single_node = os.environ.get("LOCAL_WORLD_SIZE", str(world)) == str(world)
        if single_node and "GLOO_SOCKET_IFNAME" not in os.environ:
            os.environ["GLOO_SOCKET_IFNAME"] = "lo0" if sys.platform == "darwin" else "lo"
        dist.init_process_group("gloo", timeout=timeout)
    return current()


def shutdown() -> None:
    """Leave the process group (if there is one)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


# --- hooks of agents.trainer.run_training (each does nothing without a process group) ---------

def prepare(config: TrainConfig, algorithm: Algorithm | LossFn, update: UpdateFn,
            checkpoint: dict[str, Any] | None = None) -> tuple[Context, UpdateFn]:
    """This process's ``Context`` and the update to train with.

    Without a process group, ``update`` itself. With one: the algorithm's default gradient
    update (``agents.trainer.gradient_update``) of a loss whose finiteness the ranks agree on
    (a non-finite loss, or ``TrainingDiverged`` raised by the loss, on any rank stops every rank
    before ``backward``, as one process would stop on the global batch's loss).

    Args:
        config: The settings the run trains with (after a resume: the checkpoint's).
        algorithm: The algorithm (or loss) given to ``run_training``.
        update: The update a single process would use.
        checkpoint: The checkpoint being resumed, if any (a note says when its world size
            differs: the run continues on the same global batches, re-sliced).

    Raises:
        ValueError: For an algorithm that cannot run data-parallel, or a batch size not
            divisible by the world size.
    """
    ctx = current()
    saved = None if checkpoint is None else int(checkpoint.get("world_size", 1))
    if saved is not None and saved != ctx.world_size and ctx.is_main:
        # (also when a data-parallel run is resumed by one plain process)
        print(f"note: resuming a run trained by {saved} process(es) with {ctx.world_size}: the "
              f"global batch of {config.batch_size} and the data stream are unchanged and are "
              "re-sliced, so training continues the same run (equal up to float rounding).",
              file=sys.stderr)
    if not ctx.active:
        return ctx, update
    loss = check_supported(algorithm, config)
    check_batch_size(config.batch_size, ctx.world_size)
    return ctx, gradient_update(_agreeing(loss, ctx))


def _agreeing(loss: LossFn, ctx: Context) -> LossFn:
    """``loss``, with every rank raising when any rank's loss is non-finite or diverged."""

    def agreed(network: nn.Module, problem: Any, batch: Any, config: Any) -> Step:
        message, code, step = "", 0, None
        if isinstance(network, _DataParallel):
            network.new_step()
        try:
            step = loss(network, problem, batch, config)
            code = 0 if bool(torch.isfinite(step.loss)) else 1
        except TrainingDiverged as exc:
            message, code = str(exc), 2
        flag = torch.tensor([code], dtype=torch.int64, device=ctx.comm_device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        worst = int(flag.item())
        if worst == 0:
            assert step is not None
            return step
        if worst == 1:
            raise NonFiniteUpdate("loss")
        messages: list[Any] = [None] * ctx.world_size
        dist.all_gather_object(messages, message)
        raise TrainingDiverged(next(m for m in messages if m))

    return agreed


class _DataParallel(DistributedDataParallel):
    """``DistributedDataParallel`` for losses that call the network many times per step.

    The first call with autograd on in a step (after ``new_step``) goes through DDP, which
    arms its reducer for the next ``backward`` (``prepare_for_backward``); later calls of the
    same step, and calls with autograd off (SIP's rollouts), run the network directly. The
    gradient hooks DDP put on every parameter fire once per ``backward`` however many calls fed
    it, so the all-reduce is the same; what is saved is DDP's bookkeeping on each call (≈ 2 ms
    of a 40 ms DP iteration: its rollout calls the network 16 times). ``tests/distributed``
    checks that the ranks stay bit-identical and equal one process. It also answers for the
    network's own attributes (e.g. a U-Net's ``grid``, which ``InverseProblem.predict``
    reads)."""

    _armed = False

    def new_step(self) -> None:
        """The next call with autograd on goes through DDP again."""
        self._armed = False

    def forward(self, *inputs: Any, **kwargs: Any) -> Any:
        if self._armed or not torch.is_grad_enabled():
            return self.module(*inputs, **kwargs)
        self._armed = True
        return super().forward(*inputs, **kwargs)

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)


def wrap(network: nn.Module, ctx: Context) -> nn.Module:
    """The network the update trains: ``network`` itself, or ``DistributedDataParallel`` of it.

    The wrapper shares ``network``'s parameters: checkpoints and evaluation keep using
    ``network``. BatchNorm layers become ``SyncBatchNorm`` on CUDA; on CPU a warning says that
    each rank normalises with its own slice's statistics.
    """
    if not ctx.active:
        return network
    device = next(network.parameters()).device
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in network.modules()):
        if device.type == "cuda":
            network = nn.SyncBatchNorm.convert_sync_batchnorm(network)
        elif ctx.is_main:
            warnings.warn(
                "The network has BatchNorm layers; PyTorch synchronises their batch statistics "
                "only on GPUs, so on CPU each of the processes normalises with its own slice of "
                "the batch: training is close to, but not equal to, one process. Use --device "
                "cuda, or --network mlp, for equal results.", stacklevel=2)
    return _DataParallel(network, device_ids=[device.index] if device.type == "cuda" else None)


def shard(batch: Any, ctx: Context) -> Any:
    """This rank's contiguous slice (along the first dimension) of a batch: a tensor, ``None``,
    or a tuple / named tuple / list / dict of them. Rank ``r`` of ``N`` keeps rows
    ``[r·B/N, (r+1)·B/N)`` (``torch.tensor_split`` when ``B`` is not divisible)."""
    if not ctx.active:
        return batch
    return _slice(batch, ctx.rank, ctx.world_size)


def _slice(obj: Any, rank: int, world: int) -> Any:
    if obj is None:
        return None
    if isinstance(obj, torch.Tensor):
        return torch.tensor_split(obj, world)[rank]
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # a NamedTuple, e.g. InverseBatch
        return type(obj)(*(_slice(v, rank, world) for v in obj))
    if isinstance(obj, (tuple, list)):
        return type(obj)(_slice(v, rank, world) for v in obj)
    if isinstance(obj, dict):
        return {k: _slice(v, rank, world) for k, v in obj.items()}
    raise TypeError(f"Cannot slice a batch of type {type(obj).__name__} by rank; a problem's "
                    "sample() must return tensors (or tuples, named tuples, lists or dicts of "
                    "them) with the batch along the first dimension.")


def reduce_step(seconds: float, metrics: dict[str, float],
                ctx: Context) -> tuple[float, dict[str, float]]:
    """One iteration's bookkeeping agreed over the ranks in a single collective: the step time
    becomes the slowest rank's (every rank gets the same, so ``train_time`` and a
    ``time_budget`` agree on every rank) and the training-batch metrics their mean over the
    ranks (for batch means, every metric of SIP, DP, supervised training and the problems, that
    is the metric of the global batch).

    One ``all_gather`` of ``[seconds, *metrics]`` instead of an all-reduce each: on a busy CPU
    machine every small collective costs a round trip through gloo's socket thread (≈ 1–2 ms
    when both cores compute), a noticeable share of a 40 ms iteration.

    Raises:
        DistributedError: If the ranks report different metric names (they run the same code,
            so this means a bug in an algorithm's metrics).
    """
    if not ctx.active:
        return seconds, metrics
    keys = list(metrics)
    mine = torch.tensor([float(seconds), float(len(keys)),
                         *(float(metrics[k]) for k in keys)],
                        dtype=torch.float64, device=ctx.comm_device)
    everyone = [torch.empty_like(mine) for _ in range(ctx.world_size)]
    dist.all_gather(everyone, mine)
    table = torch.stack(everyone).cpu()
    if not torch.equal(table[:, 1], table[0, 1].expand(ctx.world_size)):
        raise DistributedError("The ranks report different training metrics: "
                               f"{table[:, 1].tolist()} values. Every rank must run the same "
                               "algorithm and settings.")
    means = table[:, 2:].mean(dim=0).tolist()
    return float(table[:, 0].max()), dict(zip(keys, means, strict=True))


def evaluate(problem: Problem, network: nn.Module, data: Any, ctx: Context) -> dict[str, float]:
    """``problem.evaluate(network, data)`` with the held-out set sharded over the ranks.

    Each rank plays (task) or predicts (inverse problem) its slice of the set; the per-episode
    results (or predictions) are gathered on every rank and summarised as one process would, so
    every rank returns the summary of the whole set. Other problem types, or a set smaller than
    the world, are evaluated whole on every rank.
    """
    if not ctx.active:
        return problem.evaluate(network, data)
    _share_buffers(network, ctx)
    size = _length(data)
    if size is None or size < ctx.world_size:
        return problem.evaluate(network, data)
    part = _slice(data, ctx.rank, ctx.world_size)
    if isinstance(problem, TaskProblem):
        s0, target = part
        mine = evaluate_torch(network, problem.core, s0, target)
        parts: list[Any] = [None] * ctx.world_size
        dist.all_gather_object(parts, mine)
        return EvalResult(*(np.concatenate([getattr(p, f.name) for p in parts])
                            for f in fields(EvalResult))).summary()
    if isinstance(problem, InverseProblem):
        with torch.no_grad():
            x = problem.predict(network, part.y_target).cpu()
        guesses: list[Any] = [None] * ctx.world_size
        dist.all_gather_object(guesses, x)
        return problem.batch_metrics(torch.cat(guesses).to(problem.device), data)
    return problem.evaluate(network, data)


def _share_buffers(network: nn.Module, ctx: Context) -> None:
    """Give every rank rank 0's buffers (BatchNorm running statistics). Training in train mode
    does not read them, but evaluation and checkpoints do; on CPU each rank updates them from
    its own slice, so they are made rank 0's (what its checkpoint holds) before they are used."""
    with torch.no_grad():
        for buffer in network.buffers():
            dist.broadcast(buffer, src=0)


def _length(data: Any) -> int | None:
    """Number of samples of a held-out set (first dimension of its first tensor)."""
    if isinstance(data, torch.Tensor):
        return int(data.shape[0])
    if isinstance(data, (tuple, list)):
        for item in data:
            n = _length(item)
            if n is not None:
                return n
    return None


def check_in_sync(network: nn.Module, ctx: Context, *, iteration: int,
                  data_rng: torch.Tensor | None = None, when: str = "") -> None:
    """Check that every rank holds the same weights, iteration and data stream.

    Compares exact checksums of the state dict (and of the data generator's state) with rank
    0's: identical weights are an invariant of data-parallel training, so a difference means
    the ranks started from different states (e.g. resumed from different checkpoints).
    Buffers (BatchNorm running statistics) are first made rank 0's on every rank.

    Raises:
        DistributedError: Naming the ranks that differ from rank 0.
    """
    if not ctx.active:
        return
    _share_buffers(network, ctx)
    with torch.no_grad():
        sums = [float(iteration)]
        for t in network.state_dict().values():
            v = t.detach().double()
            sums += [float(v.sum()), float(v.abs().sum())]
        if data_rng is not None:
            sums.append(float(data_rng.double().sum()))
    mine = torch.tensor(sums, dtype=torch.float64, device=ctx.comm_device)
    everyone = [torch.empty_like(mine) for _ in range(ctx.world_size)]
    dist.all_gather(everyone, mine)
    differ = [r for r, s in enumerate(everyone) if not torch.equal(s, everyone[0])]
    if differ:
        raise DistributedError(
            f"Ranks {differ} hold other weights, iteration or data stream than rank 0"
            f"{' ' + when if when else ''}. Every rank must start from the same state: when "
            "resuming on several machines, put --runs-dir on a filesystem they share (or copy "
            "the run directory to every machine).")


@contextmanager
def collective_errors(ctx: Context) -> Iterator[None]:
    """Turn a failed collective into a ``DistributedError`` that says what to do.

    A rank that died or stalled makes the others' next collective fail (at once when its
    connection closes, after ``SIPENV_DIST_TIMEOUT`` seconds when it hangs).
    """
    try:
        yield
    except (DistributedError, TrainingDiverged, NonFiniteUpdate):
        raise
    except RuntimeError as exc:
        text = str(exc)
        if not ctx.active or not any(k in text.lower() for k in (
                "gloo", "nccl", "connection", "timed out", "timeout", "processgroup",
                "peer")):
            raise
        first = next(iter(text.strip().splitlines()), "")
        raise DistributedError(
            f"rank {ctx.rank}: lost contact with another process of the job ({first}). "
            "Another rank died, raised an error or stalled: see its own error above (torchrun "
            "names the failed rank). Continue from the last checkpoint with the same command "
            "and --resume.") from exc

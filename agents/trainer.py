"""The training loop every algorithm shares; algorithms only supply a loss.

An algorithm is a function ``loss_fn(policy, core, s0, target, config) -> (loss, metrics)`` on a
batch of tasks. :func:`run_training` owns everything around it, once, for all methods, so that
comparisons differ only in the loss:

* the **data stream**: every iteration draws a fresh batch of tasks from a ``torch.Generator``
  seeded with ``config.seed`` (the same stream for every method with the same seed);
* the **network** (built by name, seeded: every method starts from the same weights);
* the optimizer (any of :data:`OPTIMIZERS`), the stopping rule (``iterations`` and/or a wall-clock
  ``time_budget`` that counts training time only, not evaluation or I/O);
* safety: a non-finite loss or gradient stops training with :class:`TrainingDiverged`, naming the
  iteration, after saving the last good weights;
* the run directory ``runs/<run-name>/``: ``config.json``, ``metrics.jsonl``, ``checkpoint.pt``,
  ``final_eval.json`` and ``learning_curve.png``; ``resume=True`` continues from the checkpoint
  to the same result an uninterrupted run gives (CPU).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol

import gymnasium as gym
import torch
from torch import nn

import sipenv  # noqa: F401  (registers the sip/ ids)
from agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.evaluation import evaluate_torch, make_eval_tasks
from agents.networks import NETWORKS, make_network
from sipenv.envs.control import parse_device
from sipenv.envs.core import ControlCore, Rollout

__all__ = [
    "OPTIMIZERS",
    "LossFn",
    "RunRecorder",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "make_optimizer",
    "policy_from_checkpoint",
    "rollout_metrics",
    "run_training",
    "training_clock",
]

OPTIMIZERS: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam,
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
    "adadelta": torch.optim.Adadelta,
    "rmsprop": torch.optim.RMSprop,
}


class TrainingDiverged(RuntimeError):
    """The loss or a gradient became NaN/inf; the message names the iteration and checkpoint."""


@dataclass
class TrainConfig:
    """Settings every algorithm shares (each algorithm's config adds its own)."""

    algo: str = "base"
    """Algorithm name (set by each algorithm's config)."""
    env_id: str = "sip/ControlledDiffusion-v0"
    """Gymnasium id of the control env to train on."""
    env_kwargs: str = "{}"
    """Extra ``gym.make`` keyword arguments as a JSON object, e.g. '{"nu": 0.02}'."""
    env_dtype: Literal["float32", "float64"] = "float32"
    """Precision of the physics (the network is always float32)."""
    network: str = "mlp"
    """Network architecture by name (see agents.networks.NETWORKS)."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths (mlp), or filters per level (unet, e.g. 16 16 16 16)."""
    optimizer: Literal["adam", "sgd", "adagrad", "adadelta", "rmsprop"] = "adam"
    """Torch optimizer for the network."""
    lr: float = 1e-3
    """Learning rate."""
    batch_size: int = 64
    """Tasks per iteration (fresh tasks every iteration)."""
    iterations: int = 1000
    """Maximum number of training iterations."""
    time_budget: float = 0.0
    """Budget in seconds of training (0 = none), on `clock`; stops at whichever limit comes
    first."""
    clock: Literal["wall", "cpu"] = "wall"
    """How training time is measured (time_budget, logs): wall-clock, or this process's CPU time
    (unaffected by other jobs on a shared machine; equals wall-clock for one torch thread on an
    idle core, but not on a GPU, whose work it does not count)."""
    seed: int = 0
    """Seeds the network initialisation and the training task stream."""
    device: str = "cpu"
    """Torch device for physics and network, e.g. 'cpu' or 'cuda'."""
    threads: int = 1
    """torch CPU threads (0 = torch's default, one per core). One is the robust choice: the
    tensors are small, and on a busy machine torch's default pool can be 10-40x slower."""
    eval_episodes: int = 256
    """Held-out episodes for evaluation."""
    eval_seed: int = 1_000_000
    """Held-out episodes are env.reset(seed=eval_seed + i), i < eval_episodes."""
    eval_every: int = 0
    """Evaluate every this many iterations (0 = only at the end)."""
    log_every: int = 10
    """Write a metrics.jsonl record every this many iterations."""
    checkpoint_every: int = 200
    """Save the checkpoint every this many iterations (0 = only at the end)."""
    run_name: str = ""
    """Run directory name under runs_dir (default: <algo>-<env>-s<seed>)."""
    runs_dir: str = "runs"
    """Parent folder of run directories."""
    resume: bool = False
    """Continue the run in runs_dir/run_name from its checkpoint (extend with --iterations)."""
    progress: bool = True
    """Show a progress bar with the live loss and target error."""

    def validate(self) -> None:
        """Check every setting before any work starts.

        Raises:
            ValueError: Naming the setting and how to fix it.
        """
        def positive_int(name: str, allow_zero: bool = False) -> None:
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < (0 if allow_zero else 1):
                raise ValueError(f"{name} must be an int ≥ {0 if allow_zero else 1}, got {v!r}.")

        positive_int("batch_size")
        positive_int("iterations")
        positive_int("eval_episodes")
        for name in ("eval_every", "log_every", "checkpoint_every", "seed", "eval_seed",
                     "threads"):
            positive_int(name, allow_zero=True)
        if not all(isinstance(h, int) and not isinstance(h, bool) and h >= 1
                   for h in self.hidden):
            raise ValueError(f"hidden widths must be ints ≥ 1, got {tuple(self.hidden)}.")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"lr must be a finite number > 0, got {self.lr!r}.")
        training_clock(self.clock)
        if not (math.isfinite(self.time_budget) and self.time_budget >= 0):
            raise ValueError(f"time_budget must be ≥ 0 seconds (0 = none), got "
                             f"{self.time_budget!r}.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got "
                             f"{self.optimizer!r}.")
        if self.network not in NETWORKS:
            raise ValueError(f"network must be one of {sorted(NETWORKS)}, got {self.network!r}.")
        if self.env_id not in gym.registry:
            known = sorted(k for k in gym.registry if k.startswith("sip/"))
            raise ValueError(f"Unknown env id {self.env_id!r}; sipenv provides {known}.")
        try:
            parse_device(self.device)
        except ValueError as exc:
            raise ValueError(f"{exc} Use --device cpu.") from exc
        kwargs = self.env_make_kwargs()
        try:  # builds the env once (cheap): bad env_kwargs fail here, before any work
            gym.make(self.env_id, **kwargs).close()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"env_kwargs {self.env_kwargs} do not fit {self.env_id}: "
                             f"{exc}") from exc

    def env_make_kwargs(self) -> dict[str, Any]:
        """``gym.make`` keyword arguments: the JSON ``env_kwargs`` plus device and dtype."""
        try:
            kwargs = json.loads(self.env_kwargs)
        except json.JSONDecodeError as exc:
            raise ValueError(f"env_kwargs must be a JSON object, e.g. '{{\"nu\": 0.02}}'; got "
                             f"{self.env_kwargs!r} ({exc}).") from exc
        if not isinstance(kwargs, dict):
            raise ValueError(f"env_kwargs must be a JSON object, got {self.env_kwargs!r}.")
        return {**kwargs, "device": self.device, "dtype": self.env_dtype}

    def default_run_name(self) -> str:
        """``<algo>-<EnvName>-s<seed>``."""
        env = self.env_id.split("/")[-1].split("-v")[0]
        return f"{self.algo}-{env}-s{self.seed}"


class LossFn(Protocol):
    """``(policy, core, s0, target, config) -> (loss, metrics)`` for one batch of tasks."""

    def __call__(self, policy: nn.Module, core: ControlCore, s0: torch.Tensor,
                 target: torch.Tensor, config: Any) -> tuple[torch.Tensor, dict[str, float]]: ...


@dataclass
class TrainResult:
    """What :func:`run_training` returns."""

    policy: nn.Module
    core: ControlCore
    run_dir: Path | None
    iterations: int
    train_time: float
    final_eval: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)


def training_clock(name: str) -> Callable[[], float]:
    """``"wall"`` → ``time.perf_counter``; ``"cpu"`` → ``time.process_time``."""
    if name not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {name!r}.")
    return time.perf_counter if name == "wall" else time.process_time


def make_optimizer(name: str, params: Any, lr: float) -> torch.optim.Optimizer:
    """Build a torch optimizer by name (``adam``, ``sgd``, ``adagrad``, ``adadelta``,
    ``rmsprop``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}.")
    optimizer_cls: Any = OPTIMIZERS[name]
    return optimizer_cls(params, lr=lr)


def rollout_metrics(core: ControlCore, rollout: Rollout) -> dict[str, float]:
    """Mean final target error and mean episode force cost of a batched rollout."""
    with torch.no_grad():
        err = core.target_error(rollout.states[-1], rollout.target).mean()
        cost = core.force_cost(rollout.actions).sum(0).mean()
    return {"target_error": float(err), "force_cost": float(cost)}


def _network_spec(config: TrainConfig, core: ControlCore) -> dict[str, Any]:
    return {"name": config.network, "obs_dim": core.obs_dim, "act_dim": core.n,
            "hidden": list(config.hidden)}


def policy_from_checkpoint(path: str | Path, *, device: str | torch.device = "cpu",
                           env_id: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the trained network of a checkpoint (in eval mode) and return it with the data.

    Raises:
        CheckpointError: If the checkpoint is invalid or its weights do not fit its network.
    """
    ckpt = load_checkpoint(path, env_id=env_id, map_location=device)
    spec = ckpt["network"]
    policy = make_network(spec["name"], spec["obs_dim"], spec["act_dim"], hidden=spec["hidden"],
                          device=device)
    try:
        policy.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"Checkpoint {path} weights do not fit network {spec}: {exc}") \
            from exc
    return policy.eval(), ckpt


def _plot_curve(history: list[dict[str, float]], path: Path, title: str,
                clock: str = "wall") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [h for h in history if "target_error" in h]
    evals = [h for h in history if "eval_target_error_mean" in h]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((axes[0], "iteration", "iteration"),
                           (axes[1], "time", f"training time [s, {clock} clock]")):
        if train:
            ax.semilogy([h[key] for h in train], [h["target_error"] for h in train],
                        lw=1, label="training batch")
        if evals:
            ax.semilogy([h[key] for h in evals], [h["eval_target_error_mean"] for h in evals],
                        "o-", label="held-out (mean)")
        ax.set_xlabel(label)
        ax.set_ylabel("relative terminal error ‖s_T − s*‖² / ‖s*‖²")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class RunRecorder:
    """Run bookkeeping shared by every training loop (here and in :mod:`agents.ppo`).

    Writes ``config.json`` and ``metrics.jsonl``, keeps the log / evaluation / checkpoint
    cadence of ``config`` (``log_every``, ``eval_every``, ``checkpoint_every``), and at the end
    evaluates, saves, and writes ``final_eval.json`` and ``learning_curve.png``. With
    ``out=None`` nothing is written (in-memory runs, e.g. sweeps).

    Args:
        config: The run's settings.
        out: Run directory, or ``None``.
        evaluate: Held-out evaluation returning a summary dict.
        save: Writes the checkpoint(s).
        on_eval: Called with each evaluation record.
        history: Records kept from an earlier part of the run (resume).
    """

    def __init__(self, config: TrainConfig, out: Path | None,
                 evaluate: Callable[[], dict[str, float]], save: Callable[[], None], *,
                 on_eval: Callable[[dict[str, float]], None] | None = None,
                 history: list[dict[str, float]] | None = None) -> None:
        self.config, self.out = config, out
        self.evaluate, self.save, self.on_eval = evaluate, save, on_eval
        self.history = list(history or [])
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            (out / "config.json").write_text(json.dumps(
                {**asdict(config), "hidden": list(config.hidden)}, indent=2) + "\n")
            _write_metrics(out / "metrics.jsonl", self.history)

    def _keep(self, record: dict[str, float]) -> None:
        self.history.append(record)
        if self.out is not None:
            _append_metric(self.out / "metrics.jsonl", record)

    def step(self, iteration: int, train_time: float,
             metrics: dict[str, float]) -> dict[str, float] | None:
        """Bookkeeping after iteration ``iteration``; returns the record if it was logged."""
        cfg = self.config
        logged = None
        if cfg.log_every and iteration % cfg.log_every == 0:
            logged = {"iteration": iteration, "time": train_time, **metrics}
            self._keep(logged)
        if cfg.eval_every and iteration % cfg.eval_every == 0:
            ev = {"iteration": iteration, "time": train_time,
                  **{f"eval_{k}": v for k, v in self.evaluate().items()}}
            self._keep(ev)
            if self.on_eval is not None:
                self.on_eval(ev)
        if self.out is not None and cfg.checkpoint_every and \
                iteration % cfg.checkpoint_every == 0:
            self.save()
        return logged

    def finish(self, iteration: int, train_time: float) -> dict[str, float]:
        """Final evaluation; saves and writes ``final_eval.json`` and the learning curve."""
        final = self.evaluate()
        if self.out is not None:
            self.save()
            (self.out / "final_eval.json").write_text(json.dumps(
                {"iteration": iteration, "train_time": train_time, **final}, indent=2) + "\n")
            _plot_curve([*self.history, {"iteration": iteration, "time": train_time,
                                         **{f"eval_{k}": v for k, v in final.items()}}],
                        self.out / "learning_curve.png",
                        f"{self.config.algo} on {self.config.env_id}", self.config.clock)
        return final


def run_training(config: TrainConfig, loss_fn: LossFn, *, resume: bool = False,
                 progress: bool = True, write: bool = True, run_dir: str | Path | None = None,
                 on_eval: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Train a policy on ``config.env_id`` by minimising ``loss_fn`` with ``config.optimizer``.

    Args:
        config: Settings (validated before any work starts).
        loss_fn: The algorithm's loss on a batch of tasks.
        resume: Continue from ``<run_dir>/checkpoint.pt`` (its settings are kept; only
            ``iterations`` and ``time_budget`` are taken from ``config``, to extend a run).
        progress: Show a progress bar with the live loss and target error.
        write: Write the run directory (``False``: in-memory only, e.g. for sweeps).
        run_dir: Override ``runs_dir/run_name``.
        on_eval: Called with each evaluation record (e.g. to track error vs time).

    Raises:
        ValueError: For invalid settings.
        FileExistsError: If the run directory already holds a checkpoint and ``resume`` is False.
        CheckpointError: If ``resume`` finds no valid, matching checkpoint.
        TrainingDiverged: On a non-finite loss or gradient.
    """
    config.validate()
    out = Path(run_dir) if run_dir is not None else \
        Path(config.runs_dir) / (config.run_name or config.default_run_name())
    ckpt_path = out / "checkpoint.pt"
    ckpt: dict[str, Any] | None = None
    if resume:
        ckpt = load_checkpoint(ckpt_path, env_id=config.env_id, map_location=config.device)
        if ckpt["algo"] != config.algo:
            raise CheckpointError(f"{ckpt_path} was trained with {ckpt['algo']!r}, not "
                                  f"{config.algo!r}.")
        saved = {k: v for k, v in ckpt["config"].items() if k in asdict(config)}
        saved["hidden"] = tuple(saved.get("hidden", config.hidden))
        config = replace(config, **{**saved, "iterations": config.iterations,
                                    "time_budget": config.time_budget})
    elif write and ckpt_path.exists():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or "
                              "choose another --run-name.")

    # --- env, network, optimizer, data stream: identical for every algorithm ---
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    env_kwargs = config.env_make_kwargs()
    env = gym.make(config.env_id, **env_kwargs)
    core: ControlCore = env.unwrapped.core  # type: ignore[attr-defined]
    dtype = env.unwrapped.dtype  # type: ignore[attr-defined]
    env.close()
    spec = _network_spec(config, core)
    policy = make_network(config.network, core.obs_dim, core.n, hidden=config.hidden,
                          device=device, seed=config.seed)
    optimizer = make_optimizer(config.optimizer, policy.parameters(), config.lr)
    data_gen = torch.Generator(device=device).manual_seed(config.seed)
    eval_seeds = range(config.eval_seed, config.eval_seed + config.eval_episodes)
    eval_s0, eval_target = make_eval_tasks(config.env_id, eval_seeds, env_kwargs)

    iteration, train_time = 0, 0.0
    history: list[dict[str, float]] = []
    if ckpt is not None:
        missing = [k for k in ("optimizer", "data_rng", "train_time") if k not in ckpt]
        if missing:
            raise CheckpointError(f"{ckpt_path} lacks {missing}, which resuming needs; it can "
                                  "still be evaluated, or start a new run.")
        try:
            policy.load_state_dict(ckpt["model"])
            optimizer.load_state_dict(ckpt["optimizer"])
        except (RuntimeError, ValueError, KeyError) as exc:
            raise CheckpointError(f"{ckpt_path} does not match network {spec}: {exc}") from exc
        try:
            data_gen.set_state(ckpt["data_rng"].cpu())
        except (AttributeError, RuntimeError, TypeError) as exc:
            raise CheckpointError(f"{ckpt_path} holds an invalid data_rng state: {exc}") from exc
        iteration, train_time = int(ckpt["iteration"]), float(ckpt["train_time"])
        history = [h for h in _read_metrics(out / "metrics.jsonl")
                   if h["iteration"] <= iteration]

    def payload() -> dict[str, Any]:
        return {"algo": config.algo, "env_id": config.env_id,
                "env_kwargs": json.loads(config.env_kwargs), "network": spec,
                "config": {**asdict(config), "hidden": list(config.hidden)},
                "model": policy.state_dict(), "optimizer": optimizer.state_dict(),
                "iteration": iteration, "train_time": train_time,
                "data_rng": data_gen.get_state()}

    def evaluate() -> dict[str, float]:
        policy.eval()
        summary = evaluate_torch(policy, core, eval_s0, eval_target).summary()
        policy.train()
        return summary

    def save() -> None:
        save_checkpoint(ckpt_path, payload())

    recorder = RunRecorder(config, out if write else None, evaluate, save, on_eval=on_eval,
                           history=history)

    from tqdm.auto import tqdm

    # With a time budget that ends the run before `iterations`, the bar counts seconds.
    by_time = 0 < config.time_budget and config.iterations >= 10**6
    bar = tqdm(total=config.time_budget if by_time else config.iterations,
               initial=train_time if by_time else iteration, disable=not progress,
               unit="s" if by_time else "it", desc=f"{config.algo} {config.env_id}",
               dynamic_ncols=True, bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} {unit} "
               "[{elapsed}<{remaining}{postfix}]" if by_time else None)
    policy.train()
    clock = training_clock(config.clock)
    try:
        while iteration < config.iterations and (config.time_budget <= 0
                                                 or train_time < config.time_budget):
            t0 = clock()
            # The checkpoint written on divergence is the state *before* this iteration, its
            # data stream included, so that resuming from it replays this same batch.
            rng_before = data_gen.get_state()

            def last_good(rng: torch.Tensor = rng_before) -> dict[str, Any]:
                return {**payload(), "data_rng": rng}

            s0, target = core.sample_tasks(config.batch_size, data_gen, device=device,
                                           dtype=dtype)
            try:
                loss, metrics = loss_fn(policy, core, s0, target, config)
            except TrainingDiverged as exc:  # the algorithm knows the cause; keep its advice
                _diverged(out if write else None, last_good, iteration, "loss", str(exc))
            # --- stop before a non-finite update can reach the weights ---
            if not torch.isfinite(loss):
                _diverged(out if write else None, last_good, iteration, "loss")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if not all(torch.isfinite(p.grad).all() for p in policy.parameters()
                       if p.grad is not None):
                _diverged(out if write else None, last_good, iteration, "gradient")
            optimizer.step()
            # A finite gradient can still overflow the weights (e.g. a huge --lr). The
            # pre-update weights are gone then, so nothing is saved: checkpoint.pt keeps the
            # last periodic save, and never holds non-finite weights.
            if not all(torch.isfinite(p).all() for p in policy.parameters()):
                _diverged(None, last_good, iteration, "weights after the update",
                          "The update overflowed the weights; lower --lr. "
                          + (f"{ckpt_path} keeps the last periodic checkpoint (see "
                             "--checkpoint-every)." if write else ""))
            dt = clock() - t0
            train_time += dt
            iteration += 1
            # (the last iteration overshoots the budget; keep the bar at 100 %)
            bar.update(min(dt, max(config.time_budget - bar.n, 0.0)) if by_time else 1)
            record = recorder.step(iteration, train_time,
                                   {"loss": float(loss.detach()), **metrics})
            if record is not None:
                bar.set_postfix(it=iteration, loss=f"{record['loss']:.3g}",
                                err=f"{metrics.get('target_error', float('nan')):.3g}")
    finally:
        bar.close()

    final = recorder.finish(iteration, train_time)
    return TrainResult(policy.eval(), core, out if write else None, iteration, train_time,
                       final, recorder.history)


def _diverged(out: Path | None, payload: Callable[[], dict[str, Any]], iteration: int,
              what: str, advice: str = "Lower --lr or check the env settings.") -> NoReturn:
    """Save the last good weights (the update has not been applied) and stop."""
    where = ""
    if out is not None:
        save_checkpoint(out / "checkpoint.pt", payload())
        where = f" The last good weights (before this update) are in {out / 'checkpoint.pt'}."
    raise TrainingDiverged(f"Non-finite {what} at iteration {iteration + 1}; training stopped."
                           f"{where} {advice}")


def _read_metrics(path: Path) -> list[dict[str, float]]:
    """Records of ``metrics.jsonl``; a line cut short by a killed run is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(record, dict) and "iteration" in record:
            records.append(record)
    return records


def _write_metrics(path: Path, records: list[dict[str, float]]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))


def _append_metric(path: Path, record: dict[str, float]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(record) + "\n")

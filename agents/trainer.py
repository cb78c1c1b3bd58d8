"""The one training loop of every algorithm, on every problem type.

An **algorithm** (``Algorithm``) supplies a **loss**
``loss(network, problem, batch, config) -> Step`` and may supply its own **update**
``update(network, optimizer, problem, batch, config) -> Step`` (default,
``gradient_update``: ``zero_grad; backward; finite-gradient check; optimizer.step``), e.g.
an update direction that is not the gradient of any loss (half-inverse gradients). A
**problem** (``agents.problems``, built from an env id) supplies the data stream, the
held-out sets and metrics and the network's dimensions. ``run_training`` owns everything
around them, once, so that comparisons differ only in the algorithm:

* the **data stream**: every iteration draws a fresh batch with one call
  ``problem.sample(batch_size, generator)`` from a ``torch.Generator`` seeded with
  ``data_seed`` (default ``seed``): the same stream for every method with the same seed;
* the **network** (built by name, seeded: every method starts from the same weights);
* the optimizer (any of ``OPTIMIZERS``), the stopping rule (``iterations`` and/or a
  ``time_budget`` on ``clock`` — wall or process CPU time — that counts training work only:
  sampling, loss, update; not metrics, evaluation or I/O; a budget without ``iterations``
  governs alone, and ``TrainResult.stopped_by`` / ``final_eval.json`` say which limit ended
  the run);
* **divergence**: a non-finite loss, gradient or update stops training *before* it reaches the
  weights (``NonFiniteUpdate``), saves the last good state when writing, and raises
  ``TrainingDiverged`` carrying the iteration; a finite update that overflows the weights
  stops too (nothing is saved then). Sweeps catch it and record the run as diverged;
* the run directory ``runs/<run-name>/``: ``config.json``, ``metrics.jsonl``, ``checkpoint.pt``
  (atomic, CRC-checked: ``agents.checkpoint``), ``final_eval.json`` and
  ``learning_curve.png``; ``resume=True`` continues from the checkpoint to the same result an
  uninterrupted run gives (CPU).
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NoReturn, Protocol

import gymnasium as gym
import torch
from torch import nn

import sipenv  # noqa: F401  (registers the sip/ ids)
from agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.networks import NETWORKS, SPATIAL_NETWORKS, UNETS, make_network
from agents.outputs import progress_interval
from agents.problems import (
    TRAINING_OWNED_KWARGS,
    VALIDATION_SEED,
    InverseProblem,
    Problem,
    TaskProblem,
    check_env_kwargs,
    env_error,
    make_problem,
)
from sipenv.envs.control import parse_device
from sipenv.envs.core import TaskCore
from sipenv.validation import (
    check_bool,
    check_choice,
    check_int,
    check_positive,
    is_int,
    is_real,
)

__all__ = [
    "DEFAULT_ITERATIONS",
    "LR_SCHEDULES",
    "OPTIMIZERS",
    "SEED_MAX",
    "Algorithm",
    "LossFn",
    "NonFiniteUpdate",
    "RunRecorder",
    "Step",
    "TrainConfig",
    "TrainResult",
    "TrainingDiverged",
    "UpdateFn",
    "budget_progress",
    "build_network",
    "check_finite",
    "gradient_update",
    "lr_factor",
    "make_optimizer",
    "policy_from_checkpoint",
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


LR_SCHEDULES = ("constant", "cosine")
"""Learning-rate schedules of ``TrainConfig.lr_schedule`` (``lr_factor``)."""

DEFAULT_ITERATIONS = 1000
"""The iteration limit of a run given neither ``iterations`` nor a ``time_budget``."""

SEED_MAX = 2**32 - 1
"""Largest seed (numpy's and stable-baselines3's seeding take 32-bit seeds)."""


class TrainingDiverged(RuntimeError):
    """The loss, a gradient, an update or the weights became NaN/inf; training stopped.

    Attributes:
        iteration: The (1-based) iteration that diverged.
        network: The network as training left it: the last good weights when the loop stopped
            before the update (``weights_ok``), else the overflowed ones.
        weights_ok: Whether ``network`` holds the last good (finite) weights.
    """

    def __init__(self, message: str, *, iteration: int | None = None,
                 network: nn.Module | None = None, weights_ok: bool = True) -> None:
        super().__init__(message)
        self.iteration = iteration
        self.network = network
        self.weights_ok = weights_ok


class NonFiniteUpdate(RuntimeError):
    """Raised by an update *before* it changes the weights: what was non-finite (``what``:
    ``"loss"``, ``"gradient"``, ``"update"``) and advice. The loop turns it into
    ``TrainingDiverged`` after saving the last good state."""

    def __init__(self, what: str, advice: str = "") -> None:
        super().__init__(f"non-finite {what}")
        self.what, self.advice = what, advice


@dataclass
class TrainConfig:
    """Settings every algorithm shares (each algorithm's config adds its own)."""

    algo: str = "base"
    """Algorithm name (set by each algorithm's config)."""
    env_id: str = "sip/ControlledDiffusion-v0"
    """Gymnasium id of the problem: a control or correction env, or a single-step inverse
    problem (sip/SineInversion-v0, sip/HeatInverse-v0)."""
    env_kwargs: str = "{}"
    """Extra ``gym.make`` keyword arguments as a JSON object, e.g. '{"nu": 0.02}'."""
    env_dtype: Literal["float32", "float64"] = "float32"
    """Precision of the physics (the network is float32, except on sip/SineInversion-v0, where
    it shares this precision; sip/HeatInverse-v0's physics always runs in float64)."""
    network: str = "mlp"
    """Network architecture by name (see agents.networks.NETWORKS)."""
    hidden: tuple[int, ...] = (256, 256)
    """Hidden layer widths (mlp), or filters per level (unet, e.g. 16 16 16 16)."""
    optimizer: Literal["adam", "sgd", "adagrad", "adadelta", "rmsprop"] = "adam"
    """Torch optimizer for the network."""
    lr: float = 1e-3
    """Learning rate."""
    lr_schedule: Literal["constant", "cosine"] = "constant"
    """Learning-rate schedule: 'constant', or 'cosine' (lr·½(1 + cos πp), from lr at the start
    to 0 at the end of the budget; p is the fraction of the budget done, see budget_progress).
    Extending a cosine run with --resume and larger limits stretches the rest of the schedule
    over them (a note says so)."""
    batch_size: int = 64
    """Problems per iteration (fresh ones every iteration)."""
    iterations: int | None = None
    """Maximum number of training iterations (None: 1000 without a time budget; with one, the
    budget alone governs)."""
    time_budget: float = 0.0
    """Budget in seconds of training (0 = none), on `clock`; with iterations too, training stops
    at whichever limit comes first."""
    clock: Literal["wall", "cpu"] = "wall"
    """How training time is measured (time_budget, logs): wall-clock, or this process's CPU time
    (unaffected by other jobs on a shared machine; equals wall-clock for one torch thread on an
    idle core, but not on a GPU, whose work it does not count)."""
    seed: int = 0
    """Seeds the network initialisation (and the training stream unless data_seed is set)."""
    data_seed: int | None = None
    """Seed of the training data stream (None: the same as seed)."""
    device: str = "cpu"
    """Torch device for physics and network, e.g. 'cpu' or 'cuda'."""
    threads: int = 1
    """torch CPU threads (0 = torch's default, one per core). One is the robust choice: the
    tensors are small, and on a busy machine torch's default pool can be 10-40x slower."""
    eval_episodes: int = 256
    """Size of the held-out sets (episodes of a control task, samples of an inverse problem)."""
    eval_seed: int = VALIDATION_SEED
    """Seed of the held-out validation set: episodes env.reset(seed=eval_seed + i) of a control
    task, or the batch of a generator seeded eval_seed of an inverse problem (which is also
    scored on the test set of agents.problems.TEST_SEED)."""
    eval_every: int = 0
    """Evaluate every this many iterations (0 = only at the end)."""
    eval_points: int = 0
    """Instead of eval_every: evaluate before training and at this many evenly spaced moments
    of the budget (time_budget if set, else iterations); 0 = off."""
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
    """Show a progress bar with the live loss and error."""

    def validate(self) -> None:
        """Check every setting (type, range, choice, finiteness), that the output paths stay
        where they belong, and that the algorithm fits the problem, before any work.

        Raises:
            ValueError: Naming the setting and how to fix it.
        """
        self.check_fields()
        self.check_problem(self.make_problem_checked())

    def check_fields(self) -> None:
        """Check every field of ``TrainConfig`` on its own (no env is built); subclasses add
        their own fields' checks.

        Raises:
            ValueError: Naming the setting and how to fix it.
        """
        algo_default = type(self).__dataclass_fields__["algo"].default
        check_choice("algo", self.algo, [algo_default],
                     hint=f"({type(self).__name__} trains {algo_default!r}.)")
        if not isinstance(self.env_id, str) or self.env_id not in gym.registry:
            known = sorted(k for k in gym.registry if k.startswith("sip/"))
            raise ValueError(f"Unknown env id {self.env_id!r}; sipenv provides {known}.")
        if not isinstance(self.env_kwargs, str):
            raise ValueError(f"env_kwargs must be a JSON object as text, e.g. "
                             f"'{{\"nu\": 0.02}}' (json.dumps of a dict); got "
                             f"{self.env_kwargs!r}.")
        check_choice("env_dtype", self.env_dtype, ["float32", "float64"])
        check_choice("network", self.network, sorted(NETWORKS))
        if not isinstance(self.hidden, (tuple, list)) or not self.hidden or not all(
                is_int(h) and h >= 1 for h in self.hidden):
            raise ValueError(f"hidden widths must be ints ≥ 1 (at least one), got "
                             f"{self.hidden!r}.")
        check_choice("optimizer", self.optimizer, sorted(OPTIMIZERS))
        check_positive("lr", self.lr)
        check_choice("lr_schedule", self.lr_schedule, list(LR_SCHEDULES))
        check_int("batch_size", self.batch_size, minimum=1)
        if self.iterations is not None:
            check_int("iterations", self.iterations, minimum=1,
                      hint="(Leave it out to train for --time-budget alone.)")
        if not (is_real(self.time_budget) and math.isfinite(self.time_budget)
                and self.time_budget >= 0):
            raise ValueError(f"time_budget must be ≥ 0 seconds (0 = none), got "
                             f"{self.time_budget!r}.")
        check_choice("clock", self.clock, ["wall", "cpu"])
        check_int("seed", self.seed, minimum=0, maximum=SEED_MAX)
        if self.data_seed is not None:
            check_int("data_seed", self.data_seed, minimum=0, maximum=SEED_MAX)
        if not isinstance(self.device, str):
            raise ValueError(f"device must be a string such as 'cpu' or 'cuda', got "
                             f"{self.device!r}.")
        try:
            parse_device(self.device)
        except ValueError as exc:
            raise ValueError(f"{exc} Use --device cpu.") from exc
        check_int("threads", self.threads, minimum=0)
        check_int("eval_episodes", self.eval_episodes, minimum=1)
        check_int("eval_seed", self.eval_seed, minimum=0, maximum=SEED_MAX)
        for name in ("eval_every", "eval_points", "log_every", "checkpoint_every"):
            check_int(name, getattr(self, name), minimum=0)
        check_bool("resume", self.resume)
        check_bool("progress", self.progress)
        self.run_dir()

    def run_dir(self) -> Path:
        """``runs_dir/run_name`` (default name: ``default_run_name``).

        Raises:
            ValueError: If ``run_name`` would leave ``runs_dir`` (absolute, or ``..`` going
                above it) or is not a plain name, or either is not a string.
        """
        if not isinstance(self.runs_dir, (str, Path)) or not str(self.runs_dir) \
                or "\0" in str(self.runs_dir):
            raise ValueError(f"runs_dir must be a folder path, got {self.runs_dir!r}.")
        if not isinstance(self.run_name, str) or "\0" in self.run_name:
            raise ValueError(f"run_name must be a string, got {self.run_name!r}.")
        name = self.run_name or self.default_run_name()
        parts = Path(os.path.normpath(name)).parts
        if Path(name).is_absolute() or not parts or parts[0] in (".", ".."):
            meant = os.path.normpath(os.path.join(self.runs_dir, name))
            raise ValueError(
                f"run_name {name!r} does not name a folder inside --runs-dir "
                f"{str(self.runs_dir)!r} (a run directory must stay inside it). Give a plain "
                "name, or choose another parent folder with --runs-dir, e.g. --runs-dir "
                f"{os.path.dirname(meant) or '.'} --run-name "
                f"{os.path.basename(meant) or 'my-run'}.")
        return Path(self.runs_dir) / name

    def make_problem_checked(self) -> TaskProblem | InverseProblem:
        """``make_problem``, with the env's refusal of ``env_kwargs`` as a ``ValueError``.

        Raises:
            ValueError: If ``env_kwargs`` sets a key a flag owns, or does not fit the env.
        """
        self.env_make_kwargs()
        try:  # builds the env once (cheap): bad env_kwargs fail here, before any work
            return self.make_problem()
        except (TypeError, ValueError) as exc:
            raise ValueError(f"env_kwargs {self.env_kwargs} do not fit {self.env_id}: "
                             f"{env_error(self.env_id, exc)} Set only the env's own settings "
                             "with --env-kwargs.") from exc

    def plain_update(self) -> bool:
        """Whether these settings train by the plain gradient update (``gradient_update`` of
        the algorithm's loss) even though the algorithm has its own update for other settings
        (e.g. DP without clipping or truncation). Data-parallel training needs it."""
        return False

    def check_problem(self, problem: Problem) -> None:
        """Refuse a problem the algorithm cannot train on (each algorithm's config overrides
        this, calling this one too), with the fix in the message. Here: the network must fit
        the problem.

        Raises:
            ValueError: If the combination cannot work.
        """
        if isinstance(problem, TaskProblem) and problem.spatial is not None:
            obs_shape, act_shape = problem.core.observation_shape, problem.core.action_shape
            if self.network not in SPATIAL_NETWORKS:
                raise ValueError(f"{problem.env_id} observes 2-D fields {obs_shape}; use a "
                                 f"spatial network: --network {' or '.join(SPATIAL_NETWORKS)} "
                                 "(scripts/compare.py: --network too).")
            if tuple(act_shape[1:]) != tuple(obs_shape[1:]):
                raise ValueError(f"{problem.env_id}'s action grid {tuple(act_shape[1:])} differs "
                                 f"from its observation grid {tuple(obs_shape[1:])}; the spatial "
                                 "networks give actions on the observation grid. Leave "
                                 "control_resolution and actuators out of --env-kwargs.")
        elif isinstance(problem, TaskProblem) and (len(problem.core.action_shape) != 1
                                                   or len(problem.core.observation_shape) != 1):
            raise ValueError(
                f"{problem.env_id} has observations of shape {problem.core.observation_shape} "
                f"and actions of shape {problem.core.action_shape}; the training loop's networks "
                "take flat observations and give flat actions, or 2-D fields on one grid (on "
                "the 2-D envs: full observation and per-cell actuation, no sensors or "
                "actuators). Use the env through Gymnasium with a policy of your own.")
        if self.network in UNETS and isinstance(problem, InverseProblem) \
                and len(problem.shape) < 2:
            raise ValueError(f"--network {self.network} needs a field; {problem.env_id}'s "
                             f"inputs are vectors {problem.shape}. Use --network mlp.")
        try:  # (a few small layers: cheap) e.g. too many U-Net levels for the grid
            build_network(problem.network_spec(self.network, tuple(self.hidden)))
        except ValueError as exc:
            raise ValueError(f"--network {self.network} --hidden "
                             f"{' '.join(map(str, self.hidden))} does not fit "
                             f"{problem.env_id}: {exc}") from exc

    @property
    def iteration_limit(self) -> int | None:
        """The iteration limit in force: ``iterations`` if given, else ``DEFAULT_ITERATIONS``
        without a time budget and none with one (the budget governs)."""
        if self.iterations is not None:
            return self.iterations
        return None if self.time_budget > 0 else DEFAULT_ITERATIONS

    def make_problem(self) -> TaskProblem | InverseProblem:
        """The problem of ``env_id`` with these ``env_kwargs``, device and dtype."""
        kwargs = self.env_make_kwargs()
        kwargs.pop("device"), kwargs.pop("dtype")
        return make_problem(self.env_id, kwargs, device=self.device, dtype=self.env_dtype)

    @property
    def stream_seed(self) -> int:
        """Seed of the training data stream: ``data_seed``, else ``seed``."""
        return self.seed if self.data_seed is None else self.data_seed

    def env_make_kwargs(self) -> dict[str, Any]:
        """``gym.make`` keyword arguments: the JSON ``env_kwargs`` plus device and dtype.

        Raises:
            ValueError: If ``env_kwargs`` is not a JSON object, or sets a key that a flag owns
                (``dtype``: --env-dtype, ``device``: --device, ``render_mode``, gym.make's
                wrapper options): the message names the flag to use.
        """
        kwargs = check_env_kwargs(self.env_kwargs, TRAINING_OWNED_KWARGS, flag="env_kwargs")
        return {**kwargs, "device": self.device, "dtype": self.env_dtype}

    def default_run_name(self) -> str:
        """``<algo>-<EnvName>-s<seed>``."""
        env = self.env_id.split("/")[-1].split("-v")[0]
        return f"{self.algo}-{env}-s{self.seed}"


@dataclass
class Step:
    """What an algorithm's loss (or update) returns for one batch.

    Attributes:
        loss: The scalar the default update differentiates (logged as ``loss``); a custom
            update may return any scalar it wants logged (detached is fine).
        prediction: What the problem scores on the training batch, outside the training clock
            (``agents.problems.Problem.batch_metrics``): the ``Rollout`` of a task, the
            guesses ``x`` ``(B, ...)`` of an inverse problem, or ``None``.
        metrics: Extra scalars of the algorithm, logged as they are.
    """

    loss: torch.Tensor
    prediction: Any = None
    metrics: dict[str, float] = field(default_factory=dict)


class LossFn(Protocol):
    """``loss(network, problem, batch, config) -> Step`` for one batch of ``problem.sample``."""

    def __call__(self, network: nn.Module, problem: Any, batch: Any,
                 config: Any) -> Step: ...


class UpdateFn(Protocol):
    """``update(network, optimizer, problem, batch, config) -> Step``: changes the weights
    once. It must raise ``NonFiniteUpdate`` instead of applying a non-finite step (see
    ``check_finite``); the loop checks the weights afterwards."""

    def __call__(self, network: nn.Module, optimizer: torch.optim.Optimizer, problem: Any,
                 batch: Any, config: Any) -> Step: ...


def check_finite(tensors: Iterable[torch.Tensor | None], what: str, advice: str = "") -> None:
    """Raise ``NonFiniteUpdate`` (``what``) if any of ``tensors`` holds NaN/inf.

    Cheap for small networks: one sum per tensor decides when all are finite (the common case);
    an exact entry-wise check decides otherwise, so huge finite entries are never mistaken for
    overflow. ``None`` entries (parameters without a gradient) are skipped.
    """
    with torch.no_grad():
        present = [t.detach() for t in tensors if t is not None]
        # A sum is finite only if every entry is (NaN and ±inf propagate), and one sum per
        # tensor costs ~15x less than a max-abs norm; only when a sum is not finite (NaN/inf,
        # or a sum of huge finite entries that overflowed) is every entry checked exactly.
        finite = not present or bool(torch.isfinite(torch.stack(
            [t.sum(dtype=torch.float64) for t in present])).all()) or all(
            bool(torch.isfinite(t).all()) for t in present)
    if not finite:
        raise NonFiniteUpdate(what, advice)


def gradient_update(loss: LossFn) -> UpdateFn:
    """The default update of an algorithm with ``loss``: ``zero_grad; backward;
    finite-gradient check; optimizer.step``; a non-finite loss or gradient raises
    ``NonFiniteUpdate`` before the weights change."""

    def update(network: nn.Module, optimizer: torch.optim.Optimizer, problem: Any, batch: Any,
               config: Any) -> Step:
        step = loss(network, problem, batch, config)
        if not bool(torch.isfinite(step.loss)):
            raise NonFiniteUpdate("loss")
        optimizer.zero_grad(set_to_none=True)
        step.loss.backward()
        check_finite((p.grad for p in network.parameters()), "gradient")
        optimizer.step()
        return step

    return update


@dataclass(frozen=True)
class Algorithm:
    """A training algorithm: its config class, its loss and/or its own update, or (for
    methods outside this loop, e.g. PPO through stable-baselines3) its own ``train``.

    Adding an algorithm is one module that defines ``ALGORITHM = Algorithm(...)`` plus one line
    in ``agents.registry.ALGORITHMS``. Which problems it accepts is its config's
    ``TrainConfig.check_problem``.

    Attributes:
        name: The name on the command line (``scripts/train.py <name>``).
        config: Its ``TrainConfig`` subclass (``algo`` set to ``name``).
        loss: ``loss(network, problem, batch, config) -> Step``.
        update: Its own update (default: ``gradient_update`` of ``loss``).
        trainer: Its own training function (then ``loss``/``update`` are unused).
        extras: Optional extras it needs to train (``agents.extras.EXTRAS``), which scripts
            check with their other arguments.
    """

    name: str
    config: type[TrainConfig]
    loss: LossFn | None = None
    update: UpdateFn | None = None
    trainer: Callable[..., TrainResult] | None = None
    extras: tuple[str, ...] = ()

    def check_extras(self) -> None:
        """Raise ``ImportError`` (with the install command) if an extra it needs is missing."""
        from agents.extras import require_extra

        for extra in self.extras:
            require_extra(extra, f"{self.name} training")

    def make_update(self) -> UpdateFn:
        """The update the loop calls every iteration."""
        if self.update is not None:
            return self.update
        if self.loss is None:
            raise TypeError(f"Algorithm {self.name!r} has neither a loss nor an update.")
        return gradient_update(self.loss)

    def train(self, config: TrainConfig, **kwargs: Any) -> TrainResult:
        """Train with ``config``; ``kwargs`` as ``run_training``."""
        if self.trainer is not None:
            return self.trainer(config, **kwargs)
        return run_training(config, self, **kwargs)


@dataclass
class TrainResult:
    """What ``run_training`` returns."""

    policy: nn.Module
    """The trained network (eval mode): a policy, or ``x = f(y*)`` of an inverse problem."""
    problem: TaskProblem | InverseProblem
    run_dir: Path | None
    iterations: int
    train_time: float
    final_eval: dict[str, float]
    history: list[dict[str, float]] = field(default_factory=list)
    stopped_by: str = "iterations"
    """The limit that ended the run: ``"iterations"`` or ``"time_budget"``."""

    @property
    def core(self) -> TaskCore:
        """The task core of a control or correction problem.

        Raises:
            TypeError: For an inverse problem (it has none; use ``problem.physics``).
        """
        if not isinstance(self.problem, TaskProblem):
            raise TypeError(f"{self.problem.env_id} is a single-step inverse problem without a "
                            "task core; use result.problem.physics.")
        return self.problem.core


def training_clock(name: str) -> Callable[[], float]:
    """``"wall"`` → ``time.perf_counter``; ``"cpu"`` → ``time.process_time``."""
    if name not in ("wall", "cpu"):
        raise ValueError(f"clock must be 'wall' or 'cpu', got {name!r}.")
    return time.perf_counter if name == "wall" else time.process_time


def lr_factor(schedule: str, progress: float) -> float:
    """The multiplier of the base learning rate at ``progress`` ∈ [0, 1] of the budget:
    1 for ``"constant"``; ``½(1 + cos πp)`` for ``"cosine"`` (1 at the start, ½ half-way, 0 at
    the end; Loshchilov & Hutter, SGDR, ICLR 2017, without restarts). Progress is clipped to
    [0, 1].

    Raises:
        ValueError: For a schedule not in ``LR_SCHEDULES``.
    """
    p = min(max(float(progress), 0.0), 1.0)
    if schedule == "constant":
        return 1.0
    if schedule == "cosine":
        return 0.5 * (1.0 + math.cos(math.pi * p))
    raise ValueError(f"Unknown lr_schedule {schedule!r}; choose one of {list(LR_SCHEDULES)}.")


def budget_progress(config: TrainConfig, iteration: int, train_time: float) -> float:
    """The fraction of a run's budget done after ``iteration`` iterations and ``train_time``
    seconds: ``iteration / iterations`` or ``train_time / time_budget``, whichever is further
    along (the run stops at whichever limit comes first), in [0, 1]. It depends only on the
    run's counters, so a resumed run (and every rank of a data-parallel one) continues the
    same schedule; extending a run with a larger limit stretches what is left of it."""
    done = 0.0
    limit = config.iteration_limit
    if limit:
        done = iteration / limit
    if config.time_budget > 0:
        done = max(done, train_time / config.time_budget)
    return min(max(done, 0.0), 1.0)


def make_optimizer(name: str, params: Any, lr: float) -> torch.optim.Optimizer:
    """Build a torch optimizer by name (``adam``, ``sgd``, ``adagrad``, ``adadelta``,
    ``rmsprop``)."""
    if name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer {name!r}; choose one of {sorted(OPTIMIZERS)}.")
    optimizer_cls: Any = OPTIMIZERS[name]
    return optimizer_cls(params, lr=lr)


def build_network(spec: dict[str, Any], *, device: str | torch.device = "cpu",
                  seed: int | None = None) -> nn.Module:
    """The network of a spec (``agents.problems.Problem.network_spec``), seeded."""
    kwargs = {"spatial": tuple(spec["spatial"])} if spec.get("spatial") else {}
    net = make_network(spec["name"], spec["obs_dim"], spec["act_dim"], hidden=spec["hidden"],
                       device=device, seed=seed, **kwargs)
    return net.to(getattr(torch, spec.get("dtype", "float32")))


def policy_from_checkpoint(path: str | Path, *, device: str | torch.device = "cpu",
                           env_id: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the trained network of a checkpoint (in eval mode) and return it with the data.

    Raises:
        CheckpointError: If the checkpoint is invalid or its weights do not fit its network.
    """
    ckpt = load_checkpoint(path, env_id=env_id, map_location=device)
    spec = ckpt["network"]
    policy = build_network(spec, device=device)
    try:
        policy.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"Checkpoint {path} weights do not fit network {spec}: {exc}") \
            from exc
    return policy.eval(), ckpt


def _plot_curve(history: list[dict[str, float]], path: Path, title: str,
                clock: str = "wall", metric: str = "target_error",
                eval_metric: str = "eval_target_error_mean") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [h for h in history if metric in h]
    evals = [h for h in history if eval_metric in h]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    for ax, key, label in ((axes[0], "iteration", "iteration"),
                           (axes[1], "time", f"training time [s, {clock} clock]")):
        if train:
            ax.semilogy([h[key] for h in train], [h[metric] for h in train],
                        lw=1, label="training batch")
        if evals:
            ax.semilogy([h[key] for h in evals], [h[eval_metric] for h in evals],
                        "o-", label="held-out")
        ax.set_xlabel(label)
        ax.set_ylabel(metric if metric != "target_error"
                      else "relative terminal error ‖s_T − s*‖² / ‖s*‖²")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


class RunRecorder:
    """Run bookkeeping shared by every training loop (here and in ``agents.ppo``).

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
        metric: Training-batch metric plotted in the learning curve.
        eval_metric: Held-out metric plotted in the learning curve (without ``eval_``).
    """

    def __init__(self, config: TrainConfig, out: Path | None,
                 evaluate: Callable[[], dict[str, float]], save: Callable[[], None], *,
                 on_eval: Callable[[dict[str, float]], None] | None = None,
                 history: list[dict[str, float]] | None = None,
                 metric: str = "target_error", eval_metric: str = "target_error_mean") -> None:
        self.config, self.out = config, out
        self.evaluate, self.save, self.on_eval = evaluate, save, on_eval
        self.metric, self.eval_metric = metric, eval_metric
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

    def evaluation(self, iteration: int, train_time: float) -> dict[str, float]:
        """Evaluate now and keep the record (``eval_``-prefixed metrics)."""
        ev = {"iteration": iteration, "time": train_time,
              **{f"eval_{k}": v for k, v in self.evaluate().items()}}
        self._keep(ev)
        if self.on_eval is not None:
            self.on_eval(ev)
        return ev

    def step(self, iteration: int, train_time: float,
             metrics: dict[str, float]) -> dict[str, float] | None:
        """Bookkeeping after iteration ``iteration``; returns the record if it was logged."""
        cfg = self.config
        logged = None
        if cfg.log_every and iteration % cfg.log_every == 0:
            logged = {"iteration": iteration, "time": train_time, **metrics}
            self._keep(logged)
        if cfg.eval_every and iteration % cfg.eval_every == 0:
            self.evaluation(iteration, train_time)
        if self.out is not None and cfg.checkpoint_every and \
                iteration % cfg.checkpoint_every == 0:
            self.save()
        return logged

    def finish(self, iteration: int, train_time: float,
               stopped_by: str = "iterations") -> dict[str, float]:
        """Final evaluation; saves and writes ``final_eval.json`` (with ``stopped_by``: the
        limit that ended the run, ``"iterations"`` or ``"time_budget"``) and the learning
        curve."""
        final = self.evaluate()
        if self.out is not None:
            self.save()
            (self.out / "final_eval.json").write_text(json.dumps(
                {"iteration": iteration, "train_time": train_time, "stopped_by": stopped_by,
                 **final}, indent=2) + "\n")
            _plot_curve([*self.history, {"iteration": iteration, "time": train_time,
                                         **{f"eval_{k}": v for k, v in final.items()}}],
                        self.out / "learning_curve.png",
                        f"{self.config.algo} on {self.config.env_id}", self.config.clock,
                        self.metric, f"eval_{self.eval_metric}")
        return final


def stop_reason(config: TrainConfig, iteration: int, train_time: float) -> str:
    """Which limit ended a run: ``"time_budget"`` or ``"iterations"``."""
    limit = config.iteration_limit
    if limit is not None and iteration >= limit:
        return "iterations"
    return "time_budget" if config.time_budget > 0 and train_time >= config.time_budget \
        else "iterations"


def _eval_marks(config: TrainConfig) -> list[float]:
    """The ``eval_points`` evenly spaced moments of the budget (seconds or iterations)."""
    total = config.time_budget if config.time_budget > 0 else float(
        config.iteration_limit or DEFAULT_ITERATIONS)
    return [total * (i + 1) / config.eval_points for i in range(config.eval_points)]


def run_training(config: TrainConfig, algorithm: Algorithm | LossFn, *, resume: bool = False,
                 progress: bool = True, write: bool = True, run_dir: str | Path | None = None,
                 on_eval: Callable[[dict[str, float]], None] | None = None,
                 on_iteration: Callable[[int, float, dict[str, float]], None] | None = None
                 ) -> TrainResult:
    """Train a network on ``config.env_id``'s problem with ``algorithm``.

    Args:
        config: Settings (validated before any work starts).
        algorithm: An ``Algorithm``, or just a loss (``loss(network, problem, batch,
            config) -> Step``, trained with ``gradient_update``).
        resume: Continue from ``<run_dir>/checkpoint.pt`` (its settings are kept, validated
            like a new run's; only ``iterations`` and ``time_budget`` are taken from
            ``config``, to extend a run).
        progress: Show a progress bar with the live loss and error.
        write: Write the run directory (``False``: in-memory only, e.g. for sweeps).
        run_dir: Override ``runs_dir/run_name``.
        on_eval: Called with each evaluation record (e.g. to track error vs time).
        on_iteration: Called after every iteration with ``(iteration, train_time, metrics)``
            (the loss, the algorithm's metrics and the problem's training-batch metrics),
            outside the training clock.

    Raises:
        ValueError: For invalid settings, or an algorithm that does not fit the problem.
        FileExistsError: If the run directory already holds a checkpoint (or the logs of a run
            stopped before its first checkpoint) and ``resume`` is False.
        CheckpointError: If ``resume`` finds no valid, matching checkpoint, or its saved
            settings do not validate (nothing is written then).
        TrainingDiverged: On a non-finite loss, gradient, update or weights.
    """
    update = algorithm.make_update() if isinstance(algorithm, Algorithm) \
        else gradient_update(algorithm)
    config.validate()
    out = Path(run_dir) if run_dir is not None else config.run_dir()
    ckpt_path = out / "checkpoint.pt"
    ckpt: dict[str, Any] | None = None
    if resume:
        if not ckpt_path.is_file():
            raise CheckpointError(f"No run to resume: {ckpt_path} does not exist. Drop --resume "
                                  "to start this run, or name an existing run with --run-name "
                                  "(and --runs-dir).")
        ckpt = load_checkpoint(ckpt_path, env_id=config.env_id, map_location=config.device)
        if ckpt["algo"] != config.algo:
            raise CheckpointError(f"{ckpt_path} was trained with {ckpt['algo']!r}, not "
                                  f"{config.algo!r}.")
        config = resumed_config(config, ckpt["config"], ckpt_path)
    elif write and ckpt_path.exists():
        raise FileExistsError(f"{out} already holds a run; pass --resume to continue it or "
                              "choose another --run-name.")
    elif write and (out / "metrics.jsonl").exists():
        raise FileExistsError(f"{out} holds the logs of a run stopped before its first "
                              "checkpoint (nothing to resume); choose another --run-name, or "
                              "delete that folder to start over (--checkpoint-every sets how "
                              "often runs save).")

    # --- data-parallel training under torchrun (agents.distributed): every hook below does
    # nothing without a process group; with one, rank 0 alone writes and shows progress ---
    from agents import distributed

    group, update = distributed.prepare(config, algorithm, update, ckpt)
    write, progress = write and group.is_main, progress and group.is_main

    # --- problem, network, optimizer, data stream: identical for every algorithm ---
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    device = torch.device(config.device)
    problem = config.make_problem()
    spec = problem.network_spec(config.network, tuple(config.hidden))
    policy = build_network(spec, device=device, seed=config.seed)
    optimizer = make_optimizer(config.optimizer, policy.parameters(), config.lr)
    data_gen = problem.generator(config.stream_seed)
    held_out = problem.held_out_sets(config.eval_seed, config.eval_episodes)

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
                "data_rng": data_gen.get_state(), "world_size": group.world_size}

    def evaluate() -> dict[str, float]:
        was_training = policy.training
        policy.eval()
        summary: dict[str, float] = {}
        for prefix, data in held_out.items():
            summary.update({prefix + k: v for k, v in distributed.evaluate(
                problem, policy, data, group).items()})
        policy.train(was_training)
        return summary

    def save() -> None:
        save_checkpoint(ckpt_path, payload())

    recorder = RunRecorder(config, out if write else None, evaluate, save, on_eval=on_eval,
                           history=history, metric=problem.train_metric,
                           eval_metric=problem.eval_metric)
    marks = _eval_marks(config) if config.eval_points else []
    if marks and iteration == 0:
        recorder.evaluation(0, 0.0)
    while marks and (train_time if config.time_budget > 0 else iteration) >= marks[0]:
        marks.pop(0)  # (passed before a resume)

    from tqdm.auto import tqdm

    # With a time budget that ends the run before `iterations`, the bar counts seconds.
    limit = config.iteration_limit
    by_time = 0 < config.time_budget and (limit is None or limit >= 10**6)
    bar = tqdm(total=config.time_budget if by_time else limit,
               initial=train_time if by_time else iteration, disable=not progress,
               unit="s" if by_time else "it", desc=f"{config.algo} {config.env_id}",
               dynamic_ncols=True, mininterval=progress_interval(),
               bar_format="{l_bar}{bar}| {n:.0f}/{total:.0f} {unit} "
               "[{elapsed}<{remaining}{postfix}]" if by_time else None)
    policy.train()
    distributed.check_in_sync(policy, group, iteration=iteration, data_rng=data_gen.get_state(),
                              when="at the start")
    network = distributed.wrap(policy, group)  # (DistributedDataParallel under torchrun)
    clock = training_clock(config.clock)
    writing = out if write else None
    try:
        while (limit is None or iteration < limit) and (config.time_budget <= 0
                                                        or train_time < config.time_budget):
            # The checkpoint written on divergence is the state *before* this iteration, its
            # data stream included, so that resuming from it replays this same batch.
            rng_before = data_gen.get_state()

            def last_good(rng: torch.Tensor = rng_before) -> dict[str, Any]:
                return {**payload(), "data_rng": rng}

            if config.lr_schedule != "constant":  # (outside the training clock)
                rate = config.lr * lr_factor(config.lr_schedule,
                                             budget_progress(config, iteration, train_time))
                for group_ in optimizer.param_groups:
                    group_["lr"] = rate
            t0 = clock()
            batch = problem.sample(config.batch_size, data_gen)
            batch = distributed.shard(batch, group)  # (this rank's slice of the global batch)
            try:
                step = update(network, optimizer, problem, batch, config)
            except NonFiniteUpdate as exc:  # nothing reached the weights
                _diverged(writing, last_good, iteration, exc.what, policy,
                          exc.advice or "Lower --lr or check the env settings.")
            except TrainingDiverged as exc:  # the algorithm knows the cause; keep its advice
                _diverged(writing, last_good, iteration, "loss", policy, str(exc))
            # A finite update can still overflow the weights (e.g. a huge --lr). The pre-update
            # weights are gone then, so nothing is saved: checkpoint.pt keeps the last periodic
            # save, and never holds non-finite weights.
            try:
                check_finite(policy.parameters(), "weights after the update")
            except NonFiniteUpdate:
                _diverged(None, last_good, iteration, "weights after the update", policy,
                          "The update overflowed the weights; lower --lr. "
                          + (f"{ckpt_path} keeps the last periodic checkpoint (see "
                             "--checkpoint-every)." if write else ""), weights_ok=False)
            dt = clock() - t0
            # --- bookkeeping, outside the training clock ---
            metrics = {"loss": float(step.loss.detach()), **step.metrics,
                       **problem.batch_metrics(step.prediction, batch)}
            # (under torchrun: the slowest rank's step time and the ranks' mean metrics)
            dt, metrics = distributed.reduce_step(dt, metrics, group)
            train_time += dt
            iteration += 1
            if on_iteration is not None:
                on_iteration(iteration, train_time, metrics)
            # (the last iteration overshoots the budget; keep the bar at 100 %)
            bar.update(min(dt, max(config.time_budget - bar.n, 0.0)) if by_time else 1)
            record = recorder.step(iteration, train_time, metrics)
            if marks and (train_time if config.time_budget > 0 else iteration) >= marks[0]:
                while marks and (train_time if config.time_budget > 0
                                 else iteration) >= marks[0]:
                    marks.pop(0)
                recorder.evaluation(iteration, train_time)
            if record is not None:
                err = metrics.get(problem.train_metric, float("nan"))
                # (shown at the bar's next refresh: a forced one would flood a log file)
                bar.set_postfix(it=iteration, loss=f"{record['loss']:.3g}", err=f"{err:.3g}",
                                refresh=False)
    finally:
        bar.close()

    distributed.check_in_sync(policy, group, iteration=iteration, data_rng=data_gen.get_state(),
                              when="at the end")
    stopped_by = stop_reason(config, iteration, train_time)
    final = recorder.finish(iteration, train_time, stopped_by)
    return TrainResult(policy.eval(), problem, out if write else None, iteration, train_time,
                       final, recorder.history, stopped_by)


def resumed_config(config: TrainConfig, saved: Any, ckpt_path: Path) -> TrainConfig:
    """``config`` with the settings a checkpoint was trained with (only ``iterations`` and
    ``time_budget`` are taken from ``config``, to extend the run), validated as a new run's.

    Raises:
        CheckpointError: If the saved settings are not a dict, hold fields this version does not
            know, or do not validate (e.g. an edited or older ``config``): nothing is written.
    """
    if not isinstance(saved, dict):
        raise CheckpointError(f"{ckpt_path} holds no settings dict ('config'); it cannot be "
                              "resumed. Start a new run.")
    fields = asdict(config)
    unknown = sorted(str(k) for k in saved if k not in fields)
    if unknown:
        raise CheckpointError(f"{ckpt_path} holds settings this version of {config.algo} does "
                              f"not know: {unknown}. It cannot be resumed; start a new run "
                              "(another --run-name).")
    saved = dict(saved)
    if isinstance(saved.get("hidden"), list):
        saved["hidden"] = tuple(saved["hidden"])
    merged = replace(config, **{**saved, "iterations": config.iterations,
                                "time_budget": config.time_budget})
    try:
        merged.validate()
    except ValueError as exc:
        raise CheckpointError(f"{ckpt_path} holds settings that are not valid: {exc} It cannot "
                              "be resumed; start a new run (another --run-name).") from exc
    return merged


def _diverged(out: Path | None, payload: Callable[[], dict[str, Any]], iteration: int,
              what: str, network: nn.Module, advice: str = "Lower --lr or check the env "
              "settings.", weights_ok: bool = True) -> NoReturn:
    """Save the last good weights (when the update has not been applied) and stop."""
    where = ""
    if out is not None:
        save_checkpoint(out / "checkpoint.pt", payload())
        where = f" The last good weights (before this update) are in {out / 'checkpoint.pt'}."
    raise TrainingDiverged(f"Non-finite {what} at iteration {iteration + 1}; training stopped."
                           f"{where} {advice}", iteration=iteration + 1,
                           network=network.eval(), weights_ok=weights_ok)


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

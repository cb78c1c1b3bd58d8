"""Single-step inverse-problem training: SIP versus plain optimizers on ``sip/SineInversion-v0``.

A network ``f_θ`` maps a target ``y*`` to a guess ``x = f_θ(y*)`` with ``P(x) ≈ y*``, for the
rotated, ill-conditioned sine of :class:`sipenv.physics.SinePhysics` (the characterisation
problem of Holl, Koltun & Thuerey, NeurIPS 2022). One iteration draws a fresh batch of targets
``y* ~ U([-1, 1]²)`` from a seeded stream (the same stream for every method), then either

* **SIP** (``method="sip"``): ``x = f_θ(y*)``; ``y = P(x)`` without gradient; Newton step on the
  y-loss ``ỹ = y + η (y* − y)``; local inverse ``x̃ = P⁻¹(ỹ; x)`` — one saddle-free Newton step on
  ``½‖P(x) − ỹ‖²`` (:meth:`SinePhysics.inverse`); proxy loss ``Σ|x − x̃|`` (L1, as the published
  code) or ``½‖x − x̃‖²`` (L2, as the book) with ``x̃`` constant, minimised by ``sip_optimizer``;
* or **a plain optimizer** (``adam``, ``sgd``, ``adagrad``, ``adadelta``, ``rmsprop``):
  gradient of ``½‖P(f_θ(y*)) − y*‖²`` through the physics, averaged over the batch.

The metric is the paper's: the distance from each prediction to the **nearest exact solution**
(:meth:`SinePhysics.solution_distance`), averaged over the batch, recorded every iteration on the
training batch (before that iteration's update) and summarised as the mean over the last 10 % of
iterations; a fixed held-out test batch is scored at the end as well.

The wall-clock ``time_budget`` counts only the training work (sampling, forward, physics,
backward, update); the metric bookkeeping is done outside the timer. Every method starts from the
same network weights (``seed``) and sees the same targets (``data_seed``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from agents.networks import make_network
from agents.sip import sip_inverse_targets
from agents.trainer import OPTIMIZERS, make_optimizer
from sipenv.physics.sine import SinePhysics

__all__ = [
    "METHODS",
    "REFERENCE_LR",
    "InverseTrainConfig",
    "InverseTrainResult",
    "check_run_settings",
    "evaluate_distance",
    "iteration_loss",
    "last_fraction_mean",
    "proxy_loss",
    "reference_lr",
    "sip_targets",
    "sweep_learning_rate",
    "train",
]

Method = Literal["sip", "adam", "sgd", "adagrad", "adadelta", "rmsprop"]
METHODS: tuple[str, ...] = ("sip", "adam", "sgd", "adagrad", "adadelta", "rmsprop")

REFERENCE_LR: dict[str, float] = {
    "sip": 1e-3, "adam": 1e-3, "sgd": 1e-2, "adadelta": 3e-3, "adagrad": 3e-3, "rmsprop": 3e-5,
}
"""The published learning rates (SIP_REFERENCE.md §1); SGD's is further divided by ``ξ²``."""


def reference_lr(method: str, xi: float) -> float:
    """The published learning rate of ``method`` at conditioning ``xi`` (SGD: ``1e-2/ξ²``)."""
    if method not in REFERENCE_LR:
        raise ValueError(f"Unknown method {method!r}; choose one of {list(METHODS)}.")
    return REFERENCE_LR[method] / (xi**2 if method == "sgd" else 1.0)


def check_run_settings(config: Any, positive: Sequence[str]) -> None:
    """Checks shared by the single-step training configs (sine, heat).

    ``config`` has ``method``, ``sip_optimizer``, ``proxy_loss``, ``batch_size``, ``eval_size``,
    ``iterations`` and ``time_budget``; every name in ``positive`` must be a finite number > 0.

    Raises:
        ValueError: Naming the first invalid setting.
    """
    if config.method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {config.method!r}.")
    if config.sip_optimizer not in OPTIMIZERS:
        raise ValueError(f"sip_optimizer must be one of {sorted(OPTIMIZERS)}, got "
                         f"{config.sip_optimizer!r}.")
    if config.proxy_loss not in ("l1", "l2"):
        raise ValueError(f"proxy_loss must be 'l1' or 'l2', got {config.proxy_loss!r}.")
    for name in positive:
        value = getattr(config, name)
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}.")
    if config.batch_size < 1 or config.eval_size < 1:
        raise ValueError("batch_size and eval_size must be ≥ 1.")
    if config.iterations < 0 or not (math.isfinite(config.time_budget)
                                     and config.time_budget >= 0):
        raise ValueError("iterations and time_budget must be ≥ 0.")
    if config.iterations == 0 and config.time_budget == 0:
        raise ValueError("Set iterations > 0 or time_budget > 0 (or both); with neither "
                         "the run would never stop.")


@dataclass
class InverseTrainConfig:
    """One training run on the sine inverse problem."""

    method: Method = "sip"
    """'sip' or a plain optimizer through the physics ('adam', 'sgd', 'adagrad', 'adadelta',
    'rmsprop')."""
    lr: float = 1e-3
    """Learning rate (of sip_optimizer for SIP)."""
    sip_optimizer: Literal["adam", "sgd", "adagrad", "adadelta", "rmsprop"] = "adam"
    """Optimizer that minimises SIP's proxy loss."""
    proxy_loss: Literal["l1", "l2"] = "l1"
    """SIP proxy loss: 'l1' = Σ|x − x̃| (published code), 'l2' = ½‖x − x̃‖² (book)."""
    eta: float = 1.0
    """SIP's Newton step size on the y-loss (1 = full step onto y*)."""
    max_loss_change: float = 0.2
    """Predicted-loss-change limit of the saddle-free Newton inverse."""
    xi: float = 1.0
    """Conditioning ξ of the physics."""
    phi: float = 0.0
    """Rotation φ of the physics in degrees."""
    gamma: float = 10.0
    """Global scale γ of the physics."""
    batch_size: int = 100
    """Fresh targets per iteration."""
    hidden: tuple[int, ...] = (32, 64, 32)
    """Hidden widths of the ReLU MLP 2 → ... → 2."""
    seed: int = 0
    """Seed of the network initialisation (identical for every method)."""
    data_seed: int = 0
    """Seed of the training target stream (identical for every method)."""
    iterations: int = 0
    """Maximum iterations (0 = no limit; then time_budget must be > 0)."""
    time_budget: float = 0.0
    """Wall-clock budget of training work in seconds (0 = no limit)."""
    eval_size: int = 1000
    """Size of the fixed validation and test batches."""
    val_seed: int = 1_000_000
    """Seed of the validation batch (used to pick learning rates)."""
    test_seed: int = 2_000_000
    """Seed of the test batch (reported, never used for choices)."""
    dtype: Literal["float32", "float64"] = "float32"
    """Precision of network and physics."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid setting."""
        check_run_settings(self, ("lr", "eta", "max_loss_change", "xi", "gamma"))
        if not math.isfinite(self.phi):
            raise ValueError(f"phi must be finite, got {self.phi!r}.")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"dtype must be 'float32' or 'float64', got {self.dtype!r}.")

    @property
    def optimizer(self) -> str:
        """The torch optimizer that updates the network."""
        return self.sip_optimizer if self.method == "sip" else self.method

    def physics(self) -> SinePhysics:
        """The physics of this run."""
        return SinePhysics(xi=self.xi, phi=self.phi, gamma=self.gamma,
                           max_loss_change=self.max_loss_change)


@dataclass
class InverseTrainResult:
    """What :func:`train` returns. Per-iteration arrays are indexed by iteration."""

    config: InverseTrainConfig
    network: nn.Module
    iterations: int
    train_time: float
    times: np.ndarray
    """Cumulative training time after each iteration (s)."""
    x_dist: np.ndarray
    """Mean distance to the nearest exact solution on each training batch (before its update)."""
    y_loss: np.ndarray
    """Mean ``½‖P(x) − y*‖²`` on each training batch."""
    val_x_dist: float
    """Mean distance on the fixed validation batch after training."""
    test_x_dist: float
    """Mean distance on the fixed test batch after training."""
    diverged_at: int | None = None
    """Iteration at which the loss became non-finite (training stopped there), else None."""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def time_per_iteration(self) -> float:
        """Mean training seconds per iteration."""
        return self.train_time / max(self.iterations, 1)

    def final_x_dist(self, fraction: float = 0.1, upto: int | None = None) -> float:
        """Mean training-batch distance over the last ``fraction`` of the first ``upto``
        iterations (default: all). ``inf`` if training diverged."""
        if self.diverged_at is not None:
            return math.inf
        return last_fraction_mean(self.x_dist[:upto], fraction)


# --- pure pieces ---------------------------------------------------------------------------------

def last_fraction_mean(values: Sequence[float] | np.ndarray, fraction: float = 0.1) -> float:
    """Mean of the last ``fraction`` of ``values`` (at least one value; NaN if empty)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return math.nan
    count = max(1, math.ceil(arr.size * fraction))
    return float(arr[-count:].mean())


def sip_targets(physics: SinePhysics, x: torch.Tensor, y_target: torch.Tensor,
                eta: float = 1.0) -> torch.Tensor:
    """SIP targets ``x̃ = P⁻¹(y + η (y* − y); x)`` (detached), ``(B, 2)``."""
    with torch.no_grad():
        y = physics.forward(x)
    return sip_inverse_targets(x.detach(), y, y_target, physics.inverse, eta)


def proxy_loss(x: torch.Tensor, x_target: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    """Batch mean of ``Σ|x − x̃|`` (``"l1"``) or ``½‖x − x̃‖²`` (``"l2"``)."""
    diff = x - x_target
    per_sample = diff.abs().sum(-1) if kind == "l1" else 0.5 * diff.pow(2).sum(-1)
    return per_sample.mean()


def iteration_loss(network: nn.Module, physics: SinePhysics, y_target: torch.Tensor,
                   config: InverseTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss one iteration minimises, and the predictions ``x`` it came from."""
    x = network(y_target)
    if config.method == "sip":
        # --- Newton step on the y-loss, saddle-free Newton inverse, proxy loss ---
        x_tilde = sip_targets(physics, x, y_target, config.eta)
        return proxy_loss(x, x_tilde, config.proxy_loss), x
    # --- plain optimizer: gradient through the physics ---
    return physics.loss(x, y_target).mean(), x


def evaluate_distance(network: nn.Module, physics: SinePhysics, y_target: torch.Tensor) -> float:
    """Mean distance of ``network(y*)`` to the nearest exact solutions."""
    with torch.no_grad():
        return float(physics.solution_distance(network(y_target), y_target).mean())


# --- training ------------------------------------------------------------------------------------

def train(config: InverseTrainConfig, *, network: nn.Module | None = None) -> InverseTrainResult:
    """Train ``f_θ`` on the sine inverse problem with ``config.method``.

    Args:
        config: Settings (validated first).
        network: Start from this network's weights (a copy is trained). Default: a fresh
            ``MLP 2 → hidden → 2`` seeded with ``config.seed``.

    Returns:
        The trained network and its per-iteration history. A non-finite loss stops training
        before the update and sets ``diverged_at`` (no exception: sweeps expect divergence).
    """
    config.validate()
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    physics = config.physics()
    net = make_network("mlp", 2, 2, hidden=config.hidden, seed=config.seed).to(dtype)
    if network is not None:
        net.load_state_dict(network.state_dict())
    optimizer = make_optimizer(config.optimizer, net.parameters(), config.lr)
    data = torch.Generator().manual_seed(config.data_seed)
    val = physics.sample_targets(config.eval_size, torch.Generator().manual_seed(config.val_seed),
                                 dtype=dtype)
    test = physics.sample_targets(config.eval_size,
                                  torch.Generator().manual_seed(config.test_seed), dtype=dtype)

    times: list[float] = []
    x_dist: list[float] = []
    y_loss: list[float] = []
    elapsed, iteration, diverged_at = 0.0, 0, None
    net.train()
    while ((config.iterations == 0 or iteration < config.iterations)
           and (config.time_budget == 0 or elapsed < config.time_budget)):
        t0 = time.perf_counter()
        y_target = physics.sample_targets(config.batch_size, data, dtype=dtype)
        loss, x = iteration_loss(net, physics, y_target, config)
        finite = bool(torch.isfinite(loss))
        if finite:  # never let a non-finite update reach the weights
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        elapsed += time.perf_counter() - t0
        if not finite:
            diverged_at = iteration + 1
            break
        iteration += 1
        # --- bookkeeping outside the timer ---
        with torch.no_grad():
            xd = x.detach()
            x_dist.append(float(physics.solution_distance(xd, y_target).mean()))
            y_loss.append(float(physics.loss(xd, y_target).mean()))
        times.append(elapsed)

    net.eval()
    return InverseTrainResult(
        config=config, network=net, iterations=iteration, train_time=elapsed,
        times=np.asarray(times), x_dist=np.asarray(x_dist), y_loss=np.asarray(y_loss),
        val_x_dist=math.inf if diverged_at else evaluate_distance(net, physics, val),
        test_x_dist=math.inf if diverged_at else evaluate_distance(net, physics, test),
        diverged_at=diverged_at)


def sweep_learning_rate(config: InverseTrainConfig, factors: Sequence[float]
                        ) -> tuple[InverseTrainResult, list[InverseTrainResult]]:
    """Train ``config`` with ``lr = factor · reference_lr(method, ξ)`` for each factor.

    The winner has the lowest distance on the fixed **validation** batch (not the test batch,
    and not the training metric that is reported); diverged runs lose.

    Returns:
        ``(best, all runs in the order of factors)``.
    """
    if not factors:
        raise ValueError("factors must not be empty.")
    base = reference_lr(config.method, config.xi)
    runs = [train(replace(config, lr=base * f)) for f in factors]
    best = min(runs, key=lambda r: (r.val_x_dist if math.isfinite(r.val_x_dist) else math.inf))
    return best, runs

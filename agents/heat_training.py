"""Single-step inverse-problem training on the 2-D heat equation: SIP versus plain optimizers.

The SIP paper's heat experiment (``SIP_REFERENCE.md`` §2; ``sip/HeatInverse-v0``'s physics): a
U-Net ``f_θ`` maps the observed, heavily diffused field ``y* = P(x*)`` to a reconstruction
``x = f_θ(y*)`` of the initial temperature ``x*`` (4–10 hot rectangles). One iteration draws a
fresh batch ``x*`` from a seeded stream (the same stream for every method), then either

* **SIP** (``method="sip"``): ``x = f_θ(y*)``; Newton step on the y-loss ``ỹ = y + η (y* − y)``;
  the **noise-aware regularised inverse** ``x̃ = P⁻¹(ỹ; x)`` (:meth:`HeatPhysics.inverse`); proxy
  loss ``½‖x − x̃‖²`` (``"l2"``, default) or ``Σ|x − x̃|`` (``"l1"``) with ``x̃`` constant,
  minimised by ``sip_optimizer``;
* or **a plain optimizer** (``adam``, ``sgd``, …): gradient of ``½‖P(f_θ(y*)) − y*‖²`` through
  the physics (float64, as the paper), averaged over the batch.

Physics runs in float64, the network in float32 (the paper's split). The metric is the paper's:
``Σ_cells |x − x*|`` averaged over a fixed test batch; the y-loss ``½‖P(x) − y*‖²`` is reported
too. Learning rates are chosen on a separate fixed validation batch.

Budgets count only training work (sampling, forward, physics, backward, update) on the chosen
clock — ``"cpu"`` (process CPU time: robust to other jobs on a shared machine when torch uses one
thread) or ``"wall"``; evaluations are done outside the timer, at ``eval_points`` evenly spaced
moments of the budget, so every method is scored at the same training times.
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

from agents.inverse_training import METHODS, check_run_settings
from agents.networks import make_network
from agents.sip import sip_inverse_targets
from agents.trainer import make_optimizer, training_clock
from sipenv.physics.heat import HeatPhysics

__all__ = [
    "METHODS",
    "REFERENCE_LR",
    "HeatTrainConfig",
    "HeatTrainResult",
    "evaluate",
    "iteration_loss",
    "sweep_learning_rate",
    "train",
    "train_summary",
]

REFERENCE_LR: dict[str, float] = {
    "sip": 1e-3, "adam": 1e-3, "sgd": 2e-6, "adagrad": 1e-2, "adadelta": 1.0, "rmsprop": 1e-3,
}
"""Published rates (SIP and Adam 1e-3, SGD 2e-6; SIP_REFERENCE.md §2) and torch's defaults
for the optimizers the paper did not run on this problem."""


@dataclass
class HeatTrainConfig:
    """One training run on the heat inverse problem."""

    method: Literal["sip", "adam", "sgd", "adagrad", "adadelta", "rmsprop"] = "sip"
    """'sip' or a plain optimizer through the physics."""
    lr: float = 1e-3
    """Learning rate (of sip_optimizer for SIP)."""
    sip_optimizer: Literal["adam", "sgd", "adagrad", "adadelta", "rmsprop"] = "adam"
    """Optimizer that minimises SIP's proxy loss."""
    proxy_loss: Literal["l1", "l2"] = "l2"
    """SIP proxy loss: 'l2' = ½‖x − x̃‖², 'l1' = Σ|x − x̃|."""
    eta: float = 1.0
    """SIP's Newton step size on the y-loss."""
    shape: tuple[int, int] = (64, 64)
    """Grid of unit cells."""
    nu_t: float = 8.0
    """Diffusivity × time of the physics."""
    filters: tuple[int, ...] = (16, 16, 16, 16)
    """U-Net filters per level (paper: 4 levels of 16, ≈ 38 k parameters)."""
    batch_size: int = 128
    """Fresh samples per iteration (paper: 128)."""
    seed: int = 0
    """Network initialisation seed (identical for every method)."""
    data_seed: int = 0
    """Seed of the training stream (identical for every method)."""
    iterations: int = 0
    """Maximum iterations (0 = no limit; then time_budget must be > 0)."""
    time_budget: float = 0.0
    """Budget of training work in seconds on ``clock`` (0 = no limit)."""
    clock: Literal["cpu", "wall"] = "cpu"
    """What the budget counts: process CPU time or wall-clock time."""
    eval_points: int = 10
    """Number of evenly spaced evaluations of the test and validation batches."""
    eval_size: int = 64
    """Size of the fixed validation and test batches."""
    val_seed: int = 1_000_000
    """Seed of the validation batch (used to pick learning rates)."""
    test_seed: int = 2_000_000
    """Seed of the test batch (reported, never used for choices)."""
    device: str = "cpu"
    """Torch device of network and physics."""

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid setting."""
        check_run_settings(self, ("lr", "eta", "nu_t"))
        if self.eval_points < 1:
            raise ValueError(f"eval_points must be ≥ 1, got {self.eval_points}.")
        if self.clock not in ("cpu", "wall"):
            raise ValueError(f"clock must be 'cpu' or 'wall', got {self.clock!r}.")

    @property
    def optimizer(self) -> str:
        """The torch optimizer that updates the network."""
        return self.sip_optimizer if self.method == "sip" else self.method

    def physics(self) -> HeatPhysics:
        """The physics of this run."""
        return HeatPhysics(shape=self.shape, nu_t=self.nu_t)

    def network(self) -> nn.Module:
        """A fresh U-Net seeded with ``seed`` (identical for every method)."""
        cells = self.shape[0] * self.shape[1]
        return make_network("unet", cells, cells, hidden=self.filters, spatial=self.shape,
                            seed=self.seed, device=self.device)


@dataclass
class HeatTrainResult:
    """What :func:`train` returns."""

    config: HeatTrainConfig
    network: nn.Module
    iterations: int
    train_time: float
    eval_times: np.ndarray
    """Training time at each evaluation (s, on the run's clock)."""
    eval_iterations: np.ndarray
    test_x_error: np.ndarray
    """Mean ``Σ|x − x*|`` on the test batch at each evaluation."""
    test_y_loss: np.ndarray
    """Mean ``½‖P(x) − y*‖²`` on the test batch at each evaluation."""
    val_x_error: np.ndarray
    """Mean ``Σ|x − x*|`` on the validation batch at each evaluation."""
    train_x_error: list[float] = field(default_factory=list)
    """Mean ``Σ|x − x*|`` on each training batch (before its update)."""
    diverged_at: int | None = None
    """Iteration at which the loss became non-finite (training stopped there), else None."""

    @property
    def final_test_x_error(self) -> float:
        """Test x-error at the end of training (``inf`` if training diverged)."""
        return math.inf if self.diverged_at is not None else float(self.test_x_error[-1])

    @property
    def final_val_x_error(self) -> float:
        """Validation x-error at the end of training (``inf`` if training diverged)."""
        return math.inf if self.diverged_at is not None else float(self.val_x_error[-1])

    @property
    def late_val_x_error(self) -> float:
        """Mean validation x-error over the last quarter of the evaluations (at least one;
        ``inf`` if training diverged). What learning rates are picked on: one evaluation is
        noisy (a transient spike of a large rate can win or lose a sweep by itself)."""
        if self.diverged_at is not None:
            return math.inf
        values = self.val_x_error[1:] if len(self.val_x_error) > 1 else self.val_x_error
        return float(values[-max(1, math.ceil(len(values) / 4)):].mean())

    @property
    def time_per_iteration(self) -> float:
        """Mean training seconds per iteration."""
        return self.train_time / max(self.iterations, 1)


def _batch(physics: HeatPhysics, n: int, generator: torch.Generator, device: str
           ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x*, y*)`` in float64 on ``device``."""
    x_true = physics.sample_initial(n, generator, device=device)
    return x_true, physics.forward(x_true)


def iteration_loss(network: nn.Module, physics: HeatPhysics, y_target: torch.Tensor,
                   config: HeatTrainConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The loss one iteration minimises, and the (float32) predictions it came from."""
    x = network(y_target.to(torch.float32))
    if config.method == "sip":
        # --- Newton step on the y-loss, noise-aware inverse, proxy loss ---
        with torch.no_grad():
            y = physics.forward(x.detach().to(torch.float64))
        x_tilde = sip_inverse_targets(x.detach(), y, y_target, physics.inverse, config.eta)
        diff = (x - x_tilde).flatten(1)
        per_sample = (diff.abs().sum(1) if config.proxy_loss == "l1"
                      else 0.5 * diff.pow(2).sum(1))
        return per_sample.mean(), x
    # --- plain optimizer: gradient through the (float64) physics ---
    return physics.loss(x.to(torch.float64), y_target).mean(), x


def evaluate(network: nn.Module, physics: HeatPhysics, x_true: torch.Tensor,
             y_target: torch.Tensor) -> tuple[float, float]:
    """Mean ``Σ|x − x*|`` and mean ``½‖P(x) − y*‖²`` of ``network`` (eval mode) on a batch."""
    was_training = network.training
    network.eval()
    with torch.no_grad():
        x = network(y_target.to(torch.float32)).to(torch.float64)
        result = (float(physics.x_error(x, x_true).mean()),
                  float(physics.loss(x, y_target).mean()))
    network.train(was_training)
    return result


def train(config: HeatTrainConfig, *, progress: bool = False) -> HeatTrainResult:
    """Train the U-Net on the heat inverse problem with ``config.method``.

    A non-finite loss stops training before the update and sets ``diverged_at`` (no exception:
    learning-rate sweeps expect divergence).
    """
    config.validate()
    physics = config.physics()
    net = config.network()
    optimizer = make_optimizer(config.optimizer, net.parameters(), config.lr)
    clock = training_clock(config.clock)
    data = torch.Generator().manual_seed(config.data_seed)
    val = _batch(physics, config.eval_size, torch.Generator().manual_seed(config.val_seed),
                 config.device)
    test = _batch(physics, config.eval_size, torch.Generator().manual_seed(config.test_seed),
                  config.device)
    # Evaluate at evenly spaced moments of the budget (time or iterations), and at the end.
    if config.time_budget > 0:
        marks = [config.time_budget * (i + 1) / config.eval_points
                 for i in range(config.eval_points)]
    else:
        marks = [config.iterations * (i + 1) / config.eval_points
                 for i in range(config.eval_points)]
    eval_times: list[float] = []
    eval_its: list[int] = []
    test_x: list[float] = []
    test_y: list[float] = []
    val_x: list[float] = []
    train_x: list[float] = []

    def record(elapsed: float, iteration: int) -> None:
        tx, ty = evaluate(net, physics, *test)
        vx, _ = evaluate(net, physics, *val)
        eval_times.append(elapsed)
        eval_its.append(iteration)
        test_x.append(tx)
        test_y.append(ty)
        val_x.append(vx)
        if progress:
            print(f"  [{config.method} lr={config.lr:.2e}] t={elapsed:7.1f}s it={iteration:5d} "
                  f"test x-error {tx:8.2f}  val {vx:8.2f}", flush=True)

    record(0.0, 0)
    elapsed, iteration, diverged_at = 0.0, 0, None
    net.train()
    while ((config.iterations == 0 or iteration < config.iterations)
           and (config.time_budget == 0 or elapsed < config.time_budget)):
        t0 = clock()
        x_true, y_target = _batch(physics, config.batch_size, data, config.device)
        loss, x = iteration_loss(net, physics, y_target, config)
        finite = bool(torch.isfinite(loss))
        if finite:  # never let a non-finite update reach the weights
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        elapsed += clock() - t0
        if not finite:
            diverged_at = iteration + 1
            break
        iteration += 1
        # --- bookkeeping outside the timer ---
        with torch.no_grad():
            train_x.append(float(physics.x_error(x.detach().to(torch.float64), x_true).mean()))
        progress_value = elapsed if config.time_budget > 0 else iteration
        if marks and progress_value >= marks[0]:
            while marks and progress_value >= marks[0]:
                marks.pop(0)
            record(elapsed, iteration)
    if diverged_at is None and (not eval_its or eval_its[-1] != iteration):
        record(elapsed, iteration)
    net.eval()
    return HeatTrainResult(
        config=config, network=net, iterations=iteration, train_time=elapsed,
        eval_times=np.asarray(eval_times), eval_iterations=np.asarray(eval_its),
        test_x_error=np.asarray(test_x), test_y_loss=np.asarray(test_y),
        val_x_error=np.asarray(val_x), train_x_error=train_x, diverged_at=diverged_at)


def sweep_learning_rate(config: HeatTrainConfig, factors: Sequence[float]
                        ) -> tuple[HeatTrainResult, list[HeatTrainResult]]:
    """Train ``config`` with ``lr = factor · REFERENCE_LR[method]`` for each factor.

    The winner has the lowest :attr:`HeatTrainResult.late_val_x_error` on the fixed
    **validation** batch; diverged runs lose.

    Returns:
        ``(best, all runs in the order of factors)``.
    """
    if not factors:
        raise ValueError("factors must not be empty.")
    base = REFERENCE_LR[config.method]
    runs = [train(replace(config, lr=base * f)) for f in factors]
    return min(runs, key=lambda r: r.late_val_x_error), runs


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def train_summary(config: HeatTrainConfig, lr_factor: float = 1.0, examples: int = 4,
                  threads: int = 1) -> dict[str, Any]:
    """Train one run with ``threads`` torch threads and summarise it as JSON-able data.

    Meant for worker processes (it is importable, so ``spawn`` workers can unpickle it): the
    summary has the final test/validation errors, the evaluation curves and the predictions on
    the first ``examples`` test samples; ``lr_factor`` is only recorded.
    """
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    res = train(config)
    physics = config.physics()
    _, y_star = _batch(physics, config.eval_size,
                       torch.Generator().manual_seed(config.test_seed), config.device)
    with torch.no_grad():
        pred = res.network(y_star[:examples].to(torch.float32))
    return {
        "method": config.method, "lr_factor": lr_factor, "lr": config.lr,
        "iterations": res.iterations, "train_time": res.train_time,
        "wall_time": time.perf_counter() - t0,
        "time_per_iteration": res.time_per_iteration, "diverged_at": res.diverged_at,
        "final_test_x_error": _num(res.final_test_x_error),
        "final_val_x_error": _num(res.final_val_x_error),
        "late_val_x_error": _num(res.late_val_x_error),
        "final_test_y_loss": (_num(float(res.test_y_loss[-1])) if res.diverged_at is None
                              else None),
        "curve": {"time": res.eval_times.tolist(), "iteration": res.eval_iterations.tolist(),
                  "test_x_error": [_num(v) for v in res.test_x_error],
                  "test_y_loss": [_num(v) for v in res.test_y_loss],
                  "val_x_error": [_num(v) for v in res.val_x_error]},
        "examples": pred.cpu().numpy().astype(np.float32).tolist(),
    }

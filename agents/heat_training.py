"""The heat reproduction's view of the one training loop: SIP versus plain optimizers on
``sip/HeatInverse-v0``.

The SIP paper's heat experiment (Holl, Koltun & Thuerey, NeurIPS 2022, Sec. 4.3): a U-Net
``f_θ`` maps the observed, heavily diffused field ``y* = P(x*)`` to a reconstruction
``x = f_θ(y*)`` of the initial temperature ``x*`` (4–10 hot rectangles). Training is
``agents.trainer.run_training`` on ``agents.problems.HeatProblem`` (SIP with the
noise-aware regularised inverse ``HeatPhysics.inverse``, or a plain optimizer through the
float64 physics = DP); this module holds only what the reproduction adds: the published rates,
the run settings (``heat_config``), the result type with its evaluation curves, and the
worker-process summary.

The metric is the paper's: ``Σ_cells |x − x*|`` averaged over the fixed test batch; the y-loss
``½‖P(x) − y*‖²`` is reported too; learning rates are chosen on the fixed validation batch.
Evaluations are outside the training clock, before training and at ``eval_points`` evenly
spaced moments of the budget, so every method is scored at the same training times.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from agents.inverse_training import METHODS, UNLIMITED, method_config, method_of, run_inverse
from agents.problems import TEST_SEED
from agents.trainer import TrainConfig
from sipenv.physics.heat import HeatPhysics

__all__ = [
    "METHODS",
    "REFERENCE_LR",
    "HeatTrainResult",
    "heat_config",
    "sweep_learning_rate",
    "train",
    "train_summary",
]

REFERENCE_LR: dict[str, float] = {
    "sip": 1e-3, "adam": 1e-3, "sgd": 2e-6, "adagrad": 1e-2, "adadelta": 1.0, "rmsprop": 1e-3,
}
"""Published rates (SIP and Adam 1e-3, SGD 2e-6; Holl, Koltun & Thuerey, NeurIPS 2022,
appendix) and torch's defaults for the optimizers the paper did not run on this problem."""


def heat_config(method: str = "sip", *, lr: float = 1e-3, sip_optimizer: str = "adam",
                proxy_loss: str = "l2", eta: float = 1.0, lr_schedule: str = "constant",
                shape: tuple[int, int] = (64, 64), nu_t: float = 8.0,
                filters: tuple[int, ...] = (16, 16, 16, 16),
                batch_size: int = 128, seed: int = 0, data_seed: int = 0, iterations: int = 0,
                time_budget: float = 0.0, clock: str = "cpu", eval_points: int = 10,
                eval_size: int = 64, device: str = "cpu", threads: int = 1) -> TrainConfig:
    """One run on ``sip/HeatInverse-v0`` with the reproduction's defaults: a U-Net with
    ``filters`` per level (paper: 4 levels of 16, ≈ 38 k parameters), physics in float64.

    ``iterations=0`` means no iteration limit (then ``time_budget`` must be > 0).

    Raises:
        ValueError: For an unknown method, or no limit at all.
    """
    if iterations == 0 and not time_budget > 0:
        raise ValueError("Set iterations > 0 or time_budget > 0 (or both); with neither the run "
                         "would never stop.")
    if eval_points < 1:
        raise ValueError(f"eval_points must be ≥ 1, got {eval_points}.")
    env_kwargs = {"shape": list(shape), "nu_t": nu_t}
    return method_config(
        method, sip_optimizer=sip_optimizer, proxy_loss=proxy_loss, eta=eta,
        env_id="sip/HeatInverse-v0", env_kwargs=json.dumps(env_kwargs), env_dtype="float64",
        network="unet", hidden=tuple(filters), lr=lr, lr_schedule=lr_schedule,
        batch_size=batch_size, seed=seed,
        data_seed=data_seed, iterations=iterations or UNLIMITED, time_budget=time_budget,
        clock=clock, eval_points=eval_points, eval_episodes=eval_size, device=device,
        threads=threads, log_every=0, checkpoint_every=0, progress=False)


@dataclass
class HeatTrainResult:
    """What ``train`` returns."""

    config: TrainConfig
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


    @property
    def method(self) -> str:
        """``"sip"`` or the plain optimizer."""
        return method_of(self.config)


def train(config: TrainConfig, *, progress: bool = False) -> HeatTrainResult:
    """Train one heat run (``heat_config``) and collect its evaluation curves.

    A divergence stops training before the update and sets ``diverged_at`` (no exception:
    learning-rate sweeps expect divergence).
    """
    def show(record: dict[str, float]) -> None:
        print(f"  [{method_of(config)} lr={config.lr:.2e}] t={record['time']:7.1f}s "
              f"it={int(record['iteration']):5d} test x-error "
              f"{record['eval_test_x_error']:8.2f}  val {record['eval_val_x_error']:8.2f}",
              flush=True)

    run = run_inverse(config)
    if progress:
        for record in run.evals:
            show(record)
    evals = run.evals
    return HeatTrainResult(
        config=config, network=run.network, iterations=run.iterations,
        train_time=run.train_time,
        eval_times=np.asarray([e["time"] for e in evals]),
        eval_iterations=np.asarray([int(e["iteration"]) for e in evals]),
        test_x_error=np.asarray([e["eval_test_x_error"] for e in evals]),
        test_y_loss=np.asarray([e["eval_test_y_loss"] for e in evals]),
        val_x_error=np.asarray([e["eval_val_x_error"] for e in evals]),
        train_x_error=list(run.train.get("x_error", [])), diverged_at=run.diverged_at)


def sweep_learning_rate(config: TrainConfig, factors: Sequence[float]
                        ) -> tuple[HeatTrainResult, list[HeatTrainResult]]:
    """Train ``config`` with ``lr = factor · REFERENCE_LR[method]`` for each factor.

    The winner has the lowest ``HeatTrainResult.late_val_x_error`` on the fixed
    **validation** batch; diverged runs lose.

    Returns:
        ``(best, all runs in the order of factors)``.
    """
    if not factors:
        raise ValueError("factors must not be empty.")
    base = REFERENCE_LR[method_of(config)]
    runs = [train(replace(config, lr=base * f)) for f in factors]
    return min(runs, key=lambda r: r.late_val_x_error), runs


def _num(v: float) -> float | None:
    return float(v) if math.isfinite(v) else None


def train_summary(config: TrainConfig, lr_factor: float = 1.0, examples: int = 4,
                  threads: int = 1) -> dict[str, Any]:
    """Train one run with ``threads`` torch threads and summarise it as JSON-able data.

    Meant for worker processes (it is importable, so ``spawn`` workers can unpickle it): the
    summary has the final test/validation errors, the evaluation curves and the predictions on
    the first ``examples`` test samples; ``lr_factor`` is only recorded.
    """
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    res = train(config)
    kwargs = json.loads(config.env_kwargs)
    physics = HeatPhysics(shape=tuple(kwargs["shape"]), nu_t=kwargs["nu_t"])
    x_true = physics.sample_initial(config.eval_episodes,
                                    torch.Generator().manual_seed(TEST_SEED),
                                    device=config.device)
    with torch.no_grad():
        pred = res.network.eval()(physics.forward(x_true)[:examples].to(torch.float32))
    return {
        "method": method_of(config), "lr_factor": lr_factor, "lr": config.lr,
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

"""Single-step inverse problems on the one training loop: SIP versus plain optimizers.

What is specific to the sine and heat reproductions (``scripts/reproduce_sine.py``,
``scripts/reproduce_heat.py``) and nothing else: the *methods* compared (``"sip"``, or a plain
optimizer through the physics — ``"adam"``, ``"sgd"``, … — which is DP with that optimizer), the
published learning rates, and a runner that records what the reports need. Training itself is
``agents.trainer.run_training`` on the problem of ``sip/SineInversion-v0`` or
``sip/HeatInverse-v0`` (``agents.problems``): its data stream, clock, divergence rule and
seeds (``VALIDATION_SEED``, ``TEST_SEED``).

The sine problem is the characterisation problem of Holl, Koltun & Thuerey (NeurIPS 2022,
Sec. 4.1): a network ``f_θ`` maps a target ``y* ~ U([-1, 1]²)`` to a guess ``x`` with
``P(x) ≈ y*`` for the rotated, ill-conditioned sine of ``sipenv.physics.SinePhysics``. SIP
takes ``x̃ = P⁻¹(y + η (y* − y); x)`` (one saddle-free Newton step) and minimises the proxy loss
``Σ|x − x̃|`` (L1, as the published code) or ``½‖x − x̃‖²`` (L2); a plain optimizer minimises
``½‖P(f_θ(y*)) − y*‖²`` through the physics. The metric is the paper's: the distance from each
prediction to the **nearest exact solution**, recorded every iteration on the training batch
(before that iteration's update; outside the training clock) and summarised as the mean over
the last 10 % of iterations; fixed validation and test batches are scored at the end.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from torch import nn

from agents.diffphys import DPConfig
from agents.sip import SIPConfig
from agents.trainer import OPTIMIZERS, TrainConfig, TrainingDiverged, run_training

__all__ = [
    "COLORS",
    "LABELS",
    "METHODS",
    "REFERENCE_LR",
    "UNLIMITED",
    "InverseRun",
    "InverseTrainResult",
    "last_fraction_mean",
    "method_config",
    "method_of",
    "reference_lr",
    "run_inverse",
    "sine_config",
    "sweep_learning_rate",
    "train",
]

METHODS: tuple[str, ...] = ("sip", "adam", "sgd", "adagrad", "adadelta", "rmsprop")
"""``"sip"`` (SIP with ``sip_optimizer``) or a plain optimizer through the physics (DP)."""

REFERENCE_LR: dict[str, float] = {
    "sip": 1e-3, "adam": 1e-3, "sgd": 1e-2, "adadelta": 3e-3, "adagrad": 3e-3, "rmsprop": 3e-5,
}
"""The published learning rates on the sine problem (Holl, Koltun & Thuerey, NeurIPS 2022,
appendix); SGD's is further divided by ``ξ²``."""

LABELS: dict[str, str] = {"sip": "SIP (Adam)", "adam": "Adam", "sgd": "SGD",
                          "adagrad": "Adagrad", "adadelta": "Adadelta", "rmsprop": "RMSprop"}
"""How the reports name each method."""

COLORS: dict[str, str] = {"sip": "C0", "adam": "C1", "sgd": "C3", "adadelta": "C2",
                          "adagrad": "C4", "rmsprop": "C5"}
"""The matplotlib colour of each method in the reports' plots."""

UNLIMITED = 10**12
"""``iterations`` of a run that only a time budget stops."""


def reference_lr(method: str, xi: float) -> float:
    """The published learning rate of ``method`` at conditioning ``xi`` (SGD: ``1e-2/ξ²``)."""
    if method not in REFERENCE_LR:
        raise ValueError(f"Unknown method {method!r}; choose one of {list(METHODS)}.")
    return REFERENCE_LR[method] / (xi**2 if method == "sgd" else 1.0)


def method_config(method: str, *, sip_optimizer: str = "adam", proxy_loss: str = "l2",
                  eta: float = 1.0, **settings: Any) -> TrainConfig:
    """The training config of a method: ``"sip"`` → ``SIPConfig`` with ``sip_optimizer``
    (and ``proxy_loss``, ``eta``); an optimizer name → ``DPConfig`` with that optimizer.

    Args:
        method: One of ``METHODS``.
        sip_optimizer: Optimizer of SIP's proxy loss.
        proxy_loss, eta: SIP's proxy loss and Newton step size.
        settings: Any other ``TrainConfig`` fields.

    Raises:
        ValueError: For an unknown method or optimizer.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {list(METHODS)}, got {method!r}.")
    if sip_optimizer not in OPTIMIZERS:
        raise ValueError(f"sip_optimizer must be one of {sorted(OPTIMIZERS)}, got "
                         f"{sip_optimizer!r}.")
    if method == "sip":
        return SIPConfig(optimizer=sip_optimizer, proxy_loss=proxy_loss,  # type: ignore[arg-type]
                         eta=eta, **settings)
    return DPConfig(optimizer=method, **settings)  # type: ignore[arg-type]


def method_of(config: TrainConfig) -> str:
    """The method a config trains: ``"sip"``, or the optimizer of DP."""
    return "sip" if config.algo == "sip" else config.optimizer


def sine_config(method: str = "sip", *, xi: float = 1.0, phi: float = 0.0, gamma: float = 10.0,
                max_loss_change: float = 0.2, lr: float = 1e-3, sip_optimizer: str = "adam",
                proxy_loss: str = "l1", eta: float = 1.0, batch_size: int = 100,
                hidden: tuple[int, ...] = (32, 64, 32), seed: int = 0, data_seed: int = 0,
                iterations: int = 0, time_budget: float = 0.0, eval_size: int = 1000,
                dtype: str = "float32", threads: int = 1) -> TrainConfig:
    """One run on ``sip/SineInversion-v0`` with the reproduction's defaults.

    ``iterations=0`` means no iteration limit (then ``time_budget`` must be > 0). The network
    is the MLP ``2 → hidden → 2`` in ``dtype``, like the physics.

    Raises:
        ValueError: For an unknown method, or no limit at all.
    """
    if iterations == 0 and not time_budget > 0:
        raise ValueError("Set iterations > 0 or time_budget > 0 (or both); with neither the run "
                         "would never stop.")
    env_kwargs = {"xi": xi, "phi": phi, "gamma": gamma, "max_loss_change": max_loss_change}
    return method_config(
        method, sip_optimizer=sip_optimizer, proxy_loss=proxy_loss, eta=eta,
        env_id="sip/SineInversion-v0", env_kwargs=json.dumps(env_kwargs), env_dtype=dtype,
        network="mlp", hidden=tuple(hidden), lr=lr, batch_size=batch_size, seed=seed,
        data_seed=data_seed, iterations=iterations or UNLIMITED, time_budget=time_budget,
        eval_episodes=eval_size, threads=threads, log_every=0, checkpoint_every=0,
        progress=False)


# --- running -----------------------------------------------------------------------------------

@dataclass
class InverseRun:
    """What ``run_inverse`` records of one run (in memory, nothing written).

    Attributes:
        config: The run's settings.
        network: The trained network (eval mode); the last good weights if it diverged.
        iterations: Iterations completed.
        train_time: Training seconds on the config's clock.
        times: ``(iterations,)`` cumulative training time after each iteration.
        train: Per-iteration training-batch metrics (e.g. ``x_dist``), each ``(iterations,)``.
        evals: The evaluation records (``eval_points``), each with ``iteration``, ``time`` and
            ``eval_val_*`` / ``eval_test_*`` metrics.
        final: Held-out metrics after training (``val_*``, ``test_*``); ``{}`` if diverged.
        diverged_at: The iteration that diverged (training stopped before its update), else
            ``None``.
    """

    config: TrainConfig
    network: nn.Module
    iterations: int
    train_time: float
    times: np.ndarray
    train: dict[str, np.ndarray]
    evals: list[dict[str, float]]
    final: dict[str, float]
    diverged_at: int | None


def run_inverse(config: TrainConfig) -> InverseRun:
    """Train ``config`` with ``agents.trainer.run_training`` (nothing written) and record
    every iteration's training metrics and every evaluation.

    A divergence does not raise: it is recorded as ``diverged_at`` (sweeps expect it).
    """
    from agents.registry import get_algorithm

    times: list[float] = []
    train: dict[str, list[float]] = {}
    evals: list[dict[str, float]] = []

    def on_iteration(iteration: int, train_time: float, metrics: dict[str, float]) -> None:
        times.append(train_time)
        for k, v in metrics.items():
            train.setdefault(k, []).append(v)

    try:
        result = run_training(config, get_algorithm(config.algo), write=False, progress=False,
                              on_eval=evals.append, on_iteration=on_iteration)
    except TrainingDiverged as exc:
        assert exc.network is not None
        return InverseRun(config, exc.network, len(times), times[-1] if times else 0.0,
                          np.asarray(times), {k: np.asarray(v) for k, v in train.items()},
                          evals, {}, exc.iteration)
    final = result.final_eval
    if not evals or evals[-1]["iteration"] != result.iterations:
        evals.append({"iteration": result.iterations, "time": result.train_time,
                      **{f"eval_{k}": v for k, v in final.items()}})
    return InverseRun(config, result.policy, result.iterations, result.train_time,
                      np.asarray(times), {k: np.asarray(v) for k, v in train.items()}, evals,
                      final, None)


# --- the sine reproduction's view of a run -----------------------------------------------------

@dataclass
class InverseTrainResult:
    """One sine run as the reproduction reports it. Per-iteration arrays are indexed by
    iteration."""

    config: TrainConfig
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
    """Mean distance on the fixed validation batch after training (``inf`` if diverged)."""
    test_x_dist: float
    """Mean distance on the fixed test batch after training (``inf`` if diverged)."""
    diverged_at: int | None = None
    """Iteration at which training diverged (it stopped before that update), else None."""
    extra: dict[str, float] = field(default_factory=dict)

    @property
    def method(self) -> str:
        """``"sip"`` or the plain optimizer."""
        return method_of(self.config)

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


def last_fraction_mean(values: Sequence[float] | np.ndarray, fraction: float = 0.1) -> float:
    """Mean of the last ``fraction`` of ``values`` (at least one value; NaN if empty)."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return math.nan
    count = max(1, math.ceil(arr.size * fraction))
    return float(arr[-count:].mean())


def train(config: TrainConfig) -> InverseTrainResult:
    """Train one sine run (``sine_config``) and summarise it for the reproduction."""
    run = run_inverse(config)
    empty = np.zeros(0)
    return InverseTrainResult(
        config=config, network=run.network, iterations=run.iterations,
        train_time=run.train_time, times=run.times, x_dist=run.train.get("x_dist", empty),
        y_loss=run.train.get("y_loss", empty),
        val_x_dist=run.final.get("val_x_dist", math.inf),
        test_x_dist=run.final.get("test_x_dist", math.inf), diverged_at=run.diverged_at)


def sweep_learning_rate(config: TrainConfig, factors: Sequence[float]
                        ) -> tuple[InverseTrainResult, list[InverseTrainResult]]:
    """Train ``config`` with ``lr = factor · reference_lr(method, ξ)`` for each factor (``ξ``
    from its ``env_kwargs``).

    The winner has the lowest distance on the fixed **validation** batch (not the test batch,
    and not the training metric that is reported); diverged runs lose.

    Returns:
        ``(best, all runs in the order of factors)``.
    """
    if not factors:
        raise ValueError("factors must not be empty.")
    base = reference_lr(method_of(config), float(json.loads(config.env_kwargs).get("xi", 1.0)))
    runs = [train(replace(config, lr=base * f)) for f in factors]
    best = min(runs, key=lambda r: (r.val_x_dist if math.isfinite(r.val_x_dist) else math.inf))
    return best, runs

"""Training problems: what the one training loop (``agents.trainer``) trains a network on.

A problem is built from a Gymnasium id (``make_problem``) and supplies, for every algorithm
alike:

* its **data stream**: ``Problem.sample`` draws one batch from a ``torch.Generator`` in one
  call (so that it can later be sliced by rank for data-parallel training);
* its **held-out sets** and **evaluation metrics** (``Problem.held_out_sets``,
  ``Problem.evaluate``), drawn with the seeds defined once here: ``VALIDATION_SEED``
  (the held-out set scored during and after training, and used to pick learning rates) and
  ``TEST_SEED`` (reported, never used for choices);
* the **network dimensions** (``Problem.network_spec``): MLP input/output sizes, or the
  spatial shape of a 2-D U-Net, and the network's dtype;
* the training-batch metrics (``Problem.batch_metrics``), computed outside the training
  clock.

Problem types:

* ``TaskProblem`` — multi-step control (``kind="control"``) and correction
  (``kind="correction"``) tasks through their ``sipenv.envs.core.TaskCore``
  (``core_of(gym.make(env_id))``). A batch is ``(s_0, target)``; the network is the policy
  ``π(s_t, s*, t/T)``; evaluation plays the episodes ``env.reset(seed=eval_seed + i)``.
* ``InverseProblem`` — single-step inverse problems ``y = P(x)`` (``kind="inverse"``)
  through ``env.unwrapped.physics``: ``SineProblem`` (``sip/SineInversion-v0``) and
  ``HeatProblem`` (``sip/HeatInverse-v0``). A batch is ``InverseBatch``
  ``(y*, x*)``; the network maps ``y*`` to a guess ``x``.
"""

from __future__ import annotations

import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, ClassVar, NamedTuple

import gymnasium as gym
import numpy as np
import torch
from torch import nn

import sipenv  # noqa: F401  (registers the sip/ ids)
from agents.evaluation import NumpyPolicy, evaluate_torch, make_eval_tasks, torch_policy_to_numpy
from agents.networks import SPATIAL_NETWORKS, UNETS
from sipenv.envs.core import Rollout, TaskCore, core_of
from sipenv.envs.correction import CorrectionCore
from sipenv.envs.shape_transition import ShapeTransitionCore
from sipenv.physics import SpectralLinearPhysics
from sipenv.physics.fluid_inverse import FluidInversePhysics
from sipenv.physics.heat import HeatPhysics
from sipenv.physics.sine import SinePhysics

__all__ = [
    "TEST_SEED",
    "TRAINING_OWNED_KWARGS",
    "VALIDATION_SEED",
    "FluidProblem",
    "HeatProblem",
    "InverseBatch",
    "InverseProblem",
    "Problem",
    "SineProblem",
    "TaskProblem",
    "check_env_kwargs",
    "env_error",
    "make_problem",
    "terminal_readout",
]

VALIDATION_SEED = 1_000_000
"""Seed of every held-out validation set: the episodes ``env.reset(seed=VALIDATION_SEED + i)``
of a control task, or the batch drawn from ``torch.Generator().manual_seed(VALIDATION_SEED)`` of
an inverse problem. Scored during and after training; learning-rate sweeps pick on it."""

TEST_SEED = 2_000_000
"""Seed of every held-out test set (same construction as ``VALIDATION_SEED``); reported,
never used for choices."""


class InverseBatch(NamedTuple):
    """A batch of a single-step inverse problem.

    Attributes:
        y_target: ``(B, ...)`` the observed outputs ``y*`` (the network's input).
        x_true: ``(B, ...)`` the true input ``x*`` with ``P(x*) = y*`` where the problem has a
            reference solution, else ``None``.
    """

    y_target: torch.Tensor
    x_true: torch.Tensor | None


class Problem(ABC):
    """What the training loop needs from a problem; see the module docstring."""

    kind: str
    """``"control"``, ``"correction"`` or ``"inverse"``."""
    train_metric: ClassVar[str]
    """Key of ``batch_metrics`` shown in the progress bar and the learning curve."""
    eval_metric: ClassVar[str]
    """Key of ``evaluate`` shown in the learning curve."""

    def __init__(self, env_id: str, device: torch.device) -> None:
        self.env_id = env_id
        self.device = device

    @property
    @abstractmethod
    def has_reference(self) -> bool:
        """Whether a batch comes with a reference solution (what supervised training needs)."""

    @property
    def reference_advice(self) -> str:
        """Why ``has_reference`` is False and what to use instead."""
        return ""

    @abstractmethod
    def network_spec(self, name: str, hidden: tuple[int, ...]) -> dict[str, Any]:
        """``{"name", "obs_dim", "act_dim", "hidden", "spatial", "dtype"}`` of the network
        (``spatial`` is ``[H, W]`` for a 2-D U-Net, else ``None``)."""

    def generator(self, seed: int) -> torch.Generator:
        """A ``torch.Generator`` for ``sample``, seeded with ``seed``."""
        return torch.Generator(device=self.device).manual_seed(seed)

    @abstractmethod
    def sample(self, batch: int, generator: torch.Generator) -> Any:
        """Draw one training batch of ``batch`` problems from ``generator``."""

    @abstractmethod
    def batch_metrics(self, prediction: Any, batch: Any) -> dict[str, float]:
        """Metrics of an algorithm's ``prediction`` (a ``Rollout`` or the guesses ``x``)
        on its training batch; ``{}`` for ``prediction=None``."""

    @abstractmethod
    def held_out_sets(self, eval_seed: int, size: int) -> dict[str, Any]:
        """The fixed held-out sets, by metric prefix (e.g. ``{"val_": …, "test_": …}``)."""

    @abstractmethod
    def evaluate(self, network: nn.Module, data: Any) -> dict[str, float]:
        """Summary metrics of ``network`` (in eval mode) on one held-out set."""

    @abstractmethod
    def numpy_policy(self, network: nn.Module) -> NumpyPolicy:
        """``network`` as a policy of the env's Gymnasium API: one numpy observation in, one
        env action out (what ``env.step`` takes)."""


# --- multi-step control and correction tasks ----------------------------------------------------

class TaskProblem(Problem):
    """A control or correction task through its ``TaskCore``.

    A batch is ``(s_0, target)`` (``(B, N)`` and ``(B, N)``, or the reference trajectory
    ``(B, T + 1, N)`` of a correction task); evaluation plays ``env.reset(seed=eval_seed + i)``.
    """

    train_metric = "target_error"
    eval_metric = "target_error_mean"

    def __init__(self, env_id: str, core: TaskCore, env_kwargs: dict[str, Any],
                 device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(env_id, device)
        self.core = core
        self.env_kwargs = env_kwargs
        self.dtype = dtype
        self.kind = "correction" if isinstance(core, CorrectionCore) else "control"

    @property
    def has_reference(self) -> bool:
        """Control tasks on spectral-linear physics: the exact minimum-force control."""
        return self.kind == "control" and isinstance(self.core.physics, SpectralLinearPhysics)

    @property
    def reference_advice(self) -> str:
        physics = type(self.core.physics).__name__
        return (f"{self.env_id} ({self.kind} task, {physics}) has no reference solution: the "
                "supervised baseline needs the exact minimum-force control of linear spectral "
                "physics (e.g. sip/ControlledDiffusion-v0). Use sip or dp on it.")

    @property
    def spatial(self) -> tuple[int, int] | None:
        """The grid ``(H, W)`` of a task with 2-D field observations ``(C, H, W)`` (e.g.
        ``sip/ShapeTransition-v0``), else ``None`` (flat observations)."""
        shape = tuple(self.core.observation_shape)
        return (int(shape[1]), int(shape[2])) if len(shape) == 3 else None

    def network_spec(self, name: str, hidden: tuple[int, ...]) -> dict[str, Any]:
        """Flat tasks: ``obs_dim`` observations → ``act_dim = N`` actions. 2-D tasks: the sizes
        of the observation ``(C, H, W)`` and action ``(C', h, w)`` fields, and ``spatial`` =
        ``(H, W)`` for a spatial network (``agents.networks.SPATIAL_NETWORKS``)."""
        grid = self.spatial
        if grid is None:
            return {"name": name, "obs_dim": self.core.obs_dim,
                    "act_dim": math.prod(self.core.action_shape),  # actuators: M, else N
                    "hidden": list(hidden), "spatial": None, "dtype": "float32"}
        return {"name": name, "obs_dim": math.prod(self.core.observation_shape),
                "act_dim": math.prod(self.core.action_shape), "hidden": list(hidden),
                "spatial": list(grid), "dtype": "float32"}

    def sample(self, batch: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """``(s_0, target)`` of ``batch`` fresh tasks."""
        return self.core.sample_tasks(batch, generator, device=self.device, dtype=self.dtype)

    def batch_metrics(self, prediction: Any, batch: Any) -> dict[str, float]:
        """Mean final target error and mean episode force cost of a rollout."""
        if not isinstance(prediction, Rollout):
            return {}
        with torch.no_grad():
            err = self.core.target_error(prediction.states[-1], prediction.target).mean()
            cost = self.core.force_cost(prediction.actions).sum(0).mean()
        return {"target_error": float(err), "force_cost": float(cost)}

    def held_out_sets(self, eval_seed: int, size: int) -> dict[str, Any]:
        """One set, unprefixed: the episodes ``env.reset(seed=eval_seed + i)``, ``i < size``."""
        return {"": make_eval_tasks(self.env_id, range(eval_seed, eval_seed + size),
                                    self.env_kwargs)}

    def evaluate(self, network: nn.Module, data: Any) -> dict[str, float]:
        s0, target = data
        return evaluate_torch(network, self.core, s0, target).summary()

    def numpy_policy(self, network: nn.Module) -> NumpyPolicy:
        return torch_policy_to_numpy(network, self.device)


def terminal_readout(core: TaskCore) -> Callable[[torch.Tensor], torch.Tensor]:
    """The (linear) part of a state that a task's target is compared with: the whole state
    ``(B, N)`` for the 1-D tasks, the marker ``(B, H, W)`` = ``s[:, 2]`` of a
    ``ShapeTransitionCore`` state ``(B, 3, H, W)`` (its velocity is free at the end). SIP's
    Gauss–Newton split solves for the forces that move this part onto its Newton target."""
    if isinstance(core, ShapeTransitionCore):
        return lambda state: state[:, 2]
    return lambda state: state


# --- single-step inverse problems ----------------------------------------------------------------

class InverseProblem(Problem):
    """A single-step inverse problem ``y = P(x)``: learn ``x = f_θ(y*)``.

    Subclasses supply the physics-specific parts (sampling, metrics). The held-out sets are a
    validation batch (generator seeded ``eval_seed``, by default ``VALIDATION_SEED``) and a
    test batch (``TEST_SEED``), with metrics prefixed ``val_`` and ``test_``.

    Attributes:
        physics: The env's batched physics (``forward``, ``inverse``, ``loss``).
        physics_dtype: Precision the physics runs in.
        network_dtype: Precision of the network.
    """

    kind = "inverse"
    physics: Any
    physics_dtype: torch.dtype
    network_dtype: torch.dtype
    shape: tuple[int, ...]
    """Shape of one ``x`` (and one ``y``)."""

    def generator(self, seed: int) -> torch.Generator:
        """A CPU generator: the data of a seed are the same on every device."""
        return torch.Generator().manual_seed(seed)

    def predict(self, network: nn.Module, y_target: torch.Tensor) -> torch.Tensor:
        """``x = f_θ(y*)`` in the network's dtype, shaped like ``y*``: a flat network (MLP)
        sees ``y*`` flattened, a 2-D U-Net the field itself."""
        y = y_target.to(self.network_dtype)
        if len(getattr(network, "grid", ())) == len(self.shape) > 1:
            return network(y)
        return network(y.flatten(1)).reshape(y_target.shape)

    def network_spec(self, name: str, hidden: tuple[int, ...]) -> dict[str, Any]:
        cells = math.prod(self.shape)
        spatial = list(self.shape) if name in UNETS and len(self.shape) == 2 else None
        return {"name": name, "obs_dim": cells, "act_dim": cells, "hidden": list(hidden),
                "spatial": spatial, "dtype": str(self.network_dtype).removeprefix("torch.")}

    def held_out_sets(self, eval_seed: int, size: int) -> dict[str, Any]:
        return {"val_": self.sample(size, self.generator(eval_seed)),
                "test_": self.sample(size, self.generator(TEST_SEED))}

    def evaluate(self, network: nn.Module, data: Any) -> dict[str, float]:
        with torch.no_grad():
            x = self.predict(network, data.y_target)
        return self.batch_metrics(x, data)

    def batch_metrics(self, prediction: Any, batch: Any) -> dict[str, float]:
        """The problem's own error of the guesses (``main_error``) and the y-loss
        ``½‖P(x) − y*‖²``, batch means, in the physics' precision; ``{}`` without guesses."""
        if prediction is None:
            return {}
        with torch.no_grad():
            x = prediction.detach().to(self.physics_dtype)
            name, error = self.main_error(x, batch)
            return {name: float(error.mean()),
                    "y_loss": float(self.physics.loss(x, batch.y_target).mean())}

    def main_error(self, x: torch.Tensor, batch: InverseBatch) -> tuple[str, torch.Tensor]:
        """``(name, per-sample error)`` of the guesses ``x`` (physics dtype)."""
        raise NotImplementedError

    info_metric: ClassVar[tuple[str, str]]
    """``(key of the env's step info, key of batch_metrics)`` of the main metric."""

    def env_action(self, x: torch.Tensor) -> torch.Tensor:
        """The env action that poses the guess ``x`` (default: ``x`` itself)."""
        return x

    def as_env_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The guess the env scores when ``env_action(x)`` is stepped (default: ``x``)."""
        return x

    @abstractmethod
    def posed(self, env: Any) -> InverseBatch:
        """The problem an env (single, unwrapped or not) posed at its last ``reset``, as a
        batch of one, in this problem's dtypes."""

    def numpy_policy(self, network: nn.Module) -> NumpyPolicy:
        def act(obs: np.ndarray) -> np.ndarray:
            with torch.no_grad():
                y = torch.as_tensor(obs, device=self.device)[None]
                return self.env_action(self.predict(network, y))[0].float().cpu().numpy()

        return act


class SineProblem(InverseProblem):
    """``sip/SineInversion-v0``: the rotated, ill-conditioned sine of
    ``SinePhysics`` (Holl, Koltun & Thuerey, NeurIPS 2022, Sec. 4.1).

    ``y* ~ U([-1, 1]²)``, ``(B, 2)``; network and physics share ``dtype``. Metrics: ``x_dist``
    (mean distance to the nearest exact solution, the paper's metric) and ``y_loss``
    (mean ``½‖P(x) − y*‖²``). There is no single reference solution (every ``y*`` has infinitely
    many exact ones), so there is no supervised baseline.
    """

    train_metric = "x_dist"
    eval_metric = "val_x_dist"

    def __init__(self, env_id: str, physics: SinePhysics, device: torch.device,
                 dtype: torch.dtype, action_scale: float = 1.0) -> None:
        super().__init__(env_id, device)
        self.physics = physics
        self.action_scale = action_scale
        self.physics_dtype = self.network_dtype = dtype
        self.shape = (2,)

    @property
    def has_reference(self) -> bool:
        return False

    @property
    def reference_advice(self) -> str:
        return (f"{self.env_id} has no reference solution to regress onto (every target has "
                "infinitely many exact solutions). Use sip or dp on it.")

    info_metric = ("x_distance", "x_dist")

    def env_action(self, x: torch.Tensor) -> torch.Tensor:
        """The env's normalised action ``x / action_scale``."""
        return x / self.action_scale

    def as_env_scores(self, x: torch.Tensor) -> torch.Tensor:
        """The env clips its action to ``[-1, 1]``: ``action_scale · clip(x / action_scale)``."""
        return self.action_scale * (x / self.action_scale).clamp(-1.0, 1.0)

    def posed(self, env: Any) -> InverseBatch:
        target = env.unwrapped.target
        return InverseBatch(target.to(device=self.device, dtype=self.physics_dtype), None)

    def sample(self, batch: int, generator: torch.Generator) -> InverseBatch:
        """``batch`` fresh targets ``y* ~ U([-1, 1]²)``, ``(B, 2)``; no ``x*``."""
        y = self.physics.sample_targets(batch, generator, device=self.device,
                                        dtype=self.physics_dtype)
        return InverseBatch(y, None)

    def main_error(self, x: torch.Tensor, batch: InverseBatch) -> tuple[str, torch.Tensor]:
        """The distance to the nearest exact solution (the published metric)."""
        return "x_dist", self.physics.solution_distance(x, batch.y_target)


class HeatProblem(InverseProblem):
    """``sip/HeatInverse-v0``: recover the initial temperature ``x*`` from its diffused image
    ``y* = P(x*)`` (``HeatPhysics``; Holl, Koltun & Thuerey, NeurIPS 2022,
    Sec. 4.3).

    ``x*``, ``y*``: ``(B, H, W)`` in float64 (the paper's physics precision, whatever the env's
    dtype); the network runs in float32. Metrics: ``x_error`` (mean ``Σ_cells |x − x*|``, the
    paper's metric) and ``y_loss`` (mean ``½‖P(x) − y*‖²``). The true ``x*`` is the reference
    solution of the supervised baseline.
    """

    train_metric = "x_error"
    eval_metric = "val_x_error"

    def __init__(self, env_id: str, physics: HeatPhysics, device: torch.device) -> None:
        super().__init__(env_id, device)
        self.physics = physics
        self.physics_dtype = torch.float64
        self.network_dtype = torch.float32
        self.shape = tuple(physics.shape)

    info_metric = ("x_error", "x_error")

    @property
    def has_reference(self) -> bool:
        return True

    def posed(self, env: Any) -> InverseBatch:
        inner = env.unwrapped
        return InverseBatch(inner.y_target.to(self.device, self.physics_dtype),
                            inner.x_true.to(self.device, self.physics_dtype))

    def sample(self, batch: int, generator: torch.Generator) -> InverseBatch:
        """``(y*, x*)`` of ``batch`` fresh fields, float64."""
        x_true = self.physics.sample_initial(batch, generator, device=self.device)
        return InverseBatch(self.physics.forward(x_true), x_true)

    def main_error(self, x: torch.Tensor, batch: InverseBatch) -> tuple[str, torch.Tensor]:
        """``Σ_cells |x − x*|`` (the published metric)."""
        return "x_error", self.physics.x_error(x, batch.x_true)


class _FluidModel:
    """``sip/FluidInverse-v0`` as a single-step ``y = P(x)`` for the training loop: ``x`` is the
    initial velocity ``(B, 2, H, W)``, ``y`` the markers ``[m_0, m_T]`` ``(B, 2, H, W)``.
    ``P`` needs the problem's ``m_0`` too: ``loss`` and ``inverse`` read it from their ``y``
    argument; ``forward`` from the batch last bound by ``FluidProblem.predict``."""

    def __init__(self, task: FluidInversePhysics, inverse: str) -> None:
        self.task, self.kind = task, inverse
        self.initial: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m0 = self.initial
        if m0 is None or m0.shape[0] != x.shape[0]:
            raise RuntimeError("FluidProblem.predict binds the batch's initial markers before "
                               "forward; call it first.")
        m0 = m0.to(x.dtype)
        return torch.stack((m0, self.task.simulate(x, m0)), 1)

    def loss(self, x: torch.Tensor, y_target: torch.Tensor) -> torch.Tensor:
        y = y_target.to(x.dtype)
        return self.task.marker_loss(self.task.simulate(x, y[:, 0]), y[:, 1])

    def inverse(self, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        solve = (self.task.drift_swirl_inverse if self.kind == "drift-swirl"
                 else self.task.gauss_newton_inverse)
        return solve(x.to(y.dtype), y[:, 0], y[:, 1])


class FluidProblem(InverseProblem):
    """``sip/FluidInverse-v0``: infer the initial velocity ``x*`` ``(B, 2, H, W)`` from the
    markers ``y* = [m_0, m_T*]`` ``(B, 2, H, W)`` (Holl, Koltun & Thuerey, NeurIPS 2022,
    fluid experiment).

    Metrics: ``velocity_l1`` (the published metric, ``FluidInversePhysics.velocity_l1``) and
    ``y_loss`` (the published frequency-weighted marker loss). SIP uses the env's ``inverse``
    setting (``"drift-swirl"``: problem-specific, or ``"gauss-newton"``: generic); the true
    velocity is the supervised reference.
    """

    train_metric = "velocity_l1"
    eval_metric = "val_velocity_l1"
    info_metric = ("velocity_l1", "velocity_l1")

    def __init__(self, env_id: str, task: FluidInversePhysics, inverse: str,
                 device: torch.device, dtype: torch.dtype) -> None:
        super().__init__(env_id, device)
        self.physics = _FluidModel(task, inverse)
        self.physics_dtype = dtype
        self.network_dtype = torch.float32
        self.shape = (2, *task.shape)

    @property
    def has_reference(self) -> bool:
        return True

    def predict(self, network: nn.Module, y_target: torch.Tensor) -> torch.Tensor:
        """``x = f_θ(y*)`` ``(B, 2, H, W)``; binds ``y*``'s ``m_0`` for ``physics.forward``."""
        self.physics.initial = y_target[:, 0].detach().to(self.physics_dtype)
        y = y_target.to(self.network_dtype)
        if getattr(network, "grid", None) is not None:  # (a spatial network: fields)
            return network(y)
        return network(y.flatten(1)).reshape(y.shape)

    def network_spec(self, name: str, hidden: tuple[int, ...]) -> dict[str, Any]:
        cells = math.prod(self.shape)
        return {"name": name, "obs_dim": cells, "act_dim": cells, "hidden": list(hidden),
                "spatial": list(self.shape[1:]) if name in SPATIAL_NETWORKS else None,
                "dtype": "float32"}

    def posed(self, env: Any) -> InverseBatch:
        inner = env.unwrapped
        y = torch.stack((inner.marker, inner.target), 1)
        return InverseBatch(y.to(self.device, self.physics_dtype),
                            inner.v_true.to(self.device, self.physics_dtype))

    def sample(self, batch: int, generator: torch.Generator) -> InverseBatch:
        """``(y* = [m_0, m_T*], x* = v*)`` of ``batch`` fresh problems."""
        s = self.physics.task.sample(batch, generator, device=self.device,
                                     dtype=self.physics_dtype)
        return InverseBatch(torch.stack((s.marker, s.target), 1), s.velocity)

    def main_error(self, x: torch.Tensor, batch: InverseBatch) -> tuple[str, torch.Tensor]:
        """The L1 error of the inferred velocity (the published metric)."""
        assert batch.x_true is not None
        return "velocity_l1", self.physics.task.velocity_l1(x, batch.x_true.to(x.dtype))


# --- building a problem from an env id -----------------------------------------------------------

def _inverse_problem(env_id: str, env: Any, device: torch.device,
                     dtype: torch.dtype) -> InverseProblem | None:
    physics = getattr(env, "physics", None)
    if isinstance(physics, SinePhysics):
        return SineProblem(env_id, physics, device, dtype, float(env.action_scale))
    if isinstance(physics, HeatPhysics):
        return HeatProblem(env_id, physics, device)
    if isinstance(physics, FluidInversePhysics):
        return FluidProblem(env_id, physics, str(env.inverse), device, dtype)
    return None


INVERSE_PROBLEMS: list[Callable[[str, Any, torch.device, torch.dtype], InverseProblem | None]] = [
    _inverse_problem]
"""Builders of inverse problems from an unwrapped env (the first that returns one wins)."""


GYM_MAKE_OPTIONS = ("max_episode_steps", "disable_env_checker", "autoreset",
                    "apply_api_compatibility")
"""``gym.make``'s own keywords (wrappers around the env, not settings of it)."""

TRAINING_OWNED_KWARGS: dict[str, str] = {
    "dtype": "--env-dtype",
    "device": "--device",
    "render_mode": "scripts/render.py (--human or --out); training does not render",
    **{key: "the env's own episode length ('horizon' in --env-kwargs, where the env has one); "
            "training reads the env's task core, which gym.make's wrappers do not reach"
       for key in GYM_MAKE_OPTIONS},
}
"""Keys of ``--env-kwargs`` that training refuses, each with what sets it instead."""


def check_env_kwargs(env_kwargs: Any, owned: dict[str, str], *,
                     flag: str = "--env-kwargs") -> dict[str, Any]:
    """``env_kwargs`` (a JSON object as text, or a dict) as a dict, refusing the keys that a
    dedicated setting owns.

    Unknown keys are not checked here: the env refuses them when it is built (a ``TypeError``
    naming the keywords it accepts).

    Args:
        env_kwargs: The extra ``gym.make`` keywords.
        owned: Keys that must not appear, each mapped to what sets it instead.
        flag: The name of the setting in messages.

    Raises:
        ValueError: Not a JSON object, a key that is not a string, or an owned key (the message
            names the flag to use).
    """
    if isinstance(env_kwargs, str):
        try:
            kwargs = json.loads(env_kwargs)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{flag} must be a JSON object, e.g. '{{\"nu\": 0.02}}'; got "
                             f"{env_kwargs!r} ({exc}).") from exc
    else:
        kwargs = env_kwargs
    if not isinstance(kwargs, dict):
        raise ValueError(f"{flag} must be a JSON object, e.g. '{{\"nu\": 0.02}}'; got "
                         f"{env_kwargs!r}.")
    taken = [key for key in kwargs if key in owned]
    if taken:
        raise ValueError("; ".join(f"{flag} must not set {key!r}: use {owned[key]}"
                                   for key in taken) + ".")
    return dict(kwargs)


def env_error(env_id: str, exc: BaseException) -> str:
    """The env's own reason for refusing its keywords, without gym.make's suffix."""
    del env_id
    return str(exc).split(" was raised from the environment creator")[0].rstrip(".") + "."


def make_problem(env_id: str, env_kwargs: str | dict[str, Any] = "{}", *,
                 device: str | torch.device = "cpu",
                 dtype: str = "float32") -> TaskProblem | InverseProblem:
    """The problem of ``gym.make(env_id, **env_kwargs, device=device, dtype=dtype)``.

    Args:
        env_id: A ``sip/`` id.
        env_kwargs: Extra ``gym.make`` keyword arguments (a dict or a JSON object).
        device: Torch device of the physics (and the network).
        dtype: Precision of the physics (``float32`` or ``float64``; the heat problem always
            runs its physics in float64).

    Raises:
        ValueError: If ``env_kwargs`` sets ``device`` or ``dtype`` (pass them as the
            arguments), or the env has neither a task core nor a known inverse-problem physics.
        TypeError: For a keyword the env does not accept (the env names those it accepts).
    """
    kwargs = check_env_kwargs(env_kwargs, {"device": "make_problem's device argument",
                                           "dtype": "make_problem's dtype argument"},
                              flag="env_kwargs")
    kwargs = {**kwargs, "device": str(device), "dtype": dtype}
    env = gym.make(env_id, **kwargs)
    try:
        torch_device = torch.device(device)
        torch_dtype = torch.float64 if dtype == "float64" else torch.float32
        try:
            core = core_of(env)
        except TypeError:
            core = None
        if core is not None:
            return TaskProblem(env_id, core, kwargs, torch_device, torch_dtype)
        for build in INVERSE_PROBLEMS:
            problem = build(env_id, env.unwrapped, torch_device, torch_dtype)
            if problem is not None:
                return problem
        raise ValueError(f"{env_id} has neither a task core nor a single-step physics the "
                         "training loop knows (SinePhysics, HeatPhysics).")
    finally:
        env.close()


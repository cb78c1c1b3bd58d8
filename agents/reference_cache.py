"""Offline open-loop optimum references for control tasks without an exact reference, cached
to disk with the settings they were made with.

For a nonlinear control task (``sip/ShapeTransition-v0``) there is no closed-form optimal
control. The reference of a task ``(s_0, m*)`` is instead its **open-loop optimum**: the
``T`` normalised actions ``a_t`` (no network, one free set of forces per task) found by Adam
through the differentiable physics, from zero forces, on the env's objective plus the
frequency-weighted L1 of the marker (Holl, Thuerey & Koltun, ICLR 2020), which gives a gradient
towards a target the marker does not yet overlap::

    ‖m_T − m*‖² / ‖m*‖²  +  w_freq · frequency_l1(m_T, m*)  +  force_penalty · Σ_t mean(a_t²)

(actions clipped to ``[-1, 1]`` as in the env). It serves two purposes: the **floor** of a
comparison (what per-task optimisation reaches; a policy that generalises rarely beats it) and
the targets of the **supervised** baseline (``agents.supervised``), which regresses
``π(s_t^ref, m*, t/T) ≈ a_t^ref`` on a pool of such tasks (teacher forcing).

A pool is computed once (``build_references``: minutes for a few hundred small tasks) and
saved as ``references.pt`` with ``settings.json`` in a directory. ``load_references`` refuses a
directory made with other settings (a ``ValueError`` that names the settings that differ),
so a cache is never silently reused for another task distribution or optimiser.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import gymnasium as gym
import torch

import sipenv  # noqa: F401  (registers the sip/ ids)
from agents.outputs import progress_interval
from sipenv.envs.core import TaskCore, core_of
from sipenv.validation import check_int, check_nonnegative, check_positive

__all__ = ["ReferencePool", "ReferenceSettings", "build_references", "ensure_references",
           "load_references", "open_loop_optimum"]

SETTINGS_FILE = "settings.json"
DATA_FILE = "references.pt"


@dataclass(frozen=True)
class ReferenceSettings:
    """Everything a reference pool depends on (stored next to it, compared on load).

    Attributes:
        env_id: The task's Gymnasium id.
        env_kwargs: Its ``gym.make`` keywords (without ``device`` / ``dtype``).
        dtype: Precision of the physics (``"float32"`` / ``"float64"``).
        tasks: Number of tasks in the pool (≥ 1).
        seed: The pool's tasks are ``core.sample_tasks(tasks, Generator().manual_seed(seed))``.
        iterations: Adam steps per task (≥ 1).
        lr: Adam's learning rate on the normalised actions.
        frequency_weight: ``w_freq`` (≥ 0).
    """

    env_id: str
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    dtype: str = "float32"
    tasks: int = 256
    seed: int = 0
    iterations: int = 100
    lr: float = 0.05
    frequency_weight: float = 100.0

    def __post_init__(self) -> None:
        check_int("tasks", self.tasks, minimum=1)
        check_int("seed", self.seed, minimum=0)
        check_int("iterations", self.iterations, minimum=1)
        check_positive("lr", self.lr)
        check_nonnegative("frequency_weight", self.frequency_weight)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (keys sorted by ``json.dumps`` when stored)."""
        return json.loads(json.dumps(asdict(self)))


class ReferencePool(NamedTuple):
    """Tasks and their open-loop optimum.

    Attributes:
        s0: Initial states ``(P, …)``.
        target: Targets ``(P, …)``.
        actions: Normalised actions ``(T, P, …)`` in ``[-1, 1]``.
        error: Terminal target error of each task under ``actions``, ``(P,)``.
        settings: What the pool was made with.
    """

    s0: torch.Tensor
    target: torch.Tensor
    actions: torch.Tensor
    error: torch.Tensor
    settings: ReferenceSettings


def _frequency_l1(core: TaskCore, state: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    freq = getattr(core, "frequency_l1", None)
    if callable(freq):
        return freq(state, target)
    return torch.zeros(state.shape[0], dtype=state.dtype, device=state.device)


def open_loop_optimum(core: TaskCore, s0: torch.Tensor, target: torch.Tensor, *,
                      iterations: int = 100, lr: float = 0.05,
                      frequency_weight: float = 100.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-task open-loop optimum by Adam through the physics (module docstring).

    Args:
        core: The task core (its ``step``, ``target_error``, ``force_cost``; ``frequency_l1``
            where it has one).
        s0, target: ``B`` tasks.
        iterations: Adam steps.
        lr: Adam's learning rate (normalised action units).
        frequency_weight: Weight of the frequency-weighted marker L1.

    Returns:
        ``(actions (T, B, …) in [-1, 1], terminal target error (B,))``; every task is optimised
        on its own (the summed loss has a block-diagonal gradient).
    """
    shape = (core.horizon, s0.shape[0], *core.action_shape)
    actions = torch.zeros(shape, dtype=s0.dtype, device=s0.device, requires_grad=True)
    optimizer = torch.optim.Adam([actions], lr=lr)

    def loss() -> tuple[torch.Tensor, torch.Tensor]:
        state = s0
        clipped = actions.clamp(-1.0, 1.0)
        for t in range(core.horizon):
            state = core.step(state, clipped[t])
        error = core.target_error(state, target)
        total = error + core.force_penalty * core.force_cost(clipped).sum(0)
        if frequency_weight:
            total = total + frequency_weight * _frequency_l1(core, state, target)
        return total.sum(), error

    with torch.enable_grad():
        for _ in range(iterations):
            optimizer.zero_grad()
            loss()[0].backward()
            optimizer.step()
    with torch.no_grad():
        error = loss()[1]
    return actions.detach().clamp(-1.0, 1.0), error.detach()


def _core(settings: ReferenceSettings) -> TaskCore:
    env = gym.make(settings.env_id, **settings.env_kwargs, dtype=settings.dtype)
    try:
        return core_of(env)
    finally:
        env.close()


def build_references(settings: ReferenceSettings, *, progress: bool = True) -> ReferencePool:
    """Draw the pool's tasks and solve each open-loop (on the CPU, in batches of 64), with a
    progress bar on stderr (``progress``): a pool of hundreds of 2-D tasks takes minutes."""
    from tqdm.auto import tqdm

    core = _core(settings)
    dtype = torch.float64 if settings.dtype == "float64" else torch.float32
    s0, target = core.sample_tasks(settings.tasks, torch.Generator().manual_seed(settings.seed),
                                   dtype=dtype)
    actions, errors = [], []
    for start in tqdm(range(0, settings.tasks, 64), desc=f"open-loop references "
                      f"({settings.tasks} tasks, built once, then cached)", unit="batch",
                      disable=not progress, mininterval=progress_interval()):
        part = slice(start, start + 64)
        a, e = open_loop_optimum(core, s0[part], target[part], iterations=settings.iterations,
                                 lr=settings.lr, frequency_weight=settings.frequency_weight)
        actions.append(a)
        errors.append(e)
    return ReferencePool(s0, target, torch.cat(actions, 1), torch.cat(errors), settings)


def load_references(directory: str | Path, settings: ReferenceSettings) -> ReferencePool:
    """The pool cached in ``directory``, if it was made with ``settings``.

    Raises:
        FileNotFoundError: If ``directory`` holds no pool.
        ValueError: If the pool was made with other settings (the message names them).
    """
    path = Path(directory)
    if not (path / SETTINGS_FILE).is_file() or not (path / DATA_FILE).is_file():
        raise FileNotFoundError(f"{path} holds no reference pool ({SETTINGS_FILE} and "
                                f"{DATA_FILE}); build one with ensure_references.")
    stored = json.loads((path / SETTINGS_FILE).read_text())
    wanted = settings.to_json()
    differ = sorted(k for k in set(stored) | set(wanted) if stored.get(k) != wanted.get(k))
    if differ:
        detail = ", ".join(f"{k}: cached {stored.get(k)!r}, asked {wanted.get(k)!r}"
                           for k in differ)
        raise ValueError(f"The reference pool in {path} was made with other settings ({detail}); "
                         "use another directory for these settings, or delete it to rebuild.")
    data = torch.load(path / DATA_FILE, weights_only=True)
    return ReferencePool(data["s0"], data["target"], data["actions"], data["error"], settings)


def ensure_references(directory: str | Path, settings: ReferenceSettings) -> ReferencePool:
    """Load the pool cached in ``directory``, or build and cache it there if there is none.

    Raises:
        ValueError: If ``directory`` holds a pool made with other settings.
    """
    try:
        return load_references(directory, settings)
    except FileNotFoundError:
        pass
    pool = build_references(settings)
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    torch.save({"s0": pool.s0, "target": pool.target, "actions": pool.actions,
                "error": pool.error}, path / DATA_FILE)
    (path / SETTINGS_FILE).write_text(json.dumps(settings.to_json(), indent=2, sort_keys=True))
    return pool

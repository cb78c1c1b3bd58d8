"""RL baseline: stable-baselines3 PPO through the plain Gymnasium API.

This is what many users reach for first, so every comparison includes it. PPO never sees the
differentiable core: it trains on ``n_envs`` copies of ``gym.make(env_id, **env_kwargs)`` stepped
one by one in SB3's ``DummyVecEnv``, from rewards only (``−force_penalty · mean(a²)`` per step and
``−‖s_T − s*‖²/‖s*‖²`` at the last step). What it shares with SIP, DP and supervised training:

* the **actor network**: the same MLP (``hidden`` widths, ReLU) mapping the observation
  ``[s_t, s*, t/T]`` ``(B, 2N + 1)`` to the action ``(B, N)``; it starts from the same seeded
  weights as the other methods' network (``shared_init``). PPO adds a state-independent
  log-std and a critic of the same widths, which the deterministic policy does not use;
* the **evaluation**: the deterministic policy (the Gaussian's mean) on the same held-out tasks,
  through ``agents.evaluation.evaluate_torch``;
* the **budgets**: ``iterations`` counts PPO updates (one rollout of ``n_envs · n_steps`` env steps,
  then ``n_epochs`` passes of minibatch Adam), and ``time_budget`` counts training wall-clock
  seconds (rollouts and updates, not evaluation or I/O); training stops at whichever comes first.

stable-baselines3 is an optional dependency (``pip install 'sipenv[rl]'``): it is imported only
when PPO is built, so this module imports without it.

The run directory holds what every algorithm writes (``config.json``, ``metrics.jsonl``,
``checkpoint.pt`` with the actor's weights, ``final_eval.json``, ``learning_curve.png``) plus
SB3's own ``ppo_model.zip``. ``load_policy`` rebuilds the deterministic actor from
``checkpoint.pt`` without SB3.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import torch
from torch import nn

from agents.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from agents.networks import CNNEncoder, CNNPolicy, make_network
from agents.outputs import progress_interval
from agents.problems import Problem, TaskProblem
from agents.trainer import (
    OPTIMIZERS,
    SEED_MAX,
    Algorithm,
    RunRecorder,
    TrainConfig,
    TrainingDiverged,
    TrainResult,
    stop_reason,
    training_clock,
)
from sipenv.validation import (
    check_bool,
    check_finite,
    check_int,
    check_nonnegative,
    check_positive,
    is_real,
)

if TYPE_CHECKING:
    from stable_baselines3 import PPO
    from stable_baselines3.common.vec_env import VecEnv

__all__ = [
    "ALGORITHM",
    "NETWORK_NAME",
    "SPATIAL_NETWORK_NAME",
    "PPOActor",
    "PPOConfig",
    "actor_from_model",
    "load_policy",
    "make_model",
    "make_train_envs",
    "spatial_extractor",
    "train",
    "train_env_seeds",
]

NETWORK_NAME = "ppo-mlp"
"""Network name in PPO checkpoints (the deterministic actor, see ``PPOActor``)."""

SPATIAL_NETWORK_NAME = "ppo-cnn"
"""Network name in PPO checkpoints of 2-D envs (the deterministic actor is a
``agents.networks.CNNPolicy`` sharing SB3's layers, see ``spatial_extractor``)."""


def spatial_extractor() -> type:
    """SB3's features extractor for float 2-D field observations ``(C, H, W)``: the
    ``agents.networks.CNNEncoder`` (circular padding). SB3's own image policy (``CnnPolicy``,
    NatureCNN) expects uint8 images scaled by 255 and zero padding; fields are floats of any
    sign on a periodic box. Keywords: ``hidden`` (filters per level), ``features``."""
    from gymnasium import spaces
    from stable_baselines3.common.torch_layers import BaseFeaturesExtractor

    class SpatialExtractor(BaseFeaturesExtractor):
        def __init__(self, observation_space: spaces.Box, hidden: Sequence[int] = (16, 32, 32),
                     features: int = 128) -> None:
            super().__init__(observation_space, features)
            shape = observation_space.shape
            assert shape is not None and len(shape) == 3
            self.encoder = CNNEncoder(int(shape[0]), shape[1:], hidden, features)

        def forward(self, observations: torch.Tensor) -> torch.Tensor:
            return self.encoder(observations)

    return SpatialExtractor

_MISSING_SB3 = "PPO needs the rl extra: pip install 'sipenv[rl]'"


def _import_sb3() -> Any:
    """The ``stable_baselines3`` module, or an ImportError that says how to install it."""
    try:
        import stable_baselines3
    except ImportError as exc:
        raise ImportError(_MISSING_SB3) from exc
    return stable_baselines3


# --- configuration --------------------------------------------------------------------------------

@dataclass
class PPOConfig(TrainConfig):
    """PPO (stable-baselines3) on a control env.

    Of the shared ``agents.trainer.TrainConfig`` fields, ``iterations`` counts PPO updates,
    ``batch_size`` is the PPO minibatch size, ``eval_every`` / ``log_every`` /
    ``checkpoint_every`` count PPO updates, ``optimizer`` and ``lr`` configure the actor-critic's
    optimizer, and ``hidden`` the widths of both the actor and the critic.
    """

    algo: Literal["ppo"] = "ppo"
    lr: float = 3e-4
    """Learning rate of the actor-critic's optimizer (SB3's PPO default)."""
    log_every: int = 1
    """Write a metrics.jsonl record every this many PPO updates."""
    n_envs: int = 8
    """Parallel training envs (SB3 DummyVecEnv over gym.make)."""
    n_steps: int = 256
    """Env steps per env per rollout; one PPO update uses n_envs · n_steps transitions."""
    n_epochs: int = 10
    """Passes over each rollout per update."""
    gamma: float = 1.0
    """Discount factor (1: the task is episodic with a short finite horizon, 16 steps by default,
    and the time is part of the observation)."""
    gae_lambda: float = 0.95
    """GAE λ (bias/variance trade-off of the advantage estimate)."""
    clip_range: float = 0.2
    """PPO clipping of the probability ratio to [1 − clip_range, 1 + clip_range]."""
    ent_coef: float = 0.0
    """Entropy bonus weight."""
    vf_coef: float = 0.5
    """Value-loss weight."""
    max_grad_norm: float = 0.5
    """Gradient-norm clipping of each update."""
    target_kl: float = 0.0
    """Stop an update's epochs early when the approximate KL exceeds 1.5 · target_kl (0 = off)."""
    normalize_advantage: bool = True
    """Normalise advantages per minibatch."""
    log_std_init: float = -2.0
    """Initial log standard deviation of the Gaussian policy. The actions are small (typical
    |a| ≈ 0.1–0.3 in the [-1, 1] box), so exploration starts small: std = e^-2 ≈ 0.14."""
    shared_init: bool = True
    """Start the actor from the same seeded weights as the other methods' network
    (agents.networks); False keeps SB3's orthogonal initialisation."""

    def check_problem(self, problem: Problem) -> None:
        """PPO trains multi-step tasks through the Gymnasium API only."""
        super().check_problem(problem)
        if not isinstance(problem, TaskProblem):
            raise ValueError(f"ppo trains multi-step control and correction tasks; "
                             f"{problem.env_id} is a single-step inverse problem. Use sip or "
                             "dp on it.")
        if self.network == "cnn" and problem.spatial is None:
            raise ValueError(f"--network cnn reads 2-D fields; {problem.env_id} observes flat "
                             "vectors. Use --network mlp.")

    def check_fields(self) -> None:
        """Check every field (the shared ones and PPO's) before any work starts.

        Raises:
            ValueError: Naming the setting and how to fix it.
        """
        super().check_fields()
        if self.network not in ("mlp", "cnn"):
            raise ValueError(f"PPO trains SB3's actor-critic with the 'hidden' widths: an MLP "
                             f"(flat observations) or a CNN encoder (2-D fields); network must "
                             f"be 'mlp' or 'cnn', got {self.network!r}.")
        if self.eval_points:
            raise ValueError("ppo evaluates every --eval-every updates; --eval-points is not "
                             "supported for it. Use --eval-every.")
        if self.lr_schedule != "constant":
            raise ValueError("ppo trains at a constant --lr (stable-baselines3 runs its own "
                             "optimizer); --lr-schedule is for sip, dp, supervised and hig. "
                             "Leave it out.")
        if self.data_seed is not None:
            raise ValueError("ppo draws its training tasks from its envs, seeded by --seed; "
                             "--data-seed is not used by it. Leave it out.")
        for name in ("n_envs", "n_steps", "n_epochs"):
            check_int(name, getattr(self, name), minimum=1)
        check_int("seed", self.seed, minimum=0, maximum=SEED_MAX // self.n_envs - 1,
                  hint="(The training envs are seeded seed · n_envs + i, 32-bit seeds.)")
        if self.batch_size < 2:
            raise ValueError(f"batch_size (the PPO minibatch) must be ≥ 2 for advantage "
                             f"normalisation, got {self.batch_size}.")
        if self.n_envs * self.n_steps < 2:
            raise ValueError("n_envs · n_steps must be ≥ 2; raise --n-steps.")
        if self.batch_size > self.n_envs * self.n_steps:
            raise ValueError(f"batch_size ({self.batch_size}) must not exceed the rollout size "
                             f"n_envs · n_steps = {self.n_envs * self.n_steps}; lower "
                             "--batch-size or raise --n-steps.")
        for name in ("gamma", "gae_lambda"):
            value = getattr(self, name)
            if not (is_real(value) and 0.0 <= value <= 1.0):
                raise ValueError(f"{name} must be a number in [0, 1], got {value!r}.")
        for name in ("clip_range", "max_grad_norm"):
            check_positive(name, getattr(self, name))
        for name in ("ent_coef", "vf_coef", "target_kl"):
            check_nonnegative(name, getattr(self, name))
        check_finite("log_std_init", self.log_std_init)
        check_bool("normalize_advantage", self.normalize_advantage)
        check_bool("shared_init", self.shared_init)
        if self.resume:
            raise ValueError("--resume is not supported for ppo; start a new run (another "
                             "--run-name) with the total budget instead.")
        seeds = train_env_seeds(self)
        if seeds.start < self.eval_seed + self.eval_episodes and self.eval_seed < seeds.stop:
            raise ValueError(f"The training env seeds {seeds.start}…{seeds.stop - 1} "
                             f"(seed · n_envs + i) overlap the held-out eval seeds "
                             f"{self.eval_seed}…{self.eval_seed + self.eval_episodes - 1}; "
                             "choose a smaller --seed or another --eval-seed.")


def train_env_seeds(config: PPOConfig) -> range:
    """Seeds of the training envs' first ``reset``: ``seed · n_envs + i`` for ``i < n_envs``.

    Later episodes continue each env's own generator, so different ``seed`` values give disjoint
    task streams and none of them is an evaluation task (checked by ``PPOConfig.validate``).
    """
    return range(config.seed * config.n_envs, (config.seed + 1) * config.n_envs)


# --- the deterministic actor ----------------------------------------------------------------------

class PPOActor(nn.Module):
    """PPO's deterministic policy: the mean of its Gaussian, ``obs (B, 2N+1) → action (B, N)``.

    ``net`` is ``Linear, ReLU, …, Linear``, laid out (and named) like
    ``agents.networks.MLPPolicy``, so the two exchange weights with ``load_state_dict``. Built
    by ``actor_from_model`` it *shares* its layers with the SB3 policy (it follows training);
    built by ``build`` it is standalone (for loading a checkpoint, no SB3 needed). Actions
    are not clipped here; the env and ``ControlCore.rollout`` clip them to ``[-1, 1]``.
    """

    def __init__(self, net: nn.Sequential) -> None:
        super().__init__()
        self.net = net

    @classmethod
    def build(cls, obs_dim: int, act_dim: int, hidden: Sequence[int]) -> PPOActor:
        """A fresh actor of the given sizes (its weights are meant to be loaded)."""
        layers: list[nn.Module] = []
        width = obs_dim
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, act_dim))
        return cls(nn.Sequential(*layers))

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """``(B, obs_dim)`` float32 → ``(B, act_dim)`` mean actions."""
        return self.net(obs)


def actor_from_model(model: PPO) -> PPOActor | CNNPolicy:
    """The deterministic actor of an SB3 PPO model, sharing its parameters.

    ``PPOActor(obs) == model.policy._predict(obs, deterministic=True)``; ``model.predict(obs,
    deterministic=True)`` is the same clipped to the action box. With the 2-D features
    extractor (``spatial_extractor``) it is a ``agents.networks.CNNPolicy`` whose encoder and
    head are SB3's extractor and action layer (fields in, fields out).

    Raises:
        TypeError: If the policy is not an MLP actor-critic on flat observations.
    """
    policy = model.policy
    extractor = getattr(policy, "pi_features_extractor", None)
    if extractor is not None and type(extractor).__name__ == "SpatialExtractor":
        # (2-D fields: a CNNPolicy view of SB3's layers)
        obs_shape = tuple(model.observation_space.shape or ())
        act_dim = int(np.prod(model.action_space.shape or ()))
        actor = CNNPolicy(int(np.prod(obs_shape)), act_dim, (1,), spatial=obs_shape[1:],
                          features=extractor.encoder.features)
        actor.encoder = extractor.encoder
        actor.head = policy.action_net  # type: ignore[assignment]
        return actor
    if type(extractor).__name__ != "FlattenExtractor" or not hasattr(policy, "action_net"):
        raise TypeError("actor_from_model needs an SB3 MlpPolicy (flat observations, "
                        f"FlattenExtractor); got {type(policy).__name__}.")
    layers = [*policy.mlp_extractor.policy_net, policy.action_net]
    return PPOActor(nn.Sequential(*layers))


def load_policy(path: str | Path, device: str | torch.device = "cpu") -> nn.Module:
    """Rebuild the deterministic actor (eval mode) from a PPO run's ``checkpoint.pt``.

    Needs no stable-baselines3. ``agents.registry.load_policy`` calls it for ``algo == "ppo"``.

    Raises:
        CheckpointError: If the checkpoint is invalid, not a PPO checkpoint, or its weights do not
            fit its network spec.
    """
    ckpt = load_checkpoint(path, map_location=device)
    names = (NETWORK_NAME, SPATIAL_NETWORK_NAME)
    if ckpt["algo"] != "ppo" or ckpt["network"].get("name") not in names:
        raise CheckpointError(f"{path} is a {ckpt['algo']!r} checkpoint, not a PPO one; load it "
                              "with agents.registry.load_policy.")
    spec = ckpt["network"]
    actor: nn.Module
    if spec["name"] == SPATIAL_NETWORK_NAME:
        actor = CNNPolicy(spec["obs_dim"], spec["act_dim"], spec["hidden"],
                          spatial=spec["spatial"]).to(device)
    else:
        actor = PPOActor.build(spec["obs_dim"], spec["act_dim"], spec["hidden"]).to(device)
    try:
        actor.load_state_dict(ckpt["model"])
    except RuntimeError as exc:
        raise CheckpointError(f"Checkpoint {path} weights do not fit network {spec}: {exc}") \
            from exc
    return actor.eval()


# --- building envs and the SB3 model --------------------------------------------------------------

def make_train_envs(config: PPOConfig) -> VecEnv:
    """``n_envs`` copies of ``gym.make(env_id, **config.env_make_kwargs())`` in SB3's
    ``DummyVecEnv`` (each in SB3's ``Monitor``), seeded by ``train_env_seeds`` at their first
    reset.

    Raises:
        ImportError: Without stable-baselines3.
    """
    _import_sb3()
    from stable_baselines3.common.env_util import make_vec_env

    venv = make_vec_env(config.env_id, n_envs=config.n_envs, env_kwargs=config.env_make_kwargs())
    venv.seed(train_env_seeds(config).start)
    return venv


def make_model(config: PPOConfig, venv: VecEnv) -> PPO:
    """SB3 PPO on ``venv`` with the config's settings, seeded with ``config.seed``.

    The actor and the critic are MLPs with the ``hidden`` widths and ReLU; with ``shared_init``
    the actor starts from ``make_network(config.network, …, seed=config.seed)``'s weights.

    Raises:
        ImportError: Without stable-baselines3.
    """
    sb3 = _import_sb3()
    hidden = [int(h) for h in config.hidden]
    arch: dict[str, Any] = dict(net_arch=dict(pi=hidden, vf=hidden))
    if config.network == "cnn":  # (2-D fields: the CNN encoder, then a linear action layer)
        arch = dict(net_arch=dict(pi=[], vf=[64]), features_extractor_class=spatial_extractor(),
                    features_extractor_kwargs=dict(hidden=hidden))
    model = sb3.PPO(
        "MlpPolicy", venv, learning_rate=config.lr, n_steps=config.n_steps,
        batch_size=config.batch_size, n_epochs=config.n_epochs, gamma=config.gamma,
        gae_lambda=config.gae_lambda, clip_range=config.clip_range,
        normalize_advantage=config.normalize_advantage, ent_coef=config.ent_coef,
        vf_coef=config.vf_coef, max_grad_norm=config.max_grad_norm,
        target_kl=config.target_kl or None, seed=config.seed, device=config.device, verbose=0,
        policy_kwargs=dict(**arch, activation_fn=nn.ReLU,
                           log_std_init=config.log_std_init,
                           optimizer_class=OPTIMIZERS[config.optimizer]))
    # PPO(seed=...) reseeds the envs with seed + i; restore the disjoint training seeds.
    venv.seed(train_env_seeds(config).start)
    if config.shared_init:
        obs_shape = venv.observation_space.shape or ()
        obs_dim = int(np.prod(obs_shape))
        act_dim = int(np.prod(venv.action_space.shape or ()))
        spatial: dict[str, Any] = dict(spatial=obs_shape[1:]) if config.network == "cnn" else {}
        shared = make_network(config.network, obs_dim, act_dim, hidden=config.hidden,
                              seed=config.seed, **spatial)
        actor_from_model(model).load_state_dict(shared.state_dict())
    return model


def _finite_policy(model: PPO) -> bool:
    """Whether every weight of the actor-critic and the policy's std are finite."""
    params: list[torch.Tensor] = [*model.policy.parameters()]
    log_std = getattr(model.policy, "log_std", None)
    if isinstance(log_std, torch.Tensor):
        params.append(log_std.exp())
    return all(bool(torch.isfinite(p).all()) for p in params)


# --- the training loop (SB3's, observed by a callback) --------------------------------------------

def _make_callback(config: PPOConfig,
                   on_update: Callable[[int, float, dict[str, float]], bool]) -> Any:
    """An SB3 callback that counts updates, measures training time and reports each update.

    SB3 runs ``rollout → update`` cycles; an update has finished when the next rollout starts or
    training ends after a complete rollout. ``on_update(update, train_time, metrics)`` runs then,
    outside the clock (evaluation and I/O do not count), and returns whether to go on.
    """

    from stable_baselines3.common.callbacks import BaseCallback

    clock = training_clock(config.clock)

    class _Callback(BaseCallback):
        def __init__(self) -> None:
            super().__init__(verbose=0)
            self.updates = 0
            self.train_time = 0.0
            self._mark = 0.0
            self._pending = False  # a rollout is complete, its update is running
            self._stop = False
            self._errors: list[float] = []
            self._costs: list[float] = []
            self._running_cost = np.zeros(config.n_envs)

        def _on_training_start(self) -> None:
            self._mark = clock()

        def _on_step(self) -> bool:
            if self._stop:
                return False
            # --- per-episode training metrics from the env's info ---
            infos, dones = self.locals["infos"], self.locals["dones"]
            for i, info in enumerate(infos):
                self._running_cost[i] += float(info["force_cost"])
                if dones[i]:
                    self._errors.append(float(info["target_error"]))
                    self._costs.append(float(self._running_cost[i]))
                    self._running_cost[i] = 0.0
            return True

        def _on_rollout_end(self) -> None:
            self._pending = True

        def _on_rollout_start(self) -> None:
            self._update_finished()

        def _on_training_end(self) -> None:
            self._update_finished()

        def _update_finished(self) -> None:
            if not self._pending:
                return
            self.train_time += clock() - self._mark
            self._pending = False
            self.updates += 1
            values = self.model.logger.name_to_value
            metrics = {"loss": float(values.get("train/loss", float("nan"))),
                       "target_error": float(np.mean(self._errors)) if self._errors
                       else float("nan"),
                       "force_cost": float(np.mean(self._costs)) if self._costs
                       else float("nan")}
            for key in ("approx_kl", "clip_fraction", "value_loss", "std"):
                if f"train/{key}" in values:
                    metrics[key] = float(values[f"train/{key}"])
            self._errors, self._costs = [], []
            self._stop = not on_update(self.updates, self.train_time, metrics)
            self._mark = clock()

    return _Callback()


def train(config: PPOConfig, *, resume: bool = False, progress: bool = True, write: bool = True,
          run_dir: str | Path | None = None,
          on_eval: Callable[[dict[str, float]], None] | None = None) -> TrainResult:
    """Train SB3 PPO on ``config.env_id`` and evaluate its deterministic actor.

    Args:
        config: Settings (validated before any work starts).
        resume: Not supported for PPO (raises ``NotImplementedError``); start a new run instead.
        progress: Show a progress bar with the live training target error.
        write: Write the run directory (``False``: in-memory only, e.g. for sweeps).
        run_dir: Override ``runs_dir/run_name``.
        on_eval: Called with each evaluation record (``iteration`` = PPO updates so far,
            ``time`` = training seconds, ``eval_target_error_mean``, …), every ``eval_every``
            updates, as ``agents.trainer.run_training`` does.

    Returns:
        ``agents.trainer.TrainResult`` whose ``policy`` is the deterministic
        ``PPOActor`` (eval mode) and ``iterations`` the number of PPO updates.

    Raises:
        ValueError: For invalid settings.
        ImportError: Without stable-baselines3 (``pip install 'sipenv[rl]'``).
        NotImplementedError: For ``resume=True``.
        FileExistsError: If the run directory already holds a checkpoint.
        TrainingDiverged: If the actor's weights become NaN/inf.
    """
    config.validate()
    if resume:
        raise NotImplementedError("resume is not supported for ppo; start a new run (another "
                                  "--run-name) with the total budget instead.")
    _import_sb3()
    if config.threads > 0:
        torch.set_num_threads(config.threads)
    out = Path(run_dir) if run_dir is not None else config.run_dir()
    ckpt_path = out / "checkpoint.pt"
    if write and ckpt_path.exists():
        raise FileExistsError(f"{out} already holds a run; choose another --run-name (PPO runs "
                              "cannot be resumed).")

    # --- env core and held-out tasks: identical for every algorithm ---
    problem = config.make_problem()
    assert isinstance(problem, TaskProblem)  # (check_problem)
    core = problem.core
    held_out = problem.held_out_sets(config.eval_seed, config.eval_episodes)[""]

    # --- SB3 PPO on plain Gymnasium envs ---
    venv = make_train_envs(config)
    model = make_model(config, venv)
    actor = actor_from_model(model)
    spec = {"name": NETWORK_NAME, "obs_dim": core.obs_dim,
            "act_dim": int(np.prod(core.action_shape)), "hidden": list(config.hidden)}
    if config.network == "cnn":
        spec = {**problem.network_spec(config.network, tuple(config.hidden)),
                "name": SPATIAL_NETWORK_NAME}
    config_dict = {**asdict(config), "hidden": list(config.hidden)}
    state = {"updates": 0, "train_time": 0.0}

    def payload() -> dict[str, Any]:
        return {"algo": config.algo, "env_id": config.env_id,
                "env_kwargs": json.loads(config.env_kwargs), "network": spec,
                "config": config_dict, "model": actor.state_dict(),
                "iteration": state["updates"], "train_time": state["train_time"]}

    def save() -> None:
        model.save(out / "ppo_model.zip")
        save_checkpoint(ckpt_path, payload())

    def evaluate() -> dict[str, float]:
        return problem.evaluate(actor, held_out)

    recorder = RunRecorder(config, out if write else None, evaluate, save, on_eval=on_eval)

    from tqdm.auto import tqdm

    limit = config.iteration_limit
    bar = tqdm(total=limit, disable=not progress, mininterval=progress_interval(),
               desc=f"{config.algo} {config.env_id}", dynamic_ncols=True)

    def on_update(update: int, train_time: float, metrics: dict[str, float]) -> bool:
        state["updates"], state["train_time"] = update, train_time
        # --- stop before a non-finite actor can be evaluated or saved ---
        if not _finite_policy(model):
            raise TrainingDiverged(f"Non-finite weights or std after PPO update {update}; "
                                   "training stopped. Lower --lr or --max-grad-norm.")
        bar.update(1)
        if recorder.step(update, train_time, metrics) is not None:
            bar.set_postfix(err=f"{metrics['target_error']:.3g}", refresh=False)
        return (limit is None or update < limit) and (config.time_budget <= 0
                                                      or train_time < config.time_budget)

    callback = _make_callback(config, on_update)
    try:
        # One update per n_envs · n_steps env steps: this caps SB3 at `iterations` updates.
        # (Without an iteration limit the time budget stops it: SB3 only counts up to this.)
        model.learn(total_timesteps=(limit or 10**12) * config.n_envs * config.n_steps,
                    callback=callback)
    except ValueError as exc:
        # Non-finite weights or std surface inside SB3 as torch.distributions' validation errors.
        if _finite_policy(model):
            raise
        raise TrainingDiverged(f"Non-finite weights or std during PPO update "
                               f"{callback.updates + 1}; training stopped. Lower --lr or "
                               "--max-grad-norm.") from exc
    finally:
        bar.close()
        venv.close()

    updates, train_time = int(state["updates"]), float(state["train_time"])
    stopped_by = stop_reason(config, updates, train_time)
    final = recorder.finish(updates, train_time, stopped_by)
    return TrainResult(actor.eval(), problem, out if write else None, updates, train_time, final,
                       recorder.history, stopped_by)


ALGORITHM = Algorithm("ppo", PPOConfig, trainer=train, extras=("rl",))
"""PPO: its own loop (stable-baselines3, imported only when it trains)."""

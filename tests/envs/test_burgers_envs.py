"""``sip/ControlledBurgers-v0`` and ``sip/CorrectedBurgers-v0``: the tasks' own facts (reference
settings, solvability, dynamics and rewards against the physics, scheme options, keyword
routing). The Gymnasium contract every env keeps is in ``test_conformance.py``."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from env_support import assert_make_refuses
from gymnasium.utils.env_checker import check_env

import sipenv  # noqa: F401  (registers the ids)
from sipenv.envs.controlled_burgers import ControlledBurgersEnv
from sipenv.envs.core import core_of
from sipenv.physics import BurgersPhysics

ENV_ID = "sip/ControlledBurgers-v0"
N = 128


def _make(**kwargs: Any) -> gym.Env:
    return gym.make(ENV_ID, **kwargs)


def _actions(seed: int, steps: int, shape: tuple[int, ...] = (N,),
             scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-scale, scale, (steps, *shape)).astype(np.float32)


# --- registration, spaces and the Gymnasium checker ---------------------------------------------


def test_env_exposes_its_core_with_the_reference_settings() -> None:
    env = _make()
    assert isinstance(env.unwrapped, ControlledBurgersEnv)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (N,), np.float32)
    assert env.observation_space.shape == (2 * N + 1,)
    core = core_of(env)
    phys = core.physics
    assert isinstance(phys, BurgersPhysics)
    assert (phys.n, phys.nu, phys.dt, phys.length, core.horizon) == (128, 0.003, 0.03, 1.0, 32)
    assert core.force_scale == 2.0 and core.task_sampler is not None
    # The documented stability argument: no action in the box can break the CFL condition.
    assert 3.0 + core.horizon * phys.dt * core.force_scale < phys.max_stable_speed


# --- seeding and tasks ----------------------------------------------------------------------------


def test_reset_poses_the_reference_task() -> None:
    env = _make(dtype="float64")
    env.reset(seed=7)
    s0 = env.unwrapped.state[0]
    target = env.unwrapped.target[0]
    core = env.unwrapped.core
    g = torch.Generator().manual_seed(0)
    # The same law as the sampler: two bumps of opposite sign; a target reached from s0.
    assert float(s0.max()) > 0 > float(s0.min())
    ref_s0, ref_target = core.sample_tasks(1, g, dtype=torch.float64)
    assert ref_s0.shape == (1, N) and ref_target.shape == (1, N)
    assert not torch.equal(target, s0)


def test_replaying_the_generating_force_reaches_the_target() -> None:
    """Every task is solvable inside the action box: the constant force that generated the
    target, divided by force_scale, is a valid action sequence that lands on it."""
    env = _make(dtype="float64")
    core = env.unwrapped.core
    s0, target, force = core.task_sampler.with_forces(8, torch.Generator().manual_seed(5))
    actions = (force / core.force_scale).numpy()
    assert float(np.abs(actions).max()) <= 0.87
    for i in range(2):
        env.reset(options={"initial_state": s0[i].numpy(), "target": target[i].numpy()})
        for _ in range(core.horizon):
            _, reward, terminated, _, info = env.step(actions[i])
        assert terminated and info["target_error"] < 1e-20
        assert reward == pytest.approx(-core.force_penalty * float(np.mean(actions[i] ** 2)))


# --- dynamics, rewards, options -------------------------------------------------------------------


def test_dynamics_and_rewards_match_the_physics() -> None:
    horizon, penalty, scale = 3, 0.2, 1.5
    env = _make(horizon=horizon, force_penalty=penalty, force_scale=scale, dtype="float64")
    phys = BurgersPhysics()
    g = torch.Generator().manual_seed(1)
    s = phys.sample_initial_states(1, g, dtype=torch.float64)
    target = phys.sample_initial_states(1, g, dtype=torch.float64)
    env.reset(seed=0, options={"initial_state": s[0].numpy(), "target": target[0].numpy()})
    for t, a in enumerate(_actions(2, horizon, scale=1.4)):
        _, reward, terminated, truncated, info = env.step(a)
        clipped = np.clip(a, -1, 1)
        s = phys.step(s, scale * torch.as_tensor(clipped, dtype=torch.float64)[None])
        np.testing.assert_allclose(env.unwrapped.state.numpy(), s.numpy(), rtol=0, atol=1e-6)
        err = float(((s - target) ** 2).sum() / (target**2).sum())
        cost = float(np.mean(clipped.astype(np.float64) ** 2))
        assert info["target_error"] == pytest.approx(err, rel=1e-6)
        last = t == horizon - 1
        assert reward == pytest.approx(-penalty * cost - (err if last else 0.0), rel=1e-6)
        assert terminated is last and truncated is False
    with pytest.raises(RuntimeError, match="reset"):
        env.unwrapped.step(np.zeros(N, np.float32))


@pytest.mark.parametrize("kwargs", [
    {"nu": 0}, {"dt": -0.1}, {"n": 3}, {"substeps": 0}, {"horizon": 0}, {"force_scale": 0.0},
    {"force_penalty": -1.0}, {"force_amplitude": 0.0}, {"max_gain": 0.5},
    {"inverse_iterations": -1}, {"dtype": "float16"}, {"render_mode": "bogus"},
    {"advection": "weno"}, {"advection": "semi_lagrangian", "save_substeps": False},
    {"diffuse_every_substep": "no"},
])
def test_invalid_make_kwargs_raise(kwargs: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError):
            _make(**kwargs)


@pytest.mark.parametrize("kwargs", [
    {"advection": "semi_lagrangian"},
    {"advection": "semi_lagrangian", "substeps": 4},
    {"diffuse_every_substep": False},
    {"save_substeps": False},
])
def test_physics_options_reach_the_physics_and_the_targets(kwargs: dict[str, Any]) -> None:
    """The scheme keywords configure both the dynamics and the target simulation, and the env
    still passes the checker and reaches its targets under the generating force."""
    env = _make(dtype="float64", **kwargs)
    phys = env.unwrapped.core.physics
    for key, value in kwargs.items():
        assert getattr(phys, key) == value
    assert env.unwrapped.core.task_sampler.physics is phys
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        check_env(env.unwrapped)
    gen = torch.Generator().manual_seed(0)
    s0, target, force = env.unwrapped.core.task_sampler.with_forces(1, gen)
    env.reset(options={"initial_state": s0[0].numpy(), "target": target[0].numpy()})
    action = (force[0] / env.unwrapped.core.force_scale).numpy()
    for _ in range(env.unwrapped.core.horizon):
        _, _, terminated, _, info = env.step(action)
    assert terminated and info["target_error"] < 1e-6


def test_semi_lagrangian_is_a_different_task_and_never_warns_about_cfl() -> None:
    default, sl = _make(), _make(advection="semi_lagrangian")
    assert sl.unwrapped.core.physics.substeps == 1 and default.unwrapped.core.physics.substeps == 20
    assert not np.allclose(default.reset(seed=0)[0], sl.reset(seed=0)[0])  # targets differ
    fast = np.zeros(N)
    fast[10] = 8.0  # breaks the upwind CFL limit (see the next test); no limit here
    sl.reset(seed=0, options={"initial_state": fast})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        obs, *_ = sl.step(np.zeros(N, np.float32))
    assert np.isfinite(obs).all() and np.abs(obs[:N]).max() <= 8.0 + 1e-5


def test_unstable_initial_state_warns_once_with_the_cure() -> None:
    env = _make()
    fast = np.zeros(N)
    fast[10] = 8.0
    env.reset(seed=0, options={"initial_state": fast})
    with pytest.warns(RuntimeWarning, match="substeps"):
        env.step(np.zeros(N, np.float32))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env.step(np.zeros(N, np.float32))  # once per model: no repeat every step


# --- vector env ---------------------------------------------------------------------------------


# --- rendering and pickling -----------------------------------------------------------------------


@pytest.mark.slow
def test_minimum_norm_solutions_fit_in_the_box() -> None:
    """The documented force_scale: converged least-Σ‖F‖² controls (Gauss–Newton on the forces
    themselves, F ← Jᵀ(J Jᵀ)⁻¹(r + J F)) reach the target with |a| < 1."""
    from sipenv.physics.generic_inverse import linearize_rollout, solve_minimum_norm

    core = _make(dtype="float64").unwrapped.core
    s0, target, force = core.task_sampler.with_forces(16, torch.Generator().manual_seed(2024))
    forces = torch.zeros(core.horizon, 16, N, dtype=torch.float64)
    for k in range(12):
        states, _, jac = linearize_rollout(core.physics.step, s0, forces)
        rhs = target - states[-1] + jac.jvp(forces)
        new = solve_minimum_norm(jac, rhs, iterations=48, tol=1e-10).correction
        forces = forces + 0.7 * (new - forces) if k < 3 else new
    states, _, _ = linearize_rollout(core.physics.step, s0, forces)
    err = (states[-1] - target).norm(dim=-1) / target.norm(dim=-1)
    assert float(err.max()) < 1e-3
    peak = forces.abs().amax(dim=(0, 2)) / core.force_scale
    assert float(peak.max()) < 1.0
    assert 0.3 < float(peak.median()) < 0.65
    cost, generating = forces.pow(2).sum(dim=(0, 2)), core.horizon * force.pow(2).sum(-1)
    assert bool((cost <= generating * (1 + 1e-6)).all())


# --- sip/CorrectedBurgers-v0 --------------------------------------------------------------------

CORR_ID = "sip/CorrectedBurgers-v0"
NC = 32


def test_corrected_burgers_is_stable_and_its_models_agree() -> None:
    from sipenv.envs.corrected_burgers import CorrectedBurgersEnv

    env = gym.make(CORR_ID)
    assert isinstance(env.unwrapped, CorrectedBurgersEnv)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (NC,), np.float32)
    assert env.observation_space.shape == (NC + 1,)
    # The documented stability argument: no correction in the box breaks the coarse CFL limit.
    core = env.unwrapped.core
    bound = 3.0 + core.horizon * core.physics.dt * core.force_scale
    assert bound < core.physics.max_stable_speed
    assert core.reference.dt * core.fine_steps == pytest.approx(core.physics.dt)


def test_corrected_burgers_rewards_follow_the_reference() -> None:
    """Reward = − relative squared deviation from the down-sampled fine solution, every step;
    the exact corrections (force_for onto the reference) give zero deviation."""
    env = gym.make(CORR_ID, dtype="float64", force_penalty=0.1)
    core = env.unwrapped.core
    fine = core.reference.sample_initial_states(1, torch.Generator().manual_seed(3),
                                                dtype=torch.float64)[0]
    obs, info = env.reset(seed=0, options={"initial_state": fine.numpy()})
    reference = core.reference_trajectory(fine[None])
    np.testing.assert_allclose(obs[:NC], reference[0, 0].numpy().astype(np.float32))
    assert obs[-1] == 0.0 and info["target_error"] == 0.0
    state = reference[:, 0]
    for t in range(core.horizon):
        exact = core.physics.force_for(state, reference[:, t + 1]) / core.force_scale
        assert float(exact.abs().max()) <= 1.0
        obs, reward, terminated, truncated, info = env.step(exact[0].numpy())
        state = env.unwrapped.state
        assert info["target_error"] < 1e-20
        cost = float((exact**2).mean())
        assert reward == pytest.approx(-0.1 * cost - info["target_error"], rel=1e-9)
        assert terminated is (t == core.horizon - 1) and truncated is False
    # Without corrections the coarse solution drifts off the reference.
    env.reset(options={"initial_state": fine.numpy()})
    total = 0.0
    for _ in range(core.horizon):
        _, reward, *_ = env.step(np.zeros(NC, np.float32))
        total += reward
    assert total < -1e-3


@pytest.mark.parametrize("kwargs", [
    {"fine_n": 100}, {"fine_dt": 0.04}, {"horizon": 0}, {"force_scale": 0.0},
    {"force_penalty": -1.0}, {"n": 3}, {"substeps": 0}, {"render_mode": "bogus"},
])
def test_corrected_burgers_invalid_kwargs_raise(kwargs: dict[str, Any]) -> None:
    assert_make_refuses(CORR_ID, kwargs)


def test_corrected_burgers_routes_fine_keywords_to_the_reference() -> None:
    """Unprefixed physics keywords configure the coarse model (length, nu and check_cfl also the
    fine one); fine_* keywords the fine reference; the defaults are the documented ones."""
    core = core_of(gym.make(CORR_ID))
    coarse, fine = core.physics, core.reference
    assert (coarse.n, coarse.dt, coarse.substeps, coarse.nu) == (32, 0.06, 21, 0.003)
    assert (fine.n, fine.dt, fine.substeps, fine.nu) == (128, 0.03, 20, 0.003)
    assert (core.horizon, core.force_scale, core.force_penalty) == (16, 8.0, 0.0)
    core = core_of(gym.make(CORR_ID, n=16, fine_n=64, fine_dt=0.02, fine_substeps=7, nu=0.01,
                            length=2.0, fine_advection="semi_lagrangian", check_cfl=False))
    coarse, fine = core.physics, core.reference
    assert (coarse.n, coarse.nu, coarse.length, coarse.check_cfl) == (16, 0.01, 2.0, False)
    assert (fine.n, fine.dt, fine.substeps, fine.advection) == (64, 0.02, 7, "semi_lagrangian")
    assert (fine.nu, fine.length, fine.check_cfl) == (0.01, 2.0, False)
    assert coarse.advection == "upwind"
    with pytest.raises(TypeError, match="unexpected keyword argument 'fine_nu'; accepted: "):
        gym.make(CORR_ID, fine_nu=0.1)


@pytest.mark.parametrize(("env_id", "kwargs"), [
    (ENV_ID, {"n": 1024, "horizon": 4}), (ENV_ID, {"n": 256, "dt": 0.1, "horizon": 4}),
    (ENV_ID, {"force_scale": 6.0, "horizon": 8, "n": 64}),
    ("sip/CorrectedBurgers-v0", {"n": 64, "fine_n": 256, "horizon": 3}),
    ("sip/CorrectedBurgers-v0", {"force_scale": 20.0, "horizon": 4}),
])
def test_other_settings_choose_stable_substeps_without_warnings(env_id: str,
                                                                 kwargs: dict[str, Any]) -> None:
    """Issue 13: ``n=1024`` used to warn about CFL 2.5 while drawing tasks. The sub-steps now
    follow the settings, so drawing tasks and the largest actions stay below the CFL limit."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        env = gym.make(env_id, **kwargs)
        core = core_of(env)
        bound = 3 + core.horizon * core.physics.dt * core.force_scale
        assert core.physics.max_stable_speed >= bound
        env.reset(seed=0)
        sign = np.where(np.arange(core.n) < core.n // 2, 1.0, -1.0)
        for _ in range(core.horizon):  # the largest forces, pushing apart
            env.step(sign)


def test_default_substeps_are_the_committed_ones_and_overrides_win() -> None:
    assert core_of(gym.make(ENV_ID)).physics.n_substeps == 20
    corrected = core_of(gym.make("sip/CorrectedBurgers-v0"))
    assert (corrected.physics.n_substeps, corrected.reference.n_substeps) == (21, 20)
    assert core_of(gym.make(ENV_ID, n=1024, substeps=7)).physics.n_substeps == 7
    assert core_of(gym.make(ENV_ID, max_speed=10.0)).physics.n_substeps == 39
    assert core_of(gym.make("sip/CorrectedBurgers-v0", substeps=30)).physics.n_substeps == 30
    with pytest.raises(ValueError, match="horizon"):
        gym.make(ENV_ID, horizon="3")  # a bad setting is named, not a TypeError in the bound

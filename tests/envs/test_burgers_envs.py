"""``sip/ControlledBurgers-v0`` (single and native vector env) through the Gymnasium API."""

from __future__ import annotations

import pickle
import re
import warnings
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import sipenv
from sipenv.envs.controlled_burgers import ControlledBurgersEnv, ControlledBurgersVectorEnv
from sipenv.physics import BurgersPhysics

ENV_ID = "sip/ControlledBurgers-v0"
N = 128

ALLOWED_CHECK_ENV_WARNINGS = (
    r"A Box observation space minimum value is -infinity",
    r"A Box observation space maximum value is infinity",
)


def _make(**kwargs: Any) -> gym.Env:
    return gym.make(ENV_ID, **kwargs)


def _make_vec(num_envs: int, **kwargs: Any) -> gym.vector.VectorEnv:
    return gym.make_vec(ENV_ID, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **kwargs)


def _actions(seed: int, steps: int, shape: tuple[int, ...] = (N,),
             scale: float = 1.0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-scale, scale, (steps, *shape)).astype(np.float32)


# --- registration, spaces and the Gymnasium checker ---------------------------------------------


def test_registered_with_both_entry_points() -> None:
    assert ENV_ID in sipenv.ENV_IDS
    spec = gym.spec(ENV_ID)
    assert spec.namespace == "sip" and spec.version == 0
    env = _make()
    assert isinstance(env.unwrapped, ControlledBurgersEnv)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (N,), np.float32)
    assert env.observation_space.shape == (2 * N + 1,)
    assert env.observation_space.dtype == np.float32
    assert set(env.metadata["render_modes"]) == {"human", "rgb_array"}
    assert isinstance(_make_vec(2).unwrapped, ControlledBurgersVectorEnv)


def test_check_env_passes_with_only_allowed_warnings() -> None:
    env = _make()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    unexpected = [str(w.message) for w in caught
                  if not any(re.search(p, str(w.message)) for p in ALLOWED_CHECK_ENV_WARNINGS)]
    assert not unexpected, f"check_env emitted unexpected warnings: {unexpected}"


def test_env_exposes_its_core_with_the_reference_settings() -> None:
    core = _make().unwrapped.core
    phys = core.physics
    assert isinstance(phys, BurgersPhysics)
    assert (phys.n, phys.nu, phys.dt, phys.length, core.horizon) == (128, 0.003, 0.03, 1.0, 32)
    assert core.force_scale == 2.0 and core.task_sampler is not None
    # The documented stability argument: no action in the box can break the CFL condition.
    assert 3.0 + core.horizon * phys.dt * core.force_scale < phys.max_stable_speed


# --- seeding and tasks ----------------------------------------------------------------------------


def test_seeded_determinism_and_seedless_resets_follow_the_stream() -> None:
    actions = _actions(0, 4)

    def episode(env: gym.Env, seed: int) -> list[np.ndarray]:
        obs = [env.reset(seed=seed)[0], env.reset()[0]]
        for a in actions:
            obs.append(env.step(a)[0])
        return obs

    a, b, c = episode(_make(), 3), episode(_make(), 3), episode(_make(), 4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])
    assert not np.array_equal(a[0], a[1])


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


@pytest.mark.parametrize("options,match", [
    ({"initial_state": np.zeros(N + 1)}, r"shape \(128,\)"),
    ({"target": np.zeros(N)}, "zero"),
    ({"target": np.full(N, np.nan)}, "NaN"),
    ({"bogus": 1}, "Unknown reset options"),
])
def test_bad_reset_options_raise(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _make().reset(seed=0, options=options)


@pytest.mark.parametrize("action,match", [
    (np.zeros(N - 1, np.float32), r"shape \(128,\)"),
    (np.r_[np.zeros(N - 1), np.nan], "NaN"),
    ("push", "numeric"),
])
def test_bad_actions_raise_and_leave_the_state_unchanged(action: Any, match: str) -> None:
    env = _make()
    env.reset(seed=0)
    inner = env.unwrapped
    state = inner.state.clone()
    with pytest.raises(ValueError, match=match):
        inner.step(action)
    assert torch.equal(inner.state, state) and inner.t == 0


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


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_vector_env_equals_single_envs(dtype: str) -> None:
    num_envs, horizon = 3, 3
    kwargs = {"horizon": horizon, "dtype": dtype, "force_penalty": 0.1}
    envs = _make_vec(num_envs, **kwargs)
    singles = [_make(**kwargs) for _ in range(num_envs)]
    obs, info = envs.reset(seed=11)
    s0 = envs.unwrapped.state.cpu().numpy()
    target = envs.unwrapped.target.cpu().numpy()
    for i, env in enumerate(singles):
        o, _ = env.reset(options={"initial_state": s0[i], "target": target[i]})
        np.testing.assert_allclose(obs[i], o, rtol=1e-6, atol=1e-6)
    actions = _actions(3, horizon, (num_envs, N), scale=1.2)
    for t in range(horizon):
        obs, reward, terminated, truncated, info = envs.step(actions[t])
        for i, env in enumerate(singles):
            o, r, term, trunc, inf = env.step(actions[t, i])
            np.testing.assert_allclose(obs[i], o, rtol=1e-5, atol=1e-5)
            assert reward[i] == pytest.approx(r, rel=1e-5, abs=1e-8)
            assert terminated[i] == term and truncated[i] == trunc
            assert info["target_error"][i] == pytest.approx(inf["target_error"], rel=1e-5)
    assert terminated.all()
    # NEXT_STEP autoreset: the next step starts fresh tasks with zero reward.
    obs, reward, terminated, _, _ = envs.step(actions[0])
    assert not terminated.any() and (reward == 0).all() and (obs[:, -1] == 0).all()


def test_vector_env_seeded_determinism() -> None:
    a, b = _make_vec(2), _make_vec(2)
    oa, _ = a.reset(seed=5)
    ob, _ = b.reset(seed=5)
    np.testing.assert_array_equal(oa, ob)
    act = _actions(4, 1, (2, N))[0]
    np.testing.assert_array_equal(a.step(act)[0], b.step(act)[0])


# --- rendering and pickling -----------------------------------------------------------------------


def test_rgb_array_frames_single_and_vector() -> None:
    env = _make(render_mode="rgb_array")
    env.reset(seed=0)
    env.step(np.full(N, 0.5, np.float32))
    frame = env.render()
    assert frame.shape == (440, 640, 3) and frame.dtype == np.uint8
    envs = _make_vec(2, render_mode="rgb_array")
    envs.reset(seed=0)
    frames = envs.render()
    assert len(frames) == 2 and all(f.shape == (440, 640, 3) for f in frames)


def test_pickle_round_trip_mid_episode() -> None:
    env = _make()
    env.reset(seed=9)
    actions = _actions(5, 4)
    env.step(actions[0])
    clone = pickle.loads(pickle.dumps(env.unwrapped))
    for a in actions[1:]:
        np.testing.assert_array_equal(env.unwrapped.step(a)[0], clone.step(a)[0])
    np.testing.assert_array_equal(env.unwrapped.reset()[0], clone.reset()[0])


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


def test_corrected_burgers_is_registered_and_passes_check_env() -> None:
    from sipenv.envs.corrected_burgers import CorrectedBurgersEnv, CorrectedBurgersVectorEnv

    assert CORR_ID in sipenv.ENV_IDS
    env = gym.make(CORR_ID)
    assert isinstance(env.unwrapped, CorrectedBurgersEnv)
    assert env.action_space == gym.spaces.Box(-1.0, 1.0, (NC,), np.float32)
    assert env.observation_space.shape == (NC + 1,)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        check_env(env.unwrapped)
    unexpected = [str(w.message) for w in caught
                  if not any(re.search(p, str(w.message)) for p in ALLOWED_CHECK_ENV_WARNINGS)]
    assert not unexpected, unexpected
    envs = gym.make_vec(CORR_ID, num_envs=2, vectorization_mode="vector_entry_point")
    assert isinstance(envs.unwrapped, CorrectedBurgersVectorEnv)
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


def test_corrected_burgers_vector_env_equals_single_envs_and_autoresets() -> None:
    num_envs = 3
    kwargs = {"horizon": 3}
    envs = gym.make_vec(CORR_ID, num_envs=num_envs, vectorization_mode="vector_entry_point",
                        **kwargs)
    fine = BurgersPhysics().sample_initial_states(num_envs, torch.Generator().manual_seed(4),
                                                  dtype=torch.float64).numpy()
    obs, _ = envs.reset(seed=0, options={"initial_state": fine})
    singles = [gym.make(CORR_ID, **kwargs) for _ in range(num_envs)]
    for i, env in enumerate(singles):
        np.testing.assert_allclose(env.reset(options={"initial_state": fine[i]})[0], obs[i],
                                   rtol=1e-6, atol=1e-6)
    actions = _actions(6, 3, (num_envs, NC), scale=1.2)
    for t in range(3):
        obs, reward, terminated, _, info = envs.step(actions[t])
        for i, env in enumerate(singles):
            o, r, term, _, inf = env.step(actions[t, i])
            # float32 physics: a batched and a single-sample FFT may round differently (torch's
            # CPU FFT splits work by thread count), ≈ 10 ulp of the O(1) field after 3 steps.
            np.testing.assert_allclose(obs[i], o, rtol=1e-5, atol=1e-5)
            assert reward[i] == pytest.approx(r, rel=1e-4, abs=1e-9)
            assert terminated[i] == term
            assert info["target_error"][i] == pytest.approx(inf["target_error"], rel=1e-4,
                                                            abs=1e-9)
    assert terminated.all()
    obs, reward, terminated, _, info = envs.step(actions[0])
    assert (reward == 0).all() and not terminated.any() and (obs[:, -1] == 0).all()
    assert (info["target_error"] == 0).all()  # fresh episodes start on their reference
    frames = gym.make_vec(CORR_ID, num_envs=2, vectorization_mode="vector_entry_point",
                          render_mode="rgb_array")
    frames.reset(seed=1)
    assert all(f.shape == (440, 640, 3) for f in frames.render())


def test_corrected_burgers_vector_env_takes_torch_actions_like_numpy() -> None:
    """The correction shell shares the control shell's stepping (FieldVectorEnv): tensors are
    accepted, validated and clipped exactly like numpy actions."""
    actions = _actions(8, 4, (2, NC), scale=2.0)
    a, b = (gym.make_vec(CORR_ID, num_envs=2, vectorization_mode="vector_entry_point",
                         horizon=3) for _ in range(2))
    a.reset(seed=2)
    b.reset(seed=2)
    for act in actions:  # 4 steps of a 3-step horizon: includes an autoreset
        out_np, out_torch = a.step(act), b.step(torch.from_numpy(act))
        for x, y in zip(out_np[:4], out_torch[:4], strict=True):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="NaN"):
        b.step(torch.full((2, NC), float("nan")))
    with pytest.raises(ValueError, match="shape"):
        b.step(torch.zeros(3, NC))


def test_corrected_burgers_seeding_pickling_rendering_and_bad_input() -> None:
    a, b = gym.make(CORR_ID), gym.make(CORR_ID, render_mode="rgb_array")
    np.testing.assert_array_equal(a.reset(seed=8)[0], b.reset(seed=8)[0])
    act = _actions(7, 2, (NC,))
    np.testing.assert_array_equal(a.step(act[0])[0], b.step(act[0])[0])
    assert b.render().shape == (440, 640, 3)
    clone = pickle.loads(pickle.dumps(a.unwrapped))
    np.testing.assert_array_equal(a.unwrapped.step(act[1])[0], clone.step(act[1])[0])
    inner = a.unwrapped
    with pytest.raises(ValueError, match=r"shape \(32,\)"):
        inner.step(np.zeros(NC + 1))
    with pytest.raises(ValueError, match="NaN"):
        inner.step(np.full(NC, np.nan))
    with pytest.raises(ValueError, match=r"shape \(128,\)"):
        a.reset(options={"initial_state": np.zeros(NC)})
    with pytest.raises(ValueError, match="Unknown reset options"):
        a.reset(options={"target": np.zeros(128)})


@pytest.mark.parametrize("kwargs", [
    {"fine_n": 100}, {"fine_dt": 0.04}, {"horizon": 0}, {"force_scale": 0.0},
    {"force_penalty": -1.0}, {"n": 3}, {"substeps": 0}, {"render_mode": "bogus"},
])
def test_corrected_burgers_invalid_kwargs_raise(kwargs: dict[str, Any]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError):
            gym.make(CORR_ID, **kwargs)

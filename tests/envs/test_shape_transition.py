"""What is specific to ``sip/ShapeTransition-v0`` (the API contract is checked by
``test_conformance.py``): spaces, the flat option, the coarse control grid and the actuation
mask, reset options, rewards and infos on posed tasks, the frames, the task sampler, the
measured force scale, and that the core is the physics a SIP/DP agent differentiates."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from env_support import record_shown_frames
from script_loading import load_script

import sipenv  # noqa: F401  (registers the ids)
from sipenv.envs.core import core_of
from sipenv.envs.rendering_2d import FRAME_SHAPE
from sipenv.envs.shape_transition import ShapeTransitionCore, actuation_mask, make_core
from sipenv.physics.shapes import SHAPE_KINDS

ENV_ID = "sip/ShapeTransition-v0"
SMALL = {"shape": (32, 32), "horizon": 4}


def make(**kwargs: Any) -> gym.Env[Any, Any]:
    return gym.make(ENV_ID, **{**SMALL, **kwargs})


def square(n: int, centre: tuple[int, int], half: int) -> np.ndarray:
    y, x = np.mgrid[:n, :n]
    return ((abs(y - centre[0]) <= half) & (abs(x - centre[1]) <= half)).astype(np.float64)


def core(**kwargs: Any) -> ShapeTransitionCore:
    return make_core(**{**SMALL, **kwargs})


# --- spaces and observations ---------------------------------------------------------------------


def test_default_spaces_follow_the_published_setting() -> None:
    env = gym.make(ENV_ID)
    c = core_of(env, ShapeTransitionCore)
    assert c.physics.shape == (64, 64) and c.horizon == 16 and c.physics.dt == 1.0
    assert env.action_space == gym.spaces.Box(-1, 1, (2, 64, 64), np.float32)
    assert env.observation_space.shape == (5, 64, 64)
    assert env.observation_space.dtype == np.float32
    assert len(SHAPE_KINDS) >= 10


def test_spatial_observation_channels() -> None:
    env = make()
    obs, _ = env.reset(seed=0)
    inner = env.unwrapped
    state, target = inner.state[0].numpy(), inner.target[0].numpy()
    np.testing.assert_array_equal(obs[0], state[2])  # marker
    np.testing.assert_array_equal(obs[1:3], state[:2])  # velocity [u_y, u_x]
    np.testing.assert_array_equal(obs[3], target)  # target marker
    np.testing.assert_array_equal(obs[4], 0.0)  # t / T
    obs, *_ = env.step(env.action_space.sample())
    np.testing.assert_array_equal(obs[4], 0.25)


def test_flat_observation_is_the_spatial_one_flattened_plus_the_time() -> None:
    spatial, flat = make(), make(flat_observation=True)
    assert flat.observation_space.shape == (4 * 32 * 32 + 1,)
    action = spatial.action_space.sample()
    for env in (spatial, flat):
        env.reset(seed=3)
    a, b = spatial.step(action)[0], flat.step(action)[0]
    np.testing.assert_array_equal(b[:-1], a[:4].ravel())
    assert b[-1] == pytest.approx(0.25)
    assert core_of(flat).obs_dim == 4 * 32 * 32 + 1


# --- the control grid and the actuation mask -----------------------------------------------------


def test_coarse_control_grid_upsamples_bilinearly() -> None:
    env = make(control_resolution=(8, 8))
    assert env.action_space.shape == (2, 8, 8)
    c = core_of(env, ShapeTransitionCore)
    constant = torch.full((1, 2, 8, 8), 0.5)
    torch.testing.assert_close(c.action_to_force(constant), torch.full((1, 2, 32, 32), 0.5))
    delta = torch.zeros(1, 2, 8, 8)
    delta[0, 1, 2, 3] = 1.0  # coarse sample (2, 3) sits on fine cell (8, 12)
    up = c.upsample(delta)[0, 1]
    assert up[8, 12] == pytest.approx(1.0) and up[10, 12] == pytest.approx(0.5)
    assert up[10, 14] == pytest.approx(0.25) and up[12, 12] == 0.0
    assert float(up.sum()) == pytest.approx(16.0)  # a hat of 4×4 fine cells per coarse cell
    env.reset(seed=0)
    obs, *_ = env.step(np.ones((2, 8, 8), dtype=np.float32))
    assert obs[1:3].mean() == pytest.approx(c.force_scale, rel=1e-5)  # uniform push


def test_forces_outside_the_actuated_region_are_zero() -> None:
    for region in ("bottom", "sides", "border"):
        c = core(actuation=region, actuation_width=5)
        mask = torch.from_numpy(actuation_mask(region, (32, 32), 5).copy())
        force = c.action_to_force(torch.ones(2, 2, 32, 32))
        assert bool((force[..., ~mask] == 0).all()) and bool((force[..., mask] == 1).all())
        # only the applied force costs
        assert float(c.force_cost(torch.ones(1, 2, 32, 32))) == pytest.approx(
            float(mask.double().mean()))
    assert actuation_mask("bottom", (32, 32), 5)[:5].all()
    assert not actuation_mask("bottom", (32, 32), 5)[5:].any()
    sides = actuation_mask("sides", (32, 32), 5)
    assert sides[:, :5].all() and sides[:, -5:].all() and not sides[:, 5:-5].any()


def test_a_masked_force_still_moves_the_fluid_elsewhere() -> None:
    """Indirect control: the pressure spreads a force in the bottom rows over the box."""
    env = make(actuation="bottom", actuation_width=4)
    env.reset(seed=0)
    push = np.zeros((2, 32, 32), dtype=np.float32)
    push[1] = 1.0
    push[1, :, 16:] = -1.0  # a shear in the bottom strip: not a pure gradient
    obs, *_ = env.step(push)
    assert np.abs(obs[1:3, 12:]).max() > 1e-3


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"control_resolution": (64, 8)}, "control_resolution"),
    ({"control_resolution": 8}, "control_resolution"),
    ({"actuation": "top"}, "actuation"),
    ({"actuation_width": 0}, "actuation_width"),
    ({"kinds": ("circle", "blob")}, "kind"),
    ({"kinds": "circle"}, "kinds"),
    ({"size_range": (0.3, 0.2)}, "size_range"),
    ({"initial_speed": -1.0}, "initial_speed"),
    ({"flat_observation": "yes"}, "flat_observation"),
])
def test_bad_settings_raise_value_error(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make(**kwargs)


def test_the_marker_count_is_not_a_keyword() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'markers'"):
        make(markers=2)


# --- reset options, rewards and infos ------------------------------------------------------------


def test_reset_options_pose_the_task_and_velocities_are_projected() -> None:
    env = make()
    c = core_of(env, ShapeTransitionCore)
    m0, m1 = square(32, (10, 10), 3), square(32, (20, 20), 3)
    u = np.random.default_rng(0).normal(size=(2, 32, 32))
    obs, info = env.reset(seed=0, options={"initial_marker": m0, "target_marker": m1,
                                           "initial_velocity": u})
    np.testing.assert_array_equal(obs[0], m0)
    np.testing.assert_array_equal(obs[3], m1)
    velocity = torch.from_numpy(obs[1:3][None].astype(np.float64))
    assert float(c.physics.divergence(velocity).abs().max()) < 1e-5
    torch.testing.assert_close(velocity, c.physics.project(torch.from_numpy(u)[None]),
                               rtol=1e-5, atol=1e-5)
    assert info["target_error"] == pytest.approx(2.0)
    assert set(info) == {"target_error", "force_cost", "frequency_l1"}
    with pytest.raises(ValueError, match="identically zero"):
        env.reset(options={"target_marker": np.zeros((32, 32))})
    with pytest.raises(ValueError, match="shape"):
        env.reset(options={"initial_velocity": np.zeros((32, 32))})


def test_rewards_and_infos_on_a_posed_task() -> None:
    env = make(force_penalty=0.01)
    m = square(32, (16, 16), 4)
    obs, info = env.reset(seed=0, options={"initial_marker": m, "target_marker": m + 0.1})
    # a uniform difference c: only the k = 0 mode, weight 1 → frequency L1 = |c|
    assert info["frequency_l1"] == pytest.approx(0.1, rel=1e-5)
    assert info["force_cost"] == 0.0
    action = np.zeros((2, 32, 32), dtype=np.float32)
    action[0] = 1.0  # a uniform push along y: the square moves one cell per step
    rewards = []
    for t in range(4):
        obs, reward, terminated, _, info = env.step(action if t == 0 else 0 * action)
        rewards.append(reward)
        assert terminated == (t == 3)
    assert info["force_cost"] == 0.0
    assert rewards[0] == pytest.approx(-0.01 * 0.5)  # mean over both components: 1 / 2
    assert rewards[1] == rewards[2] == 0.0
    assert rewards[3] == pytest.approx(-info["target_error"])
    c = core_of(env, ShapeTransitionCore)
    state = env.unwrapped.state
    expected = float(((state[0, 2] - env.unwrapped.target[0]) ** 2).sum()
                     / (env.unwrapped.target[0] ** 2).sum())
    assert info["target_error"] == pytest.approx(expected, rel=1e-5)
    # the square moved one cell per step along +y (rows) for four steps (whole-cell shifts
    # are exact for semi-Lagrangian advection)
    np.testing.assert_allclose(obs[0], np.roll(m, 4, axis=0), atol=1e-5)
    assert c.force_scale == pytest.approx(float(obs[1].mean()), rel=1e-5)


def test_the_uncontrolled_marker_stays_put_and_the_error_is_relative() -> None:
    env = make()
    m = square(32, (8, 8), 3)
    env.reset(seed=0, options={"initial_marker": m, "target_marker": m})
    for _ in range(4):
        _, reward, *_, info = env.step(np.zeros((2, 32, 32), dtype=np.float32))
    assert reward == 0.0 and info["target_error"] == 0.0 and info["frequency_l1"] == 0.0


# --- the task sampler ----------------------------------------------------------------------------


def test_sampled_tasks_match_areas_and_start_at_rest() -> None:
    c = core()
    s0, target = c.sample_tasks(64, torch.Generator().manual_seed(0))
    assert s0.shape == (64, 3, 32, 32) and target.shape == (64, 32, 32)
    assert bool((s0[:, :2] == 0).all())
    mass0, mass1 = s0[:, 2].sum((-2, -1)), target.sum((-2, -1))
    ratio = mass1 / mass0
    assert float((ratio - 1).abs().median()) < 0.03 and float((ratio - 1).abs().max()) < 0.15
    unmatched = core(match_area=False).sample_tasks(64, torch.Generator().manual_seed(0))[1]
    assert float((unmatched.sum((-2, -1)) / mass0 - 1).abs().median()) > 0.1


def test_initial_speed_draws_a_divergence_free_velocity() -> None:
    c = core(initial_speed=0.5, kinds=("circle", "square"))
    s0, _ = c.sample_tasks(4, torch.Generator().manual_seed(1))
    u = s0[:, :2]
    rms = u.square().sum(1).mean((-2, -1)).sqrt()
    torch.testing.assert_close(rms, torch.full((4,), 0.5), rtol=1e-4, atol=1e-4)
    assert float(c.physics.divergence(u).abs().max()) < 1e-5


# --- the core agents differentiate through -------------------------------------------------------


def test_core_step_is_the_physics_step_with_the_scaled_force_and_is_differentiable() -> None:
    c = core(control_resolution=(16, 16), force_scale=0.7)
    phys = c.physics
    s0, target = c.sample_tasks(2, torch.Generator().manual_seed(2), dtype=torch.float64)
    a = torch.rand(2, 2, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    a = (2 * a - 1).requires_grad_()
    force = 0.7 * c.upsample(a)
    torch.testing.assert_close(c.step(s0, a), phys.step(s0, force))
    # the per-step inverse simulator recovers the applied force up to its gradient part
    s1 = c.step(s0, a)
    torch.testing.assert_close(phys.force_for(s0, s1), phys.project(force), rtol=1e-6,
                               atol=1e-8)
    # the terminal loss is differentiable w.r.t. the actions (what DP and SIP need)
    state = s0
    for _ in range(c.horizon):
        state = c.step(state, a)
    c.target_error(state, target).sum().backward()
    assert a.grad is not None and bool(torch.isfinite(a.grad).all()) and float(
        a.grad.abs().max()) > 0


# --- rendering -----------------------------------------------------------------------------------


def _count(frame: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int((frame == np.array(colour, dtype=np.uint8)).all(-1).sum())


def test_frames_show_the_target_outline_the_force_and_the_mask() -> None:
    env = make(render_mode="rgb_array", actuation="border", actuation_width=4)
    m0, m1 = square(32, (10, 10), 4), square(32, (20, 22), 4)
    env.reset(seed=0, options={"initial_marker": m0, "target_marker": m1})
    first = env.render()
    assert first.shape == FRAME_SHAPE and first.dtype == np.uint8
    assert _count(first, (0, 230, 255)) > 50  # the target's outline (cyan)
    assert _count(first, (255, 140, 0)) > 50  # the actuated region (orange)
    force_panel = (slice(70, 262), slice(432, 624))
    assert _count(first[force_panel], (200, 200, 200)) > 10_000  # blank: no force yet
    env.step(np.ones((2, 32, 32), dtype=np.float32))
    after = env.render()
    assert _count(after[force_panel], (200, 200, 200)) == 0
    assert np.any(after != first)
    full = make(render_mode="rgb_array")
    full.reset(seed=0)
    assert _count(full.render(), (255, 140, 0)) == 0  # the whole box is actuated: no outline


def test_vector_frames_match_single_frames() -> None:
    envs = gym.make_vec(ENV_ID, num_envs=2, vectorization_mode="vector_entry_point",
                        render_mode="rgb_array", **SMALL)
    env = make(render_mode="rgb_array")
    m0, m1 = square(32, (10, 10), 4), square(32, (20, 22), 4)
    envs.reset(seed=0, options={"initial_marker": np.stack([m0, m0]),
                                "target_marker": np.stack([m1, m1])})
    env.reset(seed=0, options={"initial_marker": m0, "target_marker": m1})
    action = np.full((2, 32, 32), 0.3, dtype=np.float32)
    envs.step(np.stack([action, action]))
    env.step(action)
    np.testing.assert_array_equal(envs.render()[0], env.render())


# --- the force scale -----------------------------------------------------------------------------


def test_force_scale_measurement_runs() -> None:
    measure = load_script("scripts/measure_shape_force_scale.py").measure
    out = measure(tasks=2, iterations=3, size=16)
    p = out["percentiles"]
    assert 0 < p["50"] <= p["99"] <= p["max"] and out["error_after"] < out["error_before"]


@pytest.mark.slow
def test_measured_forces_fit_in_the_action_box() -> None:
    """The documented claim (``scripts/measure_shape_force_scale.py`` at its defaults)."""
    measure = load_script("scripts/measure_shape_force_scale.py").measure
    out = measure()
    scale = make_core().force_scale
    assert out["percentiles"]["99"] <= 0.6 * scale
    assert out["percentiles"]["99.9"] <= scale
    assert out["error_after"] < 0.1 < out["error_before"]  # the tasks are solved …
    assert out["error_clipped"] <= 1.05 * out["error_after"]  # … and the box does not hurt


def test_human_mode_shows_every_frame_headless(monkeypatch: pytest.MonkeyPatch) -> None:
    shown = record_shown_frames(monkeypatch)
    env = make(render_mode="human", shape=(16, 16), horizon=2)
    env.reset(seed=0)
    for _ in range(2):
        env.step(env.action_space.sample())
    assert len(shown) == 3 and all(f.shape == FRAME_SHAPE for f in shown)
    env.close()


def test_frames_survive_extreme_values() -> None:
    from sipenv.envs.rendering_2d import draw_flow_frame

    n = 16
    marker = np.r_[np.full((n // 2, n), np.nan), np.full((n // 2, n), np.inf)]
    velocity = np.stack([np.full((n, n), 1e300), np.linspace(-1e30, 1e30, n * n).reshape(n, n)])
    velocity[1, 0] = -np.inf
    force = np.full((2, n, n), -1e200)
    for f, mask in ((force, None), (None, np.eye(n, dtype=bool)), (np.zeros((2, n, n)), None)):
        frame = draw_flow_frame(marker, velocity, np.ones((n, n)), f, step=1, horizon=2,
                                force_limit=1.0, mask=mask, target_error=float("inf"),
                                frequency_l1=float("nan"), title="t")
        assert frame.shape == FRAME_SHAPE and frame.dtype == np.uint8

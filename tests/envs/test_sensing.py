"""Sensors, actuators and noise on the field envs (``sipenv.envs.sensing``) and the noise
wrappers (``sipenv.wrappers``): shapes and spaces for every option, what the sensors read and
the actuators apply, reproducible noise, and clear errors. (The Gymnasium contract with the
options set is the conformance suite's, on ``env_support.SENSED_VARIANTS``.)"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from env_support import make, make_vec

from sipenv.envs.core import core_of
from sipenv.envs.sensing import Sensing, lattice
from sipenv.wrappers import ActionNoise, SensorNoise

DIFFUSION, BURGERS = "sip/ControlledDiffusion-v0", "sip/ControlledBurgers-v0"
CORRECTED, SHAPES = "sip/CorrectedBurgers-v0", "sip/ShapeTransition-v0"

# (env id, options, observation shape, action shape) on the small envs of env_support
CASES: list[tuple[str, dict[str, Any], tuple[int, ...], tuple[int, ...]]] = [
    (DIFFUSION, {}, (33,), (16,)),
    (DIFFUSION, {"sensors": 5}, (5 + 16 + 1,), (16,)),
    (DIFFUSION, {"sensors": 5, "target_observation": "sensors"}, (11,), (16,)),
    (DIFFUSION, {"sensors": [0.0, 0.5], "actuators": 3}, (2 + 16 + 1,), (3,)),
    (DIFFUSION, {"actuators": np.eye(16)[:, :4].tolist()}, (33,), (4,)),
    (BURGERS, {"sensors": 10, "actuators": 8, "sensor_noise": 0.1}, (10 + 32 + 1,), (8,)),
    (CORRECTED, {"sensors": 4, "actuators": 2, "actuator_noise": 0.1}, (5,), (2,)),
    (SHAPES, {"sensors": 6}, (3 * 6 + 256 + 1,), (2, 16, 16)),
    (SHAPES, {"sensors": [(0.5, 0.5)], "target_observation": "sensors", "actuators": 4},
     (5,), (2, 4)),
    (SHAPES, {"actuators": 4, "sensor_noise": 0.1}, (5, 16, 16), (2, 4)),
]


@pytest.mark.parametrize(("env_id", "options", "obs_shape", "act_shape"), CASES)
def test_spaces_and_steps_for_every_option(env_id: str, options: dict[str, Any],
                                           obs_shape: tuple[int, ...],
                                           act_shape: tuple[int, ...]) -> None:
    env, envs = make(env_id, **options), make_vec(env_id, num_envs=2, **options)
    assert env.observation_space.shape == obs_shape and env.action_space.shape == act_shape
    assert envs.single_action_space == env.action_space
    core = core_of(env)
    assert core.observation_shape == obs_shape and core.action_shape == act_shape
    assert core.sensor_noise_mask.shape == obs_shape
    obs, _ = env.reset(seed=0)
    assert obs in env.observation_space
    obs, *_ = env.step(env.action_space.sample())
    assert obs.shape == obs_shape
    obs, _ = envs.reset(seed=0)
    assert envs.step(envs.action_space.sample())[0].shape == (2, *obs_shape)


def test_sensors_read_the_state_at_their_cells_and_the_target_in_full_or_sensed() -> None:
    env = make(DIFFUSION, sensors=[0.0, 0.26, 0.5])
    obs, _ = env.reset(seed=1)
    state, target = env.unwrapped.state[0].numpy(), env.unwrapped.target[0].numpy()
    cells = core_of(env).sensing.sensor_cells((16,))
    np.testing.assert_array_equal(cells, [0, 4, 8])  # round(p · 16): the nearest grid point
    np.testing.assert_array_equal(obs[:3], state[cells])
    np.testing.assert_array_equal(obs[3:19], target)
    sensed = make(DIFFUSION, sensors=4, target_observation="sensors")
    obs, _ = sensed.reset(seed=1)
    cells = core_of(sensed).sensing.sensor_cells((16,))
    np.testing.assert_array_equal(cells, [2, 6, 10, 14])  # (j + ½)/K
    np.testing.assert_array_equal(obs[4:8], sensed.unwrapped.target[0].numpy()[cells])
    assert obs[-1] == 0.0


def test_actuators_apply_the_basis_times_the_clipped_action() -> None:
    env = make(DIFFUSION, actuators=4, force_penalty=0.0)
    core = core_of(env)
    basis = core.sensing.basis((16,))
    assert basis.shape == (16, 4)
    # Unit-peak Gaussian bumps centred at (j + ½)/4 (cells 2, 6, 10, 14), σ = 1/8 of the domain.
    np.testing.assert_allclose(basis[[2, 6, 10, 14], range(4)].numpy(), 1.0)
    np.testing.assert_allclose(basis[4, 0].item(), np.exp(-0.5 * (2 / 16 / 0.125) ** 2))
    action = torch.tensor([[2.0, -0.5, 0.25, 0.0]], dtype=torch.float64)
    force = core.action_to_force(action)
    clipped = action.clamp(-1, 1)
    np.testing.assert_allclose(force, core.force_scale * clipped @ basis.T, rtol=1e-12)
    # The least-squares inverse recovers the action of a force in the span of the basis.
    np.testing.assert_allclose(core.force_to_action(force), clipped, atol=1e-10)
    # The env steps the same physics.
    env.reset(seed=0)
    s0 = env.unwrapped.state.double()
    env.step(clipped[0].float().numpy())
    expected = core.physics.step(s0, force.to(s0.dtype))
    np.testing.assert_allclose(env.unwrapped.state.double(), expected, rtol=1e-5, atol=1e-6)


def test_two_dimensional_lattices_and_bumps() -> None:
    assert lattice(10, 2) == [((i + 0.5) / 2, (j + 0.5) / 5) for i in range(2) for j in range(5)]
    core = core_of(make(SHAPES, sensors=4, actuators=4))
    assert core.sensing.sensor_cells((16, 16)).tolist() == [4 * 16 + 4, 4 * 16 + 12,
                                                            12 * 16 + 4, 12 * 16 + 12]
    action = torch.zeros(1, 2, 4)
    action[0, 1, 0] = 1.0  # f_x of the first bump only
    force = core.action_to_force(action)[0]
    assert force[0].abs().max() == 0 and force[1, 4, 4] == core.force_scale  # its peak


@pytest.mark.parametrize("env_id", [DIFFUSION, CORRECTED, SHAPES])
def test_noise_is_reproducible_by_seed_and_only_on_the_state_readings(env_id: str) -> None:
    noisy = {"sensors": 4, "sensor_noise": 0.5, "actuator_noise": 0.5}

    def run(seed: int, **kwargs: Any) -> list[np.ndarray]:
        env = make(env_id, **kwargs)
        out = [env.reset(seed=seed)[0]]
        for action in [np.zeros(env.action_space.shape, np.float32)] * 2:
            out.append(env.step(action)[0])
        return out

    first, again, other = run(3, **noisy), run(3, **noisy), run(4, **noisy)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0])
    clean = run(3, sensors=4)
    readings = 3 * 4 if env_id == SHAPES else 4
    assert not np.array_equal(first[0][:readings], clean[0][:readings])  # the same task …
    np.testing.assert_array_equal(first[0][readings:], clean[0][readings:])  # … target, time
    assert not np.array_equal(first[1], clean[1])  # actuator noise moved the state


def test_vector_env_noise_is_reproducible_by_seed() -> None:
    def run(seed: int) -> list[Any]:
        envs = make_vec(DIFFUSION, sensors=4, sensor_noise=0.1, actuator_noise=0.2)
        out = [envs.reset(seed=seed)[0]]
        out += [envs.step(np.zeros((3, 16), np.float32))[0] for _ in range(4)]  # an autoreset
        return out

    for a, b in zip(run(5), run(5), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(("options", "match"), [
    ({"sensors": 0}, "sensors must be ≥ 1"),
    ({"sensors": True}, "sensors must be a count"),
    ({"sensors": "3"}, "sensors must be a count"),
    ({"sensors": [0.5, 1.0]}, r"fractions of the domain in \[0, 1\)"),
    ({"sensors": [(0.1, 0.2)]}, "1 coordinate"),
    ({"sensors": 17}, "exceeds the 16 cells"),
    ({"sensors": [0.0, 0.01]}, "Two sensors read the same cell"),
    ({"target_observation": "sensors"}, "needs sensors"),
    ({"target_observation": "half", "sensors": 2}, "target_observation"),
    ({"actuators": 3, "actuator_width": 0.0}, "actuator_width"),
    ({"actuators": [[1.0, 0.0]] * 3}, "16 rows"),
    ({"actuators": np.eye(16).tolist(), "actuator_width": 0.1}, "count of actuators"),
    ({"sensor_noise": -0.1}, "sensor_noise"),
    ({"actuator_noise": float("nan")}, "actuator_noise"),
])
def test_bad_options_raise_value_errors_naming_them(options: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make(DIFFUSION, **options)


def test_shape_transition_refuses_actuators_with_a_control_grid() -> None:
    with pytest.raises(ValueError, match="control_resolution"):
        make(SHAPES, actuators=4, control_resolution=(8, 8))


def test_defaults_are_full_observation_and_per_cell_actuation() -> None:
    assert core_of(gym.make(DIFFUSION)).sensing == Sensing()
    with pytest.raises(TypeError, match="sensors, target_observation"):
        make(DIFFUSION, sensing=Sensing())  # set by its keywords, listed as accepted


# --- the wrappers ---------------------------------------------------------------------------------


def test_noise_wrappers_are_reproducible_by_seed_and_keep_the_spaces() -> None:
    def run(seed: int, std: float = 0.3) -> list[np.ndarray]:
        env = ActionNoise(SensorNoise(make(DIFFUSION), std=std), std=std)
        assert env.observation_space == make(DIFFUSION).observation_space
        out = [env.reset(seed=seed)[0]]
        out += [env.step(np.zeros(16, np.float32))[0] for _ in range(2)]
        return out

    first, again, other, clean = run(1), run(1), run(2), run(1, std=0.0)
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], other[0]) and not np.array_equal(first[0], clean[0])
    plain = make(DIFFUSION)
    np.testing.assert_array_equal(clean[0], plain.reset(seed=1)[0])  # std 0: the env itself


def test_noise_wrappers_check_their_arguments() -> None:
    for bad in (-1.0, float("inf"), "0.1", True):
        with pytest.raises(ValueError, match="std"):
            SensorNoise(make(DIFFUSION), std=bad)
    with pytest.raises(TypeError, match="Box"):
        ActionNoise(gym.make("CliffWalking-v1"), std=0.1)
    with pytest.raises(gym.error.ResetNeeded):
        ActionNoise(make(DIFFUSION), std=0.1).step(np.zeros(16, np.float32))

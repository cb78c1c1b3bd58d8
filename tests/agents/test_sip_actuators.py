"""SIP, supervised references and the open-loop optimum through an actuator basis
(``agents.sip.actuator_control_targets``, ``agents.supervised.open_loop_optimum``): the bar of
the actuator-space minimum-force split is that replaying its targets reaches the least-squares
reachable state (float64), computed here independently from an autograd Jacobian."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch

import sipenv  # noqa: F401  (registers the ids)
from agents.sip import (
    SIPConfig,
    actuator_control_targets,
    actuator_response,
    control_loss,
    sip_control_targets,
)
from agents.supervised import open_loop_optimum, reference_solution
from sipenv.envs.core import ControlCore, core_of

DIFFUSION = "sip/ControlledDiffusion-v0"


def _core(**kwargs: object) -> ControlCore:
    return core_of(gym.make(DIFFUSION, dtype="float64", **kwargs), ControlCore)


def _replay(core: ControlCore, s0: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
    """Final states under *unclipped* actions ``(T, B, M)``."""
    state = s0
    for action in actions:
        state = core.physics.step(state, core.actuate(action))
    return state


def _task(core: ControlCore, batch: int = 4, seed: int = 0
          ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    s0, target = core.sample_tasks(batch, generator, dtype=torch.float64)
    actions = torch.rand(core.horizon, batch, core.action_shape[0], generator=generator,
                         dtype=torch.float64) * 2 - 1
    states = [s0]
    for action in actions:
        states.append(core.physics.step(states[-1], core.actuate(action)))
    return s0, target, actions, torch.stack(states)


def test_replayed_targets_reach_the_least_squares_reachable_state_with_8_actuators() -> None:
    core = _core(actuators=8)
    s0, target, actions, states = _task(core, batch=2)
    reached = _replay(core, s0, actuator_control_targets(core, states, actions, target))
    for i in range(len(s0)):  # the reachable state nearest to s*, from the autograd Jacobian
        def final_i(flat: torch.Tensor, i: int = i) -> torch.Tensor:
            return _replay(core, s0[i:i + 1], flat.reshape(core.horizon, 1, -1))[0]

        flat = actions[:, i].reshape(-1)
        jac = torch.autograd.functional.jacobian(final_i, flat).numpy()
        residual = (target[i] - states[-1, i]).numpy()
        best = states[-1, i].numpy() + jac @ np.linalg.lstsq(jac, residual, rcond=1e-10)[0]
        error = np.linalg.norm(reached[i].numpy() - best) / np.linalg.norm(best)
        assert error <= 1e-6, f"task {i}: relative distance {error:.2e}"
        # … and 8 bumps cannot reach every target: the least-squares state is not s*.
        assert np.linalg.norm(best - target[i].numpy()) > 1e-3 * np.linalg.norm(best)


def test_response_matches_the_autograd_jacobian() -> None:
    core = _core(actuators=5, horizon=4)
    s0 = torch.zeros(1, core.n, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(
        lambda flat: _replay(core, s0, flat.reshape(4, 1, 5))[0], torch.zeros(20,
                                                                            dtype=torch.float64))
    np.testing.assert_allclose(actuator_response(core), jac, atol=1e-12)


def test_identity_basis_gives_the_minimum_force_split() -> None:
    core = _core(n=16, max_mode=4, horizon=4, actuators=np.eye(16).tolist())
    _, target, actions, states = _task(core, seed=1)
    ours = actuator_control_targets(core, states, actions, target)
    forces = torch.stack([core.actuate(a) for a in actions])
    split = sip_control_targets(core.physics, states, forces, target, split="minimum-force")
    np.testing.assert_allclose(ours, split / core.force_scale, rtol=1e-6, atol=1e-8)


def test_box_targets_stay_in_the_box_and_lower_the_linearised_loss() -> None:
    core = _core(actuators=8)
    s0, target, actions, states = _task(core, seed=2)
    boxed = actuator_control_targets(core, states, actions, target, box=True)
    assert boxed.abs().max() <= 1.0
    core_loss = [core.target_error(_replay(core, s0, a), target) for a in (actions, boxed)]
    assert bool((core_loss[1] < core_loss[0]).all())


def test_open_loop_optimum_beats_the_clipped_least_squares_actions() -> None:
    core = _core(actuators=8)
    s0, target, *_ = _task(core, seed=3)
    zero = torch.zeros(core.horizon, len(s0), 8, dtype=torch.float64)
    free = [s0]
    for _ in range(core.horizon):
        free.append(core.physics.step(free[-1], torch.zeros_like(s0)))
    lstsq = actuator_control_targets(core, torch.stack(free), zero, target).clamp(-1, 1)
    best = open_loop_optimum(core, s0, target)
    assert best.actions.abs().max() <= 1.0 and best.actions.shape == (core.horizon, 4, 8)
    loss = core.episode_loss(best)
    clipped = core.episode_loss(core.rollout(lambda obs: torch.zeros(len(obs), 8), s0, target))
    assert bool((loss < clipped).all())  # better than doing nothing …
    ls_final = _replay(core, s0, lstsq)
    assert bool((core.target_error(best.states[-1], target)
                 < core.target_error(ls_final, target)).all())  # … and than clipping
    assert reference_solution(core, s0, target).actions.shape == best.actions.shape


@pytest.mark.parametrize("split", ["minimum-force", "gauss-newton", "uniform"])
def test_sip_proxy_loss_runs_in_actuator_space(split: str) -> None:
    torch.manual_seed(0)
    core = core_of(gym.make(DIFFUSION, n=16, max_mode=4, horizon=3, sensors=4, actuators=3),
                   ControlCore)
    policy = torch.nn.Linear(core.obs_dim, 3)
    s0, target = core.sample_tasks(5, torch.Generator().manual_seed(0))
    loss, rollout = control_loss(policy, core, s0, target, SIPConfig(split=split))
    assert torch.isfinite(loss) and rollout.actions.shape == (3, 5, 3)
    loss.backward()
    assert policy.weight.grad is not None

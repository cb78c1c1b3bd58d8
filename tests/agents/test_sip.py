"""The SIP target computations, tested on their own (no network involved)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch

from agents.sip import (
    minimum_force_split,
    newton_step,
    sip_control_targets,
    sip_inverse_targets,
    uniform_split,
)
from sipenv.physics import DiffusionPhysics


def _rollout(phys: DiffusionPhysics, s0: torch.Tensor, forces: torch.Tensor) -> torch.Tensor:
    states = [s0]
    for f in forces:
        states.append(phys.step(states[-1], f))
    return torch.stack(states)


def _task(phys: DiffusionPhysics, horizon: int, batch: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    max_mode = min(8, phys.n // 2 - 1)
    s0 = phys.sample_fields(batch, gen, max_mode=max_mode, dtype=torch.float64)
    target = phys.sample_fields(batch, gen, max_mode=max_mode, dtype=torch.float64)
    forces = 5 * torch.randn(horizon, batch, phys.n, generator=gen, dtype=torch.float64)
    return s0, target, forces


@pytest.mark.parametrize(("split", "horizon"), [("minimum-force", 16), ("uniform", 4)])
def test_linear_exactness_replay_lands_on_target(split: str, horizon: int) -> None:
    """Linear physics + exact inverse + η = 1: replaying F̃ from s_0 reaches s* exactly.

    The uniform split is exact too, but passes corrections through T − 1 inverse steps that
    amplify the top mode by 57 each, so beyond a few steps float64 rounding dominates (see
    test_uniform_split_overflow_is_reported); the minimum-force split contracts.
    """
    phys = DiffusionPhysics()  # defaults: no mode is clamped, the inverse is exact
    s0, target, forces = _task(phys, horizon)
    states = _rollout(phys, s0, forces)
    f_tilde = sip_control_targets(phys, states, forces, target, eta=1.0, split=split)
    final = _rollout(phys, s0, f_tilde)[-1]
    rel = (final - target).norm() / target.norm()
    assert rel < 1e-6
    # a gradient step on the terminal loss does not get there (sanity of the claim)
    forces_gd = forces.clone().requires_grad_(True)
    loss = 0.5 * ((_rollout(phys, s0, forces_gd)[-1] - target) ** 2).sum()
    (grad,) = torch.autograd.grad(loss, forces_gd)
    final_gd = _rollout(phys, s0, forces - grad)[-1]
    assert (final_gd - target).norm() / target.norm() > 1e-2


def test_uniform_split_exact_with_smooth_forces_over_8_steps() -> None:
    phys = DiffusionPhysics()
    s0, target, _ = _task(phys, 8)
    gen = torch.Generator().manual_seed(5)
    forces = torch.stack([5 * phys.sample_fields(3, gen, dtype=torch.float64) for _ in range(8)])
    f_tilde = sip_control_targets(phys, _rollout(phys, s0, forces), forces, target,
                                  split="uniform")
    final = _rollout(phys, s0, f_tilde)[-1]
    assert (final - target).norm() / target.norm() < 1e-6


def test_eta_scales_the_correction() -> None:
    phys = DiffusionPhysics()
    s0, target, forces = _task(phys, 8)
    states = _rollout(phys, s0, forces)
    f_half = sip_control_targets(phys, states, forces, target, eta=0.5)
    final = _rollout(phys, s0, f_half)[-1]
    torch.testing.assert_close(final, states[-1] + 0.5 * (target - states[-1]),
                               rtol=1e-8, atol=1e-8)


def test_minimum_force_split_is_the_least_norm_solution() -> None:
    """Against an independent dense solve: min ΣF² s.t. s_T = s* via scipy's pseudo-inverse."""
    phys = DiffusionPhysics(n=8, nu=0.02, dt=0.05)
    horizon, n = 4, 8
    s0, target, _ = _task(phys, horizon, batch=1, seed=3)
    # dense linear map: s_T = A s0 + Σ_t B_t F_t, built column by column from the physics
    eye = torch.eye(n, dtype=torch.float64)
    step_state = torch.stack([phys.step(e[None], torch.zeros(1, n, dtype=torch.float64))[0]
                              for e in eye], 1).numpy()  # s ↦ d s
    step_force = torch.stack([phys.step(torch.zeros(1, n, dtype=torch.float64), e[None])[0]
                              for e in eye], 1).numpy()  # f ↦ g f
    blocks = [np.linalg.matrix_power(step_state, horizon - 1 - t) @ step_force
              for t in range(horizon)]
    big_b = np.concatenate(blocks, axis=1)  # (n, T n)
    rhs = target[0].numpy() - np.linalg.matrix_power(step_state, horizon) @ s0[0].numpy()
    f_ref = (scipy.linalg.pinv(big_b) @ rhs).reshape(horizon, n)

    zero = torch.zeros(horizon, 1, n, dtype=torch.float64)
    f_sip = sip_control_targets(phys, _rollout(phys, s0, zero), zero, target,
                                split="minimum-force")[:, 0].numpy()
    np.testing.assert_allclose(f_sip, f_ref, rtol=1e-6, atol=1e-8)
    f_uni = sip_control_targets(phys, _rollout(phys, s0, zero), zero, target, split="uniform")
    assert np.linalg.norm(f_uni.numpy()) > np.linalg.norm(f_ref) * 1.01  # uniform costs more


def test_split_rules_shares() -> None:
    phys = DiffusionPhysics()
    like = torch.zeros(1, phys.n, dtype=torch.float64)
    delta = phys.sample_fields(2, torch.Generator().manual_seed(1), dtype=torch.float64)
    share = uniform_split(phys, 4, like)
    torch.testing.assert_close(share(3, delta), delta / 4)
    mf = minimum_force_split(phys, 4, like)
    torch.testing.assert_close(mf(0, delta), delta)  # the first step must take all that is left
    assert mf(3, delta).norm() < delta.norm()


def test_minimum_force_split_needs_spectral_physics() -> None:
    class Plain:
        n, dt = 4, 0.1

    with pytest.raises(TypeError, match="uniform"):
        minimum_force_split(Plain(), 3, torch.zeros(1, 4))  # type: ignore[arg-type]


def test_bad_shapes_are_rejected() -> None:
    phys = DiffusionPhysics()
    with pytest.raises(ValueError, match=r"\(T\+1, B, N\)"):
        sip_control_targets(phys, torch.zeros(3, 1, 64), torch.zeros(3, 1, 64),
                            torch.zeros(1, 64))


def test_single_step_sip_inverse_targets() -> None:
    """y = P(x) = exp(x) (badly scaled); the SIP target x̃ = log(ỹ) solves it in one step."""
    x = torch.tensor([[-3.0, 0.0, 2.0]], dtype=torch.float64)
    y_star = torch.tensor([[1.0, 5.0, 0.1]], dtype=torch.float64)
    x_tilde = sip_inverse_targets(x, torch.exp(x), y_star, lambda y, x0: torch.log(y))
    torch.testing.assert_close(torch.exp(x_tilde), y_star)
    assert not x_tilde.requires_grad
    torch.testing.assert_close(newton_step(torch.tensor(2.0), torch.tensor(4.0), 0.25),
                               torch.tensor(2.5))


# --- objective-matched weighting -----------------------------------------------------------------

def test_objective_weights_are_the_objective_curvature() -> None:
    """``E = c ½‖y − y*‖²`` gives ``c`` whatever the reference: 2/‖y*‖² for the relative
    error, 1 for ½‖·‖²; a reference without finite curvature is refused."""
    from agents.sip import objective_weights
    from sipenv.envs.core import relative_squared_error

    ref = torch.tensor([[1.0, 2.0, 2.0], [0.0, 3.0, 4.0], [1e3, 0.0, 0.0]], dtype=torch.float64)
    torch.testing.assert_close(objective_weights(relative_squared_error, ref),
                               torch.tensor([2 / 9, 2 / 25, 2e-6], dtype=torch.float64))
    half_sq = lambda y, t: 0.5 * (y - t).pow(2).sum(-1)  # noqa: E731
    torch.testing.assert_close(objective_weights(half_sq, ref), torch.ones(3, dtype=torch.float64))
    with pytest.raises(ValueError, match="weighting='uniform'"):
        objective_weights(lambda y, t: (y - t).sum(-1) / 0.0, ref)


@pytest.mark.parametrize("weighting", ["objective", "uniform"])
def test_weighted_proxy_on_two_tasks_by_hand(weighting: str) -> None:
    """Two one-step tasks from s_0 = 0 to constant targets s*_1 = 1, s*_2 = 1/4 on 4 cells.

    The constant mode has decay 1 and gain dt, so the SIP force targets are s*/dt, i.e. action
    targets ã_1 = 1/(dt·force_scale) = 1 and ã_2 = 1/4 in every cell. With a zero policy
    (a = 0) and c_i = 2/‖s*_i‖² = 2/4, 2/(4/16) = 1/2, 8:
    weighted proxy  (½·½·4·1² + 8·½·4·(1/4)²)/2 = 1,      d/d(bias) = −(½·1 + 8·¼)/2 = −1.25;
    uniform proxy   (½·4·1² + ½·4·(1/4)²)/2 = 1.0625,     d/d(bias) = −(1 + ¼)/2 = −0.625.
    """
    from agents.sip import SIPConfig, control_loss
    from sipenv.envs.controlled_diffusion import make_core

    core = make_core(n=4, horizon=1, max_mode=1)  # dt = 0.01, force_scale = 100
    policy = torch.nn.Linear(2 * 4 + 1, 4)
    torch.nn.init.zeros_(policy.weight)
    torch.nn.init.zeros_(policy.bias)
    s0 = torch.zeros(2, 4)
    target = torch.tensor([[1.0] * 4, [0.25] * 4])
    config = SIPConfig(weighting=weighting)  # type: ignore[arg-type]
    value, _ = control_loss(policy, core, s0, target, config)
    value.backward()
    expected_value, expected_grad = (1.0, -1.25) if weighting == "objective" else (1.0625, -0.625)
    assert value.item() == pytest.approx(expected_value, rel=1e-5)
    torch.testing.assert_close(policy.bias.grad, torch.full((4,), expected_grad), rtol=1e-5,
                               atol=1e-6)


def test_weighting_is_checked_and_changes_nothing_on_inverse_problems() -> None:
    from agents.problems import make_problem
    from agents.sip import SIPConfig, inverse_loss

    with pytest.raises(ValueError, match="weighting"):
        SIPConfig(weighting="loss").check_fields()  # type: ignore[arg-type]
    problem = make_problem("sip/SineInversion-v0")
    batch = problem.sample(8, torch.Generator().manual_seed(0))
    net = torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(), torch.nn.Linear(8, 2))
    values = [inverse_loss(net, problem, batch, SIPConfig(weighting=w)).loss.item()  # type: ignore[arg-type]
              for w in ("objective", "uniform")]
    assert values[0] == values[1]


def test_correction_tasks_weigh_each_step_by_its_own_curvature() -> None:
    """A correction task's loss is Σ_t ‖s_t − r_t‖²/‖r_t‖²: step t's proxy term gets
    2/‖r_{t+1}‖²; a control task's steps all get the terminal error's 2/‖s*‖²."""
    from agents.problems import make_problem
    from agents.sip import _task_weights

    problem = make_problem("sip/CorrectedBurgers-v0", {"horizon": 3})
    _, refs = problem.sample(2, torch.Generator().manual_seed(0))  # (B, T + 1, N)
    weights = _task_weights(problem.core, refs, 3)  # type: ignore[union-attr]
    expected = 2 / refs[:, 1:].pow(2).sum(-1).transpose(0, 1)
    torch.testing.assert_close(weights, expected.to(weights.dtype), rtol=1e-5, atol=0)
    control = make_problem("sip/ControlledDiffusion-v0", {"horizon": 2})
    _, target = control.sample(3, torch.Generator().manual_seed(0))
    weights = _task_weights(control.core, target, 2)  # type: ignore[union-attr]
    torch.testing.assert_close(weights, (2 / target.pow(2).sum(-1)).expand(2, -1))

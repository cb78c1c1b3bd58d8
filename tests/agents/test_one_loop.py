"""The one training loop: algorithms with their own update, every problem type, refusals,
checkpoints and seeds on inverse problems."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import pytest
import torch
from torch import nn

from agents import diffphys, sip, supervised
from agents.checkpoint import load_checkpoint
from agents.ppo import PPOConfig
from agents.problems import TEST_SEED, VALIDATION_SEED, HeatProblem, SineProblem, TaskProblem
from agents.registry import ALGORITHMS, get_algorithm
from agents.trainer import (
    Algorithm,
    NonFiniteUpdate,
    Step,
    TrainConfig,
    TrainingDiverged,
    check_finite,
    policy_from_checkpoint,
    run_training,
)

SINE = dict(env_id="sip/SineInversion-v0", env_kwargs='{"xi": 4.0}', hidden=(16, 16),
            batch_size=32, eval_episodes=64, log_every=0, checkpoint_every=0, progress=False)
HEAT = dict(env_id="sip/HeatInverse-v0", env_kwargs='{"shape": [8, 8], "nu_t": 0.3}',
            hidden=(32,), batch_size=8, eval_episodes=16, log_every=0, checkpoint_every=0,
            progress=False)


# --- an algorithm that supplies its own update (as half-inverse gradients will) -----------------

@dataclass
class HandSGDConfig(TrainConfig):
    """A toy algorithm's config."""

    algo: Literal["hand-sgd"] = "hand-sgd"


def hand_sgd_update(network: nn.Module, optimizer: torch.optim.Optimizer, problem: Any,
                    batch: Any, config: HandSGDConfig) -> Step:
    """``θ ← θ − lr · ∂L/∂θ`` computed and applied by hand (no loss handed to the loop, no
    optimizer): the shape of an update that is not the gradient step of any loss."""
    del optimizer
    x = problem.predict(network, batch.y_target)
    value = problem.physics.loss(x, batch.y_target).mean()
    params = list(network.parameters())
    grads = torch.autograd.grad(value, params)
    directions = [config.lr * g for g in grads]
    check_finite(directions, "update")  # stop before a non-finite step reaches the weights
    with torch.no_grad():
        for p, d in zip(params, directions, strict=True):
            p.sub_(d)
    return Step(value.detach(), x.detach())


HAND_SGD = Algorithm("hand-sgd", HandSGDConfig, update=hand_sgd_update)


def test_an_algorithm_with_its_own_update_trains_through_the_loop() -> None:
    sine = {**SINE, "env_kwargs": '{"xi": 1.0}'}
    cfg = HandSGDConfig(iterations=150, lr=1e-2, **sine)  # type: ignore[arg-type]
    before = run_training(replace(cfg, iterations=1), HAND_SGD, write=False, progress=False)
    after = run_training(cfg, HAND_SGD, write=False, progress=False)
    assert after.iterations == 150
    assert after.final_eval["val_x_dist"] < 0.5 * before.final_eval["val_x_dist"]
    # Same as the default update with SGD on the same loss: the hook is the whole update.
    dp = diffphys.train(diffphys.DPConfig(optimizer="sgd", iterations=150, lr=1e-2, **sine),  # type: ignore[arg-type]
                        write=False, progress=False)
    for a, b in zip(after.policy.parameters(), dp.policy.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_a_non_finite_custom_update_stops_before_the_weights_change(tmp_path: Path) -> None:
    calls = {"n": 0}

    def update(network: nn.Module, optimizer: Any, problem: Any, batch: Any,
               config: Any) -> Step:
        calls["n"] += 1
        if calls["n"] == 3:
            check_finite([torch.tensor([float("nan")])], "update", "HIG: raise the cutoff.")
        return hand_sgd_update(network, optimizer, problem, batch, config)

    cfg = HandSGDConfig(iterations=5, lr=0.1, runs_dir=str(tmp_path), run_name="r",
                        **SINE)  # type: ignore[arg-type]
    with pytest.raises(TrainingDiverged, match=r"Non-finite update at iteration 3; .*HIG: raise"
                       ) as info:
        run_training(cfg, Algorithm("hand-sgd", HandSGDConfig, update=update), progress=False)
    assert info.value.iteration == 3 and info.value.weights_ok
    ckpt = load_checkpoint(tmp_path / "r" / "checkpoint.pt")
    assert ckpt["iteration"] == 2
    assert all(torch.isfinite(v).all() for v in ckpt["model"].values())


# --- every algorithm on the problem types where it makes sense ---------------------------------

@pytest.mark.parametrize(("algo", "problem", "extra"), [
    ("sip", SINE, {"lr": 3e-3}),
    ("dp", SINE, {"lr": 3e-3}),
    ("sip", HEAT, {"lr": 3e-3}),
    ("dp", HEAT, {"lr": 3e-3}),
    ("supervised", HEAT, {"lr": 3e-3}),
    ("sip", HEAT, {"lr": 1e-2, "network": "unet", "hidden": (4, 4)}),
])
def test_learning_happens_on_tiny_inverse_problems(algo: str, problem: dict[str, Any],
                                                   extra: dict[str, Any]) -> None:
    algorithm = get_algorithm(algo)
    cfg = algorithm.config(iterations=60, **{**problem, **extra})
    start = algorithm.train(replace(cfg, iterations=1), write=False, progress=False)
    end = algorithm.train(cfg, write=False, progress=False)
    key = "val_x_dist" if problem is SINE else "val_x_error"
    assert end.final_eval[key] < 0.7 * start.final_eval[key]
    assert {"val_y_loss", "test_y_loss"} <= set(end.final_eval)


@pytest.mark.parametrize(("config", "match"), [
    (supervised.SupervisedConfig(**SINE), "no reference solution.*Use sip or dp"),  # type: ignore[arg-type]
    (supervised.SupervisedConfig(env_id="sip/ControlledBurgers-v0"), "no reference solution"),
    (supervised.SupervisedConfig(env_id="sip/CorrectedBurgers-v0"), "no reference solution"),
    (PPOConfig(**SINE), "single-step inverse problem.*Use sip or dp"),  # type: ignore[arg-type]
    (PPOConfig(**HEAT), "single-step inverse problem"),  # type: ignore[arg-type]
    (sip.SIPConfig(env_id="sip/ControlledBurgers-v0"), "--split gauss-newton"),
    (sip.SIPConfig(**{**SINE, "network": "unet"}), "Use --network mlp"),  # type: ignore[arg-type]
])
def test_combinations_that_cannot_work_are_refused_by_validate(config: TrainConfig,
                                                               match: str) -> None:
    with pytest.raises(ValueError, match=match):
        config.validate()


def test_algorithms_are_registered_by_import() -> None:
    assert set(ALGORITHMS) == {"sip", "dp", "supervised", "ppo", "hig"}
    for name, algorithm in ALGORITHMS.items():
        assert isinstance(algorithm, Algorithm) and algorithm.name == name
        assert algorithm.config().algo == name
    with pytest.raises(ValueError, match="choose one of"):
        get_algorithm("newton")


# --- seeds, problems and checkpoints -----------------------------------------------------------

def test_held_out_sets_use_the_one_seed_convention() -> None:
    problem = sip.SIPConfig(**SINE).make_problem()  # type: ignore[arg-type]
    assert isinstance(problem, SineProblem)
    sets = problem.held_out_sets(VALIDATION_SEED, 8)
    expected = problem.physics.sample_targets(8, torch.Generator().manual_seed(TEST_SEED))
    torch.testing.assert_close(sets["test_"].y_target, expected)
    assert not torch.equal(sets["val_"].y_target, sets["test_"].y_target)
    assert TrainConfig().eval_seed == VALIDATION_SEED
    heat = sip.SIPConfig(**HEAT).make_problem()  # type: ignore[arg-type]
    assert isinstance(heat, HeatProblem) and heat.has_reference
    control = sip.SIPConfig().make_problem()
    assert isinstance(control, TaskProblem) and control.kind == "control"


def test_inverse_runs_checkpoint_and_resume_bit_identically(tmp_path: Path) -> None:
    base = sip.SIPConfig(iterations=6, runs_dir=str(tmp_path), **{**HEAT, "log_every": 1,
                                                                   "checkpoint_every": 3})  # type: ignore[arg-type]
    straight = sip.train(replace(base, run_name="straight"))
    sip.train(replace(base, run_name="split", iterations=3))
    resumed = sip.train(replace(base, run_name="split"), resume=True)
    for a, b in zip(straight.policy.state_dict().values(), resumed.policy.state_dict().values(),
                    strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    net, ckpt = policy_from_checkpoint(tmp_path / "split" / "checkpoint.pt")
    assert ckpt["env_id"] == "sip/HeatInverse-v0" and ckpt["iteration"] == 6
    final = json.loads((tmp_path / "split" / "final_eval.json").read_text())
    assert final["val_x_error"] == pytest.approx(resumed.final_eval["val_x_error"])
    assert net(torch.zeros(2, 64)).shape == (2, 64)


def test_eval_points_evaluate_before_training_and_evenly() -> None:
    records: list[dict[str, float]] = []
    cfg = diffphys.DPConfig(iterations=12, eval_points=3, **SINE)  # type: ignore[arg-type]
    diffphys.train(cfg, write=False, progress=False, on_eval=records.append)
    assert [r["iteration"] for r in records] == [0, 4, 8, 12]
    assert all("eval_test_x_dist" in r for r in records)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_check_finite_finds_one_bad_entry_and_skips_missing_gradients(bad: float) -> None:
    tensors = [torch.randn(8, 5), None, torch.randn(300)]
    check_finite(tensors, "gradient")  # finite: passes
    tensors[2][123] = bad  # type: ignore[index]
    with pytest.raises(NonFiniteUpdate) as info:
        check_finite(tensors, "gradient")
    assert info.value.what == "gradient"


def test_check_finite_accepts_huge_finite_entries_whose_sum_overflows() -> None:
    """The fast sum overflows to inf here; the exact check must still call the values finite."""
    huge = torch.full((4,), torch.finfo(torch.float64).max, dtype=torch.float64)
    check_finite([huge, -huge[:1]], "weights")
    with pytest.raises(NonFiniteUpdate):
        check_finite([huge, torch.tensor([float("nan")], dtype=torch.float64)], "weights")


@pytest.mark.parametrize("tty", [True, False])
def test_progress_bars_refresh_rarely_when_stderr_is_a_log(tty: bool,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    from agents.outputs import progress_interval

    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    monkeypatch.setattr(sys, "stderr", Stream())
    assert progress_interval() == (0.1 if tty else 30.0)


def test_a_redirected_progress_bar_does_not_write_a_line_per_record(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Captured stderr is not a terminal: 60 records must not give 60 bar refreshes."""
    config = sip.SIPConfig(**{**SINE, "log_every": 1, "iterations": 60, "eval_episodes": 8})
    run_training(config, get_algorithm("sip"), write=False, progress=True)
    refreshes = capsys.readouterr().err.count("\r")
    assert 0 < refreshes <= 5


def test_lr_factor_cosine_and_constant() -> None:
    import math

    from agents.trainer import lr_factor

    assert [lr_factor("cosine", p) for p in (0.0, 0.5, 1.0)] == pytest.approx([1.0, 0.5, 0.0])
    assert lr_factor("cosine", 0.25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_factor("cosine", 2.0) == 0.0 and lr_factor("cosine", -1.0) == 1.0  # clipped
    assert lr_factor("constant", 0.7) == 1.0
    with pytest.raises(ValueError, match="lr_schedule"):
        lr_factor("step", 0.5)


def test_budget_progress_is_the_limit_further_along() -> None:
    from agents.trainer import budget_progress

    cfg = diffphys.DPConfig(iterations=10, **SINE)  # type: ignore[arg-type]
    assert budget_progress(cfg, 4, 123.0) == pytest.approx(0.4)  # no time budget
    both = replace(cfg, time_budget=20.0)
    assert budget_progress(both, 4, 10.0) == pytest.approx(0.5)  # time is further along
    assert budget_progress(both, 8, 10.0) == pytest.approx(0.8)
    by_time = replace(cfg, iterations=None, time_budget=20.0)
    assert budget_progress(by_time, 10**6, 5.0) == pytest.approx(0.25)
    assert budget_progress(by_time, 0, 50.0) == 1.0


def test_cosine_schedule_sets_the_rate_of_every_update(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each of 4 iterations steps at lr·½(1 + cos(π·i/4)), i = 0..3: read from the optimizer
    when it steps; a constant schedule leaves lr alone."""
    import math

    seen: list[float] = []
    step = torch.optim.Adam.step

    def spy(self: torch.optim.Optimizer, *args: Any, **kwargs: Any) -> Any:
        seen.append(self.param_groups[0]["lr"])
        return step(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(torch.optim.Adam, "step", spy)
    cfg = diffphys.DPConfig(iterations=4, lr=1e-2, lr_schedule="cosine",  # type: ignore[arg-type]
                            **SINE)
    diffphys.train(cfg, write=False, progress=False)
    assert seen == pytest.approx([1e-2 * 0.5 * (1 + math.cos(math.pi * i / 4)) for i in range(4)])
    seen.clear()
    diffphys.train(replace(cfg, lr_schedule="constant"), write=False, progress=False)
    assert seen == pytest.approx([1e-2] * 4)


def test_lr_schedule_is_validated_and_refused_by_ppo() -> None:
    with pytest.raises(ValueError, match="lr_schedule"):
        diffphys.DPConfig(lr_schedule="linear", **SINE).validate()  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="--lr-schedule"):
        PPOConfig(lr_schedule="cosine").check_fields()

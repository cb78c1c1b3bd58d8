"""The comparison's scoring rules on synthetic curves (no training)."""

from __future__ import annotations

import math

import pytest

from agents.compare import METHODS, RunRecord, score_run


def _curve() -> list[dict[str, float]]:
    # evaluations every 10 iterations, 1 s per 10 iterations
    return [{"iteration": float(i), "time": i / 10, "eval_target_error_mean": 1.0 / i,
             "eval_force_cost_mean": 0.5} for i in range(10, 201, 10)]


def test_budget_readings_average_the_last_ten_percent() -> None:
    rec = score_run(RunRecord(seed=0, curve=_curve()), "sip", time_budget=10.0, iterations=150)
    # time window [9, 10] s holds iterations 90 and 100
    assert math.isclose(rec.error_at_time, (1 / 90 + 1 / 100) / 2)
    assert rec.iterations_in_time == 100
    # iteration window [135, 150] holds 140 and 150
    assert math.isclose(rec.error_at_iterations, (1 / 140 + 1 / 150) / 2)
    assert rec.force_cost_at_time == 0.5


def test_ppo_has_no_equal_iteration_reading_and_short_runs_are_nan() -> None:
    assert math.isnan(score_run(RunRecord(seed=0, curve=_curve()), "ppo", 10.0, 150)
                      .error_at_iterations)
    short = score_run(RunRecord(seed=0, curve=_curve()), "dp", 10.0, 10_000)
    assert math.isnan(short.error_at_iterations)  # never reached the iteration budget


def test_every_method_sweeps_at_least_four_learning_rates() -> None:
    assert all(len(m.lrs) >= 4 for m in METHODS.values())


# --- the learning-rate sweep: at the reported budget, grid extended past an edge ---------------

def _valley(best: float):
    """A fake validation error with its minimum at ``best`` (log-parabola), recording calls."""
    calls: list[float] = []

    def score(lr: float) -> float:
        calls.append(lr)
        return 1.0 + math.log10(lr / best) ** 2

    return score, calls


def test_interior_best_is_not_extended() -> None:
    from agents.compare import sweep_rates

    score, calls = _valley(1e-3)
    result = sweep_rates((1e-4, 1e-3, 1e-2), score, max_extensions=3)
    assert calls == [1e-4, 1e-3, 1e-2] and result["added_lrs"] == []
    assert result["best_lr"] == 1e-3 and not result["best_on_grid_edge"]


def test_best_on_the_low_edge_extends_down_until_interior() -> None:
    from agents.compare import sweep_rates

    score, calls = _valley(1e-6)  # far below the grid: two extensions reach 1e-6 ...
    result = sweep_rates((1e-4, 1e-3, 1e-2), score, max_extensions=5)
    assert result["added_lrs"] == pytest.approx([1e-5, 1e-6, 1e-7])  # ... the third shows it
    assert result["best_lr"] == pytest.approx(1e-6) and not result["best_on_grid_edge"]
    assert result["lrs"] == sorted(result["lrs"]) and len(calls) == 6


def test_best_on_the_high_edge_extends_up_at_the_grid_spacing_and_stops_at_the_cap() -> None:
    from agents.compare import sweep_rates

    score, _ = _valley(1.0)
    result = sweep_rates((1e-4, 3e-4, 1e-3, 3e-3), score, max_extensions=2)
    assert result["added_lrs"] == pytest.approx([9e-3, 2.7e-2])  # ×3 steps, capped at 2
    assert result["best_on_grid_edge"]  # still on the edge: reported, not hidden


def test_diverged_rates_count_as_infinite_and_all_diverged_adds_nothing() -> None:
    from agents.compare import extend_grid, sweep_rates

    result = sweep_rates((1e-3, 1e-2, 1e-1), lambda lr: math.nan if lr > 5e-3 else lr,
                         max_extensions=1)
    assert result["validation_error"][-2:] == [math.inf, math.inf]
    assert result["added_lrs"] == pytest.approx([1e-4])
    assert extend_grid([1e-3, 1e-2], {1e-3: math.inf, 1e-2: math.inf}) is None
    # a rate added past the edge is rounded, so logs and JSON keys read 8e-4
    assert extend_grid([2e-3, 5e-3], {2e-3: 1.0, 5e-3: 2.0}) == 8e-4


def test_sweep_trains_at_the_reported_budget_and_extends(monkeypatch: pytest.MonkeyPatch) -> None:
    """``sweep`` with a fake trainer: every swept run gets ``time_budget`` seconds when
    ``sweep_budget`` is 0, and a best rate on the grid's edge adds a rate."""
    from types import SimpleNamespace

    import agents.compare as compare

    budgets: list[float] = []

    def fake_train(method, cfg, *, lr, seed, eval_seed, time_budget, iterations, eval_every):
        budgets.append(time_budget)
        err = 1.0 + math.log10(lr / 3e-5) ** 2
        return SimpleNamespace(final_eval={"target_error_mean": err}, iterations=100,
                               train_time=2.0), []

    monkeypatch.setattr(compare, "_train", fake_train)
    cfg = compare.CompareConfig(time_budget=42.0, lrs=(1e-4, 3e-4, 1e-3, 3e-3))
    result = compare.sweep(compare.METHODS["sip-objective"], cfg, log=lambda *_: None)
    assert set(budgets) == {42.0} and result["budget"] == 42.0
    assert result["added_lrs"] == pytest.approx([1e-4 / 3, 1e-4 / 9])
    assert result["best_lr"] == pytest.approx(1e-4 / 3) and not result["best_on_grid_edge"]
    assert result["seconds_per_iteration"] == [0.02] * 6


def test_shared_grid_and_sweep_budget_are_checked() -> None:
    from agents.compare import CompareConfig

    with pytest.raises(ValueError, match="lrs"):
        CompareConfig(lrs=(1e-3,)).validate()
    with pytest.raises(ValueError, match="sweep_budget"):
        CompareConfig(sweep_budget=-1.0).validate()


def test_shared_grid_applies_to_adam_methods_only() -> None:
    from agents.compare import CompareConfig, grid_of

    cfg = CompareConfig(lrs=(3e-3, 1e-4))
    assert grid_of(METHODS["sip-objective"], cfg) == (1e-4, 3e-3)
    assert grid_of(METHODS["dp-adam"], cfg) == (1e-4, 3e-3)
    assert grid_of(METHODS["dp-sgd"], cfg) == METHODS["dp-sgd"].lrs  # another scale
    assert grid_of(METHODS["ppo"], cfg) == METHODS["ppo"].lrs


def test_env_kwargs_pose_every_run_alike_and_are_checked() -> None:
    """``--env-kwargs`` reaches every run's training config; a value that is not a JSON object
    is refused before anything runs."""
    from agents.compare import CompareConfig, run_config

    cfg = CompareConfig(env_kwargs='{"sensors": 10, "actuators": 8}', seeds=(0,))
    cfg.validate()
    for name in ("sip-objective", "dp-adam"):
        config = run_config(METHODS[name], cfg, lr=1e-3, seed=0, eval_seed=0, time_budget=1.0,
                            iterations=None, eval_every=10)
        assert config.env_kwargs == cfg.env_kwargs
    for bad in ("[1, 2]", "sensors=10", '"text"'):
        with pytest.raises(ValueError, match="env_kwargs must be a JSON object"):
            CompareConfig(env_kwargs=bad).validate()


def test_the_report_names_the_error_each_env_measures() -> None:
    from agents.compare import RELATIVE_ERROR, CompareConfig, error_description

    assert error_description(CompareConfig()) == RELATIVE_ERROR
    oscillators = error_description(CompareConfig(env_id="sip/CoupledOscillators-v0"))
    assert "absolute" in oscillators and oscillators != RELATIVE_ERROR

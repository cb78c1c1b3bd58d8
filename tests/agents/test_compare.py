"""The comparison's scoring rules on synthetic curves (no training)."""

from __future__ import annotations

import math

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

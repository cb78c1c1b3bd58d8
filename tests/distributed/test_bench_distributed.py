"""The pure parts of ``benchmarks/bench_distributed.py`` (settings and the Markdown table); the
timing itself is a benchmark, not a test. No wall-clock assertions."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_distributed as bd  # noqa: E402


def test_parse_args_quick_is_shorter_and_batch_must_split() -> None:
    full, quick = bd.parse_args([]), bd.parse_args(["--quick"])
    assert full.batch_size == quick.batch_size == 256 and full.device == "cpu"
    assert quick.repeats < full.repeats and quick.iterations < full.iterations


def test_markdown_reports_cases_costs_and_the_bar() -> None:
    args = bd.parse_args(["--quick"])
    case = {"env_id": bd.ENV_ID, "algo": "dp", "batch_size": 256, "samples_per_s_wall": [1.0],
            "samples_per_s_cpu": [1.0], "median_wall": 1000.0, "median_cpu": 1100.0}
    cost = {"env_id": bd.ENV_ID, "algo": "dp", "iteration_s_batch": 0.05,
            "iteration_s_half_batch": 0.03, "allreduce_s": 0.001, "ideal_speedup_2": 1.61,
            "measured_speedup_2_wall": 1.7, "measured_speedup_2_cpu": 1.65,
            "independent_speedup_2_wall": 1.9, "lockstep_speedup_2_wall": 1.8}
    results = {"cases": [{**case, "processes": 1}, {**case, "processes": 2}],
               "costs": [cost, {**cost, "algo": "sip", "allreduce_s": None,
                                "ideal_speedup_2": None, "measured_speedup_2_wall": None}],
               "note": "later env"}
    text = bd.markdown(results, {"loadavg_1_5_15_at_start": [0.1, 0.1, 0.1], "cpu_count": 2},
                       args)
    assert "| 50.0 | 30.0 | 1.00 | 1.61× | 1.70× | 1.65× | 1.90× | 1.80× | ≥ 1.6×: met |" in text
    assert "| – | – | – |" in text and "Note: later env" in text

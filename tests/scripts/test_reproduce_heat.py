"""scripts/reproduce_heat.py end to end on a tiny budget, and its configuration errors."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest
from script_loading import load_script

ROOT = Path(__file__).resolve().parents[2]


def _load(path: str) -> ModuleType:
    return load_script(path)


heat = _load("scripts/reproduce_heat.py")


def test_quick_settings_are_what_the_docstring_says() -> None:
    q = heat.quick(heat.Args())
    assert (q.budget, q.coarse_budget, q.batch_size, q.eval_size) == (120.0, 30.0, 32, 64)
    assert q.lr_factors == heat.Args().lr_factors and q.methods == ("sip", "adam", "sgd")


def test_one_worker_runs_in_process_and_writes_every_output(tmp_path: Path) -> None:
    out = tmp_path / "heat"
    assert heat.main(["--out", str(out), "--budget", "0.2", "--coarse-factors",
                      "--lr-factors", "1", "--batch-size", "2", "--eval-size", "2",
                      "--eval-points", "1", "--workers", "1", "--methods", "sip", "adam",
                      "--lr-schedule", "cosine"]) == 0
    for name in ("results.json", "results.md", "curves.png", "examples.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "results.json").read_text())
    assert [r["method"] for r in report["runs"]] == ["sip", "adam"]
    md = (out / "results.md").read_text()
    assert "validation 1000000, test 2000000" in md and "cosine learning-rate schedule" in md
    # SIP over Adam at each evaluation of the chosen runs, from their stored curves
    sip, adam = (r["curve"]["test_x_error"][-1] for r in report["runs"])
    assert f"| SIP / Adam | {sip / adam:.2f} |" in md
    assert heat.run_config(heat.Args(lr_schedule="cosine"), "adam", 1.0, 5.0).lr_schedule \
        == "cosine"


def test_fine_grid_is_extended_past_an_edge_holding_the_best() -> None:
    """Seed 0's committed quick run picked Adam at the fine grid's lower edge (3e-3 of
    {3e-3, 1e-2, 3e-2}) and SIP at its upper edge (3e-3 of {3e-4, 1e-3, 3e-3}): the rule now
    asks for 9e-4 and 9e-3 too; an interior best asks for nothing."""
    runs = [{"method": "adam", "lr_factor": f, "late_val_x_error": v}
            for f, v in ((3.0, 345.2), (10.0, 393.0), (30.0, 443.5))]
    runs += [{"method": "sip", "lr_factor": f, "late_val_x_error": v}
             for f, v in ((0.3, 254.4), (1.0, 214.8), (3.0, 211.4))]
    runs += [{"method": "sgd", "lr_factor": f, "late_val_x_error": v}
             for f, v in ((1.0, 500.0), (3.0, 450.0), (10.0, None))]
    assert heat._extension(runs, "adam") == pytest.approx(0.9)
    assert heat._extension(runs, "sip") == pytest.approx(9.0)
    assert heat._extension(runs, "sgd") is None  # best interior (the diverged rate is above it)


def test_iteration_budget_limits_fine_runs_only() -> None:
    """``--iterations N --budget 0``: fine runs stop after N iterations whatever the machine's
    load; coarse runs keep their time budget; the report says which limit held."""
    args = heat.Args(budget=0.0, iterations=1200, batch_size=32)
    heat.validate(heat.replace(args, methods=("sip",), coarse_factors=()))
    fine = heat.run_config(args, "sip", 3.0, args.budget, args.iterations)
    assert (fine.iterations, fine.time_budget, fine.lr) == (1200, 0.0, pytest.approx(3e-3))
    assert heat.run_config(args, "sip", 1.0, 30.0).time_budget == 30.0
    assert heat._limit({"budget": 0.0, "iterations": 1200, "clock": "cpu"}) == "1200 iterations"
    assert heat._limit({"budget": 120.0, "clock": "cpu"}) == "120 s of cpu time"


@pytest.mark.slow  # (≈ 20 s: every run in a spawned worker process)
def test_tiny_run_writes_every_output(tmp_path: Path) -> None:
    out = tmp_path / "heat"
    assert heat.main(["--out", str(out), "--budget", "0.3", "--coarse-budget", "0.2",
                      "--coarse-factors", "1", "1000", "--lr-factors", "1", "--batch-size", "2",
                      "--eval-size", "4", "--eval-points", "2", "--workers", "1",
                      "--methods", "sip", "adam"]) == 0
    for name in ("results.json", "results.md", "curves.png", "examples.png"):
        assert (out / name).is_file(), name
    report = json.loads((out / "results.json").read_text())
    assert len(report["coarse_runs"]) == 4 and len(report["runs"]) == 2
    # Adam at 1000× its rate diverges or loses; the fine stage centres on the validation winner.
    coarse_adam = [r for r in report["coarse_runs"] if r["method"] == "adam"]
    best_coarse = min(coarse_adam, key=lambda r: r["late_val_x_error"] or float("inf"))
    fine_adam = next(r for r in report["runs"] if r["method"] == "adam")
    assert fine_adam["lr_factor"] == best_coarse["lr_factor"]
    assert set(report["bars"]) >= {"sip_over_adam", "bar"}
    assert "SIP / Adam" in (out / "results.md").read_text()
    assert report["table"][0]["test_x_error_late"] is not None
    # Re-scoring the saved runs reproduces the picks and the table without training.
    again = tmp_path / "again"
    assert heat.main(["--from-json", str(out / "results.json"), "--out", str(again)]) == 0
    rescored = json.loads((again / "results.json").read_text())
    assert rescored["best"] == report["best"] and rescored["table"] == report["table"]
    assert (again / "examples.png").is_file()
    assert heat.main(["--from-json", str(tmp_path / "missing.json"), "--out", str(again)]) == 2


@pytest.mark.parametrize(("flags", "match"), [
    (["--methods", "newton"], "methods"), (["--budget", "0"], "budget"),
    (["--lr-factors", "-1"], "lr_factors"), (["--workers", "0"], "workers"),
    (["--device", "cuda:7"], "CUDA"), (["--max-extensions", "-1"], "max_extensions"),
    (["--iterations", "-1"], "iterations"),
    (["--budget", "0", "--iterations", "0"], "budget may be 0 with iterations > 0"),
])
def test_bad_settings_are_reported(flags: list[str], match: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    if "cuda:7" in flags:
        import torch
        if torch.cuda.is_available():
            pytest.skip("CUDA is available here")
    assert heat.main(["--out", str(tmp_path / "x"), *flags]) == 2
    assert match in capsys.readouterr().err
    assert not (tmp_path / "x").exists()  # nothing written for a bad configuration

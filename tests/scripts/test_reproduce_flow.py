"""scripts/reproduce_fluid.py and scripts/reproduce_shape_transition.py end to end on tiny
budgets (slow: each trains several short runs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_loading import load_script

fluid = load_script("scripts/reproduce_fluid.py")
shapes = load_script("scripts/reproduce_shape_transition.py")


@pytest.mark.slow
def test_reproduce_fluid_writes_json_table_and_plot(tmp_path: Path) -> None:
    assert fluid.main(["--quick", "--sweep-budget", "0.5", "--time-budget", "1",
                       "--methods", "sip", "adam", "--lrs", "1e-3", "5e-3", "--seeds", "0",
                       "--episodes", "4", "--eval-every", "1", "--out", str(tmp_path)]) == 0
    report = json.loads((tmp_path / "fluid_inverse_quick.json").read_text())
    assert set(report["methods"]) == {"sip", "adam"}
    assert (tmp_path / "fluid_inverse_quick.png").is_file()
    assert "Adam through the solver" in (tmp_path / "fluid_inverse_quick.md").read_text()


@pytest.mark.slow
def test_reproduce_shape_transition_writes_json_table_and_plot(tmp_path: Path) -> None:
    assert shapes.main(["--quick", "--sweep-budget", "0.3", "--time-budget", "0.5",
                        "--methods", "sip", "supervised", "--seeds", "0", "--episodes", "4",
                        "--gym-episodes", "1", "--eval-every", "1", "--reference-tasks", "4",
                        "--reference-iterations", "2", "--references", str(tmp_path / "r"),
                        "--out", str(tmp_path / "o")]) == 0
    report = json.loads((tmp_path / "o" / "results.json").read_text())
    assert report["open_loop_optimum"]["target_error_mean"] < report["zero_force"][
        "target_error_mean"]
    assert (tmp_path / "o" / "results.png").is_file()

"""scripts/reproduce_fluid.py and scripts/reproduce_shape_transition.py end to end on tiny
budgets (slow: each trains several short runs)."""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from script_loading import load_script

fluid = load_script("scripts/reproduce_fluid.py")
shapes = load_script("scripts/reproduce_shape_transition.py")


def test_fluid_sweep_extends_the_grid_past_an_edge(monkeypatch: pytest.MonkeyPatch) -> None:
    """Adam's (and SIP's) rate is swept: a best on the grid's edge adds rates past it until the
    best is interior; one given rate trains nothing. Training is faked (no solver)."""
    trained: list[float] = []

    def train(cfg: Any, write: bool, progress: bool) -> SimpleNamespace:
        trained.append(cfg.lr)
        assert cfg.time_budget == 7.0 and cfg.seed == 3 and cfg.clock == "cpu"
        return SimpleNamespace(final_eval={"val_velocity_l1": abs(math.log10(cfg.lr / 0.1))},
                               iterations=1)

    monkeypatch.setitem(fluid.METHODS["adam"], "module", SimpleNamespace(train=train))
    args = argparse.Namespace(grid=(8, 8), hidden=[4], batch_size=2, episodes=2, seeds=[3, 4],
                              sweep_budget=7.0, max_extensions=2)
    sweep, best, edge = fluid.sweep_lr("adam", args, [1e-3, 1e-2])
    assert trained == pytest.approx([1e-3, 1e-2, 1e-1, 1.0])
    assert best == pytest.approx(0.1) and not edge
    assert list(sweep) == [str(lr) for lr in sorted(trained)]
    trained.clear()
    args.max_extensions = 0
    assert fluid.sweep_lr("adam", args, [1e-3, 1e-2])[1:] == (1e-2, True)
    assert fluid.sweep_lr("adam", args, [5e-3]) == ({}, 5e-3, False) and len(trained) == 2


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

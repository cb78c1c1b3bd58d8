"""scripts/characterise_sip.py: the quick protocol, the table and plot, a tiny end-to-end run."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from script_loading import load_script

char = load_script("scripts/characterise_sip.py")


def test_quick_protocol_fits_the_stated_budget() -> None:
    """≥ 4 conditioning levels × 2 horizons × 3 methods, 15 s each: ≤ 20 CPU-minutes of
    training, i.e. ≤ 10 minutes of training on 2 workers."""
    q = char.quick(char.Args())
    runs = len(q.nus) * len(q.horizons) * len(q.methods) * len(q.lrs) * len(q.seeds)
    assert len(q.nus) >= 4 and len(q.horizons) >= 2 and q.max_extensions == 0
    assert {"sip-objective", "sip-unweighted", "dp-adam"} <= set(q.methods)
    assert runs * q.time_budget <= 20 * 60


def test_conditioning_is_the_target_bands_inverse_gain() -> None:
    cond = char.conditioning(char.DIFFUSION, 0.01, 16)  # mode 8, dt 0.01, L = 1
    assert cond["kappa"] == pytest.approx(math.exp(0.01 * (2 * math.pi * 8) ** 2 * 16 * 0.01))
    assert cond["grid_gain_per_step"] == pytest.approx(math.exp(0.01 * (2 * math.pi * 32) ** 2
                                                                * 0.01))


def _report() -> dict:
    methods = ["sip-objective", "sip-unweighted", "dp-adam"]
    table = [{"nu": nu, "horizon": t, "kappa": k, "log10_kappa": math.log10(k),
              "grid_gain_per_step": 57.0,
              **{m: {"best_lr": 1e-3, "best_on_grid_edge": m == "dp-adam",
                     "test_error_median": e * (i + 1), "test_errors": [e * (i + 1)]}
                 for i, m in enumerate(methods)}}
             for (nu, t, k, e) in ((0.001, 8, 1.2, 1e-3), (0.01, 8, 7.5, 2e-3))]
    config = {**{k: (list(v) if isinstance(v, tuple) else v)
                 for k, v in vars(char.quick(char.Args(quick=True))).items()
                 if k != "from_json"},
              "methods": methods}
    return {"config": config, "env_id": char.DIFFUSION, "table": table, "runs": [],
            "finished": "now"}


def test_from_json_rewrites_the_table_and_plot(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(_report()))
    assert char.main(["--from-json", str(tmp_path / "results.json")]) == 0
    md = (tmp_path / "results.md").read_text()
    assert "Reduced (--quick) protocol" in md and "(lr 0.001, edge)" in md
    assert "| 0.001 | 8 | 1.2 |" in md and "| 0.33 |" in md  # SIP objective / DP = 1/3
    assert (tmp_path / "conditioning.png").is_file()


@pytest.mark.parametrize(("flags", "match"), [(["--methods", "newton"], "methods"),
                                              (["--time-budget", "0"], "time-budget")])
def test_bad_settings_are_refused(flags: list[str], match: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    assert char.main(["--out", str(tmp_path / "x"), *flags]) == 2
    assert match in capsys.readouterr().err


@pytest.mark.slow  # (≈ 15 s: six tiny training runs)
def test_tiny_run_sweeps_extends_and_writes_every_output(tmp_path: Path) -> None:
    out = tmp_path / "c"
    assert char.main(["--out", str(out), "--nus", "0.01", "--horizons", "2", "--lrs", "1e-3",
                      "3e-3", "--seeds", "0", "1", "--time-budget", "0.2", "--eval-episodes",
                      "4", "--max-extensions", "1", "--workers", "1", "--batch-size", "4",
                      "--hidden", "8", "--methods", "sip-objective", "dp-adam"]) == 0
    report = json.loads((out / "results.json").read_text())
    for m in ("sip-objective", "dp-adam"):
        seed0 = [r for r in report["runs"] if r["method"] == m and r["seed"] == 0]
        assert len(seed0) in (2, 3)  # the grid, plus one rate if its best was on an edge
        assert [r["lr"] for r in report["runs"] if r["method"] == m and r["seed"] == 1] == \
            [report["table"][0][m]["best_lr"]]
    assert (out / "conditioning.png").is_file() and (out / "results.md").is_file()

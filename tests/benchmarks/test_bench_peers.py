"""The pure parts of ``benchmarks/bench_peers.py``: argument parsing, bars, JSON/markdown
writing, the fine-grid Burgers reference, and (when PhiFlow is importable) the agreement of
sipenv's physics with the PhiFlow reference implementations. No wall-clock assertions."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks import bench_peers as bp  # noqa: E402
from benchmarks.peers import phiflow_ref  # noqa: E402

HAVE_PHI = phiflow_ref.phiflow_version() is not None
needs_phi = pytest.mark.skipif(not HAVE_PHI, reason="PhiFlow not installed "
                               '(pip install -e ".[bench]")')


# --- argument parsing -----------------------------------------------------------------------


def test_parse_args_defaults_and_quick(tmp_path: Path) -> None:
    full = bp.parse_args([])
    assert full.threads == 1 and full.sections == bp.SECTIONS and not full.quick
    quick = bp.parse_args(["--quick", "--out", str(tmp_path), "--sections", "physics",
                           "envs", "--threads", "2", "--no-controlgym-install"])
    assert quick.quick and quick.out == tmp_path and quick.sections == ("physics", "envs")
    assert quick.threads == 2 and not quick.controlgym_install
    assert quick.repeats <= full.repeats and quick.target_s <= full.target_s
    assert quick.train_iterations <= full.train_iterations


@pytest.mark.parametrize("argv", [["--repeats", "0"], ["--target-s", "0"], ["--threads", "-1"],
                                  ["--sections", "nonsense"]])
def test_parse_args_rejects_bad_values(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        bp.parse_args(argv)


def test_burgers_substeps_respect_cfl() -> None:
    assert bp.burgers_substeps(128) == 20  # the env default suffices on 128 cells
    for n in (128, 1024, 4096):
        s = bp.burgers_substeps(n)
        assert 1.0 * (bp.BURGERS["dt"] / s) / (bp.BURGERS["length"] / n) <= 1.0


# --- bars, JSON and markdown ----------------------------------------------------------------


def _fake_rows() -> list[dict[str, Any]]:
    def t(ms: float) -> dict[str, Any]:
        return {"median_s": ms / 1e3, "q25_s": ms / 1e3, "q75_s": ms / 1e3, "repeats": 3,
                "calls_per_repeat": 10}

    phys = {"section": "physics", "n": 128, "batch": 64}
    roll = {"section": "rollout", "n": 128, "batch": 64, "horizon": 32, "first_call_s": 0.1,
            "note": ""}
    return [
        {**phys, "op": "diffusion", "impl": "sipenv", **t(0.02)},
        {**phys, "op": "diffusion", "impl": "sipenv free_step", **t(0.015)},
        {**phys, "op": "diffusion", "impl": "phiflow diffuse.fourier", **t(0.3)},
        {**phys, "op": "burgers", "impl": "sipenv", "substeps": 20, **t(0.5)},
        {**phys, "op": "burgers", "impl": "sipenv diffuse_every_substep=False", "substeps": 20,
         **t(0.25)},
        {**phys, "op": "burgers", "impl": "sipenv advection=semi_lagrangian", "substeps": 1,
         **t(0.1)},
        {**phys, "op": "burgers", "impl": "phiflow fourier+semi_lagrangian", **t(3.0)},
        {**roll, "impl": "sipenv", "peak_rss_increase_kib": 2000, **t(40)},
        {**roll, "impl": "sipenv advection=semi_lagrangian", "peak_rss_increase_kib": 500,
         **t(10)},
        {**roll, "impl": "sipenv save_substeps=False", "peak_rss_increase_kib": 100, **t(60)},
        {**roll, "impl": "phiflow eager", "peak_rss_increase_kib": 1000, **t(200)},
        {**roll, "impl": "phiflow jit", "peak_rss_increase_kib": 1000, **t(40)},
        {"section": "envs", "impl": "sipenv burgers", "variant": "",
         "env_id": "sip/ControlledBurgers-v0",
         "batch": 1024, "n": 128, "env_steps_per_s": 1e5, "cell_updates_per_s": 1.28e7,
         **t(10)},
        {"section": "envs", "impl": "sipenv burgers tuned", "variant": "", "malloc_tuned": True,
         "env_id": "sip/ControlledBurgers-v0", "batch": 1024, "n": 128,
         "env_steps_per_s": 4e5, "cell_updates_per_s": 5.12e7, **t(2)},
        {"section": "envs", "impl": "sipenv burgers sl", "variant": "advection=semi_lagrangian",
         "env_id": "sip/ControlledBurgers-v0", "batch": 1024, "n": 128,
         "env_steps_per_s": 1e6, "cell_updates_per_s": 1.28e8, **t(1)},
        {"section": "envs", "impl": "controlgym burgers", "env_id": "burgers", "batch": 1,
         "n": 256, "env_steps_per_s": 50.0, "cell_updates_per_s": 12800.0, **t(20)},
        {"section": "training", "impl": "sip", "env_id": "sip/ControlledBurgers-v0",
         "batch": 64, "iterations_per_s": 5.0, "sip_over_dp_cost": 1.5, **t(200)},
        {"section": "training", "impl": "dp", "env_id": "sip/CorrectedBurgers-v0",
         "batch": 64, "error": "ValueError: not applicable"},
    ]


def test_compute_bars_ratios_and_verdicts() -> None:
    """Bars are judged on the row computing what PhiFlow computes; the defaults are reported
    beside it with their own verdicts."""
    bars = bp.compute_bars(_fake_rows())
    default = "default (upwind, 20 sub-steps)"
    diffusion = bars["diffusion_step"]
    assert diffusion["ratio"] == pytest.approx(20.0) and diffusion["met"] is True
    assert diffusion["judged_on"].startswith("free_step")
    assert diffusion["variants"]["step(s, f) with a source"] == {"ratio": pytest.approx(15.0),
                                                                 "met": True}
    burgers = bars["burgers_step"]
    assert burgers["ratio"] == pytest.approx(30.0) and burgers["met"] is True
    assert burgers["variants"][default] == {"ratio": pytest.approx(6.0), "met": False}
    assert burgers["variants"]["upwind, diffuse_every_substep=False"]["ratio"] == \
        pytest.approx(12.0)
    assert bars["rollout_eager"]["ratio"] == pytest.approx(20.0)
    assert bars["rollout_eager"]["variants"][default]["ratio"] == pytest.approx(5.0)
    assert bars["rollout_jit"]["ratio"] == pytest.approx(4.0)
    assert bars["rollout_jit"]["variants"][default]["met"] is False
    assert bars["env_throughput"]["ratio"] == pytest.approx(20000.0)
    assert bars["env_throughput"]["variants"][default] == {"ratio": pytest.approx(2000.0),
                                                          "met": True}
    # the tuned-allocator row is its own variant, never mistaken for the default one
    assert bars["env_throughput"]["variants"][f"default, {bp.TUNED}"]["ratio"] == \
        pytest.approx(8000.0)
    memory = bars["rollout_memory"]
    assert memory["met"] is True and memory["memory_ratio"]["phiflow jit"] == pytest.approx(0.5)
    assert memory["variants"][default]["met"] is False
    assert memory["variants"][default]["memory_ratio"]["phiflow jit"] == pytest.approx(2.0)
    assert memory["variants"]["upwind, save_substeps=False"]["met"] is True


def test_compute_bars_without_peers_reports_none() -> None:
    rows = [r for r in _fake_rows() if not r["impl"].startswith(("phiflow", "controlgym"))]
    bars = bp.compute_bars(rows)
    for name in ("diffusion_step", "burgers_step", "rollout_eager", "rollout_jit",
                 "env_throughput", "rollout_memory"):
        assert bars[name]["met"] is None


def test_write_results_json_and_markdown(tmp_path: Path) -> None:
    rows = _fake_rows()
    result = {
        "settings": {"quick": True, "seed": 0},
        "environment": {"date_utc": "2026-01-01T00:00:00+00:00", "sipenv": "0.1.0",
                        "torch": "2.13.0", "torch_num_threads": 1, "phiflow": "3.4.0",
                        "phiml": "1.16.1", "cpu_count": 2, "platform": "Linux",
                        "loadavg_1_5_15_at_start": [0.1, 0.2, 0.3],
                        "loadavg_1_5_15_at_end": [0.1, 0.2, 0.3]},
        "rows": rows,
        "agreement": [
            {"op": "diffusion", "n": 128, "max_abs_diff": 1e-7, "atol": 1e-5, "agrees": True,
             "max_abs_change_of_step": 0.02},
            {"op": "burgers", "n": 128, "rtol": 0.05, "reference": "ref",
             "relative_change_of_step": 0.1, "rel_err_sipenv": 0.01, "agrees": True}],
        "rollout_extra": {"gradient_agreement_b1": [
            {"inputs": "smooth", "relative_l2_difference": 0.05, "cosine_similarity": 0.99}]},
        "controlgym": {"versions": {"controlgym": "1.0.0"}},
        "skipped": ["nothing really"],
        "bars": bp.compute_bars(rows),
    }
    json_path, md_path = bp.write_results(result, tmp_path / "out")
    loaded = json.loads(json_path.read_text())
    assert loaded["bars"]["diffusion_step"]["ratio"] == pytest.approx(20.0)
    md = md_path.read_text()
    assert ("| physics step N=128 B=64: PhiFlow diffuse.fourier / sipenv | ≥ 10× | free_step "
            "(the same operator) | 20× | yes |") in md
    assert "default (upwind, 20 sub-steps): 6× (**no**)" in md
    assert "**no**" in md  # a bar that is not met is said plainly
    assert "controlgym 1.0.0" in md and "Skipped: nothing really" in md
    assert "ValueError: not applicable" in md
    assert "1.50" in md  # the SIP/DP cost ratio


# --- numerics ---------------------------------------------------------------------------------


def test_burgers_reference_is_converged() -> None:
    u = bp._unit_peak_fields(2, 64, seed=0)
    coarse = bp.burgers_reference(u, refine=4)
    fine = bp.burgers_reference(u, refine=8, cfl=0.1)
    assert bp._rel(coarse, fine) < 1e-8
    assert bp._rel(coarse, u) > 0.05  # and the step does change the field


def test_burgers_reference_is_pure_diffusion_for_tiny_fields() -> None:
    u = 1e-8 * bp._unit_peak_fields(1, 64, seed=1, dtype=torch.float64)
    out = bp.burgers_reference(u)
    k = 2 * math.pi * torch.arange(33, dtype=torch.float64)
    exact = torch.fft.irfft(torch.fft.rfft(u) * torch.exp(-bp.BURGERS["nu"] * k**2
                                                          * bp.BURGERS["dt"]), n=64)
    assert bp._rel(out, exact) < 1e-6


def test_sipenv_burgers_within_tolerance_of_reference() -> None:
    from sipenv.physics import BurgersPhysics

    u = bp._unit_peak_fields(4, 128, seed=0)
    ref = bp.burgers_reference(u)
    errors = {}
    for options in ({}, {"diffuse_every_substep": False}, {"advection": "semi_lagrangian"}):
        phys = BurgersPhysics(**options, **bp.BURGERS)
        errors[str(options)] = bp._rel(phys.step(u, torch.zeros_like(u)), ref)
    assert all(e < bp.BURGERS_RTOL for e in errors.values()), errors
    # the upwind default is the more accurate scheme (measured ≈ 0.010 vs 0.030)
    assert errors["{}"] < 0.5 * errors["{'advection': 'semi_lagrangian'}"], errors


@needs_phi
@pytest.mark.parametrize("n", [32, 128])
def test_diffusion_agrees_with_phiflow(n: int) -> None:
    check = bp.check_diffusion_agreement(n)
    assert check["agrees"], check
    assert check["max_abs_change_of_step"] > 100 * check["max_abs_diff"]


@needs_phi
def test_burgers_agrees_with_phiflow_within_tolerance() -> None:
    check = bp.check_burgers_agreement(128)
    assert check["agrees"], check
    # PhiFlow's scheme in sipenv is PhiFlow's step to round-off (measured 5e-7), far below the
    # difference between the schemes
    assert check["same_scheme_max_abs_diff"] < 1e-5
    assert check["rel_err_sipenv_semi_lagrangian"] == pytest.approx(
        check["rel_err_phiflow_semi_lagrangian"], rel=1e-3)


@needs_phi
def test_phiflow_fourier_assumes_unit_spacing() -> None:
    """Why the reference rescales ν: with the physical ν, ``diffuse.fourier`` on a Δx = 1/N grid
    diffuses N² times too little."""
    from phi.physics import diffuse

    n = 64
    ref = phiflow_ref.make_diffusion(n, **bp.DIFFUSION)
    u = bp._unit_peak_fields(1, n, seed=0)
    grid = ref.to_field(u)
    unscaled = ref.to_torch(diffuse.fourier(grid, bp.DIFFUSION["nu"], bp.DIFFUSION["dt"]))
    assert float((unscaled - u).abs().max()) < 1e-5  # (almost) no diffusion at all


@needs_phi
def test_rollout_gradients_match_on_smooth_flow() -> None:
    check = bp.rollout_gradients_agree(seed=0, smooth=True)
    assert check["cosine_similarity"] > 0.98, check
    assert check["relative_l2_difference_semi_lagrangian"] < 1e-4, check  # measured 1.9e-6


@needs_phi
def test_semi_lagrangian_rollout_gradients_match_phiflow_through_shocks() -> None:
    check = bp.rollout_gradients_agree(seed=0, smooth=False)
    assert check["relative_l2_difference_semi_lagrangian"] < 1e-4, check  # measured 1.8e-6


# --- skipping peers that are not installed --------------------------------------------------


def test_missing_controlgym_venv_is_skipped_with_reason(tmp_path: Path) -> None:
    settings = bp.Settings(controlgym_venv=tmp_path / "nothing-here", controlgym_install=False)
    python, reason = bp.ensure_controlgym_venv(settings)
    assert python is None and "--no-controlgym-install" in reason
    rows, info = bp.bench_controlgym(settings)
    assert rows == [] and info["skipped"] == reason


def test_run_without_phiflow_skips_its_rows_and_says_how_to_install(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(phiflow_ref, "phiflow_version", lambda: None)
    settings = bp.Settings(out=tmp_path, sections=("physics",), repeats=1, target_s=1e-3,
                           warmup_s=0.0)
    threads = torch.get_num_threads()
    try:
        result = bp.run(settings)
    finally:
        torch.set_num_threads(threads)  # run() pins torch's threads for the process
    assert any('pip install -e ".[bench]"' in s for s in result["skipped"])
    assert result["rows"] and all(r["impl"].startswith("sipenv") for r in result["rows"])
    assert result["bars"]["diffusion_step"]["met"] is None
    assert "Skipped: PhiFlow rows" in (tmp_path / "bench_peers.md").read_text()

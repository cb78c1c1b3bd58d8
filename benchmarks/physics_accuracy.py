"""Measure the accuracy (and a few speed ratios) that the physics docstrings describe.

Regenerate with (from the repository root)::

    PYTHONPATH=. python benchmarks/physics_accuracy.py           # about 15 s on one core
    PYTHONPATH=. python benchmarks/physics_accuracy.py --quick   # shorter speed runs

It writes ``docs/results/physics_accuracy.json`` and ``docs/results/physics_accuracy.md``.

The docstrings of ``sipenv.physics.burgers`` (and friends) state *what* is measured and point
to ``docs/results/physics_accuracy.md``; the numbers live there, written by this script, and the
tests under ``tests/physics`` pin bounds on them. Every accuracy case is seeded and runs in float64
(deterministic); the speed ratios are wall-clock medians on the machine that ran the script.

Cases (``rel`` is the per-sample relative L2 error ``‖x − x*‖ / ‖x*‖``; median and worst over the
batch):

* Burgers inverse, upwind default (N = 128, ν = 0.003, dt = 0.03, 20 sub-steps): from the next
  state ``inverse_step(step(s, f), f, step(s, f))`` on smooth fields (max_mode 4, amplitude 0.1,
  32 samples, seed 11), on smooth two-bump states (amplitude 1, width ≥ 0.1) and on the steep
  reference states (``sample_initial_states``, seed 13, forces seed 14); as a local inverse
  started 10 % away from the preimage on the reference states (the setting SIP uses).
* Burgers inverse, semi-Lagrangian at 1 and 4 sub-steps: from the next state and 10 % away, on
  8 smooth states (amplitude 0.3, under a force, seed 0) and on the 32 steep reference states
  (seed 0, no force); and the same at 1 sub-step with a one-sweep reversed step instead of two
  (why ``SemiLagrangianAdvection`` reverses with two sweeps).
* The Riemann problem (u = 1 on [0.2, 0.5), N = 256, ν = 1e-6, 10 steps; exact shock at 0.65):
  shock position, mass lost, over/undershoot per scheme.
* One unforced step against an independent fine-grid solution (dealiased pseudo-spectral
  IF-RK4 on a 4× finer grid, ``benchmarks.bench_peers.burgers_reference``) for unit-peak
  smooth fields, at N = 128 and 1024, per scheme.
* Speed ratios (B = 64, N = 128): semi-Lagrangian vs upwind step; analytic vs plain-autograd
  backward through a 32-step rollout; diffusion ``step`` with a zero force vs ``free_step``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_peers import BURGERS, burgers_reference, burgers_substeps  # noqa: E402
from sipenv.physics import (  # noqa: E402
    BurgersPhysics,
    DiffusionPhysics,
    SemiLagrangianAdvection,
)
from sipenv.physics.burgers import periodic_gaussian, periodic_interpolate  # noqa: E402

F64 = torch.float64
SL = "semi_lagrangian"
OUT_JSON = ROOT / "docs" / "results" / "physics_accuracy.json"
OUT_MD = ROOT / "docs" / "results" / "physics_accuracy.md"
COMMAND = "PYTHONPATH=. python benchmarks/physics_accuracy.py"


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _rel(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a - b).norm(dim=-1) / b.norm(dim=-1)


def _stats(err: torch.Tensor) -> dict[str, float]:
    return {"median": float(err.median()), "worst": float(err.max())}


# --- Burgers inverse ------------------------------------------------------------------------------


def _bumps(phys: BurgersPhysics, batch: int, amplitude: float, min_width: float,
           seed: int) -> torch.Tensor:
    g = _gen(seed)

    def u(lo: float, hi: float) -> torch.Tensor:
        return lo + (hi - lo) * torch.rand(batch, generator=g, dtype=F64)

    x = phys.grid
    return (periodic_gaussian(x, u(0, amplitude), u(0.2, 0.4), u(min_width, 0.15), 1.0)
            + periodic_gaussian(x, u(-amplitude, 0), u(0.6, 0.8), u(min_width, 0.15), 1.0))


def upwind_inverse() -> dict[str, Any]:
    phys = BurgersPhysics()
    out: dict[str, Any] = {}
    force = phys.sample_fields(32, _gen(12), max_mode=4, dtype=F64)
    for name, s0 in (("smooth_fields", phys.sample_fields(32, _gen(11), max_mode=4,
                                                          amplitude=0.1, dtype=F64)),
                     ("smooth_bumps", _bumps(phys, 32, 1.0, 0.1, seed=11))):
        s1 = phys.step(s0, force)
        out[f"from_next_state_{name}"] = _stats(_rel(phys.inverse_step(s1, force, s1), s0))
    s0 = phys.sample_initial_states(32, _gen(13), dtype=F64)
    force = phys.sample_forces(32, _gen(14), dtype=F64)
    s1 = phys.step(s0, force)
    out["from_next_state_reference"] = _stats(_rel(phys.inverse_step(s1, force, s1), s0))
    pert = phys.sample_fields(32, _gen(15), max_mode=4, dtype=F64)
    start = s0 + 0.1 * pert * s0.norm(dim=-1, keepdim=True) / pert.norm(dim=-1, keepdim=True)
    out["local_10pct_reference"] = _stats(_rel(phys.inverse_step(s1, force, start), s0))
    # The semi-Lagrangian cases' setting (seed 0, no force, start s + 0.1 (s' − s)), to compare.
    s0 = phys.sample_initial_states(32, _gen(0), dtype=F64)
    zero = torch.zeros_like(s0)
    s1 = phys.step(s0, zero)
    out["from_next_state_reference_unforced"] = _stats(_rel(phys.inverse_step(s1, zero, s1), s0))
    near = s0 + 0.1 * (s1 - s0)
    out["local_10pct_reference_unforced"] = _stats(_rel(phys.inverse_step(s1, zero, near), s0))
    return out


class _OneSweepSemiLagrangian(SemiLagrangianAdvection):
    """The plain reversed step ``−SL(−v)``: one fixed-point sweep instead of two."""

    def reverse(self, u: torch.Tensor, ratio: float, cells: torch.Tensor) -> torch.Tensor:
        return periodic_interpolate(u, torch.add(cells, u, alpha=ratio))


def semi_lagrangian_inverse() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for substeps, sweeps in ((1, 2), (4, 2), (1, 1)):
        phys = BurgersPhysics(advection=SL, substeps=substeps)
        if sweeps == 1:
            object.__setattr__(phys, "_scheme", _OneSweepSemiLagrangian())
        key = f"substeps_{substeps}" + ("_one_sweep" if sweeps == 1 else "")
        gen = _gen(0)
        s = phys.sample_fields(8, gen, max_mode=4, amplitude=0.3, dtype=F64)
        f = phys.sample_fields(8, gen, max_mode=4, dtype=F64)
        s1 = phys.step(s, f)
        out[f"{key}_from_next_state_smooth"] = _stats(_rel(phys.inverse_step(s1, f, s1), s))
        out[f"{key}_local_10pct_smooth"] = _stats(
            _rel(phys.inverse_step(s1, f, s + 0.1 * (s1 - s)), s))
        s = phys.sample_initial_states(32, _gen(0), dtype=F64)
        zero = torch.zeros_like(s)
        s1 = phys.step(s, zero)
        out[f"{key}_from_next_state_reference"] = _stats(
            _rel(phys.inverse_step(s1, zero, s1), s))
        near = s + 0.1 * (s1 - s)
        out[f"{key}_local_10pct_reference"] = _stats(_rel(phys.inverse_step(s1, zero, near), s))
        out[f"{key}_start_10pct_reference"] = _stats(_rel(near, s))
    return out


# --- shocks and one-step accuracy -----------------------------------------------------------------


RIEMANN_EXACT_SHOCK = 0.5 + 0.5 * 10 * 0.03
"""Where the shock of the Riemann problem below is after 10 steps of dt = 0.03 (speed ½)."""


def riemann_problem(**physics_kwargs: Any) -> dict[str, float]:
    """The Riemann problem u = 1 on [0.2, 0.5), else 0, at ν → 0 (256 cells), after 10 steps:
    where its shock is (the u = ½ crossing), and how much mass and range the scheme lost."""
    phys = BurgersPhysics(n=256, nu=1e-6, **physics_kwargs)
    x = phys.grid
    u = ((x >= 0.2) & (x < 0.5)).to(F64)[None]
    mass0 = float(u.mean())
    for _ in range(10):
        u = phys.step(u, torch.zeros_like(u))
    front = [i for i in range(phys.n - 1) if x[i] > 0.45 and u[0, i] >= 0.5 > u[0, i + 1]]
    i = front[0]
    shock = float(x[i] + (u[0, i] - 0.5) / (u[0, i] - u[0, i + 1]) * phys.dx)
    return {"shock": shock, "shock_error_cells": (RIEMANN_EXACT_SHOCK - shock) / phys.dx,
            "mass_lost": 1 - float(u.mean()) / mass0, "dx": phys.dx,
            "overshoot": float(u.max()) - 1, "undershoot": -float(u.min())}


def riemann() -> dict[str, Any]:
    out: dict[str, Any] = {"exact_shock": RIEMANN_EXACT_SHOCK}
    for name, kw in (("upwind", {"substeps": 20}), ("semi_lagrangian_1", {"advection": SL}),
                     ("semi_lagrangian_20", {"advection": SL, "substeps": 20})):
        result = riemann_problem(**kw)
        del result["dx"]
        out[name] = result
    return out


def _unit_peak(batch: int, n: int, seed: int) -> torch.Tensor:
    u = DiffusionPhysics(n=n).sample_fields(batch, _gen(seed), max_mode=4, dtype=F64)
    return u / u.abs().amax(-1, keepdim=True)


def one_step_accuracy() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n in (128, 1024):
        u = _unit_peak(4, n, seed=0).float()
        ref = burgers_reference(u)
        substeps = burgers_substeps(n)  # 20, or more where the CFL condition needs them
        row = {}
        for name, kw in (("upwind", {"substeps": substeps}),
                         ("upwind_diffuse_once", {"substeps": substeps,
                                                  "diffuse_every_substep": False}),
                         ("semi_lagrangian", {"advection": SL})):
            phys = BurgersPhysics(n=n, **kw, **BURGERS)  # type: ignore[arg-type]
            row[name] = float((phys.free_step(u).double() - ref).norm() / ref.norm())
        row["semi_lagrangian_over_upwind"] = row["semi_lagrangian"] / row["upwind"]
        out[f"n_{n}"] = row
    return out


# --- speed ratios ---------------------------------------------------------------------------------


def _time(fn: Callable[[], Any], repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def speed(quick: bool) -> dict[str, Any]:
    return {f"batch_{b}": _speed(b, quick) for b in (1, 64)}


def _speed(batch: int, quick: bool) -> dict[str, Any]:
    repeats = 5 if quick else 15
    steps = 8 if quick else 32
    u = _unit_peak(batch, 128, seed=1).float()
    zero = torch.zeros_like(u)
    up, sl = BurgersPhysics(check_cfl=False), BurgersPhysics(advection=SL)
    t_up = _time(lambda: up.step(u, zero), repeats * 4)
    t_sl = _time(lambda: sl.step(u, zero), repeats * 4)

    def backward(phys: BurgersPhysics) -> Callable[[], None]:
        def run() -> None:
            s = u.clone().requires_grad_()
            x = s
            for _ in range(steps):
                x = phys.step(x, zero)
            x.square().sum().backward()
        return run

    t_an = _time(backward(BurgersPhysics(check_cfl=False)), repeats)
    t_ag = _time(backward(BurgersPhysics(check_cfl=False, analytic_derivatives=False)), repeats)
    diff = DiffusionPhysics()
    v = _unit_peak(batch, 64, seed=2).float()
    vzero = torch.zeros_like(v)
    t_free = _time(lambda: diff.free_step(v), repeats * 20)
    t_step = _time(lambda: diff.step(v, vzero), repeats * 20)
    return {"rollout_steps": steps, "threads": torch.get_num_threads(),
            "burgers_step_ms": {"upwind": 1e3 * t_up, "semi_lagrangian": 1e3 * t_sl},
            "burgers_upwind_over_semi_lagrangian_step": t_up / t_sl,
            "burgers_rollout_backward_ms": {"analytic": 1e3 * t_an, "autograd": 1e3 * t_ag},
            "burgers_autograd_over_analytic_backward": t_ag / t_an,
            "diffusion_step_over_free_step": t_step / t_free}


# --- report ---------------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return f"{x:.2g}" if abs(x) < 1e-2 or abs(x) >= 100 else f"{x:.3g}"


def _pct(x: float) -> str:
    return f"{100 * x:.1f} %" if abs(x) >= 1e-3 else f"{x:.1g} (round-off)"


def _ms(d: dict[str, float]) -> str:
    return f"{_fmt(d['median'])} / {_fmt(d['worst'])}"


def markdown(res: dict[str, Any]) -> str:
    up, sl, rm, acc, sp = (res[k] for k in ("burgers_upwind_inverse",
                                            "burgers_semi_lagrangian_inverse", "riemann",
                                            "one_step_accuracy", "speed"))
    lines = [
        "# Physics accuracy and speed ratios",
        "",
        f"Generated by `{COMMAND}` (add `--quick` for shorter speed runs); do not edit by hand.",
        f"Run {res['date']} with torch {res['torch']} on {res['machine']}. Accuracy cases are "
        "seeded float64 runs (deterministic); speed ratios are wall-clock medians on that "
        "machine. Tests under `tests/physics` pin bounds on these numbers; the docstrings of "
        "`sipenv.physics` say what is measured and point here.",
        "",
        "## Burgers local inverse (`BurgersPhysics.inverse_step`)",
        "",
        "Relative L2 error of the recovered state, median / worst over the batch. *From the "
        "next state*: `inverse_step(step(s, f), f, step(s, f))`; *10 % away*: started from a "
        "state 10 % off the preimage (how SIP uses it).",
        "",
        "| scheme | states | from the next state | 10 % away |",
        "|---|---|---|---|",
        f"| upwind (default, 20 sub-steps) | 32 smooth fields (amplitude 0.1) | "
        f"{_ms(up['from_next_state_smooth_fields'])} | |",
        f"| upwind | 32 smooth two-bump states (amplitude 1) | "
        f"{_ms(up['from_next_state_smooth_bumps'])} | |",
        f"| upwind | 32 steep reference states (shocks form within the step), reference "
        f"forces, seeds 13/14 | {_ms(up['from_next_state_reference'])} | "
        f"{_ms(up['local_10pct_reference'])} |",
        f"| upwind | 32 steep reference states, no force, seed 0 | "
        f"{_ms(up['from_next_state_reference_unforced'])} | "
        f"{_ms(up['local_10pct_reference_unforced'])} |",
    ]
    for key, label in (("substeps_1", "semi-Lagrangian, 1 sub-step"),
                       ("substeps_4", "semi-Lagrangian, 4 sub-steps"),
                       ("substeps_1_one_sweep", "semi-Lagrangian, 1 sub-step, one-sweep "
                                                "reversed step")):
        lines.append(f"| {label} | 8 smooth states (amplitude 0.3, forced) | "
                     f"{_ms(sl[key + '_from_next_state_smooth'])} | "
                     f"{_ms(sl[key + '_local_10pct_smooth'])} |")
        lines.append(f"| {label} | 32 steep reference states, no force, seed 0 | "
                     f"{_ms(sl[key + '_from_next_state_reference'])} | "
                     f"{_ms(sl[key + '_local_10pct_reference'])} (start: "
                     f"{_fmt(sl[key + '_start_10pct_reference']['median'])}) |")
    lines += [
        "",
        "## Shocks: the Riemann problem",
        "",
        f"u = 1 on [0.2, 0.5), N = 256, ν = 1e-6, 10 steps of 0.03; the exact shock is at "
        f"{rm['exact_shock']:.3g}.",
        "",
        "| scheme | shock at | behind by (cells) | mass lost | max u − 1 | −min u |",
        "|---|---|---|---|---|---|",
    ]
    for key, label in (("upwind", "upwind (default)"), ("semi_lagrangian_1",
                                                         "semi-Lagrangian, 1 sub-step"),
                       ("semi_lagrangian_20", "semi-Lagrangian, 20 sub-steps")):
        r = rm[key]
        lines.append(f"| {label} | {r['shock']:.3f} | {r['shock_error_cells']:.1f} | "
                     f"{_pct(r['mass_lost'])} | {_fmt(r['overshoot'])} | "
                     f"{_fmt(r['undershoot'])} |")
    lines += [
        "",
        "## One step against a fine-grid solution",
        "",
        "Relative L2 error of one unforced step of 4 unit-peak smooth fields (modes 1–4) "
        "against a dealiased pseudo-spectral IF-RK4 solution on a 4× finer grid (float64); "
        "ν = 0.003, dt = 0.03.",
        "",
        "| N | upwind | upwind, diffuse once per step | semi-Lagrangian | semi-Lagrangian / "
        "upwind |",
        "|---|---|---|---|---|",
    ]
    for n in (128, 1024):
        r = acc[f"n_{n}"]
        lines.append(f"| {n} | {_fmt(r['upwind'])} | {_fmt(r['upwind_diffuse_once'])} | "
                     f"{_fmt(r['semi_lagrangian'])} | {r['semi_lagrangian_over_upwind']:.2g}× |")
    lines += [
        "",
        "## Speed ratios",
        "",
        f"Float32, {sp['batch_1']['threads']} torch thread; wall-clock medians, so expect "
        "some spread between runs.",
        "",
        "| ratio | batch 1 | batch 64 |",
        "|---|---|---|",
        "| Burgers step, N = 128: upwind (20 sub-steps) / semi-Lagrangian (1) | "
        + " | ".join(f"{sp[b]['burgers_upwind_over_semi_lagrangian_step']:.3g}×"
                     for b in ("batch_1", "batch_64")) + " |",
        f"| Burgers {sp['batch_1']['rollout_steps']}-step rollout + backward, N = 128: plain "
        "autograd / analytic derivatives | "
        + " | ".join(f"{sp[b]['burgers_autograd_over_analytic_backward']:.3g}×"
                     for b in ("batch_1", "batch_64")) + " |",
        "| Diffusion, N = 64: `step` with a zero force / `free_step` | "
        + " | ".join(f"{sp[b]['diffusion_step_over_free_step']:.3g}×"
                     for b in ("batch_1", "batch_64")) + " |",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter speed runs")
    parser.add_argument("--out-json", type=Path, default=OUT_JSON)
    parser.add_argument("--out-md", type=Path, default=OUT_MD)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    res: dict[str, Any] = {
        "command": COMMAND + (" --quick" if args.quick else ""),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "torch": torch.__version__,
        "machine": f"{platform.machine()} {platform.processor() or platform.system()}",
        "burgers_upwind_inverse": upwind_inverse(),
        "burgers_semi_lagrangian_inverse": semi_lagrangian_inverse(),
        "riemann": riemann(),
        "one_step_accuracy": one_step_accuracy(),
        "speed": speed(args.quick),
    }
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    args.out_json.write_text(json.dumps(res, indent=2) + "\n")
    args.out_md.write_text(markdown(res))
    print(markdown(res))
    return res


if __name__ == "__main__":
    main()

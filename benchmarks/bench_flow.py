"""sipenv's 2-D incompressible flow against PhiFlow, and its own accuracy, in one run.

Sections (each a list of rows in the JSON and a table in the markdown):

1. ``accuracy`` — sipenv alone (float64 unless stated): the Taylor–Green vortex's error and
   measured convergence order per advection scheme at a fixed Courant number, pure advection's
   order, the divergence after a step (float32 and float64), the inverse round trip at the defaults
   (velocity and markers), ``force_for``'s exactness, and the force scale between sampled states.
2. ``agreement`` — before timing, what is comparable to PhiFlow: semi-Lagrangian advection of a
   centred marker by the same centred divergence-free velocity must agree to float32 round-off
   (``AGREE_ATOL``). The full steps differ by discretisation (sipenv: collocated velocity, exact
   spectral projection; PhiFlow: staggered velocity, finite-difference CG projection); their
   relative difference after one step is reported, with each side's divergence in its own sense.
3. ``step`` — one step (advect velocity, force, project, advect marker) at 64² and 128²,
   B ∈ {1, 16}: sipenv (both schemes) vs PhiFlow eager and under ``math.jit_compile``.
4. ``rollout`` — a 16-step rollout plus the backward pass for the 16 force fields
   (``∂ ½‖m_16 − m*‖² / ∂f_t``), with the peak memory of one call.

Timing: one torch thread (``--threads``); every case is warmed up (PhiFlow's ``jit_compile``
needs a few slow tracing calls), then timed over ``--repeats`` repeats; rows report the median and
IQR of the time per call. The machine's load average is recorded at the start and per section.

Peak memory (Linux only; "n/a" elsewhere), two measures of one rollout + backward call:

* ``peak_mib`` (every implementation, same process as the timings): glibc's free heap pages
  are handed back to the OS (``malloc_trim(0)``), the kernel's peak-RSS counter is reset
  (``/proc/self/clear_refs``), and the row reports ``VmHWM`` after the call minus ``VmRSS``
  before it. Memory glibc keeps below its trim threshold (128 KiB by default) can still serve
  the call unseen, so this is a close lower bound of the call's working set, for every row alike.
* ``peak_mib_fresh`` (sipenv rows): the same in a fresh subprocess with glibc told to serve every
  allocation ≥ 4 KiB by ``mmap`` (``MALLOC_MMAP_THRESHOLD_=4096``), so freed memory returns to the
  OS at once and the resident set follows live memory: the call's true peak. (Not done for
  PhiFlow's ``jit_compile``, whose tracing alone takes minutes per process; that setting also
  slows small allocations by ~40 %, so timings never run under it.)

PhiFlow rows need ``phiflow`` importable by the running interpreter (e.g. run this script with the
Python of a virtual environment that has it); without it they are skipped with a message.

Usage::

    python benchmarks/bench_flow.py --quick        # 64², the bars' cases: ≈ 20 s without
                                                   # PhiFlow; with it ≈ 4 min on an idle
                                                   # machine (PhiFlow's jit tracing of the
                                                   # rollout gradient alone takes ≈ 2 min),
                                                   # ≈ 10 min at load 4 on 2 cores
    python benchmarks/bench_flow.py                # 64² and 128², B ∈ {1, 16}
"""

from __future__ import annotations

import argparse
import ctypes
import json
import math
import os
import re
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `python benchmarks/bench_flow.py` from a checkout
    sys.path.insert(0, str(ROOT))

from benchmarks import common  # noqa: E402
from benchmarks.common import display_path, loadavg  # noqa: E402
from benchmarks.peers import phiflow_flow  # noqa: E402
from sipenv.physics.flow import IncompressibleFlowPhysics  # noqa: E402

HORIZON = 16
AGREE_ATOL = 1e-5  # max |ours − PhiFlow| of marker advection, unit-range marker: f32 round-off
BARS = {  # name: (bar, description); judged at 64², B = 16, one thread
    "step_jit": (30.0, "one step 64² B=16: PhiFlow jit_compile / sipenv"),
    "rollout_jit": (10.0, "16-step rollout+backward 64² B=16: PhiFlow jit_compile / sipenv"),
}
MMAP_ENV = "MALLOC_MMAP_THRESHOLD_"


# --- measurement helpers ------------------------------------------------------------------------

def _status() -> dict[str, int] | None:
    try:
        text = Path("/proc/self/status").read_text()
    except OSError:
        return None
    return {k: int(re.search(k + r":\s+(\d+)", text).group(1))  # type: ignore[union-attr]
            for k in ("VmRSS", "VmHWM")}


def _malloc_trim() -> None:
    """Hand glibc's free heap pages back to the OS (``malloc_trim(0)``), so that the resident
    set before a call is its live memory and the call's allocations fault pages in anew."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc
        pass


def peak_memory_mib(fn: Callable[[], Any]) -> float | None:
    """Peak RSS increase of one call of ``fn`` in MiB (module docstring), or ``None``."""
    _malloc_trim()
    before = _status()
    if before is None:
        return None
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return None
    fn()
    after = _status()
    assert after is not None
    return (after["VmHWM"] - before["VmRSS"]) / 1024


def time_call(fn: Callable[[], Any], *, repeats: int, target_s: float, warmup: int = 2
              ) -> dict[str, Any]:
    """Median and IQR of the time per call (seconds) over ``repeats`` repeats."""
    start = time.perf_counter()
    for _ in range(warmup):
        fn()
    per_call = max((time.perf_counter() - start) / max(warmup, 1), 1e-7)
    calls = max(1, int(target_s / per_call))
    samples = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - t) / calls)
    q = statistics.quantiles(samples, n=4) if len(samples) > 1 else [samples[0]] * 3
    return {"median_s": statistics.median(samples), "q25_s": q[0], "q75_s": q[2],
            "repeats": repeats, "calls_per_repeat": calls}


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).norm() / b.norm())


# --- 1. accuracy --------------------------------------------------------------------------------

def _taylor_green_error(n: int, advection: str, courant: float = 0.4) -> float:
    two_pi = 2 * math.pi
    steps = round(1.0 / (courant * two_pi / n))
    phys = IncompressibleFlowPhysics(shape=(n, n), length=(two_pi, two_pi), dt=1.0 / steps,
                                     markers=0, advection=advection)
    y, x = phys.domain.coordinates(dtype=torch.float64)
    u0 = torch.stack((-torch.cos(x) * torch.sin(y), torch.sin(x) * torch.cos(y)))[None]
    u, zero = u0, torch.zeros_like(u0)
    for _ in range(steps):
        u = phys.step(u, zero)
    return _rel(u, u0)


def advection_error(n: int, advection: str) -> float:
    """Relative L2 error of a smooth scalar carried by a uniform velocity for unit time, Courant
    numbers (0.37, 0.21) per axis: pure advection, no splitting (``tests/physics/test_flow.py``
    fits its convergence order)."""
    two_pi = 2 * math.pi
    steps = n // 8
    phys = IncompressibleFlowPhysics(shape=(n, n), length=(two_pi, two_pi), dt=1 / steps,
                                     markers=1, advection=advection)
    y, x = phys.domain.coordinates(dtype=torch.float64)
    dx = two_pi / n
    vy, vx = 0.37 * dx * steps, 0.21 * dx * steps
    vel = torch.stack((torch.full_like(x, vy), torch.full_like(x, vx)))[None]

    def scalar(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return (torch.sin(x) * torch.cos(2 * y) + 0.5 * torch.cos(x))[None, None]

    m = scalar(y, x)
    for _ in range(steps):
        m = phys.advect(m, vel)
    return _rel(m, scalar(y - vy, x - vx))


def _order(errors: list[float]) -> float:
    return math.log2(errors[0] / errors[-1]) / (len(errors) - 1)


def accuracy_rows() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    sizes = (16, 32, 64, 128)
    for advection in ("semi_lagrangian", "mac_cormack"):
        for name, fn in (("Taylor–Green, whole step, Courant 0.4, t = 1", _taylor_green_error),
                         ("pure advection, uniform velocity, Courant (0.37, 0.21)",
                          advection_error)):
            errors = [fn(n, advection) for n in sizes]
            rows.append({"quantity": f"{name}: rel. L2 error at N = {sizes}",
                         "advection": advection, "value": [float(f"{e:.3g}") for e in errors],
                         "order": round(_order(errors), 2)})
    g = torch.Generator()
    for dtype in (torch.float32, torch.float64):
        phys = IncompressibleFlowPhysics()
        s = phys.sample_fields(16, g.manual_seed(12), dtype=dtype)
        force = phys.project(0.05 * phys.sample_velocities(16, g.manual_seed(13), dtype=dtype))
        nxt = phys.step(s, force)
        div = phys.divergence(nxt[:, :2]).flatten(1).norm(dim=1) / phys.gradient_norm(nxt[:, :2])
        back = phys.inverse_step(nxt, force, nxt)
        err_u = (back[:, :2] - s[:, :2]).flatten(1).norm(dim=1) / s[:, :2].flatten(1).norm(dim=1)
        err_m = (back[:, 2:] - s[:, 2:]).flatten(1).norm(dim=1) / s[:, 2:].flatten(1).norm(dim=1)
        found = phys.force_for(s, nxt)
        reached = phys.step(s, found)
        tag = str(dtype).replace("torch.", "")
        rows += [
            {"quantity": f"divergence after a step, ‖∇·u‖/‖∇u‖ (spectral), max of 16 ({tag})",
             "advection": "semi_lagrangian", "value": float(f"{float(div.max()):.3g}")},
            {"quantity": f"inverse round trip, velocity rel. L2, median / max of 16 ({tag})",
             "advection": "semi_lagrangian",
             "value": [float(f"{float(err_u.median()):.3g}"),
                       float(f"{float(err_u.max()):.3g}")]},
            {"quantity": f"inverse round trip, markers rel. L2, median / max of 16 ({tag})",
             "advection": "semi_lagrangian",
             "value": [float(f"{float(err_m.median()):.3g}"), float(f"{float(err_m.max()):.3g}")]},
            {"quantity": f"force_for: velocity reached, rel. L2 ({tag})",
             "advection": "semi_lagrangian",
             "value": float(f"{_rel(reached[:, :2], nxt[:, :2]):.3g}")},
        ]
    # The inverse's accuracy against the strain number dt·max|∇u| (default sampler: max_mode 3).
    phys = IncompressibleFlowPhysics()
    for amplitude in (0.5, 1.0, 2.0):
        s = phys.sample_fields(16, g.manual_seed(20), amplitude=amplitude, dtype=torch.float64)
        d = phys.factors("cpu", torch.float64).derivative
        grads = torch.fft.irfft2(d[:, None] * torch.fft.rfft2(s[:, :2])[:, None], s=phys.shape)
        strain = float(grads.abs().amax((1, 2, 3, 4)).median()) * phys.dt
        zero = torch.zeros_like(s[:, :2])
        nxt = phys.step(s, zero)
        back = phys.inverse_step(nxt, zero, nxt)
        err = (back[:, :2] - s[:, :2]).flatten(1).norm(dim=1) / s[:, :2].flatten(1).norm(dim=1)
        rows.append({"quantity": f"inverse, velocity rel. L2 median / max, RMS speed {amplitude} "
                                 f"(median strain dt·max abs ∇u = {strain:.2f})",
                     "advection": "semi_lagrangian",
                     "value": [float(f"{float(err.median()):.3g}"),
                               float(f"{float(err.max()):.3g}")]})
    # Force scale: the force that takes a sampled state to a state with an independent velocity
    # of the same RMS speed 1 in one step (dt = 1), and between consecutive steps of a run.
    s = phys.sample_fields(64, g.manual_seed(30), dtype=torch.float64)
    other = phys.sample_fields(64, g.manual_seed(31), dtype=torch.float64)
    f = phys.force_for(s, other)
    rms = f.square().sum(1).mean((-2, -1)).sqrt()
    rows.append({"quantity": "force scale: RMS of the force to reach an independent velocity "
                             "(RMS speed 1) in one step, dt = 1, median / max of 64",
                 "advection": "semi_lagrangian",
                 "value": [float(f"{float(rms.median()):.3g}"), float(f"{float(rms.max()):.3g}")]})
    return rows


# --- 2–4. PhiFlow comparison -----------------------------------------------------------------

def _state(n: int, batch: int) -> tuple[IncompressibleFlowPhysics, torch.Tensor]:
    phys = IncompressibleFlowPhysics(shape=(n, n))
    return phys, phys.sample_fields(batch, torch.Generator().manual_seed(n + batch))


def agreement_rows(n: int) -> list[dict[str, Any]]:
    phys, s = _state(n, 16)
    ref = phiflow_flow.PhiFlowSmoke((n, n))
    ours = phys.advect(s[:, 2:], s[:, :2])[:, 0]
    theirs = ref.marker_to_torch(ref.advect_marker(ref.marker(s[:, 2]),
                                                   ref.centred_velocity(s[:, :2])))
    diff = float((ours - theirs).abs().max())
    zero = torch.zeros(16, 2, n, n)
    mine = phys.step(s, zero)
    v1, m1, pressure = ref.step(ref.staggered_velocity(s[:, :2]), ref.marker(s[:, 2]),
                                ref.staggered_velocity(zero))
    p = ref.p

    def fd_divergence(v: Any) -> float:
        div = p.field.divergence(v).values
        return float(p.math.max(abs(div), dim=div.shape).native())

    force = ref.staggered_velocity(zero)
    warm = ref.step(v1, m1, force, pressure)[0]  # second step, CG warm-started
    jit_step = ref.step_fn(True)
    v_jit, m_jit, p_jit = jit_step(ref.staggered_velocity(s[:, :2]), ref.marker(s[:, 2]), force)
    warm_jit = jit_step(v_jit, m_jit, force, p_jit)[0]
    spectral = float((phys.divergence(mine[:, :2]).flatten(1).norm(dim=1)
                      / phys.gradient_norm(mine[:, :2])).max())
    return [
        {"check": f"marker advection by the same centred velocity, {n}², B=16: max abs Δ",
         "value": diff, "tolerance": AGREE_ATOL, "ok": diff <= AGREE_ATOL},
        {"check": f"one full step, {n}²: velocity rel. L2 difference (discretisation)",
         "value": _rel(ref.velocity_to_torch(v1), mine[:, :2]), "tolerance": None, "ok": None},
        {"check": f"one full step, {n}²: marker rel. L2 difference (discretisation)",
         "value": _rel(ref.marker_to_torch(m1), mine[:, 2]), "tolerance": None, "ok": None},
        {"check": "PhiFlow eager, first step (CG from zero): max abs finite-difference "
                  "divergence (solves flagged Diverged return early, suppressed)",
         "value": fd_divergence(v1), "tolerance": None, "ok": None},
        {"check": "PhiFlow eager, second step (CG warm-started, as in a rollout): max abs "
                  "finite-difference divergence", "value": fd_divergence(warm),
         "tolerance": None, "ok": None},
        {"check": "PhiFlow jit_compile, first / second step: max abs finite-difference "
                  "divergence", "value": [fd_divergence(v_jit), fd_divergence(warm_jit)],
         "tolerance": None, "ok": None},
        {"check": "sipenv: max ‖spectral divergence‖/‖∇u‖ after its step",
         "value": spectral, "tolerance": None, "ok": None},
    ]


def _ours_step(n: int, batch: int, advection: str) -> Callable[[], Any]:
    phys = IncompressibleFlowPhysics(shape=(n, n), advection=advection)
    s = phys.sample_fields(batch, torch.Generator().manual_seed(n + batch))
    force = torch.zeros(batch, 2, n, n)
    return lambda: phys.step(s, force)


def _ours_rollout(n: int, batch: int, advection: str) -> Callable[[], Any]:
    phys = IncompressibleFlowPhysics(shape=(n, n), advection=advection)
    s = phys.sample_fields(batch, torch.Generator().manual_seed(n + batch))
    target = phys.sample_fields(batch, torch.Generator().manual_seed(n + batch + 1))[:, 2:]

    def run() -> torch.Tensor:
        forces = torch.zeros(HORIZON, batch, 2, n, n, requires_grad=True)
        x = s
        for t in range(HORIZON):
            x = phys.step(x, forces[t])
        loss = 0.5 * (x[:, 2:] - target).square().sum()
        (grad,) = torch.autograd.grad(loss, forces)
        return grad

    return run


def _phi_step(n: int, batch: int, jit: bool) -> Callable[[], Any]:
    _, s = _state(n, batch)
    ref = phiflow_flow.PhiFlowSmoke((n, n))
    v, m = ref.staggered_velocity(s[:, :2]), ref.marker(s[:, 2])
    force = ref.staggered_velocity(torch.zeros(batch, 2, n, n))
    _, _, pressure = ref.step(v, m, force)  # a warm start, as in a rollout
    fn = ref.step_fn(jit)
    return lambda: fn(v, m, force, pressure)


def _phi_rollout(n: int, batch: int, jit: bool) -> Callable[[], Any]:
    phys, s = _state(n, batch)
    target = phys.sample_fields(batch, torch.Generator().manual_seed(n + batch + 1))[:, 2]
    ref = phiflow_flow.PhiFlowSmoke((n, n))
    v, m = ref.staggered_velocity(s[:, :2]), ref.marker(s[:, 2])
    forces = ref.staggered_velocity(torch.zeros(HORIZON, batch, 2, n, n), time_axis=True)
    goal = ref.marker(target)
    fn = ref.rollout_grad_fn(HORIZON, jit)
    return lambda: fn(v, m, forces, goal)


def fresh_peak_memory_mib(n: int, batch: int, threads: int) -> float | None:
    """sipenv's rollout + backward peak in a fresh ``mmap``-only process (module docstring)."""
    if not sys.platform.startswith("linux"):
        return None
    env = {**os.environ, MMAP_ENV: "4096", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--threads",
                          str(threads), "--memory-worker", str(n), str(batch)],
                         capture_output=True, text=True, env=env, timeout=600, check=False)
    try:
        value = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
    except (IndexError, KeyError, json.JSONDecodeError):
        print(f"memory worker failed: {out.stderr[-500:]}", file=sys.stderr)
        return None
    return None if value is None else float(value)


def timing_rows(section: str, cases: list[tuple[int, int]], impls: list[str], *,
                repeats: int, target_s: float, have_phi: bool,
                threads: int = 1) -> list[dict[str, Any]]:
    rows = []
    for n, batch in cases:
        for impl in impls:
            if impl.startswith("PhiFlow") and not have_phi:
                continue
            jit = impl.endswith("jit_compile")
            if section == "step":
                fn = (_phi_step(n, batch, jit) if impl.startswith("PhiFlow")
                      else _ours_step(n, batch, impl.split("=")[-1]))
            else:
                fn = (_phi_rollout(n, batch, jit) if impl.startswith("PhiFlow")
                      else _ours_rollout(n, batch, impl.split("=")[-1]))
            peer = impl.startswith("PhiFlow")
            row: dict[str, Any] = {"section": section, "impl": impl, "size": n, "batch": batch}
            if peer and section == "rollout":
                # Tens of seconds per call: the jit's tracing call (≈ 2 min at 64², B = 16) as
                # the only warm-up, then one call timed and measured for memory at once.
                for _ in range(1 if jit else 0):
                    fn()
                start = time.perf_counter()
                row["peak_mib"] = peak_memory_mib(fn)
                elapsed = time.perf_counter() - start
                row.update({"median_s": elapsed, "q25_s": elapsed, "q75_s": elapsed,
                            "repeats": 1, "calls_per_repeat": 1})
            else:
                row.update(time_call(fn, repeats=repeats, target_s=target_s,
                                     warmup=3 if jit else (1 if peer else 2)))
                if section == "rollout":
                    row["peak_mib"] = peak_memory_mib(fn)
                    row["peak_mib_fresh"] = fresh_peak_memory_mib(n, batch, threads)
            timing = row
            row["loadavg"] = loadavg()
            print(f"  {section} {impl:32s} {n}² B={batch:<3d} {timing['median_s'] * 1e3:10.2f} ms"
                  + (f"  peak {row['peak_mib']:.1f} MiB" if row.get("peak_mib") is not None
                     else ""), flush=True)
            rows.append(row)
    return rows


def _ratio(rows: list[dict[str, Any]], section: str, peer: str, ours: str, n: int = 64,
           batch: int = 16) -> float | None:
    def find(impl: str) -> dict[str, Any] | None:
        return next((r for r in rows if r["section"] == section and r["impl"] == impl
                     and r["size"] == n and r["batch"] == batch), None)

    a, b = find(peer), find(ours)
    return None if a is None or b is None else a["median_s"] / b["median_s"]


def summarise(results: dict[str, Any]) -> None:
    """Add the bars (ratios from the rows) and the memory note to ``results``."""
    sl = "sipenv advection=semi_lagrangian"
    results["bars"] = {
        "step_jit": {"bar": BARS["step_jit"][0], "description": BARS["step_jit"][1],
                     "measured": _ratio(results["step"], "step", "PhiFlow jit_compile", sl)},
        "rollout_jit": {"bar": BARS["rollout_jit"][0], "description": BARS["rollout_jit"][1],
                        "measured": _ratio(results["rollout"], "rollout", "PhiFlow jit_compile",
                                           sl)},
    }
    mem = {r["impl"]: r.get("peak_mib") for r in results["rollout"]
           if r["size"] == 64 and r["batch"] == 16}
    fresh = {r["impl"]: r.get("peak_mib_fresh") for r in results["rollout"]
             if r["size"] == 64 and r["batch"] == 16}
    ours_peak, their_peak = fresh.get(sl), mem.get("PhiFlow jit_compile")
    results["bars"]["memory"] = {
        "bar": 1.0, "description": "rollout+backward 64² B=16 peak memory: PhiFlow jit_compile "
        "(lower bound) / sipenv (true peak)",
        "measured": None if not ours_peak or their_peak is None else their_peak / ours_peak}
    if mem.get(sl) is not None and mem.get("PhiFlow jit_compile") is not None:
        results["memory_note"] = (
            f"Peak memory of one rollout + backward (64², B = 16, `peak_mib`, same process, "
            f"same method): sipenv {mem[sl]:.1f} MiB, PhiFlow jit_compile "
            f"{mem['PhiFlow jit_compile']:.1f} MiB; sipenv in a fresh mmap-only process "
            f"(`peak_mib_fresh`, its true peak): {fresh.get(sl) or float('nan'):.1f} MiB.")


# --- report -------------------------------------------------------------------------------------

def markdown(results: dict[str, Any]) -> str:
    env = results["environment"]
    lines = ["# sipenv 2-D incompressible flow vs PhiFlow", "",
             f"Generated by `{results['command']}` on {env['date_utc']} (torch {env['torch']}, "
             f"PhiFlow {env.get('phiflow') or 'not installed'}, "
             f"{env['torch_num_threads']} thread(s), {env['cpu_count']} CPUs, load average at "
             f"start {env['loadavg_1_5_15_at_start']}). Medians over repeats; ratios from the "
             "same run. Method: `benchmarks/bench_flow.py` docstring.", ""]
    if results.get("skipped"):
        lines += [f"**Skipped:** {results['skipped']}", ""]
    lines += ["## Bars (64², B = 16, one thread)", "", "| bar | required | measured | met |",
              "|---|---|---|---|"]
    for bar in results["bars"].values():
        got = bar["measured"]
        strict = bar["bar"] == 1.0  # "lower peak memory": strictly above 1
        met = got is not None and (got > bar["bar"] if strict else got >= bar["bar"])
        lines.append(f"| {bar['description']} | {'>' if strict else '≥'} {bar['bar']}× | "
                     + (f"{got:.1f}× | {'yes' if met else 'no'} |"
                        if got is not None else "n/a | n/a |"))
    if results.get("memory_note"):
        lines += ["", results["memory_note"]]
    lines += ["", "## Agreement (before timing)", "", "| check | value | tolerance | ok |",
              "|---|---|---|---|"]
    for r in results["agreement"]:
        tol = "" if r["tolerance"] is None else f"{r['tolerance']:g}"
        ok = "" if r["ok"] is None else ("yes" if r["ok"] else "**no**")
        value = (", ".join(f"{v:.3g}" for v in r["value"]) if isinstance(r["value"], list)
                 else f"{r['value']:.3g}")
        lines.append(f"| {r['check']} | {value} | {tol} | {ok} |")
    for section, title in (("step", "One step"), ("rollout",
                                                  f"{HORIZON}-step rollout + backward")):
        lines += ["", f"## {title}", "",
                  "| impl | grid | B | median ms | IQR ms | peak MiB | peak MiB (fresh) |",
                  "|---|---|---|---|---|---|---|"]
        for r in results[section]:
            peak, fresh_peak = r.get("peak_mib"), r.get("peak_mib_fresh")
            lines.append(f"| {r['impl']} | {r['size']}² | {r['batch']} | "
                         f"{r['median_s'] * 1e3:.2f} | {r['q25_s'] * 1e3:.2f}–"
                         f"{r['q75_s'] * 1e3:.2f} | {'' if peak is None else f'{peak:.1f}'} | "
                         f"{'' if fresh_peak is None else f'{fresh_peak:.1f}'} |")
    lines += ["", "## Accuracy of sipenv's model", "", "| quantity | scheme | value | order |",
              "|---|---|---|---|"]
    for r in results["accuracy"]:
        lines.append(f"| {r['quantity']} | {r['advection']} | {r['value']} | "
                     f"{r.get('order', '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="64² only (the bars' cases)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=None)
    parser.add_argument("--target-s", type=float, default=None,
                        help="seconds per repeat of fast cases")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--sections", nargs="+", default=["accuracy", "agreement", "step",
                                                          "rollout"])
    parser.add_argument("--memory-worker", type=int, nargs=2, metavar=("N", "B"),
                        help=argparse.SUPPRESS)  # internal: fresh-process peak memory
    parser.add_argument("--rerender", action="store_true",
                        help="recompute the bars and the markdown from OUT/bench_flow.json")
    args = parser.parse_args(argv)
    if args.rerender:
        results = json.loads((args.out / "bench_flow.json").read_text())
        summarise(results)
        (args.out / "bench_flow.json").write_text(json.dumps(results, indent=1) + "\n")
        (args.out / "bench_flow.md").write_text(markdown(results))
        return 0
    torch.set_num_threads(args.threads)
    if args.memory_worker:
        n, batch = args.memory_worker
        fn = _ours_rollout(n, batch, "semi_lagrangian")
        for _ in range(2):
            fn()
        print(json.dumps({"peak_mib": peak_memory_mib(fn)}))
        return 0
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    warnings.filterwarnings("ignore")  # PhiFlow's rank-deficiency and sparse-tensor warnings
    repeats = args.repeats or (3 if args.quick else 5)
    target_s = args.target_s or (0.3 if args.quick else 1.0)
    phi_version = phiflow_flow.phiflow_version()
    have_phi = phi_version is not None
    results: dict[str, Any] = {
        "command": "python benchmarks/bench_flow.py" + (" --quick" if args.quick else ""),
        "environment": common.environment_info(phiflow=phi_version),
        "settings": {"horizon": HORIZON, "repeats": repeats, "target_s": target_s,
                     "dt": 1.0, "cells": "unit", "phiflow_cg_tolerance": 1e-4},
        "accuracy": [], "agreement": [], "step": [], "rollout": [],
    }
    if not have_phi:
        results["skipped"] = ("PhiFlow rows: phiflow is not importable by this interpreter; "
                              + phiflow_flow.INSTALL_HINT)
        print(results["skipped"], file=sys.stderr)
    sizes = (64,) if args.quick else (64, 128)
    step_cases = [(n, b) for n in sizes for b in (1, 16)]
    rollout_cases = [(64, 16)] if args.quick else [(n, b) for n in sizes for b in (1, 16)]
    ours = ["sipenv advection=semi_lagrangian", "sipenv advection=mac_cormack"]
    peers = ["PhiFlow eager", "PhiFlow jit_compile"]
    if "accuracy" in args.sections:
        print("accuracy …", flush=True)
        results["accuracy"] = accuracy_rows()
    if "agreement" in args.sections and have_phi:
        print("agreement …", flush=True)
        results["agreement"] = agreement_rows(64)
        if not all(r["ok"] for r in results["agreement"] if r["ok"] is not None):
            print("agreement check failed: timings would compare different things",
                  file=sys.stderr)
            return 1
    if "step" in args.sections:
        print("step …", flush=True)
        results["step"] = timing_rows("step", step_cases, ours + peers, repeats=repeats,
                                      target_s=target_s, have_phi=have_phi)
    if "rollout" in args.sections:
        print("rollout …", flush=True)
        rollout_peers = ["PhiFlow jit_compile"] if args.quick else peers
        results["rollout"] = timing_rows("rollout", rollout_cases, ours[:1] + rollout_peers,
                                         repeats=repeats, target_s=target_s, have_phi=have_phi,
                                         threads=args.threads)
    summarise(results)
    results["environment"]["loadavg_1_5_15_at_end"] = loadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_flow.json").write_text(json.dumps(results, indent=1) + "\n")
    (args.out / "bench_flow.md").write_text(markdown(results))
    print(f"wrote {display_path(args.out / 'bench_flow.json')} and "
          f"{display_path(args.out / 'bench_flow.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

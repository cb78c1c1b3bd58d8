"""Half-inverse gradients: the book's small oscillator example, and DP's memory on long horizons.

    python scripts/reproduce_hig.py linear-chain --out docs/results   # ≈ 3 CPU-minutes
    python scripts/reproduce_hig.py memory --out docs/results         # ≈ 1 CPU-minute

``linear-chain`` — the sanity check of the "Physics-based Deep Learning" book's HIG chapter (its
small coupled-oscillator chain; HIG reported about four orders of magnitude below Adam): two
oscillators of ``sipenv.physics.oscillators.OscillatorPhysics`` coupled by a linear spring
(β = 1, α = 0: the book's "coupled linear oscillators"; the last one driven), 24 RK4 steps of
dt = 0.5; the published open-loop network 4 → 20-20-20 (tanh) → 24 maps the initial state to
the whole control sequence; the goal is the initial state itself (loss
``Σ_b ‖s_T − s_0‖² / B``). HIG (``agents.hig``'s ``jacobian`` and ``half_inverse_direction``:
batch 32, η = 1, τ = 1e-10, κ = ½) against Adam (batch 256, the published lr 1e-3, and 1e-2)
at equal CPU time (``--budget`` seconds each; published: 100 s). Scored on a fixed test set of
1024 states. Writes ``hig_linear_chain.json/.md/.png``.

``memory`` — peak memory of DP's backward pass on ``sip/CoupledOscillators-v0`` against the
horizon, plain, with truncated backpropagation through time (``--window``) and with activation
checkpointing (``agents.diffphys``). Measured as the peak total size of the tensors autograd
saves for the backward pass (``torch.autograd.graph.saved_tensors_hooks``: every saved tensor's
bytes are added when it is packed and removed when the graph frees it; checkpointed segments
pack nothing but their inputs and recompute the rest during the backward), which is the memory
that grows with the horizon; the weights and the optimizer state are the same for all. Writes
``hig_dp_memory.json/.md``.

Every run uses one torch thread and the process CPU clock.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import torch
import tyro
from torch import nn

from agents.hig import PerSampleWeights, half_inverse_direction, jacobian
from sipenv.physics.oscillators import OscillatorPhysics


@dataclass
class Config:
    """Settings of ``scripts/reproduce_hig.py``."""

    part: tyro.conf.Positional[Literal["linear-chain", "memory"]]
    """Which experiment."""
    out: str = "runs/hig"
    """Output folder."""
    budget: float = 60.0
    """linear-chain: CPU seconds of training per method (published: 100)."""
    seed: int = 0
    """Seed of the network and the data stream."""
    horizons: tuple[int, ...] = (12, 24, 48, 96, 192)
    """memory: horizons measured."""
    window: int = 8
    """memory: truncation window of truncated BPTT."""
    checkpoint_every: int = 8
    """memory: steps per checkpointed segment."""


# --- linear chain -------------------------------------------------------------------------------

PHYSICS = OscillatorPhysics(oscillators=2, dt=0.5, coupling=0.0, linear_coupling=1.0,
                            control="last")
STEPS = 24
GAIN = 3.0  # the published control gain (force = 3 u)


def open_loop_network(seed: int) -> nn.Module:
    """4 → 20-20-20 (tanh) → 24, the published network, seeded."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 20), nn.Tanh(), nn.Linear(20, 20), nn.Tanh(),
                         nn.Linear(20, 20), nn.Tanh(), nn.Linear(20, STEPS))


def final_state(network: nn.Module, s0: torch.Tensor) -> torch.Tensor:
    """``s_T`` of the rollout under the network's control sequence, ``(B, 4)``."""
    controls = network(s0)  # (B, T)
    state = s0
    for t in range(STEPS):
        state = PHYSICS.step(state, GAIN * controls[:, t:t + 1])
    return state


def chain_loss(network: nn.Module, s0: torch.Tensor) -> torch.Tensor:
    """``Σ_b ‖s_T − s_0‖² / B``."""
    return (final_state(network, s0) - s0).square().sum(-1).mean()


def train_chain(method: str, lr: float, batch: int, budget: float, seed: int,
                test: torch.Tensor) -> dict[str, Any]:
    """Train one method for ``budget`` CPU seconds; the test loss every ~budget/40 s."""
    network = open_loop_network(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(network.parameters(), lr=lr) if method == "adam" else None
    params = list(network.parameters())
    spent, iterations, curve = 0.0, 0, []

    def score() -> float:
        with torch.no_grad():
            return float(chain_loss(network, test))

    curve.append((0.0, 0, score()))
    next_eval = budget / 40
    while spent < budget:
        t0 = time.process_time()
        s0 = torch.rand(batch, 4, generator=gen)
        if opt is not None:
            opt.zero_grad()
            chain_loss(network, s0).backward()
            opt.step()
        else:
            per = PerSampleWeights(network, batch)
            y = final_state(per, s0)
            y_leaf = y.detach().requires_grad_(True)
            (g,) = torch.autograd.grad((y_leaf - s0).square().sum(-1).mean(), y_leaf)
            jac = jacobian(y, list(per.weights.values()))
            d, _ = half_inverse_direction(jac, g.reshape(-1), kappa=0.5, truncation=1e-10)
            with torch.no_grad():
                offset = 0
                for p in params:
                    p -= lr * d[offset:offset + p.numel()].reshape(p.shape)
                    offset += p.numel()
        spent += time.process_time() - t0
        iterations += 1
        if spent >= next_eval or spent >= budget:
            curve.append((spent, iterations, score()))
            next_eval += budget / 40
    final = curve[-1][2]
    return {"method": method, "lr": lr, "batch": batch, "iterations": iterations,
            "train_seconds": spent, "seconds_per_iteration": spent / iterations,
            "final_test_loss": final, "curve": curve}


def linear_chain(config: Config, out: Path) -> None:
    test = torch.rand(1024, 4, generator=torch.Generator().manual_seed(2_000_000))
    runs = [train_chain("hig", 1.0, 32, config.budget, config.seed, test),
            train_chain("adam", 1e-3, 256, config.budget, config.seed, test),
            train_chain("adam", 1e-2, 256, config.budget, config.seed, test)]
    best_adam = min((r for r in runs if r["method"] == "adam"),
                    key=lambda r: r["final_test_loss"])
    ratio = best_adam["final_test_loss"] / runs[0]["final_test_loss"]
    result = {"settings": {**asdict(config), "physics": asdict(PHYSICS), "steps": STEPS,
                           "gain": GAIN, "test_states": 1024, "threads": 1, "clock": "cpu",
                           "machine": platform.processor() or platform.machine(),
                           "command": "python scripts/reproduce_hig.py " + " ".join(
                               sys.argv[1:])},
              "runs": runs, "adam_over_hig": ratio}
    (out / "hig_linear_chain.json").write_text(json.dumps(result, indent=1))
    lines = ["# HIG vs Adam on the small oscillator example (book)", "",
             f"Command: `{result['settings']['command']}` — {config.budget:g} CPU-seconds per "
             "method (published: 100 s), one thread, seed "
             f"{config.seed}, test set of 1024 initial states.", "",
             "| method | lr / η | batch | iterations | s / iteration | final test loss |",
             "|---|---|---|---|---|---|"]
    for r in runs:
        lines.append(f"| {'HIG (κ = ½, τ = 1e-10)' if r['method'] == 'hig' else 'Adam'} | "
                     f"{r['lr']:g} | {r['batch']} | {r['iterations']} | "
                     f"{r['seconds_per_iteration']:.4f} | {r['final_test_loss']:.3e} |")
    lines += ["", f"Best Adam's final loss / HIG's: **{ratio:.3g}×**."]
    (out / "hig_linear_chain.md").write_text("\n".join(lines) + "\n")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for r in runs:
        t, _, v = zip(*r["curve"], strict=True)
        ax.semilogy(t, v, label=f"{r['method'].upper() if r['method'] == 'hig' else 'Adam'} "
                                f"(lr {r['lr']:g}, batch {r['batch']})")
    ax.set_xlabel("training CPU seconds")
    ax.set_ylabel("test loss ‖s_T − s_0‖²")
    ax.legend()
    ax.set_title("Oscillator chain, 24 steps of dt = 0.5")
    fig.tight_layout()
    fig.savefig(out / "hig_linear_chain.png", dpi=100)
    print("\n".join(lines))


# --- DP memory ----------------------------------------------------------------------------------

def saved_tensor_peak(fn: Any) -> int:
    """Peak total bytes of the tensors autograd holds for the backward pass while ``fn()``
    builds the graph and runs ``backward``."""
    live = {"now": 0, "peak": 0}

    class Packed:
        def __init__(self, t: torch.Tensor) -> None:
            self.t = t
            self.size = t.numel() * t.element_size()
            live["now"] += self.size
            live["peak"] = max(live["peak"], live["now"])

        def __del__(self) -> None:
            live["now"] -= self.size

    with torch.autograd.graph.saved_tensors_hooks(Packed, lambda p: p.t):
        fn()
    return live["peak"]


MEMORY_BATCH = 1024
MEMORY_HIDDEN = (64, 64)


def memory_variants(config: Config) -> dict[str, dict[str, int]]:
    """The DP settings compared: plain, truncated and checkpointed."""
    return {"plain": {}, f"truncated BPTT (window {config.window})":
            {"bptt_window": config.window},
            f"checkpointed (segments of {config.checkpoint_every})":
            {"activation_checkpoint_every": config.checkpoint_every}}


def memory_probe(horizon: int, options: dict[str, int]) -> dict[str, float]:
    """One DP forward + backward (``agents.diffphys.loss_and_backward``) in this process,
    after a warm-up on 2 tasks: the growth of the peak resident memory over the resident memory
    before it (MB), the peak saved-tensor bytes (MB) and the CPU seconds."""
    import resource

    from agents.diffphys import DPConfig, loss_and_backward
    from agents.trainer import build_network

    cfg = DPConfig(env_id="sip/CoupledOscillators-v0", env_kwargs=json.dumps(
        {"horizon": horizon}), hidden=MEMORY_HIDDEN, batch_size=MEMORY_BATCH, **options)
    problem = cfg.make_problem()
    net = build_network(problem.network_spec("mlp", MEMORY_HIDDEN), seed=0)
    batch = problem.sample(MEMORY_BATCH, problem.generator(0))
    # warm-up on 2 tasks: lazy imports and one-time set-up (torch.utils.checkpoint's are large)
    # are not what grows with the horizon
    loss_and_backward(net, problem, problem.sample(2, problem.generator(1)), cfg)
    net.zero_grad(set_to_none=True)
    page = resource.getpagesize()
    before = int(Path("/proc/self/statm").read_text().split()[1]) * page / 2**20
    t0 = time.process_time()
    saved = saved_tensor_peak(lambda: loss_and_backward(net, problem, batch, cfg))
    seconds = time.process_time() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KB on Linux
    return {"rss_growth_mb": peak - before, "saved_mb": saved / 2**20, "seconds": seconds}


def memory(config: Config, out: Path) -> None:
    import subprocess

    rows = []
    for horizon in config.horizons:
        row: dict[str, Any] = {"horizon": horizon}
        for name, options in memory_variants(config).items():
            code = ("import json, sys, torch; torch.set_num_threads(1); "
                    "sys.path.insert(0, 'scripts'); import reproduce_hig as r; "
                    f"print(json.dumps(r.memory_probe({horizon}, {options!r})))")
            done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                  text=True)
            row[name] = json.loads(done.stdout.strip().splitlines()[-1])
        rows.append(row)
    names = list(memory_variants(config))
    result = {"settings": {**asdict(config), "batch": MEMORY_BATCH,
                           "hidden": list(MEMORY_HIDDEN), "command":
                           "python scripts/reproduce_hig.py " + " ".join(sys.argv[1:])},
              "rows": rows}
    (out / "hig_dp_memory.json").write_text(json.dumps(result, indent=1))
    lines = ["# DP peak memory vs horizon (sip/CoupledOscillators-v0)", "",
             f"Command: `{result['settings']['command']}`; batch {MEMORY_BATCH}, MLP "
             f"{'-'.join(map(str, MEMORY_HIDDEN))}, float32, one forward + backward per fresh "
             "process. Each cell: growth of the process's peak resident memory during the "
             "forward + backward pass (MB) / peak bytes of tensors autograd saved for the "
             "backward (MB) / CPU seconds. Method: docs/hig.md.", "",
             "| horizon | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for r in rows:
        lines.append(f"| {r['horizon']} | " + " | ".join(
            f"{r[n]['rss_growth_mb']:.1f} / {r[n]['saved_mb']:.1f} / {r[n]['seconds']:.2f} s"
            for n in names) + " |")
    at96 = next((r for r in rows if r["horizon"] == 96), None)
    if at96 is not None:
        lines += ["", "At horizon 96, peak resident growth: " + ", ".join(
            f"{n} {at96[names[0]]['rss_growth_mb'] / at96[n]['rss_growth_mb']:.1f}× below "
            "plain" for n in names[1:]) + "."]
    (out / "hig_dp_memory.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    config = tyro.cli(Config, args=argv)
    torch.set_num_threads(1)
    out = Path(config.out)
    out.mkdir(parents=True, exist_ok=True)
    if config.part == "linear-chain":
        linear_chain(config, out)
    else:
        memory(config, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

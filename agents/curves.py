"""Learning curves of several methods and seeds in one figure (the reproduce scripts' plots)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["plot_curves"]


def plot_curves(methods: Iterable[Mapping[str, Any]], path: str | Path, *, key: str,
                ylabel: str, log: bool = False,
                lines: Iterable[tuple[float, str, str]] = ()) -> None:
    """Plot ``key`` against training CPU seconds for every run of every method.

    Args:
        methods: Each with ``"label"`` and ``"runs"``, a run with ``"curve"``: records with
            ``"time"`` and ``key``. A method's first run is drawn solid, the others faded.
        path: The PNG to write.
        key: The curve's metric.
        ylabel: Its axis label.
        log: A logarithmic y axis (else from 0).
        lines: Horizontal reference lines ``(value, line style, label)``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.2))
    for i, method in enumerate(methods):
        for j, run in enumerate(method["runs"]):
            curve = run["curve"]
            ax.plot([p["time"] for p in curve], [p[key] for p in curve], color=f"C{i}",
                    alpha=1.0 if j == 0 else 0.5, label=method["label"] if j == 0 else None)
    for value, style, label in lines:
        ax.axhline(value, color="k", ls=style, lw=1, label=label)
    ax.set_xlabel("training CPU seconds (1 thread)")
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    else:
        ax.set_ylim(bottom=0)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

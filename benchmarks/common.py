"""What every benchmark script records beside its timings: versions, thread and CPU counts,
platform, date, git commit and the machine's load average (other work on the machine distorts
timings; the load average says how busy it was), with paths shown relative to the repository."""

from __future__ import annotations

import datetime as dt
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

import sipenv

__all__ = ["ROOT", "cap", "display_path", "environment_info", "git_commit", "loadavg"]

ROOT = Path(__file__).resolve().parent.parent


def display_path(path: Path) -> str:
    """``path`` relative to the repository when inside it (results carry no absolute paths)."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def loadavg() -> list[float] | None:
    """The 1, 5 and 15-minute load averages, or ``None`` where the platform has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:  # pragma: no cover - not on every platform
        return None


def git_commit(watched: tuple[str, ...] = ("sipenv", "agents")) -> str | None:
    """``HEAD``'s hash, marked when the ``watched`` folders have uncommitted changes."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True,
                             text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *watched], cwd=ROOT,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out + (f" ({' or '.join(f'{w}/' for w in watched)} modified)" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def environment_info(**extra: Any) -> dict[str, Any]:
    """Machine and software facts for a results file; ``extra`` entries are added after the
    versions (e.g. peer library versions, the thread setting)."""
    return {
        "date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "gymnasium": gym.__version__,
        "numpy": np.__version__,
        "sipenv": sipenv.__version__,
        **extra,
        "git_commit": git_commit(),
        "torch_num_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "processor": platform.processor() or None,
        "loadavg_1_5_15_at_start": loadavg(),
    }


def cap(settings: Any, **limits: float) -> None:
    """Lower each named setting of ``settings`` to at most its limit (what ``--quick`` does)."""
    for name, limit in limits.items():
        setattr(settings, name, min(getattr(settings, name), limit))

"""Optional extras (``pip install 'sipenv[<extra>]'``), checked before any work.

Every script checks the extras its arguments need together with its other arguments (exit 2,
nothing created), instead of failing after minutes of work: ``rl`` (stable-baselines3) to train
PPO, ``video`` (imageio-ffmpeg) to write ``.mp4``, ``bench`` (PhiFlow) for the peers benchmark.
"""

from __future__ import annotations

import importlib

__all__ = ["EXTRAS", "require_extra"]

EXTRAS: dict[str, tuple[str, str]] = {
    "rl": ("stable_baselines3", "training PPO"),
    "video": ("imageio_ffmpeg", "writing .mp4 (a .gif needs nothing extra)"),
    "bench": ("phi", "the peers benchmark (PhiFlow)"),
}
"""Extra name → (the module it provides, what needs it)."""


def require_extra(extra: str, what: str = "") -> None:
    """Import the module of ``extra``, or say how to install it.

    Args:
        extra: A key of ``EXTRAS``.
        what: What needs it, for the message (default: the extra's own description).

    Raises:
        ImportError: ``"<what> needs the <extra> extra: pip install 'sipenv[<extra>]'"``.
        KeyError: For an unknown extra.
    """
    module, needed_by = EXTRAS[extra]
    try:
        importlib.import_module(module)
    except ImportError as exc:
        raise ImportError(f"{what or needed_by} needs the {extra} extra ({module}): "
                          f"pip install 'sipenv[{extra}]'") from exc

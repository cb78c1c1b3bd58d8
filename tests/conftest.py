"""Shared test setup for the whole suite.

Rendering tests run headless: ``SDL_VIDEODRIVER=dummy`` must be set before pygame opens a display,
so it is set here, at import time, before any test module imports sipenv's rendering code.
Nothing here calls ``pygame.init()`` (sipenv initialises only pygame's display and font modules).
"""

from __future__ import annotations

import os

import pytest
import torch

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")

# One torch thread for the whole run: the tensors in tests are small, and on a busy 2-core
# machine torch's default pool (one thread per core) makes each case slower, not faster.
torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed_torch_global_rng() -> None:
    """Make anything that draws from torch's global generator reproducible per test."""
    torch.manual_seed(0)

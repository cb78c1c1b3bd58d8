"""Shared helpers of the reliability suite: reproducible hypothesis profiles, subprocess runs.

Profiles (select with ``SIPENV_HYPOTHESIS_PROFILE``; the default run uses ``ci``):

* ``ci``: derandomized (the same examples on every machine and run), no deadline, no example
  database, so the default ``pytest`` run is reproducible and fast (all property suites together
  take ~10–20 s on 2 cores).
* ``thorough``: random examples, 20× as many, for a nightly or pre-release hunt::

      SIPENV_HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest tests/reliability -q

The profiles are registered here (``conftest.py`` imports this module first) and applied per test
through :func:`hyp_settings`, never with ``settings.load_profile``, so that hypothesis tests
elsewhere in the suite keep their own settings.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType

from hypothesis import HealthCheck, settings
from script_loading import load_script as _load_script

PROFILE = os.environ.get("SIPENV_HYPOTHESIS_PROFILE", "ci")
SCALE = {"ci": 1, "thorough": 20}

settings.register_profile(
    "sipenv-reliability-ci", derandomize=True, deadline=None, database=None, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow])
settings.register_profile(
    "sipenv-reliability-thorough", derandomize=False, deadline=None, database=None,
    print_blob=True, suppress_health_check=[HealthCheck.too_slow])

if PROFILE not in SCALE:
    raise ValueError(f"SIPENV_HYPOTHESIS_PROFILE must be one of {sorted(SCALE)}, got {PROFILE!r}.")


def hyp_settings(max_examples: int) -> settings:
    """The active profile with ``max_examples`` (scaled up by the ``thorough`` profile)."""
    return settings(settings.get_profile(f"sipenv-reliability-{PROFILE}"),
                    max_examples=max_examples * SCALE[PROFILE])


# --- subprocesses -------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable


def subprocess_env(**extra: str) -> dict[str, str]:
    """Environment for child Python processes: one thread (determinism, and polite on a shared
    machine), headless SDL, the repository importable, plus ``extra``."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "SDL_VIDEODRIVER": "dummy", "SDL_AUDIODRIVER": "dummy",
           "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH"))
                                         if p)}
    env.update(extra)
    return env


def load_script(path: str) -> ModuleType:
    """Import a CLI script (e.g. ``"scripts/train.py"``) as a module, to call its ``main``."""
    return _load_script(path, prefix="reliability_")

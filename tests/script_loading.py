"""Import the CLI scripts under ``scripts/`` as modules (they are not a package), to call
their ``main`` from tests. On the test path through ``pythonpath = ["tests"]`` in pyproject."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def load_script(path: str, prefix: str = "") -> ModuleType:
    """Import ``path`` (e.g. ``"scripts/train.py"``) once per ``prefix`` as ``{prefix}{stem}_cli``.

    The module is registered in ``sys.modules`` before it runs: dataclasses in the script look
    their module up while it executes.
    """
    name = f"{prefix}{Path(path).stem}_cli"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module

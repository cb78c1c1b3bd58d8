"""The committed accuracy results page is what benchmarks/physics_accuracy.py renders from its
committed JSON, and the cheap cases reproduce their committed numbers (they are deterministic)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `benchmarks` is not an installed package
    sys.path.insert(0, str(ROOT))

from benchmarks import physics_accuracy  # noqa: E402


def test_committed_markdown_is_rendered_from_the_committed_json() -> None:
    results = json.loads(physics_accuracy.OUT_JSON.read_text())
    assert physics_accuracy.OUT_MD.read_text() == physics_accuracy.markdown(results)
    assert "benchmarks/physics_accuracy.py" in physics_accuracy.OUT_MD.read_text()


def test_riemann_case_reproduces_the_committed_numbers() -> None:
    """The case pins the upwind scheme at 20 sub-steps (stable for its |u| ≤ 1; the default
    grows with n for the reference tasks' velocity bound)."""
    committed = json.loads(physics_accuracy.OUT_JSON.read_text())["riemann"]
    fresh = physics_accuracy.riemann()
    for scheme in ("upwind", "semi_lagrangian_1", "semi_lagrangian_20"):
        for key, value in committed[scheme].items():
            assert fresh[scheme][key] == pytest.approx(value, rel=1e-6, abs=1e-9), (scheme, key)

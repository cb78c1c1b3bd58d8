"""scripts/reproduce_hig.py on a tiny budget (slow: it trains and spawns processes)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from script_loading import load_script

hig = load_script("scripts/reproduce_hig.py")


@pytest.mark.slow
def test_linear_chain_writes_its_outputs(tmp_path: Path) -> None:
    assert hig.main(["linear-chain", "--budget", "0.5", "--out", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "hig_linear_chain.json").read_text())
    assert [r["method"] for r in result["runs"]] == ["hig", "adam", "adam"]
    assert (tmp_path / "hig_linear_chain.md").exists()
    assert (tmp_path / "hig_linear_chain.png").exists()


@pytest.mark.slow
def test_memory_probe_sees_truncation_lower_the_saved_tensors() -> None:
    plain = hig.memory_probe(48, {})
    cut = hig.memory_probe(48, {"bptt_window": 8})
    assert cut["saved_mb"] * 2 < plain["saved_mb"]

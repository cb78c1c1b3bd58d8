"""``scripts/partial_observation.py``: a tiny run writes the JSON, the table and the plot."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from script_loading import load_script

partial = load_script("scripts/partial_observation.py")


@pytest.mark.slow  # (a few seconds of training per method)
def test_partial_observation_writes_results(tmp_path: Path) -> None:
    threads = torch.get_num_threads()
    out = tmp_path / "compare"
    try:
        assert partial.main(["--budget", "0.5", "--episodes", "4", "--envs",
                             "sip/ControlledDiffusion-v0", "--methods", "sip", "dp",
                             "--out", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)
    report = json.loads(out.with_suffix(".json").read_text())
    runs = report["envs"]["sip/ControlledDiffusion-v0"]
    assert len(runs) == 2 and all("target_error_mean" in r for r in runs.values())
    assert report["optimum"]["sip/ControlledDiffusion-v0"]["target_error_mean"] > 0
    assert report["sensing"] == {"sensors": 10, "actuators": 8}
    assert "Open-loop optimum" in out.with_suffix(".md").read_text()
    assert out.with_suffix(".png").stat().st_size > 0

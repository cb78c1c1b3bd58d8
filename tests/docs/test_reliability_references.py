"""Every test that RELIABILITY.md names as the proof of a guarantee exists (a renamed or moved
test must take its row along)."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = re.compile(r"`((?:tests/)?[\w/]*test_\w+\.py)::(\w+)")


def test_every_named_test_exists() -> None:
    text = (ROOT / "RELIABILITY.md").read_text()
    references = set(REFERENCE.findall(text))
    assert len(references) > 20
    missing = []
    for path, name in sorted(references):
        candidates = [ROOT / path, ROOT / "tests" / path, ROOT / "tests" / "reliability" / path]
        found = next((c for c in candidates if c.exists()), None)
        if found is None or not re.search(rf"def {name}\b", found.read_text()):
            missing.append(f"{path}::{name}")
    assert not missing, f"RELIABILITY.md names tests that do not exist: {missing}"

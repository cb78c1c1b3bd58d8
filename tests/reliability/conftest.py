"""The reliability suite (see RELIABILITY.md). Registers the hypothesis profiles before any test
module of this folder is imported."""

from __future__ import annotations

import reliability_support  # noqa: F401  (registers the sipenv-reliability-* profiles)

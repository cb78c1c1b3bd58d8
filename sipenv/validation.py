"""Argument checks shared by every layer (physics, envs, agents, scripts).

Each check raises ``ValueError`` with one sentence that names the setting, what it must be
and what it got, plus an optional ``hint`` saying how to fix it; it returns the value (as a plain
``int`` / ``float`` / ``bool`` where that applies), so a check reads as an assignment::

    n = check_int("n (number of cells)", n, minimum=4)
    dt = check_positive("dt", dt)

Python and numpy numbers are accepted; ``bool`` is refused wherever a number is expected (Python
treats it as an int, users never mean it as one), and so are strings, even ``"0.5"``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Collection
from typing import Any, TypeVar

__all__ = [
    "check_bool",
    "check_choice",
    "check_finite",
    "check_int",
    "check_nonnegative",
    "check_positive",
    "is_int",
    "is_real",
]

T = TypeVar("T")


def is_int(value: object) -> bool:
    """An integer (Python or numpy), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value: object) -> bool:
    """A real number (Python or numpy; ints included), not a bool."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _fail(message: str, hint: str) -> None:
    raise ValueError(f"{message} {hint}".strip())


def check_int(name: str, value: Any, *, minimum: int | None = None,
              maximum: int | None = None, hint: str = "") -> int:
    """``value`` as an ``int`` in ``[minimum, maximum]`` (either bound optional).

    Raises:
        ValueError: ``"<name> must be an int ≥ <minimum>, got <value>."`` (and the ``hint``).
    """
    ok = is_int(value) and (minimum is None or value >= minimum) and (
        maximum is None or value <= maximum)
    if not ok:
        if minimum is not None and maximum is not None:
            what = f"an int in [{minimum}, {maximum}]"
        elif minimum is not None:
            what = f"an int ≥ {minimum}"
        elif maximum is not None:
            what = f"an int ≤ {maximum}"
        else:
            what = "an int"
        _fail(f"{name} must be {what}, got {value!r}.", hint)
    return int(value)


def check_finite(name: str, value: Any, *, hint: str = "") -> float:
    """``value`` as a finite ``float``.

    Raises:
        ValueError: ``"<name> must be a finite number, got <value>."``
    """
    if not (is_real(value) and math.isfinite(value)):
        _fail(f"{name} must be a finite number, got {value!r}.", hint)
    return float(value)


def check_positive(name: str, value: Any, *, hint: str = "") -> float:
    """``value`` as a finite ``float`` > 0.

    Raises:
        ValueError: ``"<name> must be a finite number > 0, got <value>."``
    """
    if not (is_real(value) and math.isfinite(value) and value > 0):
        _fail(f"{name} must be a finite number > 0, got {value!r}.", hint)
    return float(value)


def check_nonnegative(name: str, value: Any, *, hint: str = "") -> float:
    """``value`` as a finite ``float`` ≥ 0.

    Raises:
        ValueError: ``"<name> must be a finite number ≥ 0, got <value>."``
    """
    if not (is_real(value) and math.isfinite(value) and value >= 0):
        _fail(f"{name} must be a finite number ≥ 0, got {value!r}.", hint)
    return float(value)


def check_bool(name: str, value: Any, *, hint: str = "") -> bool:
    """``value`` if it is a ``bool`` (numpy bools included).

    Raises:
        ValueError: ``"<name> must be a bool, got <value>."``
    """
    if not (isinstance(value, bool) or type(value).__name__ == "bool_"):
        _fail(f"{name} must be a bool, got {value!r}.", hint)
    return bool(value)


def check_choice(name: str, value: T, choices: Collection[Any], *, hint: str = "") -> T:
    """``value`` if it is one of ``choices``.

    Raises:
        ValueError: ``"<name> must be one of [...], got <value>."``
    """
    try:
        ok = value in choices
    except TypeError:  # unhashable value against a set or dict
        ok = False
    if not ok:
        _fail(f"{name} must be one of {list(choices)}, got {value!r}.", hint)
    return value

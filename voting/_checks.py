"""Argument checks shared by the voting modules.

Why: every public function validates its inputs the same way, so that a bad
argument fails at the call with a one-line message naming the argument and its
allowed range, instead of surfacing later as a NaN, a ``math domain error`` or
a silently wrong margin.

>>> check_int("k", 3, minimum=1)
3
"""

from __future__ import annotations

import math
import numbers

__all__ = [
    "check_count",
    "check_int",
    "check_nonnegative",
    "check_p",
    "check_rate",
    "check_unit_open",
]


def check_int(name: str, value: object, minimum: int) -> int:
    """Return ``value`` as an ``int`` if it is an integer ``>= minimum``, else raise ValueError."""
    if type(value) is int and value >= minimum:  # the common case, without the ABC check (hot: one per step)
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    result = int(value)
    if result < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return result


def check_count(name: str, value: object, maximum: int, maximum_name: str) -> int:
    """Return ``value`` as an ``int`` in ``[0, maximum]``, else raise ValueError."""
    result = check_int(name, value, 0)
    if result > maximum:
        raise ValueError(f"{name} must be an integer in [0, {maximum_name}] = [0, {maximum}], got {value!r}")
    return result


def _as_float(name: str, value: object, allowed: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number in {allowed}, got {value!r}")
    return float(value)


def check_p(value: object, name: str = "p") -> float:
    """Return a per-sample success probability in ``(0, 1]``, else raise ValueError."""
    p = _as_float(name, value, "(0, 1]")
    if not 0.0 < p <= 1.0:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return p


def check_rate(name: str, value: object) -> float:
    """Return a rate in ``(0, 1]`` (e.g. the valid-sample rate), else raise ValueError."""
    return check_p(value, name)


def check_unit_open(name: str, value: object) -> float:
    """Return a probability strictly inside ``(0, 1)``, else raise ValueError."""
    x = _as_float(name, value, "(0, 1)")
    if not 0.0 < x < 1.0:
        raise ValueError(f"{name} must be in (0, 1), got {value!r}")
    return x


def check_nonnegative(name: str, value: object) -> float:
    """Return a finite number ``>= 0`` (a token count or a price), else raise ValueError."""
    x = _as_float(name, value, "[0, inf)")
    if not (x >= 0.0 and math.isfinite(x)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return x

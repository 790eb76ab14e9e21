"""Public constructors of backoff schedules (validated; the arithmetic is in ``_core.backoff``).

Used for retry delays and for growing circuit-breaker break durations.
"""

from __future__ import annotations

import math
from typing import Any

from ._core.backoff import JITTERS, Backoff, Jitter
from ._validation import finite_positive

__all__ = ["Backoff", "constant", "exponential", "linear"]


def _non_negative(name: str, value: Any) -> float:
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    if math.isnan(value) or math.isinf(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


def _cap(value: Any) -> float:
    if value is None or (isinstance(value, float) and math.isinf(value) and value > 0):
        return math.inf
    return finite_positive("cap", value)


def _jitter(value: Any) -> Jitter:
    if value not in JITTERS:
        raise ValueError(f"jitter must be one of {', '.join(map(repr, JITTERS))}, got {value!r}")
    return value  # type: ignore[no-any-return]


def constant(delay: float, *, jitter: Jitter = "none") -> Backoff:
    """The same ``delay`` (seconds) every time."""
    return Backoff("constant", _non_negative("delay", delay), jitter=_jitter(jitter))


def linear(
    start: float, step: float | None = None, *, cap: float | None = None, jitter: Jitter = "none"
) -> Backoff:
    """``start``, ``start + step``, ``start + 2*step``, ... (``step`` defaults to ``start``)."""
    first = _non_negative("start", start)
    increment = first if step is None else _non_negative("step", step)
    return Backoff("linear", first, step=increment, cap=_cap(cap), jitter=_jitter(jitter))


def exponential(
    base: float = 0.1,
    *,
    factor: float = 2.0,
    cap: float | None = 30.0,
    jitter: Jitter = "full",
) -> Backoff:
    """``min(cap, base * factor**attempt)``, with full jitter by default (the AWS advice:
    it spreads synchronized clients best)."""
    growth = finite_positive("factor", factor)
    if growth < 1:
        raise ValueError(f"factor must be >= 1, got {factor!r}")
    return Backoff(
        "exponential",
        _non_negative("base", base),
        factor=growth,
        cap=_cap(cap),
        jitter=_jitter(jitter),
    )

"""Public constructors of backoff schedules (validated; the arithmetic is in ``_core.backoff``).

Used for retry delays and for growing circuit-breaker break durations.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from .._core import backoff as _core
from .._core.backoff import JITTERS, Jitter
from .validation import finite_positive, non_negative, number, one_of

__all__ = ["Backoff", "backoff_cap", "constant", "exponential", "linear"]

_KINDS = ("constant", "linear", "exponential")


def backoff_cap(name: str, value: Any) -> float:
    """A cap on the delay: ``None`` or ``inf`` (none), else a finite number > 0."""
    if value is None or number(name, value) == math.inf:
        return math.inf
    return finite_positive(name, value)


class Backoff(_core.Backoff):
    """A delay schedule (see ``_core.backoff``), its values checked: exported, and built by
    breakers too, where a NaN or infinite delay would keep a breaker open, or a retry asleep,
    forever. ``constant()``, ``linear()`` and ``exponential()`` are the usual ways in."""

    __slots__ = ()

    def __init__(
        self,
        kind: Literal["constant", "linear", "exponential"],
        base: float,
        *,
        step: float = 0.0,
        factor: float = 2.0,
        cap: float | None = math.inf,
        jitter: Jitter = "none",
    ) -> None:
        growth = finite_positive("factor", factor)
        if growth < 1:
            raise ValueError(f"factor must be >= 1, got {factor!r}")
        super().__init__(
            one_of("kind", kind, _KINDS),  # type: ignore[arg-type]
            non_negative("base", base),
            step=non_negative("step", step),
            factor=growth,
            cap=backoff_cap("cap", cap),
            jitter=one_of("jitter", jitter, JITTERS),  # type: ignore[arg-type]
        )


def constant(delay: float, *, jitter: Jitter = "none") -> Backoff:
    """The same ``delay`` (seconds) every time."""
    return Backoff("constant", non_negative("delay", delay), jitter=jitter)


def linear(
    start: float, step: float | None = None, *, cap: float | None = None, jitter: Jitter = "none"
) -> Backoff:
    """``start``, ``start + step``, ``start + 2*step``, ... (``step`` defaults to ``start``)."""
    first = non_negative("start", start)
    increment: Any = first if step is None else step
    return Backoff("linear", first, step=increment, cap=cap, jitter=jitter)


def exponential(
    base: float = 0.1,
    *,
    factor: float = 2.0,
    cap: float | None = 30.0,
    jitter: Jitter = "full",
) -> Backoff:
    """``min(cap, base * factor**attempt)``, with full jitter by default (the AWS advice:
    it spreads synchronized clients best). ``Backoff`` checks every value."""
    return Backoff("exponential", base, factor=factor, cap=cap, jitter=jitter)

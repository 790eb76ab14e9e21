"""Backoff schedules and jitter (pure: the random source is an argument).

For base ``b``, cap ``c``, attempt ``k`` (0-based) and previous delay ``s``:

- constant: ``t = b``; linear: ``t = min(c, b + step * k)``; exponential:
  ``t = min(c, b * factor**k)``;
- jitter "none": ``t``; "full": ``uniform(0, t)``; "equal": ``t/2 + uniform(0, t/2)``;
  "decorrelated": ``s_0 = b``, ``s_k = min(c, uniform(b, 3 * s_{k-1}))`` (AWS Architecture Blog,
  "Exponential Backoff And Jitter"; it ignores the schedule's shape beyond b and c).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

__all__ = ["JITTERS", "Backoff", "Jitter"]

Jitter = Literal["none", "full", "equal", "decorrelated"]
JITTERS: tuple[str, ...] = ("none", "full", "equal", "decorrelated")


class Backoff:
    """A delay schedule: ``delay(attempt, previous, random)`` gives the wait before retry
    number ``attempt + 1``. ``random`` returns floats in [0, 1)."""

    __slots__ = ("base", "cap", "factor", "jitter", "kind", "step")

    def __init__(
        self,
        kind: Literal["constant", "linear", "exponential"],
        base: float,
        *,
        step: float = 0.0,
        factor: float = 2.0,
        cap: float = math.inf,
        jitter: Jitter = "none",
    ) -> None:
        self.kind = kind
        self.base = base
        self.step = step
        self.factor = factor
        self.cap = cap
        self.jitter = jitter

    def nominal(self, attempt: int) -> float:
        """The delay before jitter."""
        if self.kind == "constant":
            return min(self.cap, self.base)
        if self.kind == "linear":
            return min(self.cap, self.base + self.step * attempt)
        try:
            growth = self.factor**attempt
        except OverflowError:  # far past any cap (a base of 0 stays 0)
            return self.cap if self.base else 0.0
        return min(self.cap, self.base * growth)

    def delay(self, attempt: int, previous: float | None, random: Callable[[], float]) -> float:
        jitter = self.jitter
        if jitter == "decorrelated":
            if previous is None:
                return min(self.cap, self.base)
            low = self.base
            high = max(low, 3.0 * previous)
            return min(self.cap, low + (high - low) * random())
        t = self.nominal(attempt)
        if jitter == "none":
            return t
        if jitter == "full":
            return t * random()
        return t / 2.0 + t / 2.0 * random()

    def __repr__(self) -> str:
        shape = {
            "constant": f"constant({self.base:g}",
            "linear": f"linear({self.base:g}, step={self.step:g}",
            "exponential": f"exponential({self.base:g}, factor={self.factor:g}",
        }[self.kind]
        cap = "" if math.isinf(self.cap) else f", cap={self.cap:g}"
        return f"{shape}{cap}, jitter={self.jitter!r})"

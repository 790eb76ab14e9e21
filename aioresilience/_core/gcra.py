"""GCRA, the generic cell rate algorithm (virtual scheduling form; redis-cell semantics).

Rate of one unit per emission interval ``T``, tolerance ``tau = T * burst``. The whole state of
a key is one float, the theoretical arrival time ``TAT`` (``None`` means ``now``). For cost
``n``::

    tat = max(TAT, now);  new_tat = tat + n*T;  allow_at = new_tat - tau

admit at ``max(now, allow_at)``; store ``new_tat``. One number per key, no background work,
exact rolling behaviour and Retry-After for free. The token bucket and the leaky-bucket meter
are this same arithmetic under other names (:mod:`.token_bucket`, :mod:`.leaky_bucket`).
"""

from __future__ import annotations

import math

__all__ = ["GCRAAlgorithm"]

# Float slack on the admit test, as a fraction of one emission interval: sums of n*T drift by
# a few ulps, and without slack the B-th request of a burst of exactly B could be refused.
_SLACK = 1e-6


class GCRAAlgorithm:
    """GCRA over ``float`` states (the TAT). ``max_delay`` caps how far ahead a reservation
    may be scheduled (``inf``: only the caller's ``max_wait`` bounds it)."""

    __slots__ = (
        "_reach",
        "_slack",
        "burst",
        "horizon",
        "interval",
        "max_cost",
        "max_delay",
        "tolerance",
    )

    def __init__(self, interval: float, burst: float, max_delay: float = math.inf) -> None:
        self.interval = interval
        self.burst = burst
        self.tolerance = interval * burst
        self.max_delay = max_delay
        self.max_cost = int(burst + _SLACK)
        self.horizon = self.tolerance
        self._slack = interval * _SLACK
        # new_tat - now <= _reach  <=>  allow_at = new_tat - tolerance <= now (+ slack)
        self._reach = self.tolerance + self._slack

    def reserve(
        self, state: float | None, now: float, cost: int, max_wait: float
    ) -> tuple[float, float, bool]:
        tat = now if state is None or state < now else state
        new_tat = tat + cost * self.interval
        if new_tat - now <= self._reach:
            return new_tat, now, True
        at = new_tat - self.tolerance
        wait = at - now
        if wait > self.max_delay + self._slack:
            # A bounded queue (the shaper) is full: room appears when the wait shrinks to it.
            return tat, at - self.max_delay, False
        if wait > max_wait:
            return tat, at, False
        return new_tat, at, True

    def cancel(self, state: float | None, now: float, cost: int, at: float) -> float | None:
        if state is None:
            return None
        return state - cost * self.interval

    def inspect(self, state: float | None, now: float) -> tuple[int, float]:
        if state is None or state <= now:
            return self.max_cost, 0.0
        used = state - now
        remaining = math.floor((self.tolerance - used) / self.interval + _SLACK)
        return max(0, remaining), used

    def fresh_at(self, state: float) -> float:
        return state

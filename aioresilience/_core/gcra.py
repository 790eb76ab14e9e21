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

from .ratelimit import RatePolicy

__all__ = ["GCRAAlgorithm", "due"]

NS = 1_000_000_000  # time unit of the state: integer nanoseconds
_TO_NS = 1e9  # a float, so `now * _TO_NS` stays a float multiply (an int operand costs 3x)
# Truncation of the float `now * _TO_NS`: the same value as int() (both are float.__trunc__),
# but a plain one-argument builtin call instead of a call of the int type (callgrind: about
# 340 instructions against 840 on 3.12, 230 against 650 on 3.11; the same on 3.13).
_trunc = math.trunc


def due(now: float, now_ns: int, target_ns: int) -> float:
    """The time, as a float, at which a decision is sure to see ``target_ns``: a caller that
    waits ``due(...) - now`` from ``now`` (or a timer set for it) must find the clock at or past
    ``target_ns`` once truncated to integer nanoseconds, else it is refused again, 1 ns short.
    Rounding up by the few ulps needed is what makes ``Decision.retry_after`` safe to sleep."""
    at = now + (target_ns - now_ns) / NS
    while int(at * _TO_NS) < target_ns or int((now + (at - now)) * _TO_NS) < target_ns:
        at = math.nextafter(at, math.inf)
    return at


class GCRAAlgorithm:
    """GCRA over integer-nanosecond states (the TAT).

    Why integers: the TAT grows by one interval per admission, and a float sum of thousands of
    intervals on a clock reading like 1e6 or 1.7e9 (a host up for weeks, or an epoch clock)
    drifts by more than an interval, so a burst of exactly B would admit B+1 or B-1. Integer
    nanoseconds are exact. Rates above one unit per nanosecond are refused at construction.
    """

    __slots__ = (
        "_interval_ns",
        "_tolerance_ns",
        "burst",
        "horizon",
        "interval",
        "max_cost",
        "policy",
    )

    def __init__(self, interval: float, burst: int) -> None:
        if interval * NS < 1:
            raise ValueError(f"the rate must be at most 1e9 per second, got 1/{interval!r}s")
        self.interval = interval
        self.burst = burst
        self.max_cost = burst
        # Rounded up when it is not a whole number of ns (beyond the product's rounding): a
        # shorter interval runs faster than the rate (7e8/s at 1 ns ran at 1e9/s; 3/s at
        # 333333333 ns admitted 4 within one second).
        interval_ns = interval * NS
        self._interval_ns = round(interval_ns)
        if interval_ns - self._interval_ns > 4 * math.ulp(interval_ns):
            self._interval_ns += 1
        self._tolerance_ns = self._interval_ns * burst
        self.horizon = self._tolerance_ns / NS
        # The burst over the time it takes to refill (see _core.ratelimit): B per B*T.
        self.policy = RatePolicy("gcra", burst, burst * interval)

    def admit(self, state: int | None, now: float, cost: int) -> int | None:
        """``reserve`` with ``max_wait=0`` when it admits at once: the new state, else None
        (nothing committed). The front-ends' non-waiting hit path: one value, no tuple."""
        now_ns = _trunc(now * _TO_NS)
        if state is None or state <= now_ns:
            # An idle bucket: `cost * T <= burst * T = tau` for any cost in 1..max_cost.
            return now_ns + cost * self._interval_ns
        new_tat = state + cost * self._interval_ns
        if new_tat - now_ns <= self._tolerance_ns:
            return new_tat
        return None

    def reserve(
        self, state: int | None, now: float, cost: int, max_wait: float
    ) -> tuple[int, float, bool]:
        now_ns = _trunc(now * _TO_NS)
        tat = now_ns if state is None or state < now_ns else state
        new_tat = tat + cost * self._interval_ns
        if new_tat - now_ns <= self._tolerance_ns:
            return new_tat, now, True
        at = due(now, now_ns, new_tat - self._tolerance_ns)
        # The wait is judged in the state's integer nanoseconds, `max_wait` rounded up to one:
        # a wait of 1/r whose interval was rounded up to a whole ns is within a timeout of 1/r
        # (TokenBucket(1, 7.0) refused acquire(timeout=1/7) with its bucket just spent).
        if new_tat - self._tolerance_ns - now_ns - 1 >= max_wait * _TO_NS:
            return tat, at, False
        return new_tat, at, True

    def cancel(self, state: int | None, now: float, cost: int, at: float) -> int | None:
        if state is None:
            return None
        # A reservation made for ``at`` occupies the line until ``at + cost*T`` at the
        # earliest; what of it has drained by ``now`` is gone already and cannot be given
        # back (a refund made after later admissions would hand their units back into the
        # past: two admitted at once with a burst of 1). Exact for the newest reservation
        # and for a refund at the instant of its admission.
        give = cost * self._interval_ns
        ahead = _trunc(at * _TO_NS) + give - _trunc(now * _TO_NS)
        if ahead < give:
            give = ahead if ahead > 0 else 0
        return state - give

    def inspect(self, state: int | None, now: float) -> tuple[int, float]:
        now_ns = _trunc(now * _TO_NS)
        if state is None or state <= now_ns:
            return self.max_cost, 0.0
        used = state - now_ns
        left = self._tolerance_ns - used
        # A conditional, not max(0, ...): the builtin's call was 40 % of this method (the
        # per-request path of RateLimiter.check, 3.12).
        return (left // self._interval_ns if left > 0 else 0), used / NS

    def fresh_at(self, state: int) -> float:
        return state / NS

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
from fractions import Fraction

from .ratelimit import RatePolicy

__all__ = ["GCRAAlgorithm", "due"]

NS = 1_000_000_000  # nanoseconds per second: the state counts in fractions of one
# The state's unit is 1/scale ns, the scale the smallest denominator (up to this) that makes the
# interval a whole number of units: 3/s is 1e9 units of 1/3 ns, exactly, so a bucket drained
# and left for capacity/rate seconds is full again (whole ns of 333333334 left it 2 ns short).
_MAX_SCALE = 1000
# Truncation of the float `now * per_second`: the same value as int() (both are
# float.__trunc__), but a plain one-argument builtin call instead of a call of the int type
# (callgrind: about 340 instructions against 840 on 3.12, 230 against 650 on 3.11; the same on
# 3.13).
_trunc = math.trunc


def due(now: float, now_u: int, target_u: int, per_second: float) -> float:
    """The time, as a float, at which a decision is sure to see ``target_u`` (a state's
    units, ``per_second`` of them a second): a caller that waits ``due(...) - now`` from
    ``now`` (or a timer set for it) must find the clock at or past ``target_u`` once truncated
    to whole units, else it is refused again, one unit short. Rounding up by the few ulps
    needed is what makes ``Decision.retry_after`` safe to sleep."""
    at = now + (target_u - now_u) / per_second
    while int(at * per_second) < target_u or int((now + (at - now)) * per_second) < target_u:
        at = math.nextafter(at, math.inf)
    return at


class GCRAAlgorithm:
    """GCRA over integer states (the TAT, in units of ``1/scale`` ns).

    Why integers: the TAT grows by one interval per admission, and a float sum of thousands of
    intervals on a clock reading like 1e6 or 1.7e9 (a host up for weeks, or an epoch clock)
    drifts by more than an interval, so a burst of exactly B would admit B+1 or B-1. Whole
    units are exact, and the unit is chosen so that the interval is a whole number of them.
    Rates above one unit per nanosecond are refused at construction.
    """

    __slots__ = (
        "_per_second",
        "_step",
        "_tolerance",
        "burst",
        "horizon",
        "interval",
        "max_cost",
        "policy",
    )

    def __init__(self, interval: float, burst: int) -> None:
        interval_ns = interval * NS
        if interval_ns < 1:
            raise ValueError(f"the rate must be at most 1e9 per second, got 1/{interval!r}s")
        self.interval = interval
        self.burst = burst
        self.max_cost = burst
        # The interval as a fraction of ns with a small denominator, that denominator the
        # unit: exact for the rates people write (3/s, 7/min), within the product's float
        # noise. Past it, rounded up to a whole unit: a shorter interval runs faster than the
        # rate (7e8/s at 1 ns ran at 1e9/s; 3/s at 333333333 ns admitted 4 within one second).
        fraction = Fraction(interval_ns).limit_denominator(_MAX_SCALE)
        scale, step = fraction.denominator, fraction.numerator
        if fraction < interval_ns - 4 * math.ulp(interval_ns):
            # Rounded up at the scale (any up to the bound) that loses the least: at the
            # nearest fraction's own (1/1 ns for 999999999/s) a unit could be most of the
            # interval (it ran at 5e8/s).
            n, d = interval_ns.as_integer_ratio()
            scale = min(range(1, _MAX_SCALE + 1), key=lambda q: (-(-n * q // d) * d - n * q) / q)
            step = -(-n * scale // d)
        self._step = step
        self._per_second = float(NS * scale)  # a float: `now * it` stays a float multiply
        self._tolerance = step * burst
        self.horizon = self._tolerance / self._per_second
        # The burst over the time it takes to refill (see _core.ratelimit): B per B*T.
        self.policy = RatePolicy("gcra", burst, burst * interval)

    def admit(self, state: int | None, now: float, cost: int) -> int | None:
        """``reserve`` with ``max_wait=0`` when it admits at once: the new state, else None
        (nothing committed). The front-ends' non-waiting hit path: one value, no tuple."""
        now_u = _trunc(now * self._per_second)
        if state is None or state <= now_u:
            # An idle bucket: `cost * T <= burst * T = tau` for any cost in 1..max_cost.
            return now_u + cost * self._step
        new_tat = state + cost * self._step
        if new_tat - now_u <= self._tolerance:
            return new_tat
        return None

    def reserve(
        self, state: int | None, now: float, cost: int, max_wait: float
    ) -> tuple[int, float, bool]:
        now_u = _trunc(now * self._per_second)
        tat = now_u if state is None or state < now_u else state
        new_tat = tat + cost * self._step
        if new_tat - now_u <= self._tolerance:
            return new_tat, now, True
        at = due(now, now_u, new_tat - self._tolerance, self._per_second)
        # The wait is judged in the state's whole units, `max_wait` rounded up to one: a wait
        # of 1/r whose interval was rounded up to a whole unit is within a timeout of 1/r
        # (TokenBucket(1, 7.0) refused acquire(timeout=1/7) with its bucket just spent).
        if new_tat - self._tolerance - now_u - 1 >= max_wait * self._per_second:
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
        give = cost * self._step
        ahead = _trunc(at * self._per_second) + give - _trunc(now * self._per_second)
        if ahead < give:
            give = ahead if ahead > 0 else 0
        return state - give

    def inspect(self, state: int | None, now: float) -> tuple[int, float]:
        now_u = _trunc(now * self._per_second)
        if state is None or state <= now_u:
            return self.max_cost, 0.0
        used = state - now_u
        left = self._tolerance - used
        # A conditional, not max(0, ...): the builtin's call was 40 % of this method (the
        # per-request path of RateLimiter.check, 3.12).
        return (left // self._step if left > 0 else 0), used / self._per_second

    def fresh_at(self, state: int) -> float:
        return state / self._per_second

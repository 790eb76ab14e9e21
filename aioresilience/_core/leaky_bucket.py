"""Leaky bucket, in its two distinct meanings.

*Meter*: a bucket of ``capacity`` units that drains at ``leak_rate`` units per second; a request
of cost ``n`` is admitted when ``n`` more units fit, else refused. It is GCRA with emission
interval ``1/leak_rate`` and tolerance ``capacity/leak_rate``.

*Shaper* (a queue): requests join a bounded queue of ``capacity`` units and leave it at exactly
``leak_rate`` units per second, so the output is smooth whatever the input. A request of cost
``n`` leaves when the units queued ahead of it have left, and then occupies the line for ``n``
intervals: with ``T = 1/leak_rate`` and ``TAT`` the time the line is clear,
``leave = max(TAT, now)``, ``TAT' = leave + n*T``. The queue is full when the units ahead of a
request and its own, but the first of them already leaving, exceed ``capacity``:
``leave - now + (n - 1)*T > capacity*T``. (An idle shaper admits any ``n <= capacity`` at
once; the older form, which admitted a request once its *last* unit had left, could never
admit ``n >= 2`` without waiting, and its retry-after was the same forever.)
"""

from __future__ import annotations

import math

from .gcra import GCRAAlgorithm, _trunc, due
from .ratelimit import RatePolicy

__all__ = ["LeakyBucketMeter", "LeakyBucketShaper"]


class LeakyBucketMeter(GCRAAlgorithm):
    """Admit-or-refuse leaky bucket of ``capacity`` units draining at ``leak_rate``/s."""

    __slots__ = ("capacity", "leak_rate")

    def __init__(self, capacity: int, leak_rate: float) -> None:
        super().__init__(interval=1.0 / leak_rate, burst=capacity)
        self.capacity = capacity
        self.leak_rate = leak_rate
        # The bucket over the time it takes to drain (see _core.ratelimit).
        self.policy = RatePolicy("leaky-bucket", capacity, capacity / leak_rate)


class LeakyBucketShaper(GCRAAlgorithm):
    """Queue of ``capacity`` units emptied at a constant ``leak_rate``/s."""

    __slots__ = ("_queue", "capacity", "leak_rate")

    def __init__(self, capacity: int, leak_rate: float) -> None:
        super().__init__(interval=1.0 / leak_rate, burst=1)
        self.max_cost = capacity
        self.capacity = capacity
        self.leak_rate = leak_rate
        # Longest the line may be ahead of a request's last unit: `capacity` intervals.
        self._queue = capacity * self._step
        # A state is fresh once its line is clear: at most `capacity` intervals after the
        # admission of the request that made it.
        self.horizon = self._queue / self._per_second
        # What a caller that does not wait gets (a web rule refuses at once): one unit per
        # interval, admitted only when the line is clear, as GCRA with a burst of 1. (The
        # queue's capacity per capacity intervals told a client it could send `capacity` at
        # once, and all but the first were refused.)
        self.policy = RatePolicy("leaky-bucket-shaper", 1, 1.0 / leak_rate)

    def admit(self, state: int | None, now: float, cost: int) -> int | None:
        """Admitted at once only when the line is clear (any ``cost <= capacity``)."""
        now_u = _trunc(now * self._per_second)
        if state is None or state <= now_u:
            return now_u + cost * self._step
        return None

    def reserve(
        self, state: int | None, now: float, cost: int, max_wait: float
    ) -> tuple[int, float, bool]:
        now_u = _trunc(now * self._per_second)
        if state is None or state <= now_u:
            return now_u + cost * self._step, now, True
        at = due(now, now_u, state, self._per_second)
        # From `join` on, the request's units fit in the queue (its last one leaves within
        # `capacity` intervals).
        join = state + (cost - 1) * self._step - self._queue
        # The wait is judged in whole units, as the state is: a caller that sleeps the
        # announced retry-after meets the same test exactly (in floats, `at - max_wait` and
        # a later `at - now > max_wait` disagreed by an ulp, and it was refused again).
        if join > now_u:
            # Full: retry once it fits and its wait is within max_wait (at once: `at`).
            if max_wait == math.inf:
                return state, due(now, now_u, join, self._per_second), False
            target = max(join, state - math.floor(max_wait * self._per_second))
            return state, due(now, now_u, target, self._per_second), False
        if state - now_u - 1 >= max_wait * self._per_second:  # (max_wait: up to a whole unit)
            return state, at, False
        return state + cost * self._step, at, True

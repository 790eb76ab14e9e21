"""Sliding window log: exact; at most ``limit`` units within any ``W`` seconds.

The state is the log of admission times of the last ``W`` seconds, oldest first, one entry per
unit (so equal timestamps never collapse into one). Only admitted requests are recorded. An
entry ``e`` leaves the window at ``e + W`` (compared that way round, never ``now - W``, so the
time a reservation is scheduled for and the expiry test agree to the last bit).

Cost: O(limit) memory per key (8 bytes per entry plus the deque's blocks) and O(1) amortised
per decision. Prefer the sliding window counter or GCRA for large limits or many keys.
"""

from __future__ import annotations

from collections import deque
from itertools import repeat

from .ratelimit import RatePolicy
from .windowing import reachable

__all__ = ["SlidingWindowLogAlgorithm"]


class SlidingWindowLogAlgorithm:
    """Exact sliding window admitting ``limit`` units per ``window`` seconds."""

    __slots__ = ("horizon", "limit", "max_cost", "policy", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.max_cost = limit
        self.policy = RatePolicy("sliding-window-log", limit, window)
        self.horizon = window

    def _evict(self, log: deque[float], now: float) -> None:
        window = self.window
        while log and log[0] + window <= now:
            log.popleft()

    def admit(self, state: deque[float] | None, now: float, cost: int) -> deque[float] | None:
        """``reserve`` with ``max_wait=0`` when it admits at once: the log, else None (the
        log only evicted). The same steps with ``at = now``, inline and without the tuple."""
        log = deque() if state is None else state
        window = self.window
        while log and log[0] + window <= now:
            log.popleft()
        if log and log[-1] > now:
            return None  # behind a reservation handed out already
        need = len(log) + cost - self.limit
        if need > 0 and log[need - 1] + window > now:
            return None
        log.extend(repeat(now, cost))
        return log

    def reserve(
        self, state: deque[float] | None, now: float, cost: int, max_wait: float
    ) -> tuple[deque[float], float, bool]:
        log = deque() if state is None else state
        self._evict(log, now)
        at = now
        if log and log[-1] > at:
            at = log[-1]  # stay behind reservations already handed out (FIFO)
        # The `need` oldest entries must have left the window for `cost` more to fit.
        need = len(log) + cost - self.limit
        if need > 0 and log[need - 1] + self.window > at:
            at = log[need - 1] + self.window
        if at - now > max_wait:
            return log, reachable(now, at), False
        log.extend(repeat(at, cost))
        return log, at, True

    def cancel(
        self, state: deque[float] | None, now: float, cost: int, at: float
    ) -> deque[float] | None:
        if state is not None:
            for _ in range(cost):
                try:
                    state.remove(at)
                except ValueError:  # already expired and evicted
                    break
        return state

    def inspect(self, state: deque[float] | None, now: float) -> tuple[int, float]:
        if not state:
            return self.limit, 0.0
        self._evict(state, now)
        if not state:
            return self.limit, 0.0
        window = self.window
        if state[-1] > now:
            # Reservations pending in the future queue new requests behind them: none fit
            # now, and the next unit is the one `reserve` would hand out (cost 1).
            at = state[-1]
            need = len(state) + 1 - self.limit
            if need > 0 and state[need - 1] + window > at:
                at = state[need - 1] + window
            return 0, at - now
        # The quota comes back unit by unit, the oldest first: the reset stated is the next
        # unit's (waiting until the whole log has left would leave part of the quota unused).
        return max(0, self.limit - len(state)), state[0] + window - now

    def fresh_at(self, state: deque[float]) -> float:
        return state[-1] + self.window if state else 0.0

"""Fixed window counter: at most ``limit`` units per window ``[k*W, (k+1)*W)``.

Simple and O(1), but a client can spend ``limit`` at the end of one window and ``limit`` again
at the start of the next: up to 2x ``limit`` within any span of ``W`` (the boundary burst).

State: a tuple ``(k, c_k, c_k+1, ...)``: the index of the oldest window still of interest and
the units counted in it and in later windows. Later windows only have counts through waiting
reservations, which go into the last counted window or the one after it, so reservations are
handed out in arrival order. An expired window is dropped on the next decision, so old windows
never pile up.
"""

from __future__ import annotations

from math import trunc

from .ratelimit import RatePolicy
from .windowing import reachable, time_in

__all__ = ["FixedWindowAlgorithm"]

FixedWindowState = tuple[int, ...]


class FixedWindowAlgorithm:
    """Fixed window of ``window`` seconds admitting ``limit`` units each."""

    __slots__ = ("horizon", "limit", "max_cost", "policy", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.max_cost = limit
        self.policy = RatePolicy("fixed-window", limit, window)
        self.horizon = window

    def _current(self, state: FixedWindowState | None, now: float) -> tuple[int, FixedWindowState]:
        """The current window index, and the state with windows before it dropped."""
        current = int(now // self.window)
        if state is None or state[0] + len(state) - 2 < current:
            return current, (current, 0)
        if state[0] < current:
            return current, (current, *state[1 + current - state[0] :])
        return current, state

    def admit(
        self, state: FixedWindowState | None, now: float, cost: int
    ) -> FixedWindowState | None:
        """``reserve`` with ``max_wait=0`` when it admits at once: the new state, else None.
        Its common case (no reservation pending) without the tuple of ``reserve``."""
        current = trunc(now // self.window)
        if state is not None and state[0] == current and len(state) == 2:
            count = state[1] + cost
            if count <= self.limit:
                return (current, count)
        new_state, _, admitted = self.reserve(state, now, cost, 0.0)
        return new_state if admitted else None

    def reserve(
        self, state: FixedWindowState | None, now: float, cost: int, max_wait: float
    ) -> tuple[FixedWindowState, float, bool]:
        # (trunc of a whole float: int()'s value, a cheaper call; see _core.gcra)
        current = trunc(now // self.window)
        if state is None or (state[0] == current and len(state) == 2):
            # The common case, no reservation pending: count in the current window.
            count = cost if state is None else state[1] + cost
            if count <= self.limit:
                return (current, count), now, True
        current, state = self._current(state, now)
        last = state[0] + len(state) - 2
        if state[-1] + cost <= self.limit:
            index, new_state = last, (*state[:-1], state[-1] + cost)
        else:
            index, new_state = last + 1, (*state, cost)
        if index == current:
            return new_state, now, True
        at = time_in(index * self.window, index, self.window)
        if at - now > max_wait:
            return state, reachable(now, at), False
        return new_state, at, True

    def cancel(
        self, state: FixedWindowState | None, now: float, cost: int, at: float
    ) -> FixedWindowState | None:
        if state is None:
            return None
        offset = int(at // self.window) - state[0] + 1  # the window `at` was counted in
        if not 1 <= offset < len(state):
            return state  # that window is gone already: nothing left to give back
        counts = list(state)
        counts[offset] = max(0, counts[offset] - cost)
        # Windows emptied at the end are dropped, so later reservations can use them again.
        while len(counts) > 2 and counts[-1] == 0:
            counts.pop()
        return tuple(counts)

    def inspect(self, state: FixedWindowState | None, now: float) -> tuple[int, float]:
        if state is None:
            return self.limit, 0.0
        current, state = self._current(state, now)
        last = state[0] + len(state) - 2
        remaining = self.limit - state[1] if last == current else 0
        if last == current and state[1] == 0:
            return self.limit, 0.0
        return (remaining if remaining > 0 else 0), (last + 1) * self.window - now

    def fresh_at(self, state: FixedWindowState) -> float:
        return (state[0] + len(state) - 1) * self.window

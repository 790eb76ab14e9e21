"""A clock that moves only when a test moves it (trio's ``MockClock`` without autojump).

Hand it to any primitive (``RateLimiter(..., clock=clock)``, ``Pipeline.builder(clock=clock)``)
and that primitive's time, deadlines and waits follow :meth:`ManualClock.advance` /
:meth:`ManualClock.jump_to`, on whatever loop runs it (asyncio's, uvloop, the virtual-time
loop): the loop's own clock is not involved. Timers fire inside ``advance``, in deadline order,
each with the clock standing at its deadline; tasks woken by them run when the test next yields
to the loop (``await asyncio.sleep(0)``, or ``await clock.settle()``).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import sys
from collections.abc import Callable

from .._support.validation import finite

__all__ = ["ManualClock"]

_SECONDS = "a finite number of seconds"
_COMPACT_AT = 100  # cancelled timers in the heap before it may be rebuilt without them


class _ManualTimer:
    """One scheduled callback; ``cancel()`` calls it off (a no-op once it ran)."""

    __slots__ = ("callback", "cancelled", "clock", "when")

    def __init__(self, when: float, callback: Callable[[], object], clock: ManualClock) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False
        self.clock = clock

    def cancel(self) -> None:
        if not self.cancelled:
            self.cancelled = True
            self.clock._cancelled += 1  # still in the heap: counted, for the clean-up

    def __repr__(self) -> str:
        state = " cancelled" if self.cancelled else ""
        return f"<ManualClock timer at {self.when:g}{state}>"


class ManualClock:
    """A :class:`~aioresilience.abc.Clock` whose time is moved by hand, starting at ``start``.

    ``time()`` reads it; ``call_at(when, callback)`` and ``sleep(seconds)`` wait on it; nothing
    happens until :meth:`advance` or :meth:`jump_to` moves it. Call those from the thread of the
    loop the waiting tasks run on (a test's own coroutine, typically): due callbacks run
    synchronously inside them, and an exception a callback raises propagates out of ``advance``
    (the clock then stands at that callback's deadline).
    """

    def __init__(self, start: float = 0.0) -> None:
        # Finite, and an int that float() can take.
        if (
            not (isinstance(start, int | float) and not isinstance(start, bool))
            or not abs(start) <= sys.float_info.max
        ):
            raise TypeError(f"start must be a finite number of seconds, got {start!r}")
        self._now = float(start)
        self._timers: list[tuple[float, int, _ManualTimer]] = []
        self._order = itertools.count()  # equal deadlines fire in the order they were set
        # Timers cancelled but still in the heap. Once they are most of it, it is rebuilt
        # without them (as asyncio's loop does): a test that sets and cancels many far-off
        # timers (a sleep cancelled, a limiter's timer re-armed) keeps a heap of live ones.
        self._cancelled = 0

    def time(self) -> float:
        return self._now

    def call_at(self, when: float, callback: Callable[[], object]) -> _ManualTimer:
        if when != when:  # NaN: at the head of the heap it would hold back every later timer
            raise ValueError(f"when must be a number of seconds, got {when!r}")
        timers = self._timers
        if self._cancelled > _COMPACT_AT and 2 * self._cancelled > len(timers):
            timers[:] = [entry for entry in timers if not entry[2].cancelled]
            heapq.heapify(timers)
            self._cancelled = 0
        timer = _ManualTimer(float(when), callback, self)
        heapq.heappush(timers, (timer.when, next(self._order), timer))
        return timer

    async def sleep(self, seconds: float) -> None:
        """Wait until the clock has moved ``seconds`` on (at once for ``seconds <= 0``, after
        one turn of the loop, like ``asyncio.sleep(0)``)."""
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        waiter = asyncio.get_running_loop().create_future()

        def wake() -> None:
            if not waiter.done():
                waiter.set_result(None)

        timer = self.call_at(self._now + seconds, wake)
        try:
            await waiter
        finally:
            timer.cancel()  # cancelled while sleeping: the timer must not outlive the sleep

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` (>= 0) forward, firing every timer due on the way."""
        finite("seconds", seconds, what=_SECONDS)
        if not seconds >= 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        self.jump_to(self._now + seconds)

    def jump_to(self, when: float) -> None:
        """Move the clock to ``when`` (not before now), firing every timer due on the way, in
        deadline order; a timer a callback sets that is due by ``when`` fires too."""
        finite("when", when, what=_SECONDS)
        if not when >= self._now:
            raise ValueError(f"when must be >= the clock's time {self._now!r}, got {when!r}")
        when = float(when)
        timers = self._timers
        while timers and timers[0][0] <= when:
            due, _, timer = heapq.heappop(timers)
            if timer.cancelled:
                self._cancelled -= 1
                continue
            timer.cancelled = True  # ran: a late cancel() is a no-op
            self._now = max(self._now, due)
            timer.callback()
        self._now = when

    @property
    def next_deadline(self) -> float | None:
        """The earliest pending timer's deadline, or None when no timer is pending."""
        timers = self._timers
        while timers and timers[0][2].cancelled:
            heapq.heappop(timers)
            self._cancelled -= 1
        return timers[0][0] if timers else None

    async def settle(self, turns: int = 10) -> None:
        """Let the running loop run ``turns`` turns, so tasks woken by ``advance`` proceed."""
        for _ in range(turns):
            await asyncio.sleep(0)

    def __repr__(self) -> str:
        return f"ManualClock(time={self._now:g}, timers={len(self._timers)})"

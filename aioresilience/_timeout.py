"""Cancellation-based timeouts, cheaper than one loop timer per call.

``async with timeout(2):`` cancels the enclosing task at the deadline and turns *that*
cancellation into :class:`TimeoutExceeded` (a ``TimeoutError``), with the same bookkeeping as
``asyncio.timeout``: ``Task.cancelling()`` is recorded on entry and ``Task.uncancel()`` called
on exit, so a cancellation from outside passes through unchanged and nested timeouts each
report their own expiry.

Why it is cheaper: calls with the same duration have their deadlines in arrival order. So the
deadlines of one duration on one loop form a *lane*: a FIFO queue with a single loop timer,
armed for the earliest deadline. Entering appends to the lane (arming the timer only if none is
armed, which it usually is); leaving marks the entry done and drops finished entries from the
front. When the timer fires it expires the entries whose deadline has passed, drops finished
ones and re-arms for the next live deadline. ``asyncio.timeout`` instead creates, schedules and
cancels a timer handle (a heap push and a later lazy pop) per call.
"""

from __future__ import annotations

import asyncio
import functools
import math
import sys
import threading
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from . import _clock
from ._awaitable import DONE
from ._errors import TimeoutExceeded
from ._events import Severity, emit
from ._predicates import require_async
from ._validation import non_negative_or_none

__all__ = ["entered_timeout", "timeout"]

P = ParamSpec("P")
T = TypeVar("T")

_INF = math.inf
_NUMBERS = (float, int)
_get_ident = threading.get_ident
_asyncgen_hooks = sys.get_asyncgen_hooks
# asyncio's own table of the task each loop is running (C-accelerated, keyed by loop).
_current_tasks: dict[asyncio.AbstractEventLoop, asyncio.Task[Any]] | None = getattr(
    asyncio.tasks, "_current_tasks", None
)


def _running_task() -> asyncio.Task[Any] | None:
    """``asyncio.current_task()``, switching off the shortcuts of :meth:`timeout.__aenter__`
    for good on a Python that keeps the current task elsewhere than in asyncio's table
    (3.14 moved it to the thread state)."""
    global _current_tasks
    task = asyncio.current_task()
    tasks = _current_tasks
    if task is not None and tasks is not None and tasks.get(task.get_loop()) is not task:
        _current_tasks = None
    return task


# Entry states
_CREATED, _ENTERED, _EXPIRING, _EXPIRED, _EXITED = range(5)


class _Lane:
    """The live deadlines of one duration on one loop, in deadline order, with one timer.

    Entries leave from either end directly (the newest, usually, or the oldest); one that
    finishes in between is only counted in ``finished`` and dropped when it reaches the front.
    """

    __slots__ = ("armed", "entries", "finished", "lanes", "loop", "seconds", "timer_at")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, lanes: dict[float, _Lane], seconds: float
    ) -> None:
        self.lanes = lanes  # the loop's lanes, which this one leaves once it runs empty
        self.seconds = seconds
        # Weak: the lane lives in a WeakKeyDictionary keyed by this loop; a strong reference
        # from the value would keep every loop ever used alive.
        self.loop = weakref.proxy(loop)
        self.entries: deque[timeout] = deque()
        self.finished = 0  # entries still queued whose block has exited
        # The timer is never cancelled (an early firing just re-arms), so no handle is kept:
        # a handle references its loop, which would keep the loop alive through this lane.
        self.armed = False
        self.timer_at = 0.0

    def arm(self, at: float) -> None:
        """Schedule the timer. Only needed when none is armed: an armed timer is never later
        than a new deadline, which is later than every deadline already in the lane."""
        self.armed = True
        self.timer_at = at
        self.loop.call_at(at, self.fire)

    def done(self, entry: timeout) -> None:
        """``entry``'s block exited before its deadline and it is not the newest entry (which
        the caller pops itself)."""
        entries = self.entries
        if entries[0] is entry:
            entries.popleft()
            self._drop_finished()
        else:
            self.finished += 1
            if self.finished > len(entries) // 2 + 32:
                # Entries finishing out of order pile up behind a long-running one: compact.
                self.entries = deque(e for e in entries if e.state < _EXPIRED and e is not entry)
                self.finished = 0

    def _drop_finished(self) -> None:
        entries = self.entries
        while self.finished and entries and entries[0].state >= _EXPIRED:
            entries.popleft()
            self.finished -= 1

    def fire(self) -> None:
        self.armed = False
        now = max(self.timer_at, self.loop.time())
        entries = self.entries
        self._drop_finished()
        while entries:
            head = entries[0]
            if head.deadline > now:
                self.arm(head.deadline)
                return
            entries.popleft()
            head.expire()
            self._drop_finished()
        if self.lanes.get(self.seconds) is self:
            # Empty: forget the lane, so one-off durations (deadline - now) do not pile up.
            del self.lanes[self.seconds]


# Lanes per loop; the last loop's lanes are cached so the common case is one identity test.
_lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, _Lane]] = (
    weakref.WeakKeyDictionary()
)
# The last loop, its lanes, and whether it records the thread running it (asyncio's loops
# do, in `_thread_id`), in one tuple: a thread reading it while another replaces it gets a
# loop with that loop's lanes, never with the other's. (The loop is Any: None before the
# first entry, and never used as a loop unless found running.)
_last: tuple[Any, dict[float, _Lane], bool] = (None, {}, False)


def _lane(loop: asyncio.AbstractEventLoop, seconds: float) -> _Lane:
    global _last
    last_loop, lanes, _ = _last
    if loop is not last_loop:
        lanes = _lanes.setdefault(loop, {})
        _last = (loop, lanes, hasattr(loop, "_thread_id"))
    lane = lanes.get(seconds)
    if lane is None:
        lane = lanes[seconds] = _Lane(loop, lanes, seconds)
    return lane


def entered_timeout(seconds: float | None) -> timeout:
    """A timeout of ``seconds`` (already validated) entered now, for callers that run it
    without ``async with`` (a pipeline's guards); leave it with its ``__aexit__``."""
    limit = timeout.__new__(timeout)
    limit.seconds = seconds
    limit.state = _CREATED
    limit.deadline = _INF
    limit.__aenter__()  # returns DONE: entering never waits
    return limit


class timeout:
    """Limit the enclosed work to ``seconds`` (``None``: no limit).

    ``async with timeout(2): ...`` raises :class:`TimeoutExceeded` if the block is still running
    2 s after entry (its work is cancelled first). ``@timeout(2)`` applies the same to every
    call of a coroutine function. A cancellation that did not come from this timeout passes
    through as ``CancelledError``.
    """

    __slots__ = ("_cancelling", "_lane", "_task", "deadline", "seconds", "state")

    def __init__(self, seconds: float | None) -> None:
        # The common valid case checked inline (this runs once per call); the rest, and the
        # error messages, in the shared validator.
        if not (seconds.__class__ in _NUMBERS and 0 <= seconds < _INF):
            seconds = non_negative_or_none("seconds", seconds)
        self.seconds = seconds
        self.state = _CREATED
        self.deadline = math.inf

    def __aenter__(self) -> Awaitable[None]:
        if self.state:  # not _CREATED
            raise RuntimeError("a timeout object can be entered only once; create a new one")
        # The current task, without asyncio.current_task(), whose search for the running
        # loop makes a getpid() system call on CPython 3.11. asyncio keeps the task each loop
        # is running in a table, so finding the running loop is enough. The common case: the
        # loop of the previous entry records the thread running it (`_thread_id`, asyncio's
        # loops, None when stopped), it is *this* thread, and no other loop is inside a task
        # step (in another thread, or nested in this one by nest_asyncio-style hacks, where
        # the outer loop still says this thread). Otherwise the running loop is found through
        # the async-generator hooks, which every loop (uvloop too) installs for its own
        # thread while it runs (and restores when it stops), as bound methods of itself.
        # Anything else takes the regular path.
        last_loop, lanes, records_thread = _last
        tasks = _current_tasks
        if (
            records_thread
            and tasks is not None
            and len(tasks) == 1
            and last_loop._thread_id == _get_ident()
        ):
            loop = last_loop
        else:
            loop = getattr(_asyncgen_hooks()[0], "__self__", None)
        try:
            task = None if tasks is None else tasks.get(loop)
        except TypeError:  # hooks bound to something unhashable: not a loop
            task = None
        if task is None:
            task = _running_task()
            if task is None:
                raise RuntimeError("timeout() must be used inside a task")
            loop = task.get_loop()
        self._task = task
        self._cancelling = task.cancelling()
        self.state = _ENTERED
        seconds = self.seconds
        if seconds is not None:
            self.deadline = deadline = _clock.now() + seconds
            lane = lanes.get(seconds) if loop is last_loop else None
            if lane is None:
                lane = _lane(loop, seconds)
            self._lane = lane
            lane.entries.append(self)  # here, not in a _Lane method: this runs once per call
            if not lane.armed:
                lane.arm(deadline)
        return DONE

    def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Awaitable[None]:
        state = self.state
        if state is _ENTERED and self.seconds is not None:  # still queued in its lane
            entries = self._lane.entries
            if entries[-1] is self:  # the newest: the common case
                entries.pop()
            else:
                self._lane.done(self)
        if state is _EXPIRING:
            self.state = _EXPIRED
            if self._task.uncancel() <= self._cancelling and exc_type is asyncio.CancelledError:
                # No other cancellation is pending: this one was ours.
                emit(None, "timeout", "timeout", Severity.WARNING, seconds=self.seconds)
                raise TimeoutExceeded(
                    f"timed out after {self.seconds:g}s", seconds=self.seconds or 0.0
                ) from exc
        else:
            self.state = _EXITED
        return DONE

    def expire(self) -> None:
        """The deadline passed with the block still running: cancel its task."""
        self.state = _EXPIRING
        self._task.cancel()

    @property
    def expired(self) -> bool:
        """Whether this timeout fired (the block was cancelled by it)."""
        return self.state in (_EXPIRING, _EXPIRED)

    def remaining(self) -> float:
        """Seconds left before the deadline (``inf`` without one)."""
        return self.deadline - _clock.now()

    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        """``@timeout(seconds)``: each call of ``fn`` runs under its own timeout."""
        require_async("timeout", fn)
        seconds = self.seconds

        @functools.wraps(fn)
        async def limited(*args: P.args, **kwargs: P.kwargs) -> T:
            async with timeout(seconds):
                return await fn(*args, **kwargs)

        return limited

    def __repr__(self) -> str:
        states = ["created", "entered", "expiring", "expired", "exited"]
        return f"<timeout seconds={self.seconds} state={states[self.state]}>"

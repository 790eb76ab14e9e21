"""Cancellation-based timeouts: a drop-in for ``asyncio.timeout``, cheaper than one timer per call.

``async with timeout(2) as t:`` cancels the enclosing task at the deadline and turns *that*
cancellation into :class:`TimeoutExceeded` (a ``TimeoutError``), with the same bookkeeping as
``asyncio.timeout``: ``Task.cancelling()`` is recorded on entry and ``Task.uncancel()`` called
on exit, so a cancellation from outside passes through unchanged and nested timeouts each
report their own expiry. ``t`` offers ``when()``, ``reschedule()`` and ``expired()`` as
``asyncio.Timeout`` does, and :func:`timeout_at` takes an absolute deadline.

Why it is cheaper: calls with the same duration have their deadlines in arrival order. So the
deadlines of one duration on one loop form a *lane*: a FIFO queue with a single loop timer,
armed for the earliest deadline. Entering appends to the lane (arming the timer only if none is
armed, which it usually is); leaving marks the entry done and drops finished entries from the
front. When the timer fires it expires the entries whose deadline has passed, drops finished
ones and re-arms for the next live deadline. ``asyncio.timeout`` instead creates, schedules and
cancels a timer handle (a heap push and a later lazy pop) per call.

A deadline that is not one duration after entry (an absolute one, a rescheduled one, one
already past) has a timer handle of its own, as with ``asyncio.timeout``. Only documented
asyncio APIs are used: the task is ``asyncio.current_task()``, the clock its loop's ``time()``.

A timeout is a guard (``_support/guard.py``): its core ``_enter()`` enters a fresh timeout of
the same duration (or deadline) and returns it as the ticket, ``_exit`` leaves that one; the
decorator, ``call`` and the pipeline's :class:`TimeoutStrategy` are built from that core, so
one ``timeout(2)`` serves any number of calls that way. ``async with timeout(2) as t`` is the
exception, as in asyncio: the object entered is the entry itself (single use, its ``when()``
and ``reschedule()`` are the block's), so its ``__aenter__``/``__aexit__`` enter and leave
``self`` with the same two steps.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
import weakref
from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, ParamSpec, TypeVar

from ._support.compose import Core, Strategy
from ._support.errors import TimeoutExceeded
from ._support.events import ResilienceEvent, Severity, emit
from ._support.guard import GuardForms
from ._support.validation import non_negative_or_none, number_or_none

__all__ = ["TimedOut", "TimeoutStrategy", "timeout", "timeout_at"]

P = ParamSpec("P")
T = TypeVar("T")

_INF = math.inf
_MAX = sys.float_info.max
_MIN = -_MAX
# The range of ints the interpreter compares on its fast path (one 30-bit digit); a larger
# duration is checked by the shared validator.
_HIGH = 2**30 - 1
_LOW = -_HIGH
_current_task = asyncio.current_task
_monotonic = time.monotonic
_BASE_LOOP_TIME = asyncio.BaseEventLoop.time
_CancelledError = asyncio.CancelledError
# From 3.13 on, asyncio.timeout also treats subclasses of CancelledError as its own expiry,
# and puts a TimeoutError into the context chain of an error raised while its cancellation
# unwinds (where older versions leave the bare CancelledError). We follow the running version.
_NEW_EXIT = sys.version_info >= (3, 13)

# Entry states
_CREATED, _ENTERED, _EXPIRING, _EXPIRED, _EXITED = range(5)
_STATE_NAMES = ("created", "entered", "expiring", "expired", "finished")


@dataclass(frozen=True, slots=True, kw_only=True)
class TimedOut(ResilienceEvent):
    """A timeout fired: the call ran out of its ``seconds``."""

    name: ClassVar[str] = "timeout"
    severity: ClassVar[Severity] = Severity.WARNING

    seconds: float


class _Lane:
    """The live deadlines of one duration on one loop, in deadline order, with one timer.

    Entries leave from either end directly (the newest, usually, or the oldest); one that
    leaves in between is only counted in ``finished`` (its ``_lane`` no longer this lane) and
    dropped when it reaches the front.
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
        self.finished = 0  # entries still queued that have left the lane
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

    def leave(self, entry: timeout) -> None:
        """``entry`` leaves before its deadline (its block exited, or its deadline moved)."""
        entries = self.entries
        if entries[-1] is entry:
            entry._lane = None
            entries.pop()
        else:
            self.leave_behind(entry)

    def leave_behind(self, entry: timeout) -> None:
        """``entry``, not the newest, leaves before its deadline: the common way out of
        concurrent calls of one duration, which finish in any order (so no frame more than
        needed)."""
        entry._lane = None
        entries = self.entries
        if entries[0] is entry:
            entries.popleft()
            if self.finished:  # (the frame only when something is left to drop)
                self._drop_finished()
        else:
            finished = self.finished = self.finished + 1
            if finished > len(entries) // 2 + 32:
                # Entries leaving out of order pile up behind a long-running one: compact.
                self.entries = deque(e for e in entries if e._lane is self)
                self.finished = 0

    def _drop_finished(self) -> None:
        entries = self.entries
        while self.finished and entries and entries[0]._lane is not self:
            entries.popleft()
            self.finished -= 1

    def fire(self) -> None:
        self.armed = False
        now = max(self.timer_at, self.loop.time())
        entries = self.entries
        self._drop_finished()
        while entries:
            head = entries[0]
            when = head._when
            if when is not None and when > now:  # (an entry in a lane always has a deadline)
                self.arm(when)
                return
            entries.popleft()
            head._expire()
            self._drop_finished()
        if self.lanes.get(self.seconds) is self:
            # Empty: forget the lane, so one-off durations (deadline - now) do not pile up.
            del self.lanes[self.seconds]


# Lanes per loop; the last loop and its lanes are cached (as one tuple, so a thread reading it
# while another replaces it never pairs one loop with the other's lanes) so that the common
# case is one identity test. (Any: None before the first entry.)
_lanes: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[float, _Lane]] = (
    weakref.WeakKeyDictionary()
)
_last: tuple[Any, dict[float, _Lane]] = (None, {})


def _lane(loop: asyncio.AbstractEventLoop, seconds: float) -> _Lane:
    global _last
    last_loop, lanes = _last
    if loop is not last_loop:
        lanes = _lanes.setdefault(loop, {})
        _last = (loop, lanes)
    lane = lanes.get(seconds)
    if lane is None:
        lane = lanes[seconds] = _Lane(loop, lanes, seconds)
    return lane


def _seconds(seconds: Any) -> float | None:
    """A duration outside the inline checks of ``timeout()``: validated (inf: no limit)."""
    seconds = number_or_none("seconds", seconds)
    return None if seconds == _INF else seconds


class timeout(GuardForms):
    """Limit the enclosed work to ``seconds`` (``None`` or ``inf``: no limit; zero or
    negative: expired at once, the block is cancelled at its first suspension).

    ``async with timeout(2) as t: ...`` raises :class:`TimeoutExceeded` if the block is still
    running 2 s after entry (its work is cancelled first); ``t`` is the timeout itself, with
    ``when()``, ``reschedule()`` and ``expired()`` as in ``asyncio.Timeout``. ``@timeout(2)``
    applies the same to every call of a coroutine function. A cancellation that did not come
    from this timeout passes through as ``CancelledError``.
    """

    # Slots on 3.11 and 3.12 only. From 3.13 on, the interpreter specialises a class call that
    # runs a Python __init__ (it makes the instance and enters __init__ in one step) only for
    # a class whose instances keep their attributes inline (no __slots__): a timeout is made
    # once per call, and callgrind (instructions per `async with timeout(10)` around a bare
    # await) reads 3.13 11,617 with slots, 11,031 without; 3.12 11,742 with, 11,984 without.
    if sys.version_info < (3, 13):
        __slots__ = (
            "_cancelling",
            "_handle",
            "_lane",
            "_start",
            "_task",
            "_when",
            "seconds",
            "state",
        )
    _cancelling: int
    _handle: asyncio.Handle | None  # the timer of a deadline outside the lanes
    _lane: _Lane | None  # the lane holding this entry, None once it left (or never was in one)
    _start: float
    _task: asyncio.Task[Any]
    _when: float | None
    name = "timeout"

    def __init__(self, seconds: float | None) -> None:
        # The common valid case checked inline (this runs once per call); the rest, and the
        # error messages, in the shared validator. inf means no limit.
        # An int is compared with ints, a float with floats: a mixed comparison costs more
        # than the rest of this method (3.12, callgrind: the checks cost 1,090 instructions
        # in the mixed form, 540 in this one).
        cls = seconds.__class__
        if cls is int:
            if not _LOW <= seconds <= _HIGH:  # type: ignore[operator]
                seconds = _seconds(seconds)
        elif cls is not float or not _MIN <= seconds <= _MAX:  # type: ignore[operator]
            seconds = _seconds(seconds)
        self.seconds = seconds
        self.state = _CREATED
        self._when = None

    async def __aenter__(self) -> timeout:  # type: ignore[override]
        # _begin's common case inline (a duration, entered once, in its lane): one frame less.
        seconds = self.seconds
        if self.state or seconds is None:
            self._begin()
            return self
        task = _current_task()
        if task is None:
            raise RuntimeError("timeout() must be used inside a task")
        loop = task.get_loop()
        self._task = task
        self._cancelling = task.cancelling()
        self.state = _ENTERED
        self._start = now = _monotonic() if loop.__class__.time is _BASE_LOOP_TIME else loop.time()
        self._when = when = now + seconds
        if when > now:
            last_loop, lanes = _last
            lane = lanes.get(seconds) if loop is last_loop else None
            if lane is None:
                lane = _lane(loop, seconds)
            self._lane = lane
            lane.entries.append(self)
            if not lane.armed:
                lane.arm(when)
            return self
        self._lane = None
        self._handle = self._timer(loop, when)
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        # _exit's common case inline, as there: one frame less.
        if self.state is _ENTERED:
            lane = self._lane
            if lane is not None:
                # Pop and look (cheaper than a deque subscript first): the newest, usually.
                entries = lane.entries
                newest = entries.pop()
                if newest is not self:
                    entries.append(newest)
                    lane.leave_behind(self)
                self.state = _EXITED
                return
        self._leave(exc)

    # -- the guard's core -----------------------------------------------------------------------

    def _enter(self) -> timeout:
        """A fresh timeout like this one, entered now: the ticket ``_exit`` leaves."""
        seconds = self.seconds
        entry: timeout = _Entry()
        entry.seconds = seconds
        if seconds is None:
            # An absolute deadline (timeout_at) is every entry's.
            entry.state = _CREATED
            entry._when = self._when
            entry._begin()
            return entry
        # A duration starts at each entry: _begin's common case inline, as in __aenter__ (one
        # frame less; a pipeline enters one per timeout per call).
        task = _current_task()
        if task is None:
            raise RuntimeError("timeout() must be used inside a task")
        loop = task.get_loop()
        entry._task = task
        entry._cancelling = task.cancelling()
        entry.state = _ENTERED
        entry._start = now = _monotonic() if loop.__class__.time is _BASE_LOOP_TIME else loop.time()
        entry._when = when = now + seconds
        if when > now:
            last_loop, lanes = _last
            lane = lanes.get(seconds) if loop is last_loop else None
            if lane is None:
                lane = _lane(loop, seconds)
            entry._lane = lane
            lane.entries.append(entry)
            if not lane.armed:
                lane.arm(when)
            return entry
        entry._lane = None
        entry._handle = entry._timer(loop, when)
        return entry

    def _exit(self, ticket: timeout, exc: BaseException | None, result: Any) -> None:
        # The common case inline (the newest entry of its lane leaves in time): this runs once
        # per call. Everything else, this case included, is _leave's.
        if ticket.state is _ENTERED:
            lane = ticket._lane
            if lane is not None:
                entries = lane.entries
                newest = entries.pop()  # (as in __aexit__)
                if newest is not ticket:
                    entries.append(newest)
                    lane.leave_behind(ticket)
                ticket.state = _EXITED
                return
        ticket._leave(exc)

    # -- one entry --------------------------------------------------------------------------

    def _begin(self) -> None:
        if self.state:  # not _CREATED
            raise RuntimeError("this timeout has already been entered; create a new one")
        task = _current_task()
        if task is None:
            raise RuntimeError("timeout() must be used inside a task")
        loop = task.get_loop()
        self._task = task
        self._cancelling = task.cancelling()
        self.state = _ENTERED
        # asyncio's own loops' time() is a Python-level BaseEventLoop.time returning
        # time.monotonic() (documented: the loop's internal monotonic clock): for them the C
        # function itself, one frame less per entry; any other loop's own time().
        self._start = now = _monotonic() if loop.__class__.time is _BASE_LOOP_TIME else loop.time()
        seconds = self.seconds
        if seconds is not None:
            self._when = when = now + seconds
            if when > now:  # the common case: in the lane of its duration
                last_loop, lanes = _last
                lane = lanes.get(seconds) if loop is last_loop else None
                if lane is None:
                    lane = _lane(loop, seconds)
                self._lane = lane
                lane.entries.append(self)  # here, not in a _Lane method: runs once per call
                if not lane.armed:
                    lane.arm(when)
                return
        self._lane = None
        self._handle = None if self._when is None else self._timer(loop, self._when)

    def _leave(self, exc: BaseException | None) -> None:
        state = self.state
        if state is _ENTERED:
            lane = self._lane
            if lane is not None:  # still queued in its lane
                entries = lane.entries
                if entries[-1] is self:  # the newest: the common case
                    entries.pop()
                else:
                    lane.leave(self)
            elif self._handle is not None:
                self._handle.cancel()
            self.state = _EXITED
        elif state is _EXPIRING:
            self.state = _EXPIRED
            if self._task.uncancel() <= self._cancelling and exc is not None:
                # No other cancellation is pending: this one was ours.
                exc_type = exc.__class__
                if exc_type is _CancelledError or (
                    _NEW_EXIT and issubclass(exc_type, _CancelledError)
                ):
                    emit(None, "timeout", TimedOut, seconds=self._exceeded())
                    raise self._error() from exc
                if _NEW_EXIT:
                    # An error raised while our cancellation unwound: 3.13's asyncio records
                    # the timeout in its context chain.
                    self._insert_timeout(exc)
                    if isinstance(exc, BaseExceptionGroup):
                        for inner in exc.exceptions:
                            self._insert_timeout(inner)
        else:
            raise RuntimeError(f"this timeout cannot be left: it is {_STATE_NAMES[state]}")

    def _timer(self, loop: asyncio.AbstractEventLoop, when: float) -> asyncio.Handle | None:
        """A timer handle of this entry's own, for a deadline outside the lanes (``inf``: none).
        A deadline already past fires at the next turn of the loop, before the block goes on
        from its first suspension, as asyncio's does."""
        if when == _INF:
            return None
        if when <= loop.time():
            return loop.call_soon(self._fire)
        return loop.call_at(when, self._fire)

    def _fire(self) -> None:
        self._handle = None
        self._expire()

    def _expire(self) -> None:
        """The deadline passed with the block still running: cancel its task."""
        self.state = _EXPIRING
        self._task.cancel()

    def _exceeded(self) -> float:
        """The duration from entry to the deadline that passed (0 for one already past)."""
        seconds, when = self.seconds, self._when
        if seconds is not None and when == self._start + seconds:
            return max(0.0, seconds)  # as given (the difference below may round)
        return 0.0 if when is None else max(0.0, when - self._start)

    def _error(self) -> TimeoutExceeded:
        seconds = self._exceeded()
        return TimeoutExceeded(f"timed out after {seconds:g}s", seconds=seconds)

    def _insert_timeout(self, exc: BaseException) -> None:
        """Put a TimeoutExceeded between ``exc``'s chain and our CancelledError in it (what
        3.13's ``asyncio.Timeout`` does with a TimeoutError)."""
        while exc.__context__ is not None:
            context = exc.__context__
            if isinstance(context, _CancelledError):
                error = self._error()
                error.__context__ = error.__cause__ = context
                exc.__context__ = error
                return
            exc = context

    def when(self) -> float | None:
        """The deadline, in the loop's time (``loop.time()``); None without one (and, for a
        duration, before entry)."""
        return self._when

    def reschedule(self, when: float | None) -> None:
        """Move the deadline to ``when`` (the loop's time; None: no deadline; one already past
        expires at the next turn of the loop). Only while the block runs, as asyncio's."""
        if self.state is not _ENTERED:
            if self.state is _CREATED:
                raise RuntimeError("this timeout has not been entered")
            raise RuntimeError(f"cannot reschedule a timeout that is {_STATE_NAMES[self.state]}")
        when = number_or_none("when", when)
        if when == self._when:
            return
        lane = self._lane
        if lane is not None:
            # A lane keeps its deadlines in order: a moved one takes a timer of its own.
            lane.leave(self)
        elif self._handle is not None:
            self._handle.cancel()
        self._when = when
        self._handle = None if when is None else self._timer(self._task.get_loop(), when)

    def expired(self) -> bool:
        """Whether this timeout fired (the block was cancelled by it)."""
        return self.state in (_EXPIRING, _EXPIRED)

    def remaining(self) -> float:
        """Seconds left before the deadline (``inf`` without one; the full duration before
        entry)."""
        when = self._when
        if when is None:
            return _INF if self.seconds is None else self.seconds
        loop = self._task.get_loop() if self.state else asyncio.get_running_loop()
        return when - loop.time()

    def __repr__(self) -> str:
        return (
            f"<timeout seconds={self.seconds} when={self._when} state={_STATE_NAMES[self.state]}>"
        )


class _Entry(timeout):
    """An entry that ``timeout._enter`` makes (its ticket): a timeout whose fields ``_enter``
    sets itself. A class of its own only so that making one is a plain class call with no
    ``__init__`` to run: ``timeout.__new__(timeout)`` goes through ``object.__new__``'s
    wrapper, 1,660 instructions on CPython 3.12 (callgrind), ``_Entry()`` 970."""

    if sys.version_info < (3, 13):
        __slots__ = ()
    __init__ = object.__init__


def timeout_at(when: float | None) -> timeout:
    """A timeout with an absolute deadline ``when``, in the loop's time (``loop.time()``), like
    ``asyncio.timeout_at``; None: no deadline; one already past expires at once."""
    limit = timeout(None)
    limit._when = number_or_none("when", when)
    return limit


class TimeoutStrategy(Strategy):
    """A pipeline's timeout (``PipelineBuilder.timeout``): the core of one ``timeout``."""

    kind = "timeout"

    def __init__(self, seconds: float | None) -> None:
        self.seconds = non_negative_or_none("seconds", seconds)
        super().__init__("no limit" if self.seconds is None else f"{self.seconds:g}s")
        self._timeout = timeout(self.seconds)

    def core(self) -> Core:
        return self._timeout._enter, self._timeout._exit

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "seconds": self.seconds}

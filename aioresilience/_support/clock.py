"""Time, as an object handed to each primitive (DESIGN: the time seam).

A :class:`Clock` reads the time, schedules a callback at a time, and sleeps: all that the
primitives' deadlines, waits and re-plans need. The default, a :class:`LoopClock`, is the
running event loop's own clock (``loop.time()``, ``loop.call_at``, ``asyncio.sleep``), so a
deadline is computed on the clock of the loop whose timer fires it (uvloop's ``time()`` counts
whole milliseconds), and a virtual-time loop (:mod:`aioresilience.testing`) controls every
primitive without anything being registered or switched. Every primitive takes ``clock=`` and a
pipeline hands its own to the strategies it builds; ``aioresilience.testing.ManualClock`` is one
that tests move by hand. The models are trio's ``Clock`` and Polly's ``TimeProvider``: the clock
is an argument, never a module global switched at run time.

The rule every front-end follows: **one clock per deadline**. A deadline computed with
``clock.time()`` is waited for with the same clock's ``call_at``/``sleep``, never with the
loop's timers directly.

``_core`` never reads a clock: the front-ends pass ``now`` to it.
"""

from __future__ import annotations

import asyncio
import inspect
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

__all__ = ["LOOP_CLOCK", "Clock", "LoopClock", "Timer", "clock_option", "reads_inline"]


class Timer(Protocol):
    """What :meth:`Clock.call_at` returns: a scheduled callback that can be called off."""

    def cancel(self) -> None: ...


@runtime_checkable
class Clock(Protocol):
    """A monotonic clock in seconds, and the two ways of waiting on it."""

    def time(self) -> float:
        """Now, in seconds on this clock's monotonic scale."""
        ...

    def call_at(self, when: float, callback: Callable[[], object]) -> Timer:
        """Run ``callback()`` once :meth:`time` reaches ``when`` (in the running loop's thread)."""
        ...

    async def sleep(self, seconds: float) -> None:
        """Suspend the calling task for ``seconds`` on this clock (cancellable)."""
        ...


_running_loop = asyncio.get_running_loop
_get_ident = threading.get_ident
_monotonic = time.monotonic
_BASE_LOOP_TIME = asyncio.BaseEventLoop.time


def _unbound() -> bool:
    return False


class LoopClock:
    """The running event loop's clock: ``loop.time()``, ``loop.call_at()``, ``asyncio.sleep``.

    Outside a running loop (a synchronous ``try_acquire()`` at start-up, say) ``time()`` is
    ``time.monotonic()``, the clock asyncio's own loops run on.

    How ``time()`` finds the loop depends on the interpreter, by measurement (a primitive's
    hot path reads the clock once per call). From CPython 3.12 ``asyncio.get_running_loop()`` is
    a cheap C call and is asked every time. On 3.11 it makes a ``getpid()`` system call each
    time, so there ``time()`` remembers the loop it last found (with the thread it found it in)
    and asks again only when that loop is no longer running in the calling thread: a thread runs
    at most one loop at a time, so "this thread's remembered loop is running" means "it is this
    thread's running loop" (``AbstractEventLoop.is_running`` and ``threading.get_ident`` are
    both documented). Each primitive gets its own instance (:func:`clock_option`), so primitives
    on two threads' loops never evict each other's loop.

    On every version, a loop whose class keeps asyncio's ``BaseEventLoop.time`` (asyncio's own
    loops: a Python-level method returning ``time.monotonic()``) is read by calling
    ``time.monotonic`` itself, one Python frame less per reading; any other loop (uvloop, a
    virtual-time loop, a subclass with a clock of its own) by its ``time()``.

    From 3.12 the limiter's two hit paths (``try_acquire`` and the state's ``acquire``) make
    this same reading inline for a clock that :func:`reads_inline` accepts: the call of
    ``time()`` itself is a third of their cost otherwise. Keep the two in step.
    """

    __slots__ = ("_bound",)

    def __init__(self) -> None:
        # (thread id, loop.is_running, loop.time), replaced as one tuple: a reader in another
        # thread sees the old triple or the new one, never half of each. (Used on 3.11 only.)
        self._bound: tuple[int, Callable[[], bool], Callable[[], float]] = (0, _unbound, _monotonic)

    if sys.version_info >= (3, 12):

        def time(self) -> float:
            try:
                loop = _running_loop()
            except RuntimeError:  # no running loop: the documented answer of get_running_loop()
                return _monotonic()
            if loop.__class__.time is _BASE_LOOP_TIME:
                return _monotonic()  # asyncio's own loop: its time() without its frame
            return loop.time()

    else:

        def time(self) -> float:
            thread, running, now = self._bound
            if thread == _get_ident() and running():
                return now()
            return self._bind()

    def _bind(self) -> float:
        try:
            loop = _running_loop()
        except RuntimeError:  # no running loop: the documented answer of get_running_loop()
            return _monotonic()
        # asyncio's own loops read time.monotonic() in a Python-level BaseEventLoop.time
        # (documented: "the event loop's internal monotonic clock"); calling the C function
        # itself saves that frame on every reading (3.11: 143 -> ~115 ns a reading, measured).
        now = _monotonic if type(loop).time is _BASE_LOOP_TIME else loop.time
        self._bound = (_get_ident(), loop.is_running, now)
        return now()

    def call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        return _running_loop().call_at(when, callback)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def __repr__(self) -> str:
        return "LoopClock()"


#: A shared :class:`LoopClock`, for code that has no primitive of its own to hold one.
LOOP_CLOCK = LoopClock()

_INLINE = sys.version_info >= (3, 12)


def reads_inline(clock: object) -> bool:
    """Whether a hot path may read ``clock`` as :meth:`LoopClock.time` does on 3.12+, inline:
    ``get_running_loop()``, then ``time.monotonic()`` for a loop that keeps asyncio's
    ``BaseEventLoop.time``, else the loop's ``time()``; with no running loop, ``clock.time()``.
    True for a plain :class:`LoopClock` from CPython 3.12 on (before, ``get_running_loop()``
    makes a ``getpid()`` call, and ``LoopClock.time`` remembers its loop instead)."""
    return _INLINE and type(clock) is LoopClock


def clock_option(name: str, value: Any) -> Clock:
    """A primitive's ``clock=`` option: None for the running loop's clock (a fresh
    :class:`LoopClock`), else a :class:`Clock` (``time`` and ``call_at`` plain callables,
    ``sleep`` a coroutine function). Refused with ``TypeError`` naming ``name`` and the value."""
    if value is None:
        return LoopClock()
    for method, must_be_async in (("time", False), ("call_at", False), ("sleep", True)):
        attribute = getattr(value, method, None)
        if not callable(attribute):
            raise TypeError(
                f"{name} must be a Clock (time(), call_at(when, callback), async sleep()), "
                f"got {value!r}: it has no {method}()"
            )
        if inspect.iscoroutinefunction(attribute) is not must_be_async:
            kind = "a coroutine function" if must_be_async else "a plain (not async) method"
            raise TypeError(f"{name}.{method} must be {kind}, got {attribute!r} (on {value!r})")
    return value  # type: ignore[no-any-return]

"""An asyncio event loop whose clock jumps instead of waiting, and that never hangs.

When nothing is ready to run, a normal loop blocks in ``select()`` until the next timer is due.
This loop polls the selector without blocking and, if no I/O is ready, moves its clock forward
to that timer instead (the approach of the ``looptime`` plugin and of trio's ``MockClock`` with
autojump). So ``await asyncio.sleep(3600)`` returns at once with ``loop.time()`` exactly 3600
later, wake-up order is exact, and ``asyncio.timeout``/``wait_for`` expire in virtual time.

When nothing is ready and no timer is scheduled, only something outside the loop can wake it:
I/O on a file descriptor it watches, a thread calling ``call_soon_threadsafe`` (which is how
``run_in_executor``/``to_thread`` deliver results), a signal handler. If there is none of
these, nothing ever will, and the loop raises :class:`DeadlockError` naming the tasks still
waiting and where, instead of hanging. When there is one, it waits for it in real time, with
the virtual clock standing still. The model is the global deadlock detector designed for trio
(python-trio/trio#1085), and its rule: never a false positive, since that breaks a working
program, while a missed deadlock only costs a diagnosis (here the pytest plugin's watchdog).

Limits, by design:

- Only the *loop's* clock is virtual. Code that reads ``time.monotonic()`` or ``time.time()``
  itself sees real time; aioresilience reads the loop's clock (or the ``clock=`` it was given).
- The clock jumps whenever the loop has nothing to do, even if a thread or another process is
  about to answer; work that waits on them with a timeout can time out at once. Await such work
  without a timeout, or run it on a normal loop.
- A thread the loop did not start (anyio's worker threads, a user's executor, any
  ``threading.Thread``) may call back at any time, so while one is alive and not known idle the
  loop keeps waiting (re-checking every ``THREAD_POLL_INTERVAL`` seconds of real time) rather
  than report a deadlock. Threads that Python does not know (started by C code) are not seen.
- uvloop keeps its clock inside libuv and cannot be made virtual; time-based tests run on this
  loop, and the same code then runs unchanged on uvloop in production.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import inspect
import linecache
import math
import selectors
import threading
import time
import types
from collections.abc import Callable, Coroutine, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, Unpack

from .._support.errors import ResilienceError
from .._support.validation import finite

if TYPE_CHECKING:
    from _typeshed import FileDescriptorLike

__all__ = [
    "THREAD_POLL_INTERVAL",
    "DeadlockError",
    "VirtualClockSelector",
    "VirtualTimeLoop",
    "run",
]

T = TypeVar("T")
Ts = TypeVarTuple("Ts")

#: The resolution asyncio adds to the clock when it picks the due timers (its loops take it
#: from the monotonic clock's documented clock info).
_CLOCK_RESOLUTION = time.get_clock_info("monotonic").resolution

#: Real seconds between two looks at the live threads while only threads can wake the loop.
THREAD_POLL_INTERVAL = 0.05

# asyncio's own call_at, called directly under the override (no super() lookup per timer).
_BASE_CALL_AT = asyncio.SelectorEventLoop.call_at

#: How many deadlines a loop remembers, for the order of equal ones, before it forgets the
#: passed ones.
_MAX_TIES = 1024

# A clock value or a move of the clock: at infinity or NaN no timer ever comes due, and the
# loop would spin for ever.
_SECONDS = "a finite number of seconds"

#: How many waiting tasks a :class:`DeadlockError` describes (the rest are counted).
_MAX_TASKS_SHOWN = 20


class DeadlockError(ResilienceError, RuntimeError):
    """The virtual-time loop has nothing to run, no timer, and nothing that could ever wake it.

    Raised out of ``run_until_complete``/``run_forever`` (so out of :func:`run`, ``asyncio.Runner``
    and the pytest plugin's test call). ``tasks`` holds the tasks that were still waiting.
    """

    def __init__(self, message: str, tasks: frozenset[asyncio.Task[Any]]) -> None:
        super().__init__(message)
        self.tasks = tasks


class VirtualClockSelector(selectors.BaseSelector):
    """Wraps a real selector: never blocks while a timer is pending, advances the clock.

    With no timer at all (``timeout=None``) it blocks for real only while something outside the
    loop can still wake it, and otherwise raises :class:`DeadlockError`.
    """

    def __init__(self, loop: VirtualTimeLoop, inner: selectors.BaseSelector) -> None:
        self._loop = loop
        self._inner = inner
        # The descriptors the loop registered for itself (its self-pipe), once it is built.
        self._own_fds: frozenset[int] | None = None
        # Only the self-pipe is registered: see select().
        self._only_own = False

    def own(self, fds: frozenset[int]) -> None:
        """Tell the selector which descriptors are the loop's own (its self-pipe)."""
        self._own_fds = fds
        self._recount()

    def _recount(self) -> None:
        own = self._own_fds
        self._only_own = own is not None and all(
            key.fd in own for key in self._inner.get_map().values()
        )

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        loop = self._loop
        if timeout is not None:
            # Nothing to block for. With only the self-pipe registered and no signal handler
            # nor executor call of the loop's own pending, the poll below can only find a byte
            # that a thread wrote after call_soon_threadsafe had already put its callback in
            # the ready queue: the byte only wakes a *blocked* select, and a full self-pipe is
            # harmless (asyncio's _write_to_self ignores the error). So the syscall is skipped,
            # once per turn of the loop (the simulator's hot path); the pipe is drained by the
            # next poll or blocking wait.
            if not (self._only_own and not loop._vt.signals and not loop._vt.executor_calls):
                events = self._inner.select(0)
                if events:
                    return events
            if timeout > 0:
                # advance() inlined: this runs on every turn of the loop.
                loop._virtual_now += timeout
                if loop._vt.given:
                    # Landed on a later deadline given for an equal one (see call_at()): the
                    # clock stands at the deadline asked for, which the timer is due at too.
                    # (Unless the timer would not be due then: at a clock around 1e6 s
                    # and more, a third tie lies more than the resolution past it.)
                    landed = loop._virtual_now
                    asked = loop._vt.given.get(landed)
                    if asked is not None and landed < asked + _CLOCK_RESOLUTION:
                        loop._virtual_now = asked
            # Keep due timers runnable at huge clock values: asyncio runs a timer once
            # ``when < time() + clock_resolution``. Beyond about 4.5e6 s adding the resolution
            # (1 ns) to the clock no longer changes it, so a timer due exactly now would never
            # run and the loop would spin. Then the clock moves one float step, the least move
            # that makes it due; below that magnitude nothing changes.
            now = loop._virtual_now
            if now + _CLOCK_RESOLUTION <= now:
                loop._virtual_now = math.nextafter(now, math.inf)
            return []
        events = self._inner.select(0)
        if events:
            return events
        wait = self._loop._vt_real_wait()
        if wait is not None and wait < 0:
            # Look once more: whatever was alive when the wake sources were counted has either
            # written to the self-pipe by now or will never do so.
            events = self._inner.select(0)
            if events:
                return events
            raise self._loop._vt_deadlock()
        return self._inner.select(wait)

    def register(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        try:
            return self._inner.register(fileobj, events, data)
        finally:
            self._recount()

    def unregister(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        try:
            return self._inner.unregister(fileobj)
        finally:
            self._recount()

    def modify(
        self, fileobj: FileDescriptorLike, events: int, data: Any = None
    ) -> selectors.SelectorKey:
        try:
            return self._inner.modify(fileobj, events, data)
        finally:
            self._recount()

    def close(self) -> None:
        self._inner.close()

    def get_key(self, fileobj: FileDescriptorLike) -> selectors.SelectorKey:
        return self._inner.get_key(fileobj)

    def get_map(self) -> Mapping[FileDescriptorLike, selectors.SelectorKey]:
        return self._inner.get_map()


# ``_vt_real_wait`` answers: None (block until woken), seconds to block, or this (raise).
_NOTHING_CAN_WAKE = -1.0


class _Workers:
    """The threads of the loop's own default executor, and which of them run a call right now.

    Registered by the executor's documented ``initializer`` hook, so no executor internals are
    read. An idle worker of this pool calls nobody back; any other thread might.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._threads: set[threading.Thread] = set()
        self._busy: set[threading.Thread] = set()

    def started(self) -> None:
        with self._lock:
            self._threads.add(threading.current_thread())

    def call(self, func: Callable[[Unpack[Ts]], T], *args: *Ts) -> T:
        me = threading.current_thread()
        with self._lock:
            self._busy.add(me)
        try:
            return func(*args)
        finally:
            with self._lock:
                self._busy.discard(me)

    def idle(self) -> set[threading.Thread]:
        with self._lock:
            return self._threads - self._busy


class _WakeSources:
    """What a :class:`VirtualTimeLoop` knows of the sources outside it that can wake it."""

    __slots__ = (
        "default_executor_chosen",
        "executor_calls",
        "given",
        "own_default_executor",
        "own_fds",
        "selector",
        "signals",
        "ties",
        "ties_limit",
        "workers",
    )

    def __init__(self, selector: VirtualClockSelector) -> None:
        self.selector = selector
        self.executor_calls = 0  # run_in_executor futures not done yet
        self.signals: set[int] = set()
        self.workers = _Workers()
        self.default_executor_chosen = False
        self.own_default_executor = False
        self.own_fds: frozenset[int] = frozenset()
        # Deadline asked for -> the last deadline given to a timer for it: see call_at().
        self.ties: dict[float, float] = {}
        self.ties_limit = _MAX_TIES
        # Such a later deadline -> the deadline asked for, that the clock then stands at.
        self.given: dict[float, float] = {}


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a virtual clock that starts at ``start`` seconds.

    Timers of equal deadlines fire in the order they were set: each later one is given the
    next float after the last. That step grows with the clock: at 1,000 s a thousand ties
    span 0.1 ns, but near ``start=time.time()`` (about 1.7e9 s) one step is 0.24 us and a
    thousand ties span 0.24 ms, enough to pass a deadline set a little later. Keep ``start``
    small (the default is 0) where the order of many equal deadlines matters.

    asyncio waits at most a day per turn of the loop, so the clock moves at most a day per
    turn: a simulated year is 365 turns, but a single wait of 1e13 s takes over a minute of
    real time. (A timer at ``math.inf`` is never due: waiting on it alone is a deadlock.)
    """

    # Attributes and helpers of this subclass are prefixed ``_vt``: asyncio's own loops keep
    # private attributes of their own (``_signal_handlers``, ``_selector``...) that must not be
    # shadowed, today or in a later Python.
    #
    # Only two attributes of its own (the clock, and the wake sources in one object): CPython
    # keeps an instance's attributes in its compact, shared-key form only up to 30 of them,
    # and asyncio's selector loop already sets 24. Past 30 the loop's dict becomes an
    # ordinary one, and every ``self.time()``, ``self._ready``... in asyncio's own hot code
    # (``_run_once``, ``call_at``, ``call_soon``) loses its specialised attribute lookup
    # (CPython 3.12, callgrind: a request in virtual time, a timer, an eager task and a
    # future, costs 118,000 instructions with 32 attributes, 108,700 with 26).

    def __new__(cls, start: float = 0.0) -> VirtualTimeLoop:
        # Checked before the loop exists: a half-built loop would fail in asyncio's __del__.
        finite("start", start, what=_SECONDS)
        return super().__new__(cls)

    def __init__(self, start: float = 0.0) -> None:
        self._virtual_now = float(start)
        selector = VirtualClockSelector(self, selectors.DefaultSelector())
        self._vt = _WakeSources(selector)
        super().__init__(selector)
        # What the loop registered for itself while being built is its self-pipe: the channel
        # through which the sources counted below wake it, not a source of its own.
        self._vt.own_fds = frozenset(key.fd for key in selector.get_map().values())
        selector.own(self._vt.own_fds)
        # Nothing to register: every primitive's default clock is the running loop's time().

    def time(self) -> float:
        return self._virtual_now

    def advance(self, seconds: float) -> None:
        """Move the clock forward by ``seconds`` (>= 0); timers now due run on the next turn."""
        finite("seconds", seconds, what=_SECONDS)
        if not seconds >= 0:
            raise ValueError(f"seconds must be >= 0, got {seconds!r}")
        self._virtual_now += seconds

    def call_at(
        self,
        when: float,
        callback: Callable[[Unpack[Ts]], object],
        *args: *Ts,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        # Equal deadlines fire in the order they were set. On a real loop the clock moves
        # between two calls, so timers set one after the other for the same delay are due one
        # after the other; here it stands still, their deadlines are equal, and asyncio's heap
        # of timers does not keep equal deadlines in order. So a deadline already taken gets
        # the next float after the last one given for it: the clock still jumps to the first,
        # exactly, and asyncio runs every timer due within its clock resolution (1 ns) of the
        # clock in the same turn, in deadline order; should the first be cancelled, the clock
        # still jumps to the deadline asked for (see the selector).
        if when == math.inf:
            # Never due (asyncio.sleep(math.inf), a timeout of math.inf): kept off asyncio's
            # heap, or the clock would jump a day a turn for ever and a task that only waits
            # on it would never be reported as deadlocked. Cancelling it has nothing to undo.
            if self.is_closed():  # (asyncio's call_at refuses a closed loop's timer)
                raise RuntimeError("Event loop is closed")
            return asyncio.TimerHandle(when, callback, args, self, context)
        vt = self._vt
        ties = vt.ties
        last = ties.get(when)
        if last is None:
            at = ties[when] = when
        else:
            at = ties[when] = math.nextafter(last, math.inf)
            if at - when < _CLOCK_RESOLUTION:
                vt.given[at] = when
        if len(ties) > vt.ties_limit:
            # Forget the deadlines passed; with many still ahead, look again only once their
            # number has doubled (a sweep per call would cost quadratic time).
            now = self._virtual_now
            ties = {asked: given for asked, given in ties.items() if given >= now}
            vt.ties = ties
            vt.ties_limit = max(_MAX_TIES, 2 * len(ties))
            vt.given = {at: asked for at, asked in vt.given.items() if at >= now}
        return _BASE_CALL_AT(self, at, callback, *args, context=context)

    # The wake sources outside the loop, counted by overriding documented methods.

    def run_in_executor(
        self,
        executor: concurrent.futures.Executor | None,
        func: Callable[[Unpack[Ts]], T],
        *args: *Ts,
    ) -> asyncio.Future[T]:
        if executor is None and not self._vt.default_executor_chosen:
            # Our own default pool, so that its idle threads are known to be idle.
            self.set_default_executor(
                concurrent.futures.ThreadPoolExecutor(
                    thread_name_prefix="asyncio", initializer=self._vt.workers.started
                )
            )
            self._vt.own_default_executor = True
        if executor is None and self._vt.own_default_executor:
            if self.get_debug() and (
                inspect.iscoroutine(func) or inspect.iscoroutinefunction(func)
            ):
                # asyncio's own debug-mode check, which the wrapper below would hide.
                raise TypeError("coroutines cannot be used with run_in_executor()")
            future = super().run_in_executor(None, self._vt.workers.call, func, *args)
        else:
            future = super().run_in_executor(executor, func, *args)
        self._vt.executor_calls += 1
        future.add_done_callback(self._vt_executor_call_done)
        return future

    def _vt_executor_call_done(self, _: asyncio.Future[Any]) -> None:
        self._vt.executor_calls -= 1

    def set_default_executor(self, executor: Any) -> None:
        super().set_default_executor(executor)
        self._vt.default_executor_chosen = True
        self._vt.own_default_executor = False

    async def shutdown_default_executor(self, timeout: float | None = None) -> None:
        """Like asyncio's, but waits for the threads to join with no timeout.

        The timeout (``asyncio.Runner`` passes 300 s on 3.12+) is a bound in real time, while
        a timer on this loop expires as soon as nothing else is ready, so it would give up at
        once and warn. A thread that never ends is for the test's watchdog to report.
        """
        # After a shutdown, run_in_executor(None, ...) must fail as asyncio's does, not install
        # a fresh pool of ours.
        self._vt.default_executor_chosen = True
        await super().shutdown_default_executor()

    def add_signal_handler(
        self, sig: int, callback: Callable[[Unpack[Ts]], object], *args: *Ts
    ) -> None:
        super().add_signal_handler(sig, callback, *args)
        self._vt.signals.add(sig)

    def remove_signal_handler(self, sig: int) -> bool:
        self._vt.signals.discard(sig)
        return super().remove_signal_handler(sig)

    def _vt_real_wait(self) -> float | None:
        """How long to block for real when no timer is due: None (until woken), seconds, or
        ``_NOTHING_CAN_WAKE``."""
        watched = any(
            key.fd not in self._vt.own_fds for key in self._vt.selector.get_map().values()
        )
        if watched or self._vt.executor_calls or self._vt.signals:
            # I/O, an executor's result or a signal comes through the selector: wait for it.
            return None
        me = threading.current_thread()
        idle = self._vt.workers.idle()
        if any(t is not me and t not in idle for t in threading.enumerate()):
            # A thread might call back, or end without doing so: look again soon.
            return THREAD_POLL_INTERVAL
        return _NOTHING_CAN_WAKE

    def _vt_deadlock(self) -> DeadlockError:
        tasks = frozenset(t for t in asyncio.all_tasks(self) if not t.done())
        lines = [
            f"VirtualTimeLoop deadlock at virtual time {self.time():g}: no callback is ready, no "
            "timer is scheduled, and nothing can wake the loop (no file descriptor watched, no "
            "executor call or signal handler pending, no other thread alive)."
        ]
        if not tasks:
            lines.append("No task is waiting: the loop was run with nothing to do.")
        else:
            lines.append(f"{len(tasks)} task(s) wait forever:")
            shown = sorted(tasks, key=lambda t: t.get_name())[:_MAX_TASKS_SHOWN]
            lines.extend(f"  {describe_task(task)}" for task in shown)
            if len(tasks) > _MAX_TASKS_SHOWN:
                lines.append(f"  ... and {len(tasks) - _MAX_TASKS_SHOWN} more")
        return DeadlockError("\n".join(lines), tasks)


def describe_task(task: asyncio.Task[Any]) -> str:
    """One line: the task's name and the chain of awaits it is suspended in, outermost first,
    ending with the source line it waits at.

    Follows ``cr_await``/``gi_yieldfrom``/``ag_await`` (documented in :mod:`inspect`) from the
    task's coroutine down to the innermost frame, through the objects an ``await`` can be
    suspended on that wrap a coroutine or an async generator (``anext(gen)``, so
    ``async for`` and ``@asynccontextmanager``; an ``__await__`` returning a coroutine's).
    """
    chain: list[str] = []
    line = ""
    awaited: object = task.get_coro()
    seen: set[int] = set()  # (an awaitable whose referents lead back up would loop for ever)
    while id(awaited) not in seen:
        seen.add(id(awaited))
        if isinstance(awaited, types.CoroutineType):
            frame, awaited = awaited.cr_frame, awaited.cr_await
        elif isinstance(awaited, types.GeneratorType):
            frame, awaited = awaited.gi_frame, awaited.gi_yieldfrom
        elif isinstance(awaited, types.AsyncGeneratorType):
            frame, awaited = awaited.ag_frame, awaited.ag_await
        elif awaited is not None and not asyncio.isfuture(awaited):
            awaited = _wrapped(awaited)
            continue
        else:
            break
        if frame is None:  # finished, or not started yet
            break
        code = frame.f_code
        chain.append(f"{code.co_qualname} ({code.co_filename}:{frame.f_lineno})")
        line = linecache.getline(code.co_filename, frame.f_lineno).strip()
    where = " -> ".join(chain) if chain else repr(task.get_coro())
    coro = task.get_coro()
    if isinstance(coro, types.CoroutineType) and (
        inspect.getcoroutinestate(coro) == inspect.CORO_CREATED
    ):
        # Scheduled but never run (e.g. refused by a loop already running another task).
        return f"{task.get_name()}: {where}: never started"
    return f"{task.get_name()}: {where}" + (f": {line}" if line else "")


_FOLLOWED = (types.CoroutineType, types.GeneratorType, types.AsyncGeneratorType)


def _wrapped(awaitable: object) -> object:
    """The coroutine or async generator that ``awaitable`` (an ``asend``/``athrow`` of an
    async generator, a coroutine's ``__await__()``) runs, or None: these expose it only to
    the garbage collector (``gc.get_referents``). A future's own awaitable is not followed:
    what a task waits on in another task is that task's to report."""
    for referent in gc.get_referents(awaitable):
        if isinstance(referent, _FOLLOWED):
            return referent
    return None


def run(main: Coroutine[Any, Any, T], *, start: float = 0.0, debug: bool | None = None) -> T:
    """Run ``main`` to completion on a fresh :class:`VirtualTimeLoop` (like ``asyncio.run``)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        pass
    else:
        # As asyncio.run() does: the Runner's own check would be masked by its close() failing.
        raise RuntimeError("aioresilience.testing.run() cannot be called from a running event loop")
    with asyncio.Runner(debug=debug, loop_factory=lambda: VirtualTimeLoop(start)) as runner:
        return runner.run(main)

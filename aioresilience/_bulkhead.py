"""Bulkhead: a concurrency cap with a bounded, fair (FIFO) wait queue.

``async with bulkhead:``, ``@bulkhead``, ``await bulkhead.call(fn, *args)``, and
``await bulkhead.run_sync(fn, *args)`` for blocking functions, which run in worker threads
under the same cap (anyio's thread offload with a capacity limiter), so one slow dependency
cannot take every thread.

A released slot is handed straight to the longest waiter (no barging: a newcomer cannot take
it first). A waiter cancelled while queued leaves the queue; one cancelled after it was handed a
slot but before it resumed passes the slot on. Cancellation is never counted as a rejection.
Releasing a slot that is not held raises ``ValueError``, like ``asyncio.BoundedSemaphore``.

A refusal (:class:`BulkheadFull`) carries ``retry_after``: when a slot should free up for a new
caller. While every slot is busy a slot frees up every ``hold / max_concurrent`` seconds on
average (``hold``: the mean time a call holds its slot), so the hint is the mean interval
between releases seen while the bulkhead was full (over the last ``_WINDOW`` or more of them),
times ``queued + 1``. ``None`` until a slot has been released while the bulkhead was full. The
clock is read only while the bulkhead is full: the uncontended path pays two comparisons.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
from collections import OrderedDict, deque
from collections.abc import Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, TypeVar

from ._support.clock import LOOP_CLOCK, Clock, clock_option
from ._support.errors import BulkheadFull
from ._support.events import CallRejected, EventSource, ResilienceEvent, emit
from ._support.guard import GuardForms
from ._support.listeners import Listeners
from ._support.loops import live_loop, waiting, waiting_loop
from ._support.predicates import sync_callable
from ._support.validation import non_negative_int, non_negative_or_none, positive_int, text

__all__ = ["Bulkhead", "BulkheadRejected", "BulkheadStatistics", "PartitionedBulkhead"]

T = TypeVar("T")
K = TypeVar("K", bound=Hashable)

# The estimate behind BulkheadFull.retry_after covers at least this many releases (older ones
# are forgotten), so it follows the backend's current latency.
_WINDOW = 100


class _ThreadSlot:
    """The bulkhead slot of one ``run_sync`` thread: released exactly once, by the thread when
    ``fn`` returns (through the loop), or by the holder task if the thread never started it."""

    __slots__ = ("_bulkhead", "_lock", "_loop", "_state")

    def __init__(self, bulkhead: Bulkhead, loop: asyncio.AbstractEventLoop) -> None:
        self._bulkhead = bulkhead
        self._loop = loop
        self._lock = threading.Lock()
        self._state = "waiting"  # -> "running" (in the thread) or "abandoned" (holder ended)

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        with self._lock:
            if self._state != "waiting":  # the holder already gave the slot back
                raise asyncio.CancelledError
            self._state = "running"
        try:
            return fn(*args)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is closed: nothing to free
                self._loop.call_soon_threadsafe(self._bulkhead.release)

    def abandon(self, holder: object = None) -> None:
        """The holder task ended (the thread returned, or the holder was cancelled)."""
        with self._lock:
            if self._state != "waiting":
                return  # the thread ran fn: it releases the slot itself
            self._state = "abandoned"
        self._bulkhead.release()


@dataclass(frozen=True, slots=True)
class BulkheadStatistics:
    name: str
    max_concurrent: int
    active: int
    queued: int
    admitted: int
    rejected: int
    peak: int


@dataclass(frozen=True, slots=True, kw_only=True)
class BulkheadRejected(CallRejected):
    """A call was refused: ``reason`` is ``"full"`` (no slot, and the queue is full),
    ``"max_wait"`` (no slot in time) or, from a :class:`PartitionedBulkhead`, ``"partitions"``
    (every partition busy, none to open for a new key); ``active`` calls held slots then.
    From a partition, or for a key no partition could be opened for: ``partition`` is the
    key's ``repr()``, and ``strategy`` the :class:`PartitionedBulkhead`'s name, the same for
    every key (a key in a metric's label would make a series per tenant)."""

    name: ClassVar[str] = "bulkhead_rejected"

    reason: str
    active: int
    partition: str | None = None


class Bulkhead(GuardForms, EventSource):
    """At most ``max_concurrent`` calls at once; up to ``max_queue`` more wait (FIFO), each at
    most ``max_wait`` seconds (``None``: as long as it takes). Beyond that: :class:`BulkheadFull`.
    """

    __slots__ = (
        "_active",
        "_admitted",
        "_clock",
        "_events",
        "_full_releases",
        "_full_since",
        "_full_time",
        "_interval",
        "_mark",
        "_max",
        "_max_queue",
        "_max_wait",
        "_partition",
        "_peak",
        "_rejected",
        "_thread_limiter",
        "_threads",
        "_waiters",
        "name",
    )

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_queue: int = 0,
        max_wait: float | None = None,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = text("name", name, optional=True) or "Bulkhead"
        self._max = positive_int("max_concurrent", max_concurrent)
        self._max_queue = non_negative_int("max_queue", max_queue)
        self._max_wait = non_negative_or_none("max_wait", max_wait)
        # One clock for max_wait's deadline and the full spells behind retry_after.
        self._clock = clock_option("clock", clock)
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._admitted = self._rejected = self._peak = 0
        # For retry_after (module doc): the time spent full (up to `_full_since`, when the
        # current full spell began), the releases made while full, where the current window
        # of them began, and the last estimate of the interval between them.
        self._full_time = self._full_since = 0.0
        self._full_releases = 0
        self._mark = (0.0, 0)
        self._interval: float | None = None
        self._thread_limiter: Any = None
        # The tasks that hold a slot for a worker thread (run_sync), until the thread returns.
        self._threads: set[asyncio.Task[Any]] = set()
        self._events = None
        # A PartitionedBulkhead's partition: (its name, the key's repr) for its events.
        self._partition: tuple[str, str] | None = None

    def _emit(self, kind: type[ResilienceEvent], /, **fields: Any) -> None:
        partition = self._partition
        if partition is None:
            super()._emit(kind, **fields)
        else:  # (see BulkheadRejected: the partitioned bulkhead's name, the key apart)
            emit(self._events, partition[0], kind, self._clock, partition=partition[1], **fields)

    # -- slots ------------------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is waiting; never waits. Pair with
        :meth:`release`."""
        if self._active < self._max and not self._waiters:
            self._enter()  # takes the free slot
            return True
        return False

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue if allowed; raises :class:`BulkheadFull`.
        Pair with :meth:`release`."""
        wait = self._enter()
        if wait is not None:
            await wait

    # -- the guard's core (``async with``, ``@bulkhead``, ``call`` and pipelines) -----------

    def _enter(self) -> Coroutine[Any, Any, None] | None:
        """Take a slot: None when one is free, else the coroutine of the wait; raises
        :class:`BulkheadFull`."""
        active = self._active
        if active < self._max and not self._waiters:
            # Take the slot, inlined: this is the hot path.
            self._active = active = active + 1
            self._admitted += 1
            if active > self._peak:
                self._peak = active
            if active == self._max:
                self._full_since = self._clock.time()  # a full spell begins
            return None
        if len(self._waiters) >= self._max_queue and self._queue_full():
            self._rejected += 1
            self._emit(BulkheadRejected, reason="full", active=self._active)
            raise BulkheadFull(
                f"{self.name}: {self._active} of {self._max} slots busy and "
                f"{len(self._waiters)} of {self._max_queue} queued",
                retry_after=self._retry_after(),
            )
        return self._wait()

    def _queue_full(self) -> bool:
        """Whether the queue is full of live waiters: one cancelled since it queued (or left
        on a closed loop) keeps its place only until its task runs, and gives it up now."""
        waiters = self._waiters
        for future in [future for future in waiters if not waiting(future)]:
            waiters.remove(future)
        return len(waiters) >= self._max_queue

    def _retry_after(self) -> float | None:
        """When a slot should free up for a new caller (see the module doc), or None."""
        full_time = self._full_time
        if self._active == self._max:  # the current full spell counts up to now
            full_time += self._clock.time() - self._full_since
        time_mark, releases_mark = self._mark
        releases = self._full_releases - releases_mark
        if releases:
            self._interval = (full_time - time_mark) / releases
            if releases >= _WINDOW:
                self._mark = (full_time, self._full_releases)
        if self._interval is None:
            return None
        return self._interval * (len(self._waiters) + 1)

    async def _wait(self) -> None:
        loop = waiting_loop(self.name, live_loop(self._waiters))
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append(future)
        if self._max_wait is None:
            timer = None
        else:
            clock = self._clock
            timer = clock.call_at(
                clock.time() + self._max_wait, functools.partial(self._expire, future)
            )
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                self.release()  # handed a slot, then cancelled before running: pass it on
            else:
                self._leave(future)  # (a wait that had just timed out holds no slot)
            raise
        except BulkheadFull:
            self._rejected += 1
            self._emit(BulkheadRejected, reason="max_wait", active=self._active)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        # The releasing caller handed its slot over: `active` already counts this one.
        self._admitted += 1

    def _leave(self, future: asyncio.Future[None]) -> None:
        with contextlib.suppress(ValueError):
            self._waiters.remove(future)

    def _expire(self, future: asyncio.Future[None]) -> None:
        if not future.done():
            self._leave(future)
            future.set_exception(
                BulkheadFull(
                    f"{self.name}: no slot within max_wait={self._max_wait:g}s",
                    retry_after=self._retry_after(),
                )
            )

    def release(self) -> None:
        """Give a slot back: to the longest waiter if there is one. Raises ``ValueError`` if
        no slot is held (as ``asyncio.BoundedSemaphore`` does)."""
        active = self._active
        waiters = self._waiters
        if active == self._max:
            self._full_releases += 1
            if waiters and self._hand_over():
                return  # still full
            self._full_time += self._clock.time() - self._full_since  # the full spell ends
        elif not active:
            raise ValueError(f"{self.name}: release() without a slot held")
        elif waiters and self._hand_over():  # (waiters queue only behind a full bulkhead)
            return
        self._active = active - 1

    def _hand_over(self) -> bool:
        """Give the slot being released to the longest waiter still waiting, if any."""
        waiters = self._waiters
        while waiters:
            future = waiters.popleft()
            if waiting(future):
                future.set_result(None)  # the slot moves to this waiter
                return True
        return False

    def _exit(self, ticket: None, exc: BaseException | None, result: Any) -> None:
        self.release()

    # -- ways in ----------------------------------------------------------------------------

    # The seed guide's name (README, "from the guide"): the same method as ``call``.
    execute = GuardForms.call

    async def run_sync(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Run blocking ``fn(*args)`` in a worker thread, holding a slot meanwhile.

        At most ``max_concurrent`` threads run this bulkhead's functions. A thread cannot be
        stopped: if the caller is cancelled or times out, it gets its ``CancelledError`` at
        once, but the slot stays held until the thread returns (the thread itself gives it
        back), so the cap holds even then, whoever cancels what. (anyio's worker-thread token
        may come back earlier if the internal holder task is cancelled; the slot is what keeps
        the cap. The thread's result or error then goes unread.)
        """
        # An async function would only be called in the thread, its coroutine returned unrun.
        sync_callable("run_sync's fn", fn)
        try:
            import anyio.to_thread
        except ImportError as error:  # pragma: no cover - anyio is a dependency
            raise ImportError("run_sync needs anyio: pip install anyio") from error
        if self._thread_limiter is None:
            self._thread_limiter = anyio.CapacityLimiter(self._max)
        await self.acquire()
        try:
            # The slot belongs to the thread from here on: the thread itself gives it back when
            # fn returns (a task, even this module's holder, can be cancelled by anyone, and its
            # `finally` would free the slot while the thread still runs). The holder gives it
            # back only if the thread never started fn.
            thread = _ThreadSlot(self, asyncio.get_running_loop())
            holder = asyncio.get_running_loop().create_task(
                anyio.to_thread.run_sync(
                    functools.partial(thread.run, fn, *args), limiter=self._thread_limiter
                )
            )
        except BaseException:
            self.release()
            raise
        self._threads.add(holder)  # a strong reference until it is done
        holder.add_done_callback(self._thread_done)
        # (A callback, not a `finally` in the holder: it runs even if the holder is cancelled
        # before its first step.)
        holder.add_done_callback(thread.abandon)
        return await asyncio.shield(holder)

    def _thread_done(self, holder: asyncio.Task[Any]) -> None:
        self._threads.discard(holder)
        if not holder.cancelled():
            holder.exception()  # read: its caller may have gone, an error is no one's to log

    # -- inspection -------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        # Waiters queue only behind a full bulkhead, and the release that frees the last
        # slot drops the cancelled ones it passes over: with none active, none is left.
        return self._active == 0 and not self._waiters

    def _queued(self) -> int:
        """The waiters still waiting: one cancelled (or left on a closed loop) stays in the
        queue until its task runs, and is not counted."""
        return sum(1 for future in self._waiters if waiting(future))

    def statistics(self) -> BulkheadStatistics:
        return BulkheadStatistics(
            name=self.name,
            max_concurrent=self._max,
            active=self._active,
            queued=self._queued(),
            admitted=self._admitted,
            rejected=self._rejected,
            peak=self._peak,
        )

    def __repr__(self) -> str:
        return (
            f"<Bulkhead {self.name!r} active={self._active}/{self._max} "
            f"queued={self._queued()}/{self._max_queue} rejected={self._rejected}>"
        )


class PartitionedBulkhead(Generic[K]):
    """Independent bulkheads per key (service, tenant) from one object, with bounded memory:
    at most ``max_partitions`` exist; beyond that the least recently used *idle* one is
    forgotten, and if none is idle a new key is refused with :class:`BulkheadFull`."""

    def __init__(
        self,
        max_concurrent: int,
        *,
        max_queue: int = 0,
        max_wait: float | None = None,
        max_partitions: int = 1000,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = text("name", name, optional=True) or "PartitionedBulkhead"
        # Validate once, up front, by building the template partition.
        Bulkhead(max_concurrent, max_queue=max_queue, max_wait=max_wait, clock=clock)
        self._clock = clock  # None: each partition reads the running loop's clock
        self._max_queue = max_queue
        self._max_wait = max_wait
        self._max_concurrent = max_concurrent
        self._max_partitions = positive_int("max_partitions", max_partitions)
        self._partitions: OrderedDict[K, Bulkhead] = OrderedDict()
        self._listeners = Listeners()  # every partition's, given to each one opened

    def add_listener(self, callback: Callable[[ResilienceEvent], Any]) -> None:
        """Hear the events of every partition, open now or later (a partition's own
        ``add_listener`` hears that one alone)."""
        self._listeners.add(callback)  # (checks it first: nothing half-added)
        for bulkhead in self._partitions.values():
            bulkhead.add_listener(callback)

    def remove_listener(self, callback: Callable[[ResilienceEvent], Any]) -> None:
        """Stop ``callback`` hearing the partitions' events (one added here; ``ValueError``
        if it never was)."""
        self._listeners.remove(callback)
        for bulkhead in self._partitions.values():
            # (a partition whose own remove_listener took it off already has nothing to drop)
            with contextlib.suppress(ValueError):
                bulkhead.remove_listener(callback)

    def __getitem__(self, key: K) -> Bulkhead:
        """The bulkhead of ``key`` (created on first use)."""
        partitions = self._partitions
        bulkhead = partitions.get(key)
        if bulkhead is not None:
            partitions.move_to_end(key)
            return bulkhead
        if len(partitions) >= self._max_partitions:
            for old_key, old in partitions.items():
                if old.idle:
                    del partitions[old_key]
                    break
            else:
                active = sum(b.statistics().active for b in partitions.values())
                emit(
                    self._listeners,
                    self.name,
                    BulkheadRejected,
                    LOOP_CLOCK if self._clock is None else self._clock,
                    reason="partitions",
                    active=active,
                    partition=repr(key),
                )
                raise BulkheadFull(
                    f"{self.name}: all {self._max_partitions} partitions are busy; "
                    f"cannot open one for {key!r}"
                )
        bulkhead = Bulkhead(
            self._max_concurrent,
            max_queue=self._max_queue,
            max_wait=self._max_wait,
            name=f"{self.name}[{key!r}]",
            clock=self._clock,
        )
        bulkhead._partition = (self.name, repr(key))
        for callback in self._listeners.callbacks:
            bulkhead.add_listener(callback)
        partitions[key] = bulkhead
        return bulkhead

    def __len__(self) -> int:
        return len(self._partitions)

    def statistics(self) -> dict[K, BulkheadStatistics]:
        return {key: b.statistics() for key, b in self._partitions.items()}

    def __repr__(self) -> str:
        return f"<PartitionedBulkhead {self.name!r} partitions={len(self._partitions)}>"

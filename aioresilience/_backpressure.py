"""Backpressure: a bounded queue with overflow policies and watermarks, and a worker pool.

Overflow policies, for a full queue:

- ``"block"``: ``put`` waits (FIFO among producers) for room, up to its ``timeout``, then
  raises :class:`QueueFull`;
- ``"reject"``: ``put`` raises :class:`QueueFull` at once;
- ``"drop_newest"``: the new item is dropped (``put`` returns ``False``);
- ``"drop_oldest"``: the oldest queued item is dropped to make room.

Nothing is lost silently: a dropped item goes to ``on_drop(item, reason)`` and is counted; a
refused one travels in the :class:`QueueFull` it raises (``.item``).

Watermarks: at ``high_watermark`` items the queue is *paused*; it resumes once it drains to
``low_watermark``. Producers that cooperate ``await queue.wait_writable()`` before putting.

Hand-offs are direct: an item put while a consumer waits goes straight to it, and a consumer
that takes an item lets the longest-waiting producer in (its place is kept for it until it
runs), so no caller can barge ahead of a waiting one. Until they run, an item handed to a
consumer and a place kept for a producer count against ``maxsize``, as they would in an
``asyncio.Queue`` (where the item is still queued): the queue never holds more.

Cancellation has no effect (``asyncio.Queue``'s guarantee): a ``put`` that raises
``CancelledError`` has enqueued nothing, even if it was let in just before (its place passes to
the next producer), so retrying it never duplicates the item; a consumer cancelled after an
item was handed to it puts the item back at the front.

Closing (:meth:`BackpressureQueue.close`) follows ``asyncio.Queue.shutdown()``: puts raise
:class:`QueueClosed`, gets return what is left and then raise it, ``get`` and ``get_nowait``
alike. On Python 3.13+ ``QueueClosed`` is also an ``asyncio.QueueShutDown``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Literal, TypeVar

from ._support.clock import Clock, clock_option
from ._support.errors import QueueClosed, QueueFull
from ._support.events import CallRejected, EventSource, ResilienceEvent, Severity
from ._support.listeners import logger
from ._support.loops import live_loop, waiting, waiting_loop
from ._support.predicates import is_async_callable, optional_sync_callable
from ._support.tasks import cancel_and_wait
from ._support.validation import (
    aliased,
    non_negative_int,
    non_negative_or_none,
    one_of,
    positive_int,
    text,
)

__all__ = [
    "BackpressureQueue",
    "QueueClosed",
    "QueueDropped",
    "QueueRejected",
    "QueueStatistics",
    "WorkerPool",
    "WorkerStatistics",
]

T = TypeVar("T")
Policy = Literal["block", "reject", "drop_newest", "drop_oldest"]
_POLICIES = ("block", "reject", "drop_newest", "drop_oldest")
# At most this many workers per pool: each is a task; beyond it is a typo (10**400 would
# exhaust memory at start()).
MAX_WORKERS = 100_000


@dataclass(frozen=True, slots=True)
class QueueStatistics:
    name: str
    size: int
    maxsize: int
    put: int
    got: int
    dropped: int
    rejected: int
    paused: bool
    waiting_producers: int
    waiting_consumers: int


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueRejected(CallRejected):
    """A put was refused: the queue is full and its ``policy`` rejects (``reject``; ``block``
    for ``put_nowait`` or a ``put`` past its ``timeout``)."""

    name: ClassVar[str] = "queue_rejected"

    policy: str


@dataclass(frozen=True, slots=True, kw_only=True)
class QueueDropped(ResilienceEvent):
    """An item was dropped, for ``reason``."""

    name: ClassVar[str] = "queue_dropped"
    severity: ClassVar[Severity] = Severity.WARNING

    reason: str


class BackpressureQueue(EventSource, Generic[T]):
    """A bounded FIFO queue that pushes back on producers (see the module docstring)."""

    def __init__(
        self,
        maxsize: int | None = None,
        *,
        policy: Policy = "block",
        on_drop: Callable[[T, str], Any] | None = None,
        high_watermark: int | None = None,
        low_watermark: int | None = None,
        name: str | None = None,
        clock: Clock | None = None,
        max_size: int | None = None,
    ) -> None:
        self.name = text("name", name, optional=True) or "BackpressureQueue"
        self._clock = clock_option("clock", clock)  # a blocked put's timeout runs on it
        # max_size: the seed guide's name (asyncio.Queue's is maxsize).
        size_name, size = aliased("maxsize", maxsize, "max_size", max_size)
        if size is None:
            raise TypeError(
                "BackpressureQueue needs maxsize (the seed guide's max_size): none given"
            )
        self.maxsize = positive_int(size_name, size)
        self.policy: Policy = one_of("policy", policy, _POLICIES)  # type: ignore[assignment]
        on_drop = optional_sync_callable("on_drop", on_drop)
        if policy in ("drop_newest", "drop_oldest") and on_drop is None:
            # Dropped items are still counted; a warning is logged for each one instead.
            on_drop = _log_drop
        self._on_drop = on_drop
        self._high, self._low = _watermarks(high_watermark, low_watermark, self.maxsize)
        self._items: deque[T] = deque()
        # How many items `_items` may hold now: `maxsize` less the places held by items handed
        # to consumers and by producers let in, until they run.
        self._limit = self.maxsize
        self._getters: deque[asyncio.Future[T]] = deque()
        self._putters: deque[tuple[T, asyncio.Future[None]]] = deque()
        # Producers let in (a place kept for each) that have not run yet, oldest first: still
        # inside put() for their callers, so close() hands their items back with the others'.
        self._let_in: dict[asyncio.Future[None], T] = {}
        self._resumed: asyncio.Event | None = None
        self.paused = False
        self.closed = False
        self._unfinished = 0
        self._finished: asyncio.Event | None = None
        self._put = self._got = self._dropped = self._rejected = 0
        self._events = None

    # -- producing --------------------------------------------------------------------------

    async def put(self, item: T, *, timeout: float | None = None) -> bool:
        """Offer ``item``: ``True`` if it was enqueued, ``False`` if it was dropped
        (``drop_newest``; ``drop_oldest`` when every place is held by items already handed to
        consumers that have not run yet). Raises :class:`QueueFull` when refused (``reject``,
        or ``block`` past ``timeout`` seconds), :class:`QueueClosed` once closed. A put that
        raises (``CancelledError`` included) has enqueued nothing."""
        if timeout is not None:
            timeout = non_negative_or_none("timeout", timeout)
        accepted = self._offer(item)
        if accepted is None:
            return await self._wait_for_room(item, timeout)
        return accepted

    def put_nowait(self, item: T) -> bool:
        """Like :meth:`put` without waiting: with policy ``block`` a full queue raises
        :class:`QueueFull`."""
        accepted = self._offer(item)
        if accepted is None:
            self._rejected += 1
            self._emit(QueueRejected, policy=self.policy)
            raise QueueFull(f"{self.name}: full ({self.maxsize} items)", item=item)
        return accepted

    def _offer(self, item: T) -> bool | None:
        """Apply the policy without waiting: True enqueued, False dropped, None must wait."""
        if self.closed:
            raise QueueClosed(f"{self.name} is closed")
        items = self._items
        if len(items) < self._limit and not self._putters:
            if not self._getters:
                # The common case, inlined: room, and nobody waiting to hand the item to.
                self._put += 1
                self._unfinished += 1
                items.append(item)
                if self._high is not None and not self.paused and len(items) >= self._high:
                    self.paused = True
                return True
            self._accept(item)
            return True
        policy = self.policy
        if policy == "block":
            return None
        if policy == "reject":
            self._rejected += 1
            self._emit(QueueRejected, policy=self.policy)
            raise QueueFull(f"{self.name}: full ({self.maxsize} items)", item=item)
        if policy == "drop_newest":
            self._drop(item, "drop_newest")
            return False
        if not items:  # every place is held by hand-offs: the new item is the only one to drop
            self._drop(item, "drop_oldest")
            return False
        self._drop(items.popleft(), "drop_oldest")
        self._task_finished()  # the dropped item will never be taken
        self._accept(item)
        return True

    def _accept(self, item: T) -> None:
        self._put += 1
        self._unfinished += 1
        getters = self._getters
        while getters:
            getter = getters.popleft()
            if waiting(getter):
                getter.set_result(item)  # straight to a waiting consumer
                self._limit -= 1  # its place stays held until the consumer runs
                return
        self._items.append(item)
        if self._high is not None and not self.paused and len(self._items) >= self._high:
            self.paused = True

    def _drop(self, item: T, reason: str) -> None:
        self._dropped += 1
        self._emit(QueueDropped, reason=reason)
        try:
            (self._on_drop or _log_drop)(item, reason)
        except Exception:
            logger.exception("%s: on_drop failed for a %s item", self.name, reason)

    async def _wait_for_room(self, item: T, timeout: float | None) -> bool:
        loop = waiting_loop(self.name, self._busy_loop())
        future: asyncio.Future[None] = loop.create_future()
        entry = (item, future)
        self._putters.append(entry)
        if timeout is None:
            timer = None
        else:
            clock = self._clock
            timer = clock.call_at(clock.time() + timeout, functools.partial(self._expire, entry))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                # Let in, then cancelled before it ran: the item was never enqueued, and the
                # place kept for it goes to the next producer.
                self._let_in.pop(future, None)
                self._limit += 1
                self._let_producer_in()
            else:
                self._remove_putter(entry)
            raise
        except TimeoutError:
            self._rejected += 1
            self._emit(QueueRejected, policy=self.policy)
            raise QueueFull(
                f"{self.name}: still full after {timeout:g}s (policy 'block')", item=item
            ) from None
        finally:
            if timer is not None:
                timer.cancel()
        self._limit += 1  # the place kept for this producer: its item takes it now
        if self.closed:  # closed after this producer was let in, before it ran: close()
            raise QueueClosed(f"{self.name} closed while waiting")  # returned its item
        del self._let_in[future]
        self._accept(item)
        return True

    def _remove_putter(self, entry: tuple[T, asyncio.Future[None]]) -> None:
        with contextlib.suppress(ValueError):
            self._putters.remove(entry)

    def _expire(self, entry: tuple[T, asyncio.Future[None]]) -> None:
        future = entry[1]
        if not future.done():
            # Out of the line at once: a producer behind it must not wait for its wake-up.
            self._remove_putter(entry)
            future.set_exception(TimeoutError())

    async def wait_writable(self) -> None:
        """Return once the queue is not paused (below the low watermark after crossing the
        high one); at once if watermarks are not set."""
        while self.paused:
            if self._resumed is None:
                self._resumed = asyncio.Event()
            await self._resumed.wait()

    def _busy_loop(self) -> asyncio.AbstractEventLoop | None:
        """The loop producers or consumers wait on, if any wait (never both at once)."""
        return live_loop(self._getters) or live_loop(future for _, future in self._putters)

    # -- consuming --------------------------------------------------------------------------

    async def get(self) -> T:
        """The oldest item, waiting for one if the queue is empty."""
        items = self._items
        if items:
            item = items.popleft()
            self._got += 1
            if self._putters or self.paused:
                self._let_producer_in()
            return item
        if self.closed:
            raise QueueClosed(f"{self.name} is closed and empty")
        return await self._wait_for_item()

    def get_nowait(self) -> T:
        """The oldest item; ``asyncio.QueueEmpty`` if there is none, :class:`QueueClosed` if
        there is none and the queue is closed (as ``asyncio.Queue`` after ``shutdown()``)."""
        if not self._items:
            if self.closed:
                raise QueueClosed(f"{self.name} is closed and empty")
            raise asyncio.QueueEmpty
        return self._take()

    def _take(self) -> T:
        item = self._items.popleft()
        self._got += 1
        self._let_producer_in()
        return item

    def _let_producer_in(self) -> None:
        """Wake the longest-waiting producers while there is room, keeping a place for each:
        a producer enqueues its own item when it runs, so a cancelled one has enqueued
        nothing."""
        putters = self._putters
        items = self._items
        while putters and len(items) < self._limit:
            item, future = putters.popleft()
            if waiting(future):
                future.set_result(None)
                self._let_in[future] = item
                self._limit -= 1
        if self.paused and len(items) <= self._low:  # type: ignore[operator]
            self._resume()

    def _resume(self) -> None:
        self.paused = False
        if self._resumed is not None:
            self._resumed.set()
            self._resumed = None

    async def _wait_for_item(self) -> T:
        future: asyncio.Future[T] = waiting_loop(self.name, self._busy_loop()).create_future()
        self._getters.append(future)
        try:
            item = await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled() and future.exception() is None:
                # Handed an item, then cancelled before running: it goes back to the front,
                # into the place it held.
                self._limit += 1
                self._items.appendleft(future.result())
                self._hand_on()
            else:
                with contextlib.suppress(ValueError):
                    self._getters.remove(future)
            raise
        self._limit += 1  # the place the handed item held
        self._got += 1
        self._let_producer_in()
        return item

    def _hand_on(self) -> None:
        """An item went back to the front: give it to the next waiting consumer, if any."""
        getters = self._getters
        while getters and self._items:
            getter = getters.popleft()
            if waiting(getter):
                getter.set_result(self._items.popleft())
                self._limit -= 1

    def task_done(self) -> None:
        """A consumer finished an item (for :meth:`join`)."""
        if self._unfinished <= 0:
            raise ValueError("task_done() called more times than there were items")
        self._task_finished()

    def _task_finished(self, count: int = 1) -> None:
        self._unfinished = max(0, self._unfinished - count)
        if self._unfinished == 0 and self._finished is not None:
            self._finished.set()

    async def join(self) -> None:
        """Return once every item put has been taken and marked :meth:`task_done`."""
        while self._unfinished:
            if self._finished is None or self._finished.is_set():
                self._finished = asyncio.Event()
            await self._finished.wait()

    # -- shutting down ----------------------------------------------------------------------

    def close(self) -> list[T]:
        """Refuse further puts. Producers still waiting get :class:`QueueClosed`; their items
        are returned (with none lost), oldest first. (A producer let in that has not run yet
        is still waiting for its caller: it gets QueueClosed too, and its item is returned.)"""
        self.closed = True
        returned = list(self._let_in.values())  # (the let-in: ahead of those still queued)
        self._let_in.clear()
        while self._putters:
            item, future = self._putters.popleft()
            if not future.done():
                if waiting(future):  # (a closed loop's producer cannot hear it)
                    future.set_exception(QueueClosed(f"{self.name} closed while waiting"))
                returned.append(item)
        for getter in self._getters:
            if waiting(getter):
                getter.set_exception(QueueClosed(f"{self.name} closed"))
        self._getters.clear()
        if self.paused:
            self._resume()  # paused producers wake up, to find the queue closed
        return returned

    def drain(self) -> list[T]:
        """Remove and return every queued item (they count as finished for :meth:`join`)."""
        items = list(self._items)
        self._items.clear()
        self._task_finished(len(items))
        self._let_producer_in()  # room for the producers still waiting; resumes if paused
        return items

    # -- inspection -------------------------------------------------------------------------

    def qsize(self) -> int:
        return len(self._items)

    # The seed guide's names (README, "from the guide"): the same methods.
    push = put
    pop = get
    size = qsize

    def full(self) -> bool:
        """No room for another item now (places held by hand-offs count, see the module)."""
        return len(self._items) >= self._limit

    def empty(self) -> bool:
        return not self._items

    def statistics(self) -> QueueStatistics:
        return QueueStatistics(
            name=self.name,
            size=len(self._items),
            maxsize=self.maxsize,
            put=self._put,
            got=self._got,
            dropped=self._dropped,
            rejected=self._rejected,
            paused=self.paused,
            waiting_producers=sum(1 for _, f in self._putters if not f.done()),
            waiting_consumers=sum(1 for f in self._getters if not f.done()),
        )

    def __repr__(self) -> str:
        return (
            f"<BackpressureQueue {self.name!r} {len(self._items)}/{self.maxsize} "
            f"policy={self.policy} dropped={self._dropped} rejected={self._rejected}>"
        )


def _watermarks(high: Any, low: Any, maxsize: int) -> tuple[int | None, int | None]:
    if high is None and low is None:
        return None, None
    if high is None or low is None:
        raise ValueError("give both high_watermark and low_watermark, or neither")
    high = positive_int("high_watermark", high)
    low = non_negative_int("low_watermark", low)
    if not low < high <= maxsize:
        raise ValueError(
            f"watermarks must satisfy 0 <= low_watermark < high_watermark <= maxsize, got "
            f"low_watermark={low!r}, high_watermark={high!r}, maxsize={maxsize!r}"
        )
    return high, low


def _log_drop(item: object, reason: str) -> None:
    logger.warning("backpressure queue dropped an item (%s): %r", reason, item)


@dataclass(frozen=True, slots=True)
class WorkerStatistics:
    name: str
    workers: int
    in_flight: int
    processed: int
    failed: int


class WorkerPool(Generic[T]):
    """``workers`` consumers running ``handler(item)`` on a :class:`BackpressureQueue`.

    An exception from one item never stops a worker: it goes to ``on_error(item, exc)`` (or
    the log) and is counted, as does a ``CancelledError`` the handler raises while its
    worker is not being cancelled (something it awaited was cancelled by another task).
    ``shutdown(drain=True)`` lets the queued items finish first; ``shutdown(drain=False)``
    stops at once and returns every item not processed (queued, waiting producers', and those
    cancelled mid-handling). Leaving ``async with pool:`` by an exception (a cancellation
    included) stops at once: the items not processed are dropped, reason ``"shutdown"``,
    reported as the queue's own drops. No task is left behind.
    """

    def __init__(
        self,
        queue: BackpressureQueue[T],
        handler: Callable[[T], Awaitable[Any]],
        *,
        workers: int = 1,
        on_error: Callable[[T, BaseException], Any] | None = None,
        name: str | None = None,
    ) -> None:
        if not isinstance(queue, BackpressureQueue):
            raise TypeError(f"queue must be a BackpressureQueue, got {queue!r}")
        if not is_async_callable(handler):
            # A sync handler would fail on every item, each failure counted and logged.
            raise TypeError(f"handler must be a coroutine function (async def), got {handler!r}")
        self.name = text("name", name, optional=True) or "WorkerPool"
        self.queue = queue
        self._handler = handler
        self._on_error = optional_sync_callable("on_error", on_error)
        self._workers = positive_int("workers", workers, maximum=MAX_WORKERS)
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False  # the workers in _tasks are cancelled, not yet all stopped
        self._current: dict[int, T] = {}
        self._processed = self._failed = 0

    def start(self) -> None:
        if self._tasks:
            raise RuntimeError(f"{self.name} is already running")
        self._tasks = [
            asyncio.get_running_loop().create_task(self._work(i), name=f"{self.name}-{i}")
            for i in range(self._workers)
        ]

    async def __aenter__(self) -> WorkerPool[T]:
        self.start()
        return self

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        if exc is not None:
            await self._abandon()
            return
        try:
            await self.queue.join()
        except BaseException:  # cancelled while draining: stop now, as after an exception
            await self._abandon()
            raise
        await self.shutdown()

    async def _abandon(self) -> None:
        """Stop at once, leaving the block: the items not processed have no caller to be
        handed back to, so each is dropped, reported as the queue's own drops are (``on_drop``,
        or a warning in the log). Waiting producers get :class:`QueueClosed` instead: their
        items were never enqueued."""
        self.queue.close()
        try:
            await self._stop_workers()
        finally:  # (also when cancelled again meanwhile: the workers have stopped by then)
            for item in self._unprocessed([]):
                self.queue._drop(item, "shutdown")

    async def _work(self, index: int) -> None:
        queue = self.queue
        worker = asyncio.current_task()
        assert worker is not None
        while True:
            try:
                item = await queue.get()
            except QueueClosed:
                return
            self._current[index] = item
            try:
                await self._handler(item)
            except asyncio.CancelledError as exc:
                if worker.cancelling():
                    raise  # the item stays in _current: shutdown returns it as not processed
                # Not this worker's cancellation: the handler awaited something another task
                # cancelled. That ended this item's handling (a failure of it, reported), not
                # the worker, which would leave join() and drain=True waiting for ever.
                self._failed += 1
                self._report(item, exc)
            except Exception as exc:
                self._failed += 1
                self._report(item, exc)
            else:
                self._processed += 1
            del self._current[index]
            queue.task_done()
            if self._stopping:
                # Stopped while its handler finished the item anyway (it swallowed the
                # cancellation): it takes no other; the pool hands the rest back.
                return

    def _report(self, item: T, exc: BaseException) -> None:
        try:
            if self._on_error is not None:
                self._on_error(item, exc)
                return
        except Exception:
            logger.exception("%s: on_error failed", self.name)
        logger.log(logging.ERROR, "%s: handler failed on %r", self.name, item, exc_info=exc)

    async def shutdown(self, *, drain: bool = True) -> list[T]:
        """Stop the workers and return the items that were not processed (``drain``: once
        the workers have processed every queued item). A cancelled shutdown still stops every
        worker; the items it did not return stay, and the next ``shutdown()`` returns them
        (with no worker left, there is nothing to drain: it returns at once)."""
        try:
            if drain and self._tasks:
                await self.queue.join()
        finally:
            # Even if this shutdown is itself cancelled, no worker is left running.
            leftover = self.queue.close()
            await self._stop_workers()
        return self._unprocessed(leftover)

    async def _stop_workers(self) -> None:
        """Cancel the workers and wait until every one has stopped, through a cancellation of
        the caller meanwhile (raised when they have): the items in flight are known only
        once their workers stopped. They stay in ``_tasks`` until then: a second shutdown
        meanwhile waits for the same workers (it found none and handed back the items still
        in flight, which the first then handed back again)."""
        tasks = self._tasks
        stopping, self._stopping = self._stopping, True
        try:
            # Cancelled once: a second shutdown meanwhile only waits (cancelled again, a
            # worker's clean-up would be cut short).
            await cancel_and_wait(tasks, cancel=not stopping)
        finally:
            # Cancelled meanwhile too (raised once they have stopped): a next shutdown has
            # no worker to drain for, and start() may start the pool again.
            if self._tasks is tasks:
                self._tasks = []
                self._stopping = False

    def _unprocessed(self, leftover: list[T]) -> list[T]:
        unfinished = list(self._current.values())
        self._current.clear()
        # Handed back, so finished for join(), as drain() counts the queued ones.
        self.queue._task_finished(len(unfinished))
        return unfinished + self.queue.drain() + leftover

    def statistics(self) -> WorkerStatistics:
        return WorkerStatistics(
            name=self.name,
            workers=len(self._tasks),
            in_flight=len(self._current),
            processed=self._processed,
            failed=self._failed,
        )

    def __repr__(self) -> str:
        return (
            f"<WorkerPool {self.name!r} workers={len(self._tasks)} in_flight="
            f"{len(self._current)} processed={self._processed} failed={self._failed}>"
        )

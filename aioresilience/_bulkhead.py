"""Bulkhead: a concurrency cap with a bounded, fair (FIFO) wait queue.

``async with bulkhead:``, ``@bulkhead``, ``await bulkhead.call(fn, *args)``, and
``await bulkhead.run_sync(fn, *args)`` for blocking functions, which run in worker threads
under the same cap (anyio's thread offload with a capacity limiter), so one slow dependency
cannot take every thread.

A released slot is handed straight to the longest waiter (no barging: a newcomer cannot take
it first). A waiter cancelled while queued leaves the queue; one cancelled after it was handed a
slot but before it resumed passes the slot on. Cancellation is never counted as a rejection.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar

from ._awaitable import DONE
from ._errors import BulkheadFull
from ._events import EventSource, Severity
from ._predicates import decorate
from ._validation import non_negative_or_none, positive_int

__all__ = ["Bulkhead", "BulkheadStatistics", "PartitionedBulkhead"]

P = ParamSpec("P")
T = TypeVar("T")
K = TypeVar("K", bound=Hashable)


@dataclass(frozen=True, slots=True)
class BulkheadStatistics:
    name: str
    max_concurrent: int
    active: int
    queued: int
    admitted: int
    rejected: int
    peak: int


class Bulkhead(EventSource):
    """At most ``max_concurrent`` calls at once; up to ``max_queue`` more wait (FIFO), each at
    most ``max_wait`` seconds (``None``: as long as it takes). Beyond that: :class:`BulkheadFull`.
    """

    __slots__ = (
        "_active",
        "_admitted",
        "_events",
        "_max",
        "_max_queue",
        "_max_wait",
        "_peak",
        "_rejected",
        "_thread_limiter",
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
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {name!r}")
        self.name = name or "Bulkhead"
        self._max = positive_int("max_concurrent", max_concurrent)
        if not isinstance(max_queue, int) or isinstance(max_queue, bool) or max_queue < 0:
            raise ValueError(f"max_queue must be an int >= 0, got {max_queue!r}")
        self._max_queue = max_queue
        self._max_wait = non_negative_or_none("max_wait", max_wait)
        self._active = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._admitted = self._rejected = self._peak = 0
        self._thread_limiter: Any = None
        self._events = None

    # -- slots ------------------------------------------------------------------------------

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody is waiting; never waits. Pair with
        :meth:`release`."""
        if self._active < self._max and not self._waiters:
            self._take()
            return True
        return False

    def _take(self) -> None:
        self._active += 1
        self._admitted += 1
        if self._active > self._peak:
            self._peak = self._active

    async def acquire(self) -> None:
        """Take a slot, waiting in the queue if allowed; raises :class:`BulkheadFull`.
        Pair with :meth:`release`."""
        await self._enter()

    def _enter(self) -> Awaitable[None]:
        """Take a slot: an already finished awaitable when one is free (for ``async with``,
        which awaits it at once), else the wait; raises :class:`BulkheadFull`."""
        if self._active < self._max and not self._waiters:
            self._take()
            return DONE
        if len(self._waiters) >= self._max_queue:
            self._rejected += 1
            self._emit("bulkhead_rejected", Severity.WARNING, active=self._active)
            raise BulkheadFull(
                f"{self.name}: {self._active} of {self._max} slots busy and "
                f"{len(self._waiters)} of {self._max_queue} queued"
            )
        return self._wait()

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._waiters.append(future)
        timer = (
            None
            if self._max_wait is None
            else loop.call_later(self._max_wait, self._expire, future)
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
            self._emit("bulkhead_rejected", Severity.WARNING, reason="max_wait")
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
                BulkheadFull(f"{self.name}: no slot within max_wait={self._max_wait:g}s")
            )

    def release(self) -> None:
        """Give a slot back: to the longest waiter if there is one."""
        waiters = self._waiters
        while waiters:
            future = waiters.popleft()
            if not future.done():
                future.set_result(None)  # the slot moves to this waiter
                return
        self._active -= 1

    # -- ways in ----------------------------------------------------------------------------

    def __aenter__(self) -> Awaitable[None]:
        return self._enter()

    def __aexit__(self, *exc_info: object) -> Awaitable[None]:
        self.release()
        return DONE

    async def call(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        await self.acquire()
        try:
            return await fn(*args, **kwargs)
        finally:
            self.release()

    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        return decorate(self.name, self.call, fn)

    async def run_sync(self, fn: Callable[..., T], /, *args: Any) -> T:
        """Run blocking ``fn(*args)`` in a worker thread, holding a slot meanwhile.

        At most ``max_concurrent`` threads run this bulkhead's functions. If the caller is
        cancelled, the slot is held until the thread finishes (a thread cannot be stopped), so
        the cap holds even then.
        """
        try:
            import anyio.to_thread
        except ImportError as error:  # pragma: no cover - anyio is a dependency
            raise ImportError("run_sync needs anyio: pip install anyio") from error
        if self._thread_limiter is None:
            self._thread_limiter = anyio.CapacityLimiter(self._max)
        await self.acquire()
        try:
            return await anyio.to_thread.run_sync(
                functools.partial(fn, *args), limiter=self._thread_limiter
            )
        finally:
            self.release()

    # -- inspection -------------------------------------------------------------------------

    @property
    def idle(self) -> bool:
        return self._active == 0 and not self._waiters

    def statistics(self) -> BulkheadStatistics:
        return BulkheadStatistics(
            name=self.name,
            max_concurrent=self._max,
            active=self._active,
            queued=len(self._waiters),
            admitted=self._admitted,
            rejected=self._rejected,
            peak=self._peak,
        )

    def __repr__(self) -> str:
        return (
            f"<Bulkhead {self.name!r} active={self._active}/{self._max} "
            f"queued={len(self._waiters)}/{self._max_queue} rejected={self._rejected}>"
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
    ) -> None:
        self.name = name or "PartitionedBulkhead"
        # Validate once, up front, by building the template partition.
        Bulkhead(max_concurrent, max_queue=max_queue, max_wait=max_wait)
        self._max_queue = max_queue
        self._max_wait = max_wait
        self._max_concurrent = max_concurrent
        self._max_partitions = positive_int("max_partitions", max_partitions)
        self._partitions: OrderedDict[K, Bulkhead] = OrderedDict()

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
                raise BulkheadFull(
                    f"{self.name}: all {self._max_partitions} partitions are busy; "
                    f"cannot open one for {key!r}"
                )
        bulkhead = Bulkhead(
            self._max_concurrent,
            max_queue=self._max_queue,
            max_wait=self._max_wait,
            name=f"{self.name}[{key!r}]",
        )
        partitions[key] = bulkhead
        return bulkhead

    def __len__(self) -> int:
        return len(self._partitions)

    def statistics(self) -> dict[K, BulkheadStatistics]:
        return {key: b.statistics() for key, b in self._partitions.items()}

    def __repr__(self) -> str:
        return f"<PartitionedBulkhead {self.name!r} partitions={len(self._partitions)}>"

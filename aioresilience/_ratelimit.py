"""Rate limiters: the async front-end over the pure algorithms of ``_core``.

One class, :class:`RateLimiter`, does the guarding for every algorithm: non-waiting attempts,
waiting acquisition by reservation with FIFO wake-ups, cancellation give-back, per-key state,
statistics. The six public limiters only translate their parameters into an algorithm.

Waiting: ``acquire`` commits a reservation for a time ``at`` and sleeps until then. All waiters
of a limiter share one loop timer and one heap ordered by ``(at, arrival)``, so wake-ups follow
arrival order exactly (asyncio's own timers do not order equal deadlines) and a thousand waiters
cost one timer, not a thousand.
"""

from __future__ import annotations

import asyncio
import functools
import math
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass
from heapq import heapify, heappop, heappush
from typing import Any, Final, Generic, ParamSpec, Protocol, TypeVar

from . import _clock
from ._awaitable import DONE
from ._core.fixed_window import FixedWindowAlgorithm
from ._core.gcra import GCRAAlgorithm
from ._core.leaky_bucket import LeakyBucketMeter, LeakyBucketShaper
from ._core.ratelimit import Decision, RateAlgorithm, decide
from ._core.sliding_window_counter import SlidingWindowCounterAlgorithm
from ._core.sliding_window_log import SlidingWindowLogAlgorithm
from ._core.token_bucket import TokenBucketAlgorithm
from ._errors import RateLimited
from ._events import EventSource, Severity
from ._predicates import require_async
from ._rates import parse_rate
from ._validation import (
    finite_positive,
    non_negative_or_none,
    positive_int,
    shared_store_binder,
)
from .stores.memory import MemoryStore

__all__ = [
    "GCRA",
    "FixedWindowCounter",
    "KeyedLimit",
    "LeakyBucket",
    "RateLimiter",
    "RateLimiterStatistics",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "TokenBucket",
]

S = TypeVar("S")
P = ParamSpec("P")
T = TypeVar("T")


class _Unset:
    def __repr__(self) -> str:
        return "<limiter default>"


_UNSET: Final = _Unset()


@dataclass(frozen=True, slots=True)
class RateLimiterStatistics:
    """A snapshot of one limiter's counters. ``admitted`` includes ``waited`` (admitted after
    waiting); ``cancelled`` waiters gave their reservation back; ``waiting`` and ``keys`` are
    live values (``keys``: those held in this process). ``store_failures`` counts decisions a
    shared store could not make, decided by the failure policy instead."""

    name: str
    admitted: int
    rejected: int
    waited: int
    cancelled: int
    waiting: int
    keys: int
    store_failures: int = 0


class RemoteLimit(Protocol):
    """One limiter's state in a shared store (such as a ``RedisStore``)."""

    async def admit(self, key: Hashable, cost: int, max_wait: float) -> bool:
        """Admit within ``max_wait`` (``True``: after waiting) or raise RateLimited."""
        ...

    async def decide(self, key: Hashable, cost: int) -> Decision: ...

    def waiting(self) -> int: ...


class SharedStore(Protocol):
    """What a limiter needs of a store shared by many processes."""

    def _bind(self, limiter: RateLimiter[Any]) -> RemoteLimit: ...


class _Waiter:
    """One caller waiting for its reservation to come due."""

    __slots__ = ("at", "cost", "future", "given_back", "key", "seq")

    def __init__(
        self, at: float, seq: int, cost: int, key: Hashable, future: asyncio.Future[None]
    ) -> None:
        self.at = at
        self.seq = seq
        self.cost = cost
        self.key = key
        self.future = future
        self.given_back = False  # its reservation was returned (it was cancelled)


class RateLimiter(EventSource, Generic[S]):
    """Guard calls with a rate-limit algorithm, for one key or many.

    - ``try_acquire(cost, key=)``: admit at once or refuse (``False``); never waits.
    - ``check(cost, key=)``: the same, returning a :class:`Decision` with remaining and reset.
    - ``await acquire(cost, key=, timeout=)``: wait up to ``timeout`` seconds (default: the
      limiter's ``max_wait``; ``None`` waits as long as the schedule needs) or raise
      :class:`RateLimited` at once, having consumed nothing, if the wait would be longer.
    - ``async with limiter:``, ``@limiter``, ``@limiter.limit(key=...)``, ``limiter.for_key(k)``.

    Waiters of a key are served in arrival order; a non-waiting attempt never jumps ahead of
    them. A cancelled waiter returns its reservation. Per-key state is created lazily, forgotten
    once idle and capped at ``max_keys`` live keys.
    """

    __slots__ = (
        "_admitted",
        "_algorithm",
        "_cancelled",
        "_events",
        "_heap",
        "_max_wait",
        "_queued",
        "_queues",
        "_rejected",
        "_remote",
        "_replan_loop",
        "_reserve",
        "_returned",
        "_seq",
        "_store",
        "_store_failures",
        "_timer",
        "_timer_at",
        "_timer_loop",
        "_waited",
        "name",
    )

    def __init__(
        self,
        algorithm: RateAlgorithm[S],
        *,
        name: str | None = None,
        max_wait: float | None = None,
        max_keys: int = 100_000,
        store: SharedStore | None = None,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {name!r}")
        self.name = name or type(self).__name__
        self._algorithm = algorithm
        self._reserve = algorithm.reserve
        self._max_wait = _max_wait_of("max_wait", max_wait)
        # Waiters: per key in arrival order (keys with waiters are pinned in the store), and
        # all together in a heap by (due time, arrival) that drives the single timer.
        self._queues: dict[Hashable, list[_Waiter]] = {}
        self._heap: list[tuple[float, int, _Waiter]] = []
        self._returned: dict[Hashable, list[_Waiter]] = {}  # cancelled, not yet replanned
        self._replan_loop: asyncio.AbstractEventLoop | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._queued = 0  # waiters not yet woken
        self._store: MemoryStore[S] = MemoryStore(
            max_keys=positive_int("max_keys", max_keys),
            period=max(algorithm.horizon, 1.0),
            pinned=self._queues,
        )
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._seq = 0
        self._admitted = self._rejected = self._waited = self._cancelled = 0
        self._store_failures = 0
        self._events = None
        self._remote: RemoteLimit | None = None
        if store is not None:
            self._remote = shared_store_binder(store, "_bind", "this process's memory")(self)
            # The non-waiting sync paths run the algorithm in process: point them at an error.
            self._reserve = _decides_remotely(self.name)

    # -- deciding ---------------------------------------------------------------------------

    def try_acquire(self, cost: int = 1, *, key: Hashable = None) -> bool:
        """Admit ``cost`` for ``key`` now, or return ``False``. Never waits, never raises for
        lack of capacity."""
        # The claim of _admit with max_wait=0, inlined: this is the hot path the benchmarks
        # measure, and a Python call plus a tuple cost as much as the algorithm itself.
        if cost.__class__ is not int or cost != 1:
            self._check_cost(cost)
        now = _clock.now()
        store = self._store
        young = store.young
        state = young.get(key)
        hit = state is not None and now < store.rotate_at
        if not hit:
            state = store.get(key, now)
        state, _at, admitted = self._reserve(state, now, cost, 0.0)
        if admitted:
            if hit:
                young[key] = state
            else:
                store.put(key, state)
            self._admitted += 1
            return True
        self._rejected += 1
        self._emit("rate_limited", Severity.WARNING, key=key, cost=cost, retry_after=_at - now)
        return False

    def check(self, cost: int = 1, *, key: Hashable = None) -> Decision:
        """Like :meth:`try_acquire`, returning the whole :class:`Decision` (truthy if allowed):
        remaining capacity, retry-after and reset time, as rate-limit headers need."""
        if cost.__class__ is not int or cost != 1:
            self._check_cost(cost)
        if self._remote is not None:
            self._reserve(None, 0.0, cost, 0.0)  # raises: this limiter decides remotely
        now = _clock.now()
        store = self._store
        state, decision = decide(self._algorithm, store.get(key, now), now, cost)
        store.put(key, state)
        if decision.allowed:
            self._admitted += 1
        else:
            self._rejected += 1
        return decision

    async def decide(self, cost: int = 1, *, key: Hashable = None) -> Decision:
        """Decide at once, without waiting, on any store: the awaitable form of :meth:`check`
        (the one to use with a :class:`~aioresilience.stores.redis.RedisStore`)."""
        if cost.__class__ is not int or cost != 1:
            self._check_cost(cost)
        remote = self._remote
        if remote is None:
            return self.check(cost, key=key)
        decision = await remote.decide(key, cost)
        if decision.allowed:
            self._admitted += 1
        else:
            self._refused(key, cost, decision.retry_after)
        return decision

    async def acquire(
        self,
        cost: int = 1,
        *,
        key: Hashable = None,
        timeout: float | _Unset | None = _UNSET,
    ) -> None:
        """Admit ``cost`` for ``key``, waiting (FIFO) up to ``timeout`` seconds.

        Raises :class:`RateLimited` at once, without consuming anything, if admission would
        take longer than ``timeout``; ``ValueError`` if ``cost`` can never be admitted.
        """
        if cost.__class__ is not int or cost != 1:
            self._check_cost(cost)
        max_wait = self._max_wait if timeout is _UNSET else _max_wait_of("timeout", timeout)
        await self._admit(key, cost, max_wait)

    def _admit(self, key: Hashable, cost: int, max_wait: float) -> Awaitable[None]:
        """Claim ``cost`` now: an awaitable that is already done when admitted at once, or
        that waits for the reservation (if it is due within ``max_wait``); raises
        :class:`RateLimited` when refused.

        The hot path of every waiting way in (``acquire``, ``async with``, decorators,
        pipelines): the memory store's hit (a key in its young generation, no rotation due)
        is inlined (as in :meth:`try_acquire`), everything else goes through its methods.
        """
        if self._remote is not None:
            return self._admit_remotely(self._remote, key, cost, max_wait)
        now = _clock.now()
        store = self._store
        young = store.young
        state = young.get(key)
        hit = state is not None and now < store.rotate_at
        if not hit:
            state = store.get(key, now)
        state, at, admitted = self._reserve(state, now, cost, max_wait)
        if not admitted:
            self._refused(key, cost, at - now)
            raise rate_limited(self.name, key, cost, at - now)
        if hit:
            young[key] = state
        else:
            store.put(key, state)
        if at > now:
            return self._wait(key, cost, at)
        self._admitted += 1
        return DONE

    async def _admit_remotely(
        self, remote: RemoteLimit, key: Hashable, cost: int, max_wait: float
    ) -> None:
        try:
            waited = await remote.admit(key, cost, max_wait)
        except RateLimited as exc:
            self._refused(key, cost, exc.retry_after)
            raise
        except asyncio.CancelledError:
            self._cancelled += 1
            raise
        self._admitted += 1
        if waited:
            self._waited += 1

    def _refused(self, key: Hashable, cost: int, retry_after: float | None) -> None:
        self._rejected += 1
        self._emit("rate_limited", Severity.WARNING, key=key, cost=cost, retry_after=retry_after)

    async def _wait(self, key: Hashable, cost: int, at: float) -> None:
        loop = asyncio.get_running_loop()
        self._seq += 1
        waiter = _Waiter(at, self._seq, cost, key, loop.create_future())
        queue = self._queues.get(key)
        if queue is None:
            self._queues[key] = queue = []
        queue.append(waiter)
        self._queued += 1
        self._schedule(loop, waiter)
        try:
            await waiter.future
        except asyncio.CancelledError:
            # Even if the wake-up already fired, the caller will not run: give the capacity
            # back rather than leak it, to the waiters behind first (DESIGN rule 2).
            self._cancelled += 1
            self._give_back(loop, waiter)
            raise
        self._waited += 1
        self._admitted += 1

    def _schedule(self, loop: asyncio.AbstractEventLoop, waiter: _Waiter) -> None:
        heappush(self._heap, (waiter.at, waiter.seq, waiter))
        if self._timer is None or self._timer_loop is not loop or waiter.at < self._timer_at:
            self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._timer_loop is not loop:
            self._forget_dead_waiters()
            self._timer_loop = loop
        heap = self._heap
        if not heap:
            self._timer = None
            return
        self._timer_at = at = heap[0][0]
        self._timer = loop.call_at(at, self._wake, loop)

    def _forget_dead_waiters(self) -> None:
        """Drop waiters of event loops that are closed: their tasks can never resume (a
        limiter kept across ``asyncio.run`` calls). Their reservations stay counted."""
        dead = [e for e in self._heap if e[2].future.get_loop().is_closed()]
        for _, _, waiter in dead:
            if waiter in self._queues.get(waiter.key, ()):
                self._dequeue(waiter)
        if dead:
            self._heap[:] = [e for e in self._heap if not e[2].future.get_loop().is_closed()]
            heapify(self._heap)

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        # Timers may fire a hair before their time (within the clock's resolution) or late;
        # everything due by either bound is released, in (at, arrival) order.
        due = max(self._timer_at, loop.time())
        heap = self._heap
        while heap and heap[0][0] <= due:
            at, _, waiter = heappop(heap)
            if at == waiter.at and not waiter.future.done():  # else stale or cancelled
                self._dequeue(waiter)
                waiter.future.set_result(None)
        if heap:
            self._arm(loop)

    def _dequeue(self, waiter: _Waiter) -> None:
        queue = self._queues[waiter.key]
        queue.remove(waiter)  # near the front: waiters leave in order
        self._queued -= 1
        if not queue:
            del self._queues[waiter.key]
            self._store.touch(waiter.key)

    def _give_back(self, loop: asyncio.AbstractEventLoop, waiter: _Waiter) -> None:
        """Return a cancelled waiter's reservation, to the waiters behind it first.

        Cancellations of one loop turn are collected and handled together (a shutdown that
        cancels a thousand waiters replans each key once, not a thousand times).
        """
        if waiter.given_back:  # a replan already returned it
            return
        waiter.given_back = True
        if waiter in self._queues.get(waiter.key, ()):  # not woken yet
            self._dequeue(waiter)
        if not self._returned or self._replan_loop is not loop:
            self._replan_loop = loop
            loop.call_soon(self._replan, loop)
        self._returned.setdefault(waiter.key, []).append(waiter)

    def _replan(self, loop: asyncio.AbstractEventLoop) -> None:
        """Unwind the reservations of each affected key newest first (restoring the state as
        it was before them), then make the live waiters' reservations again in arrival order:
        none gets a later time than before, and the returned capacity goes to the next in line
        rather than to whoever calls next."""
        returned, self._returned = self._returned, {}
        algorithm, store, now = self._algorithm, self._store, loop.time()
        for key, cancelled in returned.items():
            first = min(w.seq for w in cancelled)
            behind = [w for w in self._queues.get(key, ()) if w.seq > first]
            # Waiters cancelled whose tasks have not run yet are returned now, with the rest.
            for w in behind:
                if w.future.done():
                    w.given_back = True
                    self._dequeue(w)
                    cancelled.append(w)
            live = [w for w in behind if not w.given_back]
            state = store.get(key, now)
            for w in sorted(live + cancelled, key=lambda w: w.seq, reverse=True):
                state = algorithm.cancel(state, now, w.cost, w.at)
            for w in live:
                # Fewer units ahead than at its first reservation: never later, never refused.
                state, w.at, _ = algorithm.reserve(state, now, w.cost, math.inf)
                if w.at <= now:
                    self._dequeue(w)
                    w.future.set_result(None)
                else:
                    self._schedule(loop, w)
            store.put(key, state)
        # Replanned and cancelled waiters leave stale heap entries behind; drop them once they
        # outnumber the live ones, so the heap stays proportional to the waiters.
        heap = self._heap
        if len(heap) > 2 * self._queued + 16:
            heap[:] = [e for e in heap if e[0] == e[2].at and not e[2].future.done()]
            heapify(heap)

    def _check_cost(self, cost: object) -> None:
        if not isinstance(cost, int) or isinstance(cost, bool):
            raise TypeError(f"cost must be an int, got {cost!r} ({type(cost).__name__})")
        if cost < 1:
            raise ValueError(f"cost must be >= 1, got {cost!r}")
        if cost > self._algorithm.max_cost:
            raise ValueError(
                f"cost={cost} can never be admitted by {self.name}: the most it admits at once "
                f"is {self._algorithm.max_cost}"
            )

    # -- ways in ----------------------------------------------------------------------------

    def __aenter__(self) -> Awaitable[None]:
        return self._admit(None, 1, self._max_wait)

    def __aexit__(self, *exc_info: object) -> Awaitable[None]:
        return DONE

    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate a coroutine function: each call first acquires a cost of 1."""
        return self.limit()(fn)

    def limit(
        self,
        *,
        key: Callable[..., Hashable] | None = None,
        cost: int = 1,
        timeout: float | _Unset | None = _UNSET,
    ) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
        """Decorator factory: limit each call, per ``key(*args, **kwargs)`` when given."""
        if key is not None and not callable(key):
            raise TypeError(f"key must be a callable taking the call's arguments, got {key!r}")
        if cost.__class__ is not int or cost != 1:
            self._check_cost(cost)
        if not isinstance(timeout, _Unset):
            _max_wait_of("timeout", timeout)
        acquire = self.acquire

        def decorate(
            fn: Callable[P, Coroutine[Any, Any, T]],
        ) -> Callable[P, Coroutine[Any, Any, T]]:
            require_async(self.name, fn)

            @functools.wraps(fn)
            async def limited(*args: P.args, **kwargs: P.kwargs) -> T:
                await acquire(
                    cost, key=None if key is None else key(*args, **kwargs), timeout=timeout
                )
                return await fn(*args, **kwargs)

            return limited

        return decorate

    def for_key(self, key: Hashable, *, cost: int = 1) -> KeyedLimit:
        """A guard for one key: ``async with limiter.for_key(user_id):``."""
        if cost.__class__ is not int or cost != 1:
            self._check_cost(cost)
        return KeyedLimit(self, key, cost)

    # -- inspection -------------------------------------------------------------------------

    def statistics(self) -> RateLimiterStatistics:
        return RateLimiterStatistics(
            name=self.name,
            admitted=self._admitted,
            rejected=self._rejected,
            waited=self._waited,
            cancelled=self._cancelled,
            waiting=self._queued if self._remote is None else self._remote.waiting(),
            keys=len(self._store),
            store_failures=self._store_failures,
        )

    def remaining(self, key: Hashable = None) -> int:
        """Cost admissible for ``key`` right now, consuming nothing (in-memory limiters)."""
        if self._remote is not None:
            self._reserve(None, 0.0, 1, 0.0)  # raises: this limiter decides remotely
        now = _clock.now()
        return self._algorithm.inspect(self._store.get(key, now), now)[0]

    @property
    def store(self) -> MemoryStore[S]:
        return self._store

    def _parameters(self) -> str:
        return ""

    def __repr__(self) -> str:
        where = f"remaining={self.remaining()}" if self._remote is None else f"store={self._remote}"
        return (
            f"<{type(self).__name__} {self.name!r} {self._parameters()} {where} "
            f"keys={len(self._store)} waiting={self.statistics().waiting} "
            f"admitted={self._admitted} rejected={self._rejected}>"
        )


class KeyedLimit:
    """One key of a limiter, as a guard: ``async with``, ``acquire``, ``try_acquire``."""

    __slots__ = ("cost", "key", "limiter")

    def __init__(self, limiter: RateLimiter[Any], key: Hashable, cost: int) -> None:
        self.limiter = limiter
        self.key = key
        self.cost = cost

    def try_acquire(self) -> bool:
        return self.limiter.try_acquire(self.cost, key=self.key)

    async def acquire(self, *, timeout: float | _Unset | None = _UNSET) -> None:
        await self.limiter.acquire(self.cost, key=self.key, timeout=timeout)

    def __aenter__(self) -> Awaitable[None]:
        limiter = self.limiter
        return limiter._admit(self.key, self.cost, limiter._max_wait)

    def __aexit__(self, *exc_info: object) -> Awaitable[None]:
        return DONE

    def __repr__(self) -> str:
        return f"<KeyedLimit {self.limiter.name!r} key={self.key!r} cost={self.cost}>"


def rate_limited(limiter: str, key: Hashable, cost: int, retry_after: float) -> RateLimited:
    """The error of a refused ``acquire`` (shared by the in-memory and remote paths)."""
    return RateLimited(
        f"{limiter}: rate limited (cost {cost}); retry after {retry_after:.3f}s",
        retry_after=retry_after,
        limiter=limiter,
        key=key,
        cost=cost,
    )


def _decides_remotely(name: str) -> Callable[..., Any]:
    def refuse(*args: object) -> Any:
        raise TypeError(
            f"{name} keeps its state in a shared store and decides over the network: use "
            "`await limiter.decide()` or `await limiter.acquire()` instead of the sync "
            "try_acquire()/check()/remaining()"
        )

    return refuse


def _rate_per_second(name: str, value: object) -> float:
    """A rate in units per second: positive, finite, at most one per nanosecond (the
    resolution the GCRA family keeps time in)."""
    rate = finite_positive(name, value)
    if rate > 1e9:
        raise ValueError(f"{name} must be at most 1e9 per second, got {value!r}")
    return rate


def _max_wait_of(name: str, value: object) -> float:
    bound = non_negative_or_none(name, value)
    return math.inf if bound is None else bound


def _rate_or(
    rate: object, count: object, period: object, names: tuple[str, str]
) -> tuple[object, object]:
    """Either the native pair ``(count, period)`` or a rate string, not both, not neither."""
    if rate is None:
        if count is None or period is None:
            raise TypeError(f"give {names[0]} and {names[1]}, or rate='N/period'")
        return count, period
    if count is not None or period is not None:
        raise TypeError(f"give either rate={rate!r} or {names[0]}/{names[1]}, not both")
    return parse_rate("rate", rate)


class TokenBucket(RateLimiter[int]):
    """Token bucket: ``capacity`` tokens, refilled continuously at ``refill_rate`` per second.

    Allows bursts up to ``capacity`` and a long-run rate of ``refill_rate``. ``refill_rate``
    also takes a rate string (``"10/s"``); ``rate="100/minute"`` sets both (capacity 100).
    """

    __slots__ = ("capacity", "refill_rate")

    def __init__(
        self,
        capacity: int | None = None,
        refill_rate: float | str | None = None,
        *,
        rate: str | None = None,
        name: str | None = None,
        max_wait: float | None = None,
        max_keys: int = 100_000,
        store: SharedStore | None = None,
    ) -> None:
        if rate is not None and capacity is None and refill_rate is None:
            count, period = parse_rate("rate", rate)
            capacity, refill_rate = count, count / period
        elif rate is not None:
            raise TypeError(f"give either rate={rate!r} or capacity/refill_rate, not both")
        if capacity is None or refill_rate is None:
            raise TypeError("TokenBucket needs capacity and refill_rate, or rate='N/period'")
        if isinstance(refill_rate, str):
            count, period = parse_rate("refill_rate", refill_rate)
            refill_rate = count / period
        self.capacity = positive_int("capacity", capacity)
        self.refill_rate = _rate_per_second("refill_rate", refill_rate)
        super().__init__(
            TokenBucketAlgorithm(self.capacity, self.refill_rate),
            name=name,
            max_wait=max_wait,
            max_keys=max_keys,
            store=store,
        )

    def _parameters(self) -> str:
        return f"capacity={self.capacity} refill_rate={self.refill_rate:g}/s"


class LeakyBucket(RateLimiter[int]):
    """Leaky bucket of ``capacity`` units draining at ``leak_rate`` per second.

    ``mode="meter"`` (default) admits a request if it fits in the bucket, else refuses (or, with
    ``acquire``, waits for it to drain). ``mode="shaper"`` is a queue: requests leave at exactly
    ``leak_rate`` per second, evenly spaced, and a request that would find ``capacity`` units
    queued ahead is refused whatever its timeout.
    """

    __slots__ = ("capacity", "leak_rate", "mode")

    def __init__(
        self,
        capacity: int | None = None,
        leak_rate: float | str | None = None,
        *,
        mode: str = "meter",
        rate: str | None = None,
        name: str | None = None,
        max_wait: float | None = None,
        max_keys: int = 100_000,
        store: SharedStore | None = None,
    ) -> None:
        if rate is not None and capacity is None and leak_rate is None:
            count, period = parse_rate("rate", rate)
            capacity, leak_rate = count, count / period
        elif rate is not None:
            raise TypeError(f"give either rate={rate!r} or capacity/leak_rate, not both")
        if capacity is None or leak_rate is None:
            raise TypeError("LeakyBucket needs capacity and leak_rate, or rate='N/period'")
        if isinstance(leak_rate, str):
            count, period = parse_rate("leak_rate", leak_rate)
            leak_rate = count / period
        self.capacity = positive_int("capacity", capacity)
        self.leak_rate = _rate_per_second("leak_rate", leak_rate)
        algorithm: GCRAAlgorithm
        if mode == "meter":
            algorithm = LeakyBucketMeter(self.capacity, self.leak_rate)
        elif mode == "shaper":
            algorithm = LeakyBucketShaper(self.capacity, self.leak_rate)
        else:
            raise ValueError(f"mode must be 'meter' or 'shaper', got {mode!r}")
        self.mode = mode
        super().__init__(algorithm, name=name, max_wait=max_wait, max_keys=max_keys, store=store)

    def _parameters(self) -> str:
        return f"mode={self.mode} capacity={self.capacity} leak_rate={self.leak_rate:g}/s"


class GCRA(RateLimiter[int]):
    """Generic cell rate algorithm: ``limit`` per ``period`` seconds, evenly spaced, with up to
    ``burst`` admitted back to back. One float of state per key; exact rolling behaviour."""

    __slots__ = ("burst", "limit_", "period")

    def __init__(
        self,
        limit: int | None = None,
        period: float | None = None,
        *,
        burst: int = 1,
        rate: str | None = None,
        name: str | None = None,
        max_wait: float | None = None,
        max_keys: int = 100_000,
        store: SharedStore | None = None,
    ) -> None:
        count, seconds = _rate_or(rate, limit, period, ("limit", "period"))
        self.limit_ = positive_int("limit", count)
        self.period = finite_positive("period", seconds)
        self.burst = positive_int("burst", burst)
        _rate_per_second("limit / period", self.limit_ / self.period)
        super().__init__(
            GCRAAlgorithm(interval=self.period / self.limit_, burst=self.burst),
            name=name,
            max_wait=max_wait,
            max_keys=max_keys,
            store=store,
        )

    def _parameters(self) -> str:
        return f"limit={self.limit_}/{self.period:g}s burst={self.burst}"


class _WindowLimiter(RateLimiter[S]):
    """Shared constructor of the window limiters: ``max_requests`` per ``window_seconds``."""

    __slots__ = ("max_requests", "window_seconds")

    _algorithm_type: Callable[[int, float], RateAlgorithm[S]]

    def __init__(
        self,
        max_requests: int | None = None,
        window_seconds: float | None = None,
        *,
        rate: str | None = None,
        name: str | None = None,
        max_wait: float | None = None,
        max_keys: int = 100_000,
        store: SharedStore | None = None,
    ) -> None:
        count, seconds = _rate_or(
            rate, max_requests, window_seconds, ("max_requests", "window_seconds")
        )
        self.max_requests = positive_int("max_requests", count)
        self.window_seconds = finite_positive("window_seconds", seconds)
        super().__init__(
            type(self)._algorithm_type(self.max_requests, self.window_seconds),
            name=name,
            max_wait=max_wait,
            max_keys=max_keys,
            store=store,
        )

    def _parameters(self) -> str:
        return f"max_requests={self.max_requests} window_seconds={self.window_seconds:g}"


class FixedWindowCounter(_WindowLimiter[tuple[int, ...]]):
    """At most ``max_requests`` per aligned window of ``window_seconds``. Cheapest; allows up to
    2x the limit across a window boundary."""

    __slots__ = ()
    _algorithm_type = FixedWindowAlgorithm


class SlidingWindowLog(_WindowLimiter[Any]):
    """Exact: at most ``max_requests`` within any ``window_seconds``. Keeps one timestamp per
    admitted unit (O(max_requests) memory per key)."""

    __slots__ = ()
    _algorithm_type = SlidingWindowLogAlgorithm


class SlidingWindowCounter(_WindowLimiter[tuple[int, ...]]):
    """Cloudflare's weighted two-window estimate of a sliding window: O(1) memory, close to
    exact on real traffic."""

    __slots__ = ()
    _algorithm_type = SlidingWindowCounterAlgorithm

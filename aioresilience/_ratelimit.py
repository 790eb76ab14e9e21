"""Rate limiters: the async front-end over a state that decides (the state seam).

One class, :class:`RateLimiter`, is the front-end for every algorithm: it checks costs,
offers the ways in (one guard core, ``_enter``/``_exit``, from which :class:`GuardForms`
builds ``async with``, the decorator and ``call``; :class:`RateLimitStrategy` for pipelines),
and owns statistics and events. Admission is its *state*'s, an
:class:`aioresilience.abc.LimiterState`: :class:`LocalLimit` in this process (the pure
algorithm and key store of ``_core``, with the waiting machinery below: reservation, FIFO
wake-ups, cancellation give-back), or whatever a shared store binds from the limiter's
:class:`~aioresilience.abc.LimiterOptions`. The six public limiters only translate their
parameters into an algorithm.

Waiting: ``acquire`` commits a reservation for a time ``at`` and sleeps until then. All waiters
of a limiter share one loop timer and one heap ordered by ``(at, arrival)``, so wake-ups follow
arrival order exactly (asyncio's own timers do not order equal deadlines) and a thousand waiters
cost one timer, not a thousand. A key with waiters is held in a :class:`_KeyQueue` (outside the
store) with every reservation since its first waiter, so a cancellation is replanned exactly.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine, Hashable
from copy import copy
from dataclasses import dataclass
from functools import partial
from heapq import heapify, heappop, heappush
from typing import Any, ClassVar, Final, Generic, ParamSpec, TypeVar

from ._core.fixed_window import FixedWindowAlgorithm
from ._core.gcra import GCRAAlgorithm
from ._core.keystore import MAX_KEYS, KeyStore
from ._core.leaky_bucket import LeakyBucketMeter, LeakyBucketShaper
from ._core.ratelimit import Decision, RateAlgorithm, decide, new_decision, with_policy_name
from ._core.sliding_window_counter import SlidingWindowCounterAlgorithm
from ._core.sliding_window_log import SlidingWindowLogAlgorithm
from ._core.token_bucket import TokenBucketAlgorithm
from ._support.clock import Clock, Timer, clock_option, reads_inline
from ._support.compose import Core, Strategy, _async_with_core, _overrides
from ._support.context import ResilienceContext, context_var
from ._support.errors import RateLimited
from ._support.events import CallRejected, EventSource, StoreFailed
from ._support.guard import GuardForms, guarded
from ._support.loops import waiting_loop
from ._support.predicates import optional_sync_callable
from ._support.rates import parse_rate
from ._support.validation import (
    MAX_DIVISOR,
    MIN_DIVISOR,
    divisor,
    finite_positive,
    non_negative_or_none,
    one_of,
    positive_int,
    shared_store_binder,
    text,
)
from .abc import LimiterOptions, LimiterState, LimiterStore

__all__ = [
    "GCRA",
    "FixedWindowCounter",
    "KeyedLimit",
    "LeakyBucket",
    "RateLimitExceeded",
    "RateLimitStrategy",
    "RateLimiter",
    "RateLimiterStatistics",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "TokenBucket",
]

S = TypeVar("S")
P = ParamSpec("P")
T = TypeVar("T")

# The default clock's reading, made inline on the two hit paths (see _support.clock's
# reads_inline): the running loop, and time.monotonic for asyncio's own loops.
_running_loop = asyncio.get_running_loop
_monotonic = time.monotonic
_BASE_LOOP_TIME = asyncio.BaseEventLoop.time


def _admit_by_reserve(
    reserve: Callable[[Any, float, int, float], tuple[Any, float, bool]],
    state: Any,
    now: float,
    cost: int,
) -> Any:
    """``admit`` for an algorithm that has only ``reserve``: the new state if admitted at
    once, else None."""
    new_state, _, admitted = reserve(state, now, cost, 0.0)
    return new_state if admitted else None


def admit_of(algorithm: RateAlgorithm[Any]) -> Callable[[Any, float, int], Any]:
    """The algorithm's ``admit(state, now, cost)`` (the new state, or None when refused at
    once), or one built from its ``reserve`` for an algorithm that has none."""
    admit = getattr(algorithm, "admit", None)
    if callable(admit):
        return admit  # type: ignore[no-any-return]
    return partial(_admit_by_reserve, algorithm.reserve)


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


#: How late a waiter may be released and still go on its own slot. Timer waits are rounded
#: to whole milliseconds and tasks resume a little after their wake-up, so a release this late
#: is the loop's normal jitter. A later one means the loop was busy past the slot: then the
#: waiter goes now and those behind it are replanned from now (_replan), so a backlog that a
#: busy loop let build up is never let through at once.
_LATE = 0.002

# What became of a reservation (see _KeyQueue).
_QUEUED: Final = 0  # waiting for its time; may still be replanned
_RELEASED: Final = 1  # its time came, its task has not resumed yet: may still be cancelled
_DONE: Final = 2  # admitted for good
_CANCELLED: Final = 3  # given back, not yet replanned


class _Entry:
    """One reservation of a key that has waiters: a waiter (with a future) or an admission at
    once made meanwhile (``future`` is None)."""

    __slots__ = ("at", "cost", "future", "queue", "seq", "status")

    def __init__(
        self,
        at: float,
        seq: int,
        cost: int,
        queue: _KeyQueue,
        future: asyncio.Future[None] | None,
        status: int,
    ) -> None:
        self.at = at
        self.seq = seq
        self.cost = cost
        self.queue = queue
        self.future = future
        self.status = status


class _KeyQueue:
    """The state of a key while it has waiters, held by the limiter instead of the store (so
    no rotation can drop it, and no hit of the store's fast path can bypass the waiters).

    ``entries`` are the reservations made since ``base`` in arrival order, so that
    ``state == replay(base, entries)``: a cancelled one is removed by replaying the others
    (:meth:`LocalLimit._replan`), never by subtracting its cost from ``state`` (which would
    hand capacity back into the past when later reservations were already released on their
    slots or admitted). Invariants: entries' times never decrease; all ``_QUEUED`` entries
    come after every other one and have ``at > now`` whenever a decision is made on the key
    (due ones are released first), so an admission at once never comes after a waiter.
    """

    __slots__ = ("base", "dirty", "entries", "key", "state", "waiting")

    def __init__(self, key: Hashable, base: Any, state: Any) -> None:
        self.key = key
        self.base = base  # the state before the first entry
        self.state = state  # the state after every entry
        self.entries: deque[_Entry] = deque()
        self.waiting = 0  # entries _QUEUED
        self.dirty = False  # some entry _CANCELLED: replan before the next decision


@dataclass(frozen=True, slots=True, kw_only=True)
class RateLimitExceeded(CallRejected):
    """A request of ``cost`` for ``key`` was refused; ``retry_after``: seconds until it could
    pass (None: unknown)."""

    name: ClassVar[str] = "rate_limited"

    key: Hashable
    cost: int
    retry_after: float | None


class _ResetMarks(KeyStore[float]):
    """When each key was last reset, bounded like the states. A mark rotated out (more than
    ``max_keys`` other keys reset since, or idle for a period) is not simply lost: ``floor``
    rises to it, and a decision at or before ``floor`` counts as forgotten for every key. So
    the bound always holds (a refund of a decision made before its key's reset never gives
    into the fresh quota); at worst a refund made after some other key's dropped reset gives
    nothing back. ``clear()`` of every key is ``floor`` at its reading."""

    __slots__ = ("floor",)

    def __init__(self, *, max_keys: int, period: float) -> None:
        super().__init__(max_keys=max_keys, period=period)
        self.floor = -math.inf

    def _rotate(self, now: float) -> None:
        # Of this clock's timeline only: a mark or floor ahead of ``now`` is another's (a
        # virtual loop of an earlier test); raised to it, the floor would be dropped as such,
        # and with it the marks of this timeline it stood for.
        floor = self.floor if self.floor <= now else -math.inf
        self.floor = max([floor, *(mark for mark in self.old.values() if mark <= now)])
        super()._rotate(now)


class LocalLimit(Generic[S]):
    """One limiter's state in this process: an :class:`~aioresilience.abc.LimiterState` over
    the pure algorithm and :class:`KeyStore` of ``_core``, with the waiting machinery around
    them (see the module docstring). It decides and waits; counting and events are the
    front-end's (:class:`RateLimiter`). Built from the limiter's options, as a store's state
    is; ``max_keys`` and the algorithm are checked by the front-end.
    """

    __slots__ = (
        "_admit",
        "_algorithm",
        "_clock",
        "_dirty",
        "_flush_loop",
        "_heap",
        "_inline_clock",
        "_queued",
        "_queues",
        "_reserve",
        "_resets",
        "_seq",
        "_timer",
        "_timer_at",
        "_timer_loop",
        "limit",
        "name",
        "store",
    )

    def __init__(self, options: LimiterOptions, *, max_keys: int) -> None:
        algorithm: RateAlgorithm[S] = options.algorithm
        self.name = options.label
        self.limit = algorithm.max_cost
        self._algorithm = algorithm
        self._reserve = algorithm.reserve
        self._admit = admit_of(algorithm)
        # The limiter's clock: every reading, deadline and timer of this state (time seam).
        self._clock = options.clock
        self._inline_clock = reads_inline(self._clock)
        # Keys with waiters, their state held here (see _KeyQueue); and all waiters of all
        # keys in a heap by (due time, arrival) that drives the single timer.
        self._queues: dict[Hashable, _KeyQueue] = {}
        self._heap: list[tuple[float, int, _Entry]] = []
        self._dirty: list[_KeyQueue] = []  # keys with cancelled entries not yet replanned
        self._flush_loop: asyncio.AbstractEventLoop | None = None  # a flush is scheduled there
        self._timer_loop: asyncio.AbstractEventLoop | None = None
        self._queued = 0  # waiters not yet released
        self.store: KeyStore[S] = KeyStore(max_keys=max_keys, period=max(algorithm.horizon, 1.0))
        self._timer: Timer | None = None
        self._timer_at = 0.0
        self._seq = 0
        # When each key was last reset, and every key (clear): a refund of a decision made
        # before gives nothing back (its admission was forgotten already). Kept as long as a
        # state is (a decision older than the horizon has nothing left to give back).
        self._resets = _ResetMarks(max_keys=max_keys, period=self.store.period)

    # -- the LimiterState protocol ----------------------------------------------------------

    def decide(self, key: Hashable, cost: int) -> Decision:
        now = self._clock.time()
        queue = self._settled(key, now)
        if queue is None:
            store = self.store
            state, decision = decide(self._algorithm, store.get(key, now), now, cost)
            store.put(key, state, now)
        else:
            state, decision = decide(self._algorithm, queue.state, now, cost)
            if decision.allowed:
                self._record(queue, state, now, cost, None)
        return decision

    def acquire(self, key: Hashable, cost: int, max_wait: float) -> Any:
        """``False`` when admitted at once, else the native coroutine of the wait for the
        reservation (its result ``True``); raises :class:`RateLimited` when refused.

        The hot path of every waiting way in (``acquire``, ``async with``, decorators,
        pipelines): the store's hit (a key in its young generation, no rotation due) is
        inlined (as in :meth:`try_now`), everything else goes through its methods.
        """
        if self._inline_clock:  # LoopClock.time() without its frame (see reads_inline)
            try:
                loop = _running_loop()
            except RuntimeError:
                now = self._clock.time()
            else:
                now = _monotonic() if loop.__class__.time is _BASE_LOOP_TIME else loop.time()
        else:
            now = self._clock.time()
        store = self.store
        young = store.young
        state = young.get(key)
        if state is not None and now < store.rotate_at:
            # Admitted at once, the common case, in one value (no tuple); else the full claim.
            new_state = self._admit(state, now, cost)
            if new_state is not None:
                young[key] = new_state
                return False
            state, at, admitted = self._reserve(state, now, cost, max_wait)
            if admitted:
                if at <= now:
                    young[key] = state
                    return False
                self._check_loop(state, now, cost, at)
                self._open(key, state, now, cost, at)
        else:
            at, admitted = self._reserve_slow(key, now, cost, max_wait)
            if admitted and at <= now:
                return False
        if not admitted:
            raise rate_limited(self.name, key, cost, at - now)
        return self._wait(self._queues[key].entries[-1])

    def waiting(self) -> int:
        return self._queued

    def keys(self) -> int:
        return len(self.store) + len(self._queues)

    # -- what only the in-process state offers ----------------------------------------------

    def try_now(self, key: Hashable, cost: int) -> float | None:
        """Admit ``cost`` now (``None``) or refuse, returning the retry-after; never waits.
        The claim of :meth:`acquire` with ``max_wait=0``, inlined: this is the hot path the
        benchmarks measure, and a Python call plus a tuple cost as much as the algorithm."""
        now = self._clock.time()
        store = self.store
        young = store.young
        state = young.get(key)
        if state is not None and now < store.rotate_at:
            state, at, admitted = self._reserve(state, now, cost, 0.0)
            if admitted:
                young[key] = state
                return None
        else:
            at, admitted = self._reserve_slow(key, now, cost, 0.0)
            if admitted:
                return None
        return at - now

    def remaining(self, key: Hashable) -> int:
        """Cost admissible for ``key`` right now, consuming nothing."""
        return self.describe(key)[0]

    def describe(self, key: Hashable) -> tuple[int, float]:
        """``(remaining, reset_after)`` for ``key`` right now, consuming nothing."""
        now = self._clock.time()
        queue = self._settled(key, now)
        state = self.store.get(key, now) if queue is None else queue.state
        return self._algorithm.inspect(state, now)

    def refund(self, key: Hashable, cost: int, at: float) -> None:
        """Give back the admission of ``cost`` for ``key`` stamped ``at`` (its decision's
        ``at``): what of it is still held (the algorithm's ``cancel``: all of it at once, a
        bucket's units not yet drained later). With waiters on the key, its entry is
        withdrawn and they are replanned, as for a cancelled waiter."""
        now = self._clock.time()
        if self._forgotten(key, at, now):
            return  # forgotten by a reset since: the fresh quota is not this admission's
        queue = self._queues.get(key)
        if queue is None:
            state = self.store.get(key, now)
            if state is not None:  # (None: the key went idle and was forgotten since)
                self.store.put(key, self._algorithm.cancel(state, now, cost, at), now)
            return
        for entry in reversed(queue.entries):
            done_now = entry.future is None and entry.status == _DONE  # an admission at once
            if done_now and entry.at == at and entry.cost == cost:
                self._withdraw(entry)
                return
        # Made before the queue's first entry, or folded into its base since: given back
        # there, and every waiter still queued reserves again from now (as behind a late one).
        queue.base = self._algorithm.cancel(queue.base, now, cost, at)
        queued = next((entry for entry in queue.entries if entry.status == _QUEUED), None)
        self._replan(queue, now, queued)

    def _forgotten(self, key: Hashable, at: float, now: float) -> bool:
        """Whether an admission stamped ``at`` came before the last reset of ``key`` (or
        clear): its refund gives nothing back. One at the reset's own reading counts as
        before it: the clock cannot tell them apart (a virtual or a millisecond clock), and
        giving back an admission the reset forgot would admit more than the bound; at worst
        one made just after the reset is not given back. A reset stamped ahead of ``now``
        was on another clock's timeline (a virtual loop of an earlier test, starting at 0
        again): it says nothing about this one, and is dropped."""
        resets = self._resets
        if resets.floor > now:
            resets.floor = -math.inf
        reset_at = resets.get(key, now)
        if reset_at is not None and reset_at > now:
            resets.put(key, None, now)
            reset_at = None
        return at <= resets.floor or (reset_at is not None and at <= reset_at)

    def reset(self, key: Hashable) -> None:
        """Forget what ``key`` was admitted: its next request finds the whole quota. Its
        waiters reserve again from the fresh state, in arrival order (those it admits go
        now); one released but not resumed yet keeps its admission (it is about to run)."""
        now = self._clock.time()
        self._resets.put(key, now, now)
        queue = self._queues.get(key)
        if queue is None:
            self.store.pop(key)
            return
        # The admissions made (folded into ``base`` or still in ``entries``) are forgotten;
        # the reservations still to run are replanned on a fresh state, as after a late one.
        # A waiter of a closed loop (kept across asyncio.run calls) will never run: dropped,
        # not handed the fresh quota (nor set, which its loop would refuse).
        kept: deque[_Entry] = deque()
        for entry in queue.entries:
            if entry.status not in (_QUEUED, _RELEASED):
                continue
            future = entry.future
            if future is not None and future.get_loop().is_closed():
                if entry.status == _QUEUED:
                    queue.waiting -= 1
                    self._queued -= 1
                continue
            kept.append(entry)
        queue.base = None
        queue.entries = kept
        first = next((e for e in kept if e.status == _QUEUED), None)
        self._replan(queue, now, first)
        self._tidy()

    def clear(self) -> None:
        """:meth:`reset` every key."""
        for key in list(self._queues):
            self.reset(key)
        self.store.clear()
        self._resets.clear()
        self._resets.floor = self._clock.time()

    # -- waiting ----------------------------------------------------------------------------

    def _reserve_slow(
        self, key: Hashable, now: float, cost: int, max_wait: float
    ) -> tuple[float, bool]:
        """Every decision that is not a hit of the store's young generation: a new, old or
        rotated key, or one with waiters. A reservation for later (``at > now``) is the last
        entry of the key's queue."""
        queue = self._settled(key, now) if key in self._queues else None
        if queue is not None:
            state, at, admitted = self._reserve(queue.state, now, cost, max_wait)
            if admitted:
                if at > now:
                    self._check_loop(state, now, cost, at)
                self._record(queue, state, at, cost, None if at <= now else self._future())
            return at, admitted
        store = self.store
        state, at, admitted = self._reserve(store.get(key, now), now, cost, max_wait)
        if admitted:
            if at <= now:
                store.put(key, state, now)
            else:
                self._check_loop(state, now, cost, at)
                self._open(key, state, now, cost, at)
        return at, admitted

    def _check_loop(self, state: Any, now: float, cost: int, at: float) -> None:
        """Before a reservation for later waits: refused (and given back, nothing half-done:
        a log's state is changed in place, the others' new state is not stored yet) when the
        waiters wait on another live loop. An admission at once waits on no loop."""
        if self._queued:
            try:
                waiting_loop(self.name, self._timer_loop)
            except RuntimeError:
                self._algorithm.cancel(state, now, cost, at)
                raise

    @staticmethod
    def _future() -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()

    def _open(self, key: Hashable, state: Any, now: float, cost: int, at: float) -> None:
        """The first waiter of ``key``: its state moves from the store into a queue."""
        self.store.pop(key)
        # The state before this reservation, without a copy made on every decision in case
        # one waits: giving back the newest reservation is exact in every algorithm.
        base = self._algorithm.cancel(copy(state), now, cost, at)
        queue = self._queues[key] = _KeyQueue(key, base, state)
        self._record(queue, state, at, cost, self._future())

    def _record(
        self,
        queue: _KeyQueue,
        state: Any,
        at: float,
        cost: int,
        future: asyncio.Future[None] | None,
    ) -> None:
        """Append a reservation to a key's queue: a waiter (with ``future``) or an admission
        at once (which only a key whose waiters all were released can get)."""
        queue.state = state
        self._seq += 1
        entry = _Entry(at, self._seq, cost, queue, future, _DONE if future is None else _QUEUED)
        queue.entries.append(entry)
        if future is not None:
            queue.waiting += 1
            self._queued += 1
            self._schedule(future.get_loop(), entry)

    def _settled(self, key: Hashable, now: float) -> _KeyQueue | None:
        """The queue of ``key`` ready for a decision at ``now`` (cancellations replanned, due
        waiters released, in order), or None when the key has no queue (any longer)."""
        queue = self._queues.get(key)
        if queue is not None:
            if queue.dirty:
                self._replan(queue, now)
                if queue.key not in self._queues:  # nothing left but admissions: dissolved
                    return None
            else:
                self._release_due(queue, now)
        return queue

    async def _wait(self, entry: _Entry) -> bool:
        assert entry.future is not None
        try:
            await entry.future
        except asyncio.CancelledError:
            # Whether or not its time came already, the caller will not run: the reservation
            # is given back to the waiters behind it (DESIGN rule 2) by a replan.
            self._withdraw(entry)
            raise
        entry.status = _DONE
        self._fold(entry.queue, self._clock.time())
        return True

    def _withdraw(self, entry: _Entry) -> None:
        queue = entry.queue
        if entry.status == _QUEUED:
            queue.waiting -= 1
            self._queued -= 1
        entry.status = _CANCELLED
        self._dirtied(queue)

    def _dirtied(self, queue: _KeyQueue) -> None:
        """``queue`` lost a reservation: replan it (soon, and before its next decision)."""
        if not queue.dirty:
            queue.dirty = True
            self._dirty.append(queue)
        # Cancellations of one loop turn are replanned together (a shutdown that cancels a
        # thousand waiters replans each key once), and before anything else is decided or
        # released for their keys (_settled, _wake).
        loop = asyncio.get_running_loop()
        if self._flush_loop is not loop:
            self._flush_loop = loop
            loop.call_soon(self._flush, loop)

    def _flush(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._flush_loop is loop:
            self._flush_loop = None
        dirty, self._dirty = self._dirty, []
        now = self._clock.time()
        for queue in dirty:
            if queue.dirty:
                self._replan(queue, now)
        heap = self._heap
        if not self._tidy() and heap and (self._timer is None or heap[0][0] < self._timer_at):
            self._arm(loop)

    def _tidy(self) -> bool:
        """After waiters left or were replanned (a flush, a reset): when none is left, the
        timer is called off (its entries are all stale), and True; else stale entries are
        dropped once they outnumber the live ones, so the heap stays proportional to the
        waiters."""
        heap = self._heap
        if not self._queued:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            heap.clear()
            return True
        if len(heap) > 2 * self._queued + 16:
            heap[:] = [e for e in heap if e[0] == e[2].at and e[2].status == _QUEUED]
            heapify(heap)
        return False

    def _replan(self, queue: _KeyQueue, now: float, late: _Entry | None = None) -> None:
        """Remove the cancelled entries of a key by replaying the others on ``base``.

        Entries before the first cancelled one are replayed as they were. After it, those
        already released or admitted are fixed at their own times (they happened); waiters
        still queued reserve again at ``now``, in arrival order. So the state is exactly
        what it would be had the cancelled waiters never come, the bound holds for what was
        really admitted, and the returned capacity goes to the next in line, never into the
        past. A ``late`` waiter (due more than ``_LATE`` ago, the loop was busy) and those
        behind it reserve again at ``now`` the same way: they are admitted as they really
        go, so the bound holds on when they run, not only on their slots.
        """
        queue.dirty = False
        reserve = self._algorithm.reserve
        state = copy(queue.base)
        kept: deque[_Entry] = deque()
        replanning = False
        for entry in queue.entries:
            if entry is late:
                replanning = True
            if entry.status == _CANCELLED:
                replanning = True
            elif replanning and entry.status == _QUEUED:
                state, at, _ = reserve(state, now, entry.cost, math.inf)
                kept.append(entry)
                if at != entry.at:
                    entry.at = at
                    if at > now:
                        assert entry.future is not None
                        self._schedule(entry.future.get_loop(), entry)
            else:
                state = reserve(state, entry.at, entry.cost, math.inf)[0]
                kept.append(entry)
        queue.entries = kept
        queue.state = state
        self._release_due(queue, now)
        self._fold(queue, now)

    def _release_due(self, queue: _KeyQueue, now: float) -> None:
        """Release the key's waiters whose time has come, in arrival order."""
        if queue.waiting:
            for entry in queue.entries:
                if entry.status == _QUEUED:
                    if entry.at > now:
                        break
                    if entry.at < now - _LATE:
                        self._replan(queue, now, entry)  # releases what is due then
                        return
                    self._release(entry)

    def _release(self, entry: _Entry) -> None:
        entry.status = _RELEASED
        entry.queue.waiting -= 1
        self._queued -= 1
        future = entry.future
        assert future is not None
        if not future.done():  # else cancelled: its task is about to withdraw it
            future.set_result(None)

    def _fold(self, queue: _KeyQueue, now: float) -> None:
        """Fold the admitted entries at the front of a queue into its base; a queue with no
        entry left gives its state back to the store."""
        if queue.dirty:
            return  # the replan will
        entries = queue.entries
        if entries and entries[0].status == _DONE:
            reserve = self._algorithm.reserve
            base = queue.base
            while entries and entries[0].status == _DONE:
                entry = entries.popleft()
                base = reserve(base, entry.at, entry.cost, math.inf)[0]
            queue.base = base
        if not entries:
            del self._queues[queue.key]
            self.store.put(queue.key, queue.state, now)

    def _schedule(self, loop: asyncio.AbstractEventLoop, entry: _Entry) -> None:
        heappush(self._heap, (entry.at, entry.seq, entry))
        if self._timer is None or self._timer_loop is not loop or entry.at < self._timer_at:
            self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._timer_loop is not loop:
            self._forget_dead_waiters(loop)
            self._timer_loop = loop
        heap = self._heap
        while heap and (heap[0][0] != heap[0][2].at or heap[0][2].status != _QUEUED):
            heappop(heap)  # stale
        if not heap:
            self._timer = None
            return
        self._timer_at = at = heap[0][0]
        self._timer = self._clock.call_at(at, partial(self._wake, loop))

    def _forget_dead_waiters(self, loop: asyncio.AbstractEventLoop) -> None:
        """Drop waiters of event loops that are closed: their tasks can never resume (a
        limiter kept across ``asyncio.run`` calls). Their reservations stay counted."""
        now = self._clock.time()
        for queue in list(self._queues.values()):
            for entry in queue.entries:
                future = entry.future
                if (
                    future is not None
                    and entry.status in (_QUEUED, _RELEASED)
                    and future.get_loop().is_closed()
                ):
                    if entry.status == _QUEUED:
                        queue.waiting -= 1
                        self._queued -= 1
                    entry.status = _DONE
            self._fold(queue, now)
        self._heap[:] = [e for e in self._heap if e[2].status == _QUEUED]
        heapify(self._heap)

    def _wake(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer = None
        # Timers may fire a hair before their time (within the clock's resolution) or late;
        # everything due by either bound is released, in (at, arrival) order.
        due = max(self._timer_at, self._clock.time())
        if self._dirty:
            # Cancellations first: a waiter behind a cancelled one is released on its new
            # slot, never on the stale one.
            self._flush(loop)
        heap = self._heap
        late = self._clock.time() - _LATE
        while heap and heap[0][0] <= due:
            at, _, entry = heappop(heap)
            if at == entry.at and entry.status == _QUEUED:  # else stale or cancelled
                if at < late:
                    self._replan(entry.queue, late + _LATE, entry)  # the loop was busy
                else:
                    self._release(entry)
        if heap:
            self._arm(loop)


class RateLimiter(GuardForms, EventSource, Generic[S]):
    """Guard calls with a rate-limit algorithm, for one key or many.

    - ``try_acquire(cost, key=)``: admit at once or refuse (``False``); never waits.
    - ``check(cost, key=)``: the same, returning a :class:`Decision` with remaining and reset.
    - ``await acquire(cost, key=, timeout=)``: wait up to ``timeout`` seconds (default: the
      limiter's ``max_wait``; ``None`` waits as long as the schedule needs) or raise
      :class:`RateLimited` at once, having consumed nothing, if the wait would be longer.
    - ``async with limiter:``, ``@limiter``, ``await limiter.call(fn, ...)`` (a cost of 1, no
      key: all built by :class:`GuardForms` from ``_enter``/``_exit``),
      ``@limiter.limit(key=...)``, ``limiter.for_key(k)``.

    Waiters of a key are served in arrival order; a non-waiting attempt never jumps ahead of
    them. A cancelled waiter returns its reservation. Per-key state is created lazily, forgotten
    once idle and capped at ``max_keys`` live keys.

    The limiter is a front-end (checking costs, the ways in, statistics, events) over its
    *state* (:class:`~aioresilience.abc.LimiterState`), which decides: a :class:`LocalLimit`
    in this process, or the state a shared ``store`` binds from the limiter's options.
    """

    __slots__ = (
        "_acquire",
        "_admit_now",
        "_admitted",
        "_algorithm",
        "_cancelled",
        "_clock",
        "_events",
        "_inline_clock",
        "_inspect",
        "_keys",
        "_local",
        "_max_cost",
        "_max_wait",
        "_policy",
        "_rejected",
        "_remote",
        "_reserve",
        "_state",
        "_store_failures",
        "_try_now",
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
        store: LimiterStore | None = None,
        clock: Clock | None = None,
    ) -> None:
        name = text("name", name, optional=True)
        methods = ("reserve", "cancel", "inspect", "fresh_at")
        max_cost = getattr(algorithm, "max_cost", None)
        if not all(callable(getattr(algorithm, m, None)) for m in methods) or not (
            isinstance(max_cost, int) and not isinstance(max_cost, bool) and max_cost >= 1
        ):
            raise TypeError(
                "algorithm must be a rate-limit algorithm (max_cost, horizon, reserve, cancel, "
                f"inspect and fresh_at, as in aioresilience._core), got {algorithm!r}"
            )
        self.name = name or type(self).__name__
        self._algorithm = algorithm = with_policy_name(algorithm, self.name)
        self._max_wait = _max_wait_of("max_wait", max_wait)
        # One clock for every reading, deadline and timer of this limiter (DESIGN: time seam).
        self._clock = clock_option("clock", clock)
        self._inline_clock = reads_inline(self._clock)
        max_keys = positive_int("max_keys", max_keys, maximum=MAX_KEYS)
        finite_positive("algorithm.horizon", getattr(algorithm, "horizon", None))
        self._admitted = self._rejected = self._waited = self._cancelled = 0
        self._store_failures = 0
        self._events = None
        # A state is told the options, never handed the limiter (DESIGN: the state seam).
        options = LimiterOptions(
            name=name,
            kind=type(self).__name__,
            algorithm=algorithm,
            on_store_failure=self._store_failed,
            clock=self._clock,
        )
        self._local: LocalLimit[S] | None = None
        self._remote: LimiterState | None = None
        self._state: LimiterState
        self._reserve = algorithm.reserve
        self._admit_now = admit_of(algorithm)
        self._inspect = algorithm.inspect
        self._max_cost = algorithm.max_cost
        self._policy = getattr(algorithm, "policy", None)  # as decide() reads it
        if store is None:
            self._state = self._local = LocalLimit(options, max_keys=max_keys)
            self._try_now: Callable[[Hashable, int], float | None] = self._local.try_now
            self._keys: KeyStore[S] = self._local.store
        else:
            bind = shared_store_binder(store, "bind_limiter", "this process's memory")
            self._state = self._remote = bind(options)
            # The non-waiting sync paths run the algorithm in process: point them at an error.
            self._try_now = _decides_remotely(self.name)
            self._keys = KeyStore()
        self._acquire = self._state.acquire

    # -- deciding ---------------------------------------------------------------------------

    def try_acquire(self, cost: int = 1, *, key: Hashable = None) -> bool:
        """Admit ``cost`` for ``key`` now, or return ``False``. Never waits, never raises for
        lack of capacity."""
        if cost.__class__ is not int or cost != 1:
            self._check_cost(cost)
        # The in-process state's hit (a key in its store's young generation, no rotation due)
        # inlined: the call into LocalLimit.try_now costs 8-10 % of this path (measured on
        # 3.11-3.13), the benchmarks' row against aiolimiter. Everything else goes to the state.
        # The clock's reading inline too (3.12+, see reads_inline), and the algorithm's admit
        # (one value, no tuple): callgrind, 3.12, the two are 500 and 460 instructions of ~7,000.
        if self._inline_clock:
            try:
                loop = _running_loop()
            except RuntimeError:
                now = self._clock.time()
            else:
                now = _monotonic() if loop.__class__.time is _BASE_LOOP_TIME else loop.time()
        else:
            now = self._clock.time()
        store = self._keys  # a shared store's limiter: an empty one, never a hit
        young = store.young
        state = young.get(key)
        if state is not None and now < store.rotate_at:
            new_state = self._admit_now(state, now, cost)
            if new_state is not None:
                young[key] = new_state
                self._admitted += 1
                return True
            # Refused: the retry-after from the full claim, which commits nothing either.
            retry_after: float | None = self._reserve(state, now, cost, 0.0)[1] - now
        else:
            retry_after = self._try_now(key, cost)
            if retry_after is None:
                self._admitted += 1
                return True
        self._rejected += 1
        self._emit(RateLimitExceeded, key=key, cost=cost, retry_after=retry_after)
        return False

    def check(self, cost: int = 1, *, key: Hashable = None) -> Decision:
        """Like :meth:`try_acquire`, returning the whole :class:`Decision` (truthy if allowed):
        remaining capacity, retry-after and reset time, as rate-limit headers need."""
        if cost.__class__ is not int or cost != 1:
            self._check_cost(cost)
        # The store's hit admitted, inlined as in try_acquire (the web adapters' per-request
        # path): callgrind, 3.11, 27,000 -> ~11,000 instructions. Everything else (a refusal,
        # a new, old or rotated key, one with waiters) goes to the state's decide.
        if self._inline_clock:
            try:
                loop = _running_loop()
            except RuntimeError:
                now = self._clock.time()
            else:
                now = _monotonic() if loop.__class__.time is _BASE_LOOP_TIME else loop.time()
        else:
            now = self._clock.time()
        store = self._keys  # a shared store's limiter: an empty one, never a hit
        young = store.young
        state = young.get(key)
        if state is not None and now < store.rotate_at:
            new_state = self._admit_now(state, now, cost)
            if new_state is not None:
                young[key] = new_state
                self._admitted += 1
                remaining, reset_after = self._inspect(new_state, now)
                return new_decision(
                    Decision,
                    (True, self._max_cost, remaining, 0.0, reset_after, self._policy, now),
                )
        local = self._local
        if local is None:
            self._try_now(key, cost)  # raises: this limiter decides remotely
            raise AssertionError  # pragma: no cover
        decision = local.decide(key, cost)
        if decision.allowed:
            self._admitted += 1
        else:
            self._refused(key, cost, decision.retry_after)  # counted and heard, as try_acquire
        return decision

    async def decide(self, cost: int = 1, *, key: Hashable = None) -> Decision:
        """Decide at once, without waiting, on any store: the awaitable form of :meth:`check`
        (the one to use with a :class:`~aioresilience.stores.redis.RedisStore`)."""
        if cost.__class__ is not int or cost != 1:
            self._check_cost(cost)
        remote = self._remote
        if remote is None:
            return self.check(cost, key=key)
        decision = remote.decide(key, cost)
        if not isinstance(decision, Decision):
            decision = await decision
        if decision.allowed:
            self._admitted += 1
        else:
            self._refused(key, cost, decision.retry_after)
        return decision

    def allow_request(self, cost: int = 1, *, key: Hashable = None) -> bool:
        """The seed guide's name for :meth:`try_acquire`: admit now or return ``False``."""
        return self.try_acquire(cost, key=key)

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
        wait = self._admit(key, cost, max_wait)
        if wait is not None:  # the coroutine of a wait (None: admitted at once)
            await wait

    def _admit(self, key: Hashable = None, cost: int = 1, max_wait: Any = _UNSET) -> Any:
        """Claim ``cost`` now: ``None`` when admitted at once, else a native coroutine that
        waits (if admission is due within ``max_wait``, by default the limiter's); raises
        :class:`RateLimited` when refused. The hot path of every waiting way in, and with
        its defaults the guard's core ``_enter`` itself (below)."""
        if max_wait is _UNSET:
            max_wait = self._max_wait
        try:
            wait = self._acquire(key, cost, max_wait)
        except RateLimited as exc:
            self._refused(key, cost, exc.retry_after)
            raise
        if wait is False:
            self._admitted += 1
            return None
        return self._waiting(wait, key, cost)

    async def _waiting(self, wait: Any, key: Hashable, cost: int) -> None:
        """Count the outcome of a state's awaitable ``acquire`` (or of a sync ``True``)."""
        try:
            waited = wait if wait is True else await wait
        except RateLimited as exc:
            self._refused(key, cost, exc.retry_after)
            raise
        except asyncio.CancelledError:
            self._cancelled += 1
            raise
        self._admitted += 1
        if waited:
            self._waited += 1

    def _store_failed(self, policy: str, error: BaseException) -> None:
        """A shared store could not decide; its failure policy did (LimiterOptions)."""
        self._store_failures += 1
        self._emit(StoreFailed, policy=policy, error=error)

    def _refused(self, key: Hashable, cost: int, retry_after: float | None) -> None:
        self._rejected += 1
        self._emit(RateLimitExceeded, key=key, cost=cost, retry_after=retry_after)

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

    # The guard's core (GuardForms): a cost of 1 for no key, waiting up to max_wait. The claim
    # itself, not a method calling it: one Python frame less for async with, @limiter and
    # call (the rows "TokenBucket async with" in benchmarks/RESULTS.md).
    _enter = _admit

    def _exit(self, ticket: Any, exc: BaseException | None, result: Any) -> None:
        """Nothing to account for: an admission is spent whatever the call does."""

    def limit(
        self,
        *,
        key: Callable[..., Hashable] | None = None,
        cost: int = 1,
        timeout: float | _Unset | None = _UNSET,
    ) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
        """Decorator factory: limit each call, per ``key(*args, **kwargs)`` when given, waiting
        up to ``timeout`` (default: the limiter's ``max_wait``). The guard's core for that
        cost (:meth:`_per_key`), under the one decorator every guard has."""
        optional_sync_callable("key", key)  # an async def would make every call its own key
        if cost.__class__ is not int or cost != 1:
            self._check_cost(cost)
        max_wait = self._max_wait if timeout is _UNSET else _max_wait_of("timeout", timeout)
        enter, exit = self._per_key(cost, max_wait)
        if key is None:
            enter = partial(enter, None)
        name = self.name

        def decorate(
            fn: Callable[P, Coroutine[Any, Any, T]],
        ) -> Callable[P, Coroutine[Any, Any, T]]:
            return guarded(name, fn, enter, exit, key)

        return decorate

    def _per_key(
        self, cost: int, max_wait: float
    ) -> tuple[Callable[[Hashable], Any], Callable[[Any, BaseException | None, Any], None]]:
        """The guard's core for ``cost``, entered per key: ``enter(key)`` claims ``cost`` for
        ``key`` waiting up to ``max_wait`` (a ticket, or the native coroutine of the wait;
        raises :class:`RateLimited`), ``exit(ticket, exc, result)`` accounts for the call.
        For this class that is :meth:`_admit` and the empty ``_exit``; a subclass that
        changes the core (``_enter``, ``_exit`` or ``for_key``) is entered through a
        :meth:`for_key` handle per call (waiting as that handle's core does), so its
        behaviour holds in every form: ``limit()`` and a pipeline's keyed rate limit."""
        if not _changes_core(self):
            # A C partial: entering adds no Python frame to _admit's.
            return partial(self._admit, cost=cost, max_wait=max_wait), self._exit

        def enter_handle(key: Hashable) -> Any:
            handle = self.for_key(key, cost=cost)
            ticket = handle._enter()
            if inspect.iscoroutine(ticket):
                return _after(ticket, handle)
            return handle, ticket

        def exit_handle(ticket: Any, exc: BaseException | None, result: Any) -> None:
            handle, inner = ticket
            handle._exit(inner, exc, result)

        return enter_handle, exit_handle

    def for_key(self, key: Hashable, *, cost: int = 1) -> KeyedLimit:
        """A guard for one key: ``async with limiter.for_key(user_id):``."""
        if cost.__class__ is not int or cost != 1:
            self._check_cost(cost)
        try:
            hash(key)
        except TypeError:  # here, not at the guard's first use
            raise TypeError(f"{self.name}: key must be hashable, got {key!r}") from None
        return KeyedLimit(self, key, cost)

    # -- inspection -------------------------------------------------------------------------

    shared = property(lambda self: self._remote is not None, doc="State in a shared store?")
    policy = property(lambda self: getattr(self._algorithm, "policy", None), doc="RatePolicy")

    def statistics(self) -> RateLimiterStatistics:
        state = self._state
        return RateLimiterStatistics(
            name=self.name,
            admitted=self._admitted,
            rejected=self._rejected,
            waited=self._waited,
            cancelled=self._cancelled,
            waiting=state.waiting(),
            keys=state.keys(),
            store_failures=self._store_failures,
        )

    def refund(self, decision: Decision, cost: int = 1, *, key: Hashable = None) -> Decision:
        """Give back an admission, as if it had never been made: ``decision`` is this
        limiter's (from :meth:`check` or :meth:`decide`) for ``cost`` and ``key``, for a
        request that does not go on after all (another limit refused it: the web integrations
        refund the limiters a request passed before the one that refused it). Refund each
        admission once, with the cost and key it was decided for. What has drained of it
        since (a bucket's units, a window that ended) is not given back: the bound holds for
        what really ran. A refusal, or an admission with nothing to give back (``decision.at``
        is None: a store's failure policy admitted it), is left as it is. Counted out of
        ``statistics().admitted``.

        Returns the decision as the limiter now stands for ``key`` (its remaining and reset
        after the refund; on a shared store, whose refund is sent with its next round trip,
        the remaining before the request), with ``at`` None: nothing more to give back."""
        if not isinstance(decision, Decision):
            raise TypeError(f"decision must be a Decision, got {decision!r}")
        policy = decision.policy  # (a store's may be an equal copy: the same limit)
        if policy is not None and policy is not self._policy and policy != self._policy:
            raise ValueError(f"{self.name}: this decision is another limiter's: {decision!r}")
        if cost.__class__ is not int or cost != 1:
            self._check_cost(cost)
        if not decision.allowed or decision.at is None:
            return decision
        self._state.refund(key, cost, decision.at)
        self._admitted -= 1
        local = self._local
        if local is None:
            remaining = min(decision.limit, decision.remaining + cost)
            return decision._replace(remaining=remaining, at=None)
        remaining, reset_after = local.describe(key)
        return decision._replace(remaining=remaining, reset_after=reset_after, at=None)

    def remaining(self, key: Hashable = None) -> int:
        """Cost admissible for ``key`` right now, consuming nothing (in-memory limiters)."""
        local = self._local
        if local is None:
            self._try_now(key, 1)  # raises: this limiter decides remotely
            raise AssertionError  # pragma: no cover
        return local.remaining(key)

    def reset(self, key: Hashable = None) -> None:
        """Forget what ``key`` was admitted, as if no request had come: its next request finds
        the whole quota (as limits' ``clear`` and slowapi's ``reset``: unblocking a client by
        hand, a fresh limit per test). Waiters of the key reserve again from the fresh state,
        in arrival order: those it now admits go at once. ``statistics()`` counts what was
        decided and keeps counting. In-memory limiters (a shared store's state is in the
        store: delete it there)."""
        local = self._local
        if local is None:
            raise TypeError(
                f"{self.name} keeps its state in a shared store: reset() and clear() forget "
                "state held in this process only (delete the key in the store instead)"
            )
        local.reset(key)

    def clear(self) -> None:
        """:meth:`reset` every key (in-memory limiters)."""
        local = self._local
        if local is None:
            self.reset()  # raises, naming the store
        else:
            local.clear()

    @property
    def store(self) -> KeyStore[S]:
        """The in-process per-key store (empty for a limiter whose state is in a shared
        store)."""
        return KeyStore() if self._local is None else self._local.store

    @property
    def clock(self) -> Clock:
        """The clock this limiter reads and waits on (``clock=``; by default the loop's)."""
        return self._clock

    @property
    def max_cost(self) -> int:
        """The most cost admitted at once (a token bucket's capacity, a window's
        ``max_requests``, GCRA's burst): a larger cost can never be admitted."""
        return self._max_cost

    def _parameters(self) -> str:
        return ""

    def __repr__(self) -> str:
        where = f"remaining={self.remaining()}" if self._remote is None else f"store={self._remote}"
        return (
            f"<{type(self).__name__} {self.name!r} {self._parameters()} {where} "
            f"keys={self.statistics().keys} waiting={self.statistics().waiting} "
            f"admitted={self._admitted} rejected={self._rejected}>"
        )


class KeyedLimit(GuardForms):
    """One key of a limiter, as a guard: ``async with``, ``@handle``, ``await handle.call(fn)``
    (from GuardForms), ``acquire``, ``try_acquire``."""

    __slots__ = ("cost", "key", "limiter")

    def __init__(self, limiter: RateLimiter[Any], key: Hashable, cost: int) -> None:
        self.limiter = limiter
        self.key = key
        self.cost = cost

    def try_acquire(self) -> bool:
        return self.limiter.try_acquire(self.cost, key=self.key)

    async def acquire(self, *, timeout: float | _Unset | None = _UNSET) -> None:
        await self.limiter.acquire(self.cost, key=self.key, timeout=timeout)

    @property
    def name(self) -> str:  # type: ignore[override]  # GuardForms' name, read-only here
        return self.limiter.name

    def _enter(self) -> Any:
        limiter = self.limiter
        return limiter._admit(self.key, self.cost, limiter._max_wait)

    def _exit(self, ticket: Any, exc: BaseException | None, result: Any) -> None:
        """Nothing to account for (as the limiter's own ``_exit``)."""

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


# Counts (capacities, bursts, limits) stay exact as floats, so horizons and estimates stay so.
MAX_COUNT: Final = 2**53


def _count(name: str, value: object) -> int:
    return positive_int(name, value, maximum=MAX_COUNT)


def _rate_per_second(name: str, value: object) -> float:
    """A rate in units per second: at most one per nanosecond (the resolution the GCRA family
    keeps time in), at least ``MIN_DIVISOR`` (its interval must fit in nanoseconds)."""
    return finite_positive(name, value, minimum=MIN_DIVISOR, maximum=min(1e9, MAX_DIVISOR))


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
        store: LimiterStore | None = None,
        clock: Clock | None = None,
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
        self.capacity = _count("capacity", capacity)
        self.refill_rate = _rate_per_second("refill_rate", refill_rate)
        super().__init__(
            TokenBucketAlgorithm(self.capacity, self.refill_rate),
            name=name,
            max_wait=max_wait,
            max_keys=max_keys,
            store=store,
            clock=clock,
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
        store: LimiterStore | None = None,
        clock: Clock | None = None,
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
        self.capacity = _count("capacity", capacity)
        self.leak_rate = _rate_per_second("leak_rate", leak_rate)
        self.mode = one_of("mode", mode, ("meter", "shaper"))
        algorithm: GCRAAlgorithm
        if mode == "meter":
            algorithm = LeakyBucketMeter(self.capacity, self.leak_rate)
        else:
            algorithm = LeakyBucketShaper(self.capacity, self.leak_rate)
        super().__init__(
            algorithm, name=name, max_wait=max_wait, max_keys=max_keys, store=store, clock=clock
        )

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
        store: LimiterStore | None = None,
        clock: Clock | None = None,
    ) -> None:
        count, seconds = _rate_or(rate, limit, period, ("limit", "period"))
        self.limit_ = _count("limit", count)
        self.period = divisor("period", seconds)
        self.burst = _count("burst", burst)
        _rate_per_second("limit / period", self.limit_ / self.period)
        super().__init__(
            GCRAAlgorithm(interval=self.period / self.limit_, burst=self.burst),
            name=name,
            max_wait=max_wait,
            max_keys=max_keys,
            store=store,
            clock=clock,
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
        store: LimiterStore | None = None,
        clock: Clock | None = None,
    ) -> None:
        count, seconds = _rate_or(
            rate, max_requests, window_seconds, ("max_requests", "window_seconds")
        )
        self.max_requests = _count("max_requests", count)
        self.window_seconds = divisor("window_seconds", seconds)
        super().__init__(
            type(self)._algorithm_type(self.max_requests, self.window_seconds),
            name=name,
            max_wait=max_wait,
            max_keys=max_keys,
            store=store,
            clock=clock,
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


class RateLimitStrategy(Strategy):
    """A limiter in a pipeline, with the pipeline's own ``key=`` (of the call's
    :class:`ResilienceContext`) and ``cost=``.

    Its one core is :meth:`core`: ``enter()`` claims the cost for the key of the context
    current while it runs (``None`` when admitted at once, else the coroutine of the wait),
    ``exit`` has nothing to account for. A limiter whose class changes its guard core
    (``_enter``/``_exit``/``for_key``) is entered through a per-call :meth:`RateLimiter.for_key`
    handle's core instead, so the subclass's behaviour holds in a pipeline too.
    """

    kind = "rate_limit"
    is_guard = True

    def __init__(
        self,
        limiter: RateLimiter[Any],
        key: Callable[[ResilienceContext], Hashable] | None = None,
        cost: int = 1,
    ) -> None:
        optional_sync_callable("key", key)
        if cost.__class__ is not int or cost != 1:
            limiter._check_cost(cost)
        super().__init__(limiter.name)
        self.limiter, self.key, self.cost = limiter, key, cost

    def core(self) -> Core:
        limiter, key_of, cost = self.limiter, self.key, self.cost
        if key_of is None and cost == 1 and _overrides(type(limiter), GuardForms, *_ASYNC_WITH):
            return _async_with_core(limiter)  # a subclass is entered through its override
        if not _changes_core(limiter):
            # The limiter's own core, with nothing to do on the way out (exit None: the fold
            # skips it); no key: bound to None in a C partial, no frame of ours per call.
            admit, max_wait = limiter._admit, limiter._max_wait
            if key_of is None:
                return partial(admit, None, cost, max_wait), None

            def enter() -> Any:
                # The pipeline's fold makes the call's context current while enter() runs.
                return admit(key_of(context_var.get()), cost, max_wait)  # type: ignore[arg-type]

            return enter, None
        enter_for, exit = limiter._per_key(cost, limiter._max_wait)

        def enter_handle() -> Any:
            return enter_for(None if key_of is None else key_of(context_var.get()))  # type: ignore[arg-type]

        return enter_handle, exit


_ASYNC_WITH = ("__aenter__", "__aexit__")


def _changes_core(limiter: RateLimiter[Any]) -> bool:
    """Whether ``limiter``'s class replaces any part of the guard core the closure inlines."""
    cls = type(limiter)
    return any(
        getattr(cls, name) is not getattr(RateLimiter, name)
        for name in ("_enter", "_exit", "for_key")
    )


async def _after(wait: Coroutine[Any, Any, Any], handle: KeyedLimit) -> tuple[KeyedLimit, Any]:
    return handle, await wait

"""A third limiter store, written against the public seam alone (``aioresilience.abc``): the
state of every limiter in one plain dict, each decision a simulated round trip, with faults
that a test injects. That it passes the same behaviour suite as memory and Redis
(tests/limiter_behaviour.py) is the proof that the seam is real: it imports nothing private
and is told about a limiter only through its :class:`LimiterOptions`.

The limiter half of the dict store (the breaker half is the breaker's).
"""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Hashable
from typing import Any, Literal

from aioresilience import RateLimited
from aioresilience.abc import Clock, Decision, LimiterOptions

__all__ = ["DictLimit", "DictLimiterStore", "StoreDown"]

Policy = Literal["allow", "deny"]


class StoreDown(ConnectionError):
    """The fault a test injects: the store cannot be reached."""


class DictLimiterStore:
    """Every bound limiter's per-key state in ``data``, keyed ``(limiter name, key)``.

    Faults: :meth:`fail` makes the next ``times`` round trips (``None``: all of them, until
    :meth:`heal`) raise ``error`` instead of deciding; the limiter's decision then follows
    ``on_failure``: ``"allow"`` admits, ``"deny"`` refuses (with ``retry_after``, the time the
    store promises to be looked at again).
    """

    def __init__(self, *, on_failure: Policy = "deny", retry_after: float = 1.0) -> None:
        if on_failure not in ("allow", "deny"):
            raise ValueError(f"on_failure must be 'allow' or 'deny', got {on_failure!r}")
        self.on_failure: Policy = on_failure
        self.retry_after = retry_after
        self.data: dict[tuple[str, Hashable], Any] = {}
        self.round_trips = 0
        self._error: BaseException | None = None
        self._failures_left: float = 0

    def bind_limiter(self, options: LimiterOptions) -> DictLimit:
        if options.name is None:
            raise TypeError(f"a {options.kind} on a DictLimiterStore needs name=...")
        return DictLimit(self, options)

    def fail(self, error: BaseException | None = None, *, times: int | None = None) -> None:
        self._error = StoreDown("the dict store is down") if error is None else error
        self._failures_left = math.inf if times is None else times

    def heal(self) -> None:
        self._error, self._failures_left = None, 0

    async def round_trip(self) -> BaseException | None:
        """Yield as a network would (the request is in flight: a caller cancelled now has
        had no effect), then the injected fault, if any. The decision itself is applied
        after this returns, in the same step, so no cancellation falls between applying it
        and the caller learning it."""
        await asyncio.sleep(0)
        self.round_trips += 1
        if self._failures_left > 0 and self._error is not None:
            self._failures_left -= 1
            return self._error
        return None


class _Line:
    """The callers of one key in this process that wait, first come first served: the one
    holding the turn polls the store, the others wait for it in ``queue`` (a future each,
    set True when the turn is handed to it, False when its deadline passed first).
    ``asyncio.Lock`` would do but for the deadline, which must be the limiter's clock's."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.queue: deque[asyncio.Future[bool]] = deque()
        self.held = False
        self.count = 0  # callers in the line, the one holding the turn included

    async def take(self, deadline: float) -> bool:
        """Take the turn by ``deadline`` (True), or not (False). Cancelled, it leaves no turn
        behind: one handed to it just then goes on to the next caller."""
        if not self.held:
            self.held = True
            return True
        turn: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.queue.append(turn)

        def expire() -> None:
            if not turn.done():
                turn.set_result(False)

        timer = None if math.isinf(deadline) else self.clock.call_at(deadline, expire)
        try:
            handed = await turn
        except BaseException:
            if turn.done() and not turn.cancelled() and turn.result():
                self.release()  # handed over just as the caller left: on to the next
            elif turn in self.queue:
                self.queue.remove(turn)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if not handed and turn in self.queue:
            self.queue.remove(turn)
        return handed

    def release(self) -> None:
        while self.queue:
            turn = self.queue.popleft()
            if not turn.done():  # (one that left or timed out is skipped)
                turn.set_result(True)
                return
        self.held = False


class DictLimit:
    """One limiter's state in a :class:`DictLimiterStore` (an ``aioresilience.abc.LimiterState``).

    Every time, deadline, sleep and timer is read on the limiter's clock (``options.clock``).
    Waiting polls, as on Redis: a refused caller sleeps until the store's retry-after and asks
    again. Callers of one key in this process wait in line (FIFO): only the first of them
    polls; a key has a line only while someone waits, so callers with capacity never wait for
    each other.
    """

    def __init__(self, store: DictLimiterStore, options: LimiterOptions) -> None:
        self.store = store
        self.options = options
        self.clock = options.clock
        self.name: str = options.label
        self.algorithm = options.algorithm
        self.limit: int = options.algorithm.max_cost
        self._lines: dict[Hashable, _Line] = {}

    def waiting(self) -> int:
        return sum(line.count for line in self._lines.values())

    def keys(self) -> int:
        return 0  # they live in the store, not in this process's limiter

    async def _reserve(self, key: Hashable, cost: int) -> tuple[bool, float, float] | BaseException:
        """One decision (never waiting) in the store: ``(admitted, retry_after, now)``, or
        the store's fault."""
        fault = await self.store.round_trip()
        if fault is not None:
            return fault
        now = self.clock.time()
        slot = (self.name, key)
        state, at, admitted = self.algorithm.reserve(self.store.data.get(slot), now, cost, 0.0)
        if admitted:
            self.store.data[slot] = state
        return admitted, max(0.0, at - now), now

    def refund(self, key: Hashable, cost: int, at: float) -> None:
        slot = (self.name, key)
        state = self.store.data.get(slot)
        if state is not None:
            self.store.data[slot] = self.algorithm.cancel(state, self.clock.time(), cost, at)

    def _policy(self, fault: BaseException) -> bool:
        self.options.on_store_failure(self.store.on_failure, fault)
        return self.store.on_failure == "allow"

    async def decide(self, key: Hashable, cost: int) -> Decision:
        if key in self._lines:  # callers of this process wait: they go first
            wait = self.store.retry_after  # and nothing is back for this one before
            return Decision(False, self.limit, 0, wait, wait)
        outcome = await self._reserve(key, cost)
        if isinstance(outcome, BaseException):
            allowed = self._policy(outcome)
            return Decision(
                allowed,
                self.limit,
                self.limit if allowed else 0,
                0.0 if allowed else self.store.retry_after,
                0.0,
            )
        admitted, retry_after, now = outcome
        remaining, reset_after = self.algorithm.inspect(
            self.store.data.get((self.name, key)), self.clock.time()
        )
        at = now if admitted else None
        return Decision(admitted, self.limit, remaining, retry_after, reset_after, None, at)

    async def acquire(self, key: Hashable, cost: int, max_wait: float) -> bool:
        clock = self.clock
        deadline = clock.time() + max_wait
        if key not in self._lines and await self._try(key, cost, deadline) is None:
            return False
        line = self._lines.get(key)
        if line is None:
            line = self._lines[key] = _Line(clock)
        line.count += 1
        try:
            if not await line.take(deadline):
                raise self._refusal(key, cost, self.store.retry_after)
            try:
                while True:  # first in line: ask, sleep the retry-after, ask again
                    retry_after = await self._try(key, cost, deadline)
                    if retry_after is None:
                        return True
                    await clock.sleep(retry_after)
            finally:
                line.release()
        finally:
            line.count -= 1
            if not line.count:  # nobody waits for this key any more: no line
                del self._lines[key]

    async def _try(self, key: Hashable, cost: int, deadline: float) -> float | None:
        """``None`` when admitted (by the store or its policy), else the retry-after; a
        refusal when that is beyond ``deadline``."""
        outcome = await self._reserve(key, cost)
        if isinstance(outcome, BaseException):
            if self._policy(outcome):
                return None
            raise self._refusal(key, cost, self.store.retry_after)
        admitted, retry_after, _ = outcome
        if admitted:
            return None
        if self.clock.time() + retry_after > deadline:
            raise self._refusal(key, cost, retry_after)
        return retry_after

    def _refusal(self, key: Hashable, cost: int, retry_after: float) -> RateLimited:
        return RateLimited(
            f"{self.name}: rate limited (cost {cost}); retry after {retry_after:.3f}s",
            retry_after=retry_after,
            limiter=self.name,
            key=key,
            cost=cost,
        )

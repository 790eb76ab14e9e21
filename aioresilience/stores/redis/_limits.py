"""A rate limiter's state on Redis (a :class:`~aioresilience.abc.LimiterState`): its script,
keys, FIFO lines and failure policy, bound from the limiter's public
:class:`~aioresilience.abc.LimiterOptions` alone (never the limiter object)."""

from __future__ import annotations

import asyncio
import math
from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any, Final

from ..._core.fixed_window import FixedWindowAlgorithm
from ..._core.gcra import GCRAAlgorithm
from ..._core.leaky_bucket import LeakyBucketShaper
from ..._core.ratelimit import Decision, RatePolicy
from ..._core.sliding_window_counter import SlidingWindowCounterAlgorithm
from ..._core.sliding_window_log import SlidingWindowLogAlgorithm
from ..._ratelimit import RateLimiter, rate_limited
from ..._support.errors import RateLimited
from ..._support.loops import waiting_loop
from ...abc import LimiterOptions
from ._batcher import Outage, StoreView
from ._protocol import SCRIPTS, FailurePolicy, _Script, shared_name

__all__ = ["RedisLimit"]

_PER_S: Final = 1e6  # µs per second


def _script_for(algorithm: object) -> tuple[_Script, float, float]:
    """The script and its two parameters (in µs where they are times) for an algorithm."""
    if isinstance(algorithm, LeakyBucketShaper):
        raise TypeError(
            "LeakyBucket(mode='shaper') queues callers in one process and cannot be shared on "
            "Redis; use mode='meter', or GCRA with max_wait for spaced admissions"
        )
    if isinstance(algorithm, GCRAAlgorithm):
        return SCRIPTS["gcra"], algorithm.interval * _PER_S, algorithm.burst
    for kind, name in (
        (FixedWindowAlgorithm, "fixed_window"),
        (SlidingWindowLogAlgorithm, "sliding_window_log"),
        (SlidingWindowCounterAlgorithm, "sliding_window_counter"),
    ):
        if isinstance(algorithm, kind):
            return SCRIPTS[name], algorithm.limit, algorithm.window * _PER_S
    raise TypeError(f"no Redis script for the algorithm {type(algorithm).__name__}")


def _scaled(algorithm: Any, share: float) -> Any:
    """The same algorithm with ``share`` of its limit (at least 1): the local fallback."""

    def part(units: int) -> int:  # rounded down, but not below 1 by a float's last bit
        return max(1, int(units * share + 1e-9))

    if isinstance(algorithm, GCRAAlgorithm):
        return GCRAAlgorithm(algorithm.interval / share, part(algorithm.burst))
    return type(algorithm)(part(algorithm.limit), algorithm.window)


@dataclass(frozen=True, slots=True)
class _Verdict:
    admitted: bool
    remaining: int
    retry_after: float
    reset_after: float
    stamp: int  # the server time of the decision (µs): what a refund gives back by


class _Line:
    """The callers of one key in this process that were refused and wait, in arrival order:
    the first one sleeps until ``retry_at`` and asks again, the others wait for their turn
    (a future each: True when the turn is handed to it, False when its deadline passed first).
    A key has a line only while someone waits; otherwise callers go straight to Redis."""

    __slots__ = ("loop", "retry_at", "waiting")

    def __init__(self) -> None:
        self.waiting: deque[asyncio.Future[bool]] = deque()
        self.retry_at = 0.0  # when the polling waiter asks next (the limiter's clock)
        # The loop its waiters wait on: closed without cancelling them, none of them will
        # ever ask again or pass the turn on, so the line is given up (see _line).
        self.loop = asyncio.get_running_loop()


class RedisLimit:
    """One limiter's state in the store: its script, parameters, keys and waiting lines."""

    __slots__ = (
        "_fallback",
        "_fallback_cost",
        "_lines",
        "clock",
        "limit",
        "name",
        "options",
        "p1",
        "p2",
        "policy",
        "script",
        "store",
        "tag",
    )

    def __init__(self, store: StoreView, options: LimiterOptions) -> None:
        shared_name(options, default=None)
        self.store = store
        self.options = options
        # The limiter's clock: every time, deadline, sleep and timer here is read on it (the
        # server's clock decides admission; this one decides how long a caller waits).
        self.clock = options.clock
        self.name: str = options.label
        self.limit: int = options.algorithm.max_cost
        # Every decision describes the limit as in process does (RateLimit-Policy needs it).
        self.policy: RatePolicy | None = getattr(options.algorithm, "policy", None)
        self.script, self.p1, self.p2 = _script_for(options.algorithm)
        self.tag = f"{store.prefix}:{self.script.name}:{{{self.name}"
        self._lines: dict[str, _Line] = {}
        self._fallback: RateLimiter[Any] | None = None
        self._fallback_cost = 0  # the most the fallback admits at once
        if store.policy == "local":
            local = _scaled(options.algorithm, store.local_share)
            self._fallback = RateLimiter(
                local, name=f"{self.name} (local fallback)", clock=options.clock
            )
            self._fallback_cost = local.max_cost

    def _line(self, name: str) -> _Line | None:
        """The line of ``name``, if its waiters' loop is still open (a line left on a loop
        closed without cancelling its waiters would refuse the key forever)."""
        line = self._lines.get(name)
        if line is not None and line.loop.is_closed():
            del self._lines[name]
            return None
        return line

    def waiting(self) -> int:
        """Callers of this process waiting: the first of each line and those behind it."""
        return sum(len(line.waiting) + 1 for line in self._lines.values())

    def keys(self) -> int:
        """Keys held in this process: none, they live on Redis."""
        return 0

    def __repr__(self) -> str:
        return f"redis:{self.store.prefix}:{self.store.policy}"

    def redis_key(self, key: Hashable) -> str:
        """The Redis key of ``key``'s limit. Keys are str or int; on Redis an int is the same
        key as its decimal string (42 and "42" share a limit)."""
        if key is None:
            name = f"{self.tag}}}"
        elif isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)):
            # The value itself, not a subclass's str(): a str or int enum member equals its
            # value, and is one key with it in memory (str(Plan.FREE) is "Plan.FREE").
            try:
                text = str.__str__(key) if isinstance(key, str) else int.__repr__(key)
                text.encode()
            except ValueError:  # an int past Python's digit limit, a lone surrogate
                raise ValueError(  # (its repr may fail the same way: not shown)
                    f"{self.name}: this {type(key).__name__} key has no Redis key (an int of "
                    "more digits than Python converts, or a str that is not valid Unicode)"
                ) from None
            if not text.strip():
                raise ValueError(f"{self.name}: a key must not be empty, got {key!r}")
            name = f"{self.tag}:{text}}}"
        else:
            raise TypeError(
                f"{self.name}: keys of a limiter on Redis must be str or int, "
                f"got {key!r} ({type(key).__name__})"
            )
        if len(name.encode()) > self.store.max_key_length:
            raise ValueError(
                f"{self.name}: the Redis key for {key!r} is {len(name.encode())} bytes, "
                f"more than max_key_length={self.store.max_key_length}"
            )
        return name

    async def _ask(self, name: str, cost: int) -> _Verdict | Outage:
        """One decision on the server (coalesced with the others of this loop turn)."""
        reply = await self.store._batcher.request(
            self.script, name, ("t", cost, self.p1, self.p2, 0)
        )
        if isinstance(reply, Outage):
            return reply
        admitted, remaining, retry_us, reset_us, stamp = reply
        return _Verdict(admitted == 1, remaining, retry_us / _PER_S, reset_us / _PER_S, stamp)

    async def decide(self, key: Hashable, cost: int) -> Decision:
        name = self.redis_key(key)
        limit = self.limit
        line = self._line(name)
        if line is not None:  # callers of this process already wait for this key: they go first
            # Nothing is left for this caller before the line has gone: that is its reset too
            # (a RateLimit t of 0 would say the quota is back now).
            wait = max(0.0, line.retry_at - self.clock.time())
            return Decision(False, limit, 0, wait, wait, self.policy)
        verdict = await self._ask(name, cost)
        if isinstance(verdict, Outage):
            return self._decide_by_policy(key, cost, verdict)
        return Decision(
            verdict.admitted,
            limit,
            verdict.remaining,
            verdict.retry_after,
            verdict.reset_after,
            self.policy,
            verdict.stamp if verdict.admitted else None,
        )

    def refund(self, key: Hashable, cost: int, at: float) -> None:
        """Give back an admission stamped ``at`` (the server's µs): an owed operation, sent
        with the next batch, ahead of the decisions that wait in it."""
        self.store._batcher.send(
            self.script, self.redis_key(key), ("r", cost, self.p1, self.p2, int(at))
        )

    def _decide_by_policy(self, key: Hashable, cost: int, outage: Outage) -> Decision:
        policy = self._note_outage(outage)
        limit = self.limit
        if policy == "allow":
            return Decision(True, limit, limit, 0.0, 0.0, self.policy)
        if policy == "deny" or self._fallback is None:
            return Decision(False, limit, 0, outage.retry_after, 0.0, self.policy)
        if cost > self._fallback_cost:
            return Decision(False, limit, 0, outage.retry_after, 0.0, self.policy)
        # Nothing on Redis to give back: the fallback keeps what it admitted (at None). The
        # decision is this limiter's (its policy, not the fallback's renamed one): refunding
        # it, as the HTTP core does for a request a later limit refused, is then a no-op.
        return self._fallback.check(cost, key=key)._replace(policy=self.policy, at=None)

    def _note_outage(self, outage: Outage) -> FailurePolicy:
        self.options.on_store_failure(self.store.policy, outage.error)  # counted, emitted
        return self.store.policy

    async def acquire(self, key: Hashable, cost: int, max_wait: float) -> bool:
        """Admit ``cost`` for ``key`` within ``max_wait`` seconds; ``True`` if it waited.
        Raises :class:`RateLimited` when it cannot."""
        name = self.redis_key(key)
        clock = self.clock
        deadline = clock.time() + max_wait
        line = self._line(name)
        if line is None:
            # Nobody in this process waits for this key: straight to Redis, coalesced with
            # every other decision of this loop turn.
            retry_after = await self._try(name, key, cost, deadline)
            if retry_after is None:
                return False
            line = self._line(name)  # another caller may have started one meanwhile
            if line is None:
                self._lines[name] = line = _Line()
                line.retry_at = clock.time() + retry_after
            else:
                await self._wait_turn(line, key, cost, deadline)
        else:
            await self._wait_turn(line, key, cost, deadline)
        try:
            while True:  # first in line: sleep until the server said, ask again
                delay = line.retry_at - clock.time()
                if delay > 0:
                    await clock.sleep(delay)
                retry_after = await self._try(name, key, cost, deadline)
                if retry_after is None:
                    return True
                line.retry_at = clock.time() + retry_after
        finally:
            self._pass_turn(name, line)

    async def _try(self, name: str, key: Hashable, cost: int, deadline: float) -> float | None:
        """Ask once: ``None`` when admitted (by Redis, or by the policy if Redis cannot
        answer), else the retry-after Redis reported; :class:`RateLimited` when that is
        beyond ``deadline``."""
        verdict = await self._ask(name, cost)
        if isinstance(verdict, Outage):
            await self._admit_by_policy(key, cost, deadline, verdict)
            return None
        if verdict.admitted:
            return None
        if self.clock.time() + verdict.retry_after > deadline:
            raise self._rejection(key, cost, verdict.retry_after)
        return verdict.retry_after

    async def _wait_turn(self, line: _Line, key: Hashable, cost: int, deadline: float) -> None:
        """Wait behind the callers already in ``line`` until it is this one's turn, at most
        until ``deadline`` (on the limiter's clock, whose timer ends the wait)."""
        clock = self.clock
        # A line's turns are handed on by its waiters' loop: a turn of another live loop (a
        # thread's) would be set from the wrong thread and never wake it.
        loop = waiting_loop(self.name, line.loop)
        if line.retry_at > deadline:  # the first in line will not even ask before then
            raise self._rejection(key, cost, line.retry_at - clock.time())
        turn: asyncio.Future[bool] = loop.create_future()
        line.waiting.append(turn)

        def expire() -> None:  # the deadline passed before the turn came
            if not turn.done():
                turn.set_result(False)

        timer = None if math.isinf(deadline) else clock.call_at(deadline, expire)
        try:
            handed = await turn
        except BaseException:  # cancelled: leave no turn behind
            if turn in line.waiting:
                line.waiting.remove(turn)
            elif turn.done() and not turn.cancelled() and turn.result():
                # The turn was handed over just as this waiter left: hand it on.
                self._pass_turn(self.redis_key(key), line)
            raise
        finally:
            if timer is not None:
                timer.cancel()
        if not handed:
            if turn in line.waiting:  # (a turn passed on meanwhile skipped it already)
                line.waiting.remove(turn)
            raise self._rejection(key, cost, max(0.0, line.retry_at - clock.time()))

    def _pass_turn(self, name: str, line: _Line) -> None:
        waiting = line.waiting
        while waiting:
            turn = waiting.popleft()
            if not turn.done():  # (a waiter that left or timed out is skipped)
                turn.set_result(True)
                return
        if self._lines.get(name) is line:
            del self._lines[name]

    async def _admit_by_policy(
        self, key: Hashable, cost: int, deadline: float, outage: Outage
    ) -> None:
        policy = self._note_outage(outage)
        if policy == "allow":
            return
        fallback = self._fallback
        if policy == "deny" or fallback is None or cost > self._fallback_cost:
            raise self._rejection(key, cost, outage.retry_after)
        try:
            await fallback.acquire(cost, key=key, timeout=max(0.0, deadline - self.clock.time()))
        except RateLimited as exc:
            raise self._rejection(key, cost, exc.retry_after or 0.0) from None

    def _rejection(self, key: Hashable, cost: int, retry_after: float) -> RateLimited:
        return rate_limited(self.name, key, cost, retry_after)

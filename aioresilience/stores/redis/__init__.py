"""Redis store: rate limits shared by many processes (extra ``redis``, on ``redis.asyncio``).

::

    store = RedisStore("redis://localhost:6379/0", prefix="myapp")
    per_user = TokenBucket(10, 5, name="api-per-user", store=store)
    async with per_user.for_key(user_id): ...

Every decision is one Lua script run (EVALSHA, loaded on NOSCRIPT) that mirrors the ``_core``
algorithm of the same name (``gcra.lua``, ``fixed_window.lua``, ``sliding_window_log.lua``,
``sliding_window_counter.lua``) and reads the time from the server (``TIME``), so the clocks of
the clients never matter. One key per limit and key, ``<prefix>:<algorithm>:{<name>:<key>}``;
the braces are a hash tag, so Redis Cluster places each limit on one slot. Every write sets a
TTL; refusals write nothing.

Coalescing: decisions asked for by one event loop in the same loop turn travel together, one
script call per algorithm (and per Cluster slot) carrying every key, so throughput grows with
concurrency instead of stopping at one round trip per decision.

Failure policy (:meth:`RedisStore.on_failure`): when Redis cannot answer within ``timeout``,
or a small breaker around the store is open after repeated failures, the limiter applies its
policy: ``"allow"``, ``"deny"`` or ``"local"`` (an in-process limiter of the same kind with
``local_share`` of the limit), emits a ``store_failure`` event and counts it in
``statistics().store_failures``. The breaker probes again after a short break, so recovery
needs no restart.

Waiting (``await limiter.acquire(...)``) polls: the server reports when the request could
succeed, the caller sleeps that long and asks again. Waiters of one key in one process are
served in arrival order (only the first of them polls); across processes nobody holds a
reservation, so a wait is bounded by the caller's timeout rather than promised up front.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
from collections import deque
from collections.abc import Hashable, Iterator
from dataclasses import dataclass
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, Literal

try:
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster
    from redis.crc import key_slot
    from redis.exceptions import NoScriptError, RedisError
except ImportError as exc:  # pragma: no cover - exercised in a subprocess test
    raise ImportError(
        "aioresilience.stores.redis needs the redis client: pip install aioresilience[redis]"
    ) from exc

from ..._breaker import CircuitBreaker
from ..._core.fixed_window import FixedWindowAlgorithm
from ..._core.gcra import GCRAAlgorithm
from ..._core.leaky_bucket import LeakyBucketShaper
from ..._core.ratelimit import Decision
from ..._core.sliding_window_counter import SlidingWindowCounterAlgorithm
from ..._core.sliding_window_log import SlidingWindowLogAlgorithm
from ..._errors import CircuitBreakerOpenError, RateLimited, StoreError
from ..._events import Severity
from ..._schedules import exponential
from ..._timeout import timeout
from ..._validation import finite_positive, positive_int

if TYPE_CHECKING:
    from ..._ratelimit import RateLimiter

__all__ = ["FailurePolicy", "RedisStore"]

FailurePolicy = Literal["allow", "deny", "local"]
_POLICIES: Final = ("allow", "deny", "local")
_MIN_VERSION: Final = (5, 0)
_US: Final = 1e-6
_BREAKER_OPEN: Final = StoreError("the store's breaker is open after repeated failures")


class _Script:
    """One Lua script: the shared helpers, one algorithm's ``take``/``refund``, the driver."""

    __slots__ = ("name", "sha", "source")

    def __init__(self, name: str) -> None:
        def read(file: str) -> str:
            return resources.files(__package__).joinpath(file).read_text(encoding="utf-8")

        self.name = name
        self.source = "\n".join((read("_common.lua"), read(f"{name}.lua"), read("_driver.lua")))
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()


_SCRIPTS: Final = {
    name: _Script(name)
    for name in ("gcra", "fixed_window", "sliding_window_log", "sliding_window_counter")
}


def _script_for(algorithm: object) -> tuple[_Script, float, float]:
    """The script and its two parameters (in µs where they are times) for an algorithm."""
    if isinstance(algorithm, LeakyBucketShaper):
        raise TypeError(
            "LeakyBucket(mode='shaper') queues callers in one process and cannot be shared on "
            "Redis; use mode='meter', or GCRA with max_wait for spaced admissions"
        )
    if isinstance(algorithm, GCRAAlgorithm):
        return _SCRIPTS["gcra"], algorithm.interval / _US, algorithm.burst
    for kind, name in (
        (FixedWindowAlgorithm, "fixed_window"),
        (SlidingWindowLogAlgorithm, "sliding_window_log"),
        (SlidingWindowCounterAlgorithm, "sliding_window_counter"),
    ):
        if isinstance(algorithm, kind):
            return _SCRIPTS[name], algorithm.limit, algorithm.window / _US
    raise TypeError(f"no Redis script for the algorithm {type(algorithm).__name__}")


def _scaled(algorithm: Any, share: float) -> Any:
    """The same algorithm with ``share`` of its limit (at least 1): the local fallback."""
    if isinstance(algorithm, GCRAAlgorithm):
        return GCRAAlgorithm(algorithm.interval / share, max(1, int(algorithm.burst * share)))
    return type(algorithm)(max(1, int(algorithm.limit * share)), algorithm.window)


class _Outage:
    """The result of a decision Redis could not make (the policy decides instead)."""

    __slots__ = ("error", "retry_after")

    def __init__(self, error: BaseException, retry_after: float) -> None:
        self.error = error
        self.retry_after = retry_after


@dataclass(frozen=True, slots=True)
class _Verdict:
    admitted: bool
    remaining: int
    retry_after: float
    reset_after: float
    server_time: int  # µs; a refund names the admission it gives back by this


class _Entry:
    """One decision (or refund) waiting for the next round trip."""

    __slots__ = ("args", "future", "key", "script")

    def __init__(
        self,
        script: _Script,
        key: str,
        args: tuple[str, int, float, float, int],
        future: asyncio.Future[_Verdict | _Outage] | None,
    ) -> None:
        self.script = script
        self.key = key
        self.args = args
        self.future = future


class RedisStore:
    """Shared limiter state on Redis. Pass a ``redis.asyncio.Redis``, a
    ``redis.asyncio.cluster.RedisCluster`` or a URL, and a key ``prefix``.

    ``timeout`` bounds each round trip (seconds); after ``failure_threshold`` consecutive
    failures the store stops calling Redis for a break (growing from ``break_duration`` up to
    10x) and the limiters apply their failure policy at no cost. ``on_failure`` is the default
    policy of limiters using this store; :meth:`on_failure` gives a limiter its own.
    """

    __slots__ = (
        "_breaker",
        "_checked_version",
        "_cluster",
        "_flusher",
        "_loop",
        "_pending",
        "_state",
        "batch_size",
        "client",
        "local_share",
        "max_key_length",
        "policy",
        "prefix",
        "timeout",
    )

    def __init__(
        self,
        client: aioredis.Redis | RedisCluster | str,
        *,
        prefix: str = "aioresilience",
        timeout: float = 0.1,
        on_failure: FailurePolicy = "allow",
        local_share: float = 1.0,
        failure_threshold: int = 3,
        break_duration: float = 0.5,
        max_key_length: int = 512,
        batch_size: int = 256,
    ) -> None:
        if isinstance(client, str):
            client = aioredis.Redis.from_url(client)
        elif not isinstance(client, aioredis.Redis | RedisCluster):
            raise TypeError(
                "client must be a redis.asyncio.Redis, a redis.asyncio.cluster.RedisCluster or "
                f"a redis:// URL, got {client!r} ({type(client).__module__}."
                f"{type(client).__qualname__})"
                + (
                    "; that is the synchronous client: use redis.asyncio"
                    if type(client).__module__.startswith("redis.")
                    else ""
                )
            )
        if not isinstance(prefix, str) or not prefix or "{" in prefix or "}" in prefix:
            raise ValueError(f"prefix must be a non-empty str without braces, got {prefix!r}")
        self.client = client
        self._cluster = isinstance(client, RedisCluster)
        self.prefix = prefix
        self.timeout = finite_positive("timeout", timeout)
        self.policy, self.local_share = _policy(on_failure, local_share)
        self.max_key_length = positive_int("max_key_length", max_key_length)
        self.batch_size = positive_int("batch_size", batch_size)
        self._breaker = CircuitBreaker(
            name=f"redis store {prefix!r}",
            failure_threshold=positive_int("failure_threshold", failure_threshold),
            break_duration=exponential(
                finite_positive("break_duration", break_duration),
                cap=10 * break_duration,
                jitter="none",
            ),
            record=(RedisError, OSError, TimeoutError),
        )
        self._state = self  # views made by on_failure() share the batching state of this one
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: list[_Entry] = []
        self._flusher: asyncio.Task[None] | None = None
        self._checked_version = False

    def on_failure(self, policy: FailurePolicy, *, local_share: float = 1.0) -> RedisStore:
        """This store with another failure policy (same client, batching and breaker), for
        the limiters that need it: ``TokenBucket(..., store=store.on_failure("deny"))``."""
        view = object.__new__(RedisStore)
        for name in RedisStore.__slots__:
            setattr(view, name, getattr(self, name))
        view.policy, view.local_share = _policy(policy, local_share)
        return view

    @property
    def breaker(self) -> CircuitBreaker:
        """The breaker guarding round trips to Redis (for inspection and listeners)."""
        return self._breaker

    def _bind(self, limiter: RateLimiter[Any]) -> _RedisLimit:
        return _RedisLimit(self, limiter)

    def __repr__(self) -> str:
        return (
            f"<RedisStore prefix={self.prefix!r} on_failure={self.policy!r} "
            f"timeout={self.timeout:g}s breaker={self._breaker.state.name}>"
        )

    # -- coalescing ---------------------------------------------------------------------------

    def _submit(
        self, script: _Script, key: str, args: tuple[str, int, float, float, int], reply: bool
    ) -> asyncio.Future[_Verdict | _Outage] | None:
        state = self._state
        loop = asyncio.get_running_loop()
        if state._loop is not loop:  # a new event loop: what belonged to the old one is dead
            state._loop, state._pending, state._flusher = loop, [], None
        future = loop.create_future() if reply else None
        entry = _Entry(script, key, args, future)
        if reply:
            state._pending.append(entry)
        else:
            # A refund goes ahead of the decisions still waiting to be sent: the unit it gives
            # back was admitted before any of them was asked for.
            state._pending.insert(0, entry)
        if state._flusher is None:
            # Runs after everything already ready in this loop turn has had its chance to add
            # a decision: they all go in the same round trip.
            state._flusher = loop.create_task(state._flush())
        return future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                await self._send(batch)
        finally:
            self._flusher = None

    async def _send(self, batch: list[_Entry]) -> None:
        # One script call per script and Cluster slot (chunks of batch_size keys, sent in
        # order, so decisions on one key are made in the order they were asked for).
        script = batch[0].script
        if (
            len(batch) <= self.batch_size
            and all(e.script is script for e in batch)
            and not (self._cluster)
        ):
            groups = [[(script, batch)]]  # the common case, with nothing to sort
        else:
            groups = self._groups(batch)
        try:
            replies = await self._breaker.call(self._round_trip, groups)
        except (RedisError, OSError, TimeoutError, CircuitBreakerOpenError) as exc:
            outage = _Outage(exc, getattr(exc, "retry_after", None) or 0.0)
            for future in _unsettled(batch):
                future.set_result(outage)
            return
        except Exception as exc:  # not an outage (a server too old): every caller hears it
            for future in _unsettled(batch):
                future.set_exception(exc)
            return
        calls = (call for group in groups for call in group)
        for (_, entries), reply in zip(calls, replies, strict=True):
            self._deliver(entries, reply)

    def _groups(self, batch: list[_Entry]) -> list[list[tuple[_Script, list[_Entry]]]]:
        by_script_and_slot: dict[tuple[_Script, int], list[_Entry]] = {}
        for entry in batch:
            slot = key_slot(entry.key.encode()) if self._cluster else 0
            by_script_and_slot.setdefault((entry.script, slot), []).append(entry)
        size = self.batch_size
        return [
            [(script, entries[start : start + size]) for start in range(0, len(entries), size)]
            for (script, _), entries in by_script_and_slot.items()
        ]

    async def _round_trip(self, groups: list[list[tuple[_Script, list[_Entry]]]]) -> list[Any]:
        """The replies of every call, in order, in one round trip where the client allows."""
        async with timeout(self.timeout):
            if len(groups) == 1 and len(groups[0]) == 1:
                return [await self._evalsha(*groups[0][0])]
            if self._cluster:
                # Different slots live on different nodes: the groups go in parallel, the
                # chunks of one group one after the other.
                async def in_order(group: list[tuple[_Script, list[_Entry]]]) -> list[Any]:
                    return [await self._evalsha(*call) for call in group]

                per_group = await asyncio.gather(*(in_order(group) for group in groups))
                return [reply for replies in per_group for reply in replies]
            return await self._pipelined([call for group in groups for call in group])

    async def _pipelined(self, calls: list[tuple[_Script, list[_Entry]]]) -> list[Any]:
        pipe = self.client.pipeline(transaction=False)
        for script, entries in calls:
            pipe.evalsha(script.sha, len(entries), *_keys_and_args(entries))
        replies = await pipe.execute(raise_on_error=False)
        for index, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):  # only that call failed: load, run it again
                replies[index] = await self._evalsha(*calls[index])
            elif isinstance(reply, Exception):
                raise reply
        return list(replies)

    async def _evalsha(self, script: _Script, entries: list[_Entry]) -> list[Any]:
        args = _keys_and_args(entries)
        try:
            reply = await self.client.evalsha(script.sha, len(entries), *args)
        except NoScriptError:
            await self._load(script)
            reply = await self.client.evalsha(script.sha, len(entries), *args)
        return list(reply)

    async def _load(self, script: _Script) -> None:
        if not self._state._checked_version:
            info = await self.client.info("server")
            version = str(info.get("redis_version", "0"))
            if tuple(int(p) for p in version.split(".")[:2]) < _MIN_VERSION:
                raise StoreError(
                    f"aioresilience's Redis scripts need Redis >= 5.0 (TIME before writes in a "
                    f"script, ZADD NX, SET PX); the server is {version}"
                )
            self._state._checked_version = True
        await self.client.script_load(script.source)

    def _deliver(self, entries: list[_Entry], reply: list[Any]) -> None:
        for index, entry in enumerate(entries):
            admitted, remaining, retry_us, reset_us, server_time = reply[5 * index : 5 * index + 5]
            future = entry.future
            if admitted == -1:
                if future is not None and not future.done():
                    message = remaining.decode() if isinstance(remaining, bytes) else remaining
                    future.set_exception(StoreError(f"Redis refused {entry.key!r}: {message}"))
                continue
            if future is None:
                continue  # a refund: nobody waits for it
            if future.done():  # the caller was cancelled while this was in flight
                if admitted == 1:
                    self._refund(entry.script, entry.key, entry.args, server_time)
                continue
            future.set_result(
                _Verdict(admitted == 1, remaining, retry_us * _US, reset_us * _US, server_time)
            )

    def _refund(
        self,
        script: _Script,
        key: str,
        args: tuple[str, int, float, float, int],
        server_time: int,
    ) -> None:
        """Give back an admission nobody will use (its caller was cancelled)."""
        _, cost, p1, p2, _ = args
        self._submit(script, key, ("r", cost, p1, p2, server_time), reply=False)


def _unsettled(batch: list[_Entry]) -> Iterator[asyncio.Future[_Verdict | _Outage]]:
    """The futures of a batch whose callers still wait for an answer."""
    for entry in batch:
        if entry.future is not None and not entry.future.done():
            yield entry.future


def _keys_and_args(entries: list[_Entry]) -> list[Any]:
    """EVALSHA's KEYS then ARGV (five per key) for a chunk of entries."""
    args: list[Any] = [entry.key for entry in entries]
    for entry in entries:
        args.extend(entry.args)
    return args


def _policy(policy: object, local_share: object) -> tuple[FailurePolicy, float]:
    if policy not in _POLICIES:
        raise ValueError(f"on_failure must be one of {', '.join(_POLICIES)}; got {policy!r}")
    share = finite_positive("local_share", local_share)
    if share > 1:
        raise ValueError(f"local_share must be in (0, 1], got {local_share!r}")
    return policy, share


class _Line:
    """The waiters of one key in this process, in arrival order; the first one polls."""

    __slots__ = ("retry_at", "waiting")

    def __init__(self) -> None:
        self.waiting: deque[asyncio.Future[None]] = deque()
        self.retry_at = 0.0  # when the polling waiter asks next (loop time)


class _RedisLimit:
    """One limiter's view of the store: its script, parameters, keys and waiting lines."""

    __slots__ = ("_fallback", "_lines", "limiter", "p1", "p2", "script", "store", "tag")

    def __init__(self, store: RedisStore, limiter: RateLimiter[Any]) -> None:
        if limiter.name == type(limiter).__name__:
            raise TypeError(
                f"a {type(limiter).__name__} on a RedisStore needs name=...: the name is the "
                "limit's identity in Redis, shared by every process that uses it"
            )
        if "{" in limiter.name or "}" in limiter.name:
            raise ValueError(f"name must not contain braces on a RedisStore, got {limiter.name!r}")
        self.store = store
        self.limiter = limiter
        self.script, self.p1, self.p2 = _script_for(limiter._algorithm)
        self.tag = f"{store.prefix}:{self.script.name}:{{{limiter.name}"
        self._lines: dict[str, _Line] = {}
        self._fallback: RateLimiter[Any] | None = None
        if store.policy == "local":
            self._fallback = self._local_limiter()

    def _local_limiter(self) -> RateLimiter[Any]:
        from ..._ratelimit import RateLimiter

        return RateLimiter(
            _scaled(self.limiter._algorithm, self.store.local_share),
            name=f"{self.limiter.name} (local fallback)",
        )

    def waiting(self) -> int:
        """Callers of this process waiting for their turn or polling."""
        return sum(len(line.waiting) + 1 for line in self._lines.values())

    def __repr__(self) -> str:
        return f"redis:{self.store.prefix}:{self.store.policy}"

    def redis_key(self, key: Hashable) -> str:
        """The Redis key of ``key``'s limit."""
        if key is None:
            name = f"{self.tag}}}"
        elif isinstance(key, str) or (isinstance(key, int) and not isinstance(key, bool)):
            text = str(key)
            if not text.strip():
                raise ValueError(f"{self.limiter.name}: a key must not be empty, got {key!r}")
            name = f"{self.tag}:{text}}}"
        else:
            raise TypeError(
                f"{self.limiter.name}: keys of a limiter on Redis must be str or int, "
                f"got {key!r} ({type(key).__name__})"
            )
        if len(name.encode()) > self.store.max_key_length:
            raise ValueError(
                f"{self.limiter.name}: the Redis key for {key!r} is {len(name.encode())} bytes, "
                f"more than max_key_length={self.store.max_key_length}"
            )
        return name

    async def _ask(self, name: str, cost: int) -> _Verdict | _Outage:
        """One decision on the server (coalesced with the others of this loop turn)."""
        store = self.store
        retry_after = store._breaker.retry_after
        if retry_after:  # a dead Redis: no task, no socket, no wait
            return _Outage(_BREAKER_OPEN, retry_after)
        args = ("t", cost, self.p1, self.p2, 0)
        future = store._submit(self.script, name, args, reply=True)
        assert future is not None
        try:
            return await future
        except asyncio.CancelledError:
            # Admitted just as the caller was cancelled: give it back (if the answer was still
            # in flight, delivery sees the cancelled future and refunds instead).
            if future.done() and not future.cancelled() and future.exception() is None:
                verdict = future.result()
                if isinstance(verdict, _Verdict) and verdict.admitted:
                    store._refund(self.script, name, args, verdict.server_time)
            raise

    async def decide(self, key: Hashable, cost: int) -> Decision:
        name = self.redis_key(key)
        limit = self.limiter._algorithm.max_cost
        line = self._lines.get(name)
        if line is not None:  # waiters of this process go first
            now = asyncio.get_running_loop().time()
            return Decision(False, limit, 0, max(0.0, line.retry_at - now), 0.0)
        verdict = await self._ask(name, cost)
        if isinstance(verdict, _Outage):
            return self._decide_by_policy(key, cost, verdict)
        return Decision(
            verdict.admitted,
            limit,
            verdict.remaining,
            verdict.retry_after,
            verdict.reset_after,
        )

    def _decide_by_policy(self, key: Hashable, cost: int, outage: _Outage) -> Decision:
        policy = self._note_outage(outage)
        limit = self.limiter._algorithm.max_cost
        if policy == "allow":
            return Decision(True, limit, limit, 0.0, 0.0)
        if policy == "deny" or self._fallback is None:
            return Decision(False, limit, 0, outage.retry_after, 0.0)
        if cost > self._fallback._algorithm.max_cost:
            return Decision(False, limit, 0, outage.retry_after, 0.0)
        return self._fallback.check(cost, key=key)

    def _note_outage(self, outage: _Outage) -> FailurePolicy:
        limiter = self.limiter
        limiter._store_failures += 1
        limiter._emit(
            "store_failure",
            Severity.ERROR,
            policy=self.store.policy,
            error=repr(outage.error),
        )
        return self.store.policy

    async def admit(self, key: Hashable, cost: int, max_wait: float) -> bool:
        """Admit ``cost`` for ``key`` within ``max_wait`` seconds; ``True`` if it waited.
        Raises :class:`RateLimited` when it cannot."""
        name = self.redis_key(key)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max_wait
        line = self._lines.get(name)
        waited = False
        if line is None:
            self._lines[name] = line = _Line()
        else:
            await self._wait_turn(loop, line, key, cost, deadline)
            waited = True
        try:
            while True:
                verdict = await self._ask(name, cost)
                if isinstance(verdict, _Outage):
                    await self._admit_by_policy(loop, key, cost, deadline, verdict)
                    return waited
                if verdict.admitted:
                    return waited
                now = loop.time()
                if now + verdict.retry_after > deadline:
                    raise self._rejection(key, cost, verdict.retry_after)
                line.retry_at = now + verdict.retry_after
                waited = True
                await asyncio.sleep(verdict.retry_after)
        finally:
            self._pass_turn(name, line)

    async def _wait_turn(
        self,
        loop: asyncio.AbstractEventLoop,
        line: _Line,
        key: Hashable,
        cost: int,
        deadline: float,
    ) -> None:
        turn: asyncio.Future[None] = loop.create_future()
        line.waiting.append(turn)
        try:
            if math.isinf(deadline):
                await turn
            else:
                async with asyncio.timeout_at(deadline):
                    await turn
        except BaseException as exc:
            if turn in line.waiting:
                line.waiting.remove(turn)
            elif turn.done() and not turn.cancelled():
                # The turn was handed over just as this waiter left: hand it on.
                self._pass_turn(self.redis_key(key), line)
            if isinstance(exc, TimeoutError):
                raise self._rejection(key, cost, max(0.0, line.retry_at - loop.time())) from None
            raise

    def _pass_turn(self, name: str, line: _Line) -> None:
        waiting = line.waiting
        while waiting:
            turn = waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        if self._lines.get(name) is line:
            del self._lines[name]

    async def _admit_by_policy(
        self,
        loop: asyncio.AbstractEventLoop,
        key: Hashable,
        cost: int,
        deadline: float,
        outage: _Outage,
    ) -> None:
        policy = self._note_outage(outage)
        if policy == "allow":
            return
        fallback = self._fallback
        if policy == "deny" or fallback is None or cost > fallback._algorithm.max_cost:
            raise self._rejection(key, cost, outage.retry_after)
        try:
            await fallback._admit(key, cost, max(0.0, deadline - loop.time()))
        except RateLimited as exc:
            raise self._rejection(key, cost, exc.retry_after or 0.0) from None

    def _rejection(self, key: Hashable, cost: int, retry_after: float) -> RateLimited:
        name = self.limiter.name
        return RateLimited(
            f"{name}: rate limited (cost {cost}); retry after {retry_after:.3f}s",
            retry_after=retry_after,
            limiter=name,
            key=key,
            cost=cost,
        )

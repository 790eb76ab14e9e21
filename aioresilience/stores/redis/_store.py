"""The Redis store itself: scripts, coalescing of decisions into round trips, the breaker
around Redis. Limits (:mod:`._limits`) and breakers (:mod:`._breaker`) bind to it."""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
from collections.abc import Callable, Iterator
from importlib import resources
from typing import TYPE_CHECKING, Any, Final, Literal

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.crc import key_slot
from redis.exceptions import NoScriptError, RedisError

from ..._breaker import CircuitBreaker
from ..._errors import CircuitBreakerOpenError, StoreError
from ..._schedules import exponential
from ..._timeout import timeout
from ..._validation import finite_positive, non_negative_or_none, positive_int

if TYPE_CHECKING:
    from ..._breaker import CircuitBreaker as Breaker
    from ..._ratelimit import RateLimiter
    from ._breaker import RedisBreaker
    from ._limits import RedisLimit

__all__ = ["SCRIPTS", "FailurePolicy", "RedisStore"]

FailurePolicy = Literal["allow", "deny", "local"]
Args = tuple[str, int, float | str, float | str, float]  # five script arguments per key
_POLICIES: Final = ("allow", "deny", "local")
_MIN_VERSION: Final = (5, 0)
BREAKER_OPEN: Final = StoreError("the store's breaker is open after repeated failures")


class _Script:
    """One Lua script and how to read it: ``width`` reply values per key, and ``refund``,
    which turns a decision's arguments and reply into the operation that gives it back."""

    __slots__ = ("name", "refund", "sha", "source", "width")

    def __init__(
        self,
        name: str,
        files: tuple[str, ...],
        refund: Callable[[Args, list[Any]], Args],
        width: int = 5,
    ) -> None:
        def read(file: str) -> str:
            return resources.files(__package__).joinpath(file).read_text(encoding="utf-8")

        self.name = name
        self.source = "\n".join(read(file) for file in files)
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()
        self.refund = refund
        self.width = width


def _limiter_refund(args: Args, values: list[Any]) -> Args:
    # ("r", cost, p1, p2, the server time of the admission being given back)
    return ("r", args[1], args[2], args[3], values[-1])


def _breaker_refund(args: Args, values: list[Any]) -> Args:
    # ("r", -, the generation the probe lease was granted in, config, -)
    return ("r", 0, values[2], args[3], 0)


SCRIPTS: Final = {
    name: _Script(name, ("_common.lua", f"{name}.lua", "_driver.lua"), _limiter_refund)
    for name in ("gcra", "fixed_window", "sliding_window_log", "sliding_window_counter")
}
SCRIPTS["breaker"] = _Script("breaker", ("breaker.lua",), _breaker_refund, width=6)


class _Outage:
    """The result of a decision Redis could not make (the policy decides instead)."""

    __slots__ = ("error", "retry_after")

    def __init__(self, error: BaseException, retry_after: float) -> None:
        self.error = error
        self.retry_after = retry_after


class _Entry:
    """One decision (or refund) waiting for the next round trip."""

    __slots__ = ("args", "future", "key", "script")

    def __init__(
        self,
        script: _Script,
        key: str,
        args: Args,
        future: asyncio.Future[list[Any] | _Outage] | None,
    ) -> None:
        self.script = script
        self.key = key
        self.args = args
        self.future = future


class RedisStore:
    """Shared limiter and breaker state on Redis. Pass a ``redis.asyncio.Redis``, a
    ``redis.asyncio.cluster.RedisCluster`` or a URL, and a key ``prefix``.

    ``timeout`` bounds each round trip (seconds); after ``failure_threshold`` consecutive
    failures the store stops calling Redis for a break (growing from ``break_duration`` up to
    10x) and the limiters apply their failure policy at no cost. ``on_failure`` is the default
    policy of limiters using this store; :meth:`on_failure` gives a limiter its own (a shared
    breaker always falls back to its own in-process machine). ``breaker_staleness``: how long
    a process trusts its last view of a closed shared breaker before asking Redis again
    (every recorded outcome refreshes it).
    """

    __slots__ = (
        "_breaker",
        "_checked_version",
        "_cluster",
        "_expiry",
        "_flusher",
        "_held",
        "_loop",
        "_pending",
        "_state",
        "_version_error",
        "batch_size",
        "breaker_staleness",
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
        breaker_staleness: float = 0.05,
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
        staleness = non_negative_or_none("breaker_staleness", breaker_staleness)
        if staleness is None:
            raise ValueError(f"breaker_staleness must be finite, got {breaker_staleness!r}")
        self.breaker_staleness = staleness
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
        self._held: list[_Entry] = []  # refunds the store's breaker kept from Redis
        self._expiry: asyncio.TimerHandle | None = None  # of the batch being filled
        self._flusher: asyncio.Task[None] | None = None
        self._checked_version = False
        self._version_error: StoreError | None = None

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

    def _bind(self, limiter: RateLimiter[Any]) -> RedisLimit:
        from ._limits import RedisLimit

        return RedisLimit(self, limiter)

    def _bind_breaker(self, breaker: Breaker) -> RedisBreaker:
        from ._breaker import RedisBreaker

        return RedisBreaker(self, breaker)

    def __repr__(self) -> str:
        return (
            f"<RedisStore prefix={self.prefix!r} on_failure={self.policy!r} "
            f"timeout={self.timeout:g}s breaker={self._breaker.state.name}>"
        )

    # -- coalescing ---------------------------------------------------------------------------

    async def _request(self, script: _Script, key: str, args: Args) -> list[Any] | _Outage:
        """One operation's reply values (coalesced with the others of this loop turn), or the
        outage that kept Redis from answering within ``timeout``."""
        retry_after = self._breaker.retry_after
        if retry_after:  # a dead Redis: no task, no socket, no wait
            return _Outage(BREAKER_OPEN, retry_after)
        future = self._submit(script, key, args, reply=True).future
        assert future is not None
        try:
            # At most `timeout`: then _expire answers with an outage, while the round trip goes
            # on; if its late reply admits this request, delivery gives the admission back.
            return await future
        except asyncio.CancelledError:
            # Granted just as the caller was cancelled: give it back. (If the reply was still
            # in flight, delivery finds the future cancelled and gives it back instead.)
            if future.done() and not future.cancelled() and future.exception() is None:
                values = future.result()
                if not isinstance(values, _Outage) and values[0] == 1:
                    self._refund(script, key, args, values)
            raise

    def _expire(self, batch: list[_Entry]) -> None:
        """``timeout`` after a batch began: its callers still waiting stop waiting, with an
        outage (the policy decides for them). That is a failure for the store's breaker,
        counted once for the batch however many callers it had."""
        outage = None
        for future in _unsettled(batch):
            if outage is None:
                outage = _Outage(TimeoutError(f"no reply from Redis within {self.timeout:g}s"), 0)
            future.set_result(outage)
        if outage is not None:
            breaker = self._breaker
            # The breaker's own bookkeeping (same package): no call of ours spans this wait.
            breaker._on_failure(breaker._machine.generation, 0.0)

    def _submit(self, script: _Script, key: str, args: Args, reply: bool) -> _Entry:
        state = self._state
        loop = asyncio.get_running_loop()
        if state._loop is not loop:  # a new event loop: what belonged to the old one is dead
            state._loop, state._pending, state._flusher = loop, [], None
        pending = state._pending
        entry = _Entry(script, key, args, loop.create_future() if reply else None)
        if not pending:  # a new batch: its callers wait for it at most `timeout`
            state._expiry = loop.call_at(loop.time() + self.timeout, state._expire, pending)
        if reply:
            pending.append(entry)
        else:
            # A refund goes ahead of the decisions still waiting to be sent: the unit it gives
            # back was admitted before any of them was asked for.
            pending.insert(0, entry)
        if state._flusher is None:
            # Runs after everything already ready in this loop turn has had its chance to add
            # a decision: they all go in the same round trip. A fresh context: the flusher
            # serves every caller, and must not carry the first one's context variables.
            state._flusher = loop.create_task(state._flush(), context=contextvars.Context())
        return entry

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch, self._pending = self._pending, []
                expiry = self._expiry
                if self._held:
                    batch, self._held = self._held + batch, []
                await self._send(batch)
                if expiry is not None:
                    expiry.cancel()  # answered (or expired already)
        finally:
            self._flusher = None

    async def _send(self, batch: list[_Entry]) -> None:
        # Callers that already left (cancelled, or timed out waiting) are not asked for.
        batch = [e for e in batch if e.future is None or not e.future.done()]
        if not batch:
            return
        # One script call per script and Cluster slot (chunks of batch_size keys, sent in
        # order, so decisions on one key are made in the order they were asked for).
        groups: list[list[tuple[_Script, list[_Entry]]]]
        if self._cluster or len(batch) > self.batch_size:
            groups = self._groups(batch)
        else:
            script = batch[0].script
            for entry in batch:
                if entry.script is not script:
                    groups = self._groups(batch)
                    break
            else:
                groups = [[(script, batch)]]  # the common case, with nothing to sort
        # The store's breaker, by hand (same package): a round trip can fail in part.
        breaker = self._breaker
        try:
            generation, start = breaker._admit()
        except CircuitBreakerOpenError as exc:  # its probe is out: no second one
            outage = _Outage(exc, exc.retry_after or 0.0)
            for future in _unsettled(batch):
                future.set_result(outage)
            # Refunds are owed whatever happens: they go with the next round trip.
            self._held.extend(entry for entry in batch if entry.future is None)
            return
        try:
            replies = await self._round_trip(groups)
        except (RedisError, OSError, TimeoutError) as exc:
            breaker._on_failure(generation, start)
            outage = _Outage(exc, 0.0)
            for future in _unsettled(batch):
                future.set_result(outage)
            return
        except Exception as exc:  # not an outage (a server too old): every caller hears it
            breaker._machine.release(generation)
            for future in _unsettled(batch):
                future.set_exception(StoreError(str(exc)))
            return
        calls = [call for group in groups for call in group]
        failed = False
        for (_, entries), reply in zip(calls, replies, strict=True):
            if isinstance(reply, Exception):  # this call alone failed (a server-side error)
                failed = True
                outage = _Outage(reply, 0.0)
                for future in _unsettled(entries):
                    future.set_result(outage)
            else:
                self._deliver(entries, reply)
        if failed:
            breaker._on_failure(generation, start)
        else:
            breaker._on_plain_success(generation, start)

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
        """The replies of every call, in order, in one round trip where the client allows (a
        call that failed alone has its exception in its place).

        Callers stop waiting after ``timeout``; the round trip itself is given longer, so a
        late reply is still read and what it admitted for departed callers given back. Only
        a reply later than that is lost (and the connection with it).
        """
        async with timeout(max(1.0, 10 * self.timeout)):
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
        state = self._state
        if state._version_error is not None:
            raise state._version_error
        if not state._checked_version:
            info = await self.client.info("server")
            version = str(info.get("redis_version", "0"))
            if tuple(int(p) for p in version.split(".")[:2]) < _MIN_VERSION:
                state._version_error = StoreError(
                    f"aioresilience's Redis scripts need Redis >= 5.0 (TIME before writes in a "
                    f"script, ZADD NX, SET PX); the server is {version}"
                )
                raise state._version_error
            state._checked_version = True
        await self.client.script_load(script.source)

    def _deliver(self, entries: list[_Entry], reply: list[Any]) -> None:
        width = entries[0].script.width
        for index, entry in enumerate(entries):
            values = reply[width * index : width * (index + 1)]
            future = entry.future
            if values[0] == -1:  # the script failed for this key alone
                if future is not None and not future.done():
                    message = values[1].decode() if isinstance(values[1], bytes) else values[1]
                    future.set_exception(StoreError(f"Redis refused {entry.key!r}: {message}"))
                continue
            if future is None:
                continue  # a refund: nobody waits for it
            if future.done():  # the caller was cancelled while this was in flight
                if values[0] == 1:
                    self._refund(entry.script, entry.key, entry.args, values)
                continue
            future.set_result(values)

    def _refund(self, script: _Script, key: str, args: Args, values: list[Any]) -> None:
        """Give back what was granted to a caller that left before using it."""
        self._submit(script, key, script.refund(args, values), reply=False)


def shared_name(owner: Any, *, default: str) -> None:
    """Check the name of a limiter or breaker about to live in Redis, where it is the
    identity every process shares: given, and free of the characters keys are built with."""
    kind, name = type(owner).__name__, owner.name
    if name == default:
        raise TypeError(
            f"a {kind} on a RedisStore needs name=...: the name is its identity in Redis, "
            "shared by every process that uses it"
        )
    if any(char in name for char in "{}:"):
        raise ValueError(
            f"a {kind} name on a RedisStore must not contain {{, }} or :, got {name!r}"
        )


def _unsettled(batch: list[_Entry]) -> Iterator[asyncio.Future[list[Any] | _Outage]]:
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

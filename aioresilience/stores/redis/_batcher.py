"""Coalescing: the operations one event loop asks for in the same turn travel to Redis in one
round trip, one script call per script (and Cluster slot) carrying every key.

Before its first round trip (and again after a round trip broke the connection, or on a new
event loop) the store *connects*: it opens a connection, checks the server's version and loads
every script, bounded by ``connect_timeout``. That is no decision's round trip, and one attempt
serves every caller that needs it. While the store's breaker is closed (a fresh store, or a
connection lost once) callers wait for it rather than for ``timeout``, so a fresh process does
not apply its failure policy merely because connecting takes longer than a decision. A
connection that fails (refused, or not ready within ``connect_timeout``) opens the store's
breaker at once, so an unreachable server costs that wait once, not once per caller. While
the breaker is half-open after an outage, reconnecting is its probe and callers keep their
``timeout``: those it does not serve in time get their policy, as during the outage, but the
probe is judged by the connection's outcome, not by theirs.

Two kinds of operation:

- *requests* (decisions, probe admissions): a caller awaits the reply. It waits at most the
  store's ``timeout``, counted from the start of its batch (or from the moment the store is
  connected, for a batch that waited for the connection): then it gets an outage and leaves
  (its policy decides), while the round trip goes on. A caller that left — cancelled or timed
  out — is not sent if its batch has not gone yet; if it had, and the late reply admitted it,
  the admission is given back.
- *owed* operations (refunds, a shared breaker's outcomes, lease releases and manual actions):
  nobody waits; they are never dropped for lateness, and while the store's breaker is open,
  or Redis refuses connections, they are held and sent with the next round trip.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Final, Protocol

from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, RedisError

from ..._core.breaker import CircuitState
from ..._support.errors import CircuitBreakerOpenError, StoreError
from ..._support.guard import NO_RESULT
from ..._timeout import timeout
from ...abc import GuardStrategy
from ._protocol import Args, FailurePolicy, _Script

if TYPE_CHECKING:
    import redis.asyncio as aioredis
    from redis.asyncio.cluster import RedisCluster

    from ..._breaker import CircuitBreaker

__all__ = ["BREAKER_OPEN", "Batcher", "Outage", "StoreView"]

_logger = logging.getLogger("aioresilience.stores.redis")
BREAKER_OPEN: Final = StoreError("the store's breaker is open after repeated failures")
_MIN_VERSION: Final = (5, 0)
_RESEND_AT_MOST: Final = 5.0  # seconds between attempts to send held operations
# How a round trip that got replies but failed in part, or came too late, ends for the store's
# breaker (one of the exceptions it records).
_FAILED_ROUND_TRIP: Final = TimeoutError("a Redis round trip failed in part or came too late")

Reply = list[Any]
Calls = list[tuple["_Script", list["_Entry"]]]


class StoreView(Protocol):
    """What the batcher and the views bound to a store (``_limits``, ``_breaker``) read of
    their :class:`~aioresilience.stores.redis.RedisStore`: a protocol, so that they need not
    import the store's module, which imports them. The private members are the store's own
    (same package); reading them directly keeps the hot path free of property calls."""

    client: aioredis.Redis | RedisCluster
    prefix: str
    timeout: float
    connect_timeout: float
    policy: FailurePolicy
    local_share: float
    max_key_length: int
    batch_size: int
    breaker_staleness: float
    _cluster: bool
    _breaker: CircuitBreaker
    _batcher: Batcher


class Outage:
    """The answer to a request Redis could not make (the caller's policy decides instead)."""

    __slots__ = ("error", "retry_after")

    def __init__(self, error: BaseException, retry_after: float) -> None:
        self.error = error
        self.retry_after = retry_after


class _Entry:
    __slots__ = ("args", "future", "key", "owed", "script")

    def __init__(
        self,
        script: _Script,
        key: str,
        args: Args,
        future: asyncio.Future[Reply | Outage] | None,
        owed: bool,
    ) -> None:
        self.script = script
        self.key = key
        self.args = args
        self.future = future
        self.owed = owed

    @property
    def wanted(self) -> bool:
        """Still to be sent: owed, or a request whose caller still waits."""
        return self.owed or not self.future.done()  # type: ignore[union-attr]


class _Batch:
    """The operations of one round trip (owed ones first, each kind in arrival order), and
    the timer that bounds its callers' wait."""

    __slots__ = ("counted", "entries", "expired", "expiry", "graced", "owed", "sent", "ticket")

    def __init__(self, owed: list[_Entry] | None = None) -> None:
        self.entries: list[_Entry] = owed or []
        self.owed = len(self.entries)  # how many of the entries are owed (they come first)
        self.expiry: asyncio.TimerHandle | None = None
        self.expired = False  # its callers were told Redis was too slow
        self.counted = False  # ... and that was a failure for the store's breaker
        self.graced = False  # its expiry fired late once (a busy loop) and was put off
        self.sent = False  # its round trip began
        self.ticket: Any = None  # ... admitted by the store's breaker with this ticket


def _surely_unsent(error: BaseException) -> bool:
    """Whether an operation that failed with ``error`` surely never reached Redis (so sending
    it again cannot apply it twice): the store's breaker kept it back, or no connection could
    be made. A connection lost after writing, or a round trip without a reply, may have
    applied it."""
    if isinstance(error, CircuitBreakerOpenError | ConnectionRefusedError):
        return True
    return isinstance(error, RedisConnectionError) and "connecting to" in str(error).lower()


class Batcher:
    """The coalescing state of one store (shared by its ``on_failure`` views)."""

    __slots__ = (
        "_breaker_enter",
        "_breaker_exit",
        "_checked_version",
        "_connected",
        "_connecting",
        "_flusher",
        "_held",
        "_kick",
        "_kick_at",
        "_loop",
        "_pending",
        "_scripts",
        "_stale",
        "_version_error",
        "store",
    )

    def __init__(self, store: StoreView, scripts: Iterable[_Script]) -> None:
        self.store = store
        self._scripts = tuple(scripts)  # loaded on connecting
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending = _Batch()
        self._held: list[_Entry] = []  # owed operations Redis could not take yet
        self._kick: asyncio.TimerHandle | None = None
        self._kick_at = 0.0
        self._flusher: asyncio.Task[None] | None = None
        self._checked_version = False
        self._version_error: StoreError | None = None
        # Connected, version checked and scripts loaded (on this loop): round trips may go.
        self._connected = False
        self._connecting: asyncio.Task[None] | None = None  # the one attempt under way
        self._stale = False  # the client's connections were made on an earlier event loop
        # The store's breaker guards each round trip and each connection by hand, not with
        # `async with`: a round trip can fail in part, or be judged by its expiry timer
        # before it ends. So the batcher holds the breaker's guard core, ``enter() ->
        # ticket`` and ``exit(ticket, exc, result)``, got through the public running seam
        # (the same two bound methods a pipeline's fold calls: no cost over calling them).
        enter, exit_ = GuardStrategy("store", store._breaker).core()
        assert exit_ is not None  # a GuardStrategy's core always has an exit
        self._breaker_enter, self._breaker_exit = enter, exit_

    # -- asking -----------------------------------------------------------------------------------

    async def request(self, script: _Script, key: str, args: Args) -> Reply | Outage:
        """The reply values of one operation, or the outage that kept Redis from answering."""
        retry_after = self.store._breaker.retry_after
        if retry_after:  # a dead Redis: no task, no socket, no wait
            return Outage(BREAKER_OPEN, retry_after)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply | Outage] = loop.create_future()
        self._add(loop, _Entry(script, key, args, future, owed=False))
        try:
            return await future
        except asyncio.CancelledError:
            # Granted just as the caller was cancelled: give it back. (If the reply was still
            # in flight, delivery finds the future cancelled and gives it back instead.)
            if future.done() and not future.cancelled() and future.exception() is None:
                values = future.result()
                if not isinstance(values, Outage) and values[0] == 1:
                    self.refund(script, key, args, values)
            raise

    def send(
        self,
        script: _Script,
        key: str,
        args: Args,
        on_reply: Callable[[asyncio.Future[Reply | Outage]], None] | None = None,
    ) -> None:
        """An owed operation: sent whatever happens, its reply (if wanted) to ``on_reply``."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply | Outage] | None = None
        if on_reply is not None:
            future = loop.create_future()
            future.add_done_callback(on_reply)
        self._add(loop, _Entry(script, key, args, future, owed=True))

    def refund(self, script: _Script, key: str, args: Args, values: Reply) -> None:
        """Give back what was granted to a caller that left before using it."""
        self.send(script, key, script.refund(args, values))

    def _add(self, loop: asyncio.AbstractEventLoop, entry: _Entry) -> None:
        if self._loop is not loop:
            self._move_to(loop)
        batch = self._pending
        if entry.owed:
            # Ahead of the requests still waiting to be sent (a refund gives back a unit
            # admitted before any of them was asked for), behind the owed ones before it.
            batch.entries.insert(batch.owed, entry)
            batch.owed += 1
        else:
            batch.entries.append(entry)
            if self._connected or self.store._breaker.state is CircuitState.HALF_OPEN:
                self._arm(loop, batch)
            # else the timeout starts once the store is connected (see the module's notes)
        if self._flusher is None:
            # Runs after everything already ready in this loop turn has had its chance to add
            # an operation: they all go in the same round trip. A fresh context: the flusher
            # serves every caller and must not carry the first one's context variables.
            self._flusher = loop.create_task(self._flush(), context=contextvars.Context())

    def _arm(self, loop: asyncio.AbstractEventLoop, batch: _Batch) -> None:
        """Start the ``timeout`` of a batch's callers (once; a batch of owed operations only
        has none)."""
        if batch.expiry is None and not batch.expired and any(_waiting(batch.entries)):
            batch.expiry = loop.call_at(loop.time() + self.store.timeout, self._expire, batch)

    def _move_to(self, loop: asyncio.AbstractEventLoop) -> None:
        """A new event loop. The old one's callers are gone, but what is owed to Redis is
        still owed: it moves over (without replies, whose callbacks belonged to the old
        loop)."""
        owed = [e for e in (*self._held, *self._pending.entries) if e.owed]
        for entry in owed:
            entry.future = None
        self._loop, self._pending, self._held, self._flusher = loop, _Batch(owed), [], None
        self._kick = None  # its timer belonged to the old loop
        # Connections belong to a loop too: the new one connects (and loads) afresh, on
        # connections of its own (the client's pool still holds the old loop's).
        self._stale = self._stale or self._connecting is not None  # it tried, so it has some
        self._connected, self._connecting = False, None

    def _expire(self, batch: _Batch) -> None:
        """``timeout`` after a batch began: its callers still waiting leave with an outage.
        That is a failure for the store's breaker, counted once for the batch; but a batch
        still queued behind a half-open probe does not condemn the probe's round trip."""
        loop = self._loop
        expiry = batch.expiry
        if expiry is not None and not batch.graced and loop is not None:
            late = loop.time() - expiry.when()
            if late > 0.002:
                # The loop was busy past the deadline (application code blocked it): a reply
                # may be waiting to be read behind this timer. Redis is not to blame for the
                # time the loop was not running: give the batch that long again, once (at most
                # its timeout), so pending replies are read before its callers are failed.
                batch.graced = True
                batch.expiry = loop.call_at(
                    loop.time() + min(late, self.store.timeout), self._expire, batch
                )
                return
        batch.expired = True
        outage = Outage(TimeoutError(f"no reply from Redis within {self.store.timeout:g}s"), 0)
        waited = False
        for future in _waiting(batch.entries):
            future.set_result(outage)
            waited = True
        breaker = self.store._breaker
        connecting = self._connecting is not None and not self._connecting.done()
        # (A batch waiting for the store to connect is not judged: the connection's own
        # outcome, bounded by connect_timeout, is.)
        if waited and not connecting and (batch.sent or breaker.state is CircuitState.CLOSED):
            # Counted once for the batch, through the breaker's core: against the round
            # trip's own admission if it began, else as a call of the closed breaker.
            batch.counted = True
            ticket = batch.ticket if batch.sent else self._breaker_enter()
            self._breaker_exit(ticket, outage.error, NO_RESULT)
        if batch is self._pending:  # not sent yet: later callers start a batch of their own
            self._pending = _Batch(batch.entries[: batch.owed])

    def _hold(self, entries: list[_Entry], retry_after: float) -> None:
        """Keep owed operations, in order, for the next round trip, and make sure one comes:
        when the store's breaker lets a probe through, or after a few seconds at most."""
        self._held.extend(entry for entry in entries if entry.owed)
        loop = self._loop
        if not self._held or loop is None:
            return
        at = loop.time() + min(max(retry_after, 0.001), _RESEND_AT_MOST)
        if self._kick is None or at < self._kick_at:
            if self._kick is not None:
                self._kick.cancel()
            self._kick, self._kick_at = loop.call_at(at, self._resend), at

    def _resend(self) -> None:
        self._kick = None
        loop = self._loop
        if self._held and loop is not None and not loop.is_closed():
            held, self._held = self._held, []
            for entry in held:
                self._add(loop, entry)

    # -- sending ----------------------------------------------------------------------------------

    async def _flush(self) -> None:
        batch = None
        try:
            while self._pending.entries:
                batch, self._pending = self._pending, _Batch()
                if self._held:
                    batch.entries[:0], self._held = self._held, []  # older: first
                await self._send(batch)
                if batch.expiry is not None:
                    batch.expiry.cancel()
                batch = None
        finally:
            self._flusher = None
            lost = [e for e in (*(batch.entries if batch else ()), *self._pending.entries)]
            if batch is not None and any(e.owed for e in lost):  # cancelled (loop shutdown)
                _logger.warning(
                    "%d owed Redis operation(s) (refunds, breaker outcomes) not sent: the "
                    "store's flusher was cancelled",
                    sum(e.owed for e in lost),
                )

    async def _send(self, batch: _Batch) -> None:
        entries = [entry for entry in batch.entries if entry.wanted]
        if not entries:
            return
        store = self.store
        # The store's breaker guards the round trip through its core, by hand (see __init__).
        breaker = store._breaker
        loop = asyncio.get_running_loop()
        if not self._connected:
            try:
                await asyncio.shield(self._connection(loop))
            except CircuitBreakerOpenError as exc:  # a break, or another probe is out
                self._fail(entries, exc, exc.retry_after or 0.0, unsent=True)
                return
            except (RedisError, OSError, TimeoutError) as exc:
                self._fail(entries, exc, breaker.retry_after, unsent=True)
                return
            except Exception as exc:  # not an outage (a server too old): every caller hears it
                for future in _waiting(entries):
                    future.set_exception(StoreError(str(exc)))
                return
            # Connected: the callers' timeout starts now, for this batch and the next.
            self._arm(loop, batch)
            self._arm(loop, self._pending)
            entries = [entry for entry in entries if entry.wanted]
            if not entries:
                return
        calls = self._calls(entries)
        try:
            ticket = self._breaker_enter()
        except CircuitBreakerOpenError as exc:  # its probe is out: no second one
            self._fail(entries, exc, exc.retry_after or 0.0)
            return
        began = loop.time()
        batch.sent, batch.ticket = True, ticket
        try:
            replies = await self._round_trip(calls)
        except (RedisError, OSError, TimeoutError) as exc:
            self._connected = False  # the next round trip connects (and loads) first
            if not batch.counted:
                self._breaker_exit(ticket, exc, NO_RESULT)
            if isinstance(exc, TimeoutError) and not isinstance(exc, RedisError):
                _logger.warning(
                    "a Redis round trip got no reply within %.3gs and was abandoned; what it "
                    "may have admitted for callers who had left cannot be given back",
                    loop.time() - began,
                )
            self._fail(entries, exc, 0.0)
            return
        except Exception as exc:  # not an outage (a server too old): every caller hears it
            if not batch.counted:
                self._breaker_exit(ticket, exc, NO_RESULT)  # not recorded: released
            for future in _waiting(entries):
                future.set_exception(StoreError(str(exc)))
            return
        failed = False
        for (_, call_entries), reply in zip(calls, replies, strict=True):
            if isinstance(reply, StoreError):  # not an outage (a server too old)
                for future in _waiting(call_entries):
                    future.set_exception(StoreError(str(reply)))
            elif isinstance(reply, Exception):  # this call alone failed
                failed = True
                self._fail(call_entries, reply, 0.0)
            else:
                self._deliver(call_entries, reply)
        late = loop.time() - began > store.timeout  # owed-only batches have no expiry timer
        if batch.counted:
            pass  # counted already, when its callers were told
        elif failed or late:
            self._breaker_exit(ticket, _FAILED_ROUND_TRIP, NO_RESULT)
        else:
            self._breaker_exit(ticket, None, NO_RESULT)

    def _fail(
        self,
        entries: list[_Entry],
        error: BaseException,
        retry_after: float,
        *,
        unsent: bool = False,
    ) -> None:
        """Redis did not answer these: outages for the callers; owed operations are held if
        they surely never arrived (``unsent``: they were not sent at all), and reported if
        that is unknown."""
        outage = Outage(error, retry_after)
        for future in _waiting(entries):
            future.set_result(outage)
        owed = [entry for entry in entries if entry.owed]
        if not owed:
            return
        if unsent or _surely_unsent(error):
            self._hold(owed, retry_after)
            return
        # Sent, but no reply: it may have been applied. Sending it again could apply it twice.
        _logger.warning(
            "%d owed Redis operation(s) (refunds, breaker outcomes) unconfirmed after %r; "
            "not sent again, since they may have been applied",
            len(owed),
            error,
        )
        for entry in owed:
            if entry.future is not None and not entry.future.done():
                entry.future.set_result(outage)

    # -- connecting -------------------------------------------------------------------------------

    async def connect(self) -> None:
        """Connect now (see :meth:`RedisStore.connect`)."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            self._move_to(loop)
        if not self._connected:
            await asyncio.shield(self._connection(loop))

    async def drain(self) -> None:
        """Wait (bounded) for the round trips under way on this loop: owed operations added
        just before a shutdown are sent and their replies read before the connections
        close."""
        flusher = self._flusher
        if flusher is None or self._loop is not asyncio.get_running_loop():
            return
        await asyncio.wait(
            {flusher}, timeout=self.store.connect_timeout + max(1.0, 10 * self.store.timeout)
        )

    def _connection(self, loop: asyncio.AbstractEventLoop) -> asyncio.Task[None]:
        """The attempt to connect under way, or a new one: one at a time, whoever needs it
        (shielded by those who wait: a caller that leaves does not end it for the others)."""
        task = self._connecting
        if task is None or task.done():
            # A fresh context, like the flusher's: it serves every caller.
            task = loop.create_task(self._connect(), context=contextvars.Context())
            task.add_done_callback(_retrieved)
            self._connecting = task
        return task

    async def _connect(self) -> None:
        """Connect, check the server's version and load every script, within
        ``connect_timeout``; a call of the store's breaker (its probe, when half-open). If
        it fails, Redis is unreachable: the breaker opens at once."""
        store = self.store
        ticket = self._breaker_enter()  # raises while the breaker is open
        try:
            async with timeout(store.connect_timeout):
                await self._load_scripts()
        except TimeoutError as exc:
            self._unreachable(ticket, exc)
            raise TimeoutError(
                f"could not connect to Redis and load the scripts within "
                f"connect_timeout={store.connect_timeout:g}s"
            ) from exc
        except (RedisError, OSError) as exc:
            self._unreachable(ticket, exc)
            raise
        except BaseException as exc:  # not an outage (a server too old), or cancelled
            self._breaker_exit(ticket, exc, NO_RESULT)  # not recorded: released
            raise
        self._connected = True
        self._breaker_exit(ticket, None, NO_RESULT)

    def _unreachable(self, ticket: Any, error: BaseException) -> None:
        breaker = self.store._breaker
        self._breaker_exit(ticket, error, NO_RESULT)
        if breaker.state is CircuitState.CLOSED:
            breaker.trip()  # no connection at all: not worth another wait per caller

    async def _load_scripts(self) -> None:
        """INFO (the server's version), then every SCRIPT LOAD in one round trip."""
        if self._version_error is not None:
            raise self._version_error
        client = self.store.client
        if self._stale:
            self._stale = False
            await self._drop_connections()
        self._check_version(await client.info("server"))
        if self.store._cluster:  # SCRIPT LOAD goes to every primary
            for script in self._scripts:
                await client.script_load(script.source)
            return
        pipe = client.pipeline(transaction=False)
        for script in self._scripts:
            pipe.script_load(script.source)
        await pipe.execute()

    async def _drop_connections(self) -> None:
        """Forget the client's connections made on an earlier event loop: used on this one
        they fail ("Event loop is closed"). Each reconnects on its next use."""
        client: Any = self.store.client
        if self.store._cluster:  # every node's connections, and those it was started from
            pools = [*client.get_nodes(), *client.nodes_manager.startup_nodes.values()]
        else:
            pools = [client.connection_pool]
        for pool in pools:
            # Closing a transport of a closed loop raises, but the connection is reset first.
            with contextlib.suppress(Exception):
                await pool.disconnect()

    def _check_version(self, info: dict[str, Any]) -> None:
        version = str(info.get("redis_version", "0"))
        if tuple(int(p) for p in version.split(".")[:2]) < _MIN_VERSION:
            self._version_error = StoreError(
                f"aioresilience's Redis scripts need Redis >= 5.0 (TIME before writes in a "
                f"script, ZADD NX, SET PX); the server is {version}"
            )
            raise self._version_error
        self._checked_version = True

    def _calls(self, entries: list[_Entry]) -> Calls:
        """One script call per script and Cluster slot, in chunks of ``batch_size`` keys, in
        order (decisions on one key are made in the order they were asked for)."""
        store = self.store
        size = store.batch_size
        if not store._cluster and len(entries) <= size:
            script = entries[0].script
            for entry in entries:
                if entry.script is not script:
                    break
            else:
                return [(script, entries)]  # the common case, with nothing to sort
        groups: dict[tuple[_Script, int], list[_Entry]] = {}
        for entry in entries:
            slot = key_slot(entry.key.encode()) if store._cluster else 0
            groups.setdefault((entry.script, slot), []).append(entry)
        return [
            (script, group[start : start + size])
            for (script, _), group in groups.items()
            for start in range(0, len(group), size)
        ]

    async def _round_trip(self, calls: Calls) -> list[Reply | Exception]:
        """The replies of every call, in order; a call that failed alone has its exception in
        its place. Callers stop waiting after ``timeout``; the round trip is given longer, so
        a late reply is still read and what it admitted for departed callers given back."""
        async with timeout(max(1.0, 10 * self.store.timeout)):
            if len(calls) == 1:
                return [await self._evalsha(*calls[0])]
            if self.store._cluster:
                return await self._per_slot(calls)
            return await self._pipelined(calls)

    async def _per_slot(self, calls: Calls) -> list[Reply | Exception]:
        # Different slots live on different nodes: slots in parallel, the chunks of one slot
        # one after the other.
        by_slot: dict[tuple[_Script, int], list[int]] = {}
        for index, (script, entries) in enumerate(calls):
            by_slot.setdefault((script, key_slot(entries[0].key.encode())), []).append(index)
        replies: list[Reply | Exception] = [StoreError("not sent")] * len(calls)

        async def in_order(indices: list[int]) -> None:
            for index in indices:
                try:
                    replies[index] = await self._evalsha(*calls[index])
                except Exception as exc:  # every slot's replies are delivered
                    replies[index] = exc

        await asyncio.gather(*(in_order(indices) for indices in by_slot.values()))
        return replies

    async def _pipelined(self, calls: Calls) -> list[Reply | Exception]:
        pipe = self.store.client.pipeline(transaction=False)
        for script, entries in calls:
            pipe.evalsha(script.sha, len(entries), *_keys_and_args(entries))
        replies = list(await pipe.execute(raise_on_error=False))
        for index, reply in enumerate(replies):
            if isinstance(reply, NoScriptError):  # only that call failed: load, run it again
                try:
                    replies[index] = await self._evalsha(*calls[index])
                except Exception as exc:  # the other calls' replies stand
                    replies[index] = exc
        return replies

    async def _evalsha(self, script: _Script, entries: list[_Entry]) -> Reply:
        client = self.store.client
        args = _keys_and_args(entries)
        try:
            reply = await client.evalsha(script.sha, len(entries), *args)
        except NoScriptError:
            await self._load(script)
            reply = await client.evalsha(script.sha, len(entries), *args)
        return list(reply)

    async def _load(self, script: _Script) -> None:
        """Load a script Redis lost since the store connected (SCRIPT FLUSH, a failover)."""
        if self._version_error is not None:
            raise self._version_error
        client = self.store.client
        if not self._checked_version:
            self._check_version(await client.info("server"))
        await client.script_load(script.source)

    def _deliver(self, entries: list[_Entry], reply: Reply) -> None:
        width = entries[0].script.width
        for index, entry in enumerate(entries):
            values = reply[width * index : width * (index + 1)]
            future = entry.future
            if values[0] == -1:  # the script failed for this key alone
                message = values[1].decode() if isinstance(values[1], bytes) else values[1]
                error = StoreError(f"Redis refused {entry.key!r}: {message}")
                if future is not None and not future.done():
                    future.set_exception(error)
                elif entry.owed:
                    _logger.warning("an owed Redis operation failed: %s", error)
                continue
            if future is None:
                continue  # a refund: nobody waits for it
            if future.done():  # the caller left while this was in flight
                if values[0] == 1 and not entry.owed:
                    self.refund(entry.script, entry.key, entry.args, values)
                continue
            future.set_result(values)


def _retrieved(task: asyncio.Task[None]) -> None:
    """Retrieve a connection attempt's error, so asyncio does not report it as lost when no
    one waits for it any more (its waiters hear it themselves)."""
    if not task.cancelled():
        task.exception()


def _waiting(entries: list[_Entry]) -> Iterator[asyncio.Future[Reply | Outage]]:
    """The futures of requests whose callers still wait for an answer."""
    for entry in entries:
        if not entry.owed and entry.future is not None and not entry.future.done():
            yield entry.future


def _keys_and_args(entries: list[_Entry]) -> list[Any]:
    """EVALSHA's KEYS then ARGV (five per key) for a chunk of entries."""
    args: list[Any] = [entry.key for entry in entries]
    for entry in entries:
        args.extend(entry.args)
    return args

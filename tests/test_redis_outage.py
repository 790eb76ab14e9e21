"""Redis going away and coming back: the failure policy applies within the per-call timeout,
a dead server costs nothing per call once the store's breaker is open, nothing raises but the
policy's own refusals, and decisions resume on Redis without a restart. And connecting: a
fresh store (or one reconnecting after an outage) is not failed by the per-decision timeout,
while a server that cannot be reached still gets the policy within ``connect_timeout``.

Each test owns a redis-server it kills, pauses and starts again on the same port.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from helpers import slow_redis

from aioresilience import GCRA, CircuitState, RateLimited, ResilienceEvent, StoreError
from aioresilience.stores.redis import FailurePolicy, RedisStore
from aioresilience.testing import ManualClock, RedisServer

pytestmark = [pytest.mark.real_time, pytest.mark.starts_first]

TIMEOUT = 0.05


@pytest.fixture
def server(redis_server: RedisServer) -> Iterator[RedisServer]:
    # Depends on the session server only for its skip/fail when redis-server is missing.
    with RedisServer() as own:
        yield own


@pytest.fixture
async def loop_errors() -> AsyncIterator[list[dict[str, Any]]]:
    """Whatever reaches the loop's exception handler (a task that died unheard, say)."""
    errors: list[dict[str, Any]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: errors.append(context))
    yield errors
    loop.set_exception_handler(None)


def _limiter(server: RedisServer, policy: FailurePolicy) -> tuple[RedisStore, GCRA]:
    store = RedisStore(
        server.url,
        prefix=f"outage-{uuid.uuid4().hex[:8]}",
        timeout=TIMEOUT,
        failure_threshold=2,
        break_duration=0.05,
        on_failure=policy,
        local_share=0.5,
    )
    return store, GCRA(1, 60, burst=10, name="outage", store=store)


async def _until_redis_answers(limiter: GCRA, seconds: float = 3.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    failures = limiter.statistics().store_failures
    while loop.time() < deadline:
        await limiter.decide(key="probe")
        if limiter.statistics().store_failures == failures:
            return
        failures = limiter.statistics().store_failures
        await asyncio.sleep(0.01)
    raise AssertionError("decisions did not resume on Redis")


@pytest.mark.parametrize(
    ("policy", "admitted"),
    [("allow", 20), ("deny", 0), ("local", 5)],  # local: half of the burst of 10
)
async def test_a_dead_server_gets_the_policy_and_recovery_needs_no_restart(
    server: RedisServer, policy: FailurePolicy, admitted: int, loop_errors: list[Any]
) -> None:
    store, limiter = _limiter(server, policy)
    events: list[ResilienceEvent] = []
    limiter.add_listener(events.append)
    assert (await limiter.decide(key="k")).remaining == 9

    server.kill()
    loop = asyncio.get_running_loop()
    decisions = []
    for _ in range(20):
        start = loop.time()
        decisions.append(await limiter.decide(key="k"))
        assert loop.time() - start < TIMEOUT + 0.05  # never longer than the per-call timeout
    assert sum(d.allowed for d in decisions) == admitted
    assert limiter.statistics().store_failures == 20
    failures = [e for e in events if e.name == "store_failure"]
    assert len(failures) == 20 and failures[0].details["policy"] == policy
    # After two failures the breaker is open: the other calls never touched the network.
    assert store.breaker.statistics().failures == 2

    server.start()
    await _until_redis_answers(limiter)
    decision = await limiter.decide(key="fresh")
    assert decision.allowed and decision.remaining == 9  # decided by Redis again
    assert loop_errors == []
    await store.aclose()


async def test_a_hung_server_costs_at_most_the_timeout_per_call(
    server: RedisServer, loop_errors: list[Any]
) -> None:
    store, limiter = _limiter(server, "deny")
    await limiter.decide(key="k")
    server.pause()  # accepts nothing, answers nothing, closes nothing
    loop = asyncio.get_running_loop()
    try:
        start = loop.time()
        first = await limiter.decide(key="k")
        took = loop.time() - start
        assert not first.allowed and TIMEOUT * 0.9 <= took < TIMEOUT + 0.05
        await limiter.decide(key="k")  # the second failure opens the breaker
        start = loop.time()
        for _ in range(100):
            assert not (await limiter.decide(key="k")).allowed
        assert loop.time() - start < TIMEOUT  # a hundred calls, no waiting at all
        with pytest.raises(RateLimited):
            await limiter.acquire(key="k", timeout=1.0)
    finally:
        server.resume()
    await _until_redis_answers(limiter)
    assert loop_errors == []
    await store.aclose()


async def test_what_a_late_reply_admitted_is_given_back(
    server: RedisServer, loop_errors: list[Any]
) -> None:
    """Callers stop waiting after the timeout, but the round trip goes on: when the hung server
    answers, the admissions nobody used are returned."""
    store, limiter = _limiter(server, "deny")
    assert (await limiter.decide(key="k")).remaining == 9
    server.pause()
    try:
        for _ in range(4):
            assert not (await limiter.decide(key="k")).allowed  # denied by the policy
    finally:
        server.resume()
    await _until_redis_answers(limiter)
    await asyncio.sleep(0.05)  # the refunds go with the next round trips
    await limiter.decide(key="other")
    assert (await limiter.decide(key="k")).remaining == 8  # only the first and this one count
    assert loop_errors == []
    await store.aclose()


async def test_callers_arriving_during_a_hung_round_trip_wait_at_most_the_timeout(
    server: RedisServer, loop_errors: list[Any]
) -> None:
    store = RedisStore(server.url, prefix="hung", timeout=TIMEOUT, failure_threshold=100)
    limiter = GCRA(1, 60, burst=10, name="hung", store=store.on_failure("deny"))
    await limiter.decide()
    loop = asyncio.get_running_loop()
    waits: list[float] = []

    async def caller() -> None:
        start = loop.time()
        assert not (await limiter.decide()).allowed
        waits.append(loop.time() - start)

    server.pause()
    try:
        callers = []
        for _ in range(15):  # one every 20 ms, while the first round trip hangs
            callers.append(asyncio.create_task(caller()))
            await asyncio.sleep(0.02)
        await asyncio.gather(*callers)
    finally:
        server.resume()
    assert max(waits) < TIMEOUT + 0.05
    assert loop_errors == []
    await store.aclose()


async def test_a_redis_slower_than_the_timeout_opens_the_store_breaker(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    slow_redis(monkeypatch, 2 * TIMEOUT)  # every reply arrives, too late
    store = RedisStore(redis_server.url, prefix="slow", timeout=TIMEOUT, failure_threshold=3)
    limiter = GCRA(1, 60, burst=10, name="slow", store=store.on_failure("deny"))
    for _ in range(3):
        assert not (await limiter.decide()).allowed
    assert store.breaker.statistics().state.value == "open"
    monkeypatch.undo()
    await store.aclose()


@pytest.mark.parametrize("policy", ["allow", "deny"])
async def test_a_loop_blocked_past_the_timeout_is_not_blamed_on_redis(
    server: RedisServer, policy: FailurePolicy
) -> None:
    # The application blocks the loop while decisions are in flight: the batch's expiry
    # timer ran before the reply that had come back was read, so every caller got the
    # failure policy (no limit at all under "allow") and the store's breaker opened.
    store, limiter = _limiter(server, policy)
    assert (await limiter.decide(key="k")).allowed
    for _ in range(2):
        pending = [asyncio.ensure_future(limiter.decide(key="k")) for _ in range(2)]
        await asyncio.sleep(0)
        time.sleep(TIMEOUT * 3)  # noqa: ASYNC251  # the point: the application blocks the loop
        decisions = await asyncio.gather(*pending)
        assert all(d.at is not None for d in decisions if d.allowed)  # Redis decided them
    assert limiter.statistics().store_failures == 0
    assert store.breaker.state is CircuitState.CLOSED
    await store.aclose()


async def test_the_local_fallback_waits_in_process(server: RedisServer) -> None:
    store, limiter = _limiter(server, "local")
    server.kill()
    loop = asyncio.get_running_loop()
    for _ in range(5):  # the local share of the burst
        await limiter.acquire(key="k", timeout=0)
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire(key="k", timeout=1.0)  # the local refill is 1 per 120 s
    assert caught.value.retry_after > 100
    start = loop.time()
    fast = GCRA(100, 1, burst=1, name="fast", store=store)  # local: 50/s
    await asyncio.gather(*(fast.acquire(key="k") for _ in range(3)))
    assert loop.time() - start >= 0.035  # two local intervals of 20 ms
    await store.aclose()


async def test_a_local_fallback_decision_is_the_limiters_own_and_refunds_as_nothing(
    server: RedisServer,
) -> None:
    """The local policy's decisions carry the limiter's policy: refunding one (the HTTP core
    does, for a request a later limit refused) gave back nothing but raised ValueError
    ("another limiter's": its policy was the fallback's), so a refused request was a 500."""
    store, limiter = _limiter(server, "local")
    server.kill()
    decision = await limiter.decide(key="k")
    assert decision.allowed and decision.at is None
    assert decision.policy == limiter.policy
    assert limiter.refund(decision, key="k").at is None  # nothing on Redis to give back
    await store.aclose()


async def test_the_local_fallback_waits_on_the_limiters_clock(server: RedisServer) -> None:
    """The fallback limiter the local policy builds runs on the limiter's own clock."""
    store, _ = _limiter(server, "local")
    server.kill()
    clock = ManualClock()
    limiter = GCRA(100, 1, burst=1, name="clocked", store=store, clock=clock)  # local: 50/s
    await limiter.acquire(key="k", timeout=0)
    waiter = asyncio.create_task(limiter.acquire(key="k", timeout=1.0))
    await asyncio.sleep(0.1)  # five local intervals of the loop's clock
    assert not waiter.done()
    clock.advance(0.02)  # one of the limiter's
    await asyncio.wait_for(waiter, 5)
    assert limiter.statistics().store_failures >= 2
    await store.aclose()


async def test_each_limiter_can_have_its_own_policy(server: RedisServer) -> None:
    store = RedisStore(server.url, prefix="policies", timeout=TIMEOUT, on_failure="allow")
    open_ = GCRA(1, 60, name="open", store=store)
    closed = GCRA(1, 60, name="closed", store=store.on_failure("deny"))
    assert repr(store.on_failure("deny")).startswith(
        "<RedisStore prefix='policies' on_failure='deny'"
    )
    server.kill()
    assert (await open_.decide()).allowed
    assert not (await closed.decide()).allowed
    assert store.breaker is store.on_failure("local").breaker  # one breaker per store
    await store.aclose()


# -- connecting ---------------------------------------------------------------------------------


class SlowProxy:
    """A TCP proxy to a redis-server that takes ``delay`` seconds to open each connection (the
    client's TCP connect succeeds at once; nothing is answered before then): a slow first
    connection, with real Redis behind it. ``accepted``: connections opened through it;
    ``refused``: those the server behind it refused; ``open``: those still open."""

    def __init__(self, upstream: RedisServer, delay: float) -> None:
        self.upstream, self.delay = upstream, delay
        self.accepted = self.refused = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        self._closing = asyncio.Event()

    @property
    def url(self) -> str:
        assert self._server is not None
        port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{port}/0"

    @property
    def open(self) -> int:
        return len(self._handlers)

    async def __aenter__(self) -> SlowProxy:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._server is not None
        self._server.close()
        self._closing.set()
        for writer in self._writers:
            writer.close()
        await asyncio.gather(*self._handlers)  # each ends once its sockets are closed
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        self._writers.add(writer)
        self.accepted += 1
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.delay):
                    await self._closing.wait()
            if self._closing.is_set():
                return
            try:
                up_reader, up_writer = await asyncio.open_connection(
                    "127.0.0.1", self.upstream.port
                )
            except OSError:
                self.refused += 1
                return
            self._writers.add(up_writer)
            pipes = [
                asyncio.create_task(_pipe(reader, up_writer)),
                asyncio.create_task(_pipe(up_reader, writer)),
            ]
            await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
            up_writer.close()  # one side ended: end the other
            writer.close()
            await asyncio.gather(*pipes)
            self._writers.discard(up_writer)
        finally:
            writer.close()
            self._writers.discard(writer)
            self._handlers.discard(task)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(OSError):  # a socket closed under it: it ends
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()


async def test_a_fresh_store_waits_for_a_slow_first_connection_instead_of_failing_open(
    server: RedisServer, loop_errors: list[Any]
) -> None:
    """Connecting takes 0.3 s, three times the default per-decision timeout, with the default
    policy (allow): the first decisions wait for the connection and are Redis's, not the
    policy's. One connection serves every caller, including one that came in the middle."""
    async with SlowProxy(server, delay=0.3) as proxy:
        store = RedisStore(proxy.url, prefix=f"fresh-{uuid.uuid4().hex[:8]}")
        assert (store.timeout, store.policy) == (0.1, "allow")  # the defaults
        limiter = GCRA(1, 60, burst=5, name="fresh", store=store)
        loop = asyncio.get_running_loop()
        start = loop.time()
        first = [asyncio.create_task(limiter.decide(key="k")) for _ in range(6)]
        await asyncio.sleep(0.15)  # a caller arriving while the store connects
        later = asyncio.create_task(limiter.decide(key="k"))
        decisions = await asyncio.gather(*first, later)
        assert loop.time() - start >= 0.3  # they waited for the connection...
        assert [d.allowed for d in decisions] == [True] * 5 + [False] * 2  # ... and Redis decided
        assert limiter.statistics().store_failures == 0
        assert not (await limiter.decide(key="k")).allowed
        assert proxy.accepted == 1
        assert store.breaker.statistics().failures == 0
        await store.aclose()
    assert loop_errors == []


async def test_connect_pays_the_connection_up_front(server: RedisServer) -> None:
    async with SlowProxy(server, delay=0.3) as proxy:
        store = RedisStore(proxy.url, prefix=f"warm-{uuid.uuid4().hex[:8]}", timeout=1.0)
        limiter = GCRA(1, 60, burst=5, name="warm", store=store)
        loop = asyncio.get_running_loop()
        start = loop.time()
        await asyncio.gather(store.connect(), store.connect())  # one attempt, shared
        assert loop.time() - start >= 0.3
        before = server.command("INFO commandstats")
        start = loop.time()
        assert (await limiter.decide()).remaining == 4
        assert loop.time() - start < 0.3  # one round trip: no connection to open
        assert limiter.statistics().store_failures == 0
        after = server.command("INFO commandstats")
        # The scripts were loaded by connect(): the decision sent no SCRIPT LOAD, no INFO.
        assert _calls(after, "script|load") == _calls(before, "script|load") == 5
        assert _calls(after, "info") == _calls(before, "info") + 1  # the test's own INFO
        await store.connect()  # connected already: nothing to do
        assert proxy.accepted == 1
        await store.aclose()


def _calls(commandstats: str, command: str) -> int:
    for line in commandstats.splitlines():
        if line.startswith(f"cmdstat_{command}:"):
            return int(line.split("calls=")[1].split(",")[0])
    return 0


@pytest.mark.parametrize("how", ["killed", "hung"])
@pytest.mark.parametrize("policy", ["allow", "deny"])
async def test_a_server_that_cannot_be_reached_at_start_up_gets_the_policy_in_bounded_time(
    server: RedisServer, how: str, policy: FailurePolicy, loop_errors: list[Any]
) -> None:
    """Refused at once or never answering: the first decisions get the policy within
    ``connect_timeout``, the store's breaker opens at once (every later caller is decided
    at no cost), and decisions resume on Redis once it is back."""
    store = RedisStore(
        server.url,
        prefix=f"dead-{uuid.uuid4().hex[:8]}",
        timeout=TIMEOUT,
        connect_timeout=0.3,
        break_duration=0.05,
        on_failure=policy,
    )
    limiter = GCRA(1, 60, burst=10, name="dead", store=store)
    server.kill() if how == "killed" else server.pause()
    loop = asyncio.get_running_loop()
    try:
        start = loop.time()
        decisions = await asyncio.gather(*(limiter.decide(key="k") for _ in range(5)))
        took = loop.time() - start
        # Hung: the connect_timeout; refused: at once, not after connect_timeout.
        assert took < 0.3 + 0.1 if how == "hung" else took < 0.3
        assert [d.allowed for d in decisions] == [policy == "allow"] * 5
        assert store.breaker.state is CircuitState.OPEN  # at once, not after 3 failures
        start = loop.time()
        for _ in range(50):
            await limiter.decide(key="k")
        assert loop.time() - start < TIMEOUT  # the breaker decides: no waiting at all
        assert limiter.statistics().store_failures == 55
        with pytest.raises(StoreError, match="cannot connect to Redis"):
            await store.connect()  # the breaker is open: refused at once
    finally:
        server.start() if how == "killed" else server.resume()
    await _until_redis_answers(limiter)
    assert (await limiter.decide(key="k")).remaining == 9  # Redis decides: one unit spent
    assert loop_errors == []
    await store.aclose()


async def test_connect_names_what_failed(server: RedisServer) -> None:
    store = RedisStore(server.url, prefix="unreachable", connect_timeout=0.2)
    server.pause()
    try:
        with pytest.raises(StoreError, match=r"within connect_timeout=0.2s"):
            await store.connect()
    finally:
        server.resume()
    await store.aclose()


async def test_a_reconnect_after_an_outage_is_not_judged_by_the_decision_timeout(
    server: RedisServer, loop_errors: list[Any]
) -> None:
    """After an outage the half-open probe reconnects, which takes 0.3 s here (six times the
    decision timeout): the reconnection closes the store's breaker, instead of counting as
    one more failure and opening it for a second, longer break."""
    async with SlowProxy(server, delay=0.3) as proxy:
        store = RedisStore(
            proxy.url,
            prefix=f"reconnect-{uuid.uuid4().hex[:8]}",
            timeout=TIMEOUT,
            failure_threshold=1,
            break_duration=0.5,
            on_failure="deny",
        )
        loop = asyncio.get_running_loop()
        changes: list[tuple[CircuitState, CircuitState, float]] = []
        store.breaker.add_state_listener(
            lambda change: changes.append((change.old, change.new, loop.time()))
        )
        limiter = GCRA(1, 60, burst=10, name="reconnect", store=store)
        await store.connect()
        server.kill()
        assert not (await limiter.decide(key="k")).allowed  # the policy: the breaker opens
        assert [new for _, new, _ in changes] == [CircuitState.OPEN]
        deadline = loop.time() + 5
        while proxy.open:  # no connection left, none being opened: the next one is new
            assert loop.time() < deadline
            await asyncio.sleep(0.01)
        server.start()
        restarted = loop.time()
        while CircuitState.CLOSED not in [new for _, new, _ in changes]:
            assert loop.time() < deadline
            await limiter.decide(key="k")  # the first one after the break is the probe
            await asyncio.sleep(0.01)
        closed_at = changes[2][2]
        assert [new for _, new, _ in changes[:3]] == [
            CircuitState.OPEN,
            CircuitState.HALF_OPEN,
            CircuitState.CLOSED,  # the probe's reconnection closed it
        ]
        assert closed_at - restarted < 0.5 + 0.3 + 0.2  # the rest of one break, one connect
        await store.aclose()
    assert loop_errors == []


async def test_a_caller_cancelled_while_the_store_connects_has_had_no_effect(
    server: RedisServer, loop_errors: list[Any]
) -> None:
    """Cancelled while waiting for the connection: nothing is sent for it, the attempt goes on
    for the others (a cancelled connect() does not end it either), and no unit is spent."""
    async with SlowProxy(server, delay=0.2) as proxy:
        store = RedisStore(proxy.url, prefix=f"cancel-{uuid.uuid4().hex[:8]}", on_failure="deny")
        limiter = GCRA(1, 60, burst=2, name="cancel", store=store)
        cancelled = asyncio.create_task(limiter.decide(key="k"))
        connecting = asyncio.create_task(store.connect())
        other = asyncio.create_task(limiter.decide(key="k"))
        await asyncio.sleep(0.05)  # all three wait for the connection
        cancelled.cancel()
        connecting.cancel()
        for task in (cancelled, connecting):
            with pytest.raises(asyncio.CancelledError):
                await task
        assert (await other).remaining == 1  # decided by Redis: the cancelled one sent nothing
        assert (await limiter.decide(key="k")).remaining == 0
        assert proxy.accepted == 1 and limiter.statistics().store_failures == 0
        assert store.breaker.statistics().failures == 0
        await store.aclose()
    assert loop_errors == []

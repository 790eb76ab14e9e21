"""A circuit breaker shared through Redis: one state machine for every process.

Separate RedisStore instances stand for separate processes (each has its own client and its
own view of the breaker); one test runs real processes for the half-open probe lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from helpers import slow_redis

from aioresilience import (
    BulkheadFull,
    CircuitBreaker,
    CircuitBreakerOpenError,
    CircuitState,
    Pipeline,
    ResilienceEvent,
)
from aioresilience.stores.redis import RedisStore
from aioresilience.testing import RedisServer

pytestmark = pytest.mark.real_time

# Breaks long enough that no test's timing can end one by accident; a test that needs the
# break over ends it in Redis (end_break), as time would.
BREAK = 60.0


class Boom(Exception):
    pass


async def fail() -> None:
    raise Boom


async def succeed() -> str:
    return "ok"


@pytest.fixture
async def processes(
    redis_server: RedisServer,
) -> AsyncIterator[Callable[..., list[CircuitBreaker]]]:
    """``processes(n, **options)``: n breakers of one name, each on its own store and client
    (``timeout``: the store's; the issue-11 tests give a loaded machine time to connect, so
    that no decision falls back to the local machine, which would hide it from Redis)."""
    prefix = f"breaker-{uuid.uuid4().hex[:8]}"
    stores: list[RedisStore] = []

    def make(n: int, *, timeout: float = 0.1, **options: Any) -> list[CircuitBreaker]:
        options = {"failure_threshold": 2, "break_duration": BREAK, **options}
        breakers = []
        for _ in range(n):
            store = RedisStore(
                redis_server.url, prefix=prefix, breaker_staleness=0.0, timeout=timeout
            )
            stores.append(store)
            breakers.append(CircuitBreaker(name="payments", store=store, **options))
        return breakers

    yield make
    for store in stores:
        await store.aclose()


async def end_break(breaker: CircuitBreaker) -> None:
    store = breaker._state.store  # type: ignore[attr-defined]  # the RedisBreaker state
    await store.client.hset(f"{store.prefix}:breaker:{{{breaker.name}}}", "ou", "0")


async def settle() -> None:
    """Outcomes are recorded in the background: let their round trips finish."""
    for _ in range(20):
        await asyncio.sleep(0.002)


async def test_failures_in_one_process_open_the_breaker_for_another(
    processes: Callable[..., list[CircuitBreaker]],
) -> None:
    a, b = processes(2)
    assert await b.call(succeed) == "ok"
    for _ in range(2):
        with pytest.raises(Boom):
            await a.call(fail)
    await settle()
    with pytest.raises(CircuitBreakerOpenError) as caught:
        await b.call(succeed)
    assert 0 < caught.value.retry_after <= BREAK
    assert b.state is CircuitState.OPEN
    assert (a.statistics().failures, b.statistics().rejected) == (2, 1)


async def test_only_the_allowed_probes_run_across_processes(
    processes: Callable[..., list[CircuitBreaker]],
) -> None:
    breakers = processes(4, half_open_max_calls=2)
    for _ in range(2):
        with pytest.raises(Boom):
            await breakers[0].call(fail)
    await settle()
    await end_break(breakers[0])
    release = asyncio.Event()
    started = 0

    async def probe() -> str:
        nonlocal started
        started += 1
        await release.wait()
        return "ok"

    calls = [asyncio.create_task(b.call(probe)) for b in breakers for _ in range(3)]
    await settle()
    assert started == 2  # two probes in all, whichever processes got them
    release.set()
    outcomes = await asyncio.gather(*calls, return_exceptions=True)
    assert outcomes.count("ok") == 2
    assert all(isinstance(o, CircuitBreakerOpenError) for o in outcomes if o != "ok")
    await settle()
    assert [await b.call(succeed) for b in breakers] == ["ok"] * 4  # closed for everyone


async def test_a_cancelled_probe_gives_its_lease_back(
    processes: Callable[..., list[CircuitBreaker]],
) -> None:
    a, b, c = processes(3, failure_threshold=1)
    with pytest.raises(Boom):
        await a.call(fail)
    await settle()
    await end_break(a)
    probe = asyncio.create_task(b.call(asyncio.sleep, 10))
    await settle()
    with pytest.raises(CircuitBreakerOpenError):
        await c.call(succeed)  # the only probe is taken
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    await settle()
    assert await c.call(succeed) == "ok"  # the lease came back: c probes, and closes it
    assert (b.statistics().cancelled, b.statistics().ignored) == (1, 0)


async def test_state_changes_seen_in_the_store_reach_listeners(
    processes: Callable[..., list[CircuitBreaker]],
) -> None:
    a, b = processes(2, failure_threshold=1)
    changes: list[tuple[CircuitState, CircuitState]] = []
    events: list[ResilienceEvent] = []
    b.add_state_listener(lambda change: changes.append((change.old, change.new)))
    b.add_listener(events.append)
    with pytest.raises(Boom):
        await a.call(fail)
    await settle()
    with pytest.raises(CircuitBreakerOpenError):
        async with b:
            pass
    assert changes == [(CircuitState.CLOSED, CircuitState.OPEN)]
    assert "circuit_open" in [e.name for e in events]


async def test_manual_control_applies_to_every_process(
    processes: Callable[..., list[CircuitBreaker]],
) -> None:
    a, b = processes(2)
    a.isolate()
    with pytest.raises(CircuitBreakerOpenError) as caught:
        await a.call(succeed)  # at once, in the process that isolated it
    assert caught.value.retry_after == float("inf")
    await settle()
    with pytest.raises(CircuitBreakerOpenError):
        await b.call(succeed)
    b.reset()
    await settle()
    assert await a.call(succeed) == "ok"


async def test_the_state_is_one_hash_with_a_ttl(
    processes: Callable[..., list[CircuitBreaker]], redis_server: RedisServer
) -> None:
    (a,) = processes(1, failure_threshold=1)
    with pytest.raises(Boom):
        await a.call(fail)
    await settle()
    store = a._state.store  # type: ignore[attr-defined]  # the RedisBreaker state
    key = f"{store.prefix}:breaker:{{payments}}"
    fields = await store.client.hgetall(key)
    assert fields[b"st"] == b"1" and int(fields[b"opens"]) == 1
    assert await store.client.pttl(key) > 0


async def test_the_local_breaker_decides_while_redis_is_away(redis_server: RedisServer) -> None:
    with RedisServer() as server:
        store = RedisStore(server.url, prefix="away", timeout=0.05, breaker_staleness=0.0)
        breaker = CircuitBreaker(name="away", failure_threshold=2, break_duration=10, store=store)
        events: list[ResilienceEvent] = []
        breaker.add_listener(events.append)
        assert await breaker.call(succeed) == "ok"
        server.kill()
        assert await breaker.call(succeed) == "ok"  # admitted by the local machine
        for _ in range(2):
            with pytest.raises(Boom):
                await breaker.call(fail)
        with pytest.raises(CircuitBreakerOpenError):  # the local machine tripped
            await breaker.call(succeed)
        # ... and that is what the next call meets (the view of Redis still read CLOSED).
        assert breaker.state is CircuitState.OPEN
        assert 9 < breaker.retry_after <= 10
        assert breaker.statistics().store_failures >= 1
        assert any(e.name == "store_failure" for e in events)
        await store.aclose()


async def test_failures_admitted_from_a_fresh_view_count_when_redis_goes_away(
    redis_server: RedisServer,
) -> None:
    # Calls admitted from a fresh closed view send their outcomes to Redis only: with Redis
    # gone as the dependency failed, they were lost and the circuit never opened (10 of 10
    # failures went through a failure_threshold of 3). The local machine hears them too.
    with RedisServer() as server:
        store = RedisStore(server.url, prefix="together", timeout=0.05, breaker_staleness=60.0)
        breaker = CircuitBreaker(name="together", failure_threshold=3, store=store)
        assert await breaker.call(succeed) == "ok"
        server.kill()
        failures = 0
        for _ in range(10):
            try:
                await breaker.call(fail)
            except Boom:
                failures += 1
            except CircuitBreakerOpenError:
                pass
            await asyncio.sleep(0.06)
        assert failures <= 4
        await store.aclose()


async def test_a_block_has_no_result_to_judge(
    processes: Callable[..., list[CircuitBreaker]],
) -> None:
    (breaker,) = processes(1, failure_result=lambda response: response.status >= 500)
    async with breaker:
        pass
    await settle()
    assert breaker.statistics().successes == 1


async def test_an_isolated_breaker_outlives_the_ordinary_ttl(
    processes: Callable[..., list[CircuitBreaker]],
) -> None:
    (breaker,) = processes(1)
    breaker.isolate()
    await settle()
    store = breaker._state.store  # type: ignore[attr-defined]  # the RedisBreaker state
    ttl = await store.client.pttl(f"{store.prefix}:breaker:{{payments}}")
    assert ttl > 3_600_000  # a day: an operator's decision is not forgotten in a minute


async def test_a_reply_sent_before_a_manual_action_does_not_undo_it(
    processes: Callable[..., list[CircuitBreaker]],
) -> None:
    (breaker,) = processes(1)
    changes: list[tuple[CircuitState, CircuitState]] = []
    breaker.add_state_listener(lambda change: changes.append((change.old, change.new)))
    assert await breaker.call(succeed) == "ok"  # its outcome is recorded in the background
    await asyncio.sleep(0)  # ... and is now on its way to Redis
    breaker.isolate()
    await settle()
    assert changes == [(CircuitState.CLOSED, CircuitState.ISOLATED)]
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.call(succeed)


async def test_a_foreign_value_fails_only_that_breaker(redis_server: RedisServer) -> None:
    from aioresilience import GCRA, StoreError

    store = RedisStore(redis_server.url, prefix=f"foreign-{uuid.uuid4().hex[:8]}")
    await store.client.set(f"{store.prefix}:breaker:{{broken}}", "not a hash")
    broken = CircuitBreaker(name="broken", store=store)
    limiter = GCRA(1, 60, burst=5, name="fine", store=store)
    outcomes = await asyncio.gather(broken.call(succeed), limiter.decide(), return_exceptions=True)
    assert isinstance(outcomes[0], StoreError) and "WRONGTYPE" in str(outcomes[0])
    assert not isinstance(outcomes[1], BaseException) and outcomes[1].allowed
    assert store.breaker.state is CircuitState.CLOSED  # one bad key is not an outage
    await store.aclose()


async def test_a_manual_action_while_redis_is_away_reaches_it_later(
    redis_server: RedisServer,
) -> None:
    with RedisServer() as server:
        store = RedisStore(server.url, prefix="later", timeout=0.05, break_duration=0.05)
        breaker = CircuitBreaker(name="later", store=store)
        assert await breaker.call(succeed) == "ok"
        server.kill()
        # The first operation after the crash meets a connection that was open: whether
        # Redis applied it cannot be known, so it is reported, not resent (at most once).
        assert await breaker.call(succeed) == "ok"
        await asyncio.sleep(0.05)
        breaker.isolate()  # refused connections: surely not applied, so held and resent
        await asyncio.sleep(0.1)
        server.start()
        key = "later:breaker:{later}"
        for _ in range(200):  # resent by itself, with no other traffic
            if await store.client.hget(key, "st") == b"3":
                break
            await asyncio.sleep(0.01)
        assert await store.client.hget(key, "st") == b"3"
        await store.aclose()


async def test_a_manual_action_behind_a_slow_round_trip_is_not_dropped(
    redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RedisStore(redis_server.url, prefix=f"slow-{uuid.uuid4().hex[:8]}", timeout=0.05)
    breaker = CircuitBreaker(name="slow", store=store)
    slow_redis(monkeypatch, 0.08)
    pending = asyncio.create_task(breaker.call(succeed))  # its admission is slow
    await asyncio.sleep(0.01)
    breaker.isolate()  # waits behind it, beyond the timeout
    await asyncio.gather(pending, return_exceptions=True)  # timed out: the local machine decides
    await asyncio.sleep(0.3)
    monkeypatch.undo()
    key = f"{store.prefix}:breaker:{{slow}}"
    assert await store.client.hget(key, "st") == b"3"
    await store.aclose()


async def test_owed_operations_keep_their_order(
    processes: Callable[..., list[CircuitBreaker]],
) -> None:
    (breaker,) = processes(1)
    breaker.isolate()
    breaker.reset()  # same loop turn, same round trip: applied in this order
    await settle()
    store = breaker._state.store  # type: ignore[attr-defined]  # the RedisBreaker state
    assert await store.client.hget(f"{store.prefix}:breaker:{{payments}}", "st") == b"0"
    assert await breaker.call(succeed) == "ok"


def test_owed_operations_survive_a_change_of_event_loop(redis_server: RedisServer) -> None:
    from aioresilience import GCRA

    store = RedisStore(redis_server.url, prefix=f"loops-{uuid.uuid4().hex[:8]}")
    breaker = CircuitBreaker(name="loops", store=store)
    limiter = GCRA(1, 60, name="loops-limit", store=store)

    async def first() -> None:
        store.breaker.isolate()  # the store keeps everything from Redis for now...
        breaker.isolate()  # ... so this is held
        await asyncio.sleep(0.01)

    async def second() -> bytes | None:
        store.breaker.reset()
        await limiter.decide()  # any traffic on the new loop carries what was held
        await asyncio.sleep(0.05)
        state: bytes | None = await store.client.hget(f"{store.prefix}:breaker:{{loops}}", "st")
        await store.aclose()
        return state

    asyncio.run(first())
    assert asyncio.run(second()) == b"3"


def test_a_shared_breaker_needs_a_name_and_a_time_window(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url)
    with pytest.raises(TypeError, match=r"needs name=\.\.\."):
        CircuitBreaker(store=store)
    with pytest.raises(TypeError, match="window='time'"):
        CircuitBreaker(name="b", failure_rate_threshold=0.5, window="count", store=store)
    with pytest.raises(TypeError, match="store must be a shared store"):
        CircuitBreaker(name="b", store=object())  # type: ignore[arg-type]


PROBE_PROCESS = """
import asyncio, sys
from aioresilience import CircuitBreaker, CircuitBreakerOpenError
from aioresilience.stores.redis import RedisStore

async def main(url, prefix):
    store = RedisStore(url, prefix=prefix, timeout=5.0, breaker_staleness=0.0)
    breaker = CircuitBreaker(name="shared", failure_threshold=1, break_duration=60,
                             half_open_max_calls=3, store=store)
    await store.connect()
    lines = asyncio.Queue()  # the test's signals, one per line of stdin
    loop = asyncio.get_running_loop()
    loop.add_reader(sys.stdin.fileno(), lambda: lines.put_nowait(sys.stdin.readline()))

    async def signal(word):  # tell the test, then wait for its word to go on
        print(word, flush=True)
        assert (await lines.get()).strip() == "go"

    decided, all_decided, release = [], asyncio.Event(), asyncio.Event()

    def note(outcome):
        decided.append(outcome)
        if len(decided) == 10:
            all_decided.set()

    async def probe():  # holds its lease until every call of every process was decided
        note(1)
        await release.wait()

    async def one():
        try:
            await breaker.call(probe)
            return 1
        except CircuitBreakerOpenError:
            note(0)
            return 0

    await signal("ready")  # connected; every process asks at the same moment
    calls = [asyncio.create_task(one()) for _ in range(10)]
    await all_decided.wait()
    await signal("decided")  # admitted (running) or refused, all ten
    release.set()
    print(sum(await asyncio.gather(*calls)), flush=True)
    loop.remove_reader(sys.stdin.fileno())
    await store.aclose()

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


async def test_four_processes_share_the_probes(redis_server: RedisServer) -> None:
    """Four processes ask for the half-open probes at the same moment, and every probe runs
    until all forty calls were decided: three probes in all. (The processes say when they
    are ready and when their calls are decided; nothing depends on how long they take.)"""
    prefix = f"probes-{uuid.uuid4().hex[:8]}"
    store = RedisStore(redis_server.url, prefix=prefix)
    breaker = CircuitBreaker(name="shared", failure_threshold=1, break_duration=60, store=store)
    opened = asyncio.Event()

    def on_change(change: Any) -> None:
        if change.new is CircuitState.OPEN:
            opened.set()

    breaker.add_state_listener(on_change)
    with pytest.raises(Boom):
        await breaker.call(fail)
    async with asyncio.timeout(10):
        await opened.wait()  # the failure is recorded in Redis (its reply says OPEN)
    # Make the break end for everyone: set the stored open-until to now.
    key = f"{prefix}:breaker:{{shared}}"
    await store.client.hset(key, "ou", "0")
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, "-c", PROBE_PROCESS, redis_server.url, prefix,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        for _ in range(4)
    ]  # fmt: skip

    async def everyone_says(word: str) -> None:
        async with asyncio.timeout(60):
            for proc in procs:
                assert proc.stdout is not None
                assert (await proc.stdout.readline()).decode().strip() == word
        for proc in procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")
            await proc.stdin.drain()

    try:
        await everyone_says("ready")
        await everyone_says("decided")
        outputs = [await p.communicate() for p in procs]
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    assert [p.returncode for p in procs] == [0] * 4
    assert sum(int(out) for out, _ in outputs) == 3  # 40 calls, 3 probes across 4 processes
    await store.aclose()


async def test_shared_primitives_compose_in_a_pipeline(redis_server: RedisServer) -> None:
    from aioresilience import GCRA, Pipeline, RateLimited

    store = RedisStore(redis_server.url, prefix=f"pipeline-{uuid.uuid4().hex[:8]}")
    limiter = GCRA(1, 60, burst=2, name="calls", store=store, max_wait=0)
    breaker = CircuitBreaker(name="dependency", failure_threshold=1, break_duration=60, store=store)
    pipeline = (
        Pipeline.builder()
        .timeout(1)
        .rate_limit(limiter, key=lambda context: "tenant")
        .circuit_breaker(breaker)
        .build()
    )
    assert await pipeline.execute(succeed) == "ok"
    with pytest.raises(Boom):
        await pipeline.execute(fail)
    await settle()
    with pytest.raises(RateLimited):
        await pipeline.execute(succeed)  # the two units of the burst are spent
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.call(succeed)  # the failure opened the shared breaker
    await store.aclose()


# -- issue 11 -------------------------------------------------------------------------------

SURE = 5.0  # a store timeout no round trip reaches, even on a loaded machine


async def stored_state(breaker: CircuitBreaker) -> bytes:
    store = breaker._state.store  # type: ignore[attr-defined]  # the RedisBreaker state
    value: bytes = await store.client.hget(f"{store.prefix}:breaker:{{{breaker.name}}}", "st")
    return value


async def recorded_calls(breaker: CircuitBreaker) -> int:
    """How many outcomes the shared window holds (per bucket: epoch, calls, failures, slow)."""
    store = breaker._state.store  # type: ignore[attr-defined]  # the RedisBreaker state
    packed = await store.client.hget(f"{store.prefix}:breaker:{{{breaker.name}}}", "w")
    if packed is None:
        return 0
    values = struct.unpack(f"{len(packed) // 8}d", packed)
    return int(sum(values[1::4]))


async def eventually(check: Callable[[], Awaitable[bool]], breaker: CircuitBreaker) -> None:
    """Outcomes reach Redis in the background: wait for ``check`` (a loaded machine may take
    longer than settle())."""
    for _ in range(500):
        if await check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError(
        f"not reached in 5 s: state {await stored_state(breaker)!r}, "
        f"{await recorded_calls(breaker)} outcomes in Redis, {breaker.statistics()}"
    )


async def outcomes(breaker: CircuitBreaker, sequence: str) -> None:
    """``sequence``: one letter per call, F a failure, S a success."""
    for letter in sequence:
        if letter == "F":
            with pytest.raises(Boom):
                await breaker.call(fail)
        else:
            await breaker.call(succeed)
        await settle()  # in order, as one process would see them one by one


@pytest.mark.parametrize(
    ("minimum", "sequence"), [(10, "FFFFFSSSSS"), (10, "SSSSSFFFFF"), (5, "FFFSS")]
)
async def test_the_shared_rates_are_judged_after_every_outcome(
    processes: Callable[..., list[CircuitBreaker]], minimum: int, sequence: str
) -> None:
    # Issue 11 item 7, in breaker.lua: the same rule as BreakerMachine.
    a, b = processes(
        2,
        timeout=SURE,
        failure_threshold=None,
        failure_rate_threshold=0.5,
        window="time",
        window_size=600.0,
        minimum_calls=minimum,
    )
    await outcomes(a, sequence[:-1])

    async def all_but_the_last_recorded() -> bool:
        return await recorded_calls(a) == len(sequence) - 1

    await eventually(all_but_the_last_recorded, a)
    assert await stored_state(a) == b"0"  # closed: the window is not full yet
    await outcomes(a, sequence[-1])

    async def opened() -> bool:
        return await stored_state(a) == b"1"

    await eventually(opened, a)  # open, whatever the last outcome was
    with pytest.raises(CircuitBreakerOpenError):
        await b.call(succeed)


async def test_a_shared_half_open_breaker_hints_a_short_wait(
    processes: Callable[..., list[CircuitBreaker]],
) -> None:
    # Issue 11 item 5, in breaker.lua: not the 60 s of the half-open watchdog.
    a, b, c = processes(3, timeout=SURE, failure_threshold=1)
    with pytest.raises(Boom):
        await a.call(fail)
    await settle()
    await end_break(a)
    probe = asyncio.create_task(b.call(asyncio.sleep, 10))
    await settle()
    with pytest.raises(CircuitBreakerOpenError) as caught:
        await c.call(succeed)
    assert 1e-3 <= caught.value.retry_after < 1.0
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe


async def test_a_shared_breaker_entered_inside_itself_counts_once(
    processes: Callable[..., list[CircuitBreaker]],
) -> None:
    # Issue 11 items 3 and 6 through a shared breaker: one outcome per outer call, refusals
    # inside count neither way, and the outer entry can be the probe that closes it.
    a, b = processes(2, timeout=SURE, failure_threshold=2)
    outcome = {"value": "fail"}

    @a
    async def inner() -> str:
        if outcome["value"] == "fail":
            raise Boom
        if outcome["value"] == "full":
            raise BulkheadFull("full")
        return "ok"

    pipeline = Pipeline.builder("p").circuit_breaker(a).build()
    with pytest.raises(Boom):
        await a.call(inner)
    outcome["value"] = "full"
    for _ in range(3):
        with pytest.raises(BulkheadFull):
            await pipeline.execute(inner)
    await settle()
    store = a._state.store  # type: ignore[attr-defined]  # the RedisBreaker state
    key = f"{store.prefix}:breaker:{{payments}}"
    assert await store.client.hmget(key, "st", "cf") == [b"0", b"1"]  # one failure, not two
    outcome["value"] = "fail"
    with pytest.raises(Boom):
        await pipeline.execute(inner)
    await settle()
    with pytest.raises(CircuitBreakerOpenError):
        await b.call(succeed)
    await end_break(a)
    # a's view still holds the break it was told of: one refusal refreshes it from Redis.
    with pytest.raises(CircuitBreakerOpenError):
        await a.call(succeed)
    await settle()
    outcome["value"] = "ok"
    assert await a.call(inner) == "ok"  # the probe, with the same breaker inside it
    await settle()
    assert await stored_state(a) == b"0"  # closed, for every process
    assert a.statistics().ignored == 3


async def test_a_disabled_shared_breaker_counts_nothing(
    processes: Callable[..., list[CircuitBreaker]],
) -> None:
    (breaker,) = processes(1, timeout=SURE, failure_threshold=1)
    breaker.disable()
    for _ in range(3):
        with pytest.raises(Boom):
            await breaker.call(fail)
    await breaker.call(succeed)
    await settle()
    stats = breaker.statistics()
    assert (stats.failures, stats.successes, stats.state) == (0, 0, CircuitState.DISABLED)


async def test_a_call_cancelled_while_redis_admits_it_leaves_nothing_behind(
    processes: Callable[..., list[CircuitBreaker]],
) -> None:
    (breaker,) = processes(1, timeout=SURE, failure_threshold=1)
    task = asyncio.create_task(breaker.call(succeed))
    await asyncio.sleep(0)  # the admission's round trip is on its way
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await settle()
    with pytest.raises(Boom):
        await breaker.call(fail)  # not taken for an entry inside the cancelled one: it counts
    await settle()
    assert await stored_state(breaker) == b"1"


async def test_a_shared_probe_ending_past_the_half_open_bound_does_not_close_it(
    processes: Callable[..., list[CircuitBreaker]],
) -> None:
    # The bound re-opened the circuit (as of its deadline) even if no admission saw it: the
    # probe's late success is not a probe's outcome any more (BreakerMachine.record).
    a, b = processes(2, timeout=SURE, failure_threshold=1, half_open_max_duration=0.05)
    with pytest.raises(Boom):
        await a.call(fail)
    await settle()
    await end_break(a)
    assert await b.call(asyncio.sleep, 0.2, "late") == "late"
    await settle()
    assert b.state is CircuitState.OPEN


async def test_calls_admitted_while_disabled_never_count_after_a_reset(
    processes: Callable[..., list[CircuitBreaker]],
) -> None:
    # README: disable() records and counts nothing, "nor for calls admitted while disabled".
    (breaker,) = processes(1)
    gate = asyncio.Event()

    async def failing() -> None:
        await gate.wait()
        raise Boom

    breaker.disable()
    await settle()
    calls = [asyncio.create_task(breaker.call(failing)) for _ in range(3)]
    await settle()
    breaker.reset()
    await settle()
    gate.set()
    await asyncio.gather(*calls, return_exceptions=True)
    await settle()
    stats = breaker.statistics()
    assert (stats.failures, stats.consecutive_failures) == (0, 0)
    assert breaker.state is CircuitState.CLOSED
    assert await breaker.call(succeed) == "ok"


def _two_processes(
    server: RedisServer, name: str, **store_options: Any
) -> tuple[list[RedisStore], list[CircuitBreaker]]:
    """Two stores (two processes) sharing one breaker of ``name`` that opens after 2
    failures for 0.2 s and probes one call at a time; ``store_options``: the stores' own."""
    stores = [
        RedisStore(server.url, prefix=name, timeout=0.05, breaker_staleness=0.0, **store_options)
        for _ in range(2)
    ]
    breakers = [
        CircuitBreaker(
            name=name, failure_threshold=2, break_duration=0.2, half_open_max_calls=1, store=store
        )
        for store in stores
    ]
    return stores, breakers


async def test_redis_gone_after_a_shared_break_admits_probes_not_every_call() -> None:
    # Another process's failures opened the shared circuit; this one saw the break. When
    # Redis went away with the break over, this process's local machine (which had seen no
    # failure) decided from CLOSED and let every call through to the dependency known to be
    # failing (5 of 5 here; 46 in a soak of two processes). It now takes up the shared break
    # and admits half-open probes.
    with RedisServer() as server:
        stores, (failing, other) = _two_processes(server, "gone")
        for _ in range(2):
            with pytest.raises(Boom):
                await failing.call(fail)
        await settle()
        with pytest.raises(CircuitBreakerOpenError):
            await other.call(succeed)  # the shared break, seen by the other process
        server.kill()
        await asyncio.sleep(0.25)  # the break is over
        gate = asyncio.Event()

        async def held() -> str:
            await gate.wait()
            return "ok"

        calls = [asyncio.create_task(other.call(held)) for _ in range(5)]
        await asyncio.sleep(0.2)  # each asked Redis, found it away, and the local machine decided
        gate.set()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert outcomes.count("ok") == 1, outcomes  # the one probe
        assert all(isinstance(o, CircuitBreakerOpenError) for o in outcomes if o != "ok")
        for store in stores:
            await store.aclose()


async def test_a_break_taken_up_in_an_outage_is_dropped_once_the_shared_circuit_closes() -> None:
    # The local machine took up the shared break in one outage (its state read, no call
    # made); Redis came back and the shared circuit closed. Before, the local machine kept
    # that old break: in the next outage, no failure anywhere, it admitted one probe and
    # refused the rest (1 of 5).
    with RedisServer() as server:
        stores, (failing, other) = _two_processes(server, "taken", break_duration=0.05)
        marker = CircuitBreaker(name="marker", store=stores[1])

        async def until_away() -> None:
            while not stores[1].breaker.retry_after:
                with contextlib.suppress(Exception):
                    await marker.call(succeed)
                await asyncio.sleep(0.01)

        for _ in range(2):
            with pytest.raises(Boom):
                await failing.call(fail)
        await settle()
        with pytest.raises(CircuitBreakerOpenError):
            await other.call(succeed)
        server.kill()
        await asyncio.sleep(0.25)  # the break is over
        await until_away()
        assert other.state is CircuitState.HALF_OPEN  # the break taken up
        server.start()
        for _ in range(500):  # until the store's own breaker lets it try Redis again
            if not stores[1].breaker.retry_after:
                break
            await asyncio.sleep(0.02)
        assert await other.call(succeed) == "ok"  # the shared probe: closed
        server.kill()
        await until_away()
        assert other.state is CircuitState.CLOSED
        gate = asyncio.Event()

        async def held() -> str:
            await gate.wait()
            return "ok"

        calls = [asyncio.create_task(other.call(held)) for _ in range(5)]
        await asyncio.sleep(0.05)
        gate.set()
        assert await asyncio.gather(*calls) == ["ok"] * 5
        for store in stores:
            await store.aclose()

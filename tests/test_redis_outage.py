"""Redis going away and coming back: the failure policy applies within the per-call timeout,
a dead server costs nothing per call once the store's breaker is open, nothing raises but the
policy's own refusals, and decisions resume on Redis without a restart.

Each test owns a redis-server it kills, pauses and starts again on the same port.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from helpers import slow_redis

from aioresilience import GCRA, RateLimited, ResilienceEvent
from aioresilience.stores.redis import FailurePolicy, RedisStore
from aioresilience.testing import RedisServer

pytestmark = pytest.mark.real_time

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

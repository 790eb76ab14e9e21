"""The README's "From the guide" table, row by row: the seed guide's names work here and
behave as the table says (virtual time throughout)."""

from __future__ import annotations

import asyncio

import pytest

import aioresilience as ar


@pytest.mark.parametrize(
    "limiter",
    [
        ar.TokenBucket(2, 1.0),
        ar.LeakyBucket(2, 1.0),
        ar.GCRA(2, 2.0, burst=2),
        ar.FixedWindowCounter(2, 60.0),
        ar.SlidingWindowLog(2, 60.0),
        ar.SlidingWindowCounter(2, 60.0),
    ],
    ids=lambda limiter: type(limiter).__name__,
)
async def test_allow_request_is_the_non_waiting_admit(limiter: ar.RateLimiter) -> None:
    assert [limiter.allow_request() for _ in range(3)] == [True, True, False]
    assert limiter.statistics().waiting == 0  # it never queued


async def test_the_breaker_takes_failure_threshold_and_recovery_timeout() -> None:
    breaker = ar.CircuitBreaker(failure_threshold=2, recovery_timeout=5.0)

    async def down() -> None:
        raise ConnectionError

    for _ in range(2):
        with pytest.raises(ConnectionError):
            await breaker.call(down)
    with pytest.raises(ar.CircuitBreakerOpenError) as refused:
        await breaker.call(down)
    assert refused.value.retry_after == pytest.approx(5.0)
    with pytest.raises(TypeError, match="recovery_timeout is another name for break_duration"):
        ar.CircuitBreaker(break_duration=1.0, recovery_timeout=2.0)


def test_the_breaker_refuses_the_ambiguous_timeout() -> None:
    with pytest.raises(TypeError, match="timeout"):
        ar.CircuitBreaker(timeout=30)  # type: ignore[call-arg]


async def test_exponential_backoff_counts_retries_after_the_first_attempt() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        raise ConnectionError(calls)

    policy = ar.ExponentialBackoff(max_retries=3, base_delay=1.0, max_delay=60.0)
    with pytest.raises(ConnectionError):
        await policy.execute(flaky)
    assert calls == 4
    loop = asyncio.get_running_loop()
    assert loop.time() <= 1 + 2 + 4  # full jitter: each delay at most base_delay * 2**n


async def test_bulkhead_max_concurrent_and_execute_refuse_when_full() -> None:
    bulkhead = ar.Bulkhead(max_concurrent=1)
    release = asyncio.Event()

    async def hold() -> str:
        await release.wait()
        return "done"

    first = asyncio.create_task(bulkhead.execute(hold))
    await asyncio.sleep(0)
    with pytest.raises(ar.BulkheadFull):
        await bulkhead.execute(hold)  # no queue by default: refused at once
    release.set()
    assert await first == "done"


async def test_queue_push_pop_size() -> None:
    queue: ar.BackpressureQueue[str] = ar.BackpressureQueue(2)
    assert await queue.push("a") is True
    await queue.push("b")
    assert queue.size() == 2
    assert await queue.pop() == "a"
    assert queue.size() == 1


def test_queue_takes_the_guide_s_max_size() -> None:
    assert ar.BackpressureQueue(max_size=3).maxsize == 3
    with pytest.raises(TypeError, match="max_size is another name for maxsize"):
        ar.BackpressureQueue(3, max_size=3)
    with pytest.raises(ValueError, match=r"^max_size must be >= 1, got 0"):
        ar.BackpressureQueue(max_size=0)
    with pytest.raises(TypeError, match="needs maxsize"):
        ar.BackpressureQueue()


async def test_update_system_load_picks_the_tier() -> None:
    async def full() -> str:
        return "full"

    async def cached() -> str:
        return "cached"

    degradation = ar.GracefulDegradation(
        None, [ar.Tier("full", full, up_to=0.7), ar.Tier("cached", cached)]
    )
    degradation.update_system_load(0.2)
    assert await degradation.call() == "full"
    degradation.update_system_load(0.9)
    assert await degradation.call() == "cached"
    with pytest.raises(TypeError):
        ar.GracefulDegradation(lambda: 0.5, [ar.Tier("cached", cached)]).update_system_load(1)


async def test_chaos_monkey_maybe_fail_and_add_latency() -> None:
    monkey = ar.ChaosMonkey(failure_rate=1.0, latency_rate=1.0, seed=1)
    with pytest.raises(ar.ChaosFault, match="database on fire"):
        monkey.maybe_fail("database on fire")
    loop = asyncio.get_running_loop()
    start = loop.time()
    await monkey.add_latency(0.1, 0.5)
    assert 0.1 <= loop.time() - start <= 0.5


def test_chaos_monkey_takes_the_guide_s_positional_rates() -> None:
    monkey = ar.ChaosMonkey(1.0, 0.2)  # the guide's ChaosMonkey(failure_rate, latency_rate)
    assert (monkey.failure_rate, monkey.latency_rate) == (1.0, 0.2)
    with pytest.raises(ar.ChaosFault, match="database on fire"):
        monkey.maybe_fail("database on fire")

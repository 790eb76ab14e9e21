"""A plain function given to `call`/`execute` (the seed guide's `breaker.call(func)`): its
value is the call's result and what it raises counts as any call's failure. Before, the
`await` of its value raised TypeError, which a retry retried (running the function once per
attempt) and a breaker counted as the dependency failing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import aioresilience as ar
from aioresilience import CircuitState


class Flaky:
    """A plain function failing ``failures`` times, then answering ``value``."""

    def __init__(self, failures: int, value: Any = "ok") -> None:
        self.failures, self.value, self.calls = failures, value, 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        if self.calls <= self.failures:
            raise ConnectionError(f"down ({self.calls})")
        return (self.value, *args) if args else self.value


async def test_a_breaker_returns_a_plain_functions_value_and_counts_its_failures() -> None:
    breaker = ar.CircuitBreaker(failure_threshold=2)
    assert await breaker.call(lambda: 42) == 42
    assert await breaker.call(Flaky(0), "a") == ("ok", "a")
    flaky = Flaky(2)
    for _ in range(2):
        with pytest.raises(ConnectionError):
            await breaker.call(flaky)
    statistics = breaker.statistics()
    assert (statistics.successes, statistics.failures) == (2, 2)
    assert breaker.state is CircuitState.OPEN


@pytest.mark.parametrize("form", ["Retry.call", "ExponentialBackoff.execute", "pipeline"])
async def test_a_retry_runs_a_plain_function_once_per_attempt_until_it_answers(
    form: str,
) -> None:
    flaky = Flaky(2)
    if form == "Retry.call":
        result = await ar.Retry(attempts=3, backoff=ar.constant(1)).call(flaky, "x")
    elif form == "ExponentialBackoff.execute":
        backoff = ar.ExponentialBackoff(max_retries=3, base_delay=1.0, max_delay=2.0)
        result = await backoff.execute(flaky, "x")
    else:
        pipeline = (
            ar.Pipeline.builder("plain")
            .timeout(10)
            .retry(attempts=3, backoff=ar.constant(1))
            .circuit_breaker(failure_threshold=5)
            .build()
        )
        result = await pipeline.execute(flaky, "x")
    assert result == ("ok", "x")
    assert flaky.calls == 3  # two failures retried, then the answer: no fourth call


async def test_a_value_that_is_not_awaitable_is_never_retried() -> None:
    calls = 0

    def answer() -> int:
        nonlocal calls
        calls += 1
        return 7

    assert await ar.Retry(attempts=5).call(answer) == 7
    assert calls == 1


async def test_a_pipeline_timing_its_attempts_times_a_plain_function_too() -> None:
    seen: list[ar.ResilienceEvent] = []
    pipeline = ar.Pipeline.builder("timed").retry(attempts=3, backoff=ar.constant(1)).build()
    pipeline.add_listener(seen.append)  # hears DEBUG: every attempt is timed
    flaky = Flaky(1)
    assert await pipeline.execute(flaky) == "ok"
    outcomes = [event.outcome for event in seen if event.name == "attempt"]
    assert outcomes == ["failure", "success"]
    assert [event.outcome for event in seen if event.name == "pipeline_executed"] == ["success"]


async def test_guards_and_a_fallback_take_a_plain_function() -> None:
    bulkhead = ar.Bulkhead(1)
    assert await bulkhead.execute(lambda: "in") == "in"
    assert await bulkhead.call(Flaky(0), 1) == ("ok", 1)
    assert bulkhead.statistics().active == 0  # the slot went back

    limiter = ar.TokenBucket(1, 1.0)
    assert await limiter.call(lambda: "admitted") == "admitted"

    fallback = ar.Fallback("cached", on=ConnectionError)
    assert await fallback.call(Flaky(1)) == "cached"
    assert await fallback.call(Flaky(0)) == "ok"

    async with ar.timeout(1):
        assert await ar.timeout(1).call(lambda: "quick") == "quick"


async def test_a_plain_function_returning_an_awaitable_is_awaited() -> None:
    loop = asyncio.get_running_loop()

    def later() -> asyncio.Future[str]:
        future: asyncio.Future[str] = loop.create_future()
        loop.call_later(1, future.set_result, "later")
        return future

    breaker = ar.CircuitBreaker()
    assert await breaker.call(later) == "later"
    assert await ar.Retry(attempts=2).call(later) == "later"


async def test_the_decorators_still_refuse_a_plain_function() -> None:
    def plain() -> int:
        return 1

    for decorator in (ar.CircuitBreaker(), ar.Retry(attempts=2), ar.Bulkhead(1)):
        with pytest.raises(TypeError):
            decorator(plain)  # type: ignore[arg-type]


async def test_a_hedge_needs_an_awaitable_and_gives_its_budget_back() -> None:
    hedge = ar.Hedge(max_hedged=1, delay=0.1, idempotent=True)
    with pytest.raises(TypeError):
        await hedge.call(lambda: 1)
    assert await hedge.call(asyncio.sleep, 0, "slept") == "slept"


async def test_pipeline_chaos_that_does_not_strike_calls_a_plain_function() -> None:
    pipeline = ar.Pipeline.builder("chaos").chaos_outcome(0.0, "injected").build()
    assert await pipeline.execute(lambda: "real") == "real"

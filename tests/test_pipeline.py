"""Pipelines in virtual time: order semantics, ways in, context, warnings, registry."""

from __future__ import annotations

import asyncio
import warnings
from typing import Any

import pytest

import aioresilience as ar
from aioresilience import Pipeline, PipelineOrderWarning, PipelineRegistry, ResilienceContext


def hangs_then(loop_times: list[float]) -> Any:
    async def call() -> str:
        loop_times.append(asyncio.get_running_loop().time())
        await asyncio.sleep(3600)
        return "never"

    return call


async def test_overall_deadline_around_per_attempt_timeouts() -> None:
    starts: list[float] = []
    pipeline = (
        Pipeline.builder("api")
        .timeout(10)
        .retry(attempts=10, backoff=ar.constant(1))
        .timeout(2)
        .build()
    )
    with pytest.raises(ar.TimeoutExceeded) as caught:
        await pipeline.execute(hangs_then(starts))
    assert starts == [0.0, 3.0, 6.0, 9.0]  # 2 s per attempt + 1 s backoff, cut at 10 s
    assert caught.value.seconds == 10
    assert asyncio.get_running_loop().time() == 10.0


async def test_retry_around_a_per_attempt_timeout() -> None:
    starts: list[float] = []
    pipeline = Pipeline.builder().retry(attempts=3, backoff=ar.constant(1)).timeout(2).build()
    with pytest.raises(ar.TimeoutExceeded) as caught:
        await pipeline.execute(hangs_then(starts))
    assert starts == [0.0, 3.0, 6.0]
    assert caught.value.seconds == 2
    assert "gave up after 3 attempt(s)" in caught.value.__notes__[-1]


async def test_timeout_around_the_whole_retry() -> None:
    attempts: list[float] = []

    async def failing() -> None:
        attempts.append(asyncio.get_running_loop().time())
        raise OSError("down")

    pipeline = Pipeline.builder().timeout(5).retry(attempts=100, backoff=ar.constant(2)).build()
    with pytest.raises(ar.TimeoutExceeded):
        await pipeline.execute(failing)
    assert attempts == [0.0, 2.0, 4.0]
    assert asyncio.get_running_loop().time() == 5.0


async def test_decorator_keeps_the_function() -> None:
    pipeline = Pipeline.builder().retry(attempts=2, backoff=ar.constant(0)).build()

    @pipeline
    async def fetch(item: int, *, scale: int = 2) -> int:
        return item * scale

    assert await fetch(3, scale=5) == 15
    assert fetch.__name__ == "fetch"
    assert fetch.__wrapped__ is not None  # type: ignore[attr-defined]


async def test_async_with_runs_guards_and_refuses_retry() -> None:
    limiter = ar.TokenBucket(1, 1.0, max_wait=0)
    breaker = ar.CircuitBreaker(failure_threshold=1)
    guards = Pipeline.builder().rate_limit(limiter).circuit_breaker(breaker).timeout(1).build()
    async with guards:
        pass
    with pytest.raises(ar.RateLimited):
        async with guards:
            pass
    await asyncio.sleep(1)
    with pytest.raises(OSError):
        async with guards:
            raise OSError("inside")
    assert breaker.state is ar.CircuitState.OPEN  # the breaker saw the body's failure
    with_retry = Pipeline.builder().retry().build()
    with pytest.raises(TypeError, match="cannot re-run its body, and retry would need to"):
        async with with_retry:
            pass


async def test_outcome_form_returns_instead_of_raising() -> None:
    pipeline = Pipeline.builder().retry(attempts=2, backoff=ar.constant(0)).build()

    async def boom() -> int:
        raise ValueError("bad")

    async def good() -> int:
        return 7

    failed = await pipeline.execute_outcome(boom)
    assert not failed.ok and isinstance(failed.exception, ValueError)
    with pytest.raises(ValueError, match="bad"):
        failed.unwrap()
    succeeded = await pipeline.execute_outcome(good)
    assert succeeded.ok and succeeded.unwrap() == 7


async def test_context_reaches_the_call_and_counts_attempts() -> None:
    seen: list[tuple[str | None, int, Any]] = []
    pipeline = Pipeline.builder().retry(attempts=3, backoff=ar.constant(0)).build()

    async def call() -> str:
        context = ar.current_context()
        assert context is not None
        seen.append((context.operation_key, context.attempt, context.properties.get("user")))
        if context.attempt < 3:
            raise OSError("again")
        return "ok"

    context = ResilienceContext(operation_key="get-user", properties={"user": 42})
    assert await pipeline.execute_in(context, call) == "ok"
    assert seen == [("get-user", 1, 42), ("get-user", 2, 42), ("get-user", 3, 42)]
    assert ar.current_context() is None


async def test_per_key_rate_limit_from_the_context() -> None:
    limiter = ar.TokenBucket(1, 1.0, max_wait=0)
    pipeline = Pipeline.builder().rate_limit(limiter, key=lambda c: c.properties["user"]).build()

    async def call() -> str:
        return "ok"

    for user in ("a", "b"):
        assert await pipeline.execute_in(ResilienceContext(properties={"user": user}), call)
    with pytest.raises(ar.RateLimited):
        await pipeline.execute_in(ResilienceContext(properties={"user": "a"}), call)


async def test_a_shared_breaker_serves_two_pipelines() -> None:
    breaker = ar.CircuitBreaker(failure_threshold=2)
    first = Pipeline.builder("first").circuit_breaker(breaker).build()
    second = Pipeline.builder("second").circuit_breaker(breaker).build()

    async def fail() -> None:
        raise OSError("down")

    for pipeline in (first, second):
        with pytest.raises(OSError):
            await pipeline.execute(fail)
    with pytest.raises(ar.CircuitBreakerOpenError):
        await first.execute(fail)


async def test_empty_pipeline_just_runs_the_call() -> None:
    pipeline = Pipeline.builder().build()

    async def call(x: int) -> int:
        return x + 1

    assert await pipeline.execute(call, 1) == 2
    assert repr(pipeline) == "<Pipeline 'pipeline': (no strategies)>"


def test_surprising_orders_warn_with_the_order_to_use() -> None:
    with pytest.warns(PipelineOrderWarning, match="put retry outside the circuit breaker"):
        Pipeline.builder().circuit_breaker().retry().build()
    with pytest.warns(PipelineOrderWarning, match="put the fallback outermost"):
        Pipeline.builder().retry().fallback("default").build()
    with pytest.warns(PipelineOrderWarning, match="put the bulkhead inside the retry"):
        Pipeline.builder().bulkhead(4).retry().build()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Pipeline.builder().fallback("x").timeout(10).retry().circuit_breaker().timeout(2).build()


def test_describe_and_repr() -> None:
    pipeline = (
        Pipeline.builder("payments")
        .timeout(10)
        .retry(attempts=4)
        .circuit_breaker(name="psp")
        .timeout(2)
        .build()
    )
    assert [step["kind"] for step in pipeline.describe()] == [
        "timeout",
        "retry",
        "circuit_breaker",
        "timeout",
    ]
    assert pipeline.describe()[1]["attempts"] == 4
    assert repr(pipeline) == (
        "<Pipeline 'payments': timeout('10s') -> retry('Retry') -> circuit_breaker('psp') "
        "-> timeout('2s')>"
    )


def test_registry() -> None:
    registry = PipelineRegistry()
    payments = registry.register(Pipeline.builder("payments").timeout(5).build())
    assert registry.get("payments") is payments and "payments" in registry
    with pytest.raises(ValueError, match="registered already"):
        registry.register(Pipeline.builder("payments").build())
    with pytest.raises(KeyError, match="no pipeline named 'orders' \\(registered: payments\\)"):
        registry.get("orders")


def test_builder_errors() -> None:
    builder = Pipeline.builder()
    builder.build()
    with pytest.raises(RuntimeError, match="cannot be added after build"):
        builder.timeout(1)
    with pytest.raises(ValueError, match="seconds must be >= 0 or None, got -1"):
        Pipeline.builder().timeout(-1)
    with pytest.raises(TypeError, match="policy must be a Retry"):
        Pipeline.builder().retry("three")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="give a Retry or options, not both"):
        Pipeline.builder().retry(ar.Retry(), attempts=2)
    with pytest.raises(TypeError, match="unexpected keyword argument 'retries'"):
        Pipeline.builder().retry(retries=3)
    with pytest.raises(TypeError, match="limiter must be a RateLimiter"):
        Pipeline.builder().rate_limit(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="name must be a non-empty str"):
        Pipeline.builder("")
    for seed in ("7", 1.5, True):  # at builder(), not at the first strategy given the seed
        with pytest.raises(TypeError, match=f"seed must be an int, got {seed!r}"):
            Pipeline.builder(seed=seed)  # type: ignore[arg-type]
    assert Pipeline.builder(seed=2**100).retry().circuit_breaker().build()

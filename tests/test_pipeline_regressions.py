"""Regressions from the pipeline review."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import pytest

import aioresilience as ar
from aioresilience import Pipeline, ResilienceContext, ResilienceEvent


@dataclass
class Response:
    status: int


def raise_on_exit(ticket: None, exc: BaseException | None, result: Any) -> None:
    raise ValueError("exit failed")


class ExitRaisingGuard(ar.Strategy):
    kind = "custom"

    def core(self) -> Any:
        return (lambda: None), raise_on_exit


async def ok() -> str:
    return "ok"


async def test_an_inner_guard_failing_on_exit_still_lets_outer_guards_exit() -> None:
    bulkhead = ar.Bulkhead(1)
    pipeline = Pipeline.builder().bulkhead(bulkhead).add(ExitRaisingGuard("bad")).build()
    with pytest.raises(ValueError, match="exit failed"):
        await pipeline.execute(ok)
    assert bulkhead.idle  # the slot came back


async def test_a_breaker_with_a_result_predicate_sees_the_result_in_a_pipeline() -> None:
    breaker = ar.CircuitBreaker(failure_threshold=1, failure_result=lambda r: r.status >= 500)
    pipeline = Pipeline.builder().circuit_breaker(breaker).build()

    async def healthy() -> Response:
        return Response(200)

    async def broken() -> Response:
        return Response(503)

    assert (await pipeline.execute(healthy)).status == 200
    assert breaker.state is ar.CircuitState.CLOSED
    assert (await pipeline.execute(broken)).status == 503
    assert breaker.state is ar.CircuitState.OPEN


async def test_async_with_pipeline_sets_the_context_for_strategies_and_listeners() -> None:
    heard: list[str] = []
    limiter = ar.TokenBucket(1, 1.0, max_wait=0)
    pipeline = Pipeline.builder("guards").rate_limit(limiter).timeout(5).build()
    pipeline.add_listener(lambda event: heard.append(event.name))
    async with pipeline:
        context = ar.current_context()
        assert context is not None and context.pipeline == "guards"
    assert ar.current_context() is None
    with pytest.raises(ar.RateLimited):
        async with pipeline:
            pass
    assert heard == ["rate_limited"]


async def test_execute_in_treats_the_context_as_a_template() -> None:
    template = ResilienceContext(operation_key="op", properties={"user": 1})
    pipeline = Pipeline.builder("a").retry(attempts=2, backoff=ar.constant(0)).build()
    attempts: list[int] = []

    async def flaky() -> str:
        context = ar.current_context()
        assert context is not None
        attempts.append(context.attempt)
        if context.attempt == 1:
            raise OSError("once")
        context.properties["seen"] = True
        return "ok"

    await pipeline.execute_in(template, flaky)
    await pipeline.execute_in(template, flaky)
    assert attempts == [1, 2, 1, 2]  # each call counts its own attempts
    assert template.attempt == 0 and template.pipeline is None
    assert template.properties == {"user": 1, "seen": True}  # the bag is shared on purpose


async def test_a_listener_whose_accepts_raises_does_not_break_the_call(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class Picky:
        def accepts(self, severity: int) -> bool:
            raise RuntimeError("accepts bug")

        def __call__(self, event: ResilienceEvent) -> None:
            pass

    pipeline = Pipeline.builder().retry(attempts=2, backoff=ar.constant(0)).build()
    pipeline.add_listener(Picky())
    with caplog.at_level(logging.ERROR, logger="aioresilience"):
        assert await pipeline.execute(ok) == "ok"
    assert "accepts bug" in caplog.text


async def test_hedge_waits_for_its_losers_even_when_cancelled_twice() -> None:
    alive: list[asyncio.Task[Any]] = []

    async def stubborn() -> None:
        alive.append(asyncio.current_task())  # type: ignore[arg-type]
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            await asyncio.sleep(1)  # takes a while to clean up
            raise

    pipeline = Pipeline.builder().hedge(max_hedged=1, delay=0, idempotent=True).build()
    task = asyncio.create_task(pipeline.execute(stubborn))
    await asyncio.sleep(0.1)
    task.cancel()
    await asyncio.sleep(0.1)
    task.cancel()  # cancelled again while it waits for the hedges to finish
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(alive) == 2 and all(t.done() for t in alive)


async def test_a_failure_that_starts_the_next_hedge_is_reported() -> None:
    heard: list[str] = []
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise OSError("first replica down")
        return "ok"

    pipeline = Pipeline.builder().hedge(max_hedged=1, delay=5, idempotent=True).build()
    pipeline.add_listener(lambda event: heard.append(event.name))
    assert await pipeline.execute(flaky) == "ok"
    assert heard.count("hedge_started") == 1


async def test_a_reused_chaos_fault_instance_keeps_a_short_traceback() -> None:
    fault = ConnectionError("injected")
    pipeline = Pipeline.builder(seed=1).chaos_fault(1.0, fault=fault).build()
    depths = []
    for _ in range(50):
        with pytest.raises(ConnectionError) as caught:
            await pipeline.execute(ok)
        assert caught.value is not fault
        depth, tb = 0, caught.value.__traceback__
        while tb is not None:
            depth, tb = depth + 1, tb.tb_next
        depths.append(depth)
    assert max(depths) == min(depths)


def test_builder_validates_at_build_time() -> None:
    limiter = ar.TokenBucket(5, 1.0)
    with pytest.raises(ValueError, match="cost must be >= 1, got -1"):
        Pipeline.builder().rate_limit(limiter, cost=-1)
    with pytest.raises(TypeError, match="fault must be an exception or a callable"):
        Pipeline.builder().chaos_fault(0.5, fault="oops")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="chaos_behavior decorates coroutine functions"):
        Pipeline.builder().chaos_behavior(0.5, lambda: None)  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="latency must be a positive finite number, got inf"):
        Pipeline.builder().chaos_latency(0.5, float("inf"))
    with pytest.raises(TypeError, match="bulkhead\\(\\) needs a Bulkhead or max_concurrent"):
        Pipeline.builder().bulkhead()
    with pytest.raises(ValueError, match="delay must be a finite number >= 0, got inf"):
        Pipeline.builder().hedge(delay=float("inf"), idempotent=True)
    with pytest.warns(ar.PipelineOrderWarning, match="circuit_breaker outside retry"):
        Pipeline.builder().retry().circuit_breaker().retry().build()


async def test_a_timeout_in_the_pipelines_async_with_keeps_its_cause() -> None:
    # As pipeline.execute does: TimeoutExceeded is raised from the cancellation it replaces.
    pipeline = ar.Pipeline.builder().timeout(1.0).build()
    with pytest.raises(ar.TimeoutExceeded) as caught:
        async with pipeline:
            await asyncio.sleep(5)
    assert isinstance(caught.value.__cause__, asyncio.CancelledError)

"""Guards a pipeline runs from their cores (``Strategy.core``, compiled into straight-line code)
behave exactly like the same guards in nested ``async with`` blocks (virtual time)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import aioresilience as ar
from aioresilience import Pipeline, Strategy
from aioresilience._support.compose import GuardStrategy
from aioresilience._support.guard import GuardForms


class Replacing(Strategy):
    """A guard whose way out raises ``error`` (chained to what it replaces), run from its core
    or, with ``direct=False``, through the overridden ``async with`` of a guard primitive."""

    def __init__(self, error: Exception, log: list[str], direct: bool = True) -> None:
        super().__init__(str(error))
        self.error, self.log, self.offers_direct = error, log, direct

    def enter(self) -> str:
        self.log.append(f"enter {self.name}")
        return self.name

    def leave(self, token: str, exc: BaseException | None, result: Any) -> None:
        self.log.append(f"leave {token} with {type(exc).__name__}")
        raise self.error

    def core(self) -> Any:
        if self.offers_direct:
            return self.enter, self.leave
        strategy = self

        class Guard(GuardForms):
            name = strategy.name

            async def __aenter__(self) -> None:
                self.token = strategy.enter()

            async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
                strategy.leave(self.token, exc, None)

        return GuardStrategy("custom", Guard()).core()


@pytest.mark.parametrize("direct", [True, False], ids=["direct", "async with"])
async def test_replacements_on_the_way_out_chain_like_nested_async_with(direct: bool) -> None:
    log: list[str] = []
    outer_error, inner_error = ValueError("outer"), KeyError("inner")
    pipeline = (
        Pipeline.builder()
        .add(Replacing(outer_error, log, direct))
        .add(Replacing(inner_error, log, direct))
        .build()
    )

    async def fail() -> None:
        raise OSError("orig")

    with pytest.raises(ValueError, match="outer") as caught:
        await pipeline.execute(fail)
    assert caught.value.__context__ is inner_error
    assert isinstance(inner_error.__context__, OSError)
    assert log == [
        "enter outer",
        "enter 'inner'",
        "leave 'inner' with OSError",
        "leave outer with KeyError",
    ]


async def test_a_guard_failing_on_a_clean_exit_is_seen_by_the_guards_outside() -> None:
    log: list[str] = []
    breaker = ar.CircuitBreaker(failure_threshold=1)
    pipeline = (
        Pipeline.builder().circuit_breaker(breaker).add(Replacing(KeyError("x"), log)).build()
    )

    async def ok() -> str:
        return "ok"

    with pytest.raises(KeyError):
        await pipeline.execute(ok)
    assert breaker.state is ar.CircuitState.OPEN  # the breaker saw the replacement


async def test_an_inner_refusal_lets_the_outer_guards_out() -> None:
    bulkhead = ar.Bulkhead(1)
    breaker = ar.CircuitBreaker()
    breaker.isolate()
    pipeline = Pipeline.builder().bulkhead(bulkhead).timeout(5).circuit_breaker(breaker).build()

    async def ok() -> str:
        return "ok"

    with pytest.raises(ar.CircuitBreakerOpenError):
        await pipeline.execute(ok)
    assert bulkhead.idle
    assert bulkhead.statistics().active == 0


async def test_the_inner_timeout_fires_and_the_breaker_outside_counts_it() -> None:
    breaker = ar.CircuitBreaker(failure_threshold=2)
    pipeline = Pipeline.builder().circuit_breaker(breaker).timeout(1).build()

    async def slow() -> None:
        await asyncio.sleep(5)

    for _ in range(2):
        with pytest.raises(ar.TimeoutExceeded):
            await pipeline.execute(slow)
    assert breaker.state is ar.CircuitState.OPEN
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_cancellation_from_outside_passes_through_and_counts_nowhere() -> None:
    bulkhead = ar.Bulkhead(2)
    breaker = ar.CircuitBreaker(failure_threshold=1)
    pipeline = (
        Pipeline.builder()
        .timeout(10)
        .bulkhead(bulkhead)
        .circuit_breaker(breaker)
        .timeout(5)
        .build()
    )
    started = asyncio.Event()

    async def slow() -> None:
        started.set()
        await asyncio.sleep(3)

    task = asyncio.ensure_future(pipeline.execute(slow))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is ar.CircuitState.CLOSED
    assert breaker.statistics().failures == 0
    assert bulkhead.idle
    assert ar.current_context() is None


async def test_waiting_guards_are_awaited_and_cancelling_a_waiter_leaks_nothing() -> None:
    limiter = ar.TokenBucket(1, 1.0)  # one now, the next in 1 s
    bulkhead = ar.Bulkhead(1, max_queue=5)
    pipeline = Pipeline.builder().bulkhead(bulkhead).rate_limit(limiter).build()
    loop = asyncio.get_running_loop()
    finished: list[float] = []

    async def work() -> None:
        await asyncio.sleep(0.5)
        finished.append(loop.time())

    start = loop.time()
    first = asyncio.ensure_future(pipeline.execute(work))
    second = asyncio.ensure_future(pipeline.execute(work))  # waits for the slot, then 1 s
    third = asyncio.ensure_future(pipeline.execute(work))
    await asyncio.sleep(0.1)
    third.cancel()  # cancelled while waiting for the bulkhead slot
    await asyncio.gather(first, second, return_exceptions=True)
    assert third.cancelled()
    assert [round(t - start, 3) for t in finished] == [0.5, 1.5]
    assert bulkhead.idle
    assert limiter.statistics().cancelled == 0  # the third never reached the limiter

    # Cancelled while waiting for the limiter (holding the bulkhead slot): both come back.
    waiter = asyncio.ensure_future(pipeline.execute(work))
    await asyncio.sleep(0)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert bulkhead.idle
    assert limiter.statistics().cancelled == 1
    await asyncio.sleep(1)
    assert limiter.try_acquire()  # the cancelled reservation was given back


async def test_the_context_is_current_inside_and_gone_after() -> None:
    seen: list[Any] = []
    pipeline = Pipeline.builder("ctx").timeout(5).bulkhead(3).build()

    async def look() -> None:
        context = ar.current_context()
        seen.append(None if context is None else context.pipeline)

    await pipeline.execute(look)
    assert seen == ["ctx"]
    assert ar.current_context() is None


async def ok() -> str:
    return "ok"


async def test_long_runs_of_guards_build_and_keep_their_order() -> None:
    """More guards with a way out than Python nests blocks: split into chained blocks."""
    log: list[str] = []
    builder = Pipeline.builder()
    for index in range(40):
        builder = builder.timeout(100 + index).add(Recording(str(index), log))
    pipeline = builder.build()
    assert await pipeline.execute(ok) == "ok"
    assert log == [f"enter {i}" for i in range(40)] + [f"leave {i}" for i in reversed(range(40))]


class Recording(Strategy):
    def __init__(self, name: str, log: list[str]) -> None:
        super().__init__(name)
        self.log = log

    def core(self) -> Any:
        def leave(token: None, *exc_info: object) -> None:
            self.log.append(f"leave {self.name}")

        return lambda: self.log.append(f"enter {self.name}"), leave


async def test_subclasses_that_change_async_with_are_entered_through_it() -> None:
    calls: list[str] = []

    class CountingBulkhead(ar.Bulkhead):
        def __aenter__(self) -> Any:
            calls.append("bulkhead enter")
            return super().__aenter__()

        def __aexit__(self, *exc_info: Any) -> Any:
            calls.append("bulkhead exit")
            return super().__aexit__(*exc_info)

    class CountingBreaker(ar.CircuitBreaker):
        def __aenter__(self) -> Any:
            calls.append("breaker enter")
            return super().__aenter__()

    class CountingLimiter(ar.TokenBucket):
        def __aenter__(self) -> Any:
            calls.append("limiter enter")
            return super().__aenter__()

    pipeline = (
        Pipeline.builder()
        .bulkhead(CountingBulkhead(2))
        .circuit_breaker(CountingBreaker())
        .rate_limit(CountingLimiter(5, 1.0))
        .build()
    )
    assert await pipeline.execute(ok) == "ok"
    assert calls == ["bulkhead enter", "breaker enter", "limiter enter", "bulkhead exit"]


async def test_blocks_compile_once_per_layout_and_show_in_tracebacks() -> None:
    import traceback

    from aioresilience._support import compose as _compose

    def build() -> Pipeline:
        return Pipeline.builder().timeout(5).retry(attempts=1).bulkhead(2).timeout(1).build()

    build()
    compiled = len(_compose._code_by_layout)
    for _ in range(20):
        build()
    assert len(_compose._code_by_layout) == compiled

    async def fail() -> None:
        raise OSError("boom")

    with pytest.raises(OSError) as caught:
        await build().execute(fail)
    text = "".join(traceback.format_exception(caught.value))
    assert "result = await" in text  # the generated line, not a blank one


async def test_a_logging_listener_subclass_keeps_its_own_accepts() -> None:
    import logging

    seen: list[str] = []

    class Everything(ar.LoggingListener):
        def accepts(self, severity: int) -> bool:
            return True

        def __call__(self, event: ar.ResilienceEvent) -> None:
            seen.append(event.name)

    pipeline = Pipeline.builder().timeout(5).build()
    pipeline.add_listener(Everything(logging.getLogger("aioresilience.test.quiet")))
    await pipeline.execute(ok)
    assert seen == ["pipeline_executed"]
    listener = ar.LoggingListener()
    with pytest.raises(AttributeError):
        listener.logger = logging.getLogger("other")  # type: ignore[misc]
    with pytest.raises(TypeError):
        listener.levels[ar.Severity.DEBUG] = logging.INFO  # type: ignore[index]

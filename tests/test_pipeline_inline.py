"""A retry's first attempt runs inline in the pipeline's compiled code (``Strategy._inline``):
every outcome is the same as through the retry's own ``execute`` (virtual time)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

import aioresilience as ar
from aioresilience import Pipeline
from aioresilience._retry import RetryStrategy


class ExecuteEveryTime(ar.Retry):
    """The same policy, declining the inline first attempt (it changes execute)."""

    async def execute(self, call: Callable[[], Awaitable[Any]], context: Any) -> Any:
        return await super().execute(call, context)


FORMS = pytest.mark.parametrize(
    "policy_class", [ar.Retry, ExecuteEveryTime], ids=["inline", "execute"]
)


def test_only_retrys_own_execute_runs_inline() -> None:
    assert RetryStrategy(ar.Retry())._inline() is not None
    assert RetryStrategy(ExecuteEveryTime())._inline() is None


def build(policy: ar.Retry, breaker: ar.CircuitBreaker) -> Pipeline:
    return (
        Pipeline.builder("p").timeout(60).retry(policy).circuit_breaker(breaker).timeout(5).build()
    )


@FORMS
@pytest.mark.parametrize("decorated", [False, True], ids=["execute", "@pipeline"])
async def test_a_retried_call_sees_the_same_attempts_events_and_notes(
    policy_class: type[ar.Retry], decorated: bool
) -> None:
    heard: list[tuple[str, int, float, float]] = []
    policy = policy_class(attempts=3, backoff=ar.constant(0.5), name="r")
    policy.add_listener(lambda e: heard.append((e.name, e.attempt, e.elapsed, e.delay)))  # type: ignore[attr-defined]
    breaker = ar.CircuitBreaker(failure_threshold=10)
    pipeline = build(policy, breaker)
    attempts: list[int] = []

    async def flaky(fail: int) -> str:
        context = ar.current_context()
        assert context is not None
        attempts.append(context.attempt)
        await asyncio.sleep(0.25)
        if len(attempts) <= fail:
            raise OSError(f"down {len(attempts)}")
        return "ok"

    run = pipeline(flaky) if decorated else (lambda fail: pipeline.execute(flaky, fail))
    assert await run(2) == "ok"
    assert attempts == [1, 2, 3]
    assert [h[:2] for h in heard] == [("retry_scheduled", 1), ("retry_scheduled", 2)]
    assert [h[2:] for h in heard] == [(0.25, 0.5), (1.0, 0.5)]
    attempts.clear()
    heard.clear()
    with pytest.raises(OSError) as caught:
        await run(5)
    assert str(caught.value) == "down 3"
    assert caught.value.__notes__ == [
        "r: gave up after 3 attempt(s) in 1.750s (attempts): "
        "#1 OSError: down 1; #2 OSError: down 2; #3 OSError: down 3"
    ]
    # Later attempts' exceptions do not carry the first one as their context.
    assert caught.value.__context__ is None
    assert [h[0] for h in heard] == ["retry_scheduled", "retry_scheduled", "retry_gave_up"]
    assert breaker.statistics().failures == 5


@FORMS
async def test_a_cancelled_first_attempt_is_not_retried_nor_counted(
    policy_class: type[ar.Retry],
) -> None:
    breaker = ar.CircuitBreaker()
    pipeline = build(policy_class(attempts=3), breaker)
    calls = 0

    async def slow() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(10)

    task = asyncio.ensure_future(pipeline.execute(slow))
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1
    assert breaker.statistics().failures == 0
    assert ar.current_context() is None


@FORMS
async def test_an_inner_timeout_is_retried_and_the_outer_one_is_not(
    policy_class: type[ar.Retry],
) -> None:
    pipeline = (
        Pipeline.builder()
        .timeout(3)
        .retry(policy_class(attempts=5, backoff=ar.constant(0)))
        .timeout(1)
        .build()
    )
    calls = 0

    async def hang() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(100)

    started = asyncio.get_running_loop().time()
    with pytest.raises(ar.TimeoutExceeded) as caught:
        await pipeline.execute(hang)
    assert caught.value.seconds == 3
    assert calls == 3
    assert asyncio.get_running_loop().time() - started == pytest.approx(3)


async def test_a_budget_a_result_judge_or_a_timing_listener_runs_execute() -> None:
    """Where the first attempt needs more than a clock reading, the retry's execute runs."""
    budget = ar.RetryBudget.tokens(max_tokens=10)
    judged = Pipeline.builder().retry(attempts=3, retry_on_result=lambda r: r is None).build()
    budgeted = Pipeline.builder().retry(attempts=3, budget=budget).build()
    timed = Pipeline.builder().retry(attempts=3).timeout(1).build()
    events: list[str] = []
    timed.add_listener(lambda e: events.append(e.name))
    answers = iter([None, None, "third"])

    async def answer() -> str | None:
        return next(answers)

    assert await judged.execute(answer) == "third"
    assert await budgeted.execute(_ok) == "ok"
    assert await timed.execute(_ok) == "ok"
    assert events == ["attempt", "pipeline_executed"]


async def _ok() -> str:
    return "ok"


async def test_long_chains_of_retries_and_guards_build_and_run() -> None:
    """More nested blocks than Python allows: the chain goes on in runners of its own."""
    builder = Pipeline.builder()
    for index in range(12):
        builder = builder.retry(attempts=2, backoff=ar.constant(0)).timeout(100 + index)
    pipeline = builder.build()
    seen: list[int] = []

    async def once_flaky() -> str:
        context = ar.current_context()
        assert context is not None
        seen.append(context.attempt)
        if len(seen) == 1:
            raise OSError("first")
        return "ok"

    assert await pipeline.execute(once_flaky) == "ok"
    assert seen == [12, 13]  # each retry's first attempt counts; the innermost retried once


async def test_execute_and_the_decorator_keep_a_subclass_override_and_the_signature() -> None:
    calls: list[str] = []

    class Counting(Pipeline):
        def execute(self, fn: Any, /, *args: Any, **kwargs: Any) -> Any:
            calls.append("execute")
            return super().execute(fn, *args, **kwargs)

    pipeline = Counting((RetryStrategy(ar.Retry()),), "counting")
    assert await pipeline.execute(_ok) == "ok"

    @pipeline
    async def hello(name: str, punctuation: str = "!") -> str:
        return f"hello {name}{punctuation}"

    assert await hello("you") == "hello you!"
    assert calls == ["execute", "execute"]
    plain = Pipeline.builder().retry().build()
    wrapped = plain(hello.__wrapped__)  # type: ignore[attr-defined]
    assert inspect.signature(wrapped) == inspect.signature(hello.__wrapped__)  # type: ignore[attr-defined]
    assert wrapped.__name__ == "hello"
    assert inspect.iscoroutinefunction(wrapped)
    assert await wrapped("me", punctuation="?") == "hello me?"
    assert plain.execute.__doc__ == Pipeline.execute.__doc__


async def test_the_entrys_context_is_the_one_resiliencecontext_would_make() -> None:
    """The way in makes the call's context with ResilienceContext.__init__'s stores inline:
    every field of the dataclass, with the same values."""
    import dataclasses

    from aioresilience._support.context import ResilienceContext

    pipeline = Pipeline.builder("made").retry().timeout(1).build()
    seen: list[Any] = []

    async def look() -> None:
        seen.append(ar.current_context())

    await pipeline.execute(look)
    await pipeline(look)()
    expected = ResilienceContext(None, 1, {}, "made", pipeline._listeners)
    names = {f.name for f in dataclasses.fields(ResilienceContext)}
    assert names == {"operation_key", "attempt", "properties", "pipeline", "listeners", "_timed"}
    for context in seen:
        assert type(context) is ResilienceContext
        for name in names:
            assert getattr(context, name) == getattr(expected, name)
    assert seen[0].properties is not seen[1].properties

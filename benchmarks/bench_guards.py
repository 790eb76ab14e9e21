"""Guards on the path where nothing goes wrong, against the peers.

- breaker closed path: a call through a closed breaker (aioresilience, hyx, aiobreaker,
  purgatory), each in its decorator form, plus our ``call`` and ``async with``;
- retry whose first attempt succeeds (aioresilience, hyx, backoff, tenacity, stamina);
- timeout that does not fire (aioresilience ``timeout``, ``asyncio.timeout``,
  ``anyio.fail_after``);
- bulkhead uncontended (``asyncio.Semaphore``, hyx), queue put+get pair (``asyncio.Queue``),
  adaptive limiter admit+release (``asyncio.Semaphore``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from harness import RunN, trivial, with_guard

import aioresilience as ar

Decorator = Callable[[Callable[[], Coroutine[Any, Any, None]]], Callable[[], Any]]


def decorated(make_decorator: Callable[[], Decorator]) -> Callable[[], RunN]:
    """A case that awaits ``trivial`` wrapped by the decorator ``make_decorator()`` gives."""

    def make() -> RunN:
        wrapped = make_decorator()(trivial)

        async def run(n: int) -> None:
            for _ in range(n):
                await wrapped()

        return run

    return make


def ours_breaker_call() -> RunN:
    breaker = ar.CircuitBreaker()

    async def run(n: int) -> None:
        call, f = breaker.call, trivial
        for _ in range(n):
            await call(f)

    return run


def hyx_breaker() -> Decorator:
    from hyx.circuitbreaker import consecutive_breaker

    return consecutive_breaker()  # type: ignore[no-any-return]


def aiobreaker_breaker() -> Decorator:
    from aiobreaker import CircuitBreaker

    return CircuitBreaker()  # type: ignore[no-any-return]


def purgatory_breaker() -> Decorator:
    from purgatory import AsyncCircuitBreakerFactory

    return AsyncCircuitBreakerFactory(default_threshold=5)("bench")  # type: ignore[no-any-return]


def breaker_cases() -> dict[str, Callable[[], RunN]]:
    return {
        "aioresilience CircuitBreaker @decorator": decorated(ar.CircuitBreaker),
        "aioresilience CircuitBreaker.call": ours_breaker_call,
        "aioresilience CircuitBreaker async with": with_guard(ar.CircuitBreaker),
        "hyx consecutive_breaker @decorator": decorated(hyx_breaker),
        "aiobreaker CircuitBreaker @decorator": decorated(aiobreaker_breaker),
        "purgatory AsyncCircuitBreakerFactory @decorator": decorated(purgatory_breaker),
    }


def hyx_retry() -> Decorator:
    from hyx.retry import retry

    return retry(attempts=3)  # type: ignore[no-any-return]


def backoff_retry() -> Decorator:
    import backoff

    return backoff.on_exception(backoff.expo, Exception, max_tries=3)  # type: ignore[no-any-return]


def tenacity_retry() -> Decorator:
    import tenacity

    return tenacity.retry(stop=tenacity.stop_after_attempt(3))  # type: ignore[no-any-return]


def stamina_retry() -> Decorator:
    import stamina

    return stamina.retry(on=Exception, attempts=3)  # type: ignore[no-any-return]


def retry_cases() -> dict[str, Callable[[], RunN]]:
    return {
        "aioresilience Retry @decorator": decorated(lambda: ar.Retry(attempts=3)),
        "hyx retry @decorator": decorated(hyx_retry),
        "backoff on_exception @decorator": decorated(backoff_retry),
        "tenacity retry @decorator": decorated(tenacity_retry),
        "stamina retry @decorator": decorated(stamina_retry),
    }


def ours_timeout() -> RunN:
    async def run(n: int) -> None:
        f, limit = trivial, ar.timeout
        for _ in range(n):
            async with limit(10):
                await f()

    return run


def asyncio_timeout() -> RunN:
    import asyncio

    async def run(n: int) -> None:
        f, limit = trivial, asyncio.timeout
        for _ in range(n):
            async with limit(10):
                await f()

    return run


def anyio_fail_after() -> RunN:
    import anyio

    async def run(n: int) -> None:
        f, limit = trivial, anyio.fail_after
        for _ in range(n):
            with limit(10):
                await f()

    return run


def timeout_cases() -> dict[str, Callable[[], RunN]]:
    return {
        "aioresilience timeout(10)": ours_timeout,
        "asyncio.timeout(10)": asyncio_timeout,
        "anyio.fail_after(10)": anyio_fail_after,
    }


# -- capacity: bulkhead, queue, adaptive limiter --------------------------------------------------


def hyx_bulkhead() -> Any:
    from hyx.bulkhead import bulkhead

    return bulkhead(max_concurrency=10, max_capacity=10)


def semaphore() -> Any:
    import asyncio

    return asyncio.Semaphore(10)


def bulkhead_cases() -> dict[str, Callable[[], RunN]]:
    return {
        "aioresilience Bulkhead async with": with_guard(lambda: ar.Bulkhead(10)),
        "aioresilience Bulkhead @decorator": decorated(lambda: ar.Bulkhead(10)),
        "asyncio.Semaphore async with": with_guard(semaphore),
        "hyx bulkhead async with": with_guard(hyx_bulkhead),
    }


def queue_pair(make_queue: Callable[[], Any]) -> Callable[[], RunN]:
    """``await put(i)`` then ``await get()``: one pair per op, never blocking."""

    def make() -> RunN:
        queue = make_queue()

        async def run(n: int) -> None:
            put, get = queue.put, queue.get
            for i in range(n):
                await put(i)
                await get()

        return run

    return make


def queue_cases() -> dict[str, Callable[[], RunN]]:
    import asyncio

    return {
        "aioresilience BackpressureQueue put+get": queue_pair(lambda: ar.BackpressureQueue(100)),
        "asyncio.Queue put+get": queue_pair(lambda: asyncio.Queue(100)),
    }


def adaptive_cases() -> dict[str, Callable[[], RunN]]:
    return {
        "aioresilience AdaptiveLimiter(AIMD) async with": with_guard(
            lambda: ar.AdaptiveLimiter(ar.AIMD(), initial_limit=100)
        ),
        "aioresilience AdaptiveLimiter(Vegas) async with": with_guard(
            lambda: ar.AdaptiveLimiter(ar.Vegas(), initial_limit=100)
        ),
        "asyncio.Semaphore async with": with_guard(semaphore),
    }


# -- pipeline -----------------------------------------------------------------------------------


def five_strategies() -> ar.Pipeline:
    """timeout (outer) -> rate limit -> retry -> circuit breaker -> timeout (inner)."""
    return (
        ar.Pipeline.builder("bench")
        .timeout(10)
        .rate_limit(ar.TokenBucket(10**12, 1e9))
        .retry(attempts=3)
        .circuit_breaker()
        .timeout(2)
        .build()
    )


def pipeline_execute(make_pipeline: Callable[[], ar.Pipeline]) -> Callable[[], RunN]:
    def make() -> RunN:
        execute = make_pipeline().execute

        async def run(n: int) -> None:
            f = trivial
            for _ in range(n):
                await execute(f)

        return run

    return make


def by_hand() -> Decorator:
    """The same five primitives composed by hand: nested ``async with`` and ``@retry``."""
    limiter, breaker = ar.TokenBucket(10**12, 1e9), ar.CircuitBreaker()
    retry = ar.retry(attempts=3)

    def stack(fn: Any) -> Any:
        @retry
        async def attempt() -> Any:
            async with breaker, ar.timeout(2):
                return await fn()

        async def call() -> Any:
            async with ar.timeout(10), limiter:
                return await attempt()

        return call

    return stack


def hyx_stack() -> Decorator:
    from hyx.circuitbreaker import consecutive_breaker
    from hyx.ratelimit import tokenbucket
    from hyx.retry import retry
    from hyx.timeout import timeout

    def stack(fn: Any) -> Any:
        inner = timeout(2)(fn)
        inner = consecutive_breaker()(inner)
        inner = retry(attempts=3)(inner)
        inner = tokenbucket(10**12, 1.0)(inner)
        return timeout(10)(inner)

    return stack


def with_disabled_logging() -> ar.Pipeline:
    import logging

    logger = logging.getLogger("aioresilience.bench")
    logger.setLevel(logging.CRITICAL)  # every event's level is disabled
    pipeline = five_strategies()
    pipeline.add_listener(ar.LoggingListener(logger))
    return pipeline


def pipeline_pairs() -> dict[str, tuple[Callable[[], RunN], Callable[[], RunN]]]:
    """Small differences measured in adjacent pairs (harness.paired_overhead)."""
    return {
        "LoggingListener attached, level disabled": (
            pipeline_execute(five_strategies),
            pipeline_execute(with_disabled_logging),
        ),
        "@pipeline instead of pipeline.execute": (
            pipeline_execute(five_strategies),
            decorated(lambda: five_strategies()),
        ),
    }


def pipeline_cases() -> dict[str, Callable[[], RunN]]:
    return {
        "aioresilience empty Pipeline.execute": pipeline_execute(
            lambda: ar.Pipeline.builder().build()
        ),
        "aioresilience 5-strategy Pipeline.execute": pipeline_execute(five_strategies),
        "aioresilience 5-strategy @pipeline": decorated(lambda: five_strategies()),
        "aioresilience 5-strategy + LoggingListener (level disabled)": pipeline_execute(
            with_disabled_logging
        ),
        "aioresilience primitives nested by hand (same order)": decorated(by_hand),
        "hyx 5 decorators stacked (same order)": decorated(hyx_stack),
    }

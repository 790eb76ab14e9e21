"""Circuit breaker, retry and timeout: the path where nothing goes wrong, against the peers.

- breaker closed path: a call through a closed breaker (aioresilience, hyx, aiobreaker,
  purgatory), each in its decorator form, plus our ``call`` and ``async with``;
- retry whose first attempt succeeds (aioresilience, hyx, backoff, tenacity, stamina);
- timeout that does not fire (aioresilience ``timeout``, ``asyncio.timeout``,
  ``anyio.fail_after``).
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from harness import RunN, trivial

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


def ours_breaker_with() -> RunN:
    breaker = ar.CircuitBreaker()

    async def run(n: int) -> None:
        f = trivial
        for _ in range(n):
            async with breaker:
                await f()

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
        "aioresilience CircuitBreaker async with": ours_breaker_with,
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

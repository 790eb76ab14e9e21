"""Retry + circuit breaker + timeout around a flaky dependency (runs in virtual time).

The dependency fails for its first 4 seconds, then hangs once, then recovers. Each call gets a
2 s timeout; the breaker opens after 3 consecutive failures for 5 s; the retry waits out the
open breaker (its retry_after) instead of hammering it. Every event is printed with its time.

    python examples/resilient_call.py
"""

from __future__ import annotations

import asyncio

import aioresilience as ar
from aioresilience.testing import run


async def main() -> None:
    loop = asyncio.get_running_loop()
    hung = False

    def log(message: str) -> None:
        print(f"t={loop.time():6.2f}s  {message}")

    async def dependency() -> str:
        nonlocal hung
        if loop.time() < 4.0:
            raise ConnectionError("connection refused")
        if not hung:
            hung = True
            await asyncio.sleep(3600)  # hangs: only the timeout gets us out
        return "200 OK"

    breaker = ar.CircuitBreaker(
        name="dependency",
        failure_threshold=3,
        break_duration=5.0,
        on_state_change=[lambda e: log(f"breaker {e.old.value} -> {e.new.value}")],
    )

    @breaker
    @ar.timeout(2.0)
    async def call() -> str:
        return await dependency()

    policy = ar.Retry(
        attempts=10,
        backoff=ar.exponential(0.5, cap=4.0, jitter="none"),
        retry_rejections=True,
        before_sleep=lambda s: log(
            f"attempt {s.attempt} failed ({type(s.exception).__name__}); retry in {s.delay:.2f}s"
        ),
    )
    log(f"result: {await policy.call(call)}")
    print(breaker.statistics())


if __name__ == "__main__":
    run(main())

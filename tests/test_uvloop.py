"""The guards run unchanged on uvloop (real loop, no sleeping: nothing here waits)."""

from __future__ import annotations

import asyncio

import pytest

import aioresilience as ar

uvloop = pytest.importorskip("uvloop")


def test_guards_on_uvloop() -> None:
    async def main() -> list[object]:
        limiter = ar.TokenBucket(2, 1.0)
        breaker = ar.CircuitBreaker(failure_threshold=1)
        seen: list[object] = []
        async with limiter, breaker, ar.timeout(5):
            seen.append("inside")
        assert limiter.try_acquire()
        assert not limiter.try_acquire()
        with pytest.raises(ar.RateLimited):
            await limiter.acquire(timeout=0)

        @ar.retry(attempts=2, backoff=ar.constant(0))
        async def flaky(state: list[int]) -> str:
            state.append(1)
            if len(state) < 2:
                raise OSError("once")
            return "ok"

        seen.append(await flaky([]))
        with pytest.raises(ar.TimeoutExceeded):
            async with ar.timeout(0):
                await asyncio.sleep(1)
        seen.append(type(asyncio.get_running_loop()).__module__)
        return seen

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(main()) == ["inside", "ok", "uvloop"]

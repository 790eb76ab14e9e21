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


def test_timeouts_cancel_their_own_task_on_uvloop() -> None:
    """On uvloop the current task is found through the loop's async-generator hooks: among
    tasks that interleave, each timeout cancels exactly the task that entered it."""

    async def guarded(seconds: float, sleep: float) -> str:
        try:
            async with ar.timeout(seconds):
                await asyncio.sleep(sleep)
        except ar.TimeoutExceeded:
            return "timed out"
        return "finished"

    async def main() -> list[str]:
        plan = [(0.01, 0.05), (0.05, 0), (0.02, 0.04), (1, 0.001)] * 3
        return list(await asyncio.gather(*(guarded(s, d) for s, d in plan)))

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        assert runner.run(main()) == ["timed out", "finished", "timed out", "finished"] * 3


def test_a_timeout_outside_any_task_is_refused_on_uvloop() -> None:
    """Driven by hand from a loop callback (no task), with uvloop's hooks installed: the
    shortcut finds no task for the loop, and the timeout says so."""

    async def guarded() -> None:
        async with ar.timeout(1):
            pass

    async def main() -> BaseException:
        loop = asyncio.get_running_loop()
        seen: asyncio.Future[BaseException] = loop.create_future()

        def drive() -> None:
            coroutine = guarded()
            try:
                coroutine.send(None)
            except BaseException as exc:
                seen.set_result(exc)

        loop.call_soon(drive)
        return await seen

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        error = runner.run(main())
    assert isinstance(error, RuntimeError) and "inside a task" in str(error)

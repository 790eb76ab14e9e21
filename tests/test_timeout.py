"""timeout(): fires, does not fire, outer cancellation vs own expiry, nesting, shielding."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import threading
import weakref

import pytest

from aioresilience import ResilienceError, TimeoutExceeded, timeout
from aioresilience import _timeout as timeout_module


async def test_fires_at_the_deadline_and_cancels_the_work() -> None:
    loop = asyncio.get_running_loop()
    cancelled = []

    async def work() -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled.append(loop.time())
            raise

    async def guarded() -> None:
        async with timeout(2) as nothing:
            assert nothing is None
            await work()

    with pytest.raises(TimeoutExceeded) as caught:
        await guarded()
    assert cancelled == [2.0]
    assert loop.time() == 2.0
    assert isinstance(caught.value, TimeoutError)
    assert isinstance(caught.value, ResilienceError)
    assert isinstance(caught.value.__cause__, asyncio.CancelledError)
    assert caught.value.seconds == 2
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_does_not_fire_when_the_work_finishes_in_time() -> None:
    guard = timeout(2)
    async with guard:
        await asyncio.sleep(1.999)
    assert not guard.expired
    await asyncio.sleep(5)  # the lane's timer firing later must not touch this task
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_outer_cancellation_passes_through_unchanged() -> None:
    started = asyncio.Event()

    async def guarded() -> None:
        async with timeout(10):
            started.set()
            await asyncio.sleep(100)

    task = asyncio.create_task(guarded())
    await started.wait()
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert task.cancelled()


async def test_outer_cancel_at_the_same_moment_as_expiry_stays_a_cancellation() -> None:
    async def guarded() -> None:
        async with timeout(1):
            await asyncio.sleep(100)

    task = asyncio.create_task(guarded())
    await asyncio.sleep(1)  # the deadline's timer and our cancel land in the same turn
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_nested_timeouts_report_the_one_that_expired() -> None:
    loop = asyncio.get_running_loop()

    async def nested(outer: timeout, inner: timeout) -> None:
        async with outer, inner:
            await asyncio.sleep(10)

    outer, inner = timeout(5), timeout(1)
    with pytest.raises(TimeoutExceeded) as caught:
        await nested(outer, inner)
    assert caught.value.seconds == 1 and inner.expired and not outer.expired
    assert loop.time() == 1.0

    outer, inner = timeout(1), timeout(5)
    with pytest.raises(TimeoutExceeded) as caught:
        await nested(outer, inner)
    assert caught.value.seconds == 1 and outer.expired and not inner.expired
    assert loop.time() == 2.0


async def test_inner_timeout_caught_inside_outer_does_not_leak_cancellation() -> None:
    async with timeout(10):
        with pytest.raises(TimeoutExceeded):
            async with timeout(1):
                await asyncio.sleep(5)
        await asyncio.sleep(1)  # still running normally under the outer timeout
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_cancelled_while_the_inner_work_is_shielded() -> None:
    loop = asyncio.get_running_loop()
    finished = []

    async def critical() -> str:
        await asyncio.sleep(3)
        finished.append(loop.time())
        return "saved"

    inner = asyncio.ensure_future(critical())
    with pytest.raises(TimeoutExceeded):
        async with timeout(1):
            await asyncio.shield(inner)
    assert loop.time() == 1.0
    assert await inner == "saved"  # the shielded work went on
    assert finished == [3.0]


async def test_body_that_swallows_the_cancellation_is_not_a_timeout() -> None:
    guard = timeout(1)
    async with guard:
        with contextlib.suppress(asyncio.CancelledError):  # the body swallows it
            await asyncio.sleep(5)
    assert guard.expired
    # The pending cancel request was taken back by uncancel(); the task runs on.
    assert asyncio.current_task().cancelling() == 0  # type: ignore[union-attr]


async def test_many_concurrent_calls_share_one_timer_and_expire_in_order() -> None:
    loop = asyncio.get_running_loop()
    outcomes: list[tuple[int, str, float]] = []

    async def call(i: int) -> None:
        try:
            async with timeout(2):
                await asyncio.sleep(0.5 if i % 2 else 5)
            outcomes.append((i, "done", loop.time()))
        except TimeoutExceeded:
            outcomes.append((i, "timeout", loop.time()))

    tasks = []
    for i in range(100):
        tasks.append(asyncio.create_task(call(i)))
        await asyncio.sleep(0.01)
    await asyncio.gather(*tasks)
    for i, outcome, at in outcomes:
        assert outcome == ("done" if i % 2 else "timeout")
        expected = i * 0.01 + (0.5 if i % 2 else 2.0)
        assert at == pytest.approx(expected, abs=1e-9)
    lane = timeout_module._lane(loop, 2.0)
    assert lane.finished == 0 and not lane.entries


async def test_lane_memory_stays_bounded_when_calls_finish_out_of_order() -> None:
    loop = asyncio.get_running_loop()
    blocker = asyncio.create_task(_sleep_under(60, 59))  # the oldest entry stays
    await asyncio.sleep(0)
    release = asyncio.Event()

    async def held() -> None:
        async with timeout(60):
            await release.wait()

    middle = [asyncio.create_task(held()) for _ in range(1000)]
    await asyncio.sleep(0)
    newest = asyncio.create_task(_sleep_under(60, 30))  # and so does the newest
    await asyncio.sleep(0)
    lane = timeout_module._lane(loop, 60.0)
    assert len(lane.entries) == 1002
    release.set()
    await asyncio.gather(*middle)  # all finish between the two: none can leave from an end
    live = [e for e in lane.entries if e.state < timeout_module._EXPIRED]
    assert len(live) == 2
    assert len(lane.entries) <= 2 * len(live) + 64
    await newest
    await blocker
    assert not lane.entries and lane.finished == 0


async def _sleep_under(limit: float, seconds: float) -> None:
    async with timeout(limit):
        await asyncio.sleep(seconds)


async def test_decorator_keeps_the_signature_and_times_out() -> None:
    @timeout(1)
    async def fetch(x: int) -> int:
        await asyncio.sleep(x)
        return x

    assert fetch.__name__ == "fetch"
    assert await fetch(0) == 0
    with pytest.raises(TimeoutExceeded):
        await fetch(2)
    with pytest.raises(TypeError, match="coroutine functions"):
        timeout(1)(lambda: None)  # type: ignore[arg-type,return-value]


async def test_none_means_no_limit_and_zero_expires_at_once() -> None:
    async with timeout(None) as _:
        await asyncio.sleep(10_000)
    with pytest.raises(TimeoutExceeded):
        await _sleep_under(0, 1)


async def test_reuse_and_bad_input() -> None:
    guard = timeout(1)
    async with guard:
        pass
    with pytest.raises(RuntimeError, match="entered only once"):
        await guard.__aenter__()
    with pytest.raises(ValueError, match="seconds must be >= 0 or None, got -1"):
        timeout(-1)
    with pytest.raises(TypeError, match="seconds must be a number or None"):
        timeout("1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="seconds must be >= 0 or None, got nan"):
        timeout(float("nan"))


def test_lanes_do_not_keep_closed_loops_alive() -> None:
    loop = asyncio.new_event_loop()

    async def use() -> None:
        async with timeout(1):
            pass

    loop.run_until_complete(use())
    assert loop in timeout_module._lanes
    loop.close()
    timeout_module._last = (None, {}, False)
    gone = weakref.ref(loop)
    del loop
    gc.collect()
    assert gone() is None


def test_loops_in_two_threads_each_cancel_their_own_task() -> None:
    """The task lookup remembers the last loop; another thread's loop must not confuse it."""
    outcomes: dict[str, list[str]] = {}

    async def expire_many(name: str) -> None:
        results = outcomes.setdefault(name, [])
        for _ in range(100):
            try:
                async with timeout(0):
                    await asyncio.sleep(0.0005)
                results.append("finished")
            except TimeoutExceeded:
                results.append("timeout")

    threads = [
        threading.Thread(target=asyncio.run, args=(expire_many(name),)) for name in ("a", "b")
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes == {"a": ["timeout"] * 100, "b": ["timeout"] * 100}

"""Fresh-eyes review of the merged issue-11 fixes: each test showed a defect on the merged
main (i11-review's base)."""

from __future__ import annotations

import asyncio
import itertools
import threading

import pytest

from aioresilience import GCRA, Bulkhead, LeakyBucket, RateLimited

EPS = 1e-6


# -- item 1: a late loop releases a backlog at once (no cancellation at all) ------------------


async def test_a_late_loop_does_not_release_the_waiters_backlog_at_once() -> None:
    """The issue's GCRA(10, 1.0) scenario without the cancellation: A admitted, W, X, B
    reserved for +0.1/+0.2/+0.3, and the loop is busy from +0.05 to +0.35. The limit says
    >= 100 ms between admissions, yet W, X and B all resume at +0.35, 0 ms apart: one late
    wake-up releases every waiter whose slot is in the past, on that stale slot. (The merged
    test of the same scenario, with W cancelled after its wake-up, passes only because the
    cancellation replans X and B at `now`; cancel W a moment later, once the late wake-up
    released X and B too, and they resume 0 ms apart again, as the merged
    test_woken_waiter_cancelled_after_the_ones_behind_it_were_released accepts.)"""
    loop = asyncio.get_running_loop()
    limiter = GCRA(10, 1.0)
    assert limiter.try_acquire()
    t0 = loop.time()
    times: dict[str, float] = {}

    async def caller(name: str) -> None:
        await limiter.acquire()
        times[name] = loop.time() - t0

    tasks = [asyncio.create_task(caller(name)) for name in "WXB"]
    await asyncio.sleep(0)
    assert limiter.statistics().waiting == 3
    loop.call_at(t0 + 0.05, loop.advance, 0.3)  # a callback that holds the loop for 0.3 s
    await asyncio.gather(*tasks)
    admitted = sorted(times.values())
    gaps = [b - a for a, b in itertools.pairwise(admitted)]
    assert all(gap >= 0.1 - EPS for gap in gaps), times
    assert not limiter.try_acquire()


# -- items 13/14: a bounded wait on the shaper announces a retry_after that is refused again -----


async def test_shaper_bounded_wait_sleeping_retry_after_is_enough() -> None:
    """LeakyBucket(2, 2.0, mode="shaper") with its line clear at 1.0: acquire(2, timeout=0.3)
    at 0 is refused (the line is full) with retry_after=0.7, "once its wait is within
    max_wait". After sleeping exactly 0.7 the same acquire is refused again, with
    retry_after=0.30000000000000004: the announced time (at - max_wait, a float difference)
    and the test made there (due(...) - now > max_wait, floats again) disagree by an ulp."""
    shaper = LeakyBucket(2, 2.0, mode="shaper")
    assert shaper.try_acquire(2)
    with pytest.raises(RateLimited) as refused:
        await shaper.acquire(2, timeout=0.3)
    retry_after = refused.value.retry_after
    assert retry_after is not None
    await asyncio.sleep(retry_after)
    await shaper.acquire(2, timeout=0.3)  # raised RateLimited(retry_after=0.30000000000000004)


# -- item 4: run_sync's slot is held by a task anyone can cancel ------------------------------


async def test_run_sync_slot_survives_cancelling_every_task() -> None:
    """The slot of a running thread is held by an internal task (the 'holder'), which is an
    ordinary task in asyncio.all_tasks(): a shutdown or supervisor that cancels every task
    (aiohttp's run_app cleanup, a 'cancel all but me' loop) cancels it, its ``finally``
    releases the slot and anyio gives back the thread token while the thread still runs, and
    the next run_sync starts a second thread inside Bulkhead(1)."""
    bulkhead = Bulkhead(1)
    go_on = threading.Event()
    first_started = threading.Event()
    lock = threading.Lock()
    running = peak = 0

    def blocking(first: bool) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        if first:
            first_started.set()
            go_on.wait(10)
        with lock:
            running -= 1

    caller = asyncio.create_task(bulkhead.run_sync(blocking, True))
    await asyncio.to_thread(first_started.wait, 10)
    me = asyncio.current_task()
    for task in asyncio.all_tasks():
        if task is not me:
            task.cancel()
    await asyncio.gather(caller, return_exceptions=True)
    await asyncio.sleep(0)
    try:
        assert running == 1  # the first thread still runs ...
        assert bulkhead.statistics().active == 1  # ... holding its slot
        second = asyncio.create_task(bulkhead.run_sync(blocking, False))
        await asyncio.sleep(0.01)
        assert peak == 1, "two threads inside Bulkhead(1)"
    finally:
        go_on.set()
    await asyncio.wait_for(asyncio.gather(second, return_exceptions=True), 5)

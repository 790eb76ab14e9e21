"""Bulkhead in virtual time: cap, FIFO queue, waits, cancellation at every await, threads."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from typing import Any

import pytest

import aioresilience as ar
from aioresilience import Bulkhead, BulkheadFull, PartitionedBulkhead, Rejected


async def hold(bulkhead: Bulkhead, seconds: float, log: list[str], name: str) -> None:
    async with bulkhead:
        log.append(f"{name}+")
        await asyncio.sleep(seconds)
        log.append(f"{name}-")


async def test_caps_concurrency_and_serves_the_queue_fifo() -> None:
    bulkhead = Bulkhead(2, max_queue=3)
    log: list[str] = []
    tasks = [asyncio.create_task(hold(bulkhead, 1.0, log, str(i))) for i in range(5)]
    await asyncio.sleep(0)
    stats = bulkhead.statistics()
    assert (stats.active, stats.queued) == (2, 3)
    with pytest.raises(BulkheadFull) as caught:
        await bulkhead.acquire()  # 2 busy, 3 queued: full
    assert isinstance(caught.value, Rejected)
    await asyncio.gather(*tasks)
    starts = [entry[0] for entry in log if entry.endswith("+")]
    assert starts == ["0", "1", "2", "3", "4"]  # FIFO
    assert asyncio.get_running_loop().time() == 3.0
    stats = bulkhead.statistics()
    assert (stats.active, stats.queued, stats.admitted, stats.rejected, stats.peak) == (
        0,
        0,
        5,
        1,
        2,
    )


async def test_no_barging_a_released_slot_goes_to_the_waiter() -> None:
    bulkhead = Bulkhead(1, max_queue=1)
    await bulkhead.acquire()
    waiter = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)
    bulkhead.release()
    assert not bulkhead.try_acquire()  # the slot belongs to the waiter now
    await waiter
    assert bulkhead.statistics().active == 1


async def test_max_wait_refuses_after_the_bound() -> None:
    bulkhead = Bulkhead(1, max_queue=5, max_wait=2.0)
    await bulkhead.acquire()
    with pytest.raises(BulkheadFull, match="max_wait=2s"):
        await bulkhead.acquire()
    assert asyncio.get_running_loop().time() == 2.0
    assert bulkhead.statistics().queued == 0


async def test_cancelled_waiter_leaves_the_queue() -> None:
    bulkhead = Bulkhead(1, max_queue=2)
    await bulkhead.acquire()
    first = asyncio.create_task(bulkhead.acquire())
    second = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert bulkhead.statistics().queued == 1
    bulkhead.release()
    await second
    stats = bulkhead.statistics()
    assert (stats.active, stats.queued, stats.rejected) == (1, 0, 0)  # cancel is no rejection


async def test_cancelled_waiter_gives_up_its_queue_place_at_once() -> None:
    # Cancelled, it leaves the queue when its task next runs; a caller arriving before that
    # (the canceller itself, replacing a stale request) is queued, not refused.
    bulkhead = Bulkhead(1, max_queue=1)
    await bulkhead.acquire()
    stale = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)
    asyncio.get_running_loop().call_later(1.0, bulkhead.release)
    stale.cancel()
    # Not counted from the moment it is cancelled, before its task has run to leave.
    assert bulkhead.statistics().queued == 0 and "queued=0/1" in repr(bulkhead)
    await bulkhead.acquire()
    stats = bulkhead.statistics()
    assert (stats.active, stats.queued, stats.rejected) == (1, 0, 0)
    assert stale.cancelled()


async def test_waiter_cancelled_after_being_handed_a_slot_passes_it_on() -> None:
    bulkhead = Bulkhead(1, max_queue=2)
    await bulkhead.acquire()
    first = asyncio.create_task(bulkhead.acquire())
    second = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(0)
    bulkhead.release()  # hands the slot to `first` ...
    first.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await second  # the slot moved on
    assert bulkhead.statistics().active == 1
    bulkhead.release()
    assert bulkhead.statistics().active == 0


async def test_cancelled_holder_releases_its_slot() -> None:
    bulkhead = Bulkhead(1)
    task = asyncio.create_task(hold(bulkhead, 100, [], "x"))
    await asyncio.sleep(0)
    assert bulkhead.statistics().active == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bulkhead.idle


async def test_call_and_decorator() -> None:
    bulkhead = Bulkhead(1)

    @bulkhead
    async def work(x: int) -> int:
        await asyncio.sleep(1)
        return x

    assert work.__name__ == "work"
    assert await work(3) == 3
    assert await bulkhead.call(work.__wrapped__, 4) == 4  # type: ignore[attr-defined]
    results = await asyncio.gather(work(1), work(2), return_exceptions=True)
    assert isinstance(results[1], BulkheadFull)  # max_queue=0: no waiting


@pytest.mark.real_time
async def test_thread_offload_cap_holds() -> None:
    bulkhead = Bulkhead(2, max_queue=10)
    lock = threading.Lock()
    running = peak = 0

    def blocking(seconds: float) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        time.sleep(seconds)
        with lock:
            running -= 1
        return threading.current_thread().name

    names = await asyncio.gather(*(bulkhead.run_sync(blocking, 0.005) for _ in range(6)))
    assert peak == 2
    assert all(name != threading.main_thread().name for name in names)


async def test_partitions_are_independent_and_bounded() -> None:
    services = PartitionedBulkhead(1, max_partitions=2)
    await services["payments"].acquire()
    assert services["inventory"].try_acquire()  # its own cap
    assert not services["payments"].try_acquire()
    with pytest.raises(BulkheadFull, match="partitions are busy"):
        services["notifications"]
    services["inventory"].release()
    assert services["notifications"].try_acquire()  # the idle one was forgotten
    assert len(services) == 2


async def test_partition_listeners_hear_every_partition_and_the_refused_key() -> None:
    # PartitionedBulkhead had no add_listener: a partition opened later, or a key refused
    # because every partition was busy, was heard by nobody.
    services = PartitionedBulkhead(1, max_partitions=2, name="svc")
    heard: list[tuple[str, str, str, str]] = []
    await services["payments"].acquire()  # open before the listener
    services.add_listener(
        lambda e: heard.append((e.strategy, e.name, e.details["reason"], e.partition))
    )
    with pytest.raises(BulkheadFull):
        await services["payments"].acquire()
    await services["inventory"].acquire()  # opened after it
    with pytest.raises(BulkheadFull):
        await services["inventory"].acquire()
    with pytest.raises(BulkheadFull, match="partitions are busy"):
        services["notifications"]
    # One strategy for every key (a key in a metric's label made a series per tenant: the
    # strategy was "svc['payments']"), the key apart in `partition`.
    assert heard == [
        ("svc", "bulkhead_rejected", "full", "'payments'"),
        ("svc", "bulkhead_rejected", "full", "'inventory'"),
        ("svc", "bulkhead_rejected", "partitions", "'notifications'"),
    ]
    assert Bulkhead(1).name == "Bulkhead"  # a bulkhead of its own: no partition
    with pytest.raises(BulkheadFull, match=r"svc\['payments'\]"):  # messages name the key
        await services["payments"].acquire()
    with pytest.raises(TypeError, match="listener must be callable"):
        services.add_listener("not callable")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Bulkhead(0), ValueError, "max_concurrent must be >= 1, got 0"),
        (lambda: Bulkhead(1, max_queue=-1), ValueError, "max_queue must be >= 0, got -1"),
        (lambda: Bulkhead(1, max_queue=True), TypeError, "max_queue must be an int, got True"),
        (lambda: Bulkhead(4, max_wait=10**400), ValueError, "max_wait must be within float"),
        (lambda: Bulkhead(4, max_wait=float("nan")), ValueError, "max_wait must be >= 0"),
        (lambda: Bulkhead(4, max_wait=True), TypeError, "max_wait must be a number"),
        (lambda: Bulkhead(4, name=5), TypeError, "name must be a str or None, got 5"),
        (lambda: PartitionedBulkhead(4, name=5), TypeError, "name must be a str or None"),
        (lambda: PartitionedBulkhead(4, max_wait=10**400), ValueError, "max_wait must be"),
        (lambda: Bulkhead(1, max_wait=-1), ValueError, "max_wait must be >= 0 or None, got -1"),
        (lambda: Bulkhead(1.5), TypeError, "max_concurrent must be an int"),  # type: ignore[arg-type]
        (lambda: PartitionedBulkhead(1, max_partitions=0), ValueError, "max_partitions must be"),
    ],
)
def test_bad_input(build: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        build()  # type: ignore[operator]


def test_release_without_a_held_slot_raises() -> None:
    bulkhead = Bulkhead(1)
    with pytest.raises(ValueError, match="release\\(\\) without a slot held"):
        bulkhead.release()
    assert bulkhead.try_acquire()
    bulkhead.release()
    with pytest.raises(ValueError):
        bulkhead.release()  # once too often
    assert bulkhead.statistics().active == 0
    assert bulkhead.try_acquire() and not bulkhead.try_acquire()  # the cap of one holds
    services = PartitionedBulkhead(1)
    with pytest.raises(ValueError):
        services["a"].release()
    limiter = ar.AdaptiveLimiter(ar.AIMD(), initial_limit=1)
    with pytest.raises(ValueError, match="without a call in flight"):
        limiter.release(0.0)
    assert limiter.in_flight == 0


async def test_bulkhead_full_says_when_a_slot_should_free_up() -> None:
    bulkhead = Bulkhead(1, max_queue=1)

    async def hold(seconds: float) -> None:
        async with bulkhead:
            await asyncio.sleep(seconds)

    first = asyncio.create_task(hold(2.0))
    second = asyncio.create_task(hold(2.0))  # queued
    await asyncio.sleep(0)
    with pytest.raises(BulkheadFull) as caught:
        await bulkhead.acquire()
    assert caught.value.retry_after is None  # no slot has been released yet: unknown
    await asyncio.gather(first, second)  # full from 0 to 4 s, two releases: one every 2 s
    third = asyncio.create_task(hold(2.0))
    fourth = asyncio.create_task(hold(2.0))
    await asyncio.sleep(0)
    with pytest.raises(BulkheadFull) as caught:
        await bulkhead.acquire()  # one holding, one queued: two releases away
    assert caught.value.retry_after == pytest.approx(4.0)
    await asyncio.gather(third, fourth)
    patient = Bulkhead(1, max_queue=1, max_wait=1.0)
    await patient.acquire()
    asyncio.get_running_loop().call_later(3.0, patient.release)
    await asyncio.sleep(0)
    with pytest.raises(BulkheadFull):  # t=0..1: the wait expires, no release seen yet
        await patient.acquire()
    await asyncio.sleep(3.0)
    await patient.acquire()  # full again from 4 s; one release seen, after 3 s full
    with pytest.raises(BulkheadFull, match="max_wait") as caught:
        await patient.acquire()
    assert caught.value.retry_after == pytest.approx(4.0 / 1)  # (3 + 1 s) full, 1 release


async def test_the_seed_guides_execute() -> None:
    bulkhead = Bulkhead(max_concurrent=1)

    async def double(x: int) -> int:
        return 2 * x

    assert await bulkhead.execute(double, 21) == 42
    assert bulkhead.idle


@pytest.mark.real_time
@pytest.mark.parametrize("end", ["timeout", "aioresilience.timeout", "cancel"])
async def test_run_sync_holds_its_slot_until_the_thread_returns(end: str) -> None:
    bulkhead = Bulkhead(1, max_queue=1)
    go_on = threading.Event()
    first_started = threading.Event()
    lock = threading.Lock()
    running = peak = 0
    finished: list[str] = []
    errors: list[dict[str, Any]] = []
    asyncio.get_running_loop().set_exception_handler(lambda loop, context: errors.append(context))

    def blocking(name: str) -> str:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        if name == "first":
            first_started.set()
            go_on.wait(10)
        with lock:
            running -= 1
        finished.append(name)
        if name == "first":
            raise RuntimeError("nobody is waiting for this one any more")
        return name

    started = time.monotonic()
    if end == "cancel":
        caller = asyncio.create_task(bulkhead.run_sync(blocking, "first"))
        await asyncio.to_thread(first_started.wait, 10)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
    else:
        deadline = asyncio.timeout if end == "timeout" else ar.timeout
        with pytest.raises(TimeoutError):
            async with deadline(0.05):
                await bulkhead.run_sync(blocking, "first")
    assert time.monotonic() - started < 5  # the caller got its error at once ...
    # (A timeout may fire before the thread has begun: it runs on, so wait for it to.)
    assert await asyncio.to_thread(first_started.wait, 10)
    assert running == 1 and finished == []  # ... while the thread still runs ...
    stats = bulkhead.statistics()
    assert (stats.active, stats.queued) == (1, 0)  # ... holding its slot
    assert not bulkhead.try_acquire()
    second = asyncio.create_task(bulkhead.run_sync(blocking, "second"))
    await asyncio.sleep(0.02)
    assert bulkhead.statistics().queued == 1 and running == 1  # no second thread in a cap of 1
    go_on.set()
    assert await second == "second"
    assert finished == ["first", "second"] and peak == 1
    assert bulkhead.idle
    assert asyncio.all_tasks() == {asyncio.current_task()}  # no task left behind
    gc.collect()
    assert errors == []  # the first thread's error, unread, is not reported as lost


@pytest.mark.real_time
async def test_run_sync_cancelled_while_queued_takes_no_slot() -> None:
    bulkhead = Bulkhead(1, max_queue=1)
    go_on = threading.Event()
    holder = asyncio.create_task(bulkhead.run_sync(go_on.wait, 10))
    await asyncio.sleep(0.01)
    queued = asyncio.create_task(bulkhead.run_sync(time.sleep, 0))
    await asyncio.sleep(0.01)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert bulkhead.statistics().queued == 0
    go_on.set()
    assert await holder is True
    assert bulkhead.idle


async def test_a_subclass_overriding_release_is_called_by_every_form() -> None:
    """The guard forms leave through release() itself, so an override sees each exit."""

    class Counting(Bulkhead):
        released = 0

        def release(self) -> None:
            type(self).released += 1
            super().release()

    bulkhead = Counting(2)

    async def work() -> None:
        return None

    async with bulkhead:
        pass
    await bulkhead.call(work)
    await bulkhead(work)()
    assert Counting.released == 3 and bulkhead.statistics().active == 0


async def test_run_sync_refuses_an_async_function_and_takes_no_slot() -> None:
    # It was called in the thread, and its coroutine returned unrun and never awaited.
    async def fetch() -> str:
        return "data"

    bulkhead = Bulkhead(1)
    with pytest.raises(TypeError, match="run_sync's fn must be a plain"):
        await bulkhead.run_sync(fetch)
    with pytest.raises(TypeError, match="run_sync's fn must be callable"):
        await bulkhead.run_sync(5)  # type: ignore[arg-type]
    assert bulkhead.statistics().active == 0
    assert await bulkhead.run_sync(lambda: "ok") == "ok"

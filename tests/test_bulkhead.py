"""Bulkhead in virtual time: cap, FIFO queue, waits, cancellation at every await, threads."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

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


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Bulkhead(0), ValueError, "max_concurrent must be >= 1, got 0"),
        (lambda: Bulkhead(1, max_queue=-1), ValueError, "max_queue must be an int >= 0, got -1"),
        (lambda: Bulkhead(1, max_wait=-1), ValueError, "max_wait must be >= 0 or None, got -1"),
        (lambda: Bulkhead(1.5), TypeError, "max_concurrent must be an int"),  # type: ignore[arg-type]
        (lambda: PartitionedBulkhead(1, max_partitions=0), ValueError, "max_partitions must be"),
    ],
)
def test_bad_input(build: object, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        build()  # type: ignore[operator]

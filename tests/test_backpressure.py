"""Backpressure queue and worker pool in virtual time: every policy, watermarks, shutdown."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aioresilience import BackpressureQueue, QueueClosed, QueueFull, WorkerPool


async def test_fifo_and_direct_hand_off() -> None:
    queue: BackpressureQueue[int] = BackpressureQueue(3)
    getter = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert await queue.put(1)
    assert await getter == 1
    for i in range(3):
        await queue.put(i)
    assert [await queue.get() for _ in range(3)] == [0, 1, 2]


async def test_block_policy_waits_fifo_and_times_out_without_losing_the_item() -> None:
    queue: BackpressureQueue[str] = BackpressureQueue(1)
    await queue.put("a")
    producer_b = asyncio.create_task(queue.put("b"))
    producer_c = asyncio.create_task(queue.put("c"))
    await asyncio.sleep(0)
    assert await queue.get() == "a"
    assert await queue.get() == "b"  # producers are let in in order
    assert await queue.get() == "c"
    assert await producer_b and await producer_c
    await queue.put("x")
    with pytest.raises(QueueFull) as caught:
        await queue.put("y", timeout=2.0)
    assert caught.value.item == "y"  # refused, and reported with the item
    assert asyncio.get_running_loop().time() == 2.0
    assert queue.statistics().rejected == 1


async def test_reject_policy() -> None:
    queue: BackpressureQueue[int] = BackpressureQueue(2, policy="reject")
    await queue.put(1)
    await queue.put(2)
    with pytest.raises(QueueFull) as caught:
        await queue.put(3)
    assert caught.value.item == 3
    assert queue.statistics().rejected == 1


async def test_drop_newest_and_drop_oldest_report_every_drop() -> None:
    dropped: list[tuple[Any, str]] = []
    newest: BackpressureQueue[int] = BackpressureQueue(
        2, policy="drop_newest", on_drop=lambda i, r: dropped.append((i, r))
    )
    results = [await newest.put(i) for i in range(5)]
    assert results == [True, True, False, False, False]
    assert [newest.get_nowait() for _ in range(2)] == [0, 1]
    oldest: BackpressureQueue[int] = BackpressureQueue(
        2, policy="drop_oldest", on_drop=lambda i, r: dropped.append((i, r))
    )
    for i in range(5):
        assert await oldest.put(i)
    assert [oldest.get_nowait() for _ in range(2)] == [3, 4]
    assert dropped == [
        (2, "drop_newest"),
        (3, "drop_newest"),
        (4, "drop_newest"),
        (0, "drop_oldest"),
        (1, "drop_oldest"),
        (2, "drop_oldest"),
    ]
    assert newest.statistics().dropped == 3 and oldest.statistics().dropped == 3


async def test_drops_without_a_callback_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    queue: BackpressureQueue[str] = BackpressureQueue(1, policy="drop_newest")
    await queue.put("kept")
    await queue.put("lost-item")
    assert "lost-item" in caplog.text


async def test_watermarks_pause_and_resume_producers() -> None:
    queue: BackpressureQueue[int] = BackpressureQueue(10, high_watermark=8, low_watermark=3)
    for i in range(8):
        await queue.put(i)
    assert queue.paused
    writable = asyncio.create_task(queue.wait_writable())
    await asyncio.sleep(0)
    for _ in range(4):
        queue.get_nowait()
    await asyncio.sleep(0)
    assert not writable.done()  # 4 left: above the low watermark
    queue.get_nowait()
    await asyncio.sleep(0)
    assert writable.done() and not queue.paused


async def test_cancelled_consumer_after_hand_off_returns_the_item() -> None:
    queue: BackpressureQueue[str] = BackpressureQueue(2)
    consumer = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    await queue.put("precious")  # handed straight to the waiting consumer ...
    consumer.cancel()  # ... which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert queue.get_nowait() == "precious"


async def test_cancelled_producer_leaves_the_line() -> None:
    queue: BackpressureQueue[str] = BackpressureQueue(1)
    await queue.put("a")
    producer = asyncio.create_task(queue.put("b"))
    await asyncio.sleep(0)
    producer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await producer
    assert queue.get_nowait() == "a"
    assert queue.empty()


async def test_worker_pool_survives_handler_errors() -> None:
    queue: BackpressureQueue[int] = BackpressureQueue(10)
    done: list[int] = []
    errors: list[tuple[int, str]] = []

    async def handle(item: int) -> None:
        await asyncio.sleep(0.1)
        if item % 3 == 0:
            raise ValueError(f"bad {item}")
        done.append(item)

    async with WorkerPool(
        queue, handle, workers=2, on_error=lambda i, e: errors.append((i, str(e)))
    ) as pool:
        for i in range(1, 10):
            await queue.put(i)
    assert sorted(done) == [1, 2, 4, 5, 7, 8]
    assert sorted(errors) == [(3, "bad 3"), (6, "bad 6"), (9, "bad 9")]
    stats = pool.statistics()
    assert (stats.processed, stats.failed, stats.workers) == (6, 3, 0)


async def test_shutdown_without_drain_returns_every_unprocessed_item() -> None:
    queue: BackpressureQueue[int] = BackpressureQueue(3)

    async def slow(item: int) -> None:
        await asyncio.sleep(10)

    pool = WorkerPool(queue, slow, workers=2)
    pool.start()
    for i in range(5):
        await queue.put(i)  # 2 taken by workers, 3 queued
    blocked = asyncio.create_task(queue.put(5))
    await asyncio.sleep(1)
    leftover = await pool.shutdown(drain=False)
    assert sorted(leftover) == [0, 1, 2, 3, 4, 5]  # in flight, queued, and a waiting producer's
    with pytest.raises(QueueClosed):
        await blocked
    assert all(t.done() for t in asyncio.all_tasks() if t.get_name().startswith("WorkerPool"))
    with pytest.raises(QueueClosed):
        await queue.put(9)


async def test_shutdown_with_drain_finishes_queued_items() -> None:
    queue: BackpressureQueue[int] = BackpressureQueue(5)
    seen: list[int] = []

    async def handle(item: int) -> None:
        await asyncio.sleep(1)
        seen.append(item)

    pool = WorkerPool(queue, handle, workers=1)
    pool.start()
    for i in range(4):
        await queue.put(i)
    assert await pool.shutdown(drain=True) == []
    assert seen == [0, 1, 2, 3]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"maxsize": 0}, "maxsize must be >= 1, got 0"),
        ({"maxsize": 5, "policy": "lifo"}, "policy must be one of"),
        ({"maxsize": 5, "high_watermark": 4}, "give both high_watermark and low_watermark"),
        ({"maxsize": 5, "high_watermark": 3, "low_watermark": 3}, "watermarks must satisfy"),
        ({"maxsize": 5, "high_watermark": 6, "low_watermark": 1}, "watermarks must satisfy"),
    ],
)
def test_bad_queue_options(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        BackpressureQueue(**options)

"""Backpressure queue and worker pool in virtual time: every policy, watermarks, shutdown."""

from __future__ import annotations

import asyncio
import random
import sys
from typing import Any

import pytest

from aioresilience import BackpressureQueue, QueueClosed, QueueFull, ResilienceError, WorkerPool


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


async def test_items_handed_back_by_shutdown_count_as_finished_for_join() -> None:
    # The items cancelled mid-handling stayed unfinished: join() never returned, and leaving
    # an `async with pool:` after a shutdown(drain=False) hung.
    queue: BackpressureQueue[int] = BackpressureQueue(5)

    async def slow(item: int) -> None:
        await asyncio.sleep(10)

    async with WorkerPool(queue, slow, workers=2) as pool:
        for i in range(4):
            await queue.put(i)
        await asyncio.sleep(1)
        assert sorted(await pool.shutdown(drain=False)) == [0, 1, 2, 3]
    await asyncio.wait_for(queue.join(), 1)


async def test_leaving_a_pool_by_an_exception_reports_every_unprocessed_item() -> None:
    # shutdown(drain=False)'s list was thrown away: the queued items and the one in flight
    # vanished, reported nowhere.
    dropped: list[tuple[int, str]] = []
    queue: BackpressureQueue[int] = BackpressureQueue(
        10, on_drop=lambda item, reason: dropped.append((item, reason))
    )

    async def slow(item: int) -> None:
        await asyncio.sleep(10)

    with pytest.raises(KeyError):
        async with WorkerPool(queue, slow, workers=1):
            for i in range(3):
                await queue.put(i)
            await asyncio.sleep(1)
            raise KeyError("the block failed")
    assert sorted(dropped) == [(0, "shutdown"), (1, "shutdown"), (2, "shutdown")]
    assert queue.statistics().dropped == 3


async def test_a_pool_cancelled_while_draining_logs_its_unprocessed_items(
    caplog: pytest.LogCaptureFixture,
) -> None:
    queue: BackpressureQueue[str] = BackpressureQueue(10)  # policy block: no on_drop given

    async def slow(item: str) -> None:
        await asyncio.sleep(10)

    async def body() -> None:
        async with WorkerPool(queue, slow, workers=1):
            await queue.put("in-flight")
            await queue.put("queued-item")

    task = asyncio.create_task(body())
    await asyncio.sleep(1)  # leaving the block: draining
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert "in-flight" in caplog.text and "queued-item" in caplog.text
    assert queue.statistics().dropped == 2


async def test_a_pool_cancelled_again_while_its_workers_stop_still_reports_every_item() -> None:
    # A second cancellation while leaving the block (a TaskGroup's, then a timeout's) hit the
    # wait for the stopping workers: the items in flight and queued vanished, reported nowhere.
    dropped: list[tuple[int, str]] = []
    queue: BackpressureQueue[int] = BackpressureQueue(
        10, on_drop=lambda item, reason: dropped.append((item, reason))
    )

    async def stubborn(item: int) -> None:
        try:
            await asyncio.sleep(10)
        finally:
            await asyncio.sleep(0)  # a handler that cleans up when cancelled

    async def body() -> None:
        async with WorkerPool(queue, stubborn, workers=1):
            for i in range(3):
                await queue.put(i)
            await asyncio.sleep(10)

    task = asyncio.create_task(body())
    await asyncio.sleep(1)
    task.cancel()
    await asyncio.sleep(0)  # the pool now waits for its worker to stop
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(dropped) == [(0, "shutdown"), (1, "shutdown"), (2, "shutdown")]
    assert all(t.done() for t in asyncio.all_tasks() if t.get_name().startswith("WorkerPool"))


async def test_a_shutdown_after_a_cancelled_one_returns_what_is_left() -> None:
    # The cancelled shutdown stopped the workers, leaving its items in the pool; the next
    # one waited for ever to drain them with no worker left.
    queue: BackpressureQueue[int] = BackpressureQueue(10)

    async def slow(item: int) -> None:
        await asyncio.sleep(10)

    pool = WorkerPool(queue, slow, workers=1)
    pool.start()
    for i in range(3):
        await queue.put(i)
    await asyncio.sleep(1)
    stopping = asyncio.create_task(pool.shutdown())
    await asyncio.sleep(1)
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert await asyncio.wait_for(pool.shutdown(), 60) == [0, 1, 2]


async def test_a_shutdown_cancelled_while_its_workers_stop_leaves_none_running() -> None:
    # Cancelled while waiting for a worker's clean-up, it kept the stopped workers: the
    # next shutdown waited for ever to drain the queue with no worker left, and start()
    # said the pool was already running.
    queue: BackpressureQueue[int] = BackpressureQueue(10)

    async def cleans_up(item: int) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(1)
            raise

    pool = WorkerPool(queue, cleans_up, workers=1)
    pool.start()
    for i in range(3):
        await queue.put(i)
    await asyncio.sleep(0.1)
    stopping = asyncio.create_task(pool.shutdown(drain=False))
    await asyncio.sleep(0.5)  # the worker is cleaning up
    stopping.cancel()
    with pytest.raises(asyncio.CancelledError):
        await stopping
    assert pool.statistics().workers == 0
    assert await asyncio.wait_for(pool.shutdown(), 60) == [0, 1, 2]


async def test_a_shutdown_as_a_handlers_own_timeout_fires_still_stops_its_worker() -> None:
    # The worker's pending cancellation was the handler's asyncio.timeout's, not the pool's:
    # taken for a stop under way, it was not cancelled. The timeout turned it into a
    # TimeoutError the handler carried on from, and the worker went on to take every queued
    # item: shutdown(drain=False) handled them all, 100 s each, and returned none.
    queue: BackpressureQueue[int] = BackpressureQueue(10)
    loop = asyncio.get_running_loop()
    handled: list[int] = []
    stopping: list[asyncio.Task[list[int]]] = []

    def stop() -> None:
        stopping.append(loop.create_task(pool.shutdown(drain=False)))

    async def handler(item: int) -> None:
        handled.append(item)
        try:
            async with asyncio.timeout(10) as deadline:
                if item == 0:  # the shutdown starts as the timeout fires
                    loop.call_soon(stop)
                    deadline.reschedule(loop.time())
                await asyncio.sleep(5)
        except TimeoutError:
            await asyncio.sleep(100)  # a slower way, after a timeout

    pool = WorkerPool(queue, handler)
    for i in range(3):
        await queue.put(i)
    pool.start()
    await asyncio.sleep(0.1)
    assert await stopping[0] == [0, 1, 2]
    assert loop.time() < 1 and handled == [0]


async def test_two_shutdowns_at_once_wait_for_the_same_workers() -> None:
    # The second found no workers (the first had taken them) and handed back the items
    # still in flight at once, while those workers were still stopping: a handler that
    # finished its item on the way out then failed on it (KeyError), and that item was
    # reported both processed and unprocessed.
    queue: BackpressureQueue[int] = BackpressureQueue(10)
    errors: list[BaseException] = []

    async def finishes_anyway(item: int) -> None:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(1)  # finishes the item before it goes (swallowing the cancel)

    pool = WorkerPool(queue, finishes_anyway, workers=2)
    pool.start()
    for i in range(4):
        await queue.put(i)
    await asyncio.sleep(0.5)
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _, context: errors.append(context["exception"]))
    first = asyncio.create_task(pool.shutdown(drain=False))
    await asyncio.sleep(0)
    second = asyncio.create_task(pool.shutdown(drain=False))
    returned = await asyncio.gather(first, second)
    assert sorted(returned[0] + returned[1]) == [2, 3]  # 0 and 1 were finished
    assert pool.statistics().processed == 2 and pool.statistics().in_flight == 0
    assert errors == []


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


async def test_a_put_cancelled_after_it_was_let_in_has_enqueued_nothing() -> None:
    # The scenario: "b" was let in by the get, then its put was cancelled.
    queue: BackpressureQueue[str] = BackpressureQueue(1)
    queue.put_nowait("a")
    waiter = asyncio.create_task(queue.put("b"))
    await asyncio.sleep(0)
    assert queue.get_nowait() == "a"
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert queue.empty() and queue.statistics().put == 1
    assert queue.put_nowait("b")  # retried: once, and the place it was kept is free again
    assert queue.get_nowait() == "b" and queue.empty()


async def test_the_place_of_a_cancelled_producer_passes_to_the_next_one() -> None:
    queue: BackpressureQueue[str] = BackpressureQueue(1)
    queue.put_nowait("a")
    first = asyncio.create_task(queue.put("b"))
    second = asyncio.create_task(queue.put("c"))
    await asyncio.sleep(0)
    assert queue.get_nowait() == "a"  # lets `first` in ...
    with pytest.raises(QueueFull):
        queue.put_nowait("x")  # ... whose place is kept: no barging
    first.cancel()  # ... cancelled before it ran
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second
    assert [queue.get_nowait()] == ["c"] and queue.empty()


async def test_a_producer_cancelled_while_waiting_or_timing_out_enqueues_nothing() -> None:
    queue: BackpressureQueue[str] = BackpressureQueue(1)
    queue.put_nowait("a")
    waiting = asyncio.create_task(queue.put("b"))
    timing_out = asyncio.create_task(queue.put("c", timeout=1.0))
    await asyncio.sleep(0)
    waiting.cancel()
    # At 1 s, `timing_out`'s timer fires, and it is cancelled before it runs: cancellation wins.
    asyncio.get_running_loop().call_later(1.0, timing_out.cancel)
    for task in (waiting, timing_out):
        with pytest.raises(asyncio.CancelledError):
            await task
    assert queue.get_nowait() == "a" and queue.empty()
    assert queue.statistics().waiting_producers == 0


async def test_producers_let_in_then_closed_out_enqueue_nothing_and_get_their_items_back() -> None:
    queue: BackpressureQueue[str] = BackpressureQueue(1)
    queue.put_nowait("a")
    producers = [asyncio.create_task(queue.put(item)) for item in "bc"]
    await asyncio.sleep(0)
    assert await queue.get() == "a"  # lets "b" in; it has not run when close() comes
    assert queue.close() == ["b", "c"]  # every producer that will raise, oldest first
    for producer in producers:
        with pytest.raises(QueueClosed):
            await producer
    assert queue.empty()


async def test_a_let_in_producer_that_ran_is_not_returned_by_a_later_close() -> None:
    queue: BackpressureQueue[str] = BackpressureQueue(1)
    queue.put_nowait("a")
    producer = asyncio.create_task(queue.put("b"))
    await asyncio.sleep(0)
    assert queue.get_nowait() == "a"
    assert await producer  # ran: enqueued
    assert queue.close() == []
    assert queue.get_nowait() == "b"


async def test_a_consumer_cancelled_after_hand_off_keeps_the_item_first_and_the_cap() -> None:
    queue: BackpressureQueue[str] = BackpressureQueue(1)
    consumer = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("first")  # handed to the consumer; its place is held until it runs
    assert queue.full()
    with pytest.raises(QueueFull):
        queue.put_nowait("second")
    producer = asyncio.create_task(queue.put("second"))  # waits for room
    consumer.cancel()  # scheduled to resume with "first": cancelled instead
    with pytest.raises(asyncio.CancelledError):
        await consumer
    assert queue.qsize() == 1 and not producer.done()  # the cap of one held throughout
    assert await queue.get() == "first"  # back at the front
    assert await producer
    assert await queue.get() == "second"


async def test_a_consumer_cancelled_while_waiting_leaves_the_line() -> None:
    queue: BackpressureQueue[str] = BackpressureQueue(2)
    first = asyncio.create_task(queue.get())
    second = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await queue.put("x")
    assert await second == "x"
    assert queue.statistics().waiting_consumers == 0


async def test_drop_oldest_with_every_place_handed_off_drops_the_new_item() -> None:
    dropped: list[tuple[str, str]] = []
    queue: BackpressureQueue[str] = BackpressureQueue(
        1, policy="drop_oldest", on_drop=lambda i, r: dropped.append((i, r))
    )
    consumer = asyncio.create_task(queue.get())
    await asyncio.sleep(0)
    assert await queue.put("handed")
    assert not await queue.put("new")  # nothing queued to drop; the cap holds
    assert dropped == [("new", "drop_oldest")]
    assert await consumer == "handed"
    assert await queue.put("later") and queue.get_nowait() == "later"


@pytest.mark.parametrize("policy", ["block", "reject", "drop_newest", "drop_oldest"])
async def test_random_cancellations_never_lose_duplicate_or_overfill(policy: Any) -> None:
    # Producers retry a cancelled put; consumers are cancelled at random, before and after a
    # hand-off. Every item enqueued arrives exactly once; the queue never exceeds maxsize.
    rng = random.Random(f"queue-{policy}")
    queue: BackpressureQueue[int] = BackpressureQueue(3, policy=policy, on_drop=lambda i, r: None)
    received: list[int] = []
    accepted: list[int] = []
    peak = 0

    async def produce(base: int) -> None:
        for item in range(base, base + 30):
            while True:
                attempt = asyncio.create_task(queue.put(item))
                for _ in range(rng.randrange(4)):
                    await asyncio.sleep(0)
                if rng.random() < 0.5:
                    attempt.cancel()
                try:
                    if await attempt:
                        accepted.append(item)
                except asyncio.CancelledError:
                    continue  # enqueued nothing: retry
                except QueueFull:
                    await asyncio.sleep(0.01)
                    continue
                break

    async def consume() -> None:
        nonlocal peak
        while True:
            getter = asyncio.create_task(queue.get())
            for _ in range(rng.randrange(4)):
                await asyncio.sleep(0)
            peak = max(peak, queue.qsize())
            if rng.random() < 0.3:
                getter.cancel()
            try:
                received.append(await getter)
            except asyncio.CancelledError:
                continue
            except QueueClosed:
                return

    consumers = [asyncio.create_task(consume()) for _ in range(3)]
    await asyncio.gather(*(produce(base) for base in (0, 1000, 2000)))
    queue.close()  # the consumers take what is left, then get QueueClosed
    await asyncio.gather(*consumers)
    dropped = queue.statistics().dropped
    assert sorted(received) == sorted(set(received))  # no duplicate
    assert len(received) == len(accepted) - (dropped if policy == "drop_oldest" else 0)
    assert set(received) <= set(accepted)
    assert peak <= 3
    if policy == "block":
        assert (
            sorted(received)
            == sorted(accepted)
            == sorted(i for base in (0, 1000, 2000) for i in range(base, base + 30))
        )


async def test_a_closed_queue_refuses_gets_alike_once_empty() -> None:
    queue: BackpressureQueue[str] = BackpressureQueue(2)
    queue.put_nowait("left")
    queue.close()
    with pytest.raises(QueueClosed):
        queue.put_nowait("x")
    assert queue.get_nowait() == "left"  # what is left is still served
    with pytest.raises(QueueClosed):
        queue.get_nowait()
    with pytest.raises(QueueClosed):
        await queue.get()
    assert issubclass(QueueClosed, ResilienceError)
    if sys.version_info >= (3, 13):
        assert issubclass(QueueClosed, asyncio.QueueShutDown)


async def test_drain_lets_waiting_producers_in() -> None:
    queue: BackpressureQueue[int] = BackpressureQueue(1)
    queue.put_nowait(0)
    producer = asyncio.create_task(queue.put(1))
    await asyncio.sleep(0)
    assert queue.drain() == [0]
    assert await producer
    assert queue.get_nowait() == 1


async def test_the_seed_guides_push_pop_size() -> None:
    queue: BackpressureQueue[str] = BackpressureQueue(2)
    assert await queue.push("a") and await queue.push("b")
    assert queue.size() == 2
    assert await queue.pop() == "a"
    assert queue.size() == 1


async def test_worker_pool_validates_at_construction() -> None:
    queue: BackpressureQueue[int] = BackpressureQueue(1)

    async def handle(item: int) -> None:
        return None

    with pytest.raises(TypeError, match="handler must be a coroutine function"):
        WorkerPool(queue, print)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"workers must be <= 100000, got 1000"):
        WorkerPool(queue, handle, workers=10**400)
    with pytest.raises(TypeError, match="name must be a str or None, got 5"):
        WorkerPool(queue, handle, name=5)  # type: ignore[arg-type]

    async def on_error(item: int, exc: Exception) -> None:
        return None

    with pytest.raises(TypeError, match="on_error must be a plain"):
        WorkerPool(queue, handle, on_error=on_error)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"maxsize": 5, "name": 5}, TypeError, "name must be a str or None, got 5"),
        ({"maxsize": True}, TypeError, "maxsize must be an int, got True"),
        ({"maxsize": 5, "policy": 3}, TypeError, "policy must be one of"),
        ({"maxsize": 5, "on_drop": 3}, TypeError, "on_drop must be callable"),
        (
            {"maxsize": 5, "high_watermark": 4, "low_watermark": 1.5},
            TypeError,
            "low_watermark must be an int, got 1.5",
        ),
    ],
)
def test_bad_queue_types(options: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        BackpressureQueue(**options)


@pytest.mark.parametrize("timeout", [float("nan"), -1, 10**400, True])
async def test_bad_put_timeout(timeout: Any) -> None:
    queue: BackpressureQueue[int] = BackpressureQueue(1)
    with pytest.raises((TypeError, ValueError), match="timeout must be"):
        await queue.put(1, timeout=timeout)
    assert queue.empty()


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


async def test_a_handler_raising_another_tasks_cancellation_fails_its_item_not_the_worker() -> None:
    queue: BackpressureQueue[int] = BackpressureQueue(10)
    done: list[int] = []
    errors: list[tuple[int, BaseException]] = []

    async def handler(item: int) -> None:
        if item == 1:
            other = asyncio.ensure_future(asyncio.sleep(10))
            await asyncio.sleep(0)
            other.cancel()
            await other  # someone else's cancellation surfaces here
        done.append(item)

    pool = WorkerPool(queue, handler, workers=1, on_error=lambda i, e: errors.append((i, e)))
    pool.start()
    for i in range(4):
        await queue.put(i)
    assert await pool.shutdown(drain=True) == []  # (hung: the worker had died on item 1)
    assert done == [0, 2, 3]
    assert [(i, type(e)) for i, e in errors] == [(1, asyncio.CancelledError)]
    stats = pool.statistics()
    assert (stats.processed, stats.failed) == (3, 1)


async def test_a_worker_cancelled_mid_handling_still_stops() -> None:
    queue: BackpressureQueue[int] = BackpressureQueue(10)
    started = asyncio.Event()

    async def handler(item: int) -> None:
        started.set()
        await asyncio.sleep(3600)

    pool = WorkerPool(queue, handler, workers=1)
    pool.start()
    await queue.put(7)
    await started.wait()
    assert await pool.shutdown(drain=False) == [7]  # cancelled mid-handling: returned
    assert pool.statistics().failed == 0

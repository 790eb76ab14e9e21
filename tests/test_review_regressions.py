"""Regressions found in review: cancellation races, bookkeeping, validation."""

from __future__ import annotations

import asyncio
import logging
import math
import sys
from typing import Any

import pytest

import aioresilience as ar
from aioresilience import (
    AIMD,
    AdaptiveLimiter,
    BackpressureQueue,
    Bulkhead,
    BulkheadFull,
    CircuitBreaker,
    CircuitState,
    Gradient2,
    QueueFull,
    Retry,
    RetryBudget,
    RetryState,
    TimeoutExceeded,
    Vegas,
    WorkerPool,
    constant,
    exponential,
    timeout,
)
from aioresilience import _timeout as timeout_module


async def test_bulkhead_wait_that_timed_out_then_cancelled_frees_nothing() -> None:
    bulkhead = Bulkhead(1, max_queue=1, max_wait=1.0)
    await bulkhead.acquire()
    waiter = asyncio.create_task(bulkhead.acquire())
    await asyncio.sleep(1.0)  # the wait expires (BulkheadFull is set) in this very turn ...
    waiter.cancel()  # ... and the waiter is cancelled before it resumes
    with pytest.raises((asyncio.CancelledError, BulkheadFull)):
        await waiter
    assert bulkhead.statistics().active == 1
    assert not bulkhead.try_acquire()  # we still hold the only slot


async def test_blocked_put_that_timed_out_then_cancelled_is_not_enqueued() -> None:
    queue: BackpressureQueue[str] = BackpressureQueue(1)
    await queue.put("first")
    producer = asyncio.create_task(queue.put("second", timeout=1.0))
    await asyncio.sleep(1.0)
    producer.cancel()
    with pytest.raises((asyncio.CancelledError, QueueFull)):
        await producer
    assert queue.drain() == ["first"]
    assert queue.statistics().waiting_producers == 0


async def test_guards_work_under_wait_for_and_gather() -> None:
    bulkhead = Bulkhead(1)
    await asyncio.wait_for(bulkhead.acquire(), 1)
    bulkhead.release()
    queue: BackpressureQueue[int] = BackpressureQueue(5)
    assert await asyncio.wait_for(queue.put(1), 1)
    assert await asyncio.gather(queue.put(2), queue.get()) == [True, 1]


async def test_retry_budget_slot_released_when_cancelled_in_a_hook() -> None:
    budget = RetryBudget.concurrency(min_retries=1)

    async def slow_hook(state: RetryState) -> None:
        await asyncio.sleep(10)

    async def fail() -> None:
        raise OSError("down")

    policy = Retry(attempts=3, backoff=constant(1), budget=budget, before_sleep=slow_hook)
    task = asyncio.create_task(policy.call(fail))
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert budget.ledger.retries == 0 and budget.ledger.requests == 0


async def test_retry_budget_slot_released_when_leaving_an_async_for_loop() -> None:
    budget = RetryBudget.concurrency(min_retries=1)
    attempts = 0
    async for attempt in Retry(attempts=5, backoff=constant(0.1), budget=budget):
        with attempt:
            attempts += 1
            if attempts == 1:
                raise OSError("first fails")
        break  # leave during the retry attempt
    assert budget.ledger.retries == 0


async def test_async_hook_cannot_carry_the_sleep_past_the_deadline() -> None:
    calls: list[float] = []
    loop = asyncio.get_running_loop()

    async def fail() -> None:
        calls.append(loop.time())
        raise OSError("down")

    async def slow_hook(state: RetryState) -> None:
        await asyncio.sleep(2)

    policy = Retry(attempts=5, backoff=constant(1), deadline=2.5, before_sleep=slow_hook)
    with pytest.raises(OSError, match="down") as caught:
        await policy.call(fail)
    assert calls == [0.0]
    assert "(deadline)" in caught.value.__notes__[-1]


async def test_retried_exception_does_not_chain_the_first_attempt() -> None:
    errors = iter([OSError("one"), OSError("two")])

    async def fail() -> None:
        raise next(errors)

    with pytest.raises(OSError, match="two") as caught:
        await Retry(attempts=2, backoff=constant(0)).call(fail)
    assert caught.value.__context__ is None


async def test_failing_probe_reopens_with_only_a_slow_call_rule_besides_the_streak() -> None:
    breaker = CircuitBreaker(
        failure_threshold=1, slow_call_rate_threshold=0.5, slow_call_duration=5.0, break_duration=1
    )

    async def fail() -> None:
        raise OSError("down")

    with pytest.raises(OSError):
        await breaker.call(fail)
    await asyncio.sleep(1)
    with pytest.raises(OSError):
        await breaker.call(fail)  # the probe fails fast
    assert breaker.state is CircuitState.OPEN


async def test_drop_oldest_keeps_join_counts_right() -> None:
    queue: BackpressureQueue[int] = BackpressureQueue(
        1, policy="drop_oldest", on_drop=lambda *a: None
    )
    await queue.put(1)
    await queue.put(2)  # 1 dropped
    assert queue.get_nowait() == 2
    queue.task_done()
    await asyncio.wait_for(queue.join(), 1)  # would hang if the dropped item still counted


async def test_drain_and_close_resume_paused_producers() -> None:
    queue: BackpressureQueue[int] = BackpressureQueue(4, high_watermark=3, low_watermark=1)
    for i in range(3):
        await queue.put(i)
    assert queue.paused
    queue.drain()
    await asyncio.wait_for(queue.wait_writable(), 1)
    for i in range(3):
        await queue.put(i)
    waiting = asyncio.create_task(queue.wait_writable())
    await asyncio.sleep(0)
    queue.close()
    await asyncio.wait_for(waiting, 1)


async def test_shutdown_cancelled_while_draining_leaves_no_worker() -> None:
    queue: BackpressureQueue[int] = BackpressureQueue(5)

    async def slow(item: int) -> None:
        await asyncio.sleep(100)

    pool = WorkerPool(queue, slow, workers=2, name="drainer")
    pool.start()
    await queue.put(1)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(pool.shutdown(drain=True), 1)
    assert not [
        t for t in asyncio.all_tasks() if t.get_name().startswith("drainer") and not t.done()
    ]


async def test_one_off_timeout_durations_do_not_pile_up() -> None:
    loop = asyncio.get_running_loop()
    for i in range(200):
        async with timeout(1 + i / 1000):
            await asyncio.sleep(0)
    await asyncio.sleep(2)  # every lane's timer fires and finds its lane empty
    assert len(timeout_module._lanes.get(loop, {})) == 0


async def test_adaptive_limiter_survives_zero_rtt_and_faulty_algorithms(
    caplog: pytest.LogCaptureFixture,
) -> None:
    limiter = AdaptiveLimiter(Gradient2(), min_samples=1, sample_window=0)

    async def instant() -> str:
        return "ok"

    for _ in range(3):
        assert await limiter.call(instant) == "ok"  # rtt 0 in virtual time

    class Broken:
        def update(self, limit: float, rtt: float, in_flight: int, dropped: bool) -> float:
            raise ArithmeticError("bug")

    faulty = AdaptiveLimiter(Broken(), min_samples=1, sample_window=0)
    with caplog.at_level(logging.ERROR, logger="aioresilience"):
        assert await faulty.call(instant) == "ok"
    assert "failed to update the limit" in caplog.text


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Retry(attempts=None, max_elapsed=math.inf), ValueError, "unbounded retry"),
        (lambda: Retry(attempts=None, deadline=math.inf), ValueError, "unbounded retry"),
        (lambda: AIMD(backoff=5), ValueError, r"backoff must be in \(0, 1\)"),
        (lambda: AIMD(timeout=0), ValueError, "timeout must be a positive"),
        (lambda: Vegas(probe_multiplier=0), ValueError, "probe_multiplier must be >= 1"),
        (lambda: Gradient2(long_window=-1), ValueError, "long_window must be >= 1"),
        (lambda: Gradient2(smoothing=0), ValueError, r"smoothing must be in \(0, 1\]"),
        (lambda: CircuitBreaker(record=int), TypeError, "record must be an exception class"),
        (
            lambda: CircuitBreaker(break_duration=exponential(0.0)),
            ValueError,
            "break_duration must start above 0",
        ),
        (
            lambda: BackpressureQueue(1).put_nowait(1) and BackpressureQueue(1).put(1, timeout=-1),
            ValueError,
            "timeout must be >= 0",
        ),
    ],
)
def test_more_bad_input(build: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        result = build()
        if asyncio.iscoroutine(result):
            result.send(None)


async def test_timeouts_work_under_foreign_async_generator_hooks() -> None:
    """A tool that installs its own async-generator hooks (the timeout once found its loop
    through them) does not stop a timeout from finding its task."""
    import sys

    hooks = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=print, finalizer=hooks.finalizer)
    try:
        timeout_module._last = (None, {})  # no memory of the loop from earlier entries
        with pytest.raises(TimeoutExceeded):
            async with timeout(0.5):
                await asyncio.sleep(1)
    finally:
        sys.set_asyncgen_hooks(*hooks)


@pytest.mark.skipif(
    sys.version_info >= (3, 14),
    reason="Python 3.14 keeps one running task per thread: a task of a loop run inside a task "
    "of another loop in the same thread cannot start (asyncio refuses to enter it), so the "
    "scenario cannot be built",
)
def test_a_timeout_in_a_loop_nested_in_another_loops_task_binds_to_its_own_task() -> None:
    """A second loop run inside a task of the first, in the same thread (what nest_asyncio
    does, up to 3.13): the timeout binds to ``asyncio.current_task()``, which there is the
    inner loop's task, so it cuts the inner work and leaves the outer task alone."""
    from asyncio import events

    from aioresilience.testing import VirtualTimeLoop

    async def inner() -> str:
        async with timeout(0.1):
            await asyncio.sleep(0.5)
        return "not enforced"

    async def outer() -> tuple[str, bool]:
        async with timeout(5):  # the outer loop is now the one the lanes remember
            pass
        nested = VirtualTimeLoop()
        running = events._get_running_loop()
        events._set_running_loop(None)  # what nest_asyncio's run does
        try:
            try:
                outcome = nested.run_until_complete(inner())
            except TimeoutExceeded:
                outcome = "timed out"
        finally:
            events._set_running_loop(running)
            nested.close()
        this = asyncio.current_task()
        assert this is not None
        return outcome, this.cancelling() == 0

    outer_loop = VirtualTimeLoop()
    try:
        assert outer_loop.run_until_complete(outer()) == ("timed out", True)
    finally:
        outer_loop.close()


def test_a_logging_listener_copies_and_pickles() -> None:
    import copy
    import pickle

    from aioresilience import LoggingListener, Severity

    listener = LoggingListener(logging.getLogger("aioresilience.test.copy"))
    for clone in (copy.deepcopy(listener), pickle.loads(pickle.dumps(listener))):
        assert clone.logger is listener.logger
        assert clone.levels == listener.levels
        assert clone.accepts(Severity.ERROR) == listener.accepts(Severity.ERROR)


async def test_guards_leave_no_variable_in_a_long_lived_tasks_context() -> None:
    # A worker task entering guards for ever must not grow its context: a ticket stack is
    # reset on the way out, and shedder.limit(p) is one guard per priority, not one per call.
    import contextvars

    breaker = ar.CircuitBreaker()
    shedder = ar.LoadShedder(ar.InFlight(capacity=10))
    before = len(contextvars.copy_context())
    for _ in range(200):
        async with breaker:
            pass
        async with shedder.limit(ar.Priority.NORMAL):
            pass
    grown = len(contextvars.copy_context()) - before
    assert grown <= 4, grown  # the breaker's pass-through flag and nothing per entry
    assert shedder.limit(ar.Priority.NORMAL) is shedder.limit(ar.Priority.NORMAL)


async def test_leaving_a_guard_entered_in_another_task_says_so() -> None:
    breaker = ar.CircuitBreaker()
    await asyncio.create_task(breaker.__aenter__())  # entered in another task's context
    with pytest.raises(RuntimeError, match="same task"):
        await breaker.__aexit__(None, None, None)


async def _acquire(limiter: ar.TokenBucket) -> None:
    await limiter.acquire()


async def _take(bulkhead: Bulkhead) -> None:
    await bulkhead.acquire()


async def _get(queue: BackpressureQueue[int]) -> None:
    await queue.get()


@pytest.mark.parametrize(
    ("make", "wait", "busy"),
    [
        # Each made busy first (a bucket spent, a slot taken, the queue empty), then waited on.
        (lambda: ar.TokenBucket(1, 1.0, name="shared"), _acquire, _acquire),
        (lambda: Bulkhead(1, max_queue=5, name="shared"), _take, _take),
        (lambda: BackpressureQueue(maxsize=1, name="shared"), _get, None),
    ],
    ids=["limiter", "bulkhead", "queue"],
)
def test_waiters_from_a_second_live_loop_are_refused_by_name(
    make: Any, wait: Any, busy: Any
) -> None:
    """One primitive waited on from two live event loops (one per thread) stalled one of them
    with no error: its futures were set from the other loop's thread, which never woke it.
    Refused as asyncio's locks do; once the first loop is done, the next one is served."""
    from aioresilience.testing import VirtualTimeLoop, run

    primitive = make()
    first = VirtualTimeLoop()

    async def start_waiting() -> asyncio.Task[None]:
        if busy is not None:
            await busy(primitive)  # at once
        task = asyncio.ensure_future(wait(primitive))
        await asyncio.sleep(0)  # now waiting on this loop
        return task

    waiter = first.run_until_complete(start_waiting())
    try:

        async def from_another_loop() -> None:
            with pytest.raises(RuntimeError, match="shared has waiters on another event loop"):
                await wait(primitive)

        run(from_another_loop())
        assert not waiter.done()  # the first loop's waiter is untouched
    finally:
        waiter.cancel()
        first.run_until_complete(asyncio.gather(waiter, return_exceptions=True))
        first.close()

    async def served_on_the_next_loop() -> None:
        if isinstance(primitive, Bulkhead):
            primitive.release()  # the first loop's slot, given back
        if isinstance(primitive, BackpressureQueue):
            asyncio.get_running_loop().call_later(1, primitive.put_nowait, 1)
        await asyncio.wait_for(wait(primitive), 5)

    run(served_on_the_next_loop())


@pytest.mark.parametrize(
    "make",
    [lambda: ar.TokenBucket(1, 1.0), lambda: ar.SlidingWindowLog(1, 1.0)],
    ids=["bucket", "log"],
)
def test_a_limiter_waited_on_by_another_live_loop_still_admits_at_once(make: Any) -> None:
    """The loop check ran before every reservation of a limiter with waiters: an acquire on
    another loop that is admitted at once (another key), which waits on no loop, was refused
    with a RuntimeError. Only a wait is refused, and its reservation is given back."""
    from aioresilience.testing import VirtualTimeLoop, run

    limiter = make()
    first = VirtualTimeLoop()

    async def start_waiting() -> asyncio.Task[None]:
        await limiter.acquire(key="a")
        task = asyncio.ensure_future(limiter.acquire(key="a"))
        await asyncio.sleep(0)
        return task

    waiter = first.run_until_complete(start_waiting())
    try:

        async def from_another_loop() -> None:
            await limiter.acquire(key="b")  # at once: no waiting, no loop involved
            with pytest.raises(RuntimeError, match="has waiters on another event loop"):
                await limiter.acquire(key="b")  # would wait
            await asyncio.sleep(1)
            assert limiter.try_acquire(key="b")  # the refused wait reserved nothing

        run(from_another_loop())
    finally:
        waiter.cancel()
        first.run_until_complete(asyncio.gather(waiter, return_exceptions=True))
        first.close()


@pytest.mark.parametrize(
    ("make", "wait", "busy", "free"),
    [
        (lambda: ar.TokenBucket(1, 1.0), _acquire, _acquire, None),
        (lambda: Bulkhead(1, max_queue=5), _take, _take, "release"),
        (lambda: BackpressureQueue(maxsize=1), _get, None, "put"),
    ],
    ids=["limiter", "bulkhead", "queue"],
)
def test_a_waiter_left_on_a_loop_closed_without_cancelling_is_given_up(
    make: Any, wait: Any, busy: Any, free: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    """A loop closed by hand with a waiter still pending: the next loop's release (or put)
    handed the slot (or item) to the dead waiter, raised 'Event loop is closed' and lost it."""
    from aioresilience.testing import VirtualTimeLoop, run

    primitive = make()
    first = VirtualTimeLoop()

    # The abandoned task is reported destroyed when collected: through this loop's handler.
    first.set_exception_handler(lambda loop, context: None)

    async def start_waiting() -> asyncio.Task[None]:
        if busy is not None:
            await busy(primitive)
        task = asyncio.ensure_future(wait(primitive))
        await asyncio.sleep(0)
        return task

    dead = first.run_until_complete(start_waiting())
    first.close()  # the waiter never resumes

    async def next_loop() -> None:
        if free == "release":
            primitive.release()
        elif free == "put":
            primitive.put_nowait(1)
        await asyncio.wait_for(wait(primitive), 5)

    run(next_loop())
    assert not dead.done()


def test_close_returns_the_item_of_a_producer_left_on_a_closed_loop() -> None:
    from aioresilience.testing import VirtualTimeLoop

    queue: BackpressureQueue[str] = BackpressureQueue(maxsize=1)
    queue.put_nowait("first")
    first = VirtualTimeLoop()
    first.set_exception_handler(lambda loop, context: None)  # (the abandoned task, collected)

    async def start_waiting() -> asyncio.Task[bool]:
        task = asyncio.ensure_future(queue.put("second"))
        await asyncio.sleep(0)
        return task

    dead = first.run_until_complete(start_waiting())
    first.close()
    assert queue.close() == ["second"]  # reported, not lost (close() raised before)
    assert not dead.done()


@pytest.mark.parametrize(
    ("make", "wait", "busy"),
    [
        (lambda: Bulkhead(1, max_queue=5), _take, _take),
        (lambda: BackpressureQueue(maxsize=1), _get, None),
    ],
    ids=["bulkhead", "queue"],
)
def test_another_live_loops_waiter_behind_a_closed_loops_is_still_seen(
    make: Any, wait: Any, busy: Any
) -> None:
    """The other-live-loop check looked at the queue's head alone: with a waiter of a loop
    closed without cancelling there, a third loop waited beside a live loop's waiters."""
    from aioresilience.testing import VirtualTimeLoop, run

    primitive = make()

    async def start_waiting(first: bool) -> asyncio.Task[None]:
        if first and busy is not None:
            await busy(primitive)
        task = asyncio.ensure_future(wait(primitive))
        await asyncio.sleep(0)
        return task

    dead = VirtualTimeLoop()
    dead.set_exception_handler(lambda loop, context: None)  # (the abandoned task, collected)
    dead.run_until_complete(start_waiting(True))
    dead.close()
    live = VirtualTimeLoop()
    waiter = live.run_until_complete(start_waiting(False))
    try:
        with pytest.raises(RuntimeError, match="waiters on another event loop"):
            run(asyncio.wait_for(wait(primitive), 5))
    finally:
        waiter.cancel()
        live.run_until_complete(asyncio.gather(waiter, return_exceptions=True))
        live.close()

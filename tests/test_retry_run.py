"""Retry's public seam, ``policy.start()`` -> :class:`RetryRun`, in virtual time: driving a
call by hand, and the ``async for`` form built on it (with the budget's accounting, which that
form skipped before: its calls were never requests in flight and its successes never
recorded)."""

from __future__ import annotations

import asyncio

import pytest

from aioresilience import Retry, RetryBudget, RetryGaveUp, RetryRun, constant

NO_WAIT = constant(0.1)


def budget_state(budget: RetryBudget) -> tuple[int, int]:
    core = budget.ledger  # the test reads the pure core's counters
    return core.requests, core.retries  # type: ignore[union-attr]


async def test_a_call_driven_by_hand() -> None:
    policy = Retry(attempts=3, backoff=NO_WAIT)
    outcomes = [OSError("one"), OSError("two"), None]
    loop = asyncio.get_running_loop()
    with policy.start() as run:
        assert isinstance(run, RetryRun) and run.attempt == 1 and run.started == loop.time()
        for outcome in outcomes:
            if outcome is None:
                run.succeeded()
                break
            assert await run.failed(outcome)
    assert run.closed and run.attempt == 3 and loop.time() == pytest.approx(0.2)


async def test_by_hand_the_attempts_run_out_with_a_note() -> None:
    seen: list[RetryGaveUp] = []
    policy = Retry(attempts=2, backoff=NO_WAIT, on_give_up=seen.append)
    error = OSError("down")
    with policy.start() as run:
        assert await run.failed(OSError("first"))
        assert not await run.failed(error)
    assert seen[0].reason == "attempts" and seen[0].attempt == 2
    assert "gave up after 2 attempt(s)" in error.__notes__[-1]


async def test_a_result_judged_a_failure_by_hand() -> None:
    policy = Retry(attempts=2, backoff=NO_WAIT)
    with policy.start() as run:
        assert await run.failed(None, "busy")
        assert not await run.failed(None, "still busy")


async def test_a_cancellation_is_never_retried_nor_counted() -> None:
    budget = RetryBudget.tokens(max_tokens=4, token_ratio=1.0)
    policy = Retry(attempts=5, backoff=NO_WAIT, budget=budget)
    with policy.start() as run:
        assert not await run.failed(asyncio.CancelledError())
    assert budget.ledger.tokens == 4  # type: ignore[union-attr]


async def test_close_gives_back_the_budget_on_every_path() -> None:
    budget = RetryBudget.concurrency(percent=1.0, min_retries=1)
    policy = Retry(attempts=3, backoff=constant(10.0), budget=budget)

    async def sleeper() -> None:
        with policy.start() as run:
            assert budget_state(budget) == (1, 0)
            await run.failed(OSError("down"))  # holds the retry slot while it sleeps

    task = asyncio.create_task(sleeper())
    await asyncio.sleep(1.0)
    assert budget_state(budget) == (1, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert budget_state(budget) == (0, 0)
    run = policy.start()
    run.close()
    run.close()  # again: a no-op
    assert budget_state(budget) == (0, 0) and run.closed


async def test_async_for_counts_its_call_as_a_request_in_flight() -> None:
    # percent=1.0, min_retries=0: one retry in flight per call in flight. Before the seam, the
    # async for form never counted its call, so it was allowed no retry at all.
    budget = RetryBudget.concurrency(percent=1.0, min_retries=0)
    policy = Retry(attempts=3, backoff=NO_WAIT, budget=budget)
    failures = [OSError("down")]
    async for attempt in policy:
        with attempt:
            assert budget_state(budget)[0] == 1
            if failures:
                raise failures.pop()
    assert attempt.number == 2 and budget.exhausted == 0
    assert budget_state(budget) == (0, 0)


async def test_async_for_successes_refill_a_token_budget() -> None:
    budget = RetryBudget.tokens(max_tokens=4, token_ratio=1.0)
    policy = Retry(attempts=2, backoff=NO_WAIT, budget=budget)
    for _ in range(2):
        with pytest.raises(OSError):
            await policy.call(_fails)
    assert budget.ledger.tokens == 1  # type: ignore[union-attr]
    for _ in range(3):  # successes at the first attempt earn their tokens back
        async for attempt in policy:
            with attempt:
                pass
    assert budget.ledger.tokens == 4  # type: ignore[union-attr]


async def test_an_exhausted_budget_stops_async_for_retrying() -> None:
    budget = RetryBudget.tokens(max_tokens=4, token_ratio=0.1)
    policy = Retry(attempts=5, backoff=NO_WAIT, budget=budget)
    for _ in range(2):
        with pytest.raises(OSError):
            await policy.call(_fails)
    exhausted = budget.exhausted
    tries = 0
    with pytest.raises(OSError) as caught:
        async for attempt in policy:
            with attempt:
                tries += 1
                raise OSError("down")
    assert tries == 1 and budget.exhausted == exhausted + 1
    assert "(budget)" in caught.value.__notes__[-1]


async def test_break_after_a_success_ends_the_call() -> None:
    budget = RetryBudget.concurrency(percent=1.0, min_retries=1)
    policy = Retry(attempts=3, backoff=NO_WAIT, budget=budget)
    failures = [OSError("down")]
    async for attempt in policy:
        with attempt:
            if failures:
                raise failures.pop()
        if attempt.exception is None:
            break
    assert budget_state(budget) == (0, 0)


async def test_async_for_cancelled_in_its_sleep_leaks_no_slot() -> None:
    budget = RetryBudget.concurrency(percent=1.0, min_retries=1)
    policy = Retry(attempts=3, backoff=constant(10.0), budget=budget)

    async def loop_forever() -> None:
        async for attempt in policy:
            with attempt:
                raise OSError("down")

    task = asyncio.create_task(loop_forever())
    await asyncio.sleep(1.0)
    assert budget_state(budget) == (1, 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert budget_state(budget) == (0, 0)


async def test_async_for_cancelled_in_an_attempt_leaks_no_slot() -> None:
    budget = RetryBudget.concurrency(percent=1.0, min_retries=1)
    policy = Retry(attempts=3, backoff=NO_WAIT, budget=budget)
    started = asyncio.Event()

    async def stuck() -> None:
        async for attempt in policy:
            with attempt:
                if attempt.number == 1:
                    raise OSError("down")
                started.set()
                await asyncio.sleep(100)

    task = asyncio.create_task(stuck())
    await started.wait()
    assert budget_state(budget) == (1, 1)  # the retry attempt holds its slot
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert budget_state(budget) == (0, 0)


async def _fails() -> None:
    raise OSError("down")

"""Circuit breaker in virtual time: every transition, windows, probes, cancellation, control."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import json
import logging
import math
import sys
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, ClassVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import aioresilience as ar
from aioresilience import (
    Bulkhead,
    BulkheadFull,
    CircuitBreaker,
    CircuitBreakerOpenError,
    CircuitState,
    CircuitStateChange,
    LoadShed,
    Pipeline,
    RateLimited,
    Rejected,
    Retry,
    exponential,
)
from aioresilience._core.backoff import Backoff
from aioresilience._core.breaker import BreakerMachine
from aioresilience._core.windows import CountWindow


class Boom(Exception):
    pass


async def ok() -> str:
    return "ok"


async def fail() -> None:
    raise Boom("down")


async def failures(breaker: CircuitBreaker, n: int) -> None:
    for _ in range(n):
        with pytest.raises(Boom):
            await breaker.call(fail)


async def test_opens_after_consecutive_failures_and_refuses_with_time_left() -> None:
    breaker = CircuitBreaker(failure_threshold=3, break_duration=10.0)
    await failures(breaker, 2)
    assert await breaker.call(ok) == "ok"  # a success resets the streak
    await failures(breaker, 3)
    assert breaker.state is CircuitState.OPEN
    await asyncio.sleep(4)
    with pytest.raises(CircuitBreakerOpenError) as caught:
        await breaker.call(ok)
    assert isinstance(caught.value, Rejected)
    assert caught.value.retry_after == pytest.approx(6.0)
    stats = breaker.statistics()
    assert (stats.failures, stats.successes, stats.rejected, stats.opened) == (5, 1, 1, 1)


async def test_half_open_probe_success_closes_failure_reopens() -> None:
    breaker = CircuitBreaker(failure_threshold=1, break_duration=5.0)
    await failures(breaker, 1)
    await asyncio.sleep(5)
    assert breaker.state is CircuitState.HALF_OPEN
    await failures(breaker, 1)  # the probe fails
    assert breaker.state is CircuitState.OPEN
    await asyncio.sleep(5)
    assert await breaker.call(ok) == "ok"  # the probe succeeds
    assert breaker.state is CircuitState.CLOSED


async def test_half_open_admits_exactly_the_probe_limit() -> None:
    breaker = CircuitBreaker(failure_threshold=1, break_duration=1.0, half_open_max_calls=2)
    await failures(breaker, 1)
    await asyncio.sleep(1)
    release = asyncio.Event()

    async def slow_ok() -> str:
        await release.wait()
        return "ok"

    probes = [asyncio.create_task(breaker.call(slow_ok)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(CircuitBreakerOpenError) as caught:
        await breaker.call(ok)
    assert caught.value.state == "half_open"
    # The member, as breaker.state is (it was the bare string: `is` was always False).
    assert caught.value.state is CircuitState.HALF_OPEN is breaker.state
    assert json.dumps({"state": breaker.state}) == '{"state": "half_open"}'
    assert caught.value.retry_after > 0
    release.set()
    assert await asyncio.gather(*probes) == ["ok", "ok"]
    assert breaker.state is CircuitState.CLOSED


async def test_outcomes_from_before_a_state_change_do_not_count_as_probes() -> None:
    breaker = CircuitBreaker(failure_threshold=1, break_duration=1.0)
    release = asyncio.Event()

    async def slow_fail() -> None:
        await release.wait()
        raise Boom

    straggler = asyncio.create_task(breaker.call(slow_fail))  # admitted while CLOSED
    await asyncio.sleep(0)
    await failures(breaker, 1)  # opens
    await asyncio.sleep(1)
    probe_gate = asyncio.Event()

    async def probe() -> str:
        await probe_gate.wait()
        return "ok"

    probe_task = asyncio.create_task(breaker.call(probe))
    await asyncio.sleep(0)
    release.set()  # the straggler fails during HALF_OPEN: not the probe's outcome
    with pytest.raises(Boom):
        await straggler
    assert breaker.state is CircuitState.HALF_OPEN
    probe_gate.set()
    await probe_task
    assert breaker.state is CircuitState.CLOSED


async def test_a_probe_that_never_finishes_cannot_keep_it_half_open() -> None:
    breaker = CircuitBreaker(failure_threshold=1, break_duration=2.0, half_open_max_duration=5.0)
    await failures(breaker, 1)
    await asyncio.sleep(2)
    hung = asyncio.create_task(breaker.call(asyncio.sleep, 3600))
    await asyncio.sleep(0)
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.call(ok)
    await asyncio.sleep(5)  # the half-open bound passes with the probe still running
    with pytest.raises(CircuitBreakerOpenError) as caught:
        await breaker.call(ok)
    assert breaker.state is CircuitState.OPEN
    assert caught.value.retry_after == pytest.approx(2.0)
    hung.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hung


async def test_cancellation_is_never_counted_and_frees_the_probe_slot() -> None:
    breaker = CircuitBreaker(failure_threshold=1, break_duration=1.0)
    task = asyncio.create_task(breaker.call(asyncio.sleep, 10))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is CircuitState.CLOSED  # not a failure
    await failures(breaker, 1)
    await asyncio.sleep(1)
    probe = asyncio.create_task(breaker.call(asyncio.sleep, 10))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.state is CircuitState.HALF_OPEN  # neither success nor failure
    assert await breaker.call(ok) == "ok"  # the slot was given back
    assert breaker.state is CircuitState.CLOSED
    assert (breaker.statistics().cancelled, breaker.statistics().ignored) == (2, 0)


async def test_failure_rate_over_count_window_with_minimum_calls() -> None:
    breaker = CircuitBreaker(
        failure_threshold=None, failure_rate_threshold=0.5, window_size=10, minimum_calls=4
    )
    await failures(breaker, 3)
    assert breaker.state is CircuitState.CLOSED  # 3 calls < minimum 4
    await failures(breaker, 1)
    assert breaker.state is CircuitState.OPEN  # 4/4 failed


async def test_count_window_forgets_old_outcomes() -> None:
    breaker = CircuitBreaker(
        failure_threshold=None, failure_rate_threshold=0.5, window_size=4, minimum_calls=4
    )
    await failures(breaker, 1)
    for _ in range(5):
        await breaker.call(ok)
    assert breaker.statistics().window_failures == 0  # pushed out of the last 4
    await failures(breaker, 1)
    assert breaker.state is CircuitState.CLOSED  # 1 in 4 = 25 %


async def test_time_window_evicts_with_time() -> None:
    breaker = CircuitBreaker(
        failure_threshold=None,
        failure_rate_threshold=0.5,
        window="time",
        window_size=10.0,
        minimum_calls=3,
    )
    await failures(breaker, 2)
    await asyncio.sleep(11)  # those failures leave the window
    await breaker.call(ok)
    await breaker.call(ok)
    await failures(breaker, 1)
    assert breaker.statistics().window_calls == 3
    assert breaker.state is CircuitState.CLOSED  # 1/3
    await failures(breaker, 1)
    assert breaker.state is CircuitState.OPEN  # 2/4


async def test_slow_call_rate_trips_even_on_successes() -> None:
    breaker = CircuitBreaker(
        failure_threshold=None,
        slow_call_rate_threshold=0.5,
        slow_call_duration=1.0,
        minimum_calls=2,
    )
    await breaker.call(asyncio.sleep, 0.5)
    await breaker.call(asyncio.sleep, 1.5)
    assert breaker.state is CircuitState.OPEN
    assert breaker.statistics().window_slow_calls == 1


async def test_break_duration_grows_and_is_capped() -> None:
    breaker = CircuitBreaker(
        failure_threshold=1, break_duration=exponential(1.0, cap=4.0, jitter="none")
    )
    waits = []
    await failures(breaker, 1)
    for _ in range(4):
        waits.append(breaker.statistics().retry_after)
        await asyncio.sleep(waits[-1])
        await failures(breaker, 1)  # the probe fails: open again, longer
    assert waits == [1.0, 2.0, 4.0, 4.0]
    await asyncio.sleep(4.0)
    await breaker.call(ok)
    await failures(breaker, 1)
    assert breaker.statistics().retry_after == 1.0  # closing reset the growth


async def test_jittered_break_duration_is_reproducible_with_a_seed() -> None:
    async def schedule(seed: int) -> list[float]:
        breaker = CircuitBreaker(
            failure_threshold=1, break_duration=exponential(1.0, cap=60.0), seed=seed
        )
        out = []
        await failures(breaker, 1)
        for _ in range(5):
            out.append(breaker.statistics().retry_after)
            await asyncio.sleep(out[-1])
            await failures(breaker, 1)
        return out

    first = await schedule(1)
    assert first == pytest.approx(await schedule(1), abs=1e-9)
    assert first != pytest.approx(await schedule(2), abs=1e-9)
    assert all(0 <= d <= min(60.0, 2.0**k) for k, d in enumerate(first))


async def test_what_counts_exceptions_and_results() -> None:
    breaker = CircuitBreaker(
        failure_threshold=1,
        record=(Boom, ValueError),
        ignore=lambda exc: "benign" in str(exc),
        failure_result=lambda result: result == "error page",
    )
    with pytest.raises(KeyError):
        await breaker.call(_raise, KeyError("not recorded"))
    with pytest.raises(ValueError, match="benign"):
        await breaker.call(_raise, ValueError("benign"))
    assert breaker.state is CircuitState.CLOSED
    assert await breaker.call(_value, "error page") == "error page"  # returned, but a failure
    assert breaker.state is CircuitState.OPEN


async def _raise(exc: BaseException) -> None:
    raise exc


async def _value(value: Any) -> Any:
    return value


async def test_async_with_and_decorator_share_the_accounting() -> None:
    breaker = CircuitBreaker(failure_threshold=2)

    @breaker
    async def flaky(should_fail: bool) -> str:
        if should_fail:
            raise Boom
        return "fine"

    assert flaky.__name__ == "flaky"
    assert await flaky(False) == "fine"
    with pytest.raises(Boom):
        await flaky(True)
    with pytest.raises(Boom):
        async with breaker:
            raise Boom
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(CircuitBreakerOpenError):
        async with breaker:
            pass
    with pytest.raises(TypeError, match="coroutine functions"):
        breaker(lambda: None)  # type: ignore[arg-type,return-value]


async def test_nested_async_with_keeps_each_entry() -> None:
    breaker = CircuitBreaker(failure_threshold=1, break_duration=1.0)
    await failures(breaker, 1)
    await asyncio.sleep(1)
    async with breaker:  # the probe
        async with breaker, breaker:  # inside it: passes through, takes no second probe
            pass
        assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.state is CircuitState.CLOSED
    assert breaker.statistics().successes == 1


async def test_manual_control() -> None:
    breaker = CircuitBreaker(failure_threshold=1)
    breaker.isolate()
    with pytest.raises(CircuitBreakerOpenError) as caught:
        await breaker.call(ok)
    assert caught.value.retry_after == float("inf")
    await asyncio.sleep(3600)
    assert breaker.state is CircuitState.ISOLATED  # no break ends an isolation
    breaker.disable()
    await failures(breaker, 5)
    assert breaker.state is CircuitState.DISABLED  # forced closed: nothing counted
    breaker.reset()
    assert breaker.state is CircuitState.CLOSED
    breaker.trip()
    assert breaker.state is CircuitState.OPEN


async def test_listeners_sync_async_and_failing(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[CircuitState, CircuitState]] = []
    async_seen: list[CircuitStateChange] = []

    def record(event: CircuitStateChange) -> None:
        seen.append((event.old, event.new))

    async def record_async(event: CircuitStateChange) -> None:
        async_seen.append(event)

    def broken(event: CircuitStateChange) -> None:
        raise RuntimeError("listener bug")

    breaker = CircuitBreaker(
        name="db",
        failure_threshold=1,
        break_duration=2.0,
        on_state_change=[record, record_async, broken],
    )
    with caplog.at_level(logging.ERROR, logger="aioresilience"):
        await failures(breaker, 1)  # the call still raises its own error, nothing else
        await asyncio.sleep(2)
        assert await breaker.call(ok) == "ok"
    await asyncio.sleep(0)
    assert seen == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]
    assert [e.new for e in async_seen] == [n for _, n in seen]
    assert async_seen[0].breaker == "db"
    assert async_seen[0].retry_after == 2.0
    assert len([r for r in caplog.records if "failed on" in r.getMessage()]) == 3


async def test_repr_and_statistics() -> None:
    breaker = CircuitBreaker(name="payments", failure_threshold=2)
    await failures(breaker, 1)
    assert "payments" in repr(breaker)
    assert "consecutive_failures=1" in repr(breaker)
    stats = breaker.statistics()
    assert stats.state is CircuitState.CLOSED
    with pytest.raises(AttributeError):
        stats.failures = 0  # type: ignore[misc]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"failure_threshold": 0}, ValueError, r"failure_threshold must be in \[1, 1e\+09\]"),
        (
            {"failure_rate_threshold": 1.5},
            ValueError,
            r"failure_rate_threshold must be in \[1e-06, 1\], got 1.5",
        ),
        ({"failure_rate_threshold": 0}, ValueError, "failure_rate_threshold must be in"),
        ({"slow_call_rate_threshold": 0.5}, ValueError, "needs slow_call_duration"),
        ({"failure_threshold": None}, ValueError, "no trip rule"),
        ({"window": "sliding"}, ValueError, "window must be 'count' or 'time'"),
        ({"failure_rate_threshold": 0.5, "window_size": 0}, ValueError, "window_size must be"),
        ({"break_duration": -1}, ValueError, "break_duration must be in"),
        ({"break_duration": float("nan")}, ValueError, "break_duration must be in"),
        ({"half_open_max_calls": 0}, ValueError, "half_open_max_calls must be in"),
        ({"minimum_calls": 0}, ValueError, "minimum_calls must be in"),
        ({"record": "Exception"}, TypeError, "record must be an exception class"),
        ({"ignore": (KeyError, 3)}, TypeError, "ignore must hold exception classes"),
        ({"ignore": [KeyError, "x"]}, TypeError, "ignore must hold exception classes"),
        ({"record": {"a": OSError}}, TypeError, "a tuple, list or set of them"),
        ({"failure_result": 3}, TypeError, "failure_result must be callable"),
        ({"on_state_change": [None]}, TypeError, "on_state_change must hold callables"),
    ],
)
def test_bad_options_fail_at_construction(
    options: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        CircuitBreaker(**options)


class BreakerMachineTest(RuleBasedStateMachine):
    """Random operations: only legal transitions, never more probes than allowed."""

    LEGAL: ClassVar[set[tuple[CircuitState, CircuitState]]] = {
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    }

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.now = 0.0
        self.changes: list[CircuitStateChange] = []
        self.breaker = CircuitBreaker(
            failure_threshold=2,
            failure_rate_threshold=0.5,
            minimum_calls=3,
            window_size=5,
            break_duration=3.0,
            half_open_max_calls=2,
            half_open_max_duration=10.0,
            on_state_change=[self.changes.append],
        )
        self.machine = self.breaker._state  # the in-memory state (BreakerMachine)
        assert isinstance(self.machine, BreakerMachine)
        self.in_flight: list[tuple[int, float, bool]] = []  # generation, start, is_probe

    def teardown(self) -> None:
        self.loop.close()

    def _now(self) -> float:
        return self.now

    @rule(seconds=st.sampled_from([0.0, 0.5, 1.0, 3.0, 11.0]))
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @rule()
    def admit(self) -> None:
        was = self.machine.state
        retry = self.machine.admit(self.now)
        if not retry:
            probe = self.machine.state is CircuitState.HALF_OPEN
            self.in_flight.append((self.machine.generation, self.now, probe))
        self.check_transition(was)

    @precondition(lambda self: self.in_flight)
    @rule(index=st.integers(min_value=0), outcome=st.sampled_from(["ok", "fail", "cancel"]))
    def finish(self, index: int, outcome: str) -> None:
        generation, _, _ = self.in_flight.pop(index % len(self.in_flight))
        was = self.machine.state
        if outcome == "cancel":
            self.machine.release(generation)
        else:
            self.machine.record(self.now, generation, outcome == "fail", False)
        self.check_transition(was)

    def check_transition(self, was: CircuitState) -> None:
        now_state = self.machine.state
        if now_state is not was:
            # OPEN -> HALF_OPEN -> OPEN may happen inside one admit (stuck probes).
            assert (was, now_state) in self.LEGAL | {(CircuitState.OPEN, CircuitState.OPEN)}

    @invariant()
    def probes_within_limit(self) -> None:
        if self.machine.state is CircuitState.HALF_OPEN:
            live = sum(
                1 for g, _, probe in self.in_flight if probe and g == self.machine.generation
            )
            assert live <= 2
            assert self.machine.probes_admitted <= 2


BreakerMachineTest.TestCase.settings = settings(max_examples=150, stateful_step_count=40)
test_breaker_state_machine = BreakerMachineTest.TestCase


# -- issue 11 -------------------------------------------------------------------------------


async def _healthy() -> str:
    await asyncio.sleep(0.01)
    return "ok"


async def test_a_full_bulkhead_inside_does_not_open_the_breaker() -> None:
    # Issue 11 item 3: the bulkhead's refusals are not the backend's failures.
    breaker = CircuitBreaker()
    pipeline = (
        Pipeline.builder("p").retry(attempts=1).circuit_breaker(breaker).bulkhead(Bulkhead(2))
    ).build()
    outcomes = await asyncio.gather(
        *(pipeline.execute(_healthy) for _ in range(10)), return_exceptions=True
    )
    assert outcomes.count("ok") == 2
    assert all(isinstance(o, BulkheadFull) for o in outcomes if o != "ok")
    assert breaker.state is CircuitState.CLOSED
    stats = breaker.statistics()
    assert (stats.failures, stats.successes, stats.ignored) == (0, 2, 8)
    assert await pipeline.execute(_healthy) == "ok"


REFUSALS = [
    BulkheadFull("full"),
    RateLimited("limited", retry_after=1.0, limiter="l"),
    CircuitBreakerOpenError("open", retry_after=1.0, breaker="other", state="open"),
    LoadShed("shed"),
    Rejected("refused"),
]


@pytest.mark.parametrize("refusal", REFUSALS, ids=lambda e: type(e).__name__)
@pytest.mark.parametrize("way", ["call", "async_with", "decorator", "pipeline"])
async def test_refusals_of_guards_inside_count_neither_way(refusal: Rejected, way: str) -> None:
    breaker = CircuitBreaker(failure_threshold=1, break_duration=1.0)

    async def refused() -> None:
        raise refusal

    decorated = breaker(refused)
    pipeline = Pipeline.builder("p").circuit_breaker(breaker).build()

    async def through() -> None:
        if way == "call":
            await breaker.call(refused)
        elif way == "async_with":
            async with breaker:
                await refused()
        elif way == "decorator":
            await decorated()
        else:
            await pipeline.execute(refused)

    for _ in range(3):
        with pytest.raises(type(refusal)):
            await through()
    assert breaker.state is CircuitState.CLOSED
    assert (breaker.statistics().failures, breaker.statistics().ignored) == (0, 3)
    # Nor are they a probe's failure: the slot goes back, the next probe decides.
    breaker.trip()
    await asyncio.sleep(1)
    with pytest.raises(type(refusal)):
        await through()
    assert breaker.state is CircuitState.HALF_OPEN
    assert await breaker.call(ok) == "ok"
    assert breaker.state is CircuitState.CLOSED


async def test_a_refusal_counts_when_record_names_it() -> None:
    breaker = CircuitBreaker(failure_threshold=2, record=(Boom, BulkheadFull))
    for _ in range(2):
        with pytest.raises(BulkheadFull):
            await breaker.call(_raise, BulkheadFull("full"))
    assert breaker.state is CircuitState.OPEN
    every = CircuitBreaker(failure_threshold=1, record=Rejected)
    with pytest.raises(LoadShed):
        await every.call(_raise, LoadShed("shed"))
    assert every.state is CircuitState.OPEN
    # A predicate is asked about the user's exceptions only, never about a refusal.
    predicate = CircuitBreaker(failure_threshold=1, record=lambda exc: True)
    with pytest.raises(BulkheadFull):
        await predicate.call(_raise, BulkheadFull("full"))
    assert predicate.state is CircuitState.CLOSED
    with pytest.raises(Boom):
        await predicate.call(fail)
    assert predicate.state is CircuitState.OPEN


async def _recovered() -> str:
    await asyncio.sleep(0.05)
    return "ok"


@pytest.mark.parametrize("seed", range(20))
async def test_retry_around_a_half_open_breaker_comes_back_soon(seed: int) -> None:
    # Issue 11 item 5: refused while the probe runs, callers are told to come back soon
    # (it took 60.2 s: the hint was the half-open watchdog). The retry's own jittered backoff
    # sets the pace now: 0.2-0.8 s over 300 seeds.
    breaker = CircuitBreaker(failure_threshold=2, break_duration=0.1)
    await failures(breaker, 2)
    loop = asyncio.get_running_loop()
    start = loop.time()
    policy = Retry(attempts=5, retry_rejections=True, seed=seed)
    outcomes = await asyncio.gather(*(policy.call(breaker.call, _recovered) for _ in range(3)))
    assert outcomes == ["ok"] * 3
    assert loop.time() - start < 1.0
    assert breaker.state is CircuitState.CLOSED


async def test_the_half_open_hint_follows_the_probe() -> None:
    breaker = CircuitBreaker(failure_threshold=1, break_duration=1.0, half_open_max_duration=10.0)
    await failures(breaker, 1)
    await asyncio.sleep(1)
    probe = asyncio.create_task(breaker.call(asyncio.sleep, 3600))
    await asyncio.sleep(0)
    hints = []
    for wait in (0.0, 0.5, 2.0, 7.0):
        await asyncio.sleep(wait)
        with pytest.raises(CircuitBreakerOpenError) as caught:
            await breaker.call(ok)
        hints.append(caught.value.retry_after)
        assert breaker.retry_after == caught.value.retry_after  # the read-out agrees
    # At least 1 ms; as long as the probe has run so far (a caller polling on the hint comes
    # back at most the probe's own duration after its outcome); never past the watchdog.
    assert hints == pytest.approx([1e-3, 0.5, 2.5, 0.5])
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe


async def test_the_same_breaker_entered_twice_counts_once() -> None:
    # Issue 11 item 6: every way of entering it again inside itself, in one task.
    breaker = CircuitBreaker(failure_threshold=2, break_duration=1.0)

    @breaker
    async def inner(outcome: str) -> str:
        if outcome == "fail":
            raise Boom
        return outcome

    async def with_block(outcome: str) -> str:
        async with breaker:
            return await inner(outcome)

    pipeline = Pipeline.builder("p").circuit_breaker(breaker).build()
    ways: list[Callable[[str], Awaitable[str]]] = [
        lambda o: breaker.call(inner, o),
        with_block,
        lambda o: pipeline.execute(inner, o),
        lambda o: breaker.call(with_block, o),
    ]
    for way in ways:
        breaker.reset()
        with pytest.raises(Boom):
            await way("fail")
        assert breaker.statistics().consecutive_failures == 1  # one failure, not two
        assert breaker.state is CircuitState.CLOSED
        with pytest.raises(Boom):
            await way("fail")
        assert breaker.state is CircuitState.OPEN
        await asyncio.sleep(1)
        assert await way("ok") == "ok"  # the outer entry is the probe; the inner passes
        assert breaker.state is CircuitState.CLOSED


async def test_nested_entries_in_tasks_started_inside_pass_through_while_it_runs() -> None:
    breaker = CircuitBreaker(failure_threshold=1, break_duration=1.0)
    await failures(breaker, 1)
    await asyncio.sleep(1)
    later: list[asyncio.Task[str]] = []

    async def fan_out() -> list[str]:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(breaker.call(ok)) for _ in range(3)]
        later.append(asyncio.create_task(breaker.call(_recovered)))  # outlives the entry
        return [t.result() for t in tasks]

    assert await breaker.call(fan_out) == ["ok"] * 3  # one probe, its children inside it
    assert breaker.state is CircuitState.CLOSED
    assert await later[0] == "ok"
    assert breaker.statistics().successes == 2  # the probe, and the task that outlived it


async def test_rates_are_judged_after_every_outcome_whatever_the_order() -> None:
    # Issue 11 item 7 (resilience4j's rule).
    def rated(minimum: int) -> CircuitBreaker:
        return CircuitBreaker(
            failure_threshold=None,
            failure_rate_threshold=0.5,
            window_size=10,
            minimum_calls=minimum,
        )

    for order in (["fail"] * 5 + ["ok"] * 5, ["ok"] * 5 + ["fail"] * 5):
        breaker = rated(10)
        for outcome in order:
            with contextlib.suppress(Boom):
                await breaker.call(fail if outcome == "fail" else ok)
        assert breaker.state is CircuitState.OPEN, order
    breaker = rated(5)
    for outcome in ["fail", "fail", "fail", "ok"]:
        with contextlib.suppress(Boom):
            await breaker.call(fail if outcome == "fail" else ok)
    assert breaker.state is CircuitState.CLOSED  # 4 calls < 5
    await breaker.call(ok)  # 3 of 5 failed: 60 %
    assert breaker.state is CircuitState.OPEN


def _judge(window: list[tuple[bool, bool]], rate: float, slow_rate: float) -> bool:
    calls = len(window)
    failed = sum(f for f, _ in window)
    slow = sum(s for _, s in window)
    return failed / calls >= rate or slow / calls >= slow_rate


@settings(max_examples=200, deadline=None)
@given(
    outcomes=st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=40),
    size=st.integers(1, 12),
    minimum=st.integers(1, 12),
    rate=st.sampled_from([0.2, 0.5, 0.75, 1.0]),
    slow_rate=st.sampled_from([0.3, 0.5, 1.0]),
)
def test_the_trip_decision_depends_only_on_the_window(
    outcomes: list[tuple[bool, bool]], size: int, minimum: int, rate: float, slow_rate: float
) -> None:
    machine = BreakerMachine(
        failure_threshold=None,
        failure_rate_threshold=rate,
        slow_call_rate_threshold=slow_rate,
        minimum_calls=min(minimum, size),
        window=CountWindow(size),
        break_duration=Backoff("constant", 1.0),
        probes=1,
        half_open_timeout=1.0,
        random=lambda: 0.5,
    )
    seen: list[tuple[bool, bool]] = []
    for failed, slow in outcomes:
        machine.record(0.0, machine.generation, failed, slow)
        seen.append((failed, slow))
        window = seen[-size:]
        expected = len(window) >= min(minimum, size) and _judge(window, rate, slow_rate)
        assert (machine.state is CircuitState.OPEN) == expected, window
        if expected:
            return
    # ...and on nothing else: any order of the same window decides the same.
    window = seen[-size:]
    if len(window) == size:
        reordered = BreakerMachine(
            failure_threshold=None,
            failure_rate_threshold=rate,
            slow_call_rate_threshold=slow_rate,
            minimum_calls=size,
            window=CountWindow(size),
            break_duration=Backoff("constant", 1.0),
            probes=1,
            half_open_timeout=1.0,
            random=lambda: 0.5,
        )
        for failed, slow in sorted(window):
            reordered.record(0.0, reordered.generation, failed, slow)
        assert reordered.state is CircuitState.CLOSED


async def test_read_outs_follow_the_half_open_watchdog() -> None:
    # Issue 11 item 15: the state and retry_after say what the next call will meet.
    breaker = CircuitBreaker(failure_threshold=1, break_duration=2.0, half_open_max_duration=5.0)
    await failures(breaker, 1)
    await asyncio.sleep(2)
    hung = asyncio.create_task(breaker.call(asyncio.sleep, 3600))
    await asyncio.sleep(0)
    assert breaker.state is CircuitState.HALF_OPEN
    await asyncio.sleep(6)  # the watchdog re-opened it 1 s ago, for 2 s
    assert breaker.state is CircuitState.OPEN
    assert breaker.retry_after == pytest.approx(1.0)
    assert breaker.statistics().retry_after == pytest.approx(1.0)
    with pytest.raises(CircuitBreakerOpenError) as caught:
        await breaker.call(ok)
    assert caught.value.retry_after == pytest.approx(1.0)
    await asyncio.sleep(1)
    assert (breaker.state, breaker.retry_after) == (CircuitState.HALF_OPEN, 0.0)
    assert await breaker.call(ok) == "ok"  # a new probe, while the old one still hangs
    assert breaker.state is CircuitState.CLOSED
    hung.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hung
    assert breaker.statistics().cancelled == 1


async def test_a_disabled_breaker_counts_nothing() -> None:
    breaker = CircuitBreaker(failure_threshold=1)
    breaker.disable()
    release = asyncio.Event()

    async def after_release() -> None:
        await release.wait()
        raise Boom

    straggler = asyncio.create_task(breaker.call(after_release))  # admitted while disabled
    await asyncio.sleep(0)
    await failures(breaker, 3)
    await breaker.call(ok)
    cancelled = asyncio.create_task(breaker.call(asyncio.sleep, 10))
    await asyncio.sleep(0)
    cancelled.cancel()
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    breaker.reset()
    release.set()
    with pytest.raises(Boom):
        await straggler
    stats = breaker.statistics()
    assert (stats.failures, stats.successes, stats.ignored, stats.cancelled) == (0, 0, 0, 0)
    assert breaker.state is CircuitState.CLOSED


async def test_cancellations_have_their_own_counter() -> None:
    breaker = CircuitBreaker(ignore=KeyError)
    task = asyncio.create_task(breaker.call(asyncio.sleep, 10))
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    with pytest.raises(KeyError):
        await breaker.call(_raise, KeyError("ignored"))
    stats = breaker.statistics()
    assert (stats.cancelled, stats.ignored, stats.failures) == (1, 1, 0)


async def _async_predicate(value: object) -> bool:
    return False


class _AsyncCall:
    async def __call__(self, value: object) -> bool:
        return False


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"on_state_change": 5}, TypeError, "on_state_change must be an iterable of callables"),
        ({"on_state_change": print}, TypeError, "on_state_change must be an iterable"),
        ({"on_state_change": [5]}, TypeError, "on_state_change must hold callables, got 5"),
        ({"name": 5}, TypeError, "name must be a str or None, got 5"),
        ({"name": ""}, ValueError, "name must not be empty"),
        ({"record": _async_predicate}, TypeError, "record must be a plain"),
        ({"ignore": _AsyncCall()}, TypeError, "ignore must be a plain"),
        ({"failure_result": _async_predicate}, TypeError, "failure_result must be a plain"),
        (
            {"failure_result": functools.partial(_async_predicate)},
            TypeError,
            "failure_result must be a plain",
        ),
        ({"seed": True}, TypeError, "seed must be an int"),
        ({"seed": 1.5}, TypeError, "seed must be an int"),
        ({"window": "time", "window_size": 5e-324}, ValueError, "window_size must be in"),
        ({"recovery_timeout": 5, "break_duration": 5}, TypeError, "recovery_timeout"),
        ({"break_duration": Backoff("constant", math.nan)}, ValueError, "break_duration"),
        ({"break_duration": Backoff("constant", 1.0, cap=0.0)}, ValueError, "break_duration"),
    ],
)
def test_more_bad_options_fail_at_construction(
    options: dict[str, Any], error: type, message: str
) -> None:
    with pytest.raises(error, match=message):
        CircuitBreaker(failure_rate_threshold=0.5, **options)


NUMERIC = {
    "failure_threshold": "int",
    "minimum_calls": "int",
    "half_open_max_calls": "int",
    "window_size": "int",  # a count window
    "failure_rate_threshold": "fraction",
    "slow_call_rate_threshold": "fraction",
    "slow_call_duration": "seconds",
    "break_duration": "seconds",
    "recovery_timeout": "seconds",
    "half_open_max_duration": "seconds",
    "time window_size": "seconds",
}


@pytest.mark.parametrize("option", sorted(NUMERIC))
@pytest.mark.parametrize(
    "value", [True, math.nan, math.inf, -1, 0, 5e-324, 10**400, -(10**400), 1e300, "1"]
)
def test_every_numeric_option_refuses_what_is_not_a_sound_number(
    option: str, value: object
) -> None:
    options: dict[str, Any] = {"failure_rate_threshold": 0.5, "slow_call_duration": 1.0}
    if option == "time window_size":
        options["window"] = "time"
        option = "window_size"
    options[option] = value
    name = option.replace("(", r"\(")
    with pytest.raises((TypeError, ValueError), match=rf"^{name} must"):
        CircuitBreaker(**options)


@settings(max_examples=300, deadline=None)
@given(
    option=st.sampled_from(sorted(NUMERIC)),
    value=st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.text(max_size=3)),
)
def test_a_fuzzed_option_builds_a_working_breaker_or_fails_naming_itself(
    option: str, value: object
) -> None:
    options: dict[str, Any] = {"failure_rate_threshold": 0.5, "slow_call_duration": 1.0}
    if option == "time window_size":
        options["window"] = "time"
        option = "window_size"
    options[option] = value
    refusal = ""
    try:
        breaker = CircuitBreaker(**options)
    except (TypeError, ValueError) as error:
        refusal = str(error)
    if refusal:
        assert refusal.startswith(option), refusal
        return
    loop = asyncio.new_event_loop()
    try:
        for _ in range(3):
            with contextlib.suppress(Boom, CircuitBreakerOpenError):
                loop.run_until_complete(breaker.call(fail))
        loop.run_until_complete(asyncio.sleep(0))
        breaker.statistics()
        repr(breaker)
    finally:
        loop.close()


async def test_recovery_timeout_is_the_break_duration() -> None:
    # The seed guide's name (as in the `circuitbreaker` package): seconds open before a probe.
    breaker = CircuitBreaker(failure_threshold=1, recovery_timeout=7)
    await failures(breaker, 1)
    assert breaker.retry_after == 7.0
    with pytest.raises(TypeError, match="timeout"):
        CircuitBreaker(timeout=5)  # type: ignore[call-arg]
    # A schedule too, as break_duration takes (its checks name the name given).
    growing = CircuitBreaker(
        failure_threshold=1, recovery_timeout=exponential(2, cap=8, jitter="none")
    )
    await failures(growing, 1)
    assert growing.retry_after == 2.0
    with pytest.raises(ValueError, match=r"^recovery_timeout must start above 0"):
        CircuitBreaker(recovery_timeout=Backoff("constant", 0.0))


@pytest.mark.parametrize("way", ["call", "async_with", "pipeline"])
async def test_a_cancelled_nested_call_is_one_cancellation_and_frees_the_probe(way: str) -> None:
    breaker = CircuitBreaker(failure_threshold=1, break_duration=1.0)

    @breaker
    async def inner() -> None:
        await asyncio.sleep(10)

    async def with_block() -> None:
        async with breaker:
            await inner()

    pipeline = Pipeline.builder("p").circuit_breaker(breaker).build()
    outer = {
        "call": lambda: breaker.call(inner),
        "async_with": with_block,
        "pipeline": lambda: pipeline.execute(inner),
    }[way]
    await failures(breaker, 1)
    await asyncio.sleep(1)
    task = asyncio.create_task(outer())
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    stats = breaker.statistics()
    assert (stats.cancelled, stats.failures, stats.state) == (1, 1, CircuitState.HALF_OPEN)
    await failures(breaker, 1)  # the entry is over: this call is the probe, and counts
    assert breaker.state is CircuitState.OPEN


# -- the state seam: stores touch no private member of a front-end ----------------------------

# No exception, not even the guard core (_enter/_exit): a store that drives a guard by hand
# (the Redis store's own breaker guarding its round trips) gets the core through the public
# running seam, GuardStrategy(kind, guard).core().


def _private_accesses(kind: str) -> list[str]:
    """``<...kind...>._name`` attribute reads in aioresilience/stores (AST): the object read
    from is a name or attribute whose own name contains ``kind`` (breaker, self.limiter,
    store._breaker...), the attribute read is private."""
    import ast
    from pathlib import Path

    import aioresilience

    found = []
    stores = Path(aioresilience.__file__).parent / "stores"
    for path in sorted(stores.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Attribute) or not node.attr.startswith("_"):
                continue
            owner = node.value
            owner_name = (
                owner.id
                if isinstance(owner, ast.Name)
                else owner.attr
                if isinstance(owner, ast.Attribute)
                else ""
            )
            if kind in owner_name.lower():
                found.append(f"{path.relative_to(stores)}:{node.lineno}: {owner_name}.{node.attr}")
    return found


def test_stores_touch_no_private_member_of_a_breaker() -> None:
    assert _private_accesses("breaker") == []


async def test_a_block_passing_through_in_a_task_started_inside_outlives_the_entry() -> None:
    # The breaker's `async with` keeps its entry's record in the pass-through variable; a block
    # that passed through in a child task, still open when the outer entry ends, must neither
    # end another entry nor keep the child's later entries passing through.
    breaker = CircuitBreaker(failure_threshold=1, break_duration=1.0)
    gate = asyncio.Event()
    inner_states: list[int] = []

    async def child() -> None:
        async with breaker:  # inside the parent's entry: passes through
            await gate.wait()  # the parent's entry ends meanwhile
            async with breaker:  # a call of its own now: admitted and counted
                inner_states.append(breaker.statistics().successes)
            async with breaker:
                pass
        async with breaker:
            pass

    async with breaker:
        task = asyncio.create_task(child())
        await asyncio.sleep(0)
    assert breaker.statistics().successes == 1
    gate.set()
    await task
    assert inner_states == [1]
    # The parent, the child's three own entries, and the block that passed through: it
    # outlived the entry it passed, so it counts on its own (review 7).
    assert breaker.statistics().successes == 5
    with pytest.raises(RuntimeError, match="same task"):
        await breaker.__aexit__(None, None, None)


@pytest.mark.parametrize("form", ["call", "async with"])
async def test_a_call_in_a_task_that_outlives_the_entry_counts_on_its_own(form: str) -> None:
    """Review 7: a background task started inside an entry, whose call through the same
    breaker failed after that entry ended, was never counted: the breaker stayed closed."""
    breaker = CircuitBreaker(failure_threshold=1)

    async def fail_later() -> None:
        await asyncio.sleep(2)
        raise ConnectionError("down")

    async def through_block() -> None:
        async with breaker:
            await fail_later()

    async with breaker:
        job = asyncio.create_task(breaker.call(fail_later) if form == "call" else through_block())
        await asyncio.sleep(1)
    with pytest.raises(ConnectionError):
        await job
    assert breaker.state is CircuitState.OPEN
    assert breaker.statistics().failures == 1


async def test_a_task_started_inside_an_earlier_entry_while_its_parent_is_inside_again() -> None:
    """A child started inside the parent's first entry, calling once that entry has ended,
    counts on its own, whether or not the parent is inside the breaker again."""
    breaker = CircuitBreaker(failure_threshold=3)
    parent_inside = asyncio.Event()
    child_done = asyncio.Event()

    async def child() -> None:
        await parent_inside.wait()  # the parent's second entry is live now
        await breaker.call(asyncio.sleep, 0)
        child_done.set()
        await asyncio.sleep(1)  # the parent is outside now
        await breaker.call(asyncio.sleep, 0)

    async with breaker:
        job = asyncio.create_task(child())
    assert breaker.statistics().successes == 1

    async def second_entry() -> None:
        parent_inside.set()
        await child_done.wait()

    await breaker.call(second_entry)
    await job
    assert breaker.statistics().successes == 4  # parent: 2; child: 2


@pytest.mark.parametrize("eager", [False, True])
async def test_a_task_started_between_entries_is_not_inside_the_next_one(eager: bool) -> None:
    """A task started after its parent's entry ended (outside any entry) is not inside the
    parent's next entry: it is refused while the circuit is open, and its failures count."""
    if eager:
        if sys.version_info < (3, 12):
            pytest.skip("asyncio.eager_task_factory: 3.12+")
        asyncio.get_running_loop().set_task_factory(asyncio.eager_task_factory)
    breaker = CircuitBreaker(failure_threshold=2)
    await breaker.call(asyncio.sleep, 0)  # the parent's first entry, ended
    parent_inside = asyncio.Event()
    child_done = asyncio.Event()

    async def fail() -> None:
        raise ConnectionError("down")

    async def child() -> None:
        await parent_inside.wait()
        for _ in range(2):
            with pytest.raises(ConnectionError):
                await breaker.call(fail)
        with pytest.raises(CircuitBreakerOpenError):
            await breaker.call(asyncio.sleep, 0)
        child_done.set()

    async def second_entry() -> None:
        parent_inside.set()
        await child_done.wait()

    try:
        job = asyncio.create_task(child())
        await breaker.call(second_entry)
        await job
    finally:
        asyncio.get_running_loop().set_task_factory(None)
    statistics = breaker.statistics()
    assert (statistics.failures, statistics.rejected) == (2, 1)
    assert breaker.state is CircuitState.OPEN


async def test_a_task_that_ran_through_the_breaker_is_freed_without_the_collector() -> None:
    # Nothing the breaker keeps in a task's context refers to the task (a record holding it
    # would make a reference cycle of every task that used a breaker: freed only by the
    # collector).
    breaker = CircuitBreaker()

    async def work() -> None:
        for _ in range(3):
            await breaker.call(asyncio.sleep, 0)
            async with breaker:
                pass

    gc.disable()
    try:
        task = asyncio.create_task(work())
        await task
        await asyncio.sleep(0)  # the loop lets go of the finished task's last callback
        gone = weakref.ref(task)
        del task
        assert gone() is None
    finally:
        gc.enable()
    assert breaker.statistics().successes == 6


def test_a_breaker_call_driven_by_hand_outside_any_loop() -> None:
    # No running loop (asyncio.current_task() raises there): the call is admitted and counted.
    breaker = CircuitBreaker()

    async def work() -> str:
        return "done"

    for _ in range(2):
        coroutine = breaker.call(work)
        with pytest.raises(StopIteration) as stop:
            coroutine.send(None)
        assert stop.value.value == "done"
    assert breaker.statistics().successes == 2


async def test_many_sequential_entries_of_one_task_stay_nestable() -> None:
    # Sequential entries of one task: a nested call still passes through each time.
    breaker = CircuitBreaker(failure_threshold=1)

    async def fail() -> None:
        raise ConnectionError("down")

    for _ in range(3):
        await breaker.call(breaker(asyncio.sleep), 0)
    with pytest.raises(ConnectionError):
        await breaker.call(breaker(fail))
    statistics = breaker.statistics()
    assert (statistics.successes, statistics.failures) == (3, 1)
    assert breaker.state is CircuitState.OPEN


async def test_a_call_passing_through_a_live_entry_still_counts_once() -> None:
    breaker = CircuitBreaker(failure_threshold=1)

    async def fail() -> None:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError):
        await breaker.call(breaker(fail))
    assert breaker.statistics().failures == 1


async def test_a_probe_ending_past_the_half_open_bound_does_not_close_it() -> None:
    # The bound re-opened the circuit whether or not anyone read the state in between: the
    # late probe's success is an outcome that arrived after the state changed.
    breaker = CircuitBreaker(failure_threshold=1, break_duration=10.0, half_open_max_duration=60.0)
    breaker.trip()
    await asyncio.sleep(10)
    assert await breaker.call(asyncio.sleep, 70, "late") == "late"  # ends at t=80
    assert breaker.state is CircuitState.HALF_OPEN  # re-opened at t=70 for 10 s: not CLOSED
    assert breaker.statistics().opened == 2


async def test_sleeping_the_open_retry_after_is_enough() -> None:
    # now + (open_until - now) rounded an ulp short of open_until: refused again, 7e-15.
    breaker = CircuitBreaker(failure_threshold=1, break_duration=46.1)
    await asyncio.sleep(3.2)
    breaker.trip()
    await asyncio.sleep(5.6)
    with pytest.raises(CircuitBreakerOpenError) as caught:
        await breaker.call(ok)
    await asyncio.sleep(caught.value.retry_after)
    assert await breaker.call(ok) == "ok"


async def test_a_call_lasting_exactly_slow_call_duration_is_slow() -> None:
    # It ends at 0.3 + 2.0 == 2.3 and 2.3 - 0.3 == 1.9999999999999998: it was taken as fast.
    await asyncio.sleep(0.3)
    breaker = CircuitBreaker(
        failure_threshold=None,
        slow_call_rate_threshold=1.0,
        slow_call_duration=2.0,
        minimum_calls=1,
        window_size=1,
    )
    await breaker.call(asyncio.sleep, 2.0)
    assert breaker.statistics().window_slow_calls == 1
    assert breaker.state is CircuitState.OPEN


async def test_a_call_admitted_while_disabled_is_never_counted() -> None:
    # Whatever happened since: reset(), disable() and reset() again made its generation
    # neither the current one nor the latest disabled one, and it was counted.
    breaker = CircuitBreaker(failure_threshold=1)
    breaker.disable()
    release = asyncio.Event()

    async def fails_later() -> None:
        await release.wait()
        raise Boom

    calls = [asyncio.create_task(breaker.call(fails_later)) for _ in range(2)]
    await asyncio.sleep(0)
    breaker.reset()
    breaker.disable()
    breaker.reset()
    calls[1].cancel()
    release.set()
    with pytest.raises(Boom):
        await calls[0]
    with pytest.raises(asyncio.CancelledError):
        await calls[1]
    stats = breaker.statistics()
    assert (stats.failures, stats.cancelled, stats.state) == (0, 0, CircuitState.CLOSED)


def _task_answering_store(after_answer: Callable[[], Any] = lambda: None) -> Any:
    """A store whose state answers try_admit with a Task (a round trip run apart), the memory
    machine behind it; ``after_answer`` runs as the Task produces its answer."""
    from aioresilience.abc import BreakerOptions, BreakerReport, memory_breaker_state

    class TaskState:
        def __init__(self, options: BreakerOptions, report: BreakerReport) -> None:
            self.machine = memory_breaker_state(options, report)
            self.closed_is_local = False

        def __getattr__(self, name: str) -> Any:
            return getattr(self.machine, name)

        def try_admit(self, now: float) -> Any:
            async def ask() -> Any:
                await asyncio.sleep(0)
                ticket = self.machine.try_admit(now)
                after_answer()
                return ticket

            return asyncio.ensure_future(ask())

    class TaskStore:
        def bind_breaker(self, options: BreakerOptions, report: BreakerReport) -> Any:
            return TaskState(options, report)

    return TaskStore()


async def test_a_state_answering_with_a_task_is_awaited_not_taken_as_the_ticket() -> None:
    # BreakerState.try_admit may return any awaitable of its answer; a Task (a store's round
    # trip run apart) was taken as the ticket itself: an open circuit let the call run.
    breaker = CircuitBreaker(name="p", failure_threshold=1, store=_task_answering_store())
    ran: list[int] = []

    async def call() -> None:
        ran.append(1)

    breaker.trip()
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.call(call)
    assert ran == []
    breaker.reset()
    await breaker.call(call)
    async with breaker:
        pass
    assert (ran, breaker.statistics().successes) == ([1], 2)


async def test_a_caller_cancelled_once_a_task_answered_gives_its_probe_slot_back() -> None:
    # A Task answering try_admit may finish (a half-open probe slot taken) in the loop turn
    # its caller is cancelled: the caller never resumes with the ticket, and the slot leaked,
    # refusing every call until half_open_max_duration.
    victim: list[asyncio.Task[Any]] = []

    def cancel_the_caller() -> None:  # the caller's cancellation arrives as the answer does
        if victim:
            asyncio.get_running_loop().call_soon(victim.pop().cancel)

    from aioresilience.testing import ManualClock

    clock = ManualClock()
    store = _task_answering_store(cancel_the_caller)
    breaker = CircuitBreaker(name="p", break_duration=1, store=store, clock=clock)

    async def call() -> str:
        return "ok"

    breaker.trip()
    clock.advance(1)
    probe = asyncio.create_task(breaker.call(call))
    victim.append(probe)
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert await breaker.call(call) == "ok"
    stats = breaker.statistics()
    assert (stats.state, stats.cancelled, stats.successes) == (CircuitState.CLOSED, 1, 1)


async def test_exception_classes_in_a_list_or_a_set_as_pybreakers_exclude() -> None:
    async def boom(exc: BaseException) -> None:
        raise exc

    ignored = [KeyError]
    breaker = CircuitBreaker(
        failure_threshold=1, record=[OSError, ar.BulkheadFull], ignore=ignored, name="b"
    )
    ignored.append(OSError)  # copied at construction: changes nothing
    with pytest.raises(KeyError):
        await breaker.call(boom, KeyError("k"))
    with pytest.raises(ValueError):
        await breaker.call(boom, ValueError("not recorded"))
    assert breaker.state is ar.CircuitState.CLOSED
    with pytest.raises(ar.BulkheadFull):  # a refusal the list names counts
        await breaker.call(boom, ar.BulkheadFull("full"))
    assert breaker.state is ar.CircuitState.OPEN

    retried = 0

    async def flaky() -> str:
        nonlocal retried
        retried += 1
        if retried < 3:
            raise ConnectionError
        return "ok"

    retry = ar.Retry(attempts=3, backoff=ar.constant(0), retry_on={ConnectionError, TimeoutError})
    assert await retry.call(flaky) == "ok" and retried == 3
    fallback = ar.Fallback("spare", on=frozenset({LookupError}))
    assert await fallback.call(boom, KeyError("k")) == "spare"
    with pytest.raises(OSError):
        await fallback.call(boom, OSError("not named"))

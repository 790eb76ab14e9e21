"""Circuit breaker in virtual time: every transition, windows, probes, cancellation, control."""

from __future__ import annotations

import asyncio
import logging
from typing import Any, ClassVar

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from aioresilience import (
    CircuitBreaker,
    CircuitBreakerOpenError,
    CircuitState,
    CircuitStateChange,
    Rejected,
    exponential,
)


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
    assert breaker.statistics().ignored == 2


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
        with pytest.raises(CircuitBreakerOpenError):
            async with breaker:  # no second probe
                pass
    assert breaker.state is CircuitState.CLOSED


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
        ({"failure_threshold": 0}, ValueError, "failure_threshold must be >= 1, got 0"),
        (
            {"failure_rate_threshold": 1.5},
            ValueError,
            r"failure_rate_threshold must be in \(0, 1\]",
        ),
        ({"failure_rate_threshold": 0}, ValueError, "failure_rate_threshold must be a positive"),
        ({"slow_call_rate_threshold": 0.5}, ValueError, "needs slow_call_duration"),
        ({"failure_threshold": None}, ValueError, "no trip rule"),
        ({"window": "sliding"}, ValueError, "window must be 'count' or 'time'"),
        ({"failure_rate_threshold": 0.5, "window_size": 0}, ValueError, "window_size must be"),
        ({"break_duration": -1}, ValueError, "break_duration must be a positive finite"),
        ({"break_duration": float("nan")}, ValueError, "break_duration must be a positive"),
        ({"half_open_max_calls": 0}, ValueError, "half_open_max_calls must be >= 1"),
        ({"minimum_calls": 0}, ValueError, "minimum_calls must be >= 1"),
        ({"record": "Exception"}, TypeError, "record must be an exception class"),
        ({"ignore": (KeyError, 3)}, TypeError, "ignore must hold exception classes"),
        ({"failure_result": 3}, TypeError, "failure_result must be callable"),
        ({"on_state_change": [None]}, TypeError, "listener must be callable"),
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
        self.machine = self.breaker._machine
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

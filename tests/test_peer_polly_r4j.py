"""Behavioural cases ported from the peers' own test suites: Polly v8 (Polly.Core.Tests:
CircuitBreaker, Retry, Timeout, Hedging), resilience4j (CircuitBreakerStateMachineTest) and
dotnet/runtime's System.Threading.RateLimiting (TokenBucket/FixedWindow/SlidingWindow
RateLimiterTests, ConcurrencyLimiterTests for the bulkhead's queue), each in the terms of this
library's API and in virtual time. A case whose peer behaviour differs by design is written
for ours, the difference named in its docstring."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import pytest

import aioresilience as ar
from aioresilience import CircuitState


class Boom(Exception):
    pass


def now() -> float:
    return asyncio.get_running_loop().time()


async def fail() -> None:
    raise Boom


async def ok() -> str:
    return "ok"


async def outcome(breaker: ar.CircuitBreaker, failing: bool) -> None:
    if failing:
        with pytest.raises(Boom):
            await breaker.call(fail)
    else:
        await breaker.call(ok)


# --------------------------------------------------------------------------------------------
# Circuit breaker: Polly's CircuitStateController / AdvancedCircuitBehavior, resilience4j's
# CircuitBreakerStateMachineTest


async def test_consecutive_failures_open_a_success_resets_the_count() -> None:
    breaker = ar.CircuitBreaker(failure_threshold=3, break_duration=10)
    for failing in (True, True, False, True, True):
        await outcome(breaker, failing)
    assert breaker.state is CircuitState.CLOSED
    await outcome(breaker, True)  # the tripping call raises its own exception
    assert breaker.state is CircuitState.OPEN
    with pytest.raises(ar.CircuitBreakerOpenError) as refused:
        await breaker.call(ok)
    assert refused.value.retry_after == pytest.approx(10)


async def test_failure_rate_not_judged_below_minimum_calls() -> None:
    """Polly: failure ratio exceeded but minimum throughput not met -> stays closed; r4j:
    minimumNumberOfCalls."""
    breaker = ar.CircuitBreaker(
        failure_threshold=None, failure_rate_threshold=0.5, window_size=10, minimum_calls=4
    )
    for _ in range(3):
        await outcome(breaker, True)
    assert breaker.state is CircuitState.CLOSED
    await outcome(breaker, True)  # the fourth reaches the minimum: 100 % >= 50 %
    assert breaker.state is CircuitState.OPEN


async def test_failure_rate_at_the_threshold_opens_below_it_does_not() -> None:
    """r4j and Polly both open at failureRate >= threshold."""
    below = ar.CircuitBreaker(
        failure_threshold=None, failure_rate_threshold=0.5, window_size=10, minimum_calls=10
    )
    for i in range(10):
        await outcome(below, i < 4)  # 4 of 10
    assert below.state is CircuitState.CLOSED
    at = ar.CircuitBreaker(
        failure_threshold=None, failure_rate_threshold=0.5, window_size=10, minimum_calls=10
    )
    for i in range(10):
        await outcome(at, i < 5)  # 5 of 10
    assert at.state is CircuitState.OPEN


async def test_count_window_slides_oldest_outcome_leaves() -> None:
    """r4j's count-based sliding window: the eleventh outcome pushes out the first."""
    breaker = ar.CircuitBreaker(
        failure_threshold=None, failure_rate_threshold=0.5, window_size=4, minimum_calls=4
    )
    for failing in (True, False, False, False):  # F S S S: 1/4
        await outcome(breaker, failing)
    assert breaker.statistics().window_calls == 4
    assert breaker.statistics().window_failures == 1
    await outcome(breaker, False)  # the first F leaves: S S S S
    assert breaker.statistics().window_failures == 0
    await outcome(breaker, True)  # S S S F
    await outcome(breaker, True)  # S S F F: 50 %
    assert breaker.state is CircuitState.OPEN


async def test_time_window_forgets_failures_older_than_the_window() -> None:
    """Polly's SamplingDuration / r4j's time-based window: outcomes older than the window no
    longer count, nor towards the minimum."""
    breaker = ar.CircuitBreaker(
        failure_threshold=None,
        failure_rate_threshold=0.5,
        window="time",
        window_size=10.0,
        minimum_calls=4,
    )
    for _ in range(3):
        await outcome(breaker, True)
    await asyncio.sleep(11)  # the three failures leave the window
    assert breaker.statistics().window_calls == 0
    for failing in (False, False, False, True):
        await outcome(breaker, failing)
    assert breaker.state is CircuitState.CLOSED  # 1/4


async def test_time_window_minimum_calls_count_within_the_window_only() -> None:
    breaker = ar.CircuitBreaker(
        failure_threshold=None,
        failure_rate_threshold=0.5,
        window="time",
        window_size=10.0,
        minimum_calls=3,
    )
    for _ in range(2):
        await outcome(breaker, True)
        await asyncio.sleep(6)  # 2 failures 6 s apart: never 3 in one window
    await outcome(breaker, True)
    assert breaker.state is CircuitState.CLOSED
    await outcome(breaker, True)
    assert breaker.state is CircuitState.OPEN


async def test_slow_calls_open_the_circuit_though_they_succeed() -> None:
    """r4j: slowCallRateThreshold with slowCallDurationThreshold; slow successes count."""
    breaker = ar.CircuitBreaker(
        failure_threshold=None,
        slow_call_rate_threshold=0.5,
        slow_call_duration=1.0,
        window_size=4,
        minimum_calls=4,
    )

    async def slow() -> str:
        await asyncio.sleep(2)
        return "late"

    assert await breaker.call(ok) == "ok"
    assert await breaker.call(ok) == "ok"
    assert await breaker.call(slow) == "late"
    assert breaker.state is CircuitState.CLOSED  # below the minimum
    assert await breaker.call(slow) == "late"  # 2/4 slow
    assert breaker.state is CircuitState.OPEN
    assert breaker.statistics().failures == 0


async def test_a_call_lasting_exactly_the_slow_duration_is_slow() -> None:
    """r4j counts a call as slow only when it lasts *longer* than the threshold; ours, as
    documented (_breaker's docstring), when it lasts at least ``slow_call_duration``."""
    breaker = ar.CircuitBreaker(
        failure_threshold=None,
        slow_call_rate_threshold=1.0,
        slow_call_duration=1.0,
        window_size=1,
        minimum_calls=1,
    )

    async def exactly() -> None:
        await asyncio.sleep(1.0)

    await breaker.call(exactly)
    assert breaker.state is CircuitState.OPEN
    assert breaker.statistics().failures == 0


async def test_ignored_exceptions_count_neither_way() -> None:
    """r4j: ignoreExceptions; Polly: ShouldHandle false."""
    breaker = ar.CircuitBreaker(failure_threshold=2, ignore=(KeyError,))

    async def missing() -> None:
        raise KeyError("x")

    for _ in range(5):
        with pytest.raises(KeyError):
            await breaker.call(missing)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.statistics().ignored == 5
    assert breaker.statistics().failures == 0


async def test_open_until_the_break_ends_then_half_open_automatically() -> None:
    """Polly: BreakDuration; r4j: waitDurationInOpenState with automatic transition."""
    breaker = ar.CircuitBreaker(failure_threshold=1, break_duration=5)
    changes: list[tuple[CircuitState, CircuitState, float]] = []
    breaker.add_state_listener(lambda c: changes.append((c.old, c.new, c.at)))
    await outcome(breaker, True)
    await asyncio.sleep(4.9)
    assert breaker.state is CircuitState.OPEN
    assert breaker.retry_after == pytest.approx(0.1)
    await asyncio.sleep(0.1)
    assert breaker.state is CircuitState.HALF_OPEN
    assert breaker.retry_after == 0
    assert await breaker.call(ok) == "ok"
    assert breaker.state is CircuitState.CLOSED
    assert [(old, new) for old, new, _ in changes] == [
        (CircuitState.CLOSED, CircuitState.OPEN),
        (CircuitState.OPEN, CircuitState.HALF_OPEN),
        (CircuitState.HALF_OPEN, CircuitState.CLOSED),
    ]
    assert changes[1][2] == pytest.approx(5.0)


async def test_half_open_admits_a_single_probe() -> None:
    """Polly: 'only a single execution on first entering half-open'; r4j with
    permittedNumberOfCallsInHalfOpenState=1."""
    breaker = ar.CircuitBreaker(failure_threshold=1, break_duration=1)
    await outcome(breaker, True)
    await asyncio.sleep(1)
    release = asyncio.Event()

    async def probe() -> str:
        await release.wait()
        return "probe"

    first = asyncio.create_task(breaker.call(probe))
    await asyncio.sleep(0)
    with pytest.raises(ar.CircuitBreakerOpenError) as refused:
        await breaker.call(ok)
    assert refused.value.state == CircuitState.HALF_OPEN.value  # a str, the state's value
    assert 0 < refused.value.retry_after < math.inf
    release.set()
    assert await first == "probe"
    assert breaker.state is CircuitState.CLOSED


async def test_failed_probe_reopens_for_a_full_break() -> None:
    """Polly: 'should open circuit again after subsequent failure in half-open'."""
    breaker = ar.CircuitBreaker(failure_threshold=1, break_duration=5)
    await outcome(breaker, True)
    await asyncio.sleep(5)
    await outcome(breaker, True)
    assert breaker.state is CircuitState.OPEN
    assert breaker.retry_after == pytest.approx(5)


async def test_cancelled_probe_frees_the_half_open_slot() -> None:
    """Polly: a cancelled probe is no outcome; here the next call may probe."""
    breaker = ar.CircuitBreaker(failure_threshold=1, break_duration=1)
    await outcome(breaker, True)
    await asyncio.sleep(1)
    probe = asyncio.create_task(breaker.call(asyncio.sleep, 100))
    await asyncio.sleep(0)
    probe.cancel()
    with pytest.raises(asyncio.CancelledError):
        await probe
    assert breaker.state is CircuitState.HALF_OPEN
    assert await breaker.call(ok) == "ok"
    assert breaker.state is CircuitState.CLOSED
    stats = breaker.statistics()
    assert stats.cancelled == 1
    assert stats.failures == 1


async def test_several_half_open_probes_then_the_rate_decides() -> None:
    """r4j: permittedNumberOfCallsInHalfOpenState=3, the failure rate of those calls decides."""
    breaker = ar.CircuitBreaker(
        failure_threshold=None,
        failure_rate_threshold=0.5,
        window_size=4,
        minimum_calls=4,
        half_open_max_calls=3,
        break_duration=1,
    )
    for _ in range(4):
        await outcome(breaker, True)
    assert breaker.state is CircuitState.OPEN
    await asyncio.sleep(1)
    gate = asyncio.Event()

    async def held(failing: bool) -> None:
        await gate.wait()
        if failing:
            raise Boom

    probes = [asyncio.create_task(breaker.call(held, i == 0)) for i in range(3)]
    await asyncio.sleep(0)
    with pytest.raises(ar.CircuitBreakerOpenError):
        await breaker.call(ok)  # a fourth is refused
    gate.set()
    results = await asyncio.gather(*probes, return_exceptions=True)
    assert isinstance(results[0], Boom)
    assert breaker.state is CircuitState.CLOSED  # 1 of 3 failed: below 50 %


async def test_half_open_probes_reopen_once_the_rate_is_decided() -> None:
    """r4j: permittedNumberOfCallsInHalfOpenState=3 with two failures -> OPEN (here as soon
    as two of three have failed: the third cannot bring the rate under 50 %)."""
    breaker = ar.CircuitBreaker(
        failure_threshold=None,
        failure_rate_threshold=0.5,
        window_size=4,
        minimum_calls=4,
        half_open_max_calls=3,
        break_duration=1,
    )
    for _ in range(4):
        await outcome(breaker, True)
    await asyncio.sleep(1)
    gates = [asyncio.Event() for _ in range(3)]

    async def held(i: int) -> None:
        await gates[i].wait()
        if i < 2:
            raise Boom

    probes = [asyncio.create_task(breaker.call(held, i)) for i in range(3)]
    await asyncio.sleep(0)
    gates[0].set()
    await asyncio.sleep(0.1)
    assert breaker.state is CircuitState.HALF_OPEN  # 1 of 3: undecided
    gates[1].set()
    await asyncio.sleep(0.1)
    assert breaker.state is CircuitState.OPEN
    gates[2].set()
    await asyncio.gather(*probes, return_exceptions=True)
    assert breaker.state is CircuitState.OPEN  # the late success closes nothing


async def test_slow_successful_probe_reopens() -> None:
    """r4j: slow calls in half-open count towards the slow-call rate there too."""
    breaker = ar.CircuitBreaker(
        failure_threshold=2,
        slow_call_rate_threshold=0.5,
        slow_call_duration=1,
        window_size=4,
        minimum_calls=4,
        break_duration=1,
    )
    await outcome(breaker, True)
    await outcome(breaker, True)
    await asyncio.sleep(1)
    assert await breaker.call(asyncio.sleep, 2, "late") == "late"
    assert breaker.state is CircuitState.OPEN


async def test_a_probe_that_never_ends_reopens_after_half_open_max_duration() -> None:
    """Polly has no bound on a hanging probe; r4j's maxWaitDurationInHalfOpenState: here
    ``half_open_max_duration`` re-opens the circuit, and a later probe may close it."""
    breaker = ar.CircuitBreaker(failure_threshold=1, break_duration=1, half_open_max_duration=5)
    await outcome(breaker, True)
    await asyncio.sleep(1)
    hung = asyncio.create_task(breaker.call(asyncio.sleep, 100))
    await asyncio.sleep(5)
    assert breaker.state is CircuitState.OPEN
    await asyncio.sleep(breaker.retry_after)
    assert await breaker.call(ok) == "ok"
    assert breaker.state is CircuitState.CLOSED
    hung.cancel()
    with pytest.raises(asyncio.CancelledError):
        await hung
    assert breaker.state is CircuitState.CLOSED
    assert breaker.statistics().cancelled == 1


async def test_equal_jitter_breaks_stay_within_half_and_all_of_nominal() -> None:
    breaker = ar.CircuitBreaker(
        failure_threshold=1, break_duration=ar.exponential(1, cap=100, jitter="equal"), seed=1
    )
    for n in range(6):
        await outcome(breaker, True)
        nominal = 2.0**n
        assert nominal / 2 <= breaker.retry_after <= nominal
        await asyncio.sleep(breaker.retry_after)


async def test_late_failure_of_a_call_admitted_before_opening_does_not_extend_the_break() -> None:
    """Polly's CircuitStateController: a failure reported while open changes nothing."""
    breaker = ar.CircuitBreaker(failure_threshold=1, break_duration=10)

    async def slow_failure() -> None:
        await asyncio.sleep(7)
        raise Boom

    in_flight = asyncio.create_task(breaker.call(slow_failure))
    await asyncio.sleep(1)
    await outcome(breaker, True)  # opens at 1 until 11
    with pytest.raises(Boom):
        await in_flight  # fails at 7, while open
    assert breaker.retry_after == pytest.approx(4)
    assert breaker.statistics().opened == 1


async def test_growing_break_durations_reset_on_close() -> None:
    """Polly: BreakDurationGenerator gets the number of consecutive openings."""
    breaker = ar.CircuitBreaker(
        failure_threshold=1, break_duration=ar.exponential(1, cap=100, jitter="none")
    )
    breaks = []
    for _ in range(3):
        await outcome(breaker, True)
        breaks.append(breaker.retry_after)
        await asyncio.sleep(breaker.retry_after)
    assert breaks == pytest.approx([1, 2, 4])
    await breaker.call(ok)  # the probe closes: the growth starts over
    await outcome(breaker, True)
    assert breaker.retry_after == pytest.approx(1)


async def test_isolate_refuses_with_infinite_retry_after_until_reset() -> None:
    """Polly: manual control Isolate -> IsolatedCircuitException; Close -> closed, the window
    forgotten (r4j: transitionToClosedState resets the metrics)."""
    breaker = ar.CircuitBreaker(failure_threshold=3)
    await outcome(breaker, True)
    await outcome(breaker, True)
    breaker.isolate()
    assert breaker.state is CircuitState.ISOLATED
    await asyncio.sleep(10_000)
    with pytest.raises(ar.CircuitBreakerOpenError) as refused:
        await breaker.call(ok)
    assert refused.value.retry_after == math.inf
    breaker.reset()
    assert breaker.state is CircuitState.CLOSED
    await outcome(breaker, True)  # the two failures before were forgotten
    await outcome(breaker, True)
    assert breaker.state is CircuitState.CLOSED


async def test_disabled_breaker_admits_and_records_nothing() -> None:
    """r4j: transitionToDisabledState; calls pass and nothing is recorded."""
    breaker = ar.CircuitBreaker(failure_threshold=1)
    breaker.disable()
    for _ in range(5):
        await outcome(breaker, True)
    assert breaker.state is CircuitState.DISABLED
    assert breaker.statistics().window_calls == 0


async def test_close_from_half_open_forgets_the_window() -> None:
    """r4j: after half-open -> closed, the metrics start empty."""
    breaker = ar.CircuitBreaker(
        failure_threshold=None,
        failure_rate_threshold=0.5,
        window_size=4,
        minimum_calls=4,
        break_duration=1,
    )
    for _ in range(4):
        await outcome(breaker, True)
    await asyncio.sleep(1)
    await breaker.call(ok)
    assert breaker.state is CircuitState.CLOSED
    assert breaker.statistics().window_calls == 0
    for _ in range(3):
        await outcome(breaker, True)
    assert breaker.state is CircuitState.CLOSED  # 3 < minimum_calls


async def test_cancellation_counts_neither_way_while_closed() -> None:
    breaker = ar.CircuitBreaker(failure_threshold=1)
    task = asyncio.create_task(breaker.call(asyncio.sleep, 10))
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.state is CircuitState.CLOSED
    assert breaker.statistics().cancelled == 1
    assert breaker.statistics().window_calls == 0


# --------------------------------------------------------------------------------------------
# Retry: Polly's RetryResilienceStrategyTests and RetryHelperTests


async def test_retry_exhausts_attempts_and_reraises_the_last_exception() -> None:
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise Boom(calls)

    policy = ar.Retry(attempts=4, backoff=ar.constant(1))
    with pytest.raises(Boom) as raised:
        await policy.call(flaky)
    assert raised.value.args == (4,)
    assert calls == 4
    assert now() == pytest.approx(3)


async def test_retry_success_on_a_later_attempt_sleeps_no_more() -> None:
    calls = 0

    async def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise Boom
        return "done"

    assert await ar.Retry(attempts=10, backoff=ar.constant(2)).call(flaky) == "done"
    assert calls == 3
    assert now() == pytest.approx(4)


async def test_on_retry_arguments_attempt_numbers_and_delays() -> None:
    """Polly: OnRetry gets AttemptNumber and RetryDelay; exponential without jitter doubles."""
    seen: list[tuple[int, float]] = []
    policy = ar.Retry(
        attempts=5,
        backoff=ar.exponential(0.5, jitter="none", cap=None),
        before_sleep=lambda s: seen.append((s.attempt, s.delay)),
    )
    with pytest.raises(Boom):
        await policy.call(fail)
    assert seen == [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0)]
    assert now() == pytest.approx(7.5)


async def test_max_delay_caps_the_exponential_delay() -> None:
    """Polly: MaxDelay caps every generated delay."""
    seen: list[float] = []
    policy = ar.Retry(
        attempts=6,
        backoff=ar.exponential(1, jitter="none", cap=3),
        before_sleep=lambda s: seen.append(s.delay),
    )
    with pytest.raises(Boom):
        await policy.call(fail)
    assert seen == [1, 2, 3, 3, 3]


@pytest.mark.parametrize(
    ("backoff", "expected"),
    [(ar.constant(2), [2, 2, 2]), (ar.linear(1), [1, 2, 3]), (ar.linear(1, 2), [1, 3, 5])],
)
async def test_constant_and_linear_delays(backoff: ar.Backoff, expected: list[float]) -> None:
    """Polly: DelayBackoffType Constant and Linear (delay * attempt)."""
    seen: list[float] = []
    policy = ar.Retry(attempts=4, backoff=backoff, before_sleep=lambda s: seen.append(s.delay))
    with pytest.raises(Boom):
        await policy.call(fail)
    assert seen == expected
    assert now() == pytest.approx(sum(expected))


@pytest.mark.parametrize("jitter", ["full", "equal", "decorrelated"])
async def test_jittered_delays_stay_in_their_ranges(jitter: str) -> None:
    """Polly: UseJitter keeps the delay within its range, never above MaxDelay; AWS's full
    [0, d], equal [d/2, d], decorrelated [base, cap]."""
    seen: list[tuple[int, float]] = []
    policy = ar.Retry(
        attempts=30,
        backoff=ar.exponential(0.1, cap=2, jitter=jitter),
        before_sleep=lambda s: seen.append((s.attempt, s.delay)),
        seed=3,
    )
    with pytest.raises(Boom):
        await policy.call(fail)
    assert len(seen) == 29
    for attempt, delay in seen:
        nominal = min(2.0, 0.1 * 2 ** (attempt - 1))
        if jitter == "full":
            assert 0 <= delay <= nominal
        elif jitter == "equal":
            assert nominal / 2 <= delay <= nominal
        else:
            assert 0.1 <= delay <= 2.0
    assert len({d for _, d in seen}) > 5  # jittered, not constant


async def test_unhandled_exception_is_not_retried() -> None:
    """Polly: ShouldHandle false -> one attempt."""
    calls = 0

    async def wrong() -> None:
        nonlocal calls
        calls += 1
        raise KeyError

    with pytest.raises(KeyError):
        await ar.Retry(attempts=5, retry_on=(Boom,)).call(wrong)
    assert calls == 1


async def test_retry_on_result_returns_the_last_result_when_exhausted() -> None:
    """Polly: a handled result outcome after the last attempt is returned as it is."""
    results = iter([None, None, None])
    policy = ar.Retry(attempts=3, backoff=ar.constant(0), retry_on_result=lambda r: r is None)

    async def nothing() -> None:
        return next(results)

    assert await policy.call(nothing) is None


async def test_cancelled_during_the_retry_sleep_stops_retrying() -> None:
    """Polly: cancellation during the delay ends the execution; no further attempt."""
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise Boom

    task = asyncio.create_task(ar.Retry(attempts=5, backoff=ar.constant(10)).call(flaky))
    await asyncio.sleep(5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1
    await asyncio.sleep(100)
    assert calls == 1


async def test_cancellation_from_the_callback_is_not_retried() -> None:
    calls = 0

    async def cancelled() -> None:
        nonlocal calls
        calls += 1
        raise asyncio.CancelledError

    with pytest.raises(asyncio.CancelledError):
        await ar.Retry(attempts=5, backoff=ar.constant(0)).call(cancelled)
    assert calls == 1


async def test_retry_after_hint_is_a_floor_for_the_delay() -> None:
    """Polly: DelayGenerator / a Retry-After value overrides a shorter backoff."""
    seen: list[float] = []

    class Hinted(Exception):
        retry_after = 3.0

    async def hinted() -> None:
        raise Hinted

    policy = ar.Retry(
        attempts=2,
        backoff=ar.constant(0.5),
        retry_after=lambda exc: getattr(exc, "retry_after", None),
        before_sleep=lambda s: seen.append(s.delay),
    )
    with pytest.raises(Hinted):
        await policy.call(hinted)
    assert seen == [3.0]
    assert now() == pytest.approx(3.0)


async def test_a_sleep_never_crosses_max_elapsed() -> None:
    policy = ar.Retry(attempts=None, max_elapsed=5, backoff=ar.constant(2))
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        raise Boom

    with pytest.raises(Boom):
        await policy.call(flaky)
    assert calls == 3  # at 0, 2, 4; the sleep to 6 would cross 5
    assert now() == pytest.approx(4)


# --------------------------------------------------------------------------------------------
# Timeout: Polly's TimeoutResilienceStrategyTests


async def test_timeout_cancels_the_callback_and_raises_timeout_exceeded() -> None:
    cancelled = False

    async def slow() -> None:
        nonlocal cancelled
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled = True
            raise

    with pytest.raises(ar.TimeoutExceeded) as raised:
        async with ar.timeout(2):
            await slow()
    assert cancelled
    assert isinstance(raised.value, TimeoutError)
    assert raised.value.seconds == 2
    assert now() == pytest.approx(2)


async def test_callback_within_the_timeout_is_not_cut() -> None:
    async with ar.timeout(2):
        await asyncio.sleep(1.999)
    assert now() == pytest.approx(1.999)


async def test_outer_cancellation_is_not_a_timeout() -> None:
    """Polly: cancellation by the caller's token raises OperationCanceledException, not
    TimeoutRejectedException."""

    async def guarded() -> None:
        async with ar.timeout(10):
            await asyncio.sleep(100)

    task = asyncio.create_task(guarded())
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert now() == pytest.approx(1)


async def test_no_timeout_with_none() -> None:
    async with ar.timeout(None) as t:
        await asyncio.sleep(10**6)
    assert t.when() is None


async def test_pipeline_timeout_per_attempt_inside_retry() -> None:
    """Polly: a timeout inside a retry bounds each attempt; the retry sees the timeout."""
    calls = 0

    async def hangs_then_answers() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            await asyncio.sleep(100)
        return "answer"

    pipeline = ar.Pipeline.builder("p").retry(attempts=3, backoff=ar.constant(0)).timeout(1).build()
    assert await pipeline.execute(hangs_then_answers) == "answer"
    assert calls == 3
    assert now() == pytest.approx(2)


async def test_outer_timeout_ends_the_retries() -> None:
    """Polly: an outer timeout cancels the retry's delay and ends it with the timeout."""
    calls = 0

    async def failing() -> None:
        nonlocal calls
        calls += 1
        raise Boom

    pipeline = (
        ar.Pipeline.builder("p").timeout(2.5).retry(attempts=10, backoff=ar.constant(1)).build()
    )
    with pytest.raises(ar.TimeoutExceeded):
        await pipeline.execute(failing)
    assert calls == 3
    assert now() == pytest.approx(2.5)


async def test_retry_sleeps_the_open_breakers_retry_after() -> None:
    """Polly's retry around a breaker: with retry_rejections the BrokenCircuitException's
    RetryAfter is the delay, so the next attempt is the half-open probe."""
    breaker = ar.CircuitBreaker(failure_threshold=1, break_duration=5)
    calls: list[float] = []

    async def dependency() -> str:
        calls.append(now())
        if len(calls) == 1:
            raise Boom
        return "ok"

    delays: list[tuple[float, str]] = []
    policy = ar.Retry(
        attempts=3,
        retry_rejections=True,
        backoff=ar.constant(1),
        before_sleep=lambda s: delays.append((s.delay, type(s.exception).__name__)),
    )
    assert await policy.call(breaker.call, dependency) == "ok"
    assert calls == pytest.approx([0, 5])
    assert delays == [(1, "Boom"), (pytest.approx(4), "CircuitBreakerOpenError")]


# --------------------------------------------------------------------------------------------
# Hedging: Polly's HedgingResilienceStrategyTests


def hedge(max_hedged: int = 1, delay: float = 1.0) -> ar.Hedge:
    return ar.Hedge(max_hedged=max_hedged, delay=delay, idempotent=True)


async def test_fast_primary_starts_no_hedge() -> None:
    h = hedge()
    assert await h.call(ok) == "ok"
    assert h.started == 1


async def test_slow_primary_hedged_after_the_delay_first_success_wins() -> None:
    """Polly: the hedged attempt starts after HedgingDelay; the first accepted outcome wins
    and the other attempts are cancelled."""
    starts: list[float] = []
    cancelled: list[int] = []

    async def attempt() -> int:
        n = len(starts)
        starts.append(now())
        try:
            await asyncio.sleep(10 if n == 0 else 2)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        return n

    assert await hedge(delay=1).call(attempt) == 1
    assert starts == pytest.approx([0, 1])
    assert cancelled == [0]  # cancelled and awaited before call() returned
    assert now() == pytest.approx(3)


async def test_max_hedged_attempts_bounds_the_attempts() -> None:
    """Polly: MaxHedgedAttempts extra attempts, no more."""
    starts: list[float] = []

    async def hang() -> None:
        starts.append(now())
        await asyncio.sleep(100)

    h = hedge(max_hedged=2, delay=1)
    task = asyncio.create_task(h.call(hang))
    await asyncio.sleep(50)
    assert starts == pytest.approx([0, 1, 2])
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_a_failed_attempt_starts_the_next_at_once() -> None:
    """Polly: a handled failure of an attempt does not wait for the hedging delay."""
    starts: list[float] = []

    async def attempt() -> str:
        starts.append(now())
        if len(starts) == 1:
            await asyncio.sleep(0.5)
            raise Boom
        return "second"

    assert await hedge(delay=5).call(attempt) == "second"
    assert starts == pytest.approx([0, 0.5])


async def test_all_attempts_fail_the_last_outcome_is_raised() -> None:
    """Polly: when every hedged attempt fails, the last outcome is the result."""
    n = 0

    async def attempt() -> None:
        nonlocal n
        n += 1
        raise Boom(n)

    with pytest.raises(Boom):
        await hedge(max_hedged=2, delay=1).call(attempt)
    assert n == 3


async def test_zero_delay_starts_every_attempt_at_once() -> None:
    """Polly: HedgingDelay zero -> parallel attempts."""
    starts: list[float] = []

    async def attempt() -> int:
        starts.append(now())
        await asyncio.sleep(3 - len(starts))
        return len(starts)

    await hedge(max_hedged=2, delay=0).call(attempt)
    assert starts == [0, 0, 0]
    assert now() == pytest.approx(0)  # the last one started sleeps 0


async def test_outer_cancellation_cancels_every_attempt() -> None:
    """Polly: cancelling the outer token cancels all hedged tasks."""
    cancelled = 0

    async def hang() -> None:
        nonlocal cancelled
        try:
            await asyncio.sleep(100)
        except asyncio.CancelledError:
            cancelled += 1
            raise

    task = asyncio.create_task(hedge(max_hedged=2, delay=1).call(hang))
    await asyncio.sleep(5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cancelled == 3


async def test_timed_out_attempt_inside_hedging_starts_the_next_at_once() -> None:
    """Polly: hedging outside a per-attempt timeout; a timed-out attempt is a failure."""
    starts: list[float] = []

    async def attempt() -> int:
        starts.append(now())
        if len(starts) < 3:
            await asyncio.sleep(100)
        return len(starts)

    pipeline = (
        ar.Pipeline.builder("h").hedge(max_hedged=3, delay=10, idempotent=True).timeout(1).build()
    )
    assert await pipeline.execute(attempt) == 3
    assert starts == pytest.approx([0, 1, 2])


async def test_all_results_unacceptable_the_last_result_is_returned() -> None:
    h = ar.Hedge(max_hedged=2, delay=1, idempotent=True, acceptable=lambda r: r == "good")
    values = iter(["bad1", "bad2", "bad3"])

    async def attempt() -> str:
        return next(values)

    assert await h.call(attempt) == "bad3"


async def test_unacceptable_result_hedges_again() -> None:
    """Polly: ShouldHandle on a result -> the next hedged attempt."""
    values = iter([None, "good"])

    async def attempt() -> str | None:
        return next(values)

    h = ar.Hedge(max_hedged=1, delay=5, idempotent=True, acceptable=lambda r: r is not None)
    assert await h.call(attempt) == "good"
    assert now() == 0


# --------------------------------------------------------------------------------------------
# Rate limiters: dotnet/runtime System.Threading.RateLimiting tests


async def test_token_bucket_queued_waiters_served_oldest_first() -> None:
    """QueueProcessingOrder.OldestFirst: waiters are released in arrival order, one per
    replenished token."""
    limiter = ar.TokenBucket(1, 1.0)
    assert limiter.try_acquire()
    order: list[tuple[int, float]] = []

    async def waiter(i: int) -> None:
        await limiter.acquire()
        order.append((i, now()))

    tasks = [asyncio.create_task(waiter(i)) for i in range(3)]
    await asyncio.gather(*tasks)
    assert order == [(0, 1.0), (1, 2.0), (2, 3.0)]


async def test_try_acquire_does_not_jump_queued_waiters() -> None:
    """dotnet: AttemptAcquire fails while OldestFirst requests are queued."""
    limiter = ar.TokenBucket(2, 1.0)
    assert limiter.try_acquire(cost=2)
    waiter = asyncio.create_task(limiter.acquire(cost=2))
    await asyncio.sleep(1.5)  # one token is back, the waiter needs two
    assert not limiter.try_acquire()
    await waiter
    assert now() == pytest.approx(2)


async def test_larger_request_at_the_head_blocks_smaller_ones_behind() -> None:
    """OldestFirst: a request that does not fit yet holds the queue; a smaller one behind it
    that would fit waits its turn (no barging)."""
    limiter = ar.FixedWindowCounter(max_requests=3, window_seconds=10)
    assert limiter.try_acquire(cost=2)
    order: list[str] = []

    async def big() -> None:
        await limiter.acquire(cost=3)
        order.append("big")

    async def small() -> None:
        await limiter.acquire(cost=1)
        order.append("small")

    first = asyncio.create_task(big())
    await asyncio.sleep(0)
    second = asyncio.create_task(small())
    await asyncio.sleep(1)
    assert order == []  # one unit is free, but the big one is ahead
    await asyncio.gather(first, second)
    assert order == ["big", "small"]
    assert now() == pytest.approx(20)


@pytest.mark.parametrize(
    "make",
    [
        lambda: ar.TokenBucket(2, 1.0),
        lambda: ar.FixedWindowCounter(max_requests=2, window_seconds=1),
        lambda: ar.SlidingWindowLog(max_requests=2, window_seconds=1),
        lambda: ar.SlidingWindowCounter(max_requests=2, window_seconds=1),
        lambda: ar.GCRA(2, 1, burst=2),
        lambda: ar.LeakyBucket(2, 1.0),
    ],
)
async def test_a_request_larger_than_the_permit_limit_fails_at_once(
    make: Callable[[], ar.RateLimiter[int]],
) -> None:
    """dotnet: permitCount > PermitLimit throws ArgumentOutOfRangeException at once."""
    limiter = make()
    with pytest.raises(ValueError, match="cost"):
        await limiter.acquire(cost=3)
    with pytest.raises(ValueError, match="cost"):
        limiter.try_acquire(cost=3)
    assert now() == 0
    assert limiter.try_acquire(cost=2)  # nothing was consumed


async def test_cancelled_queued_request_frees_its_place_and_the_next_proceeds() -> None:
    """dotnet: cancelling a queued request removes it; the one behind it gets its permits."""
    limiter = ar.TokenBucket(1, 1.0)
    assert limiter.try_acquire()
    first = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    second = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0.5)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    assert now() == pytest.approx(1.0)  # the first's slot, not 2.0
    stats = limiter.statistics()
    assert stats.cancelled == 1
    assert stats.rejected == 0  # a cancelled request is no failed lease
    assert stats.waiting == 0


@pytest.mark.parametrize(
    "make",
    [
        lambda: ar.TokenBucket(3, 0.1),
        lambda: ar.LeakyBucket(3, 0.1),
        lambda: ar.GCRA(3, 30, burst=3),
        lambda: ar.FixedWindowCounter(3, 30.0),
        lambda: ar.SlidingWindowLog(3, 30.0),
        lambda: ar.SlidingWindowCounter(3, 30.0),
    ],
)
async def test_cancelled_large_head_lets_a_smaller_request_behind_it_go_at_once(
    make: Callable[[], ar.RateLimiter[int]],
) -> None:
    """dotnet: a queued request that is cancelled is removed and the queue is processed
    again: the request behind it, which fits the permits left, is admitted then."""
    limiter = make()
    await asyncio.sleep(1000)  # off any window edge
    start = now()
    assert limiter.try_acquire(cost=2)
    big = asyncio.create_task(limiter.acquire(cost=3))
    await asyncio.sleep(0)
    small = asyncio.create_task(limiter.acquire(cost=1))
    await asyncio.sleep(1)
    assert not small.done()
    big.cancel()
    with pytest.raises(asyncio.CancelledError):
        await big
    await small
    assert now() - start == pytest.approx(1)
    stats = limiter.statistics()
    assert (stats.admitted, stats.cancelled, stats.waiting, stats.rejected) == (2, 1, 0, 0)


async def test_retry_after_of_a_refusal_counts_the_queued_waiters() -> None:
    """dotnet: RetryAfter metadata on a failed lease accounts for the queued requests."""
    limiter = ar.TokenBucket(1, 1.0)
    assert limiter.try_acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    decision = limiter.check()
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(2)
    with pytest.raises(ar.RateLimited) as refused:
        await limiter.acquire(timeout=0.5)
    assert refused.value.retry_after == pytest.approx(2)
    await waiter
    await asyncio.sleep(decision.retry_after - now())
    assert limiter.try_acquire()


async def test_fixed_window_serves_one_full_cost_waiter_per_window() -> None:
    limiter = ar.FixedWindowCounter(2, 10.0)
    assert limiter.try_acquire(cost=2)
    times: list[float] = []

    async def waiter() -> None:
        await limiter.acquire(cost=2)
        times.append(now())

    await asyncio.gather(*(waiter() for _ in range(3)))
    assert times == pytest.approx([10, 20, 30])


async def test_wait_longer_than_max_wait_fails_at_once_with_retry_after() -> None:
    """dotnet: a request beyond the queue limit fails with RetryAfter metadata; here the wait
    bound is in time: computed up front, nothing consumed."""
    limiter = ar.TokenBucket(1, 1.0, max_wait=0.5)
    assert limiter.try_acquire()
    with pytest.raises(ar.RateLimited) as refused:
        await limiter.acquire()
    assert refused.value.retry_after == pytest.approx(1.0)
    assert now() == 0
    await asyncio.sleep(1)
    assert limiter.try_acquire()


async def test_fixed_window_replenishes_all_permits_at_the_window_edge() -> None:
    limiter = ar.FixedWindowCounter(max_requests=3, window_seconds=10)
    assert limiter.try_acquire(cost=3)
    assert not limiter.try_acquire()
    decision = limiter.check()
    assert not decision.allowed
    assert decision.retry_after == pytest.approx(10)
    await asyncio.sleep(10)
    assert limiter.try_acquire(cost=3)


async def test_sliding_window_gives_permits_back_as_they_age_out() -> None:
    """dotnet's SlidingWindow: permits return segment by segment; the log returns each unit
    one window after it was admitted."""
    limiter = ar.SlidingWindowLog(max_requests=2, window_seconds=1)
    assert limiter.try_acquire()
    await asyncio.sleep(0.5)
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    await asyncio.sleep(0.5)
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    await asyncio.sleep(0.5)
    assert limiter.try_acquire()


async def test_token_bucket_replenishes_continuously_up_to_capacity() -> None:
    """dotnet: TokensPerPeriod added each period, never beyond TokenLimit."""
    limiter = ar.TokenBucket(3, 1.0)
    assert limiter.try_acquire(cost=3)
    await asyncio.sleep(2)
    assert not limiter.try_acquire(cost=3)
    assert limiter.try_acquire(cost=2)
    await asyncio.sleep(100)
    assert limiter.try_acquire(cost=3)  # capped at capacity: 3, not 102
    assert not limiter.try_acquire()


async def test_statistics_count_successful_and_failed_leases() -> None:
    """dotnet: GetStatistics TotalSuccessfulLeases / TotalFailedLeases / CurrentQueuedCount."""
    limiter = ar.TokenBucket(2, 1.0)
    assert limiter.try_acquire()
    assert limiter.try_acquire()
    assert not limiter.try_acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    stats = limiter.statistics()
    assert (stats.admitted, stats.rejected, stats.waiting) == (2, 1, 1)
    await waiter
    stats = limiter.statistics()
    assert (stats.admitted, stats.waited, stats.waiting) == (3, 1, 0)


async def test_per_key_limits_are_independent() -> None:
    """dotnet's PartitionedRateLimiter: each partition has its own limiter."""
    limiter = ar.FixedWindowCounter(max_requests=1, window_seconds=10)
    assert limiter.try_acquire(key="a")
    assert not limiter.try_acquire(key="a")
    assert limiter.try_acquire(key="b")


# --------------------------------------------------------------------------------------------
# Bulkhead's queue: dotnet's ConcurrencyLimiterTests (QueueLimit, OldestFirst)


async def test_bulkhead_queue_limit_refuses_at_once_beyond_it() -> None:
    bulkhead = ar.Bulkhead(1, max_queue=1)
    gate = asyncio.Event()
    holder = asyncio.create_task(bulkhead.call(gate.wait))
    await asyncio.sleep(0)
    queued = asyncio.create_task(bulkhead.call(ok))
    await asyncio.sleep(0)
    with pytest.raises(ar.BulkheadFull):
        await bulkhead.call(ok)
    gate.set()
    await holder
    assert await queued == "ok"


async def test_bulkhead_releases_oldest_first() -> None:
    bulkhead = ar.Bulkhead(1, max_queue=3)
    order: list[int] = []
    gate = asyncio.Event()
    holder = asyncio.create_task(bulkhead.call(gate.wait))
    await asyncio.sleep(0)

    async def queued(i: int) -> None:
        async with bulkhead:
            order.append(i)
            await asyncio.sleep(1)

    tasks = []
    for i in range(3):
        tasks.append(asyncio.create_task(queued(i)))
        await asyncio.sleep(0)
    gate.set()
    await asyncio.gather(holder, *tasks)
    assert order == [0, 1, 2]


async def test_cancelled_queued_bulkhead_waiter_frees_its_queue_slot() -> None:
    """dotnet: a cancelled queued request frees its queue slot; a new request can queue, and
    the request behind it proceeds on the next release."""
    bulkhead = ar.Bulkhead(1, max_queue=1)
    gate = asyncio.Event()
    holder = asyncio.create_task(bulkhead.call(gate.wait))
    await asyncio.sleep(0)
    queued = asyncio.create_task(bulkhead.call(ok))
    await asyncio.sleep(0)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    replacement = asyncio.create_task(bulkhead.call(ok))  # the queue slot is free again
    await asyncio.sleep(0)
    assert bulkhead.statistics().queued == 1
    gate.set()
    await holder
    assert await replacement == "ok"
    stats = bulkhead.statistics()
    assert (stats.active, stats.queued, stats.rejected) == (0, 0, 0)


async def test_bulkhead_max_wait_refuses_after_the_wait() -> None:
    bulkhead = ar.Bulkhead(1, max_queue=1, max_wait=2)
    gate = asyncio.Event()
    holder = asyncio.create_task(bulkhead.call(gate.wait))
    await asyncio.sleep(0)
    with pytest.raises(ar.BulkheadFull):
        await bulkhead.call(ok)
    assert now() == pytest.approx(2)
    assert bulkhead.statistics().queued == 0
    gate.set()
    await holder

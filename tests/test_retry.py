"""Retry in virtual time: schedules, hints, deadlines, budgets, hooks, cancellation."""

from __future__ import annotations

import asyncio
import logging
import random
import statistics
from typing import Any

import pytest

import aioresilience as ar
from aioresilience import (
    AdaptiveThrottle,
    CircuitBreaker,
    CircuitBreakerOpenError,
    ExponentialBackoff,
    Pipeline,
    RateLimited,
    Retry,
    RetryBudget,
    RetryState,
    Throttled,
    constant,
    exponential,
    linear,
    retry,
)
from aioresilience._core.backoff import Backoff
from aioresilience.abc import RetryLedger


class Flaky:
    """Fails ``failures`` times, then returns ``value``; records when it was called."""

    def __init__(self, failures: int, value: Any = "ok", error: type[Exception] = OSError):
        self.failures = failures
        self.value = value
        self.error = error
        self.calls: list[float] = []

    async def __call__(self) -> Any:
        self.calls.append(asyncio.get_running_loop().time())
        if len(self.calls) <= self.failures:
            raise self.error(f"failure {len(self.calls)}")
        return self.value


NO_JITTER = exponential(0.1, cap=10.0, jitter="none")


async def test_first_attempt_success_does_not_wait() -> None:
    flaky = Flaky(0)
    assert await Retry(backoff=NO_JITTER).call(flaky) == "ok"
    assert flaky.calls == [0.0]


async def test_retries_on_the_exponential_schedule() -> None:
    flaky = Flaky(3)
    assert await Retry(attempts=4, backoff=NO_JITTER).call(flaky) == "ok"
    assert flaky.calls == pytest.approx([0.0, 0.1, 0.3, 0.7])


async def test_exhaustion_reraises_the_last_exception_with_the_history() -> None:
    flaky = Flaky(5)
    with pytest.raises(OSError, match="failure 3") as caught:
        await Retry(attempts=3, backoff=NO_JITTER).call(flaky)
    note = caught.value.__notes__[-1]
    assert "gave up after 3 attempt(s)" in note and "(attempts)" in note
    assert "#1 OSError: failure 1" in note and "#3 OSError: failure 3" in note
    assert len(flaky.calls) == 3


async def test_not_retryable_exceptions_pass_through_unchanged() -> None:
    flaky = Flaky(1, error=KeyError)
    with pytest.raises(KeyError) as caught:
        await Retry(retry_on=(OSError,), backoff=NO_JITTER).call(flaky)
    assert not getattr(caught.value, "__notes__", None)
    assert len(flaky.calls) == 1


async def test_predicate_filter() -> None:
    flaky = Flaky(2, error=ValueError)
    policy = Retry(retry_on=lambda exc: "failure 1" in str(exc), backoff=NO_JITTER)
    with pytest.raises(ValueError, match="failure 2"):
        await policy.call(flaky)
    assert len(flaky.calls) == 2


async def test_cancellation_is_never_retried_at_either_await_point() -> None:
    loop = asyncio.get_running_loop()
    calls = 0

    async def slow() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(10)

    policy = Retry(attempts=5, backoff=NO_JITTER)
    task = asyncio.create_task(policy.call(slow))
    await asyncio.sleep(1)
    task.cancel()  # during an attempt
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1

    flaky = Flaky(10)
    task = asyncio.create_task(Retry(attempts=5, backoff=constant(5)).call(flaky))
    await asyncio.sleep(1)
    task.cancel()  # during the backoff sleep
    with pytest.raises(asyncio.CancelledError):
        await task
    assert len(flaky.calls) == 1
    assert loop.time() == 2.0


async def test_own_rejections_are_not_retried_unless_asked() -> None:
    async def limited() -> None:
        raise RateLimited("busy", retry_after=2.0, limiter="api")

    calls = Flaky(0)

    async def counted() -> None:
        await calls()
        await limited()

    with pytest.raises(RateLimited):
        await Retry(backoff=NO_JITTER).call(counted)
    assert len(calls.calls) == 1
    with pytest.raises(RateLimited):
        await Retry(attempts=3, backoff=NO_JITTER, retry_rejections=True).call(counted)
    assert calls.calls[1:] == [0.0, 2.0, 4.0]  # waited the hint, not the 0.1 s backoff


async def test_retry_with_breaker_in_one_line_does_not_hammer_it() -> None:
    breaker = CircuitBreaker(failure_threshold=2, break_duration=5.0)
    backend = Flaky(2)
    call_through_breaker = breaker(backend)
    result = await Retry(attempts=10, backoff=NO_JITTER, retry_rejections=True).call(
        call_through_breaker
    )
    assert result == "ok"
    # Two failures open the breaker; the retry then waits out the break (its retry_after)
    # instead of knocking: the backend saw exactly 3 calls.
    assert backend.calls == pytest.approx([0.0, 0.1, 5.1])
    assert breaker.statistics().rejected == 1


async def test_open_breaker_is_not_retried_by_default() -> None:
    breaker = CircuitBreaker(failure_threshold=1)
    breaker.trip()
    with pytest.raises(CircuitBreakerOpenError):
        await Retry(backoff=NO_JITTER).call(breaker.call, Flaky(0))
    assert breaker.statistics().rejected == 1


async def test_result_based_retry_returns_the_final_result() -> None:
    values = iter([None, None, None, None])

    async def poll() -> Any:
        return next(values)

    policy = Retry(attempts=3, backoff=NO_JITTER, retry_on_result=lambda r: r is None)
    assert await policy.call(poll) is None
    assert next(values) is None  # exactly 3 used

    answers = iter([None, 42])

    async def eventually() -> Any:
        return next(answers)

    assert await policy.call(eventually) == 42


async def test_never_sleeps_past_the_deadline() -> None:
    loop = asyncio.get_running_loop()
    flaky = Flaky(10)
    given_up: list[RetryState] = []
    policy = Retry(attempts=None, backoff=constant(5), deadline=7.0, on_give_up=given_up.append)
    with pytest.raises(OSError, match="failure 2") as caught:
        await policy.call(flaky)
    assert flaky.calls == [0.0, 5.0]
    assert loop.time() == 5.0  # gave up at once rather than sleeping to 10
    assert given_up[0].reason == "deadline"
    assert "(deadline)" in caught.value.__notes__[-1]


async def test_max_elapsed_counts_from_the_first_attempt() -> None:
    flaky = Flaky(10)
    policy = Retry(attempts=None, backoff=linear(1.0), max_elapsed=4.0)
    with pytest.raises(OSError):
        await policy.call(flaky)
    assert flaky.calls == [0.0, 1.0, 3.0]  # the next wait (3 s) would end at 6 > 4


async def test_hints_from_an_extractor_and_the_cap() -> None:
    class Busy(Exception):
        def __init__(self, seconds: float) -> None:
            super().__init__(f"retry in {seconds}")
            self.seconds = seconds

    hints = iter([3.0, 500.0])

    async def busy() -> None:
        raise Busy(next(hints))

    calls = 0

    async def counted() -> None:
        nonlocal calls
        calls += 1
        await busy()

    policy = Retry(
        attempts=5,
        backoff=NO_JITTER,
        retry_after=lambda exc: getattr(exc, "seconds", None),
        max_retry_after=60.0,
    )
    with pytest.raises(Busy) as caught:
        await policy.call(counted)
    assert calls == 2
    assert asyncio.get_running_loop().time() == 3.0
    assert "(retry_after)" in caught.value.__notes__[-1]  # 500 s is past the cap: give up


async def test_hooks_sync_async_and_failing(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[tuple[int, float, str]] = []

    async def before_sleep(state: RetryState) -> None:
        seen.append((state.attempt, state.delay, str(state.exception)))

    def broken(state: RetryState) -> None:
        raise RuntimeError("hook bug")

    flaky = Flaky(2)
    policy = Retry(attempts=3, backoff=NO_JITTER, before_sleep=before_sleep, on_give_up=broken)
    assert await policy.call(flaky) == "ok"
    assert seen == [(1, 0.1, "failure 1"), (2, pytest.approx(0.2), "failure 2")]
    with caplog.at_level(logging.ERROR, logger="aioresilience"), pytest.raises(OSError):
        await policy.call(Flaky(5))
    assert "hook bug" in caplog.text


async def test_async_for_form() -> None:
    flaky = Flaky(2)
    async for attempt in Retry(attempts=5, backoff=NO_JITTER):
        with attempt:
            result = await flaky()
    assert result == "ok"
    assert attempt.number == 3

    with pytest.raises(OSError, match="failure 1") as caught:
        async for attempt in Retry(attempts=2, backoff=NO_JITTER):
            with attempt:
                await Flaky(5)()  # a new backend each time: always its first failure
    assert "gave up after 2 attempt(s)" in caught.value.__notes__[-1]


async def test_async_for_form_with_a_persistent_backend() -> None:
    backend = Flaky(5)
    with pytest.raises(OSError, match="failure 2"):
        async for attempt in Retry(attempts=2, backoff=NO_JITTER):
            with attempt:
                await backend()
    assert len(backend.calls) == 2


async def test_async_for_form_refuses_a_policy_that_judges_results() -> None:
    policy = Retry(attempts=3, backoff=NO_JITTER, retry_on_result=lambda r: r is None)
    with pytest.raises(TypeError, match="cannot judge results"):
        async for attempt in policy:  # the block's result never reaches the predicate
            with attempt:
                pass
    assert await policy.call(Flaky(1)) == "ok"  # the other forms judge them


async def test_decorator_and_factory() -> None:
    flaky = Flaky(1)

    @retry(attempts=2, backoff=NO_JITTER)
    async def fetch(x: int) -> str:
        return f"{await flaky()}-{x}"

    assert await fetch(7) == "ok-7"
    assert fetch.__name__ == "fetch"
    with pytest.raises(TypeError, match="coroutine functions"):
        Retry()(lambda: None)  # type: ignore[arg-type,return-value]


async def test_exponential_backoff_alias() -> None:
    policy = ExponentialBackoff(max_retries=2, base_delay=1.0, max_delay=60.0)
    assert policy.attempts == 3
    flaky = Flaky(5)
    with pytest.raises(OSError):
        await policy.call(flaky)
    assert len(flaky.calls) == 3


async def test_concurrency_budget_caps_retries_in_flight() -> None:
    budget = RetryBudget.concurrency(percent=0.2, min_retries=3)
    in_flight = peak = 0
    policy = Retry(attempts=3, backoff=constant(1.0), budget=budget)

    async def failing() -> None:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, budget.ledger.retries)
        await asyncio.sleep(0.5)
        in_flight -= 1
        raise OSError("down")

    results = await asyncio.gather(
        *(policy.call(failing) for _ in range(10)), return_exceptions=True
    )
    assert all(isinstance(r, OSError) for r in results)
    assert peak <= 3  # max(3, 0.2 * 10)
    assert budget.exhausted > 0
    assert budget.ledger.retries == 0 and budget.ledger.requests == 0


async def test_concurrency_budget_admits_no_retry_past_its_share() -> None:
    # 20 % of 16 calls in flight is 3.2: at most 3 retries (Envoy floors the share); the
    # check "retries < 3.2" let a fourth start, 4 > 3.2. With min_retries=0 and one call at
    # 50 %, no retry at all (0.5 of a retry), where "0 < 0.5" let one through.
    budget = RetryBudget.concurrency(percent=0.2, min_retries=0)
    policy = Retry(attempts=2, backoff=constant(1.0), budget=budget)
    peak = 0

    async def failing() -> None:
        nonlocal peak
        peak = max(peak, budget.ledger.retries)
        await asyncio.sleep(0.5)
        raise OSError("down")

    results = await asyncio.gather(
        *(policy.call(failing) for _ in range(16)), return_exceptions=True
    )
    assert all(isinstance(r, OSError) for r in results)
    assert peak == 3
    assert budget.exhausted == 13
    lone = RetryBudget.concurrency(percent=0.5, min_retries=0)
    with pytest.raises(OSError):
        await Retry(attempts=2, backoff=constant(0), budget=lone).call(Flaky(5))
    assert lone.exhausted == 1


async def test_token_budget_stops_retries_when_half_spent_and_recovers() -> None:
    budget = RetryBudget.tokens(max_tokens=4, token_ratio=1.0)
    policy = Retry(attempts=5, backoff=NO_JITTER, budget=budget)
    flaky = Flaky(100)
    with pytest.raises(OSError) as caught:
        await policy.call(flaky)
    # tokens 4 -> 3 (retry allowed: 3 > 2) -> 2 (not > 2: no retry): 2 attempts in all.
    assert len(flaky.calls) == 2
    assert "(budget)" in caught.value.__notes__[-1]
    for _ in range(4):
        await policy.call(Flaky(0))
    assert budget.ledger.tokens == 4


@pytest.mark.parametrize(
    ("jitter", "low", "high", "mean"),
    [("full", 0.0, 1.0, 0.5), ("equal", 0.5, 1.0, 0.75), ("none", 1.0, 1.0, 1.0)],
)
def test_jitter_statistics(jitter: Any, low: float, high: float, mean: float) -> None:
    schedule = Backoff("constant", 1.0, jitter=jitter)
    rng = random.Random(5).random
    samples = [schedule.delay(3, None, rng) for _ in range(5000)]
    assert min(samples) >= low and max(samples) <= high
    assert statistics.fmean(samples) == pytest.approx(mean, abs=0.02)


def test_decorrelated_jitter_bounds() -> None:
    schedule = exponential(0.5, cap=8.0, jitter="decorrelated")
    rng = random.Random(3).random
    previous = None
    for attempt in range(200):
        delay = schedule.delay(attempt, previous, rng)
        if previous is None:
            assert delay == 0.5
        else:
            assert 0.5 <= delay <= min(8.0, 3 * previous)
        previous = delay


def test_a_zero_base_stays_zero_past_float_range() -> None:
    """0 * 2**k is 0 for every k: from k = 1024 on, 2.0**k overflows, and the schedule gave
    the cap (30 s, or inf uncapped) instead."""
    assert exponential(0, cap=30, jitter="none").nominal(1024) == 0.0
    assert exponential(0, cap=None, jitter="none").nominal(1100) == 0.0
    assert exponential(0.1, cap=30, jitter="none").nominal(1100) == 30.0


@pytest.mark.parametrize("seed", [True, 1.5, float("nan"), "1", [1]])
@pytest.mark.parametrize("build", [Retry, AdaptiveThrottle], ids=["Retry", "AdaptiveThrottle"])
def test_a_seed_must_be_an_int(build: Any, seed: Any) -> None:
    """As CircuitBreaker's and the pipeline builder's: seed=nan was taken and seeded from
    the float's address (another sequence in every process), seed=True as 1."""
    with pytest.raises(TypeError, match="seed must be an int"):
        build(seed=seed)


def test_seeded_jitter_is_reproducible() -> None:
    one = Retry(seed=1)
    two = Retry(seed=1)
    assert [one.backoff.delay(k, None, one._random) for k in range(5)] == [
        two.backoff.delay(k, None, two._random) for k in range(5)
    ]


async def test_adaptive_throttle_rejects_with_the_sre_probability() -> None:
    throttle = AdaptiveThrottle(k=2.0, window=60.0, seed=4)
    for _ in range(10):
        await throttle.call(Flaky(0))
    assert throttle.probability() == 0.0
    outcomes = {"throttled": 0, "failed": 0}
    for _ in range(200):
        try:
            await throttle.call(Flaky(1))
        except Throttled:
            outcomes["throttled"] += 1
        except OSError:
            outcomes["failed"] += 1
    assert outcomes["throttled"] > 100  # the backend is refusing: most calls stay local
    requests, rejected, _ = throttle._window.totals(0.0)
    assert throttle.probability() == pytest.approx(
        max(0.0, (requests - 2 * (requests - rejected)) / (requests + 1))
    )
    await asyncio.sleep(61)  # the window forgets
    assert throttle.probability() == 0.0


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"attempts": 0}, ValueError, "attempts must be >= 1, got 0"),
        ({"attempts": None}, ValueError, "unbounded retry"),
        ({"max_elapsed": -1}, ValueError, "max_elapsed must be >= 0 or None, got -1"),
        ({"max_retry_after": 0}, ValueError, "max_retry_after must be a positive"),
        ({"backoff": 1.0}, TypeError, "backoff must be a schedule"),
        ({"retry_on": "OSError"}, TypeError, "retry_on must be an exception class"),
        ({"retry_on_result": 5}, TypeError, "retry_on_result must be callable"),
        ({"before_sleep": "log"}, TypeError, "before_sleep must be callable"),
        ({"budget": 3}, TypeError, "budget must be a RetryBudget"),
        ({"deadline": "soon"}, TypeError, "deadline must be a loop time"),
        ({"retry_rejections": 1}, TypeError, "retry_rejections must be a bool"),
    ],
)
def test_bad_retry_options(options: dict[str, Any], error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        Retry(**options)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: exponential(-1), "base must be a finite number >= 0, got -1"),
        (lambda: exponential(1, factor=0.5), "factor must be >= 1, got 0.5"),
        (lambda: exponential(1, jitter="some"), "jitter must be one of"),
        (lambda: constant(float("inf")), "delay must be a finite number >= 0"),
        (lambda: linear(1, cap=0), "cap must be a positive finite number, got 0"),
        (lambda: RetryBudget.concurrency(percent=2), r"percent must be in \(0, 1\], got 2"),
        (lambda: RetryBudget.tokens(max_tokens=0), "max_tokens must be a positive"),
        (lambda: AdaptiveThrottle(k=0), "k must be a positive"),
        (lambda: ExponentialBackoff(max_retries=-1), "max_retries must be >= 0, got -1"),
    ],
)
def test_bad_schedule_options(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


# -- issue 11 --------------------------------------------------------------------------------


async def test_elapsed_counts_from_the_first_attempt_without_max_elapsed() -> None:
    """Issue 11 item 16: RetryState.elapsed and the give-up note measured from the first
    attempt, whether or not max_elapsed is set."""
    seen: list[RetryState] = []

    async def slow_failure() -> None:
        await asyncio.sleep(1.0)
        raise OSError("down")

    for max_elapsed in (None, 100.0):
        seen.clear()
        policy = Retry(
            attempts=2,
            backoff=constant(0.5),
            max_elapsed=max_elapsed,
            before_sleep=seen.append,
            on_give_up=seen.append,
        )
        with pytest.raises(OSError) as caught:
            await policy.call(slow_failure)
        assert [s.elapsed for s in seen] == [1.0, 2.5], max_elapsed
        assert "gave up after 2 attempt(s) in 2.500s" in caught.value.__notes__[0]


async def test_elapsed_counts_from_the_first_attempt_in_the_async_for_form() -> None:
    seen: list[RetryState] = []
    policy = Retry(attempts=2, backoff=constant(0.5), on_give_up=seen.append)
    with pytest.raises(OSError):
        async for attempt in policy:
            with attempt:
                await asyncio.sleep(1.0)
                raise OSError("down")
    assert seen[0].elapsed == 2.5


def _defaults_kept(decorated: Any, original: Any) -> None:
    assert decorated.__defaults__ == original.__defaults__ == (2,)
    assert decorated.__kwdefaults__ == original.__kwdefaults__ == {"c": 3}
    assert decorated.__name__ == original.__name__
    assert decorated.__doc__ == original.__doc__
    assert decorated.__wrapped__ is original


async def test_decorators_keep_defaults_and_kwdefaults() -> None:
    """Issue 11 item 19: `Retry(...)(fn)` dropped __defaults__/__kwdefaults__."""

    async def fetch(a: int, b: int = 2, *, c: int = 3) -> int:
        """Docs."""
        return a + b + c

    for decorator in (Retry(), retry(attempts=2), AdaptiveThrottle(), ExponentialBackoff()):
        decorated = decorator(fetch)
        _defaults_kept(decorated, fetch)
        assert await decorated(1) == 6


async def test_exponential_backoff_seed_names_and_execute() -> None:
    """The seed's ExponentialBackoff: max_retries retries after the first attempt (so
    max_retries + 1 attempts), errors under the seed's parameter names, execute()."""
    with pytest.raises(ValueError, match="base_delay must be a finite number >= 0, got nan"):
        ExponentialBackoff(base_delay=float("nan"))
    with pytest.raises(ValueError, match="max_delay must be a positive finite number, got 0"):
        ExponentialBackoff(max_delay=0)
    with pytest.raises(TypeError, match="max_delay must be a number, got 'x'"):
        ExponentialBackoff(max_delay="x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_retries must be an int, got True"):
        ExponentialBackoff(max_retries=True)
    flaky = Flaky(failures=5)
    policy = ExponentialBackoff(max_retries=2, base_delay=1.0, max_delay=60.0)
    with pytest.raises(OSError):
        await policy.execute(flaky)
    assert len(flaky.calls) == 3
    assert await ExponentialBackoff(max_retries=0).execute(Flaky(failures=0)) == "ok"


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: ar.Backoff("constant", float("nan")), ValueError, "base must be a finite"),
        (lambda: ar.Backoff("constant", float("inf")), ValueError, "base must be a finite"),
        (lambda: ar.Backoff("bogus", 1), ValueError, "kind must be one of"),  # type: ignore[arg-type]
        (lambda: ar.Backoff("constant", True), TypeError, "base must be a number, got True"),
        (lambda: ar.Backoff("linear", 1, step=-1), ValueError, "step must be a finite"),
        (lambda: ar.Backoff("exponential", 1, factor=0.5), ValueError, "factor must be >= 1"),
        (lambda: ar.Backoff("exponential", 1, cap=float("nan")), ValueError, "cap must be"),
        (lambda: ar.Backoff("constant", 1, jitter="most"), ValueError, "jitter must be one of"),  # type: ignore[arg-type]
        (lambda: Retry(max_elapsed=10**400), ValueError, "max_elapsed must be within float"),
        (lambda: Retry(deadline=10**400), ValueError, "deadline must be within float range"),
        (lambda: Retry(deadline=True), TypeError, "deadline must be a loop time"),
        (lambda: Retry(name=5), TypeError, "name must be a str or None, got 5"),  # type: ignore[arg-type]
        (lambda: AdaptiveThrottle(window=5e-324), ValueError, "window must be >= 1e-12"),
        (lambda: AdaptiveThrottle(window=10**400), ValueError, "window must be within float"),
        (lambda: AdaptiveThrottle(name=5), TypeError, "name must be a str or None, got 5"),  # type: ignore[arg-type]
        (lambda: RetryBudget.concurrency(percent=float("nan")), ValueError, "percent must be in"),
        (
            lambda: RetryBudget.concurrency(min_retries=True),
            TypeError,
            "min_retries must be an int",
        ),
    ],
)
def test_bad_values_found_by_issue_11(build: Any, error: type, message: str) -> None:
    """Issue 11 item 18: each a ValueError/TypeError naming the parameter."""
    with pytest.raises(error, match=message):
        build()


def test_backoff_repr_never_fails() -> None:
    assert repr(ar.Backoff("constant", 1)) == "constant(1, jitter='none')"


async def _is_retryable(exc: BaseException) -> bool:
    return True


async def _is_bad(result: Any) -> bool:
    return True


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"retry_on": _is_retryable}, "retry_on"),
        ({"retry_on_result": _is_bad}, "retry_on_result"),
        ({"retry_after": _is_bad}, "retry_after"),
    ],
)
def test_an_async_predicate_is_refused(options: dict[str, Any], name: str) -> None:
    """An `async def` predicate returns a coroutine, which is always true: refused."""
    with pytest.raises(TypeError, match=f"{name} must be a plain \\(sync\\) function"):
        Retry(**options)
    with pytest.raises(TypeError, match="overload must be a plain"):
        AdaptiveThrottle(overload=_is_retryable)


async def test_async_hooks_are_still_accepted() -> None:
    seen: list[int] = []

    async def hook(state: RetryState) -> None:
        seen.append(state.attempt)

    policy = Retry(attempts=2, backoff=constant(0), before_sleep=hook, on_give_up=hook)
    with pytest.raises(OSError):
        await policy.call(Flaky(failures=5))
    assert seen == [1, 2]


def test_huge_attempt_counts_are_counts_not_overflows() -> None:
    """Found by the constructor fuzz: 10**400 attempts raised OverflowError (a float test)."""
    assert Retry(attempts=10**400).attempts == 10**400
    assert ExponentialBackoff(max_retries=10**400).attempts == 10**400 + 1


# -- issue 12: one core, execute(call, context), and every form from it ----------------------


async def test_every_form_runs_the_one_core_and_a_subclass_changes_them_all() -> None:
    from aioresilience._retry import RetryStrategy

    runs: list[str] = []

    class Counted(Retry):
        async def execute(self, call: Any, context: Any) -> Any:
            runs.append("core")
            return await super().execute(call, context)

    policy = Counted(attempts=2, backoff=constant(0))

    async def add(a: int, b: int = 2, *, c: int = 3) -> int:
        return a + b + c

    assert await policy.call(add, 1, c=4) == 7
    assert await policy(add)(1) == 6
    pipeline = Pipeline.builder().add(RetryStrategy(policy)).build()
    assert await pipeline.execute(add, 2) == 7
    assert runs == ["core"] * 3
    task = asyncio.create_task(policy.call(add, 0))  # the call form is a coroutine
    assert await task == 5


async def test_the_pipeline_form_counts_attempts_in_the_context() -> None:
    from aioresilience._retry import RetryStrategy

    seen: list[int] = []
    flaky = Flaky(2)

    async def call() -> Any:
        context = ar.current_context()
        assert context is not None
        seen.append(context.attempt)
        return await flaky()

    strategy = RetryStrategy(Retry(attempts=3, backoff=constant(1)))
    assert strategy.describe() == {"kind": "retry", "name": "Retry", "attempts": 3}
    assert await Pipeline.builder().add(strategy).build().execute(call) == "ok"
    assert seen == [1, 2, 3]


async def test_the_pipeline_form_never_retries_a_cancellation() -> None:
    from aioresilience._retry import RetryStrategy

    budget = RetryBudget.concurrency(percent=0.5, min_retries=1)
    calls = 0

    async def slow() -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(10)

    policy = Retry(attempts=5, backoff=constant(1), budget=budget)
    pipeline = Pipeline.builder().add(RetryStrategy(policy)).build()
    task = asyncio.create_task(pipeline.execute(slow))
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert calls == 1
    assert (budget.ledger.requests, budget.ledger.retries) == (0, 0)  # per call, released


async def test_exponential_backoff_forms_run_retrys_core() -> None:
    from aioresilience._retry import RetryStrategy

    policy = ExponentialBackoff(max_retries=1, base_delay=0.0)
    assert await policy.execute(Flaky(1)) == "ok"  # the seed's execute(fn, *args)
    assert await policy.call(Flaky(1)) == "ok"
    assert await policy(Flaky(1))() == "ok"
    pipeline = Pipeline.builder().add(RetryStrategy(policy)).build()
    assert await pipeline.execute(Flaky(1)) == "ok"
    with pytest.raises(OSError):
        await pipeline.execute(Flaky(2))


async def test_adaptive_throttle_forms_and_cancellation_counts_neither_way() -> None:
    throttle = AdaptiveThrottle(seed=1)
    async with throttle:
        pass
    assert await throttle(Flaky(0))() == "ok"
    with pytest.raises(OSError):
        await throttle.call(Flaky(1))

    async def slow() -> None:
        await asyncio.sleep(10)

    task = asyncio.create_task(throttle.call(slow))
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    requests, rejected, _ = throttle._window.totals(asyncio.get_running_loop().time())
    assert (requests, rejected) == (3, 1)  # the cancelled call is not counted


async def test_the_pipeline_form_times_each_attempt_for_a_listener() -> None:
    from aioresilience._retry import RetryStrategy

    events: list[ar.ResilienceEvent] = []
    strategy = RetryStrategy(Retry(attempts=2, backoff=constant(1)))
    pipeline = Pipeline.builder("p").add(strategy).build()
    pipeline.add_listener(events.append)
    assert await pipeline.execute(Flaky(1)) == "ok"
    attempts = [(e.details["attempt"], e.details["outcome"]) for e in events if e.name == "attempt"]
    assert attempts == [(1, "failure"), (2, "success")]


class CountingLedger:
    """A ledger of one's own: every call the strategies make, in order; refuses retries
    after ``allowed``."""

    def __init__(self, allowed: int) -> None:
        self.allowed = allowed
        self.calls: list[str] = []

    def start_request(self) -> None:
        self.calls.append("start")

    def end_request(self) -> None:
        self.calls.append("end")

    def record(self, success: bool) -> None:
        self.calls.append("ok" if success else "fail")

    def try_retry(self) -> bool:
        self.calls.append("retry?")
        if self.allowed:
            self.allowed -= 1
            return True
        return False

    def end_retry(self) -> None:
        self.calls.append("retry done")


async def test_a_ledger_of_ones_own_is_driven_by_retry_and_hedge() -> None:
    ledger = CountingLedger(allowed=1)
    budget = RetryBudget(ledger, kind="mine")
    assert budget.ledger is ledger and repr(budget) == "<RetryBudget mine exhausted=0>"
    policy = Retry(attempts=5, backoff=NO_JITTER, budget=budget)
    flaky = Flaky(100)
    with pytest.raises(OSError) as caught:
        await policy.call(flaky)
    assert len(flaky.calls) == 2 and "(budget)" in caught.value.__notes__[-1]
    assert ledger.calls == ["start", "fail", "retry?", "retry done", "fail", "retry?", "end"]
    assert budget.exhausted == 1

    ledger.calls.clear()
    ledger.allowed = 1
    hedge = ar.Hedge(max_hedged=2, delay=1.0, idempotent=True, budget=budget)

    @hedge
    async def decorated() -> str:
        return "fine"

    assert await decorated() == "fine"
    ledger.calls.clear()

    async def slow_then_fast() -> str:
        first = not ledger.calls.count("retry?")
        await asyncio.sleep(10 if first else 0.5)
        return "first" if first else "hedge"

    assert await hedge.execute(slow_then_fast, None) == "hedge"
    await asyncio.sleep(0)  # the cancelled first attempt's callbacks run
    # The hedge's slot is given back when it finishes, whenever its callback runs.
    assert sorted(ledger.calls) == sorted(["start", "retry?", "ok", "retry done", "end"])
    assert ledger.calls[:2] == ["start", "retry?"] and budget.exhausted == 1


def test_retry_budget_validation() -> None:
    with pytest.raises(TypeError, match=r"ledger must implement aioresilience.abc.RetryLedger"):
        RetryBudget(object())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="kind"):
        RetryBudget(CountingLedger(0), kind=3)  # type: ignore[arg-type]
    assert isinstance(RetryBudget.tokens().ledger, RetryLedger)

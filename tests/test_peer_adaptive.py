"""The adaptive parts against the libraries that defined them: Netflix concurrency-limits'
AIMDLimitTest, VegasLimitTest and SimpleLimiterTest (and Gradient2Limit's arithmetic), gRPC's
retry-throttle test, Envoy's retry budget and the SRE book's adaptive throttling, as far as
each has an equivalent here; plus the invariants: the limit stays in [min_limit, max_limit]
under any sequence, in-flight accounting survives cancellation, the throttle refuses with the
formula's probability, a retry budget admits no retry past its bound."""

from __future__ import annotations

import asyncio
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aioresilience as ar
from aioresilience import AIMD, AdaptiveLimiter, ConcurrencyLimited, Gradient2, Vegas
from aioresilience._core.budget import ConcurrencyBudget, TokenBudget, throttle_probability
from aioresilience.testing import ManualClock

# -- AIMD (AIMDLimitTest) ----------------------------------------------------------------------


def test_aimd_increases_on_success_when_the_limit_is_in_use() -> None:
    # increaseOnSuccess: limit 20, a 1 ms sample with 10 in flight -> 21
    assert AIMD().update(20, 0.001, 10, False) == 21


def test_aimd_decreases_on_drops() -> None:
    # decreaseOnDrops: limit 30, a drop -> 27
    assert AIMD().update(30, 0.0, 0, True) == pytest.approx(27)


def test_aimd_success_at_the_max_stays_at_the_max() -> None:
    # successOverflow: initial = max = 21; a success keeps it at 21 (the front-end clamps)
    clock = ManualClock()
    limiter = AdaptiveLimiter(
        AIMD(),
        initial_limit=21,
        min_limit=1,
        max_limit=21,
        sample_window=0,
        min_samples=1,
        clock=clock,
    )
    started = [limiter.acquire() for _ in range(10)]
    clock.advance(0.001)
    limiter.release(started[0])
    assert limiter.limit == 21


def test_aimd_never_goes_below_min_limit() -> None:
    clock = ManualClock()
    limiter = AdaptiveLimiter(
        AIMD(),
        initial_limit=5,
        min_limit=3,
        max_limit=10,
        sample_window=0,
        min_samples=1,
        clock=clock,
    )
    for _ in range(50):
        started = limiter.acquire()
        clock.advance(0.01)
        limiter.release(started, TimeoutError())
    assert limiter.limit == 3


# -- Vegas (VegasLimitTest) ---------------------------------------------------------------------
# Netflix's first sample (and any new minimum rtt) only records rtt_noload and leaves the
# limit unchanged; here the sample that lowers rtt_noload is also judged (queue 0: + beta).
# So each case below first feeds the no-load rtt, then the sample under test.


def _vegas_with_noload(rtt_noload: float, limit: float) -> Vegas:
    vegas = Vegas()
    vegas.update(limit, rtt_noload, 0, False)  # app-limited: records rtt_noload only
    assert vegas.rtt_noload == rtt_noload
    return vegas


def test_vegas_increase_limit() -> None:
    # increaseLimit: limit 10, alpha 3, beta 6; rtt = rtt_noload, 11 in flight -> 16
    vegas = _vegas_with_noload(0.010, 10)
    assert vegas.update(10, 0.010, 11, False) == 16


def test_vegas_decrease_limit() -> None:
    # decreaseLimit: rtt 50 ms over a 10 ms no-load: queue 8 > beta 6 -> 9
    vegas = _vegas_with_noload(0.010, 10)
    assert vegas.update(10, 0.050, 11, False) == 9


def test_vegas_no_change_within_thresholds() -> None:
    # noChangeIfWithinThresholds: rtt 14 ms: queue ceil(10 * 4/14) = 3, alpha <= 3 <= beta
    vegas = _vegas_with_noload(0.010, 10)
    assert vegas.update(10, 0.014, 14, False) == 10


def test_vegas_large_limit_increase() -> None:
    # largeLimitIncrease: limit 10000, L = log10 = 4, beta 24 -> 10024
    vegas = _vegas_with_noload(10.0, 10000)
    assert vegas.update(10000, 10.0, 6000, False) == 10024


def test_vegas_app_limited_does_not_drift_up() -> None:
    vegas = _vegas_with_noload(0.010, 10000)
    assert vegas.update(10000, 10.0, 4999, False) == 10000


@pytest.mark.parametrize(
    ("limit", "step"), [(1, 1), (9, 1), (10, 1), (99, 1), (100, 2), (999, 2), (1000, 3)]
)
def test_vegas_alpha_beta_and_threshold_follow_log10(limit: int, step: int) -> None:
    # Log10RootIntFunction: max(1, (int) log10(limit)); alpha 3L, beta 6L, threshold L
    vegas = _vegas_with_noload(1.0, limit)
    assert vegas.update(limit, 1.0, limit, False) == limit + 6 * step  # queue 0 <= L
    assert vegas.update(limit, 1.0, limit, True) == limit - step  # a drop: - L


def test_vegas_probes_the_noload_rtt_every_probe_multiplier_times_limit_updates() -> None:
    vegas = Vegas(probe_multiplier=2)
    vegas.update(5, 0.010, 0, False)  # rtt_noload 10 ms, countdown 2 * 5 = 10
    for _ in range(8):
        vegas.update(5, 0.050, 0, False)
    assert vegas.rtt_noload == 0.010
    assert vegas.update(5, 0.050, 5, False) == 5  # the probe: no change of the limit
    assert vegas.rtt_noload == 0.050  # ... and the latest rtt is the new floor


# -- Gradient2 (Gradient2Limit) -----------------------------------------------------------------


def test_gradient2_steady_rtt_grows_by_the_smoothed_queue_size() -> None:
    # gradient 1 (tolerance 1.5 * long / short clamps at 1): 20*0.8 + (20 + 4)*0.2 = 20.8
    gradient = Gradient2()
    assert gradient.update(20, 0.1, 20, False) == pytest.approx(20.8)


def test_gradient2_tolerates_an_rtt_up_to_tolerance_times_the_long_one() -> None:
    gradient = Gradient2(smoothing=1.0, queue_size=0, long_window=10**9)
    gradient.update(20, 0.1, 0, False)  # long rtt 0.1
    assert gradient.update(20, 0.15, 20, False) == pytest.approx(20)  # 1.5 * 0.1 / 0.15 = 1
    assert gradient.update(20, 0.2, 20, False) == pytest.approx(15)  # 0.75


def test_gradient2_gradient_never_below_a_half() -> None:
    gradient = Gradient2(smoothing=1.0, queue_size=0)
    gradient.update(100, 0.01, 0, False)
    assert gradient.update(100, 100.0, 100, False) == pytest.approx(50)


def test_gradient2_app_limited_does_not_grow() -> None:
    gradient = Gradient2()
    assert gradient.update(20, 0.1, 9, False) == 20


def test_gradient2_long_rtt_is_pulled_down_after_a_recovery() -> None:
    # longRtt / shortRtt > 2: longRtt *= 0.95, without waiting for the EMA
    gradient = Gradient2(long_window=10**9)
    gradient.update(20, 1.0, 0, False)
    gradient.update(20, 0.1, 0, False)
    assert gradient.long_rtt == pytest.approx(0.95)


def test_gradient2_long_rtt_is_an_ema_of_the_long_window() -> None:
    gradient = Gradient2(long_window=9)  # factor 2 / (9 + 1) = 0.2
    gradient.update(20, 1.0, 0, False)
    gradient.update(20, 1.5, 0, False)
    assert gradient.long_rtt == pytest.approx(1.1)


# -- the limiter (SimpleLimiterTest) ------------------------------------------------------------


def test_uses_capacity_until_the_limit_then_rejects() -> None:
    # useLimiterCapacityUntilTotalLimit / testReleaseLimit
    limiter = AdaptiveLimiter(AIMD(), initial_limit=10, min_limit=1, max_limit=10)
    tickets = [limiter.acquire() for _ in range(10)]
    with pytest.raises(ConcurrencyLimited):
        limiter.acquire()
    assert limiter.in_flight == 10
    limiter.release(tickets.pop())
    assert limiter.in_flight == 9
    tickets.append(limiter.acquire())
    assert limiter.in_flight == 10
    stats = limiter.statistics()
    assert (stats.admitted, stats.rejected) == (11, 1)


async def test_concurrent_callers_never_exceed_the_limit() -> None:
    # testConcurrentSimple: every attempt is a success or a rejection; max in flight <= limit
    limiter = AdaptiveLimiter(AIMD(), initial_limit=10, min_limit=10, max_limit=10)
    counts = {"ok": 0, "rejected": 0, "peak": 0}

    async def worker(seed: int) -> None:
        rng = random.Random(seed)
        for _ in range(50):
            try:
                async with limiter:
                    counts["peak"] = max(counts["peak"], limiter.in_flight)
                    counts["ok"] += 1
                    await asyncio.sleep(rng.random() / 100)
            except ConcurrencyLimited:
                counts["rejected"] += 1
                await asyncio.sleep(rng.random() / 100)

    await asyncio.gather(*(worker(i) for i in range(30)))
    assert counts["peak"] <= 10
    assert counts["ok"] + counts["rejected"] == 30 * 50
    assert limiter.in_flight == 0


async def test_cancellation_never_leaks_or_goes_negative() -> None:
    limiter = AdaptiveLimiter(Vegas(), initial_limit=5, min_limit=1, max_limit=50)
    rng = random.Random(7)

    async def call() -> None:
        async with limiter:
            await asyncio.sleep(rng.random())

    for _ in range(20):
        tasks = [asyncio.create_task(call()) for _ in range(8)]
        await asyncio.sleep(rng.random() / 2)
        for task in tasks:
            if rng.random() < 0.5:
                task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        assert limiter.in_flight == 0
    with pytest.raises(ValueError, match="without a call in flight"):
        limiter.release(0.0)
    assert limiter.in_flight == 0


ALGORITHMS = {
    "AIMD": lambda: AIMD(timeout=0.5),
    "Vegas": lambda: Vegas(probe_multiplier=1),
    "Gradient2": lambda: Gradient2(long_window=3),
}


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(sorted(ALGORITHMS)),
    bounds=st.tuples(st.integers(1, 30), st.integers(0, 30), st.integers(0, 30)),
    steps=st.lists(
        st.tuples(
            st.floats(0, 5, allow_nan=False),  # rtt
            st.integers(0, 60),  # calls to start before finishing one
            st.sampled_from(["ok", "drop", "error", "cancel"]),
        ),
        max_size=80,
    ),
)
def test_limit_stays_within_bounds_under_any_sequence(
    name: str, bounds: tuple[int, int, int], steps: list[tuple[float, int, str]]
) -> None:
    low, up, start = bounds
    high = low + up
    initial = low + min(start, up)
    clock = ManualClock()
    limiter = AdaptiveLimiter(
        ALGORITHMS[name](),
        initial_limit=initial,
        min_limit=low,
        max_limit=high,
        sample_window=0,
        min_samples=1,
        clock=clock,
    )
    tickets: list[float] = []
    for rtt, starts, outcome in steps:
        for _ in range(starts):
            try:
                tickets.append(limiter.acquire())
            except ConcurrencyLimited:
                assert limiter.in_flight >= limiter.limit
                break
            assert limiter.in_flight <= limiter.limit  # never admitted past the limit
        clock.advance(rtt)
        if tickets:
            exc = {
                "ok": None,
                "drop": TimeoutError(),
                "error": RuntimeError(),
                "cancel": asyncio.CancelledError(),
            }[outcome]
            limiter.release(tickets.pop(0), exc)
        assert low <= limiter.limit <= high
        assert low <= limiter._limit <= high
        assert limiter.in_flight == len(tickets) >= 0
    for ticket in tickets:
        limiter.release(ticket)
    assert limiter.in_flight == 0
    assert all(low <= limit <= high for _, limit in limiter.statistics().history)


# -- adaptive throttling (SRE book) -------------------------------------------------------------


@pytest.mark.parametrize(
    ("requests", "accepts", "k", "expected"),
    [
        (0, 0, 2.0, 0.0),
        (10, 5, 2.0, 0.0),  # accepts * k == requests: nothing refused yet
        (10, 0, 2.0, 10 / 11),
        (100, 10, 2.0, 80 / 101),
        (100, 40, 2.0, 20 / 101),
        (100, 10, 1.1, 89 / 101),
    ],
)
def test_throttle_probability_formula(
    requests: int, accepts: int, k: float, expected: float
) -> None:
    assert throttle_probability(requests, accepts, k) == pytest.approx(expected)


async def test_throttle_probability_matches_the_formula_at_sampled_points() -> None:
    loop = asyncio.get_running_loop()
    throttle = ar.AdaptiveThrottle(k=2.0, window=100.0, seed=3)
    accepts = 0

    async def ok() -> None:
        pass

    async def overloaded() -> None:
        raise RuntimeError("503")

    rng = random.Random(11)
    for requests in range(1, 301):  # a local refusal counts in R as well
        fn = ok if rng.random() < 0.2 else overloaded
        try:
            await throttle.call(fn)
            accepts += 1
        except ar.Throttled:
            pass
        except RuntimeError:
            pass
        assert throttle.probability() == pytest.approx(
            max(0.0, (requests - 2.0 * accepts) / (requests + 1))
        )
    assert loop.time() == 0  # everything inside one window


async def test_throttle_refusal_rate_follows_the_probability() -> None:
    # Each call is refused with the probability of the moment: over many calls, the count
    # refused is the sum of those probabilities (within a few standard deviations).
    throttle = ar.AdaptiveThrottle(k=2.0, window=1000.0, seed=5)

    async def overloaded() -> None:
        raise RuntimeError("503")

    expected = variance = 0.0
    refused = 0
    for _ in range(2000):
        p = throttle.probability()
        expected += p
        variance += p * (1 - p)
        try:
            await throttle.call(overloaded)
        except ar.Throttled:
            refused += 1
        except RuntimeError:
            pass
    assert abs(refused - expected) < 4 * math.sqrt(variance)
    assert throttle.throttled == refused


# -- retry budgets ------------------------------------------------------------------------------


def test_token_budget_grpc_basic() -> None:
    # gRPC's ServerRetryThrottleData Basic: max 4 (threshold 2), ratio 1.6
    budget = TokenBudget(4.0, 1.6)
    budget.record(False)
    assert budget.tokens == 3 and budget.try_retry()
    budget.record(True)
    assert budget.tokens == 4  # not past the max
    budget.record(False)
    assert budget.try_retry()
    budget.record(False)
    assert budget.tokens == 2 and not budget.try_retry()  # at the threshold: no retries
    budget.record(True)
    assert budget.tokens == pytest.approx(3.6) and budget.try_retry()


def test_token_budget_never_below_zero() -> None:
    budget = TokenBudget(2.0, 0.1)
    for _ in range(10):
        budget.record(False)
    assert budget.tokens == 0


def test_concurrency_budget_minimum_when_idle() -> None:
    budget = ConcurrencyBudget(0.2, 3)
    assert [budget.try_retry() for _ in range(4)] == [True, True, True, False]


@settings(max_examples=200, deadline=None)
@given(
    percent=st.floats(0.01, 1.0),
    min_retries=st.integers(0, 5),
    ops=st.lists(st.sampled_from(["start", "end", "retry", "end_retry"]), max_size=200),
)
def test_concurrency_budget_never_admits_past_its_bound(
    percent: float, min_retries: int, ops: list[str]
) -> None:
    budget = ConcurrencyBudget(percent, min_retries)
    for op in ops:
        if op == "start":
            budget.start_request()
        elif op == "end" and budget.requests > budget.retries:
            budget.end_request()
        elif op == "retry" and budget.requests:
            if budget.try_retry():
                # Envoy: count < max(min, (uint64) percent * active), so after the retry
                # starts, retries in flight <= max(min_retries, percent * requests).
                assert budget.retries <= max(min_retries, percent * budget.requests) + 1e-9
        elif op == "end_retry" and budget.retries:
            budget.end_retry()
        assert budget.retries >= 0 and budget.requests >= 0


def test_concurrency_budget_envoy_floor() -> None:
    # 16 requests in flight at 20 %: 3.2 -> Envoy allows 3 retries in flight, not 4
    budget = ConcurrencyBudget(0.2, 0)
    for _ in range(16):
        budget.start_request()
    admitted = 0
    while budget.try_retry():
        admitted += 1
    assert admitted == 3


async def test_retry_budget_through_retry_under_load_and_cancellation() -> None:
    budget = ar.RetryBudget.concurrency(percent=0.2, min_retries=1)
    peak = {"retries": 0}

    async def flaky() -> None:
        peak["retries"] = max(peak["retries"], budget.ledger.retries)
        await asyncio.sleep(0.1)
        raise RuntimeError("down")

    policy = ar.Retry(attempts=4, backoff=ar.constant(0.05), budget=budget)
    tasks = [asyncio.create_task(policy.call(flaky)) for _ in range(20)]
    await asyncio.sleep(0.12)
    tasks[0].cancel()
    tasks[1].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert sum(isinstance(r, asyncio.CancelledError) for r in results) == 2
    assert peak["retries"] <= 4  # 20 % of 20
    assert (budget.ledger.requests, budget.ledger.retries) == (0, 0)
    assert budget.exhausted > 0

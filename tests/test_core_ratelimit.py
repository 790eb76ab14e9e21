"""Pure algorithm tests: exact decisions from (state, now, cost), and bounds as properties."""

from __future__ import annotations

import copy
import itertools
import math
from typing import Any

import pytest
from helpers import burst
from hypothesis import given, settings
from hypothesis import strategies as st

from aioresilience._core.fixed_window import FixedWindowAlgorithm
from aioresilience._core.gcra import GCRAAlgorithm
from aioresilience._core.leaky_bucket import LeakyBucketMeter, LeakyBucketShaper
from aioresilience._core.ratelimit import decide
from aioresilience._core.sliding_window_counter import SlidingWindowCounterAlgorithm
from aioresilience._core.sliding_window_log import SlidingWindowLogAlgorithm
from aioresilience._core.token_bucket import TokenBucketAlgorithm

ALGORITHMS = {
    "token_bucket": lambda: TokenBucketAlgorithm(capacity=5, refill_rate=2.0),
    "gcra": lambda: GCRAAlgorithm(interval=0.5, burst=5),
    "leaky_meter": lambda: LeakyBucketMeter(capacity=5, leak_rate=2.0),
    "fixed_window": lambda: FixedWindowAlgorithm(limit=5, window=10.0),
    "sliding_log": lambda: SlidingWindowLogAlgorithm(limit=5, window=10.0),
    "sliding_counter": lambda: SlidingWindowCounterAlgorithm(limit=5, window=10.0),
}


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@pytest.mark.parametrize("now", [0.0, 3.0, 1e6 + 0.3, 1.7e9 + 0.123])
def test_burst_of_b_plus_3_admits_exactly_b(name: str, now: float) -> None:
    admitted, _ = burst(ALGORITHMS[name](), now, 8)
    assert admitted == [True] * 5 + [False] * 3


def test_token_bucket_refills_at_rate() -> None:
    bucket = TokenBucketAlgorithm(capacity=5, refill_rate=2.0)
    _, state = burst(bucket, 100.0, 5)
    _, at, ok = bucket.reserve(state, 100.0, 1, 0.0)
    assert not ok
    assert at == pytest.approx(100.5)
    assert bucket.inspect(state, 101.0)[0] == 2  # 1 s at 2 tokens/s
    assert bucket.inspect(state, 102.5)[0] == 5  # full, never above capacity
    assert bucket.inspect(state, 1000.0) == (5, 0.0)
    _, _, ok = bucket.reserve(state, 100.5, 1, 0.0)
    assert ok


def test_token_bucket_fractional_refill_and_cost() -> None:
    bucket = TokenBucketAlgorithm(capacity=10, refill_rate=4.0)
    _, state = burst(bucket, 0.0, 10)
    _, at, ok = bucket.reserve(state, 0.0, 3, 0.0)
    assert not ok
    assert at == pytest.approx(0.75)  # 3 tokens at 4/s
    assert bucket.reserve(state, 0.75, 3, 0.0)[2]
    assert not bucket.reserve(state, 0.74, 3, 0.0)[2]


def test_reservation_goes_negative_and_cancel_gives_back() -> None:
    bucket = TokenBucketAlgorithm(capacity=2, refill_rate=1.0)
    _, state = burst(bucket, 0.0, 2)
    state, at1, ok = bucket.reserve(state, 0.0, 1, 10.0)
    assert ok and at1 == pytest.approx(1.0)
    state, at2, ok = bucket.reserve(state, 0.0, 1, 10.0)
    assert ok and at2 == pytest.approx(2.0)
    _, at3, ok = bucket.reserve(state, 0.0, 1, 2.5)
    assert not ok and at3 == pytest.approx(3.0)  # rejected up front: wait 3 > 2.5
    state = bucket.cancel(state, 0.5, 1, at2)
    _, at4, ok = bucket.reserve(state, 0.5, 1, 10.0)
    assert ok and at4 == pytest.approx(2.0)


def test_gcra_reference_semantics() -> None:
    # L=10 per P=1s, B=2: T=0.1, tau=0.2
    gcra = GCRAAlgorithm(interval=0.1, burst=2)
    state, at, ok = gcra.reserve(None, 5.0, 1, 0.0)
    assert ok and state == 5_100_000_000  # the TAT, in integer nanoseconds
    assert gcra.inspect(state, 5.0) == (1, pytest.approx(0.1))
    state, _, ok = gcra.reserve(state, 5.0, 1, 0.0)
    assert ok and state == 5_200_000_000
    same, at, ok = gcra.reserve(state, 5.0, 1, 0.0)
    assert not ok and at == pytest.approx(5.1) and same == state
    assert gcra.fresh_at(state) == pytest.approx(5.2)
    assert gcra.max_cost == 2


@pytest.mark.parametrize("rate", [3.0, 3 / 7, 7e8, 3e8, 1e9, 10.0, 1e6])
def test_gcra_interval_in_ns_never_runs_faster_than_the_rate(rate: float) -> None:
    """The interval was rounded to the nearest ns: 7e8/s ran at 1e9/s (1 ns), 3/s at
    333333333 ns admitted 4 within one second."""
    gcra = GCRAAlgorithm(interval=1.0 / rate, burst=1)
    interval_ns = gcra._step / gcra._per_second * 1e9  # its unit: 1/scale ns
    assert interval_ns >= 1e9 / rate * (1 - 1e-15)
    assert interval_ns < 1e9 / rate + 1  # and no slower than the next whole ns
    span = min(1.0, 1000 / rate)  # [0, span) holds at most ceil(span * rate) at this rate
    state, now, admitted = None, 0.0, 0
    while now < span:  # back to back, each at its retry-after
        state, at, ok = gcra.reserve(state, now, 1, 0.0)
        if ok:
            admitted += 1
        else:
            now = at
    assert admitted <= math.ceil(span * rate - 1e-9)


@pytest.mark.parametrize("rate", [999_999_999.0, 624_974_265.0, 123_456_789.0, 677_473_473.0])
def test_gcra_interval_off_every_small_fraction_loses_at_most_a_thousandth_ns(rate: float) -> None:
    """An interval whose nearest fraction of denominator <= 1000 lies below it was rounded up
    at that fraction's own denominator: 999999999/s (1.000000001 ns, nearest 1/1) stepped 2
    ns and ran at 5e8/s, 624974265/s (nearest 8/5 ns) at 5.6e8/s."""
    gcra = GCRAAlgorithm(interval=1.0 / rate, burst=1)
    interval_ns = gcra._step / gcra._per_second * 1e9
    assert 1e9 / rate * (1 - 1e-15) <= interval_ns <= 1e9 / rate + 1e-3


def test_leaky_shaper_spaces_output_and_bounds_the_queue() -> None:
    shaper = LeakyBucketShaper(capacity=3, leak_rate=10.0)
    state = None
    times = []
    for _ in range(4):
        state, at, ok = shaper.reserve(state, 0.0, 1, math.inf)
        assert ok
        times.append(at)
    assert times == pytest.approx([0.0, 0.1, 0.2, 0.3])
    _, retry_at, ok = shaper.reserve(state, 0.0, 1, math.inf)
    assert not ok  # three queued ahead: the queue is full whatever the caller would wait
    assert retry_at == pytest.approx(0.1)  # one leaves at 0.1, making room


def test_fixed_window_resets_at_boundary_and_allows_boundary_burst() -> None:
    window = FixedWindowAlgorithm(limit=3, window=10.0)
    _, state = burst(window, 9.0, 4)
    assert window.inspect(state, 9.5) == (0, pytest.approx(0.5))
    _, at, ok = window.reserve(state, 9.9, 1, 0.0)
    assert not ok and at == pytest.approx(10.0)
    admitted = []
    for _ in range(4):
        new, _, ok = window.reserve(state, 10.0, 1, 0.0)
        if ok:
            state = new
        admitted.append(ok)
    assert admitted == [True, True, True, False]  # 6 within [9, 10]: the known 2x burst
    assert len(state) == 2  # the old window was dropped


def test_fixed_window_reservations_fill_future_windows_in_order() -> None:
    window = FixedWindowAlgorithm(limit=2, window=1.0)
    _, state = burst(window, 0.0, 2)
    ats = []
    for _ in range(5):
        state, at, ok = window.reserve(state, 0.0, 1, 10.0)
        assert ok
        ats.append(at)
    assert ats == [1.0, 1.0, 2.0, 2.0, 3.0]
    state = window.cancel(state, 0.2, 1, 2.0)
    assert state == (0, 2, 2, 1, 1)


def test_sliding_log_is_exact_and_records_admitted_only() -> None:
    log = SlidingWindowLogAlgorithm(limit=3, window=10.0)
    state = None
    for t in (0.0, 4.0, 4.0):
        state, _, ok = log.reserve(state, t, 1, 0.0)
        assert ok
    assert list(state) == [0.0, 4.0, 4.0]  # equal timestamps kept apart
    for t in (5.0, 9.999):
        state, at, ok = log.reserve(state, t, 1, 0.0)
        assert not ok and at == 10.0
    assert list(state) == [0.0, 4.0, 4.0]  # refusals are not recorded
    state, _, ok = log.reserve(state, 10.0, 1, 0.0)
    assert ok and list(state) == [4.0, 4.0, 10.0]
    _, at, ok = log.reserve(state, 10.0, 2, 0.0)
    assert not ok and at == 14.0  # both 4.0 entries must expire for a cost of 2


def test_sliding_windows_state_the_next_unit_as_their_reset() -> None:
    # The quota comes back unit by unit: the reset is when the next one fits, behind any
    # reservation already handed out.
    log = SlidingWindowLogAlgorithm(limit=2, window=10.0)
    state, _, _ = log.reserve(None, 0.0, 1, 0.0)
    state, _, _ = log.reserve(state, 4.0, 1, 0.0)
    assert log.inspect(state, 5.0) == (0, 5.0)  # the entry of 0.0 leaves at 10, not 4.0's
    state, at, ok = log.reserve(state, 5.0, 1, math.inf)
    assert ok and at == 10.0
    assert log.inspect(state, 5.0) == (0, 9.0)  # a unit more: when 4.0's entry leaves
    counter = SlidingWindowCounterAlgorithm(limit=2, window=10.0)
    state, _, _ = counter.reserve(None, 1.0, 2, 0.0)
    assert counter.inspect(state, 1.0) == (0, 14.0)  # at 15 the 2 of [0, 10) weigh 1
    state, at, ok = counter.reserve(state, 1.0, 1, math.inf)
    assert ok and at == 15.0
    assert counter.inspect(state, 1.0) == (0, 19.0)  # behind it: when [10, 20) ends
    assert counter.inspect(state, 100.0) == (2, 0.0)


def test_sliding_counter_never_states_more_than_admit_lets_in() -> None:
    """At the very end of a window, the previous window's weight (~1e-12) is below the
    estimate's tolerance: inspect stated the whole limit (2), and admit refused a cost of 2
    and a second cost of 1."""
    counter = SlidingWindowCounterAlgorithm(limit=2, window=1.0)
    state, _, _ = counter.reserve(None, 0.0, 1, 0.0)
    now = 2.0 - 1e-12
    remaining, _ = counter.inspect(state, now)
    ones = 0
    while (admitted := counter.admit(state, now, 1)) is not None:
        state, ones = admitted, ones + 1
    assert remaining == ones == 1


def test_sliding_counter_weights_previous_window() -> None:
    counter = SlidingWindowCounterAlgorithm(limit=10, window=60.0)
    state = None
    for _ in range(10):
        state, _, ok = counter.reserve(state, 59.0, 1, 0.0)
        assert ok
    # At t=75 (25 % into the window) the estimate is 10 * 0.75 = 7.5: room for 2.
    admitted = []
    for _ in range(4):
        new, at, ok = counter.reserve(state, 75.0, 1, 0.0)
        if ok:
            state = new
        admitted.append(ok)
    assert admitted == [True, True, False, False]
    # 10 prev + 2 curr + 1 needs prev * (1 - f) <= 7 -> f >= 0.3 -> t = 78 s
    assert at == pytest.approx(78.0)
    assert counter.reserve(state, 78.0, 1, 0.0)[2]


# -- properties: no algorithm admits more than its bound over any window ---------------------

events = st.lists(
    st.tuples(
        st.floats(min_value=0.0, max_value=3.0, allow_nan=False),  # time step
        st.integers(min_value=1, max_value=3),  # cost
        st.sampled_from([0.0, 0.0, 0.5, 5.0]),  # max_wait
        st.booleans(),  # cancel this reservation later (if it waits)
    ),
    max_size=80,
)
starts = st.sampled_from([0.0, 1000.0, 1e6 + 0.37, 1.7e9 + 0.123])  # incl. large clock readings


def admitted_schedule(
    algorithm: Any, steps: list[tuple[float, int, float, bool]], start: float = 1000.0
) -> list[Any]:
    """Run a sequence of decisions as the front-end does; return the admitted (time, cost).

    A reservation flagged for cancellation is cancelled at the next step if still pending,
    the front-end's way: the reservations behind it are unwound newest first and made again.
    """
    state = None
    now = start
    admitted: dict[int, tuple[float, int]] = {}
    pending: list[list[Any]] = []  # [index, at, cost, cancel?] in arrival order
    for i, (step, cost, max_wait, cancel) in enumerate(steps):
        now += step
        pending = [p for p in pending if p[1] > now]  # the ones due have run
        for victim in [p for p in pending if p[3]]:
            behind = [p for p in pending if p[0] > victim[0]]
            for p in reversed([victim, *behind]):
                state = algorithm.cancel(state, now, p[2], p[1])
            pending.remove(victim)
            del admitted[victim[0]]
            for p in behind:
                state, p[1], ok = algorithm.reserve(state, now, p[2], math.inf)
                assert ok
                assert p[1] <= admitted[p[0]][0] + 1e-9  # never later than before
                admitted[p[0]] = (max(p[1], now), p[2])
            pending = [p for p in pending if p[1] > now]
        cost = min(cost, algorithm.max_cost)
        state, at, ok = algorithm.reserve(state, now, cost, max_wait)
        if not ok:
            assert at > now
            continue
        assert at - now <= max_wait + 1e-9
        admitted[i] = (max(at, now), cost)
        if at > now:
            pending.append([i, at, cost, cancel])
    return sorted(admitted.values())


def window_totals(schedule: list[Any], span: float) -> int:
    """Largest admitted cost within any half-open span (t - span, t]."""
    best = 0
    for t, _ in schedule:
        total = sum(c for u, c in schedule if u + span > t and u <= t)
        best = max(best, total)
    return best


@settings(max_examples=150, deadline=None)
@given(events, starts)
def test_token_bucket_never_exceeds_capacity_plus_refill(steps: Any, start: float) -> None:
    algorithm = TokenBucketAlgorithm(capacity=4, refill_rate=2.0)
    schedule = admitted_schedule(algorithm, steps, start)
    for i, (t0, _) in enumerate(schedule):
        total = 0
        for t1, c in schedule[i:]:
            total += c
            assert total <= 4 + (t1 - t0) * 2.0 + 1e-6


@settings(max_examples=150, deadline=None)
@given(events, starts)
def test_sliding_log_never_exceeds_limit_in_any_window(steps: Any, start: float) -> None:
    algorithm = SlidingWindowLogAlgorithm(limit=5, window=2.0)
    assert window_totals(admitted_schedule(algorithm, steps, start), 2.0) <= 5


@settings(max_examples=150, deadline=None)
@given(events, starts)
def test_fixed_window_bounds(steps: Any, start: float) -> None:
    algorithm = FixedWindowAlgorithm(limit=5, window=2.0)
    schedule = admitted_schedule(algorithm, steps, start)
    per_window: dict[int, int] = {}
    for t, c in schedule:
        index = int(t // 2.0)  # the algorithms' own window definition (_core/windowing)
        per_window[index] = per_window.get(index, 0) + c
    assert max(per_window.values(), default=0) <= 5
    assert window_totals(schedule, 2.0) <= 10


@settings(max_examples=150, deadline=None)
@given(events, starts)
def test_sliding_counter_bounds(steps: Any, start: float) -> None:
    algorithm = SlidingWindowCounterAlgorithm(limit=5, window=2.0)
    schedule = admitted_schedule(algorithm, steps, start)
    per_window: dict[int, int] = {}
    for t, c in schedule:
        index = int(t // 2.0)  # the algorithms' own window definition (_core/windowing)
        per_window[index] = per_window.get(index, 0) + c
    assert max(per_window.values(), default=0) <= 5
    assert window_totals(schedule, 2.0) <= 10


@settings(max_examples=150, deadline=None)
@given(events)
def test_shaper_output_is_evenly_spaced(steps: Any) -> None:
    algorithm = LeakyBucketShaper(capacity=3, leak_rate=4.0)
    # A request of cost c is admitted when its first unit leaves: its units leave at
    # at, ..., at + (c-1)T. Every unit leaves at least one interval after the previous one.
    units = sorted(
        at + k * 0.25 for at, cost in admitted_schedule(algorithm, steps) for k in range(cost)
    )
    for earlier, later in itertools.pairwise(units):
        assert later - earlier >= 0.25 - 1e-6


@settings(max_examples=150, deadline=None)
@given(events, starts, st.sampled_from([*sorted(ALGORITHMS), "leaky_shaper"]))
def test_admit_is_reserve_at_once(steps: Any, start: float, name: str) -> None:
    """``admit`` (the front-ends' non-waiting hit path) decides as ``reserve`` with
    ``max_wait=0`` on every state, reservations pending included: the same new state when
    that admits at once, None when it does not."""
    make = ALGORITHMS.get(name, lambda: LeakyBucketShaper(capacity=5, leak_rate=2.0))
    algorithm = make()
    state: Any = None
    now = start
    for step, cost, max_wait, _ in steps:
        now += step
        cost = min(cost, algorithm.max_cost)
        expected, at, ok = algorithm.reserve(copy.deepcopy(state), now, cost, 0.0)
        got = algorithm.admit(copy.deepcopy(state), now, cost)
        if ok and at <= now:
            assert got == expected
        else:
            assert got is None
        state = algorithm.reserve(state, now, cost, max_wait)[0]  # waits leave some pending


def _admitted_now(algorithm: Any, state: Any, now: float) -> int:
    """How many units ``admit`` lets in one by one at ``now`` (up to the capacity, + 1)."""
    count = 0
    while count <= algorithm.max_cost:
        state = algorithm.admit(state, now, 1)
        if state is None:
            break
        count += 1
    return count


def _stated_is_admitted(algorithm: Any, state: Any, now: float) -> None:
    remaining = algorithm.inspect(state, now)[0]
    assert _admitted_now(algorithm, copy.deepcopy(state), now) >= remaining, (state, now)


@settings(max_examples=150, deadline=None)
@given(events, starts, st.sampled_from(sorted(ALGORITHMS)))
def test_the_remaining_stated_is_admitted_at_once(steps: Any, start: float, name: str) -> None:
    """What ``inspect`` states as remaining (RateLimit's ``r``, ``Decision.remaining``) is
    admitted at the same instant, one by one: a server never states r=1 and then refuses."""
    algorithm = ALGORITHMS[name]()
    state: Any = None
    now = start
    for step, cost, _, _ in steps:
        now += step
        state = algorithm.reserve(state, now, min(cost, algorithm.max_cost), 0.0)[0]
        _stated_is_admitted(algorithm, state, now)


@pytest.mark.parametrize("name", sorted(ALGORITHMS))
@pytest.mark.parametrize(("limit", "window"), [(3, 1.0), (7, 3.0), (10, 0.1)])
def test_the_remaining_stated_at_thirds_and_sevenths_is_admitted(
    name: str, limit: int, window: float
) -> None:
    # Instants such as 2/3 and 1 + 2/3 are where an estimate's rounding and admission's own
    # test part by an ulp (the sliding counter stated r=1 at 1 + 2/3, then refused).
    algorithms = {
        "token_bucket": lambda: TokenBucketAlgorithm(capacity=limit, refill_rate=limit / window),
        "gcra": lambda: GCRAAlgorithm(interval=window / limit, burst=limit),
        "leaky_meter": lambda: LeakyBucketMeter(capacity=limit, leak_rate=limit / window),
        "fixed_window": lambda: FixedWindowAlgorithm(limit=limit, window=window),
        "sliding_log": lambda: SlidingWindowLogAlgorithm(limit=limit, window=window),
        "sliding_counter": lambda: SlidingWindowCounterAlgorithm(limit=limit, window=window),
    }
    for denominator in (3, 7):
        for k in range(1, 3 * denominator):
            algorithm = algorithms[name]()
            first = k / denominator * window
            state = None
            for _ in range(limit):  # the whole quota at one instant
                state = algorithm.reserve(state, first, 1, 0.0)[0]
            for later in (first + window, first + window / 3, first + 2 * window):
                taken = state
                for _ in range(limit):  # one by one, stating the rest each time
                    _stated_is_admitted(algorithm, taken, later)
                    taken, _, ok = algorithm.reserve(taken, later, 1, 0.0)
                    if not ok:
                        break


def test_decide_reports_headers() -> None:
    bucket = TokenBucketAlgorithm(capacity=3, refill_rate=1.0)
    state, d = decide(bucket, None, 0.0, 1)
    assert d.allowed and d.remaining == 2 and d.retry_after == 0.0
    assert d.reset_after == pytest.approx(1.0) and d.limit == 3
    state, d = decide(bucket, state, 0.0, 2)
    assert d and d.remaining == 0
    state, d = decide(bucket, state, 0.0, 1)
    assert not d and d.retry_after == pytest.approx(1.0) and d.reset_after == pytest.approx(3.0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=1.5, allow_nan=False),
            st.integers(min_value=1, max_value=3),
        ),
        max_size=120,
    )
)
def test_sliding_counter_decides_by_the_reference_estimate(steps: Any) -> None:
    """prev * (W - (now - start)) / W + curr + n <= limit, from counts kept independently."""
    algorithm = SlidingWindowCounterAlgorithm(limit=5, window=2.0)
    counts: dict[int, int] = {}
    state = None
    now = 1000.0
    for step, cost in steps:
        now += step
        index = int(now // 2.0)
        elapsed = now - index * 2.0
        estimate = counts.get(index - 1, 0) * (2.0 - elapsed) / 2.0 + counts.get(index, 0)
        state, _, ok = algorithm.reserve(state, now, cost, 0.0)
        if abs(estimate + cost - 5) > 1e-9:  # away from float ties
            assert ok == (estimate + cost <= 5)
        if ok:
            counts[index] = counts.get(index, 0) + cost

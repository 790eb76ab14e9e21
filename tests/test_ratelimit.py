"""Rate limiter front-ends in virtual time: waiting, FIFO, cancellation, keys, ways in."""

from __future__ import annotations

import asyncio
import gc
import logging
import math
from typing import Any

import pytest
from helpers import burst
from hypothesis import given, settings
from hypothesis import strategies as st

import aioresilience as ar
from aioresilience import (
    GCRA,
    FixedWindowCounter,
    LeakyBucket,
    RateLimited,
    RateLimiter,
    Rejected,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from aioresilience._core.fixed_window import FixedWindowAlgorithm
from aioresilience._core.ratelimit import Decision
from aioresilience._core.ratelimit import decide as core_decide
from aioresilience._core.token_bucket import TokenBucketAlgorithm
from aioresilience.stores import MemoryStore
from aioresilience.testing import ManualClock, run


def make(kind: str, **options: Any) -> RateLimiter[Any]:
    """Five units per second (burst 5) in each algorithm's vocabulary."""
    factories: dict[str, Any] = {
        "token_bucket": lambda: TokenBucket(5, 5.0, **options),
        "leaky_meter": lambda: LeakyBucket(5, 5.0, **options),
        "gcra": lambda: GCRA(5, 1.0, burst=5, **options),
        "fixed_window": lambda: FixedWindowCounter(5, 1.0, **options),
        "sliding_log": lambda: SlidingWindowLog(5, 1.0, **options),
        "sliding_counter": lambda: SlidingWindowCounter(5, 1.0, **options),
    }
    return factories[kind]()  # type: ignore[no-any-return]


KINDS = ["token_bucket", "leaky_meter", "gcra", "fixed_window", "sliding_log", "sliding_counter"]


@pytest.mark.parametrize("kind", KINDS)
async def test_burst_then_refill(kind: str) -> None:
    limiter = make(kind)
    assert [limiter.try_acquire() for _ in range(8)] == [True] * 5 + [False] * 3
    await asyncio.sleep(1.0)  # a whole window, or five tokens, later
    if kind == "sliding_counter":
        # At the boundary the previous window still weighs 100 %: 5 * (1 - 0) = 5, no room.
        assert not limiter.try_acquire()
        await asyncio.sleep(0.2)  # 5 * 0.8 = 4: room for one
    assert limiter.try_acquire()
    stats = limiter.statistics()
    assert stats.admitted == 6


@pytest.mark.parametrize("kind", KINDS)
async def test_acquire_waits_for_capacity_in_order(kind: str) -> None:
    loop = asyncio.get_running_loop()
    limiter = make(kind)
    order: list[tuple[int, float]] = []

    async def client(i: int) -> None:
        await limiter.acquire()
        order.append((i, loop.time()))

    await asyncio.gather(*(client(i) for i in range(12)))
    assert [i for i, _ in order] == list(range(12))  # FIFO
    times = [t for _, t in order]
    assert times[:5] == [0.0] * 5
    # 12 at 5/s with a burst of 5; the counter's estimate makes it wait a little longer.
    assert times[-1] <= (3.0 if kind == "sliding_counter" else 2.0) + 1e-9
    assert limiter.statistics().waited == 7


@pytest.mark.parametrize("kind", KINDS)
async def test_wait_longer_than_timeout_is_refused_up_front(kind: str) -> None:
    loop = asyncio.get_running_loop()
    limiter = make(kind)
    for _ in range(5):
        await limiter.acquire()
    with pytest.raises(RateLimited) as caught:
        await limiter.acquire(timeout=0.01)
    assert loop.time() == 0.0  # refused at once, not after waiting
    assert isinstance(caught.value, Rejected)
    assert 0 < caught.value.retry_after <= (1.2 if kind == "sliding_counter" else 1.0)
    # Nothing was consumed by the refusal: the next capacity is still there for others.
    await asyncio.sleep(caught.value.retry_after)
    assert limiter.try_acquire()


@pytest.mark.parametrize(
    ("make", "interval"),
    [
        (lambda: ar.TokenBucket(1, 7.0), 1 / 7),
        (lambda: ar.TokenBucket(1, 3.0), 1 / 3),
        (lambda: ar.GCRA(3, 1.0), 1 / 3),
        (lambda: ar.LeakyBucket(1, 7.0), 1 / 7),
        (lambda: ar.LeakyBucket(2, 3.0, mode="shaper"), 1 / 3),
    ],
)
async def test_a_timeout_of_exactly_the_wait_is_enough(make: Any, interval: float) -> None:
    """The interval is kept in whole nanoseconds (1/7 s as 142857143 ns): a wait of one
    interval was judged longer than timeout=1/7 and refused up front."""
    limiter = make()
    assert limiter.try_acquire()
    loop = asyncio.get_running_loop()
    started = loop.time()
    await limiter.acquire(timeout=interval)
    assert loop.time() - started == pytest.approx(interval, abs=2e-9)


@pytest.mark.parametrize(
    ("make", "full", "refill"),
    [
        (lambda: ar.TokenBucket(3, 3.0), 3, 1.0),
        (lambda: ar.TokenBucket(10, 3.0), 10, 10 / 3),
        (lambda: ar.TokenBucket(7, 0.7), 7, 10.0),
        (lambda: ar.TokenBucket(5, 7e8), 5, 5 / 7e8),
        (lambda: ar.GCRA(3, 1.0, burst=3), 3, 1.0),
        (lambda: ar.LeakyBucket(6, 9.0), 6, 6 / 9),
    ],
)
async def test_a_drained_bucket_is_full_again_after_exactly_its_refill_time(
    make: Any, full: int, refill: float
) -> None:
    """The interval was kept in whole ns, rounded up (3/s as 333333334 ns), so a bucket
    drained at once and left capacity/rate seconds was short by a token (2 of 3 admitted).
    Its unit is 1/3 ns now, and 1/3 s is exactly 1e9 of them; the rate is still never
    exceeded (the bucket holds no more than ``full`` however long it waits)."""
    limiter = make()
    assert sum(limiter.try_acquire() for _ in range(full + 1)) == full
    await asyncio.sleep(refill)
    assert sum(limiter.try_acquire() for _ in range(full + 1)) == full
    await asyncio.sleep(refill * 1000)
    assert sum(limiter.try_acquire() for _ in range(full + 1)) == full


@pytest.mark.parametrize("kind", KINDS)
async def test_cancelled_waiter_gives_its_reservation_back(kind: str) -> None:
    loop = asyncio.get_running_loop()
    limiter = make(kind)
    for _ in range(5):
        limiter.try_acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)  # waiter now holds a reservation and sleeps
    assert limiter.statistics().waiting == 1
    due = limiter._local._heap[0][0]
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    stats = limiter.statistics()
    assert (stats.waiting, stats.cancelled, stats.admitted) == (0, 1, 5)
    # The reservation is back: the next caller gets exactly the slot the waiter had.
    await limiter.acquire()
    assert loop.time() == due


@pytest.mark.parametrize("kind", KINDS)
async def test_cancelled_after_wakeup_before_running_gives_back(kind: str, virtual_clock) -> None:  # type: ignore[no-untyped-def]
    """Cancellation at the other await point: the wake-up fired, the task has not resumed."""
    limiter = make(kind)
    for _ in range(5):
        limiter.try_acquire()
    waiter = asyncio.create_task(limiter.acquire())
    await asyncio.sleep(0)
    due, _, entry = limiter._local._heap[0]
    virtual_clock.advance(due - virtual_clock.time())
    remaining_at_due = limiter.remaining()
    limiter._local._wake(virtual_clock)  # the wake-up fires ...
    assert entry.future.done()
    waiter.cancel()  # ... and the task is cancelled before it resumes
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert limiter.statistics().admitted == 5
    assert limiter.remaining() == remaining_at_due + 1


async def test_cancelling_a_waiter_does_not_disturb_others() -> None:
    limiter = TokenBucket(1, 1.0)
    limiter.try_acquire()
    done: list[int] = []

    async def client(i: int) -> None:
        await limiter.acquire()
        done.append(i)

    tasks = [asyncio.create_task(client(i)) for i in range(5)]
    await asyncio.sleep(0)
    tasks[1].cancel()
    tasks[3].cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    assert done == [0, 2, 4]
    # The cancelled slots went to the waiters behind them: 3 waits of 1 s, not 5.
    assert asyncio.get_running_loop().time() == pytest.approx(3.0)


async def test_thousand_concurrent_waiters_fifo_and_exact_rate() -> None:
    loop = asyncio.get_running_loop()
    limiter = GCRA(100, 1.0)  # 100/s evenly spaced
    finished: list[tuple[int, float]] = []

    async def client(i: int) -> None:
        await limiter.acquire()
        finished.append((i, loop.time()))

    await asyncio.gather(*(client(i) for i in range(1000)))
    assert [i for i, _ in finished] == list(range(1000))
    for i, t in finished:
        assert t == pytest.approx(i * 0.01, abs=1e-9)
    assert limiter._local._timer is None and not limiter._local._heap and not limiter._local._queues


async def test_try_acquire_never_jumps_the_queue() -> None:
    limiter = FixedWindowCounter(2, 1.0)
    limiter.try_acquire()
    limiter.try_acquire()
    waiter = asyncio.create_task(limiter.acquire(cost=2))
    await asyncio.sleep(0)
    await asyncio.sleep(0.5)
    assert not limiter.try_acquire()  # the next window belongs to the waiter
    await waiter
    assert asyncio.get_running_loop().time() == 1.0


async def test_check_never_jumps_the_queue() -> None:
    limiter = FixedWindowCounter(2, 1.0)
    assert limiter.check() and limiter.check(1)  # the second one a hit of the key's state
    waiter = asyncio.create_task(limiter.acquire(cost=2))
    await asyncio.sleep(0.5)
    refused = limiter.check()  # the next window belongs to the waiter
    assert not refused and refused.retry_after == pytest.approx(1.5)
    await waiter
    assert asyncio.get_running_loop().time() == 1.0


KINDS = ("token_bucket", "leaky_meter", "gcra", "fixed_window", "sliding_log", "sliding_counter")


@pytest.mark.parametrize("kind", KINDS)
@settings(max_examples=60, deadline=None)
@given(
    steps=st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.0, 0.013, 0.07, 0.31, 1.7, 25.0]),
            st.sampled_from(["a", "b", None]),
            st.integers(1, 3),
            st.sampled_from(["check", "check", "try_acquire"]),
        ),
        max_size=40,
    )
)
def test_check_decides_as_the_core_on_every_path(
    kind: str, steps: list[tuple[float, str | None, int, str]]
) -> None:
    """check() takes an inlined path for a key whose state is in hand (the web adapters' hot
    path) and the state's decide() for the rest (new, forgotten or rotated keys, refusals):
    every decision, whichever path made it, is the one the core's ``decide`` makes on the
    same state at the same time. Idle gaps (25 s) make keys fresh and rotate the store."""
    clock = ManualClock()
    limiter = make(kind, clock=clock, max_keys=2)
    algorithm = limiter._algorithm
    states: dict[str | None, Any] = {}
    for gap, key, cost, way in steps:
        clock.advance(gap)
        now = clock.time()
        state, expected = core_decide(algorithm, states.get(key), now, cost)
        if expected.allowed:
            states[key] = state
        if way == "check":
            assert limiter.check(cost, key=key) == expected
        else:
            assert limiter.try_acquire(cost, key=key) is expected.allowed
    stats = limiter.statistics()
    assert stats.admitted + stats.rejected == len(steps)


def test_decision_is_an_immutable_value() -> None:
    decision = TokenBucket(2, 1.0).check()
    assert decision and decision.at is not None  # the admission's stamp: what refund() needs
    assert decision == Decision(True, 2, 1, 0.0, 1.0, decision.policy, decision.at)
    assert not Decision(False, 2, 0, 0.5, 1.0)  # truthy exactly when allowed
    with pytest.raises(AttributeError):
        decision.remaining = 5  # type: ignore[misc]
    assert hash(decision) == hash(Decision(*decision))


async def test_cost_that_can_never_fit_raises_at_once() -> None:
    limiter = TokenBucket(3, 1.0)
    with pytest.raises(ValueError, match="cost=4 can never be admitted"):
        await limiter.acquire(4)
    with pytest.raises(ValueError, match="cost=4"):
        limiter.try_acquire(4)
    with pytest.raises(ValueError, match="cost must be >= 1, got 0"):
        limiter.try_acquire(0)
    with pytest.raises(TypeError, match="cost must be an int"):
        await limiter.acquire(1.5)  # type: ignore[arg-type]
    assert limiter.statistics().admitted == 0


async def test_leaky_bucket_shaper_smooths_and_rejects_when_full() -> None:
    loop = asyncio.get_running_loop()
    shaper = LeakyBucket(3, 10.0, mode="shaper")
    times: list[float] = []

    async def client() -> None:
        await shaper.acquire()
        times.append(loop.time())

    tasks = [asyncio.create_task(client()) for _ in range(4)]
    await asyncio.sleep(0)
    with pytest.raises(RateLimited) as caught:
        await shaper.acquire(timeout=100)  # queue of 3 is full
    assert caught.value.retry_after == pytest.approx(0.1)
    await asyncio.gather(*tasks)
    assert times == pytest.approx([0.0, 0.1, 0.2, 0.3])


async def test_keys_are_independent() -> None:
    limiter = TokenBucket(2, 1.0)
    assert limiter.try_acquire(key="alice")
    assert limiter.try_acquire(key="alice")
    assert not limiter.try_acquire(key="alice")
    assert limiter.try_acquire(key="bob")
    assert limiter.try_acquire()  # the unkeyed limit is a key of its own
    assert limiter.statistics().keys == 3


async def test_idle_keys_are_reclaimed_without_losing_state() -> None:
    limiter = TokenBucket(2, 1.0)  # horizon 2 s: any key is full again 2 s after last use
    for i in range(100):
        limiter.try_acquire(key=i)
    assert len(limiter.store) == 100
    await asyncio.sleep(2.5)
    limiter.try_acquire(key="new")
    await asyncio.sleep(2.5)
    limiter.try_acquire(key="newer")
    assert len(limiter.store) == 2  # the 100 idle keys are gone
    assert limiter.remaining(key=0) == 2  # and forgetting them lost nothing


async def test_live_keys_are_capped() -> None:
    limiter = GCRA(1, 60.0, max_keys=1000)
    for i in range(100_000):
        limiter.try_acquire(key=f"attacker-{i}")
        assert len(limiter.store) <= 2000  # two generations of max_keys
    assert limiter.try_acquire(key="victim")


async def test_waiting_key_survives_rotations() -> None:
    limiter = GCRA(1, 10.0, max_keys=4)
    assert limiter.try_acquire(key="slow")
    waiter = asyncio.create_task(limiter.acquire(key="slow"))
    await asyncio.sleep(0)
    for i in range(50):  # forces many cap rotations while "slow" waits
        limiter.try_acquire(key=i)
    await waiter
    assert asyncio.get_running_loop().time() == 10.0
    assert not limiter.try_acquire(key="slow")  # the waiter's use is remembered


def test_for_key_refuses_an_unhashable_key_when_made() -> None:
    limiter = TokenBucket(2, 1.0, name="api")
    with pytest.raises(TypeError, match=r"api: key must be hashable, got \[\]"):
        limiter.for_key([])  # type: ignore[arg-type]


async def test_async_with_decorator_and_for_key() -> None:
    limiter = TokenBucket(2, 1.0)
    async with limiter:
        pass

    @limiter
    async def ping(x: int) -> int:
        return x * 2

    assert await ping(21) == 42
    assert ping.__name__ == "ping"

    per_user = TokenBucket(1, 1.0, max_wait=0)

    @per_user.limit(key=lambda user, **_: user)
    async def fetch(user: str, *, item: int) -> str:
        return f"{user}:{item}"

    assert await fetch("a", item=1) == "a:1"
    assert await fetch("b", item=1) == "b:1"
    with pytest.raises(RateLimited):
        await fetch("a", item=2)

    guard = per_user.for_key("c")
    async with guard:
        pass
    with pytest.raises(RateLimited):
        async with guard:
            pass
    assert not guard.try_acquire()
    with pytest.raises(TypeError, match="coroutine functions"):
        limiter(lambda: None)  # type: ignore[arg-type,return-value]


async def test_limit_is_the_guards_core_per_key_as_the_pipelines_rate_limit_is() -> None:
    # One way to run under a limiter: a subclass that changes the guard core (here for_key,
    # whose handle records its entries and exits) changes @limit(key=...) exactly as it changes
    # the pipeline's keyed rate limit.
    seen: list[tuple[str, object]] = []

    class Recording(ar.KeyedLimit):
        def _enter(self) -> Any:
            seen.append(("enter", self.key))
            return super()._enter()

        def _exit(self, ticket: Any, exc: BaseException | None, result: Any) -> None:
            seen.append(("exit", result if exc is None else type(exc).__name__))

    class Audited(TokenBucket):
        def for_key(self, key: Any, *, cost: int = 1) -> ar.KeyedLimit:
            return Recording(self, key, cost)

    limiter = Audited(5, 1.0)

    @limiter.limit(key=lambda user: user, cost=2)
    async def fetch(user: str) -> str:
        if user == "bad":
            raise OSError(user)
        return user.upper()

    assert await fetch("a") == "A"
    with pytest.raises(OSError):
        await fetch("bad")
    via_limit = list(seen)
    seen.clear()
    pipeline = ar.Pipeline.builder().rate_limit(limiter, key=lambda ctx: "a", cost=2).build()
    assert await pipeline.execute(fetch.__wrapped__, "a") == "A"  # type: ignore[attr-defined]
    assert via_limit == [("enter", "a"), ("exit", "A"), ("enter", "bad"), ("exit", "OSError")]
    assert seen == [("enter", "a"), ("exit", "A")]
    assert limiter.remaining("a") == 1  # 5 - 2 (limit) - 2 (pipeline); "bad" paid its own


async def test_limit_waits_up_to_its_timeout_and_a_cancelled_wait_returns_its_reservation() -> None:
    loop = asyncio.get_running_loop()
    limiter = TokenBucket(1, 1.0, max_wait=0)

    @limiter.limit(key=lambda user: user, timeout=5)
    async def fetch(user: str) -> float:
        return loop.time()

    assert await fetch("a") == 0.0
    assert await fetch("a") == 1.0  # waited the refill, not refused (timeout=5, max_wait=0)
    waiter = asyncio.ensure_future(fetch("a"))
    await asyncio.sleep(0.5)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    stats = limiter.statistics()
    assert (stats.cancelled, stats.waiting) == (1, 0)
    await asyncio.sleep(0.5)
    assert limiter.try_acquire(key="a")  # the cancelled waiter's token was given back

    @limiter.limit(cost=1)  # no key: the limiter's own key, its own max_wait (0: refused)
    async def ping() -> str:
        return "pong"

    assert await ping() == "pong"
    with pytest.raises(RateLimited):
        await ping()


async def test_check_returns_header_data() -> None:
    limiter = FixedWindowCounter(3, 60.0)
    await asyncio.sleep(30)
    decision = limiter.check()
    assert decision and decision.remaining == 2 and decision.limit == 3
    assert decision.reset_after == pytest.approx(30.0)
    limiter.check(2)
    refused = limiter.check()
    assert not refused and refused.retry_after == pytest.approx(30.0)


async def test_repr_and_statistics_are_live() -> None:
    limiter = TokenBucket(2, 1.0, name="api")
    limiter.try_acquire()
    text = repr(limiter)
    assert "'api'" in text and "capacity=2" in text and "remaining=1" in text
    stats = limiter.statistics()
    with pytest.raises(AttributeError):
        stats.admitted = 5  # type: ignore[misc]


async def test_acquire_timeout_argument_validated() -> None:
    limiter = TokenBucket(1, 1.0)
    with pytest.raises(ValueError, match="timeout must be >= 0 or None, got -1"):
        await limiter.acquire(timeout=-1)
    with pytest.raises(TypeError, match="timeout must be a number or None"):
        await limiter.acquire(timeout="1")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TokenBucket(0, 1.0), "capacity must be >= 1, got 0"),
        (lambda: TokenBucket(5, 2e9), r"refill_rate must be <= 1e\+09, got 2000000000.0"),
        (lambda: GCRA(10**10, 1.0), r"limit / period must be <= 1e\+09"),
        (lambda: TokenBucket(5, math.nan), "refill_rate must be a positive finite number"),
        (lambda: TokenBucket(5, math.inf), "refill_rate must be a positive finite number"),
        (lambda: TokenBucket(5, -1), "refill_rate must be a positive finite number, got -1"),
        (lambda: TokenBucket(5, "ten per sec"), "refill_rate must look like"),
        (lambda: TokenBucket(5, 1.0, max_wait=-2), "max_wait must be >= 0 or None, got -2"),
        (lambda: TokenBucket(5, 1.0, max_keys=0), "max_keys must be >= 1, got 0"),
        (lambda: LeakyBucket(5, 1.0, mode="queue"), r"mode must be one of \('meter', 'shaper'\)"),
        (lambda: LeakyBucket(0, 1.0), "capacity must be >= 1, got 0"),
        (lambda: GCRA(10, 0), "period must be a positive finite number, got 0"),
        (lambda: GCRA(10, 1.0, burst=0), "burst must be >= 1, got 0"),
        (lambda: GCRA(rate="10/fortnight"), "rate must look like"),
        (lambda: FixedWindowCounter(0, 1.0), "max_requests must be >= 1, got 0"),
        (lambda: SlidingWindowLog(5, -1.0), "window_seconds must be a positive finite"),
        (lambda: SlidingWindowCounter(5, math.inf), "window_seconds must be a positive finite"),
    ],
)
def test_bad_input_fails_at_construction_naming_the_parameter(build: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build()


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TokenBucket("5", 1.0), "capacity must be an int, got '5'"),
        (lambda: TokenBucket(True, 1.0), "capacity must be an int, got True"),
        (lambda: TokenBucket(2.5, 1.0), "capacity must be an int, got 2.5"),
        (lambda: FixedWindowCounter(5.0, 1.0), "max_requests must be an int, got 5.0"),
        (lambda: TokenBucket(5), "needs capacity and refill_rate"),
        (lambda: GCRA(5, 1.0, rate="5/s"), "either rate='5/s' or limit/period"),
        (lambda: TokenBucket(5, 1.0, name=3), "name must be a str"),
        (lambda: GCRA(rate=5), "rate must be a rate string"),
    ],
)
def test_wrong_types_fail_at_construction(build: Any, message: str) -> None:
    with pytest.raises(TypeError, match=message):
        build()


def test_rate_strings_are_equivalent_to_native_parameters() -> None:
    assert TokenBucket(rate="100/minute").refill_rate == pytest.approx(100 / 60)
    assert TokenBucket(rate="100/minute").capacity == 100
    assert TokenBucket(10, "10/s").refill_rate == 10
    assert FixedWindowCounter(rate="5 per 2 seconds").window_seconds == 2.0
    assert SlidingWindowLog(rate="3/h").window_seconds == 3600.0
    assert GCRA(rate="10/s").period == 1.0
    assert LeakyBucket(rate="20/min", mode="shaper").leak_rate == pytest.approx(1 / 3)


def test_try_acquire_works_outside_an_event_loop() -> None:
    limiter = TokenBucket(1, 1.0)
    assert limiter.try_acquire()
    assert not limiter.try_acquire()


async def test_mass_cancellation_is_replanned_once_and_leaks_nothing() -> None:
    loop = asyncio.get_running_loop()
    limiter = SlidingWindowLog(10, 1.0)
    tasks = [asyncio.create_task(limiter.acquire()) for _ in range(1000)]
    await asyncio.sleep(0)
    assert limiter.statistics().waiting == 990
    for task in tasks[10:600]:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    stats = limiter.statistics()
    assert (stats.admitted, stats.cancelled, stats.waiting) == (410, 590, 0)
    # 410 admitted at 10 per second: the cancelled ones' slots were all reused.
    assert loop.time() == pytest.approx(40.0)
    assert not limiter._local._queues and not limiter._local._dirty
    assert len(limiter._local._heap) <= 16  # stale entries were compacted away


# -- regressions found in review -----------------------------------------------------------


async def test_replan_with_a_second_cancellation_not_yet_noticed() -> None:
    """A waiter behind the first cancelled one is cancelled before its task runs."""
    limiter = TokenBucket(2, 1.0)
    limiter.try_acquire()
    tasks = [asyncio.create_task(limiter.acquire(cost)) for cost in (2, 1, 1)]
    await asyncio.sleep(0)
    tasks[0].cancel()
    await asyncio.sleep(0)  # the first cancellation is being handled ...
    tasks[1].cancel()  # ... when the second arrives
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [type(r).__name__ for r in results] == ["CancelledError", "CancelledError", "NoneType"]
    assert limiter.statistics().cancelled == 2
    await asyncio.sleep(10)
    assert limiter.remaining() == 2  # nothing leaked: the bucket refills completely


@pytest.mark.parametrize("kind", KINDS)
async def test_a_cancelled_waiters_slot_goes_to_the_next_in_line(kind: str) -> None:
    limiter = make(kind)
    for _ in range(5):
        limiter.try_acquire()
    first = asyncio.create_task(limiter.acquire(5))
    second = asyncio.create_task(limiter.acquire(1))
    await asyncio.sleep(0)
    first_due = max(entry[0] for entry in limiter._local._heap if entry[2].cost == 5)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await second
    assert asyncio.get_running_loop().time() <= first_due + 1e-9


def test_cancel_after_a_late_wakeup_returns_the_right_window() -> None:
    window = FixedWindowAlgorithm(limit=1, window=1.0)
    state = (0, 1)
    state, at_a, _ = window.reserve(state, 0.0, 1, 10.0)  # A: window 1
    state, at_b, _ = window.reserve(state, 0.0, 1, 10.0)  # B: window 2
    assert (at_a, at_b) == (1.0, 2.0)
    # A's wake-up came late, in window 2, and A was cancelled then: window 1 gets it back.
    state = window.cancel(state, 2.1, 1, at_a)
    assert not window.reserve(state, 2.1, 1, 0.0)[2]  # B still owns window 2


def test_limiter_survives_being_used_from_two_event_loops() -> None:
    limiter = TokenBucket(1, 1.0)

    async def leave_a_waiter_behind() -> None:
        limiter.try_acquire()
        asyncio.get_running_loop().create_task(limiter.acquire())
        await asyncio.sleep(0)  # the run ends with the waiter pending: it is cancelled

    async def wait_normally() -> float:
        await limiter.acquire()
        await limiter.acquire()
        return asyncio.get_running_loop().time()

    run(leave_a_waiter_behind())
    assert run(wait_normally(), start=100.0) <= 101.0 + 1e-9


@pytest.mark.parametrize("now", [1e6, 1.7e9])
def test_gcra_is_exact_at_large_clock_values(now: float) -> None:
    bucket = TokenBucketAlgorithm(capacity=1000, refill_rate=10_000.0)
    admitted, state = burst(bucket, now, 1010)
    assert admitted.count(True) == 1000
    total = 1000
    for step in range(1, 10_001):  # one second in 0.1 ms steps
        state, _, ok = bucket.reserve(state, now + step * 1e-4, 1, 0.0)
        total += ok
    assert total <= 11_000


def test_rate_units_parse_exactly() -> None:
    assert TokenBucket(rate="10/ms").refill_rate == pytest.approx(10_000)
    assert FixedWindowCounter(rate="5 per 2 ms").window_seconds == pytest.approx(0.002)
    assert FixedWindowCounter(rate="1/mins").window_seconds == 60.0


def test_store_never_holds_more_than_max_keys_even_when_promoting() -> None:
    store: MemoryStore[int] = MemoryStore(max_keys=1000, period=3600.0)
    peak = 0
    for round_ in range(5):
        for i in range(1000):
            key = (round_ % 2, i)
            state = store.get(key, 0.0)
            store.put(key, 1 if state is None else state + 1, 0.0)
            peak = max(peak, len(store))
    assert peak <= 2000


async def test_fractional_cost_equal_to_one_is_still_refused() -> None:
    limiter = TokenBucket(2, 1.0)
    with pytest.raises(TypeError, match=r"cost must be an int, got 1\.0"):
        limiter.try_acquire(1.0)  # type: ignore[arg-type]


async def test_a_key_not_yet_fresh_survives_idle_rotations() -> None:
    limiter = GCRA(1, 10.0)  # one per 10 s: the key stays limited for 10 s
    assert limiter.try_acquire(key="a")
    for i in range(99):
        await asyncio.sleep(0.1)
        limiter.try_acquire(key=f"other-{i}")  # time passes, generations rotate
    assert not limiter.try_acquire(key="a")
    await asyncio.sleep(10.0 - asyncio.get_running_loop().time())
    assert limiter.try_acquire(key="a")


@pytest.mark.parametrize("kind", KINDS)
async def test_allow_request_is_the_seed_guides_try_acquire(kind: str) -> None:
    """The seed guide's limiters answer ``allow_request()`` with a bool, never waiting."""
    limiter = make(kind)
    allowed = [limiter.allow_request() for _ in range(limiter._algorithm.max_cost + 1)]
    assert allowed[-1] is False and all(allowed[:-1])
    assert limiter.allow_request(key="other") is True  # per key, like try_acquire
    stats = limiter.statistics()
    assert (stats.admitted, stats.rejected, stats.waiting) == (len(allowed), 1, 0)


async def test_a_refund_on_a_key_with_waiters_replans_them(virtual_clock: Any) -> None:
    # One per second. An admission at once made after the waiters before it were released,
    # then given back: the waiter queued behind it goes at once instead of a second later.
    limiter = ar.GCRA(1, 1.0, name="one-per-second")
    loop = asyncio.get_running_loop()
    start = loop.time()
    assert limiter.check(key="k")
    first = asyncio.create_task(limiter.acquire(key="k"))  # due at start + 1
    await asyncio.sleep(1.0)
    await first
    decision = limiter.check(key="k")
    assert not decision.allowed  # the waiter took the unit of start + 1
    await asyncio.sleep(1.0)
    admitted = limiter.check(key="k")  # at start + 2, while the key still has its queue
    assert admitted.allowed
    waiter = asyncio.create_task(limiter.acquire(key="k"))
    await asyncio.sleep(0)
    assert not waiter.done()
    limiter.refund(admitted, key="k")
    await waiter
    assert loop.time() - start == pytest.approx(2.0)  # not 3.0
    assert limiter.statistics().waiting == 0


def test_a_refunded_request_is_as_if_never_made() -> None:
    # One limiter sees every request and refunds the odd ones it admits; its twin sees only
    # the even ones: both decide every even one alike (refused requests record nothing).
    clock = ManualClock()
    makers = [
        lambda: ar.SlidingWindowLog(5, 10.0, clock=clock),
        lambda: ar.FixedWindowCounter(5, 10.0, clock=clock),
        lambda: ar.SlidingWindowCounter(5, 10.0, clock=clock),
        lambda: ar.TokenBucket(5, 0.5, clock=clock),
        lambda: ar.GCRA(5, 10.0, burst=5, clock=clock),
        lambda: ar.LeakyBucket(5, 0.5, clock=clock),
    ]
    for make in makers:
        refunding, twin = make(), make()
        for i in range(120):
            clock.advance(0.3)
            decision = refunding.check(key="k")
            if i % 2:
                refunding.refund(decision, key="k")
            else:
                expected = twin.check(key="k")
                assert (decision.allowed, decision.remaining) == (
                    expected.allowed,
                    expected.remaining,
                ), (refunding, i)


@pytest.mark.parametrize(
    "make",
    [
        lambda c: ar.GCRA(1, 1.0, burst=1, clock=c),
        lambda c: ar.TokenBucket(1, 1.0, clock=c),
        lambda c: ar.LeakyBucket(1, 1.0, clock=c),
        lambda c: ar.LeakyBucket(5, 1.0, mode="shaper", clock=c),
    ],
)
def test_a_late_refund_gives_back_only_what_has_not_drained(make: Any) -> None:
    # Refunded after the unit it took had drained and another was admitted: giving back a
    # whole interval then handed that other unit back too (two at once with a burst of 1).
    clock = ManualClock()
    limiter = make(clock)
    first = limiter.check(key="k")
    clock.advance(1.0)
    assert limiter.check(key="k")
    limiter.refund(first, key="k")
    assert not limiter.check(key="k")


def test_a_refund_takes_a_decision_carrying_an_equal_policy() -> None:
    # A store's decision may carry the limit's policy as an equal copy (rebuilt from the
    # algorithm's numbers, read back from its backend), or come from another limiter object
    # of the same shared limit: refund compared policies by identity and raised "another
    # limiter's". A decision of a different limit is still refused.
    import dataclasses

    clock = ManualClock()
    limiter = ar.GCRA(10, 1.0, burst=2, name="api", clock=clock)
    twin = ar.GCRA(10, 1.0, burst=2, name="api", clock=clock)
    other = ar.GCRA(10, 1.0, burst=3, name="api", clock=clock)
    decision = limiter.check()
    assert decision.policy is not None
    copy = decision._replace(policy=dataclasses.replace(decision.policy))
    assert limiter.refund(copy).remaining == 2
    assert limiter.check().remaining == 1
    assert twin.refund(twin.check()._replace(policy=limiter.policy)).at is None
    with pytest.raises(ValueError, match="another limiter's"):
        limiter.refund(other.check())


_FRESH = [
    lambda: ar.TokenBucket(3, 0.1),
    lambda: ar.LeakyBucket(3, 0.1),
    lambda: ar.GCRA(rate="1/10s", burst=3),
    lambda: ar.FixedWindowCounter(max_requests=3, window_seconds=60.0),
    lambda: ar.SlidingWindowLog(max_requests=3, window_seconds=60.0),
    lambda: ar.SlidingWindowCounter(max_requests=3, window_seconds=60.0),
]


@pytest.mark.parametrize("make", _FRESH)
async def test_reset_forgets_one_keys_admissions_and_clear_every_keys(make: Any) -> None:
    limiter = make()
    for key in ("a", "b", None):
        while limiter.try_acquire(key=key):
            pass
    limiter.reset(key="a")
    assert limiter.remaining("a") == limiter.max_cost
    assert limiter.remaining("b") == limiter.remaining() == 0  # the others keep theirs
    assert [limiter.try_acquire(key="a") for _ in range(4)] == [True, True, True, False]
    limiter.reset(key="never seen")  # nothing to forget: no error
    limiter.clear()
    assert limiter.remaining("a") == limiter.remaining("b") == limiter.remaining() == 3
    assert limiter.statistics().admitted == 12  # counters count on


async def test_reset_replans_the_keys_waiters_from_the_fresh_state() -> None:
    loop = asyncio.get_running_loop()
    limiter = ar.TokenBucket(1, 0.1)  # one per 10 s
    await limiter.acquire()
    admitted: dict[str, float] = {}

    async def waiter(name: str) -> None:
        await limiter.acquire()
        admitted[name] = loop.time()

    tasks = [asyncio.create_task(waiter(name)) for name in "abc"]  # due at 10, 20, 30
    await asyncio.sleep(1.0)
    tasks[1].cancel()  # a cancelled one is forgotten too
    limiter.reset()
    await asyncio.gather(tasks[0], tasks[2], return_exceptions=True)
    assert admitted == {"a": 1.0, "c": 11.0}  # the fresh token now, then the refill
    assert not limiter.try_acquire()  # nothing admitted twice
    assert limiter.statistics().waiting == 0


async def test_a_waiter_released_but_not_yet_running_keeps_its_admission_through_reset() -> None:
    loop = asyncio.get_running_loop()
    limiter = ar.TokenBucket(1, 0.1)
    await limiter.acquire()
    waiter = asyncio.create_task(limiter.acquire())  # released at t=10
    await asyncio.sleep(0)
    # Scheduled after the limiter's timer for t=10: runs in the same turn, after the
    # release, before the released task resumes.
    loop.call_at(10.0, limiter.reset)
    await waiter
    assert loop.time() == 10.0
    assert not limiter.try_acquire()  # the released one holds the fresh token: bound kept


def test_a_shared_limiter_says_reset_is_for_state_held_in_process() -> None:
    from aioresilience.stores.redis import RedisStore

    limiter = ar.TokenBucket(1, 1.0, name="shared", store=RedisStore("redis://127.0.0.1:1"))
    for forget in (limiter.reset, limiter.clear):
        with pytest.raises(TypeError, match="shared store: reset"):
            forget()


_CLOCKED = [
    lambda clock: ar.TokenBucket(3, 0.1, clock=clock),
    lambda clock: ar.LeakyBucket(3, 0.1, clock=clock),
    lambda clock: ar.GCRA(rate="1/10s", burst=3, clock=clock),
    lambda clock: ar.FixedWindowCounter(max_requests=3, window_seconds=60.0, clock=clock),
    lambda clock: ar.SlidingWindowLog(max_requests=3, window_seconds=60.0, clock=clock),
    lambda clock: ar.SlidingWindowCounter(max_requests=3, window_seconds=60.0, clock=clock),
]


@pytest.mark.parametrize("make", _CLOCKED)
def test_a_refund_of_a_decision_made_before_reset_gives_nothing_of_the_fresh_quota(
    make: Any,
) -> None:
    from aioresilience.testing import ManualClock

    clock = ManualClock()
    limiter = make(clock)
    old = [limiter.check(key="k") for _ in range(3)]
    clock.advance(0.5)
    limiter.reset(key="k")
    assert all(limiter.check(key="k").allowed for _ in range(3))  # the fresh quota, used
    for decision in old:
        limiter.refund(decision, key="k")  # forgotten by the reset: nothing to give back
    assert not limiter.check(key="k").allowed
    clock.advance(0.5)
    limiter.clear()
    clock.advance(0.001)
    fresh = limiter.check(key="k")
    for decision in old:
        limiter.refund(decision, key="k")  # forgotten by clear() too
    assert limiter.remaining("k") == 2
    limiter.refund(fresh, key="k")  # made after it: given back as before
    assert limiter.remaining("k") == 3


@pytest.mark.parametrize("make", _CLOCKED)
def test_a_decision_at_the_resets_own_instant_counts_as_before_it(make: Any) -> None:
    # A virtual or millisecond clock cannot tell a decision just before a reset from one
    # just after: given back, one made before would admit more than the bound (twice it);
    # so neither is, and the fresh quota holds.
    from aioresilience.testing import ManualClock

    clock = ManualClock()
    limiter = make(clock)
    before = [limiter.check(key="k") for _ in range(3)]
    limiter.reset(key="k")
    assert all(limiter.check(key="k").allowed for _ in range(3))
    for decision in before:
        limiter.refund(decision, key="k")
    assert not limiter.check(key="k").allowed


@pytest.mark.parametrize(
    "make",
    [
        lambda clock: ar.TokenBucket(3, 0.1, clock=clock, max_keys=4),
        lambda clock: ar.LeakyBucket(3, 0.1, clock=clock, max_keys=4),
        lambda clock: ar.GCRA(rate="1/10s", burst=3, clock=clock, max_keys=4),
        lambda clock: ar.FixedWindowCounter(3, 60.0, clock=clock, max_keys=4),
        lambda clock: ar.SlidingWindowLog(3, 60.0, clock=clock, max_keys=4),
        lambda clock: ar.SlidingWindowCounter(3, 60.0, clock=clock, max_keys=4),
    ],
)
def test_a_reset_mark_outlived_by_many_other_resets_still_forgets_the_old_decision(
    make: Any,
) -> None:
    # The reset marks are bounded like the states (max_keys): more than max_keys other keys
    # reset between a decision and its refund rotate this key's mark out. The refund of a
    # decision made before that reset must still give nothing into the fresh quota.
    from aioresilience.testing import ManualClock

    clock = ManualClock()
    limiter = make(clock)
    old = [limiter.check(key="k") for _ in range(3)]
    clock.advance(0.1)
    limiter.reset(key="k")
    assert all(limiter.check(key="k").allowed for _ in range(3))  # the fresh quota, used
    for other in range(20):
        clock.advance(0.001)
        limiter.reset(key=other)
    for decision in old:
        limiter.refund(decision, key="k")
    assert not limiter.check(key="k").allowed  # the bound holds: 3 in the fresh quota


def test_a_clear_on_an_earlier_virtual_run_says_nothing_about_the_next() -> None:
    # clear() in a test's teardown at virtual t=3600; the next test's loop starts at 0
    # again: its refunds were all dropped (its decisions came "before" that clear).
    limiter = ar.FixedWindowCounter(max_requests=3, window_seconds=60.0)

    async def first() -> None:
        await asyncio.sleep(3600)
        limiter.clear()

    async def second() -> int:
        decision = limiter.check(key="k")
        limiter.refund(decision, key="k")
        return limiter.remaining("k")

    run(first())
    assert run(second()) == 3


@pytest.mark.parametrize("earlier", ["reset", "clear"])
def test_a_reset_mark_of_an_earlier_virtual_run_does_not_hide_this_runs_rotated_out(
    earlier: str,
) -> None:
    # A reset (or clear) at virtual t=3600 on an earlier test's loop; on the next loop,
    # starting at 0 again, this run's own reset mark of "k" rotates out together with it.
    # The floor rose to 3600, ahead of the clock: dropped as another timeline's, it took
    # the mark of "k" with it, and the refunds of decisions before that reset gave into
    # the fresh quota (6 admitted in one window of 3).
    limiter = ar.FixedWindowCounter(max_requests=3, window_seconds=60.0, max_keys=2)

    async def first() -> None:
        await asyncio.sleep(3600)
        if earlier == "clear":
            limiter.clear()
        else:
            limiter.reset(key="stale")

    async def second() -> bool:
        old = [limiter.check(key="k") for _ in range(3)]
        await asyncio.sleep(1)
        limiter.reset(key="k")
        assert all(limiter.check(key="k").allowed for _ in range(3))  # the fresh quota
        for other in range(6):
            limiter.reset(key=other)
        for decision in old:
            limiter.refund(decision, key="k")
        return limiter.check(key="k").allowed

    run(first())
    assert not run(second())  # the bound holds: 3 in the fresh quota


async def test_a_reset_that_releases_every_waiter_calls_the_timer_off() -> None:
    clock = ManualClock()
    limiter = ar.TokenBucket(3, 1 / 3600, clock=clock)  # a token an hour
    for _ in range(3):
        await limiter.acquire()
    waiters = [asyncio.create_task(limiter.acquire()) for _ in range(3)]  # due in 1, 2, 3 h
    await asyncio.sleep(0)
    assert clock.next_deadline == 3600.0
    limiter.reset()
    await asyncio.gather(*waiters)
    assert clock.next_deadline is None  # nobody waits: no wake-up left armed
    assert limiter.statistics().waiting == 0


def test_clear_between_loops_drops_a_waiter_its_closed_loop_left() -> None:
    # A fixture's clear() between two tests: the first test's loop closed with a waiter
    # still queued. It can never run: dropped, not handed the fresh quota (nor woken on a
    # closed loop, which raised RuntimeError half-way).
    limiter = ar.TokenBucket(1, 0.01)
    left: list[asyncio.Task[None]] = []

    async def first() -> None:
        await limiter.acquire()
        left.append(asyncio.get_running_loop().create_task(limiter.acquire()))  # 100 s
        await asyncio.sleep(0)

    loop = asyncio.new_event_loop()
    loop.run_until_complete(first())
    loop.close()
    limiter.clear()
    assert (limiter.remaining(), limiter.statistics().waiting) == (1, 0)
    assert limiter.try_acquire()
    # The task left pending on the closed loop is asyncio's to log when collected: here,
    # quietly, not in some later test.
    asyncio_logger = logging.getLogger("asyncio")
    asyncio_logger.disabled = True
    try:
        left.clear()
        gc.collect()
    finally:
        asyncio_logger.disabled = False

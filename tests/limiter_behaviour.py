"""ONE limiter behaviour suite, written once against the public API and run on every store:
in memory (``store=None``), on Redis and on the dict-backed third store of the tests
(tests/dictstore_limits.py), by the classes of tests/test_ratelimit_behaviour.py: admission
bounds per algorithm, waits, refusals with retry_after, keys, cancellation leaving no
reservation, and the failure policy of a store that cannot decide.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from aioresilience import (
    GCRA,
    FixedWindowCounter,
    LeakyBucket,
    RateLimited,
    RateLimiter,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from aioresilience.abc import LimiterStore
from aioresilience.stores.redis import RedisStore
from aioresilience.testing import ManualClock, RedisServer

# name -> (factory, largest retry_after a refusal of the burst may report)
LIMITERS: dict[str, tuple[Callable[..., RateLimiter[Any]], float]] = {
    "token_bucket": (lambda **kw: TokenBucket(5, 0.05, **kw), 20.0),
    "leaky_bucket": (lambda **kw: LeakyBucket(5, 0.05, **kw), 20.0),
    "gcra": (lambda **kw: GCRA(1, 20, burst=5, **kw), 20.0),
    "fixed_window": (lambda **kw: FixedWindowCounter(5, 100, **kw), 100.0),
    "sliding_window_log": (lambda **kw: SlidingWindowLog(5, 100, **kw), 100.0),
    "sliding_window_counter": (lambda **kw: SlidingWindowCounter(5, 100, **kw), 200.0),
}


def _unique() -> str:
    return uuid.uuid4().hex[:12]


@pytest.fixture
async def redis_store(redis_server: RedisServer) -> AsyncIterator[RedisStore]:
    # A generous timeout and no fail-open: a loaded machine must not turn slowness into
    # admissions (the outage tests set their own).
    shared = RedisStore(
        redis_server.url, prefix=f"test-{_unique()}", timeout=2.0, on_failure="deny"
    )
    yield shared
    await shared.aclose()


def make(kind: str, store: LimiterStore | None, **options: Any) -> RateLimiter[Any]:
    return LIMITERS[kind][0](name=f"{kind}-{_unique()}", store=store, **options)


# -- the same behaviour on both stores ---------------------------------------------------------


class LimiterBehaviour:
    """Written once, run by each store's subclass; ``store`` is ``None`` (memory) or a
    LimiterStore; ``failing_store(policy)`` a store of the same kind that cannot decide (the
    memory state cannot fail: its class skips those tests)."""

    @pytest.mark.parametrize("kind", LIMITERS)
    async def test_a_burst_admits_exactly_the_limit(
        self, kind: str, store: LimiterStore | None
    ) -> None:
        limiter = make(kind, store)
        decisions = await asyncio.gather(*(limiter.decide(key="user") for _ in range(8)))
        admitted = [d for d in decisions if d.allowed]
        refused = [d for d in decisions if not d.allowed]
        assert len(admitted) == 5
        assert sorted(d.remaining for d in admitted) == [0, 1, 2, 3, 4]
        assert all(0 < d.retry_after <= LIMITERS[kind][1] for d in refused)
        assert all(d.limit == 5 for d in decisions)
        stats = limiter.statistics()
        assert (stats.admitted, stats.rejected) == (5, 3)

    @pytest.mark.parametrize("kind", LIMITERS)
    async def test_keys_are_independent(self, kind: str, store: LimiterStore | None) -> None:
        limiter = make(kind, store)
        assert (await limiter.decide(5, key="a")).allowed
        assert not (await limiter.decide(key="a")).allowed
        assert (await limiter.decide(5, key="b")).allowed
        assert (await limiter.decide(5, key=42)).allowed

    @pytest.mark.parametrize("kind", LIMITERS)
    async def test_a_refused_request_consumes_nothing(
        self, kind: str, store: LimiterStore | None
    ) -> None:
        limiter = make(kind, store)
        assert (await limiter.decide(4, key="k")).allowed
        assert not (await limiter.decide(2, key="k")).allowed
        with pytest.raises(RateLimited):
            await limiter.acquire(3, key="k", timeout=0.01)
        assert (await limiter.decide(1, key="k")).allowed

    @pytest.mark.parametrize("kind", LIMITERS)
    async def test_a_refund_gives_an_admission_back(
        self, kind: str, store: LimiterStore | None
    ) -> None:
        # A request that another limit refused after this one admitted it is recorded by
        # neither: refund() undoes the admission (web rules refund the limiters passed).
        limiter = make(kind, store)
        first = await limiter.decide(2, key="k")
        last = await limiter.decide(3, key="k")
        assert first.allowed and last.allowed and last.at is not None
        refused = await limiter.decide(key="k")
        limiter.refund(refused, key="k")  # a refusal: nothing to give back
        limiter.refund(last, 3, key="k")
        again = await limiter.decide(3, key="k")
        assert again.allowed and again.remaining == 0
        assert not (await limiter.decide(key="k")).allowed
        assert limiter.statistics().admitted == 2  # first and again: the refunded one is out
        with pytest.raises(TypeError, match="decision must be a Decision"):
            limiter.refund(True, key="k")  # type: ignore[arg-type]

    @pytest.mark.parametrize("kind", LIMITERS)
    async def test_a_cost_that_can_never_fit_fails_at_once(
        self, kind: str, store: LimiterStore | None
    ) -> None:
        limiter = make(kind, store)
        with pytest.raises(ValueError, match=r"cost=6 can never be admitted"):
            await limiter.decide(6)
        with pytest.raises(ValueError, match="cost=6"):
            await limiter.acquire(6)

    @pytest.mark.parametrize("kind", ["sliding_window_log", "sliding_window_counter"])
    async def test_a_sliding_window_states_when_its_next_unit_is_back(
        self, kind: str, store: LimiterStore | None
    ) -> None:
        # A sliding window gives its quota back unit by unit: the reset it states (the t of
        # the RateLimit field) is when one more unit fits, not when the window is empty (a
        # client waiting that long would leave part of the quota unused).
        limiter = make(kind, store)
        first = await limiter.decide(2, key="k")
        await asyncio.sleep(0.05)
        last = await limiter.decide(3, key="k")
        refused = await limiter.decide(key="k")
        assert last.remaining == 0 and not refused.allowed
        assert refused.reset_after == pytest.approx(refused.retry_after, abs=1e-3)
        assert last.reset_after == pytest.approx(refused.reset_after, abs=0.05)
        if kind == "sliding_window_log":
            assert first.reset_after == pytest.approx(100.0, abs=0.01)
            assert 99.0 < refused.reset_after < 100.0 - 0.04  # the oldest two leave first
        else:  # in the next window, once the weight of this one's 5 has fallen to 4
            assert 0.0 < refused.reset_after <= 120.0 + 1e-3

    @pytest.mark.parametrize("kind", LIMITERS)
    async def test_a_decision_behind_a_waiter_states_its_reset_no_sooner_than_its_wait(
        self, kind: str, store: LimiterStore | None
    ) -> None:
        # A decide() while another caller waits for the key: nothing is left for it before
        # the waiter goes, so the reset it states (RateLimit t) is not "back now".
        limiter = make(kind, store)
        assert (await limiter.decide(5, key="k")).allowed
        waiter = asyncio.create_task(limiter.acquire(key="k", timeout=300))
        await asyncio.sleep(0.01)
        decision = await limiter.decide(key="k")
        waiter.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
        assert not decision.allowed and decision.remaining == 0
        assert decision.retry_after > 0
        assert decision.reset_after >= decision.retry_after - 1e-3

    async def test_a_millisecond_sliding_log_decides_every_time(
        self, store: LimiterStore | None
    ) -> None:
        # A window as short as Redis's expiry unit: the key may expire while a script runs
        # (it did about once in 4000 decisions when the script read it after PEXPIRE).
        limiter = SlidingWindowLog(1000, 0.001, name=f"tiny-{_unique()}", store=store)
        decisions = [await limiter.decide(key="k") for _ in range(3000)]
        assert limiter.statistics().store_failures == 0
        assert [d for d in decisions if not 0.0 <= d.reset_after <= 0.001 + 1e-6] == []

    async def test_waiters_are_admitted_in_arrival_order(self, store: LimiterStore | None) -> None:
        limiter = GCRA(1, 0.01, name=f"fifo-{_unique()}", store=store)  # one per 10 ms
        loop = asyncio.get_running_loop()
        start = loop.time()
        order: list[int] = []

        async def caller(i: int) -> None:
            await limiter.acquire(key="k")
            order.append(i)

        await asyncio.gather(*(caller(i) for i in range(5)))
        assert order == [0, 1, 2, 3, 4]
        assert loop.time() - start >= 0.035  # four intervals, read off the server's clock
        stats = limiter.statistics()
        assert (stats.admitted, stats.waited, stats.waiting) == (5, 4, 0)

    async def test_a_wait_longer_than_the_timeout_is_refused_at_once(
        self, store: LimiterStore | None
    ) -> None:
        limiter = GCRA(1, 10, name=f"timeout-{_unique()}", store=store)
        loop = asyncio.get_running_loop()
        await limiter.acquire(key="k")
        start = loop.time()
        with pytest.raises(RateLimited) as caught:
            await limiter.acquire(key="k", timeout=0.5)
        assert 9.0 < caught.value.retry_after <= 10.0
        assert loop.time() - start < 0.5

    async def test_a_waiter_wakes_on_the_limiters_clock(self, store: LimiterStore | None) -> None:
        """Every wait is timed on ``clock=``, never on the loop's clock: on a clock that
        stands still, a refused caller waits however long the loop's time runs on."""
        clock = ManualClock()
        limiter = GCRA(1, 0.05, name=f"clocked-{_unique()}", store=store, clock=clock)
        await limiter.acquire(key="k")
        waiter = asyncio.create_task(limiter.acquire(key="k", timeout=10))
        await asyncio.sleep(0.2)  # four intervals on the loop's clock (and the server's)
        assert not waiter.done()
        assert limiter.statistics().waiting == 1
        clock.advance(0.05)  # one interval on the limiter's clock: now it is due
        await asyncio.wait_for(waiter, 5)
        assert limiter.statistics().waited == 1

    async def test_a_waiter_in_line_gives_up_on_the_limiters_clock(
        self, store: LimiterStore | None
    ) -> None:
        """A caller behind another one gives up when ``timeout`` has passed on ``clock=``:
        its deadline is on the limiter's clock, and so is the timer that ends its wait."""
        clock = ManualClock()
        limiter = GCRA(1, 100, name=f"deadline-{_unique()}", store=store, clock=clock)
        await limiter.acquire(key="k")
        polling = asyncio.create_task(limiter.acquire(key="k", timeout=1000))
        await asyncio.sleep(0.01)
        behind = asyncio.create_task(limiter.acquire(key="k", timeout=150))
        await asyncio.sleep(0.01)
        clock.advance(151)  # (a store whose server keeps its own time still refuses the first)
        with pytest.raises(RateLimited):
            await asyncio.wait_for(behind, 5)
        polling.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await polling
        assert limiter.statistics().waiting == 0

    @pytest.mark.parametrize("turns", range(12))
    async def test_cancellation_at_any_point_never_leaks_capacity(
        self, turns: int, store: LimiterStore | None
    ) -> None:
        """Cancel an acquire after each number of loop turns: either it completed (and holds the
        only unit) or it was cancelled and the unit is still there."""
        limiter = GCRA(1, 60, name=f"cancel-{_unique()}", store=store)
        task = asyncio.create_task(limiter.acquire(key="k"))
        for _ in range(turns):
            await asyncio.sleep(0)
        task.cancel()
        try:
            await task
            completed = True
        except asyncio.CancelledError:
            completed = False
        assert (await limiter.decide(key="k")).allowed is not completed

    async def test_a_cancelled_waiter_leaves_the_line(self, store: LimiterStore | None) -> None:
        limiter = GCRA(1, 0.2, name=f"line-{_unique()}", store=store)  # one per 200 ms
        await limiter.acquire(key="k")
        polling = asyncio.create_task(limiter.acquire(key="k"))  # waits one interval
        behind = asyncio.create_task(limiter.acquire(key="k"))  # waits its turn
        while limiter.statistics().waiting < 2:  # noqa: ASYNC110 (a statistic, no event)
            await asyncio.sleep(0.001)
        behind.cancel()
        polling.cancel()
        for task in (polling, behind):
            with pytest.raises(asyncio.CancelledError):
                await task
        stats = limiter.statistics()
        assert (stats.waiting, stats.cancelled) == (0, 2)
        # The next unit is due 200 ms after the first; had a cancelled waiter taken it, the
        # one after would be 400 ms away, beyond this timeout.
        await limiter.acquire(key="k", timeout=0.3)

    async def test_callers_with_capacity_never_wait_for_each_other(
        self, store: LimiterStore | None
    ) -> None:
        limiter = GCRA(1, 60, burst=100, name=f"busy-{_unique()}", store=store)
        await asyncio.gather(*(limiter.acquire(key="k", timeout=0) for _ in range(50)))
        decisions = await asyncio.gather(
            limiter.acquire(key="k"), limiter.decide(key="k"), limiter.acquire(key="k")
        )
        assert decisions[1].allowed  # type: ignore[union-attr]
        assert limiter.statistics().admitted == 53

    async def test_every_way_in_works_on_every_store(self, store: LimiterStore | None) -> None:
        limiter = FixedWindowCounter(3, 100, name=f"ways-{_unique()}", store=store)

        @limiter.limit(key=lambda user: user)
        async def handler(user: str) -> str:
            return user

        assert await handler("ann") == "ann"
        async with limiter.for_key("ann"):
            pass
        async with limiter:
            pass
        with pytest.raises(RateLimited):
            await limiter.acquire(2, key="ann", timeout=0)
        assert (await limiter.decide(key="ann")).allowed
        assert not (await limiter.decide(key="ann")).allowed

    @pytest.mark.parametrize("kind", LIMITERS)
    async def test_a_store_that_cannot_decide_allows_under_allow(
        self, kind: str, failing_store: Callable[[str], LimiterStore]
    ) -> None:
        limiter = make(kind, failing_store("allow"))
        failures: list[Any] = []
        limiter.add_listener(lambda event: failures.append(event))
        assert (await limiter.decide(5, key="k")).allowed
        await limiter.acquire(5, key="k", timeout=0)  # admitted again: nobody counted
        async with limiter.for_key("k", cost=5):
            pass
        stats = limiter.statistics()
        assert stats.store_failures == 3
        assert (stats.admitted, stats.rejected) == (3, 0)
        assert [e.name for e in failures].count("store_failure") == 3

    @pytest.mark.parametrize("kind", LIMITERS)
    async def test_a_store_that_cannot_decide_refuses_under_deny(
        self, kind: str, failing_store: Callable[[str], LimiterStore]
    ) -> None:
        limiter = make(kind, failing_store("deny"))
        decision = await limiter.decide(key="k")
        assert not decision.allowed and decision.retry_after > 0
        with pytest.raises(RateLimited) as caught:
            await limiter.acquire(key="k", timeout=0)
        assert caught.value.retry_after is not None and caught.value.retry_after > 0
        stats = limiter.statistics()
        assert (stats.store_failures, stats.admitted, stats.rejected) == (2, 0, 2)
        assert stats.waiting == 0

"""Waiters under fire: the bound, FIFO order and the books hold whatever is cancelled when.

Issue 11, item 1: a waiter cancelled after its wake-up fired, before its task ran, handed its
capacity back into the past (its cost was subtracted although the waiters behind it had been
released on their own slots), so the token bucket, the leaky-bucket meter and GCRA admitted
beyond their bound; a replan also released later waiters before earlier ones. Everything here
runs in virtual time; the storms check every window of the admissions actually made.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import random
from collections import defaultdict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
from aioresilience.testing import run

EPS = 1e-6

# name -> the limiter under test
KINDS: dict[str, Callable[[], RateLimiter[Any]]] = {
    "token_bucket": lambda: TokenBucket(5, 10.0),
    "leaky_meter": lambda: LeakyBucket(5, 10.0),
    "leaky_shaper": lambda: LeakyBucket(4, 10.0, mode="shaper"),
    "gcra": lambda: GCRA(10, 1.0, burst=3),
    "fixed_window": lambda: FixedWindowCounter(5, 0.5),
    "sliding_log": lambda: SlidingWindowLog(5, 0.5),
    "sliding_counter": lambda: SlidingWindowCounter(5, 0.5),
}


def check_bound(kind: str, admissions: list[tuple[float, int]]) -> None:
    """``admissions``: (time, cost) of one key, in time order. Every window is checked."""
    times = [t for t, _ in admissions]
    costs = [c for _, c in admissions]
    if kind in ("token_bucket", "leaky_meter", "gcra"):
        # Rate 1/T with burst B: any closed span [t_i, t_j] holds at most B + (t_j - t_i)/T.
        # Over all i <= j at once: keep the best start, max(t_i/T - cost before i).
        interval, burst = {"token_bucket": (0.1, 5), "leaky_meter": (0.1, 5), "gcra": (0.1, 3)}[
            kind
        ]
        best_start = -math.inf
        before = 0
        for t, c in admissions:
            best_start = max(best_start, t / interval - before)
            before += c
            assert before - t / interval + best_start <= burst + EPS, (kind, t)
    elif kind == "leaky_shaper":
        # Units leave one interval apart: a request of cost c holds the line c intervals.
        for (t1, c1), (t2, _) in itertools.pairwise(admissions):
            assert t2 - t1 >= c1 * 0.1 - EPS, (t1, c1, t2)
    else:
        limit, window = 5, 0.5
        per_window: dict[int, int] = defaultdict(int)
        for t, c in admissions:
            per_window[int(t // window)] += c
        assert max(per_window.values(), default=0) <= limit
        span_limit = limit if kind == "sliding_log" else 2 * limit
        if kind != "fixed_window":
            # Any half-open span [t, t + window): two pointers over the admissions.
            start = total = 0
            for j, t in enumerate(times):
                total += costs[j]
                # (A wake-up may land a hair before its slot: the virtual clock adds floats.)
                while times[start] + window <= t + EPS:
                    total -= costs[start]
                    start += 1
                assert total <= span_limit, (kind, t, total)


@dataclass
class Storm:
    kind: str
    limiter: RateLimiter[Any]
    admitted: dict[Hashable, list[tuple[float, int, int]]] = field(
        default_factory=lambda: defaultdict(list)
    )  # key -> (time, cost, arrival) in the order the callers resumed
    waiter_cancellations: int = 0
    refused: int = 0
    probes_admitted: int = 0


async def storm(kind: str, seed: int, waiters: int) -> Storm:
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    limiter = KINDS[kind]()
    s = Storm(kind, limiter)
    max_cost = min(3, limiter._algorithm.max_cost)
    # Arrivals about twice as fast as the limit serves, so queues build up and drain.
    span = waiters * 0.1 / 2
    tasks: list[asyncio.Task[None]] = []

    arrivals = itertools.count()

    async def waiter(key: Hashable, cost: int, timeout: float | None) -> None:
        arrival = next(arrivals)  # the order in which acquire() is called
        try:
            await limiter.acquire(cost, key=key, timeout=timeout)
        except RateLimited:
            s.refused += 1
            return
        except asyncio.CancelledError:
            s.waiter_cancellations += 1
            raise
        s.admitted[key].append((loop.time(), cost, arrival))

    def start() -> None:
        key = rng.choice((None, "b"))
        cost = rng.randint(1, max_cost)
        timeout = None if rng.random() < 0.7 else rng.uniform(0.0, 1.0)
        task = loop.create_task(waiter(key, cost, timeout))
        tasks.append(task)
        roll = rng.random()
        if roll < 0.1:  # cancelled before its first step, or right after it reserved
            loop.call_soon(task.cancel)
        elif roll < 0.25:
            loop.call_soon(snipe, task, key)
        elif roll < 0.35:
            # On a grid of half intervals, where wake-ups fire: some land right after a
            # wake-up and before the woken task runs, some before the wake-up.
            at = loop.time() + rng.randint(1, 40) * 0.05
            loop.call_at(at, task.cancel)
        elif roll < 0.45:
            loop.call_at(loop.time() + rng.uniform(0.0, 2.0), task.cancel)

    def snipe(task: asyncio.Task[None], key: Hashable) -> None:
        """Runs right after the task's first step: cancel it right after its wake-up fires,
        before it runs (white-box: its reservation is the newest entry of its key)."""
        queue = limiter._local._queues.get(key)
        if queue is not None and not task.done():
            at = queue.entries[-1].at
            # Just after the limiter's timer for `at`, in the same turn of the loop.
            loop.call_at(math.nextafter(at, math.inf), task.cancel)

    def probe() -> None:
        key = rng.choice((None, "b"))
        if limiter.try_acquire(1, key=key):
            s.probes_admitted += 1
            s.admitted[key].append((loop.time(), 1, -1))

    t0 = loop.time()
    for _ in range(waiters):
        # Some arrivals on the same grid as the wake-ups, some anywhere.
        at = t0 + (round(rng.uniform(0, span) / 0.05) * 0.05 if rng.random() < 0.5 else 0)
        at = at if at > t0 else t0 + rng.uniform(0, span)
        loop.call_at(at, start)
    for _ in range(waiters // 5):
        loop.call_at(t0 + rng.uniform(0, span), probe)
    await asyncio.sleep(span + 1e-3)
    while not all(t.done() for t in tasks):
        await asyncio.gather(*tasks, return_exceptions=True)
    return s


def verify(s: Storm) -> None:
    limiter = s.limiter
    for key, admissions in s.admitted.items():
        check_bound(s.kind, sorted((t, c) for t, c, _ in admissions))
        # FIFO: a waiter that arrived earlier was never admitted later.
        waited = [(arrival, t) for t, _, arrival in admissions if arrival >= 0]
        waited.sort()
        for (a1, t1), (a2, t2) in itertools.pairwise(waited):
            assert t1 <= t2, (key, a1, t1, a2, t2)
    stats = limiter.statistics()
    admitted = sum(len(a) for a in s.admitted.values())
    assert stats.admitted == admitted
    assert stats.cancelled == s.waiter_cancellations
    assert stats.waiting == 0
    # Nothing left behind: no queue, no live heap entry, no timer.
    assert (
        not limiter._local._queues and not limiter._local._dirty and limiter._local._timer is None
    )


async def full_again(s: Storm) -> None:
    """Once idle past the horizon every key has its whole limit again: no reservation of a
    cancelled waiter stayed counted."""
    limiter = s.limiter
    await asyncio.sleep(2 * limiter._algorithm.horizon + 1.0)
    for key in (None, "b"):
        assert limiter.remaining(key) == limiter._algorithm.max_cost


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_storm_of_cancellations_keeps_bound_fifo_and_books(kind: str, seed: int) -> None:
    async def main() -> None:
        s = await storm(kind, seed, waiters=1500)
        verify(s)
        await full_again(s)

    run(main())


async def test_gcra_waiter_cancelled_after_its_wake_up_while_the_loop_is_busy() -> None:
    """The issue's exact case: GCRA(10, 1.0); A admitted, W, X, B reserved for +0.1/+0.2/+0.3;
    W is cancelled right after its wake-up fired and the loop is then busy for 0.25 s. X and
    B were both admitted at +0.351 (0 ms apart) and a newcomer too."""
    loop = asyncio.get_running_loop()
    limiter = GCRA(10, 1.0)
    assert limiter.try_acquire()
    t0 = loop.time()
    times: dict[str, float] = {}

    async def caller(name: str) -> None:
        await limiter.acquire()
        times[name] = loop.time() - t0

    w = asyncio.create_task(caller("W"))
    x = asyncio.create_task(caller("X"))
    b = asyncio.create_task(caller("B"))
    await asyncio.sleep(0)
    assert limiter.statistics().waiting == 3

    def wake_up_then_busy() -> None:
        w.cancel()
        loop.advance(0.25)  # a callback that holds the loop for 0.25 s

    loop.call_at(t0 + 0.1, wake_up_then_busy)
    await asyncio.gather(w, x, b, return_exceptions=True)
    assert w.cancelled() and set(times) == {"X", "B"}
    assert times["B"] - times["X"] >= 0.1 - EPS
    # And nobody else gets in between: the bound holds for a newcomer as well.
    assert not limiter.try_acquire()
    stats = limiter.statistics()
    assert (stats.admitted, stats.cancelled, stats.waiting) == (3, 1, 0)


BURST_OF_ONE: dict[str, Callable[[], RateLimiter[Any]]] = {
    "token_bucket": lambda: TokenBucket(1, 10.0),
    "leaky_meter": lambda: LeakyBucket(1, 10.0),
    "gcra": lambda: GCRA(10, 1.0),
}


@pytest.mark.parametrize("kind", sorted(BURST_OF_ONE))
async def test_a_busy_loop_paces_the_backlog_from_when_it_really_goes(kind: str) -> None:
    """The loop is busy past every slot: one late wake-up finds W, X and B overdue. They are
    not let through together on their stale slots (that is 3 at once from a burst of 1):
    the first goes now and the others are replanned from now. W is then cancelled after its
    release: its place passes to X at once, B follows one interval later, and a newcomer
    gets nothing before one interval after B (the review of issue 11, item 1)."""
    loop = asyncio.get_running_loop()
    limiter = BURST_OF_ONE[kind]()
    assert limiter.try_acquire()
    resumed: list[float] = []

    async def caller() -> None:
        await limiter.acquire()
        resumed.append(loop.time())

    tasks = [asyncio.create_task(caller()) for _ in range(3)]
    await asyncio.sleep(0)
    slots = sorted(e.at for q in limiter._local._queues.values() for e in q.entries)
    busy_until = slots[-1] + 0.05
    loop.call_at(slots[0] / 2, loop.advance, busy_until - slots[0] / 2)  # busy
    loop.call_at(math.nextafter(slots[0], math.inf), tasks[0].cancel)  # after the wake-up
    await asyncio.gather(*tasks, return_exceptions=True)
    assert tasks[0].cancelled() and all(t.result() is None for t in tasks[1:])
    interval = 0.1
    assert resumed[0] == pytest.approx(busy_until)
    assert resumed[1] - resumed[0] >= interval - EPS
    assert not limiter.try_acquire()
    await asyncio.sleep(resumed[1] + interval - loop.time())
    assert limiter.try_acquire()


# -- retry_after and the shaper (issue 11, items 13 and 14) ----------------------------------


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(["token_bucket", "leaky_meter", "gcra"]),
    # Clock offsets up to 4e6 s: beyond ~8e6 the virtual-time loop itself stalls (a timer's
    # `when + clock_resolution` rounds to `when`, so asyncio never finds it due).
    start=st.one_of(
        st.floats(0.0, 4e6, allow_nan=False), st.floats(1e3, 4e6).map(lambda x: x + 1 / 3)
    ),
    spent=st.integers(1, 12),
    cost=st.integers(1, 3),
)
def test_sleeping_exactly_retry_after_is_enough(
    kind: str, start: float, spent: int, cost: int
) -> None:
    """retry_after was truncated to integer nanoseconds: sleeping exactly the announced time
    on the virtual-time loop was refused again with retry_after=1e-09."""

    async def main() -> None:
        limiter = KINDS[kind]()
        for _ in range(spent):
            limiter.try_acquire()
        decision = limiter.check(cost)
        if not decision:
            await asyncio.sleep(decision.retry_after)
            again = limiter.check(cost)
            assert again, (again.retry_after, asyncio.get_running_loop().time())

    run(main(), start=start)


@pytest.mark.parametrize(
    ("make", "first", "refused_at", "cost"),
    [
        (lambda: FixedWindowCounter(3, 1.7), 3, 0.3257, 3),
        (lambda: SlidingWindowLog(1, 1.7), 1, 0.6681, 1),
        (lambda: SlidingWindowCounter(2, 1.7), 1, 1.3256, 2),
    ],
)
def test_sleeping_exactly_retry_after_is_enough_for_the_windows(
    make: Callable[[], RateLimiter[Any]], first: int, refused_at: float, cost: int
) -> None:
    """The window algorithms announced `at - now`, and `now + (at - now)` rounded to an ulp
    before `at`: sleeping it was refused again with retry_after=2.2e-16."""

    async def main() -> None:
        limiter = make()
        assert limiter.check(first)
        await asyncio.sleep(refused_at)
        decision = limiter.check(cost)
        assert not decision
        await asyncio.sleep(decision.retry_after)
        again = limiter.check(cost)
        assert again, (again.retry_after, asyncio.get_running_loop().time())

    run(main())


@pytest.mark.parametrize("cost", [1, 2, 3])
async def test_shaper_admits_every_cost_up_to_its_capacity(cost: int) -> None:
    """LeakyBucket(3, 2.0, mode="shaper").check(2) on an idle shaper said retry_after=0.5,
    and the same after waiting 0.5 s, forever."""
    loop = asyncio.get_running_loop()
    shaper = LeakyBucket(3, 2.0, mode="shaper")
    assert shaper.check(cost)  # idle: admitted at once
    refused = shaper.check(cost)
    assert not refused and refused.retry_after == pytest.approx(cost * 0.5)
    await asyncio.sleep(refused.retry_after)
    assert shaper.check(cost)
    # Waiting: a request leaves when the units ahead of it have left.
    shaper = LeakyBucket(3, 2.0, mode="shaper")
    await shaper.acquire(1)
    t0 = loop.time()
    await shaper.acquire(cost)
    assert loop.time() - t0 == pytest.approx(0.5)
    assert not shaper.try_acquire(1)


@settings(max_examples=100, deadline=None)
@given(costs=st.lists(st.integers(1, 3), min_size=1, max_size=12), wait=st.booleans())
def test_shaper_spaces_requests_by_their_cost(costs: list[int], wait: bool) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        shaper = LeakyBucket(3, 2.0, mode="shaper")
        admitted: list[tuple[float, int]] = []
        for cost in costs:
            if wait:
                try:
                    await shaper.acquire(cost)
                except RateLimited as full:  # the line ahead is too long to join yet
                    await asyncio.sleep(full.retry_after or 0.0)
                    await shaper.acquire(cost)
            else:
                decision = shaper.check(cost)
                if not decision:
                    await asyncio.sleep(decision.retry_after)
                    assert shaper.check(cost)
            admitted.append((loop.time(), cost))
        for (t1, c1), (t2, _) in itertools.pairwise(admitted):
            assert t2 - t1 >= c1 * 0.5 - EPS

    run(main())


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_the_last_waiter_cancelled_leaves_no_timer(kind: str) -> None:
    """Its wake-up timer stayed armed for nobody (found by storms with seeds past 100)."""

    async def main() -> None:
        limiter = KINDS[kind]()
        while limiter.try_acquire():
            pass
        waiter = asyncio.ensure_future(limiter.acquire())
        await asyncio.sleep(0)
        assert limiter.statistics().waiting == 1
        waiter.cancel()
        await asyncio.gather(waiter, return_exceptions=True)
        await asyncio.sleep(0)
        assert limiter.statistics().waiting == 0
        assert limiter._local._timer is None
        assert not asyncio.get_running_loop()._scheduled  # type: ignore[attr-defined]

    run(main())


@pytest.mark.parametrize("seed", [104, 116, 122, 123])
@pytest.mark.parametrize("kind", sorted(KINDS))
def test_storm_seeds_that_left_a_timer(kind: str, seed: int) -> None:
    async def main() -> None:
        verify(await storm(kind, seed, 150))

    run(main())

"""Adaptive concurrency: algorithms' arithmetic, and convergence on a simulated backend."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import pytest

from aioresilience import AIMD, AdaptiveLimiter, ConcurrencyLimited, Gradient2, Vegas


def test_aimd_arithmetic() -> None:
    aimd = AIMD(timeout=1.0)
    assert aimd.update(10, 0.1, 5, False) == 11  # in use: grow by one
    assert aimd.update(10, 0.1, 2, False) == 10  # app-limited: unchanged
    assert aimd.update(10, 0.1, 5, True) == 9  # drop: multiplicative decrease
    assert aimd.update(10, 2.0, 5, False) == 9  # too slow counts as a drop


def test_vegas_arithmetic() -> None:
    vegas = Vegas()
    assert vegas.update(10, 0.1, 10, False) == 16  # no queue: + beta (6L, L=1)
    assert vegas.update(10, 0.15, 10, False) == 10  # queue 4: between alpha (3) and beta (6)
    assert vegas.update(10, 1.0, 10, False) == 9  # queue 9 > beta: - L
    assert vegas.update(10, 0.1, 10, True) == 9  # drop: - L
    assert vegas.update(10, 0.1, 3, False) == 10  # app-limited


def test_gradient2_shrinks_when_latency_rises() -> None:
    gradient = Gradient2(smoothing=1.0, queue_size=0)
    assert gradient.update(20, 0.1, 20, False) == pytest.approx(20)  # gradient 1 at steady rtt
    # A short rtt far above the long average: gradient clamps at 0.5.
    assert gradient.update(20, 10.0, 20, False) == pytest.approx(10)


async def test_admits_while_below_the_limit_and_ignores_cancellation() -> None:
    limiter = AdaptiveLimiter(AIMD(), initial_limit=2, min_limit=1, max_limit=10)
    gate = asyncio.Event()
    tasks = [asyncio.create_task(limiter.call(gate.wait)) for _ in range(2)]
    await asyncio.sleep(0)
    with pytest.raises(ConcurrencyLimited):
        async with limiter:
            pass
    tasks[0].cancel()
    await asyncio.gather(tasks[0], return_exceptions=True)
    assert limiter.limit == 2  # a cancellation is not a measurement
    gate.set()
    await tasks[1]
    stats = limiter.statistics()
    assert (stats.in_flight, stats.admitted, stats.rejected) == (0, 2, 1)


@pytest.mark.parametrize("algorithm", [AIMD(timeout=0.2), Vegas(), Gradient2()], ids=repr)
async def test_limit_converges_near_the_knee_and_recovers(algorithm: object) -> None:
    """A backend whose latency grows with concurrency beyond its knee; it degrades, recovers."""
    loop = asyncio.get_running_loop()
    knee = {"value": 20}
    in_flight = 0

    async def backend() -> None:
        nonlocal in_flight
        in_flight += 1
        try:
            excess = max(0, in_flight - knee["value"]) / knee["value"]
            await asyncio.sleep(0.05 * (1 + 4 * excess))  # 50 ms below the knee
        finally:
            in_flight -= 1

    limiter = AdaptiveLimiter(algorithm, initial_limit=5, min_limit=1, max_limit=200)  # type: ignore[arg-type]
    rng = random.Random(1)
    stop_at = 36.0

    async def client() -> None:
        while loop.time() < stop_at:
            try:
                await limiter.call(backend)
            except ConcurrencyLimited:
                await asyncio.sleep(0.05 + rng.random() * 0.05)  # refused: back off

    samples: dict[str, list[int]] = {"healthy": [], "degraded": [], "recovered": []}

    async def observe() -> None:
        while loop.time() < stop_at:
            await asyncio.sleep(0.5)
            t = loop.time()
            if 6 <= t < 12:
                samples["healthy"].append(limiter.limit)
            elif 12 <= t < 14:
                knee["value"] = 5  # the backend degrades
            elif 18 <= t < 24:
                samples["degraded"].append(limiter.limit)
            elif 24 <= t < 26:
                knee["value"] = 20  # and recovers
            elif t >= 30:
                samples["recovered"].append(limiter.limit)

    await asyncio.gather(observe(), *(client() for _ in range(60)))
    healthy = sum(samples["healthy"]) / len(samples["healthy"])
    degraded = sum(samples["degraded"]) / len(samples["degraded"])
    recovered = sum(samples["recovered"]) / len(samples["recovered"])
    # Near the knee (20, then 5, then 20 again): within 0.7x..2x of it in every phase.
    assert 14 <= healthy <= 40, samples
    assert 3.5 <= degraded <= 12, samples
    assert 14 <= recovered <= 40, samples
    assert len(limiter.statistics().history) > 3


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="min_limit <= initial_limit <= max_limit"):
        AdaptiveLimiter(AIMD(), initial_limit=50, max_limit=10)
    with pytest.raises(TypeError, match="algorithm must have update"):
        AdaptiveLimiter(object())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="min_limit must be >= 1"):
        AdaptiveLimiter(min_limit=0)


# -- issue 11 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: AIMD(timeout=True), TypeError, "timeout must be a number, got True"),
        (lambda: AIMD(backoff=True), TypeError, "backoff must be a number, got True"),
        (lambda: AIMD(backoff="x"), TypeError, "backoff must be a number, got 'x'"),  # type: ignore[arg-type]
        (lambda: AIMD(timeout=10**400), ValueError, "timeout must be within float range"),
        (lambda: Vegas(probe_multiplier=True), TypeError, "probe_multiplier must be an int"),
        (
            lambda: Vegas(probe_multiplier=10**400),
            ValueError,
            "probe_multiplier must be <= 1000000",
        ),
        (lambda: Gradient2(long_window=True), TypeError, "long_window must be an int, got True"),
        (lambda: Gradient2(tolerance=True), TypeError, "tolerance must be a number, got True"),
        (lambda: Gradient2(smoothing=True), TypeError, "smoothing must be a number, got True"),
        (lambda: Gradient2(queue_size=float("nan")), ValueError, "queue_size must be a finite"),
        (lambda: Gradient2(tolerance="2"), TypeError, "tolerance must be a number"),  # type: ignore[arg-type]
        (lambda: AdaptiveLimiter(max_limit=10**400), ValueError, "max_limit must be <= 1000000000"),
        (
            lambda: AdaptiveLimiter(sample_window=10**400),
            ValueError,
            "sample_window must be within",
        ),
        (lambda: AdaptiveLimiter(name=5), TypeError, "name must be a str or None, got 5"),  # type: ignore[arg-type]
    ],
)
def test_bad_values_found_by_issue_11(build: Any, error: type, message: str) -> None:
    """Issue 11 item 18: bools are not numbers, huge values fail at construction."""
    with pytest.raises(error, match=message):
        build()


async def test_adaptive_limiter_decorator_keeps_defaults() -> None:
    """Issue 11 item 19."""

    async def fetch(a: int, b: int = 2, *, c: int = 3) -> int:
        return a + b + c

    decorated = AdaptiveLimiter()(fetch)
    assert decorated.__defaults__ == (2,)
    assert decorated.__kwdefaults__ == {"c": 3}
    assert await decorated(1) == 6


def test_gradient2_long_window_is_bounded() -> None:
    """Found by the constructor fuzz: a long_window beyond float range failed on first use."""
    with pytest.raises(ValueError, match="long_window must be <= 1000000000"):
        Gradient2(long_window=10**400)
    assert Gradient2(long_window=10**9).update(10.0, 0.1, 5, False) > 0


async def test_a_subclass_overriding_acquire_and_release_is_called_by_every_form() -> None:
    """The guard forms enter and leave through acquire() and release() themselves."""
    calls: list[str] = []

    class Traced(AdaptiveLimiter):
        def acquire(self) -> float:
            calls.append("acquire")
            return super().acquire()

        def release(self, started: float, exc: BaseException | None = None) -> None:
            calls.append("release")
            super().release(started, exc)

    limiter = Traced()

    async def work() -> None:
        return None

    async with limiter:
        pass
    await limiter.call(work)
    await limiter(work)()
    assert calls == ["acquire", "release"] * 3 and limiter.in_flight == 0


def test_algorithm_is_checked_at_construction_and_a_bad_update_never_fails_a_call() -> None:
    """A class, an async update are refused up front; an update returning a non-number (or
    NaN) is logged and the limit kept, never an error out of the call that fed it."""
    import math

    import aioresilience as ar

    class AsyncUpdate:
        async def update(self, limit, rtt, in_flight, dropped):  # type: ignore[no-untyped-def]
            return limit

    for algorithm in (ar.Vegas, AsyncUpdate()):
        with pytest.raises(TypeError, match="algorithm"):
            ar.AdaptiveLimiter(algorithm)  # type: ignore[arg-type]

    for returned in (None, "3", math.nan):

        class Bad:
            def update(self, limit, rtt, in_flight, dropped, returned=returned):  # type: ignore[no-untyped-def]
                return returned

        limiter = ar.AdaptiveLimiter(Bad(), initial_limit=5, min_samples=1, sample_window=0)
        limiter.release(limiter.acquire())  # no error
        assert limiter.limit == 5 and limiter.in_flight == 0


def test_an_infinite_sample_window_is_refused() -> None:
    """sample_window=inf was taken as no window at all (an update every min_samples calls)."""
    import math

    with pytest.raises(ValueError, match="sample_window"):
        AdaptiveLimiter(sample_window=math.inf)
    assert AdaptiveLimiter(sample_window=None).sample_window == 0.0  # type: ignore[arg-type]


def test_a_limiter_made_before_its_virtual_loop_still_adapts() -> None:
    """Made at module level, its first window began on the monotonic clock's reading; in a
    virtual-time loop (time 0) that window never closed, and the limit never moved."""
    from aioresilience.testing import run

    updates: list[float] = []

    class Recording:
        def update(self, limit: float, rtt: float, in_flight: int, dropped: bool) -> float:
            updates.append(rtt)
            return limit

    limiter = AdaptiveLimiter(Recording(), initial_limit=4, sample_window=1.0, min_samples=1)

    async def main() -> None:
        for _ in range(3):
            async with limiter:
                await asyncio.sleep(1.0)

    run(main())
    assert updates == [1.0, 1.0]  # (its first window begins at its loop's first reading)


def test_a_drop_with_no_measurable_rtt_still_lowers_the_limit() -> None:
    # Instant refusals from further down (rtt 0 under virtual time or a ManualClock): the
    # drop is evidence of overload even though the rtt says nothing.
    assert Vegas().update(20, 0.0, 20, True) == 19
    assert Vegas().update(20, 0.0, 20, False) == 20
    gradient = Gradient2(smoothing=1.0, queue_size=0)
    assert gradient.update(20, 0.0, 20, True) == pytest.approx(10)
    assert gradient.update(20, 0.0, 5, True) == 20  # app-limited: unchanged
    assert gradient.update(20, 0.0, 20, False) == 20

"""Rate limiting: aioresilience against aiolimiter, limits, pyrate-limiter and hyx.

Sections:
- admit: a non-waiting admission around ``await f()``, the limit never reached;
- correctness after idle: how many requests each token bucket admits in one instant after a
  long idle period (the bound is the capacity);
- accuracy: 1,000/s shared by 200 tasks for 3 s of real time: admitted vs ideal, the busiest
  100 ms window after the first second, and each admission's lateness against the ideal FIFO
  schedule (p50/p99);
- keyed: 1,000,000 distinct keys: ns per first hit and per repeat hit, bytes per live key,
  and whether idle keys are reclaimed.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from typing import Any

from harness import RunN, acquire_then_call, cases, measure, trivial, with_guard
from tables import Section

import aioresilience as ar
from aioresilience.testing import VirtualTimeLoop

HUGE = 10**12  # a capacity that is never reached: the admit path only
FAST = 1e9  # the highest rate the GCRA family keeps (one unit per nanosecond)


# -- admit ----------------------------------------------------------------------------------


def ours_try(limiter: ar.RateLimiter[Any]) -> Callable[[], RunN]:
    def make() -> RunN:
        async def run(n: int) -> None:
            try_acquire, f = limiter.try_acquire, trivial
            for _ in range(n):
                if try_acquire():
                    await f()

        return run

    return make


def hyx_token_bucket() -> Callable[[], Awaitable[Any]]:
    from hyx.ratelimit.managers import TokenBucketLimiter

    return TokenBucketLimiter(HUGE, 1.0).acquire  # type: ignore[no-any-return]


def aiolimiter() -> Any:
    from aiolimiter import AsyncLimiter

    return AsyncLimiter(HUGE, 1.0)


def limits_strategy(name: str) -> Callable[[], RunN]:
    def make() -> RunN:
        import limits
        from limits.aio import strategies
        from limits.aio.storage import MemoryStorage

        strategy = getattr(strategies, name)(MemoryStorage())
        item = limits.parse(f"{HUGE}/second")

        async def run(n: int) -> None:
            hit, f = strategy.hit, trivial
            for _ in range(n):
                if await hit(item, "k"):
                    await f()

        return run

    return make


def pyrate_try() -> RunN:
    from pyrate_limiter import Duration, InMemoryBucket, Limiter, Rate

    limiter = Limiter(InMemoryBucket([Rate(10**9, Duration.SECOND)]))

    async def run(n: int) -> None:
        try_acquire, f = limiter.try_acquire, trivial
        for _ in range(n):
            if try_acquire("k", blocking=False):
                await f()

    return run


def admit_cases() -> dict[str, Callable[[], RunN]]:
    return {
        "aioresilience TokenBucket.try_acquire": ours_try(ar.TokenBucket(HUGE, FAST)),
        "aioresilience GCRA.try_acquire": ours_try(ar.GCRA(10**9, 1.0, burst=HUGE)),
        "aioresilience LeakyBucket.try_acquire": ours_try(ar.LeakyBucket(HUGE, FAST)),
        "aioresilience FixedWindowCounter.try_acquire": ours_try(ar.FixedWindowCounter(HUGE, 1.0)),
        "aioresilience SlidingWindowCounter.try_acquire": ours_try(
            ar.SlidingWindowCounter(HUGE, 1.0)
        ),
        "aioresilience SlidingWindowLog.try_acquire": ours_try(ar.SlidingWindowLog(HUGE, 1.0)),
        "aioresilience TokenBucket await acquire()": acquire_then_call(
            lambda: ar.TokenBucket(HUGE, FAST).acquire
        ),
        "aioresilience TokenBucket async with": with_guard(lambda: ar.TokenBucket(HUGE, FAST)),
        "hyx TokenBucketLimiter await acquire()": acquire_then_call(hyx_token_bucket),
        "aiolimiter AsyncLimiter async with": with_guard(aiolimiter),
        "limits (async memory) FixedWindow hit": limits_strategy("FixedWindowRateLimiter"),
        "limits (async memory) SlidingWindowCounter hit": limits_strategy(
            "SlidingWindowCounterRateLimiter"
        ),
        "limits (async memory) MovingWindow hit": limits_strategy("MovingWindowRateLimiter"),
        "pyrate-limiter InMemoryBucket try_acquire": pyrate_try,
    }


# -- correctness after idle -----------------------------------------------------------------


async def burst_after_idle() -> dict[str, int]:
    """Capacity 10 at 10/s: use one, sit idle 100 s (virtual), then ask 30 times at once."""
    from aiolimiter import AsyncLimiter
    from hyx.ratelimit.exceptions import RateLimitExceeded
    from hyx.ratelimit.managers import TokenBucketLimiter

    counts: dict[str, int] = {}
    ours = ar.TokenBucket(10, 10.0)
    ours.try_acquire()
    hyx = TokenBucketLimiter(10, 1.0)
    await hyx.acquire()
    aiolim = AsyncLimiter(10, 1.0)
    await aiolim.acquire()
    await asyncio.sleep(100)
    counts["aioresilience TokenBucket"] = sum(ours.try_acquire() for _ in range(30))
    admitted = 0
    for _ in range(30):
        try:
            await hyx.acquire()
            admitted += 1
        except RateLimitExceeded:
            pass
    counts["hyx TokenBucketLimiter"] = admitted
    admitted = 0
    for _ in range(30):
        if aiolim.has_capacity():
            await aiolim.acquire()
            admitted += 1
    counts["aiolimiter AsyncLimiter"] = admitted
    return counts


# -- accuracy -------------------------------------------------------------------------------


async def accuracy(
    make_acquire: Callable[[], Callable[[], Awaitable[Any]]],
    rate: float = 1000.0,
    burst: int = 10,
    tasks: int = 200,
    seconds: float = 3.0,
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    acquire = make_acquire()
    gc.collect()  # earlier sections leave garbage whose collection would stall this run
    granted: list[tuple[float, float]] = []  # (request time, admit time)
    start = loop.time()
    stop_at = start + seconds

    async def client() -> None:
        while True:
            asked = loop.time()
            if asked >= stop_at:
                return
            await acquire()
            now = loop.time()
            if now >= stop_at:
                return
            granted.append((asked, now))

    await asyncio.gather(*(client() for _ in range(tasks)))
    admits = sorted(t for _, t in granted)
    # Busiest 100 ms window after the first second.
    busiest, lo = 0, 0
    for hi, t in enumerate(admits):
        while admits[lo] <= t - 0.1:
            lo += 1
        if t - start >= 1.0:
            busiest = max(busiest, hi - lo + 1)
    # Lateness against the ideal FIFO schedule: the k-th request (by asking order) is due
    # at max(its request time, first + (k + 1 - burst) / rate), `first` the first request.
    order = sorted(granted)
    first = order[0][0]
    lateness = [
        (admit - max(asked, first + max(0, k + 1 - burst) / rate)) * 1000
        for k, (asked, admit) in enumerate(order)
    ]
    ideal = (stop_at - first) * rate + burst  # from the first request (task start-up varies)
    quantiles = statistics.quantiles(lateness, n=100)
    return {
        "admitted": len(admits),
        "ideal": ideal,
        "error_pct": (len(admits) - ideal) / ideal * 100,
        "busiest_100ms": busiest,
        "late_p50_ms": quantiles[49],
        "late_p99_ms": quantiles[98],
    }


def accuracy_cases() -> dict[str, Callable[[], Callable[[], Awaitable[Any]]]]:
    def ours() -> Callable[[], Awaitable[Any]]:
        return ar.TokenBucket(10, 1000.0).acquire

    def aiolimiter() -> Callable[[], Awaitable[Any]]:
        from aiolimiter import AsyncLimiter

        return AsyncLimiter(10, 0.01).acquire  # 10 per 10 ms: the same rate and burst

    return {
        "aioresilience TokenBucket(10, 1000/s)": ours,
        "aiolimiter AsyncLimiter(10, 0.01)": aiolimiter,
    }


# -- keyed ----------------------------------------------------------------------------------


async def keyed(keys: int) -> dict[str, dict[str, float]]:
    """ns per hit (first and repeat, each key once per pass) and bytes per live key.

    Speed and memory are measured on separate fresh limiters: tracing allocations slows the
    code it traces.
    """
    names = [f"user-{i}" for i in range(keys)]

    def ours(factory: Callable[[], ar.RateLimiter[Any]]) -> Callable[[], Any]:
        def make() -> Any:
            try_acquire = factory().try_acquire

            async def passes() -> None:
                for key in names:
                    try_acquire(key=key)

            return passes

        return make

    def limits_fixed_window() -> Any:
        import limits
        from limits.aio.storage import MemoryStorage
        from limits.aio.strategies import FixedWindowRateLimiter

        hit = FixedWindowRateLimiter(MemoryStorage()).hit
        item = limits.parse("10/hour")

        async def passes() -> None:
            for key in names:
                await hit(item, key)

        return passes

    # Hour-long limits, so every key stays live (not yet fresh) for the whole measurement.
    contenders: dict[str, Callable[[], Any]] = {
        "aioresilience GCRA(10/hour)": ours(lambda: ar.GCRA(10, 3600.0, max_keys=2 * keys)),
        "aioresilience TokenBucket(10, 10/hour)": ours(
            lambda: ar.TokenBucket(10, "10/hour", max_keys=2 * keys)
        ),
        "aioresilience FixedWindowCounter(10/hour)": ours(
            lambda: ar.FixedWindowCounter(10, 3600.0, max_keys=2 * keys)
        ),
        "limits FixedWindow(10/hour) (async memory)": limits_fixed_window,
    }
    out: dict[str, dict[str, float]] = {}
    for name, make in contenders.items():
        one_pass = make()
        gc.collect()
        started = time.perf_counter()
        await one_pass()
        first = (time.perf_counter() - started) / keys * 1e9
        repeats = []
        for _ in range(3):  # the median of three passes over keys that all exist
            started = time.perf_counter()
            await one_pass()
            repeats.append((time.perf_counter() - started) / keys * 1e9)
        repeat = statistics.median(repeats)
        del one_pass
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        traced_pass = make()
        await traced_pass()
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
        del traced_pass
        out[name] = {"first_ns": first, "repeat_ns": repeat, "bytes_per_key": held / keys}
    return out


async def reclaim(keys: int) -> dict[str, float]:
    """In virtual time: fill ``keys`` keys, let them idle, check they are forgotten."""
    limiter = ar.GCRA(10, 1.0, max_keys=2 * keys)
    for i in range(keys):
        limiter.try_acquire(key=i)
    live = len(limiter.store)
    period = limiter.store.period
    await asyncio.sleep(period + 0.001)
    limiter.try_acquire(key="a")
    await asyncio.sleep(period + 0.001)
    limiter.try_acquire(key="b")
    return {"live_before": live, "live_after_idle": len(limiter.store), "period_s": period}


# -- entry ----------------------------------------------------------------------------------


def run(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
    loop_name: str,
    quick: bool,
    parts: set[str] = frozenset({"admit", "accuracy"}),  # type: ignore[assignment]
) -> dict[str, Section]:
    """The parts asked for: ``admit`` (ns/op), ``accuracy`` (3 s of real time per limiter)."""
    n, repeats = (5_000, 3) if quick else (50_000, 9)
    seconds = 0.5 if quick else 3.0
    out: dict[str, Section] = {}
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        if "admit" in parts:
            results = runner.run(measure(admit_cases(), n, repeats))
            out["admit"] = cases("Rate limit, non-waiting admit", loop_name, results)
        if "accuracy" in parts:
            out["accuracy"] = {
                "kind": "accuracy",
                "title": f"Accuracy at 1,000/s, 200 tasks, {seconds:g} s",
                "loop": loop_name,
                "rows": [
                    {"limiter": name, **runner.run(accuracy(make, seconds=seconds))}
                    for name, make in accuracy_cases().items()
                ],
            }
    return out


def run_once(quick: bool) -> list[Section]:
    keys = 20_000 if quick else 1_000_000
    virtual = VirtualTimeLoop()
    try:
        counts = virtual.run_until_complete(burst_after_idle())
        try:
            rec: dict[str, Any] = virtual.run_until_complete(reclaim(keys))
        except (AttributeError, TypeError) as exc:
            # reclaim() counts live keys through the limiter's store (len(), .period): a
            # refactor of the store's seam may change that; the timings below do not need it.
            rec = {"skipped": f"{type(exc).__name__}: {exc}"}
    finally:
        virtual.close()
    with asyncio.Runner() as runner:
        results = runner.run(keyed(keys))
    return [
        {
            "kind": "burst",
            "title": "Token buckets of capacity 10: admitted in one instant after 100 s idle",
            "rows": [{"limiter": name, "admitted": count} for name, count in counts.items()],
        },
        {
            "kind": "keyed",
            "title": f"Keyed: {keys:,} distinct keys",
            "loop": "asyncio",
            "keys": keys,
            "rows": [{"limiter": name, **r} for name, r in results.items()],
            "reclaim": rec,
        },
    ]

"""What reading the primitive's clock costs on the limiter and breaker hot paths (issue 12).

Each case runs with the default clock (LoopClock) and with a clock whose ``time`` is
``time.monotonic`` (what the removed ``_clock.now`` was), in adjacent pairs that alternate
which goes first, timed in this thread's CPU time (``time.thread_time_ns``: a loaded machine's
descheduling does not count). Prints the median extra cost, and the 10th-90th percentile of
the pairs. ``python benchmarks/clock_pairs.py [PAIRS]`` (default 150).
"""

import asyncio
import gc
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from harness import trivial

import aioresilience as ar


class Mono:  # what `_clock.now` was: time.monotonic behind one attribute lookup
    time = staticmethod(time.monotonic)

    def call_at(self, when, cb):
        return asyncio.get_running_loop().call_at(when, cb)

    async def sleep(self, s):
        await asyncio.sleep(s)


class Naive(Mono):  # the loop's clock asked for every time (no remembered loop)
    def time(self):
        return asyncio.get_running_loop().time()


HUGE, FAST = 10**9, 1e9


def tb(clock):
    f = ar.TokenBucket(HUGE, FAST, clock=clock).try_acquire

    async def run(n):
        for _ in range(n):
            f()

    return run


def gcra(clock):
    f = ar.GCRA(10**9, 1.0, burst=HUGE, clock=clock).try_acquire

    async def run(n):
        for _ in range(n):
            f()

    return run


def tb_with(clock):
    g = ar.TokenBucket(HUGE, FAST, clock=clock)

    async def run(n):
        for _ in range(n):
            async with g:
                await trivial()

    return run


def br(clock, **kw):
    w = ar.CircuitBreaker(clock=clock, **kw)(trivial)

    async def run(n):
        for _ in range(n):
            await w()

    return run


def br_slow(clock):
    return br(clock, slow_call_duration=5.0, slow_call_rate_threshold=0.9)


def br_open(clock):
    b = ar.CircuitBreaker(clock=clock, failure_threshold=1, break_duration=1e9)
    b.trip()

    async def run(n):
        for _ in range(n):
            try:
                async with b:
                    pass
            except ar.CircuitBreakerOpenError:
                pass

    return run


cases = {
    "TokenBucket.try_acquire": tb,
    "GCRA.try_acquire": gcra,
    "TokenBucket async with": tb_with,
    "CircuitBreaker @decorator (closed)": br,
    "CircuitBreaker @decorator, slow_call_duration": br_slow,
    "CircuitBreaker async with, open (rejects)": br_open,
}
PAIRS, N = (int(sys.argv[1]) if len(sys.argv) > 1 else 150), 500


async def pair(a, b):
    ratios = []
    for i in range(PAIRS):
        first, second = (a, b) if i % 2 == 0 else (b, a)
        t0 = time.thread_time_ns()
        await first(N)
        t1 = time.thread_time_ns()
        await second(N)
        t2 = time.thread_time_ns()
        ta, tb_ = (t1 - t0, t2 - t1) if i % 2 == 0 else (t2 - t1, t1 - t0)
        ratios.append((tb_ / ta, ta / N))
    r = sorted(x for x, _ in ratios)
    return (
        statistics.median(r) - 1,
        r[len(r) // 10] - 1,
        r[9 * len(r) // 10] - 1,
        statistics.median(t for _, t in ratios),
    )


async def main():
    gc.disable()
    for name, make in cases.items():
        base = make(Mono())
        await base(2000)
        for label, clock in (("LoopClock", None), ("naive", Naive())):
            var = make(clock)
            await var(2000)
            m, lo, hi, ns = await pair(base, var)
            spread = f"{m:+.1%} ({lo:+.1%} .. {hi:+.1%})"
            row = f"| {sys.version.split()[0]} | {name} | {label} | {ns:.0f} | {spread} |"
            print(row, flush=True)


asyncio.run(main())

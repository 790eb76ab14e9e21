"""The rate-limit algorithms side by side: many concurrent clients against a resource limited
to 20 requests/s.

Fifty clients each send about one request per second (so 50/s are offered against a limit of
20/s) for 10 seconds. Each request waits at most 0.5 s for the limiter, else it is refused.
For every algorithm the demo prints what was admitted and refused, the busiest second seen by
the resource, and how long admitted callers waited.

By default the scenario runs in virtual time (aioresilience.testing): 10 simulated seconds take
a fraction of a real one, and the run is the same every time. ``--real-time`` runs it on a
normal event loop (3 s per algorithm).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
from collections.abc import Callable
from typing import Any

import aioresilience as ar
from aioresilience.testing import VirtualTimeLoop

LIMITERS: dict[str, Callable[[], ar.RateLimiter[Any]]] = {
    "TokenBucket(20, 20/s)": lambda: ar.TokenBucket(20, 20.0),
    "LeakyBucket meter(20, 20/s)": lambda: ar.LeakyBucket(20, 20.0),
    "LeakyBucket shaper(10, 20/s)": lambda: ar.LeakyBucket(10, 20.0, mode="shaper"),
    "GCRA(20/s, burst 5)": lambda: ar.GCRA(20, 1.0, burst=5),
    "FixedWindowCounter(20/1s)": lambda: ar.FixedWindowCounter(20, 1.0),
    "SlidingWindowLog(20/1s)": lambda: ar.SlidingWindowLog(20, 1.0),
    "SlidingWindowCounter(20/1s)": lambda: ar.SlidingWindowCounter(20, 1.0),
}


async def scenario(
    limiter: ar.RateLimiter[Any], *, clients: int, seconds: float, seed: int
) -> dict[str, float]:
    loop = asyncio.get_running_loop()
    rng = random.Random(seed)
    start = loop.time()
    admitted_at: list[float] = []
    waits: list[float] = []
    refused = 0

    async def client() -> None:
        nonlocal refused
        while True:
            delay = rng.expovariate(1.0)  # about one request per second
            if loop.time() + delay - start >= seconds:
                return  # the next request would come after the end: not slept for
            await asyncio.sleep(delay)
            asked = loop.time()
            try:
                await limiter.acquire(timeout=0.5)
            except ar.RateLimited:
                refused += 1
                continue
            admitted_at.append(loop.time() - start)
            waits.append(loop.time() - asked)

    await asyncio.gather(*(client() for _ in range(clients)))
    admitted_at.sort()
    busiest, lo = 0, 0
    for hi, t in enumerate(admitted_at):
        while admitted_at[lo] <= t - 1.0:
            lo += 1
        busiest = max(busiest, hi - lo + 1)
    quantiles = statistics.quantiles(waits, n=100) if len(waits) > 1 else [0.0] * 99
    return {
        "admitted": len(admitted_at),
        "refused": refused,
        "busiest": busiest,
        "wait_p50": quantiles[49] * 1000,
        "wait_p99": quantiles[98] * 1000,
    }


async def main(seconds: float) -> None:
    print(f"50 clients offering ~50 requests/s for {seconds:g} s; limit 20/s; max wait 0.5 s\n")
    print(
        f"{'limiter':30} {'admitted':>8} {'refused':>8} {'busiest 1s':>10} "
        f"{'wait p50':>9} {'wait p99':>9}"
    )
    for name, make in LIMITERS.items():
        r = await scenario(make(), clients=50, seconds=seconds, seed=7)
        print(
            f"{name:30} {r['admitted']:8.0f} {r['refused']:8.0f} {r['busiest']:10.0f} "
            f"{r['wait_p50']:7.1f}ms {r['wait_p99']:7.1f}ms"
        )
    print(
        "\nThe fixed window lets up to 2x the limit through across a window boundary; the"
        "\nsliding log never exceeds 20 in any second; the shaper spaces requests evenly."
    )

    # Per-key limits: each client its own 2/s budget, from one limiter object.
    per_client = ar.TokenBucket(2, 2.0, max_wait=0)
    admitted = sum(per_client.try_acquire(key=f"client-{i % 3}") for i in range(12))
    print(f"\nPer-key: 12 immediate requests from 3 clients at 2 each -> {admitted} admitted")
    print(f"{per_client!r}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--real-time", action="store_true", help="run on a normal event loop")
    args = parser.parse_args()
    if args.real_time:
        asyncio.run(main(seconds=3.0))
    else:
        loop = VirtualTimeLoop()
        try:
            loop.run_until_complete(main(seconds=10.0))
        finally:
            loop.close()

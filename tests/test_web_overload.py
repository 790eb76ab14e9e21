"""Issue 13, item 6: an adaptive limiter at the edge under 2x overload, on a real uvicorn.

The app (``benchmarks/bench_web.overload_app``, served by uvicorn in a subprocess) has a fixed
service capacity: ``CAPACITY`` requests at once (an asyncio.Semaphore), each served in
``SERVICE`` seconds, so ``CAPACITY / SERVICE`` requests per second at most. The in-repo load
loop (``benchmarks/httpload.open_loop``: seeded Poisson arrivals at a fixed rate, whatever the
server does) offers twice that. Unprotected, the queue in front of the semaphore grows for as
long as the overload lasts, and so does the latency. Behind
``ResilienceMiddleware(rules=[Rule(guards=[AdaptiveLimiter()])])`` the limiter learns from the
latencies the middleware feeds it how many requests may run at once: the admitted requests
keep their latency near the unloaded one, goodput stays within 10 % of capacity, and the
excess gets a 503 at once.

Real time (a real server on a real socket), so the assertions are about shape, with margins:
ratios of latencies measured in the same test, not absolute timings; the numbers seen are in
the assertion messages. The exact targets (admitted p99 within 2x of the unloaded p99) are
measured by the ``overload`` part of ``benchmarks/bench_web.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_web import OVERLOAD_CAPACITY, OVERLOAD_SERVICE, Server
from httpload import OpenLoopResult, open_loop, percentile

RATE = OVERLOAD_CAPACITY / OVERLOAD_SERVICE  # the capacity, requests/s
OVERLOAD = 3.0  # seconds of 2x load
WARMUP = 1.0  # seconds the limiter is given to learn before its admitted requests are judged

pytestmark = [pytest.mark.real_time, pytest.mark.wall_timeout(90)]


def serving(case: str) -> Iterator[Server]:
    server = Server("fastapi", case)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def unprotected() -> Iterator[Server]:
    yield from serving("overload-none")


@pytest.fixture
def protected() -> Iterator[Server]:
    yield from serving("overload-adaptive")


async def unloaded_p99(server: Server) -> float:
    """p99 at half the capacity on the unprotected server: the service's own latency."""
    result = await open_loop(server.port, "/work", rate=RATE / 2, duration=1.5, seed=1)
    assert result.count(200) == len(result.outcomes)
    return percentile(result.latencies(200), 0.99)


def summary(base_p99: float, loaded: OpenLoopResult) -> str:
    admitted = loaded.latencies(200, after=WARMUP)
    refused = loaded.latencies(503, after=WARMUP)
    return (
        f"unloaded p99 {base_p99:.3f}s; admitted p50 {percentile(admitted, 0.5):.3f}s, p99 "
        f"{percentile(admitted, 0.99):.3f}s; goodput {len(admitted) / (OVERLOAD - WARMUP):.0f}/s"
        f" of {RATE:.0f}/s; {len(refused)} refused, p50 {percentile(refused, 0.5):.4f}s"
    )


async def test_unprotected_latency_grows_with_the_overload(unprotected: Server) -> None:
    base_p99 = await unloaded_p99(unprotected)
    loaded = await open_loop(unprotected.port, "/work", rate=2 * RATE, duration=OVERLOAD, seed=2)
    seen = summary(base_p99, loaded)
    assert loaded.count(200) == len(loaded.outcomes), "unprotected: every request is served"
    p99 = percentile(loaded.latencies(200), 0.99)
    assert p99 > 5 * base_p99, seen
    # Without bound: the later a request arrives, the longer it waits (the queue only grows).
    early = [o.latency for o in loaded.outcomes if o.sent < OVERLOAD / 4]
    late = [o.latency for o in loaded.outcomes if o.sent >= OVERLOAD * 3 / 4]
    assert min(late) > 2 * max(early), seen


async def test_adaptive_limiter_keeps_admitted_latency_and_goodput(
    unprotected: Server, protected: Server
) -> None:
    base_p99 = await unloaded_p99(unprotected)
    loaded = await open_loop(protected.port, "/work", rate=2 * RATE, duration=OVERLOAD, seed=2)
    seen = summary(base_p99, loaded)
    assert {o.status for o in loaded.outcomes} <= {200, 503}, seen
    admitted = loaded.latencies(200, after=WARMUP)
    refused = loaded.latencies(503, after=WARMUP)
    # Bounded: the median admitted request waits less than half a service time in the queue,
    # and even the p99 stays far from the unprotected growth (> 5x above); the 2x-of-p99
    # target itself is the benchmark's, where a stall of the shared machine is one sample.
    assert percentile(admitted, 0.5) < base_p99 * 1.5, seen
    assert percentile(admitted, 0.99) < base_p99 * 3, seen
    # Goodput: 200s among the requests sent after the warm-up, per second of that window.
    assert len(admitted) / (OVERLOAD - WARMUP) >= 0.9 * RATE, seen
    # The excess is refused, and fast: the median 503 takes a small part of a service time.
    assert len(refused) > 0.3 * (len(admitted) + len(refused)), seen
    assert percentile(refused, 0.5) < OVERLOAD_SERVICE / 10, seen

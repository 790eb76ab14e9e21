"""Per-request server CPU of integrations.asgi.ResilienceMiddleware, no server: a loop
awaiting the middleware around a fake ASGI app (start + body to a no-op send), minus the same
loop awaiting the fake app alone. Targets (issue 13): <= 8 us with full IETF headers, <= 3 us
for an exempt path. 1000 client addresses in turn, limits never reached.

Run: ``python benchmarks/bench_asgi.py`` (median of interleaved rounds, ns per request over
the bare app; compare cases of one run, not runs).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aioresilience as ar
from aioresilience.integrations.asgi import ResilienceMiddleware, Rule

N = 20_000
ROUNDS = 7
CLIENTS = [(f"198.51.{i // 250}.{i % 250}", 40000 + i) for i in range(1000)]
HEADERS = [(b"host", b"example.com"), (b"user-agent", b"bench/1.0"), (b"accept", b"*/*")]
START = {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
BODY = {"type": "http.response.body", "body": b"ok"}

App = Callable[[Any, Any, Any], Awaitable[None]]


async def fake_app(scope: Any, receive: Any, send: Any) -> None:
    await send(dict(START))  # a fresh message per response, as a framework builds one
    await send(BODY)


async def send(message: Any) -> None:
    pass


async def receive() -> Any:
    return {"type": "http.request", "body": b""}


def case(app: App, path: str) -> Callable[[int], Awaitable[None]]:
    scopes = [
        {"type": "http", "method": "GET", "path": path, "headers": HEADERS, "client": c}
        for c in CLIENTS
    ]

    async def run(n: int) -> None:
        for i in range(n):
            await app(scopes[i % 1000], receive, send)

    return run


def big(name: str) -> ar.TokenBucket:
    return ar.TokenBucket(capacity=1_000_000_000, refill_rate=1e6, name=name)


def cases() -> dict[str, Callable[[int], Awaitable[None]]]:
    ietf = ResilienceMiddleware(fake_app, rules=[Rule(big("per-ip"))])
    both = ResilienceMiddleware(fake_app, rules=[Rule(big("per-ip"))], headers="both")
    guarded = ResilienceMiddleware(
        fake_app, rules=[Rule(big("per-ip"), guards=[ar.Bulkhead(1_000_000)])]
    )
    return {
        "bare app (baseline)": case(fake_app, "/items/1"),
        "exempt path (/metrics)": case(ietf, "/metrics"),
        "1 limiter, ietf headers": case(ietf, "/items/1"),
        "1 limiter, headers=both": case(both, "/items/1"),
        "1 limiter + bulkhead, ietf": case(guarded, "/items/1"),
    }


async def main() -> None:
    table = cases()
    samples: dict[str, list[float]] = {name: [] for name in table}
    for run in table.values():
        await run(1000)  # warm-up
    gc.disable()
    try:
        for _ in range(ROUNDS):
            for name, run in table.items():  # interleaved: noise hits every case alike
                start = time.process_time_ns()
                await run(N)
                samples[name].append((time.process_time_ns() - start) / N)
    finally:
        gc.enable()
    base = statistics.median(samples["bare app (baseline)"])
    print(f"Python {sys.version.split()[0]}, {N} requests x {ROUNDS} rounds, CPU ns/request")
    width = max(map(len, table))
    for name, values in samples.items():
        median = statistics.median(values)
        print(f"  {name:<{width}}  {median:8.0f}  (+{median - base:6.0f} over the bare app)")


if __name__ == "__main__":
    asyncio.run(main())

"""Per-request CPU of the framework-neutral HTTP core (integrations/_http.py), no server.

What an adapter does per request, minus its own framework work: build a ``RequestInfo`` from
ASGI-shaped pieces, ``select`` the rules, ``await admit`` (key, decision, header rendering).
Cases (1000 client addresses in turn, limits never reached, so every request is admitted):

- ``limiter.check`` alone: the decision, the floor of everything below;
- exempt path (``/metrics``): the <= 3 us target;
- one limiter, full IETF headers (``RateLimit-Policy`` + ``RateLimit``): the <= 8 us target
  covers this plus the adapter's own work;
- ``headers="both"`` (IETF + legacy trio), two limiters merged, a trusted-proxy XFF walk;
- a refusal (429 with problem+json, Retry-After and the fields).

Run: ``python benchmarks/bench_http.py`` (median of interleaved rounds, ns per request; the
machines are noisy: compare cases of one run, not runs).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import aioresilience as ar
from aioresilience.integrations._http import (
    HEALTH_PATHS,
    Protection,
    RequestInfo,
    Rule,
    client_address,
    header_key,
)

N = 20_000
ROUNDS = 7
CLIENTS = [(f"198.51.{i // 250}.{i % 250}", 40000 + i) for i in range(1000)]
HEADERS = [
    (b"host", b"example.com"),
    (b"user-agent", b"bench/1.0"),
    (b"accept", b"*/*"),
    (b"x-api-key", b"key-1"),
]

Case = Callable[[int], Awaitable[None]]


def big(name: str) -> ar.TokenBucket:
    return ar.TokenBucket(capacity=1_000_000_000, refill_rate=1e6, name=name)


def admit_case(protection: Protection, path: str, headers: list[tuple[bytes, bytes]]) -> Case:
    async def run(n: int) -> None:
        clients = CLIENTS
        for i in range(n):
            info = RequestInfo("GET", path, headers, clients[i % 1000])
            rules = protection.select(info.method, info.path)
            if rules:
                admission = await protection.admit(info, rules)
                admission.headers  # noqa: B018  # what the adapter appends

    return run


def check_case() -> Case:
    limiter = big("per-ip")

    async def run(n: int) -> None:
        clients = CLIENTS
        for i in range(n):
            limiter.check(key=clients[i % 1000][0])

    return run


def refusal_case() -> Case:
    limiter = ar.FixedWindowCounter(max_requests=1, window_seconds=3600.0, name="per-ip")
    protection = Protection(Rule(limiter))
    for client in CLIENTS:  # spend every client's quota
        limiter.check(key=client[0])

    async def run(n: int) -> None:
        clients = CLIENTS
        for i in range(n):
            info = RequestInfo("GET", "/x", HEADERS, clients[i % 1000])
            admission = await protection.admit(info, protection.select("GET", "/x"))
            assert admission.response is not None

    return run


def cases() -> dict[str, Case]:
    ietf = Protection(Rule(big("per-ip")), exempt_paths=HEALTH_PATHS)
    both = Protection(Rule(big("per-ip")), headers="both", exempt_paths=HEALTH_PATHS)
    two = Protection(
        [Rule(big("per-ip")), Rule(big("per-key"), key=header_key("x-api-key"))],
        exempt_paths=HEALTH_PATHS,
    )
    proxied = Protection(Rule(big("per-ip"), key=client_address(trusted_proxies=["198.51.0.0/16"])))
    xff = [*HEADERS, (b"x-forwarded-for", b"6.6.6.6, 203.0.113.9, 198.51.0.1")]
    return {
        "limiter.check alone": check_case(),
        "exempt path (/metrics)": admit_case(ietf, "/metrics", HEADERS),
        "1 limiter, ietf headers": admit_case(ietf, "/items/1", HEADERS),
        "1 limiter, headers=both": admit_case(both, "/items/1", HEADERS),
        "2 limiters (ip + api key), ietf": admit_case(two, "/items/1", HEADERS),
        "trusted proxy XFF walk, ietf": admit_case(proxied, "/items/1", xff),
        "refusal 429 (problem+json)": refusal_case(),
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
    print(f"Python {sys.version.split()[0]}, {N} requests x {ROUNDS} rounds, CPU ns/request")
    width = max(map(len, table))
    for name, values in samples.items():
        print(f"  {name:<{width}}  {statistics.median(values):8.0f}")


if __name__ == "__main__":
    asyncio.run(main())

"""Per-request CPU of the aiohttp server middleware (integrations/aiohttp.py), in process.

The middleware is awaited directly on real ``web.Request`` objects (built by aiohttp's
``make_mocked_request`` with a transport whose peername cycles through 1000 clients, the match
info resolved by the app's router), around a handler that returns a fresh ``web.Response``;
the overhead is the time of that minus the handler awaited alone. Limits are never reached, so
every request is admitted. Cases:

- exempt path (``/metrics``): the <= 3 us target;
- one limiter, full IETF headers (``RateLimit-Policy`` + ``RateLimit`` added to the response):
  the <= 8 us target;
- ``headers="both"``; the ``@limit`` decorator alone; a refusal (429 response built);
- the core's ``select`` + ``admit`` on a prebuilt ``RequestInfo`` (what bench_http.py
  measures), so the adapter's own share is the difference.

Run: ``python benchmarks/bench_aiohttp_server.py`` (median of interleaved rounds, us per request;
the machines are noisy: compare cases of one run, not runs).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.test_utils import make_mocked_request

import aioresilience as ar
from aioresilience.integrations._http import RequestInfo, Rule
from aioresilience.integrations.aiohttp import limit, resilience_middleware

N = 20_000
ROUNDS = 7


class Transport:
    """The one thing the middleware asks of the transport: its peer."""

    def __init__(self, peer: tuple[str, int]) -> None:
        self.peer = peer

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self.peer if name == "peername" else default

    def is_closing(self) -> bool:
        return False


async def handler(request: web.Request) -> web.Response:
    return web.Response(text="ok")


def big(name: str) -> ar.TokenBucket:
    return ar.TokenBucket(capacity=1_000_000_000, refill_rate=1e6, name=name)


async def requests(app: web.Application, path: str) -> list[web.Request]:
    out = []
    for i in range(1000):
        headers = {"Host": "example.com", "User-Agent": "bench/1.0", "Accept": "*/*"}
        probe = make_mocked_request("GET", path, headers=headers, app=app)
        match = await app.router.resolve(probe)
        request = make_mocked_request(
            "GET",
            path,
            headers=headers,
            app=app,
            transport=Transport(PEERS[i]),
        )
        # make_mocked_request gives a mock route; the app sets the router's match this way
        # before its middlewares run (benchmark only: the library never touches it).
        request._match_info = match
        out.append(request)
    return out


Case = Callable[[int], Awaitable[None]]


PEERS = [(f"198.51.{i // 250}.{i % 250}", 40000 + i) for i in range(1000)]


def case(mw: Any, reqs: list[web.Request], inner: Any = handler) -> Case:
    """``len(reqs) == 1``: one warm request object whose peer rotates over 1000 clients (a
    server's request is freshly made, in cache); 1000: one object per client (cold)."""
    if len(reqs) == 1:
        request = reqs[0]
        transport: Transport = request.transport  # type: ignore[assignment]

        async def warm(n: int) -> None:
            for i in range(n):
                transport.peer = PEERS[i % 1000]
                await mw(request, inner)

        return warm

    async def cold(n: int) -> None:
        for i in range(n):
            await mw(reqs[i % 1000], inner)

    return cold


async def alone(request: web.Request, inner: Any) -> web.StreamResponse:
    return await inner(request)


async def main() -> None:
    app = web.Application()
    app.router.add_get("/items/{id}", handler)
    app.router.add_get("/metrics", handler)
    items = await requests(app, "/items/1")
    metrics = await requests(app, "/metrics")
    ietf = resilience_middleware(rules=[Rule(big("per-ip"))])
    both = resilience_middleware(rules=[Rule(big("per-ip"))], headers="both")
    refusing = resilience_middleware(
        rules=[Rule(ar.FixedWindowCounter(max_requests=1, window_seconds=3600.0, name="tiny"))]
    )
    decorated = limit(big("per-ip"))(handler)
    bulkhead = resilience_middleware(rules=[Rule(big("per-ip"), guards=[ar.Bulkhead(10**6)])])
    # A shedder never reached (InFlight of a huge capacity) that the middleware feeds.
    shedder = ar.LoadShedder(ar.InFlight(capacity=1e9))
    shedding = resilience_middleware(
        rules=[Rule(big("per-ip"), guards=[shedder], priority="sheddable")]
    )

    async def direct(request: web.Request, inner: Any) -> web.StreamResponse:
        return await decorated(request)

    protection = ietf.protection
    infos = [
        RequestInfo("GET", "/items/1", [], (f"198.51.{i // 250}.{i % 250}", 40000 + i))
        for i in range(1000)
    ]

    async def core(n: int) -> None:  # what bench_http.py measures: the core's own share
        for i in range(n):
            info = infos[i % 1000]
            rules = protection.select("GET", info.path, "/items/{id}")
            await protection.admit(info, rules)
            await alone(items[i % 1000], handler)

    cases: dict[str, Case] = {}
    for label, slice_ in (("warm", slice(0, 1)), ("cold", slice(0, 1000))):
        i, m = items[slice_], metrics[slice_]
        cases |= {
            f"{label}: handler alone": case(alone, i),
            f"{label}: exempt path (/metrics)": case(ietf, m),
            f"{label}: middleware, IETF headers": case(ietf, i),
            f"{label}: middleware, headers=both": case(both, i),
            f"{label}: @limit decorator, IETF": case(direct, i),
            f"{label}: middleware + bulkhead": case(bulkhead, i),
            f"{label}: middleware + InFlight shedder": case(shedding, i),
            f"{label}: refusal (429)": case(refusing, i),
        }
    cases["core select+admit (no adapter)"] = core
    for run in cases.values():  # warm up; the refusing limiter spends its one request here
        await run(2000)
    times: dict[str, list[float]] = {name: [] for name in cases}
    gc.disable()
    try:
        for _ in range(ROUNDS):
            for name, run in cases.items():  # interleaved rounds
                start = time.process_time()
                await run(N)
                times[name].append((time.process_time() - start) / N * 1e6)
    finally:
        gc.enable()
    print(f"Python {sys.version.split()[0]}, {N} requests x {ROUNDS} rounds, median CPU us/request")
    print(f"{'case':40} {'total':>8} {'overhead':>9}")
    for name, samples in times.items():
        label = name.partition(":")[0]
        base = statistics.median(times.get(f"{label}: handler alone", times["cold: handler alone"]))
        total = statistics.median(samples)
        over = "" if name.endswith("handler alone") else f"{total - base:9.2f}"
        print(f"{name:40} {total:8.2f} {over}")


if __name__ == "__main__":
    asyncio.run(main())

"""HTTP clients with retries, breakers and pacing per host (issue 14): httpx.

Two local upstreams on loopback (aiohttp.web): a flaky one (every third request answers 503
with ``Retry-After: 0``, and it states a quota in IETF ``RateLimit`` fields) and a dead one
(always 503). One ``httpx.AsyncClient`` with a :class:`ResilientTransport` calls both:

- the flaky host's 503s are retried (GET is idempotent) and every call succeeds;
- the dead host's breaker opens after 3 failures, so later calls answer at once without
  touching the network, and its spent budget and open breaker leave the flaky host alone;
- a POST without ``Idempotency-Key`` is not retried (its 503 is returned); with one, it is.

Run: ``python examples/http_clients.py`` (needs httpx and aiohttp).
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable

import httpx
from aiohttp import web

from aioresilience import CircuitBreakerOpenError, constant
from aioresilience.integrations.httpx import ResilientTransport


async def start(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


async def main() -> None:
    counter = itertools.count(1)
    sent = {"flaky": 0, "dead": 0}

    orders = itertools.count(1)

    async def flaky(request: web.Request) -> web.Response:
        sent["flaky"] += 1
        if request.path == "/orders":  # every other order fails, the first one included
            if next(orders) % 2:
                return web.Response(status=503)
            return web.Response(status=201)
        if next(counter) % 3 == 0:
            return web.Response(status=503, headers={"Retry-After": "0"})
        return web.Response(text="ok", headers={"RateLimit": '"api";r=100;t=60'})

    async def dead(request: web.Request) -> web.Response:
        sent["dead"] += 1
        return web.Response(status=503)

    flaky_runner, flaky_url = await start(flaky)
    dead_runner, dead_url = await start(dead)
    transport = ResilientTransport(
        retry={"attempts": 3, "backoff": constant(0.01)},
        breaker={"failure_threshold": 3, "break_duration": 30},
        # Envoy's budget, per host: at most 3 (or 20 % of the calls in flight) retries at once.
        # (The default, gRPC's token budget, stops retrying a host failing over 10 % of calls.)
        budget={"percent": 0.2, "min_retries": 3},
    )
    retries = 0

    def count(event: object) -> None:
        nonlocal retries
        retries += getattr(event, "outcome", None) == "retryable"

    transport.policy.add_listener(count)
    try:
        async with httpx.AsyncClient(transport=transport) as http:
            ok = 0
            for _ in range(20):
                ok += (await http.get(f"{flaky_url}/items")).status_code == 200
            print(f"flaky host: 20 calls, {ok} succeeded, {sent['flaky']} requests sent")

            answers: list[str] = []
            for _ in range(10):
                try:
                    answers.append(str((await http.get(f"{dead_url}/items")).status_code))
                except CircuitBreakerOpenError:
                    answers.append("open")
            print(
                f"dead host: 10 calls, {sent['dead']} requests sent, "
                f"{answers.count('open')} answered by the open breaker"
            )
            again = await http.get(f"{flaky_url}/items")
            print(f"flaky host after the dead one: {again.status_code}")

            sent["flaky"] = 0
            post = await http.post(f"{flaky_url}/orders", content=b"{}")
            print(f"POST without Idempotency-Key: {post.status_code} after {sent['flaky']} request")
            keyed = await http.post(
                f"{flaky_url}/orders", content=b"{}", headers={"Idempotency-Key": "order-1"}
            )
            print(f"POST with Idempotency-Key: {keyed.status_code}")
        print(f"{retries} attempts answered with a retryable status")
    finally:
        await flaky_runner.cleanup()
        await dead_runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())

"""An aiohttp app protected by aioresilience: one limit per client IP across every route, a
per-API-key limit on one route, a downstream call through a pipeline (timeout, retry,
breaker), and load shedding on an expensive route, fed by the middleware's own count of
requests in flight. Health and metrics paths are exempt.

``python examples/aiohttp_app.py`` starts the app on a free loopback port, drives it with an
``aiohttp.ClientSession`` and prints what each request got; ``python examples/aiohttp_app.py
serve`` just serves it on http://127.0.0.1:8080.
"""

from __future__ import annotations

import asyncio
import sys

import aiohttp
from aiohttp import web

import aioresilience as ar
from aioresilience.integrations.aiohttp import PROTECTION, Rule, header_key, limit, setup

# Behind a reverse proxy, say which addresses are yours:
#   Rule(per_ip, key=client_address(trusted_proxies=["10.0.0.0/8"]))
# X-Forwarded-For is read only from them (right-most untrusted hop); here, nobody is trusted.
per_ip = ar.TokenBucket(
    capacity=20, refill_rate=20 / 60, name="per-ip"
)  # 20 a minute, bursts of 20
per_key = ar.FixedWindowCounter(max_requests=3, window_seconds=60.0, name="per-key")
in_flight = ar.InFlight(capacity=4)
shedder = ar.LoadShedder(in_flight, thresholds={ar.Priority.SHEDDABLE: 0.5})
downstream = (
    ar.Pipeline.builder("inventory")
    .timeout(0.5)
    .retry(attempts=2, backoff=ar.constant(0.01))
    .circuit_breaker(failure_threshold=3, break_duration=5.0)
    .build()
)
calls = 0


async def inventory(item: str) -> int:
    """The downstream service: the first call fails, as a flaky dependency does."""
    global calls
    calls += 1
    if calls == 1:
        raise ConnectionError("inventory: connection reset")
    await asyncio.sleep(0.01)
    return 7


async def index(request: web.Request) -> web.Response:
    return web.Response(text="hello")


async def health(request: web.Request) -> web.Response:
    return web.Response(text="ok")


@limit(per_key, key=header_key("X-API-Key"))
async def reports(request: web.Request) -> web.Response:
    return web.json_response({"report": "quarterly", "key": request.headers.get("X-API-Key")})


async def stock(request: web.Request) -> web.Response:
    # Through the pipeline: a breaker open or a timeout becomes a 503/504 by the middleware.
    count = await downstream.execute(inventory, request.match_info["item"])
    return web.json_response({"item": request.match_info["item"], "stock": count})


release = asyncio.Event()
started = asyncio.Semaphore(0)


async def slow(request: web.Request) -> web.Response:
    started.release()
    await release.wait()  # a long poll holding its request in flight
    return web.Response(text="slow done")


async def expensive(request: web.Request) -> web.Response:
    return web.Response(text="expensive report")


def make_app() -> web.Application:
    app = web.Application()
    app.router.add_get("/", index)
    app.router.add_get("/health", health)
    app.router.add_get("/reports", reports)
    app.router.add_get("/stock/{item}", stock)
    app.router.add_get("/slow", slow)
    app.router.add_get("/expensive", expensive)
    setup(
        app,
        rules=[
            Rule(per_ip),  # every route, one limit per client
            Rule(guards=[shedder], paths="/expensive", priority="sheddable"),
        ],
    )
    return app


async def demo() -> None:
    app = make_app()
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    base = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession(base) as session:

            async def get(path: str, **kwargs: object) -> str:
                async with session.get(path, **kwargs) as response:  # type: ignore[arg-type]
                    text = f"{response.status}"
                    if "RateLimit" in response.headers:
                        text += f" RateLimit: {response.headers['RateLimit']}"
                    if "Retry-After" in response.headers:
                        text += f" Retry-After: {response.headers['Retry-After']}"
                    return text

            print("GET /            ->", await get("/"))
            print("GET /health      ->", await get("/health"), "(exempt)")
            for i in range(4):
                print(
                    f"GET /reports #{i + 1}  ->", await get("/reports", headers={"X-API-Key": "k1"})
                )
            print("GET /stock/kettle ->", await get("/stock/kettle"), f"({calls} downstream calls)")
            held = [asyncio.ensure_future(get("/slow")) for _ in range(3)]
            for _ in held:
                await started.acquire()
            # Nobody tracked them by hand: the middleware counts them in flight.
            print("in flight        ->", in_flight())
            print("GET /expensive   ->", await get("/expensive"), "(shed under load)")
            release.set()
            print("held /slow       ->", [h.split()[0] for h in await asyncio.gather(*held)])
            print("GET /expensive   ->", await get("/expensive"))
            statuses = [(await get("/")).split()[0] for _ in range(20)]
            print(
                "20 x GET /       ->",
                f"{statuses.count('200')} ok, {statuses.count('429')} limited",
            )
            print("protection rules ->", len(app[PROTECTION].rules))
    finally:
        await runner.cleanup()


if __name__ == "__main__":
    if sys.argv[1:] == ["serve"]:
        web.run_app(make_app(), host="127.0.0.1", port=8080)
    else:
        asyncio.run(demo())

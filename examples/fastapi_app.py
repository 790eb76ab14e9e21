"""A protected FastAPI app: one limit per client IP across every route, a per-API-key limit on
one route, a downstream call through a pipeline (timeout, retry, breaker) mapped to 503/504,
and load shedding on an expensive route fed by the middleware itself.

Serve it: ``uvicorn examples.fastapi_app:app`` (behind a proxy, see ``client_address`` about
``trusted_proxies`` and uvicorn's ``--forwarded-allow-ips``). Run it as a script to drive it
in-process over ``httpx.ASGITransport``, in virtual time: ``python examples/fastapi_app.py``.
"""

from __future__ import annotations

import asyncio
import collections

from fastapi import Depends, FastAPI

import aioresilience as ar
from aioresilience.integrations.asgi import (
    HEALTH_PATHS,
    ResilienceMiddleware,
    Rule,
    header_key,
    install,
)
from aioresilience.integrations.fastapi import protect

per_ip = ar.TokenBucket(capacity=20, refill_rate=10.0, name="per-ip")
per_key = ar.FixedWindowCounter(max_requests=3, window_seconds=60.0, name="per-key")
in_flight = ar.InFlight(capacity=4)
shedder = ar.LoadShedder(in_flight, thresholds={ar.Priority.SHEDDABLE: 0.5})
downstream = (
    ar.Pipeline.builder("inventory")
    .timeout(0.5)
    .retry(attempts=2, retry_on=ConnectionError)
    .circuit_breaker(failure_threshold=3, break_duration=30.0)
    .build()
)

app = FastAPI()
install(app)  # errors of ours raised in handlers: 429 / 503 / 504, problem+json
app.add_middleware(
    ResilienceMiddleware,
    rules=[
        Rule(per_ip),  # every route, per client address
        Rule(guards=[shedder], paths="/report", priority="sheddable"),
    ],
    exempt_paths=HEALTH_PATHS,
)

STOCK = {"kettle": 3}
SLOW: set[str] = set()  # items whose downstream call hangs (the demo flips one)


async def inventory(item: str) -> int:
    await asyncio.sleep(30.0 if item in SLOW else 0.05)  # the remote service
    return STOCK.get(item, 0)


@app.get("/health")
async def health() -> str:
    return "ok"


@app.get("/stock/{item}")
async def stock(item: str) -> dict[str, object]:
    return {"item": item, "stock": await downstream.execute(inventory, item)}


@app.get("/api/orders", dependencies=[Depends(protect(per_key, key=header_key("x-api-key")))])
async def orders() -> list[str]:
    return ["order-1"]


@app.get("/report")
async def report() -> str:
    await asyncio.sleep(2.0)  # expensive
    return "report"


async def demo() -> None:
    import httpx

    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="http://shop") as client:
        burst = await asyncio.gather(*(client.get("/stock/kettle") for _ in range(25)))
        codes = collections.Counter(r.status_code for r in burst)
        print(f"per-ip: 25 requests at once -> {codes[200]} ok, {codes[429]} refused (429)")
        await asyncio.sleep(2.0)  # the bucket refills

        keys = [
            (await client.get("/api/orders", headers={"x-api-key": k})).status_code
            for k in ("a", "a", "a", "a", "b")
        ]
        print(f"per-key: key a x4, key b x1 -> {keys}")

        reports = await asyncio.gather(*(client.get("/report") for _ in range(4)))
        shed = [r.status_code for r in reports]
        print(f"shedding: 4 concurrent reports -> {sorted(shed)} (503: shed while loaded)")

        SLOW.add("kettle")
        slow = await client.get("/stock/kettle")
        print(f"downstream: a hanging call -> {slow.status_code} {slow.json()['title']}")
        health = [(await client.get("/health")).status_code for _ in range(50)]
        print(f"health: 50 probes -> {set(health)} (exempt)")


if __name__ == "__main__":
    from aioresilience.testing import run

    run(demo())

"""Graceful degradation of a product page: full, basic or cached by load; shedding by
priority; a fallback when the catalog is down.

Runs in virtual time: ``python examples/product_page.py``.
"""

from __future__ import annotations

import asyncio

import aioresilience as ar
from aioresilience.testing import run

CACHE = {1: "Kettle (cached)"}


async def main() -> None:
    in_flight = ar.InFlight(capacity=10)

    async def full(pid: int) -> str:
        with in_flight.track():
            await asyncio.sleep(0.2)  # recommendations, reviews, stock, ...
            return f"product {pid}: full page with recommendations"

    async def basic(pid: int) -> str:
        with in_flight.track():
            await asyncio.sleep(0.05)
            return f"product {pid}: basic page"

    async def cached(pid: int) -> str:
        return CACHE.get(pid, f"product {pid}: (cached placeholder)")

    page = ar.GracefulDegradation(
        in_flight,
        [
            ar.Tier("full", full, up_to=0.5),
            ar.Tier("basic", basic, up_to=0.9),
            ar.Tier("cached", cached),
        ],
    )
    for load in (1, 6, 12):
        results = await asyncio.gather(*(page.call(1) for _ in range(load)))
        print(f"{load:2} concurrent requests -> {sorted(set(r.split(': ')[-1] for r in results))}")
    print(f"served per tier: {page.served}")

    shedder = ar.LoadShedder(in_flight, thresholds={ar.Priority.SHEDDABLE: 0.3})

    @shedder.limit(ar.Priority.SHEDDABLE)
    async def recommendations() -> str:
        return "recommendations"

    with in_flight.track(), in_flight.track(), in_flight.track(), in_flight.track():
        try:
            await recommendations()
        except ar.LoadShed as shed:
            print(f"shed under load: {shed} (retry after {shed.retry_after:g}s)")

    @ar.fallback(lambda outcome: CACHE.get(outcome.args[0], "unavailable"), on=(ConnectionError,))
    async def catalog(pid: int) -> str:
        raise ConnectionError("catalog down")

    print(f"catalog down -> {await catalog(1)!r}")


if __name__ == "__main__":
    run(main())

"""Bulkheads per downstream service: a slow dependency cannot starve the others.

The payment service hangs for 30 s; inventory and notifications stay fast. Each service gets
its own bulkhead (4 concurrent calls, 4 waiting at most 1 s) from one PartitionedBulkhead, so
the payment pile-up is refused at its own door (quickly, not after 30 s) while the other two
keep serving every request.
Runs in virtual time: ``python examples/bulkhead_services.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import aioresilience as ar
from aioresilience.testing import run

LATENCY = {"payment": 30.0, "inventory": 0.05, "notification": 0.02}


async def main() -> None:
    services: ar.PartitionedBulkhead[str] = ar.PartitionedBulkhead(
        4, max_queue=4, max_wait=1.0, name="downstream"
    )
    outcomes: Counter[tuple[str, str]] = Counter()

    async def call(service: str) -> None:
        try:
            async with services[service]:
                await asyncio.sleep(LATENCY[service])
            outcomes[service, "served"] += 1
        except ar.BulkheadFull:
            outcomes[service, "refused"] += 1

    requests = []
    for _ in range(20):  # every service gets a request every 100 ms
        requests += [asyncio.create_task(call(service)) for service in LATENCY]
        await asyncio.sleep(0.1)
    print("after 2 s of traffic:")
    for service in LATENCY:
        stats = services[service].statistics()
        print(
            f"  {service:13} served={outcomes[service, 'served']:2} "
            f"refused={outcomes[service, 'refused']:2} active={stats.active} "
            f"queued={stats.queued} peak={stats.peak}"
        )
    await asyncio.gather(*requests)


if __name__ == "__main__":
    run(main())

"""Producers faster than consumers: a bounded queue, an overflow policy, counted drops.

Producers emit 100 events/s for 5 s; 3 workers handle 20 events/s each (60/s in all). The
queue holds 50 events. The same workload runs under each overflow policy and prints what was
processed, dropped or refused, and how long producers were blocked. Nothing disappears
without being counted. Runs in virtual time: ``python examples/producer_consumer.py``.
"""

from __future__ import annotations

import asyncio

import aioresilience as ar
from aioresilience.testing import run


async def scenario(policy: str) -> str:
    loop = asyncio.get_running_loop()
    dropped: list[int] = []
    queue: ar.BackpressureQueue[int] = ar.BackpressureQueue(
        50,
        policy=policy,
        on_drop=lambda item, reason: dropped.append(item),  # type: ignore[arg-type]
    )
    refused = 0
    blocked = 0.0

    async def handle(item: int) -> None:
        await asyncio.sleep(0.05)  # 20 per second per worker

    async def produce() -> None:
        nonlocal refused, blocked
        for i in range(500):
            started = loop.time()
            try:
                await queue.put(i, timeout=0.5) if policy == "block" else await queue.put(i)
            except ar.QueueFull:
                refused += 1
            blocked += loop.time() - started
            await asyncio.sleep(0.01)

    pool = ar.WorkerPool(queue, handle, workers=3)
    pool.start()
    await produce()
    leftover = await pool.shutdown(drain=False)
    stats = pool.statistics()
    total = stats.processed + len(dropped) + refused + len(leftover)
    return (
        f"{policy:12} processed={stats.processed:3} dropped={len(dropped):3} "
        f"refused={refused:3} unprocessed at shutdown={len(leftover):3} "
        f"(sum {total}) producer blocked {blocked:5.1f}s"
    )


async def main() -> None:
    print("500 events at 100/s into a queue of 50, drained by 3 workers at 60/s:\n")
    for policy in ("block", "reject", "drop_newest", "drop_oldest"):
        print(await scenario(policy))


if __name__ == "__main__":
    run(main())

"""Four worker processes share one rate limit on Redis, then Redis dies and comes back.

Uses $REDIS_URL if set; otherwise starts a throwaway redis-server (the binary must be
installed: apt-get install -y redis-server).

    python examples/many_processes.py
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import sys
from multiprocessing.synchronize import Barrier

import aioresilience as ar
from aioresilience.stores.redis import RedisStore
from aioresilience.testing import RedisServer

LIMIT = 50  # requests per minute, for all workers together


def limiter(store: RedisStore) -> ar.GCRA:
    return ar.GCRA(LIMIT, 60, burst=LIMIT, name="partner-api", store=store)


async def worker(url: str, prefix: str, everyone_ready: Barrier) -> int:
    # A generous round-trip timeout: on a busy host the default 0.1 s can expire, and the
    # default failure policy ("allow") then admits locally, which this demo is not about.
    store = RedisStore(url, prefix=prefix, timeout=2.0)
    shared = limiter(store)
    # Optional: connect and load the scripts now rather than in the first decision.
    await store.connect()
    # All the workers ask at the same moment, however long each took to start.
    await asyncio.to_thread(everyone_ready.wait, 30)
    decisions = await asyncio.gather(*(shared.decide(key="partner") for _ in range(40)))
    await store.aclose()
    return sum(d.allowed for d in decisions)


def run_worker(
    url: str, prefix: str, everyone_ready: Barrier, results: multiprocessing.Queue[int]
) -> None:
    results.put(asyncio.run(worker(url, prefix, everyone_ready)))


async def outage(server: RedisServer, prefix: str) -> None:
    store = RedisStore(
        server.url, prefix=prefix, on_failure="local", local_share=0.25, timeout=0.05
    )
    shared = limiter(store)
    print(f"before the outage: {(await shared.decide(key='other')).remaining} remaining")
    server.kill()
    admitted = sum([(await shared.decide(key="other")).allowed for _ in range(20)])
    stats = shared.statistics()
    print(
        f"Redis down: 20 asked, {admitted} admitted by the local fallback "
        f"(a quarter of the burst), {stats.store_failures} store failures, no exception"
    )
    server.start()
    for _ in range(300):  # the store's breaker probes Redis again after a short break
        before = shared.statistics().store_failures
        decision = await shared.decide(key="fresh")
        if shared.statistics().store_failures == before:
            print(f"Redis back: decided by Redis again ({decision.remaining} remaining)")
            break
        await asyncio.sleep(0.01)
    await store.aclose()


def main() -> None:
    server = None if os.environ.get("REDIS_URL") else RedisServer().start()
    url = server.url if server is not None else os.environ["REDIS_URL"]
    results: multiprocessing.Queue[int] = multiprocessing.Queue()
    prefix, everyone_ready = f"example-{os.getpid()}", multiprocessing.Barrier(4)
    workers = [
        multiprocessing.Process(target=run_worker, args=(url, prefix, everyone_ready, results))
        for _ in range(4)
    ]
    for process in workers:
        process.start()
    admitted = [results.get(timeout=30) for _ in workers]
    for process in workers:
        process.join()
    print(f"4 processes asked 160 at once of a shared limit of {LIMIT}: admitted {sum(admitted)}")
    if server is not None:
        asyncio.run(outage(server, prefix))
        server.close()


if __name__ == "__main__":
    if sys.platform != "win32":
        multiprocessing.set_start_method("spawn")
    main()

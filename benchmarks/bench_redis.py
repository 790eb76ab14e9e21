"""Rate limits on Redis: latency, throughput with coalescing, and four processes sharing a limit.

The bench starts its own redis-server (loopback, no persistence) and compares, in one run:
- a raw EVALSHA round trip through redis.asyncio (our GCRA script, one key): the ceiling;
- aioresilience's Redis store (GCRA and fixed window);
- ``limits`` with its async Redis storage on the same client library (redis-py), fixed and
  moving window.

Latency: one task, medians of per-call times pooled over interleaved rounds. Throughput: 64
tasks on one event loop, each deciding for its own key, decisions per second (median of
rounds). Four processes x 64 tasks share one GCRA limit: aggregate decisions/s and whether
exactly the limit was admitted.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from importlib import resources
from typing import Any

from tables import Section

from aioresilience import GCRA, FixedWindowCounter
from aioresilience.stores.redis import RedisStore
from aioresilience.testing import RedisServer

Decide = Callable[[str], Awaitable[Any]]
Factory = Callable[[str], Awaitable[tuple[Decide, Callable[[], Awaitable[None]]]]]
HUGE = 10**9  # limits no benchmark exhausts


def gcra_source() -> str:
    """The store's own GCRA script, as the store sends it. It is not public API, so two ways:
    the store module's ``SCRIPTS`` where it has been, else the Lua files it is built from
    (package data: ``_common.lua``, ``gcra.lua``, ``_driver.lua``, joined by newlines), which
    survive the store's modules being moved."""
    try:
        store = importlib.import_module("aioresilience.stores.redis._store")
        return str(store.SCRIPTS["gcra"].source)
    except (ImportError, AttributeError, KeyError):
        pass
    files = resources.files("aioresilience.stores.redis")
    try:
        return "\n".join(
            files.joinpath(name).read_text(encoding="utf-8")
            for name in ("_common.lua", "gcra.lua", "_driver.lua")
        )
    except FileNotFoundError as exc:
        raise RuntimeError(
            "bench_redis: the store's GCRA script is neither in SCRIPTS of a known module nor "
            f"in its Lua files ({exc}); update bench_redis.gcra_source()"
        ) from exc


async def raw_evalsha(url: str) -> tuple[Decide, Callable[[], Awaitable[None]]]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    sha = await client.script_load(gcra_source())
    prefix = uuid.uuid4().hex[:8]

    async def decide(key: str) -> Any:
        return await client.evalsha(sha, 1, f"{prefix}{{{key}}}", "t", 1, 1.0, HUGE, 0)

    return decide, client.aclose


def ours(kind: str) -> Factory:
    async def make(url: str) -> tuple[Decide, Callable[[], Awaitable[None]]]:
        store = RedisStore(url, prefix=uuid.uuid4().hex[:8], timeout=5.0)
        limiter = (
            GCRA(HUGE, 1, burst=HUGE, name="bench", store=store)
            if kind == "gcra"
            else FixedWindowCounter(HUGE, 60, name="bench", store=store)
        )
        return (lambda key: limiter.decide(key=key)), store.aclose

    return make


def limits_(strategy: str) -> Factory:
    async def make(url: str) -> tuple[Decide, Callable[[], Awaitable[None]]]:
        from limits import RateLimitItemPerMinute
        from limits.aio import strategies
        from limits.aio.storage import RedisStorage

        storage = RedisStorage(
            url.replace("redis://", "async+redis://"),
            implementation="redispy",
            key_prefix=uuid.uuid4().hex[:8],
        )
        kind = (
            strategies.FixedWindowRateLimiter
            if strategy == "fixed"
            else strategies.MovingWindowRateLimiter
        )
        limiter = kind(storage)
        item = RateLimitItemPerMinute(HUGE)

        async def close() -> None:
            return None

        return (lambda key: limiter.hit(item, key)), close

    return make


CASES: dict[str, Factory] = {
    "raw EVALSHA (redis-py, one call)": raw_evalsha,
    "aioresilience GCRA": ours("gcra"),
    "aioresilience FixedWindowCounter": ours("fixed"),
    "limits FixedWindow (async redis)": limits_("fixed"),
    "limits MovingWindow (async redis)": limits_("moving"),
}


async def latency(url: str, calls: int, rounds: int) -> dict[str, float]:
    """p50 µs of one decision, one task at a time."""
    made = {name: await make(url) for name, make in CASES.items()}
    samples: dict[str, list[float]] = {name: [] for name in made}
    for decide, _ in made.values():  # warm-up: connections, script loads
        for _ in range(200):
            await decide("warm")
    for _ in range(rounds):
        for name, (decide, _) in made.items():
            for _ in range(calls):
                start = time.perf_counter()
                await decide("k")
                samples[name].append(time.perf_counter() - start)
    for _, close in made.values():
        await close()
    return {name: statistics.median(values) * 1e6 for name, values in samples.items()}


async def throughput(url: str, tasks: int, seconds: float, rounds: int) -> dict[str, float]:
    """Decisions per second with ``tasks`` tasks on one loop, each on its own key."""
    made = {name: await make(url) for name, make in CASES.items()}
    results: dict[str, list[float]] = {name: [] for name in made}
    for decide, _ in made.values():
        await asyncio.gather(*(decide(f"user-{t}") for t in range(tasks)))
    for _ in range(rounds):
        for name, (decide, _) in made.items():
            done = 0
            deadline = time.perf_counter() + seconds

            async def worker(key: str, decide: Decide = decide, deadline: float = deadline) -> None:
                nonlocal done
                while time.perf_counter() < deadline:
                    await decide(key)
                    done += 1

            start = time.perf_counter()
            await asyncio.gather(*(worker(f"user-{t}") for t in range(tasks)))
            results[name].append(done / (time.perf_counter() - start))
    for _, close in made.values():
        await close()
    return {name: statistics.median(values) for name, values in results.items()}


WORKER = "--worker"


async def shared_worker(url: str, prefix: str, limit: int, per_task: int, start: float) -> None:
    """One of the processes: 64 tasks, ``per_task`` decisions each, on one shared key."""
    store = RedisStore(url, prefix=prefix, timeout=5.0)
    limiter = GCRA(1, 3600, burst=limit, name="shared", store=store)
    await limiter.decide(key="warm-up")
    await asyncio.sleep(max(0.0, start - time.time()))
    admitted = 0

    async def task() -> None:
        nonlocal admitted
        for _ in range(per_task):
            decision = await limiter.decide(key="shared")  # before `+=`, which reads first
            admitted += decision.allowed

    began = time.perf_counter()
    await asyncio.gather(*(task() for _ in range(64)))
    elapsed = time.perf_counter() - began
    print(json.dumps({"admitted": admitted, "decisions": 64 * per_task, "seconds": elapsed}))
    await store.aclose()


def shared_limit(url: str, per_task: int) -> dict[str, Any]:
    limit = 64 * per_task  # a quarter of what the four processes ask for
    prefix, start = uuid.uuid4().hex[:8], time.time() + 2.0
    args = [sys.executable, __file__, WORKER, url, prefix, str(limit), str(per_task), str(start)]
    processes = [subprocess.Popen(args, stdout=subprocess.PIPE, text=True) for _ in range(4)]
    reports = [json.loads(p.communicate(timeout=120)[0]) for p in processes]
    decisions = sum(r["decisions"] for r in reports)
    return {
        "limit": limit,
        "asked": decisions,
        "admitted": sum(r["admitted"] for r in reports),
        "per_second": decisions / max(r["seconds"] for r in reports),
    }


def run(
    loop_factories: dict[str, Callable[[], asyncio.AbstractEventLoop]], quick: bool
) -> list[Section]:
    calls, rounds, seconds = (200, 3, 0.3) if quick else (1000, 7, 1.0)
    out: list[Section] = []
    with RedisServer() as server:
        for loop_name, factory in loop_factories.items():
            with asyncio.Runner(loop_factory=factory) as runner:
                p50 = runner.run(latency(server.url, calls, rounds))
                rate = runner.run(throughput(server.url, 64, seconds, rounds))
            raw = p50["raw EVALSHA (redis-py, one call)"]
            best_limits = max(v for k, v in rate.items() if k.startswith("limits"))
            out.append(
                {
                    "kind": "redis",
                    "title": "Redis, one task and 64 tasks on one loop",
                    "loop": loop_name,
                    "rows": [
                        {
                            "case": name,
                            "p50_us": p50[name],
                            "x_raw": p50[name] / raw,
                            "per_second": rate[name],
                            "x_limits": rate[name] / best_limits,
                        }
                        for name in CASES
                    ],
                }
            )
        shared = shared_limit(server.url, 200 if quick else 1000)
    out.append(
        {
            "kind": "redis_shared",
            "title": "Redis, 4 processes x 64 tasks sharing one GCRA limit",
            "loop": "asyncio",
            "rows": [shared],
        }
    )
    return out


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == WORKER:
    url, prefix, limit, per_task, start = sys.argv[2:7]
    asyncio.run(shared_worker(url, prefix, int(limit), int(per_task), float(start)))

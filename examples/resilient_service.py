"""The seed guide's ResilientService: retry + circuit breaker around a chaotic call.

A pipeline retries (exponential backoff, jittered, seeded) around a circuit breaker around a
dependency that a ChaosMonkey makes fail 40 % of the time and occasionally slow. The output
shows the injected faults being absorbed: every request succeeds, and the events tell why.
Runs in virtual time, reproducibly: ``python examples/resilient_service.py``.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import aioresilience as ar
from aioresilience.testing import run


class ResilientService:
    def __init__(self, seed: int = 42) -> None:
        self.monkey = ar.ChaosMonkey(
            failure_rate=0.4, latency_rate=0.2, latency=(0.05, 0.3), seed=seed
        )
        self.events: Counter[str] = Counter()
        self.pipeline = (
            ar.Pipeline.builder("resilient-service", seed=seed)
            .timeout(5.0)
            .retry(attempts=8, backoff=ar.exponential(0.05, cap=1.0), retry_rejections=True)
            .circuit_breaker(failure_threshold=8, break_duration=0.2)
            .timeout(0.25)
            .build()
        )
        self.pipeline.add_listener(lambda event: self.events.update([event.name]))
        self.monkey.add_listener(self._chaos_seen)

    def _chaos_seen(self, event: ar.ResilienceEvent) -> None:
        if isinstance(event, ar.ChaosInjected):  # a typed event: its fields, no string keys
            self.events.update(["chaos_" + event.injection])

    async def fetch(self, item: int) -> str:
        await self.monkey.add_latency()
        self.monkey.maybe_fail()
        return f"item {item}"

    async def get(self, item: int) -> str:
        return await self.pipeline.execute(self.fetch, item)


async def main() -> None:
    service = ResilientService()
    results = await asyncio.gather(*(service.get(i) for i in range(100)))
    loop = asyncio.get_running_loop()
    print(
        f"{len(results)} requests, {sum(r.startswith('item') for r in results)} succeeded "
        f"in {loop.time():.2f}s (virtual)"
    )
    for name in (
        "chaos_fault",
        "chaos_latency",
        "timeout",
        "retry_scheduled",
        "circuit_open",
        "circuit_rejected",
        "retry_gave_up",
    ):
        print(f"  {name:18} {service.events[name]:4}")
    print(service.pipeline)


if __name__ == "__main__":
    run(main())

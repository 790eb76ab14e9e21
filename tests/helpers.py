"""Helpers shared by several test modules."""

from __future__ import annotations

from typing import Any


def burst(algorithm: Any, now: float, n: int) -> tuple[list[bool], Any]:
    """Ask a pure rate-limit algorithm for one unit ``n`` times at ``now``: which were
    admitted, and the state after."""
    state = None
    admitted = []
    for _ in range(n):
        new, _at, ok = algorithm.reserve(state, now, 1, 0.0)
        if ok:
            state = new
        admitted.append(ok)
    return admitted, state


def slow_redis(monkeypatch: Any, delay: float) -> None:
    """Make every Redis round trip of the store take ``delay`` seconds longer (the reply still
    arrives): a slow server, short of pausing it."""
    import asyncio

    from aioresilience.stores.redis._batcher import Batcher

    round_trip = Batcher._round_trip

    async def slow(self: Batcher, calls: Any) -> Any:
        await asyncio.sleep(delay)
        return await round_trip(self, calls)

    monkeypatch.setattr(Batcher, "_round_trip", slow)

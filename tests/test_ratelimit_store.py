"""The memory store's promise (issue 11, item 2): a key in use keeps its state.

Stated exactly (README, ``aioresilience/_core/keystore.py``): a key keeps its state until more
than ``max_keys`` other distinct keys have been used since its last use, and a time-based
rotation only forgets keys idle for at least ``period`` (the limiter's horizon or more, when
their state is fresh anyway). The flood tests below failed before: a key was forgotten after
``max_keys/2 + 1`` newer keys, and a time rotation right after a size rotation dropped keys
used a moment before.
"""

from __future__ import annotations

import asyncio

import pytest

from aioresilience import GCRA, TokenBucket
from aioresilience.stores.memory import MemoryStore


@pytest.mark.parametrize("max_keys", [1, 2, 7, 64])
def test_a_key_survives_exactly_max_keys_other_keys_whatever_the_phase(max_keys: int) -> None:
    lost_at_boundary = False
    for phase in range(2 * max_keys + 1):
        store: MemoryStore[int] = MemoryStore(max_keys=max_keys, period=3600.0)
        for i in range(phase):  # where the generations stand when the key is used
            store.put(("before", i), 1, 0.0)
        store.put("k", 42, 0.0)
        for i in range(max_keys):
            assert store.get(("other", i), 0.0) is None
            store.put(("other", i), 1, 0.0)
        assert store.get("k", 0.0) == 42, phase  # the boundary: max_keys others, still there
        assert len(store) <= 2 * max_keys
        # One more other key may forget it: in some phase it does (the bound is tight).
        store2: MemoryStore[int] = MemoryStore(max_keys=max_keys, period=3600.0)
        for i in range(phase):
            store2.put(("before", i), 1, 0.0)
        store2.put("k", 42, 0.0)
        for i in range(max_keys + 1):
            store2.put(("other", i), 1, 0.0)
        lost_at_boundary |= store2.get("k", 0.0) is None
    assert lost_at_boundary


def test_a_time_rotation_never_follows_a_size_rotation_closely() -> None:
    store: MemoryStore[int] = MemoryStore(max_keys=10, period=10.0)
    store.get("first", 0.0)  # the clock of rotations starts: next time rotation due at 10.0
    store.put("k", 1, 9.99)
    for i in range(10):  # young fills: a size rotation at 9.995 puts "k" in the old half
        store.put(i, 1, 9.995)
    # At 10.0 the old time schedule would rotate again and drop "k", used 10 ms ago.
    assert store.get("k", 10.0) == 1


async def test_time_rotation_after_a_size_rotation_keeps_a_limited_key() -> None:
    loop = asyncio.get_running_loop()
    limiter = GCRA(1, 10.0, max_keys=100)  # one per 10 s; the store's period is 10 s
    assert limiter.try_acquire(key="other")  # t=0: the rotation clock starts
    await asyncio.sleep(9.99)
    assert limiter.try_acquire(key="legit")
    for i in range(120):
        limiter.try_acquire(key=f"flood-{i}")  # one size rotation at 9.99: "legit" is old
    await asyncio.sleep(10.0 - loop.time())
    assert not limiter.try_acquire(key="legit")  # it was admitted again: state lost


@pytest.mark.parametrize("spacing", [0.5, 0.75, 1.0])
async def test_a_legit_key_never_exceeds_its_limit_during_a_key_flood(spacing: float) -> None:
    """A flood of distinct keys with the legit key used every ``spacing * max_keys`` of them
    (all at one instant: nothing becomes fresh meanwhile)."""
    max_keys = 1000
    limiter = TokenBucket(5, 1 / 3600, max_keys=max_keys)  # 5, then one an hour
    every = int(spacing * max_keys)
    admitted = 0
    for i in range(20 * max_keys):
        limiter.try_acquire(key=f"flood-{i}")
        if i % every == 0:
            admitted += sum(limiter.try_acquire(key="legit") for _ in range(3))
    assert admitted == 5
    assert len(limiter.store) <= 2 * max_keys

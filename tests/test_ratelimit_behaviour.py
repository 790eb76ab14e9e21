"""The limiter behaviour suite (tests/limiter_behaviour.py) on each of the three stores: the
in-process state, Redis, and the dict-backed store of the tests, which implements the public
seam (``aioresilience.abc``) and nothing else."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
from dictstore_limits import DictLimiterStore
from limiter_behaviour import LimiterBehaviour, _unique, redis_store

from aioresilience.abc import LimiterStore
from aioresilience.stores.redis import RedisStore

__all__ = ["redis_store"]  # the suite's fixture, used by TestOnRedis


class TestInMemory(LimiterBehaviour):
    @pytest.fixture
    def store(self) -> None:
        return None

    @pytest.fixture
    def failing_store(self) -> Callable[[str], LimiterStore]:
        pytest.skip("the in-process state has no store to fail")


@pytest.mark.real_time  # a class mark, seen when pytest-asyncio picks the loop
class TestOnRedis(LimiterBehaviour):
    @pytest.fixture
    async def store(self, redis_store: RedisStore) -> RedisStore:
        return redis_store

    @pytest.fixture
    async def failing_store(self) -> AsyncIterator[Callable[[str], LimiterStore]]:
        """A store whose server refuses connections (nothing listens on port 1)."""
        made: list[RedisStore] = []

        def make(policy: str) -> LimiterStore:
            made.append(
                RedisStore(
                    "redis://127.0.0.1:1",
                    prefix=f"dead-{_unique()}",
                    on_failure=policy,  # type: ignore[arg-type]
                    connect_timeout=0.5,
                )
            )
            return made[-1]

        yield make
        for store in made:
            await store.aclose()


class TestOnDictStore(LimiterBehaviour):
    @pytest.fixture
    def store(self) -> DictLimiterStore:
        return DictLimiterStore()

    @pytest.fixture
    def failing_store(self) -> Callable[[str], LimiterStore]:
        def make(policy: str) -> LimiterStore:
            store = DictLimiterStore(on_failure=policy)  # type: ignore[arg-type]
            store.fail()
            return store

        return make

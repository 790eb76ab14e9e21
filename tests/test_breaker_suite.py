"""One behaviour suite for every breaker state: in memory, in Redis (a real redis-server),
and the dict store of tests/dictstore.py (the proof that the public seam, aioresilience.abc,
is enough to write a store). Each backend makes breakers, ends a break as time would, and
lets outcomes recorded in the background land (``settle``).
"""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from dictstore import DictBreakerStore

from aioresilience import CircuitBreaker, CircuitBreakerOpenError, CircuitState
from aioresilience.testing import RedisServer

pytestmark = pytest.mark.real_time

BREAK = 60.0  # never ends by itself within a test: end_break() ends it


class Boom(Exception):
    pass


async def fail() -> None:
    raise Boom


async def succeed() -> str:
    return "ok"


class Backend:
    def __init__(self, kind: str, server: RedisServer | None) -> None:
        self.kind, self.server = kind, server
        self.stores: list[Any] = []
        self.dict_store = DictBreakerStore()

    def make(self, **options: Any) -> CircuitBreaker:
        options = {"failure_threshold": 2, "break_duration": BREAK, **options}
        if self.kind == "memory":
            return CircuitBreaker(**options)
        if self.kind == "dict":
            return CircuitBreaker(name="payments", store=self.dict_store, **options)
        from aioresilience.stores.redis import RedisStore

        assert self.server is not None
        store = RedisStore(
            self.server.url, prefix=f"suite-{uuid.uuid4().hex[:8]}", breaker_staleness=0.0
        )
        self.stores.append(store)
        return CircuitBreaker(name="payments", store=store, **options)

    async def end_break(self, breaker: CircuitBreaker) -> None:
        """As if the break had run its course."""
        if self.kind == "redis":
            store = self.stores[-1]
            await store.client.hset(f"{store.prefix}:breaker:{{payments}}", "ou", "0")
            # This process's view still knows a break: refused here, it reads Redis again.
            with pytest.raises(CircuitBreakerOpenError):
                await breaker.call(succeed)
            await self.settle()
            return
        machine = breaker._state if self.kind == "memory" else self.dict_store.data["payments"]  # type: ignore[attr-defined]
        machine.open_until = -math.inf

    async def settle(self) -> None:
        if self.kind == "redis":
            for _ in range(20):
                await asyncio.sleep(0.002)


@pytest.fixture(params=["memory", "dict", "redis"])
async def backend(request: pytest.FixtureRequest) -> AsyncIterator[Backend]:
    server = request.getfixturevalue("redis_server") if request.param == "redis" else None
    made = Backend(request.param, server)
    yield made
    for store in made.stores:
        await store.aclose()


async def trip(breaker: CircuitBreaker, backend: Backend, times: int = 2) -> None:
    for _ in range(times):
        with pytest.raises(Boom):
            await breaker.call(fail)
    await backend.settle()


async def test_opens_after_the_failure_threshold_and_refuses(backend: Backend) -> None:
    breaker = backend.make()
    await trip(breaker, backend, 1)
    assert await breaker.call(succeed) == "ok"  # a success resets the streak
    await backend.settle()
    await trip(breaker, backend)
    with pytest.raises(CircuitBreakerOpenError) as refused:
        await breaker.call(succeed)
    assert 0 < refused.value.retry_after <= BREAK
    stats = breaker.statistics()
    assert (stats.failures, stats.successes, stats.rejected) == (3, 1, 1)
    assert breaker.state is CircuitState.OPEN


async def test_a_half_open_probe_closes_or_reopens(backend: Backend) -> None:
    breaker = backend.make()
    await trip(breaker, backend)
    await backend.end_break(breaker)
    await trip(breaker, backend, 1)  # the probe fails: open again
    assert breaker.state is CircuitState.OPEN
    await backend.end_break(breaker)
    assert await breaker.call(succeed) == "ok"  # the probe succeeds: closed
    await backend.settle()
    assert breaker.state is CircuitState.CLOSED


async def test_one_probe_at_a_time_and_a_cancelled_probe_gives_its_slot_back(
    backend: Backend,
) -> None:
    breaker = backend.make()
    await trip(breaker, backend)
    await backend.end_break(breaker)
    started, release = asyncio.Event(), asyncio.Event()

    async def probe() -> None:
        started.set()
        await release.wait()

    task = asyncio.create_task(breaker.call(probe))
    await started.wait()
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.call(succeed)  # the probe's slot is taken
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await backend.settle()
    assert breaker.statistics().cancelled == 1
    assert await breaker.call(succeed) == "ok"  # the slot came back: this is the probe
    await backend.settle()
    assert breaker.state is CircuitState.CLOSED
    assert breaker.statistics().failures == 2  # cancellation never counts as one


async def test_failure_result_and_ignored_exceptions(backend: Backend) -> None:
    breaker = backend.make(failure_result=lambda result: result == "bad", ignore=KeyError)

    async def bad() -> str:
        return "bad"

    async def missing() -> None:
        raise KeyError("x")

    for _ in range(3):
        with pytest.raises(KeyError):
            await breaker.call(missing)
    assert breaker.statistics().ignored == 3
    assert await breaker.call(bad) == "bad"  # returned, and counted as a failure
    async with breaker:  # an async with block has no result to judge: a success
        pass
    assert await breaker.call(bad) == "bad"
    assert await breaker.call(bad) == "bad"
    await backend.settle()
    assert breaker.state is CircuitState.OPEN


async def test_manual_isolate_disable_reset_trip(backend: Backend) -> None:
    breaker = backend.make()
    breaker.isolate()
    await backend.settle()
    with pytest.raises(CircuitBreakerOpenError) as refused:
        await breaker.call(succeed)
    assert refused.value.retry_after == math.inf
    breaker.disable()
    await backend.settle()
    await trip(breaker, backend, 3)  # nothing counted while disabled
    assert breaker.statistics().failures == 0
    assert await breaker.call(succeed) == "ok"
    breaker.reset()
    await backend.settle()
    assert breaker.state is CircuitState.CLOSED
    breaker.trip()
    await backend.settle()
    assert breaker.state is CircuitState.OPEN


async def test_slow_calls_trip_on_their_rate(backend: Backend) -> None:
    breaker = backend.make(
        failure_threshold=None,
        slow_call_rate_threshold=0.5,
        slow_call_duration=1e-6,
        window="time",
        window_size=60,
        minimum_calls=2,
    )

    async def slow() -> str:
        await asyncio.sleep(0.001)
        return "ok"

    await breaker.call(slow)
    await backend.settle()
    await breaker.call(slow)
    await backend.settle()
    assert breaker.state is CircuitState.OPEN


async def test_the_same_breaker_inside_itself_counts_once(backend: Backend) -> None:
    breaker = backend.make()
    inner = breaker(fail)
    with pytest.raises(Boom):
        await breaker.call(inner)
    await backend.settle()
    assert breaker.statistics().failures == 1
    assert breaker.state is CircuitState.CLOSED


async def test_store_failures_are_reported_and_decided_locally() -> None:
    store = DictBreakerStore(fail_on={1, 2})
    breaker = CircuitBreaker(name="payments", store=store, failure_threshold=1)
    seen: list[Any] = []
    breaker.add_listener(seen.append)
    assert await breaker.call(succeed) == "ok"  # admitted by the local machine
    with pytest.raises(Boom):
        await breaker.call(fail)  # admitted by the store; its outcome is lost (op 2)
    assert breaker.statistics().store_failures == 2
    assert [event.name for event in seen].count("store_failure") == 2
    assert breaker.state is CircuitState.CLOSED  # the lost failure never reached the store
    with pytest.raises(Boom):
        await breaker.call(fail)
    assert breaker.state is CircuitState.OPEN


async def test_an_admission_that_waits_for_its_store() -> None:
    store = DictBreakerStore(delay=0.001)
    breaker = CircuitBreaker(name="payments", store=store, failure_threshold=1)
    assert await breaker.call(succeed) == "ok"
    async with breaker:
        pass
    with pytest.raises(Boom):
        await breaker.call(fail)
    with pytest.raises(CircuitBreakerOpenError):
        await breaker.call(succeed)
    assert store.ops == 7  # 4 admissions (one refused) and 3 outcomes


def test_the_dict_stores_import_only_public_names() -> None:
    """The third store is written as an outside author would: every aioresilience module it
    imports is public (no ``_`` segment), and so is every name it imports from one."""
    import ast
    from pathlib import Path

    private = []
    for path in sorted(Path(__file__).parent.glob("dictstore*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                modules, names = [node.module or ""], [alias.name for alias in node.names]
            elif isinstance(node, ast.Import):
                modules, names = [alias.name for alias in node.names], []
            else:
                continue
            for module in modules:
                if module.split(".")[0] != "aioresilience":
                    continue
                if any(part.startswith("_") for part in module.split(".")):
                    private.append(f"{path.name}:{node.lineno}: {module}")
                private += [
                    f"{path.name}:{node.lineno}: {module}.{name}"
                    for name in names
                    if name.startswith("_")
                ]
    assert private == []


def test_the_public_in_memory_state() -> None:
    """abc.memory_breaker_state: the in-memory BreakerState a store can fall back on, its
    state changes told to the report it is given."""
    from aioresilience.abc import BreakerState, memory_breaker_state

    told: list[tuple[CircuitState, CircuitState]] = []

    class Report:
        def transition(self, old: CircuitState, new: CircuitState, at: float, r: float) -> None:
            told.append((old, new))

        def store_failure(self, error: BaseException | None) -> None:
            raise AssertionError("the in-memory state never fails")

    options = CircuitBreaker(name="p", failure_threshold=1, break_duration=5.0).options
    state = memory_breaker_state(options, Report())
    assert isinstance(state, BreakerState)
    ticket = state.try_admit(0.0)
    state.on_outcome(ticket, 0.0, True, False)
    assert state.state is CircuitState.OPEN
    assert told == [(CircuitState.CLOSED, CircuitState.OPEN)]
    assert state.retry_after(1.0) == pytest.approx(4.0)
    assert state.read_state(6.0) is CircuitState.HALF_OPEN
    assert memory_breaker_state(options).state is CircuitState.CLOSED  # a new state each call

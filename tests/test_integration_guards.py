"""The web adapters' one guard runner (``integrations._guards``) and the public seams it is
built on (``LoadShedder.feeds``, ``InFlight.core()``/``LatencyEWMA.core()``), in virtual
time: order, outcomes, cancellation and the signals fed without counting a request twice."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from aioresilience import (
    Bulkhead,
    BulkheadFull,
    InFlight,
    LatencyEWMA,
    LoadShed,
    LoadShedder,
    Pipeline,
    Priority,
)
from aioresilience.abc import NO_RESULT
from aioresilience.integrations._guards import GuardRunner, enter, leave
from aioresilience.integrations._http import Rule


def test_a_shedder_says_which_signal_it_feeds() -> None:
    in_flight, latency = InFlight(), LatencyEWMA()
    assert LoadShedder(in_flight).feeds is in_flight
    assert LoadShedder(latency).feeds is latency
    assert LoadShedder(lambda: 0.0).feeds is None  # a signal that measures itself


async def test_a_signal_core_counts_a_call_once() -> None:
    in_flight = InFlight()
    start, end = in_flight.core()
    token = start()
    assert in_flight.count == 1
    assert start() is None  # this task's call is counted already
    with in_flight.track():  # nor does a track() inside count it again
        assert in_flight.count == 1
    end(token, None, NO_RESULT)
    assert in_flight.count == 0


async def test_a_latency_core_times_the_call() -> None:
    latency = LatencyEWMA(alpha=1.0)
    start, end = latency.core()
    token = start()
    await asyncio.sleep(0.25)  # virtual time
    end(token, None, NO_RESULT)
    assert latency() == pytest.approx(0.25)


async def test_every_selected_request_feeds_the_shedders_once() -> None:
    in_flight = InFlight()
    shedder = LoadShedder(in_flight, thresholds={Priority.SHEDDABLE: 1.5})
    cheap, expensive = Rule(guards=[Bulkhead(10)]), Rule(guards=[shedder])
    runner = GuardRunner([cheap, expensive])
    seen: list[int] = []

    async def downstream() -> str:
        seen.append(in_flight.count)
        return "ok"

    # A request the shedder does not see is counted by the runner ...
    assert await runner.run(runner.plan(cheap.guards, None), downstream) == "ok"
    # ... one through it, by the shedder itself (from after its check), not twice.
    both = cheap.guards + expensive.guards
    assert await runner.run(runner.plan(both, Priority.SHEDDABLE), downstream) == "ok"
    assert seen == [1, 1] and in_flight.count == 0
    # The shedder's check does not see the request itself: two in flight shed the third.
    gate = asyncio.Event()

    async def held() -> None:
        await gate.wait()

    waiting = [asyncio.ensure_future(runner.run(runner.plan(cheap.guards, None), held))]
    waiting.append(asyncio.ensure_future(runner.run(runner.plan(both, None), held)))
    await asyncio.sleep(0)
    assert in_flight.count == 2
    with pytest.raises(LoadShed):
        await runner.run(runner.plan(expensive.guards, Priority.SHEDDABLE), downstream)
    gate.set()
    await asyncio.gather(*waiting)
    assert in_flight.count == 0


async def test_a_refusal_leaves_the_guards_entered_before_it() -> None:
    in_flight = InFlight()
    full = Bulkhead(1)
    shedder = LoadShedder(in_flight)
    other = Rule(guards=[shedder], paths="/other")
    rule = Rule(guards=[full])
    runner = GuardRunner([other, rule])
    assert full.try_acquire()
    with pytest.raises(BulkheadFull):
        await runner.run(runner.plan(rule.guards, None), asyncio.sleep, 0)
    assert in_flight.count == 0  # fed first, left on the refusal


@pytest.mark.parametrize("where", ["waiting for a slot", "downstream"])
async def test_a_cancelled_request_leaks_no_permit(where: str) -> None:
    bulkhead = Bulkhead(1, max_queue=1)
    in_flight = InFlight(capacity=10)
    rule = Rule(guards=[LoadShedder(in_flight), bulkhead])
    runner = GuardRunner([rule])
    plan = runner.plan(rule.guards, None)
    gate = asyncio.Event()
    holder = asyncio.ensure_future(runner.run(plan, gate.wait))
    await asyncio.sleep(0)
    slow = (asyncio.sleep, 10) if where == "downstream" else (gate.wait,)
    request = asyncio.ensure_future(runner.run(plan, *slow))
    if where == "downstream":
        gate.set()
        await holder
    await asyncio.sleep(0)
    request.cancel()  # the client went away
    with pytest.raises(asyncio.CancelledError):
        await request
    gate.set()
    await holder
    stats = bulkhead.statistics()
    assert (stats.active, in_flight.count) == (0, 0)


async def test_an_exit_that_raises_replaces_the_outcome_for_the_guards_outside() -> None:
    outcomes: list[Any] = []

    class Recorder:
        def __init__(self, name: str, fail: bool = False) -> None:
            self.name, self.fail = name, fail

        async def __aenter__(self) -> None:
            pass

        async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
            outcomes.append((self.name, exc))
            if self.fail:
                raise RuntimeError(self.name)

    rule = Rule(guards=[Recorder("outer"), Recorder("inner", fail=True)])
    runner = GuardRunner([rule])
    with pytest.raises(RuntimeError, match="inner") as caught:
        await runner.run(runner.plan(rule.guards, None), asyncio.sleep, 0)
    assert outcomes == [("inner", None), ("outer", caught.value)]


async def test_enter_and_leave_split_for_a_dependency() -> None:
    bulkhead = Bulkhead(1)
    rule = Rule(guards=[bulkhead])
    plan = GuardRunner([rule]).plan(rule.guards, None)
    entered = enter(plan)
    assert isinstance(entered, list)  # admitted at once: no coroutine
    assert bulkhead.statistics().active == 1
    assert leave(entered, None) is None
    assert bulkhead.statistics().active == 0
    entered = enter(plan)
    assert isinstance(entered, list)
    error = ValueError("handler")
    with pytest.raises(ValueError, match="handler"):
        await leave(entered, error)
    assert bulkhead.statistics().active == 0


def test_a_pipeline_that_would_rerun_the_request_fails_at_start_up() -> None:
    retrying = Pipeline.builder("p").retry(attempts=2).build()
    with pytest.raises(TypeError, match=r"rules\[0\]\.guards\[0\].*re-run"):
        GuardRunner([Rule(guards=[retrying])])
    with pytest.raises(TypeError, match=r"rules\[0\]\.guards\[0\] must be a guard"):
        GuardRunner([Rule(guards=[object()])])

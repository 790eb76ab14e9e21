"""Fallback, degradation tiers, load signals and load shedding."""

from __future__ import annotations

import asyncio
import math
from typing import Any

import pytest

from aioresilience import (
    EventLoopLag,
    Fallback,
    FallbackOutcome,
    GracefulDegradation,
    InFlight,
    LatencyEWMA,
    LoadShed,
    LoadShedder,
    Pipeline,
    Priority,
    Rejected,
    Tier,
    constant,
    fallback,
)


async def failing(product_id: int) -> str:
    raise ConnectionError(f"catalog down for {product_id}")


async def test_fallback_value_handler_and_chain() -> None:
    assert await Fallback("default").call(failing, 1) == "default"
    seen: list[FallbackOutcome] = []

    async def from_cache(outcome: FallbackOutcome) -> str:
        seen.append(outcome)
        return f"cached {outcome.args[0]}"

    assert await Fallback(from_cache).call(failing, 7) == "cached 7"
    assert isinstance(seen[0].exception, ConnectionError)  # the original error is there

    def broken(outcome: FallbackOutcome) -> str:
        raise KeyError("no cache")

    chain = Fallback(broken, from_cache)
    assert await chain.call(failing, 8) == "cached 8"


async def test_all_fallbacks_failing_raises_the_original_with_notes() -> None:
    def broken(outcome: FallbackOutcome) -> str:
        raise KeyError("no cache")

    with pytest.raises(ConnectionError) as caught:
        await Fallback(broken).call(failing, 3)
    assert "fallback failed too: KeyError" in caught.value.__notes__[-1]


async def test_all_fallbacks_failing_on_a_result_note_the_earlier_handlers() -> None:
    # no original exception: the last handler's error is raised; the earlier ones were lost
    def broken(outcome: FallbackOutcome) -> str:
        raise KeyError("no cache")

    def also_broken(outcome: FallbackOutcome) -> str:
        raise LookupError("no default")

    async def empty() -> None:
        return None

    with pytest.raises(LookupError) as caught:
        await Fallback(broken, also_broken, on_result=lambda r: r is None).call(empty)
    assert caught.value.__notes__ == ["Fallback: fallback failed too: KeyError: 'no cache'"]


async def test_only_handled_exceptions_and_results() -> None:
    with pytest.raises(ConnectionError):
        await Fallback("x", on=(KeyError,)).call(failing, 1)

    async def empty() -> list[int]:
        return []

    assert await Fallback([0], on_result=lambda r: r == []).call(empty) == [0]


async def test_cancellation_never_becomes_a_fallback() -> None:
    @fallback("fallback value")
    async def slow() -> str:
        await asyncio.sleep(10)
        return "real"

    task = asyncio.create_task(slow())
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_fallback_forms_run_its_one_core() -> None:
    """Issue 12: call, @fallback and the pipeline form (FallbackStrategy) are one core,
    ``execute(call, context)``; in every form the handlers see the call's arguments (in a
    pipeline too, whatever runs inside the fallback: the README's handler reads
    ``outcome.args[0]``)."""
    from aioresilience._fallback import FallbackStrategy

    seen: list[tuple[Any, ...]] = []

    def handler(outcome: FallbackOutcome) -> str:
        seen.append((outcome.args, dict(outcome.kwargs)))
        return "spare"

    spare = Fallback(handler)
    assert await spare.call(failing, 1) == "spare"
    assert await spare(failing)(product_id=2) == "spare"
    strategy = FallbackStrategy(spare)
    assert strategy.describe() == {"kind": "fallback", "name": "Fallback"}
    assert await Pipeline.builder().add(strategy).build().execute(failing, 3) == "spare"
    retried = Pipeline.builder().add(strategy).retry(attempts=2, backoff=constant(0)).timeout(1)
    assert await retried.build().execute(failing, product_id=4) == "spare"
    assert seen == [((1,), {}), ((), {"product_id": 2}), ((3,), {}), ((), {"product_id": 4})]
    assert spare.used == 4

    async def slow() -> str:
        await asyncio.sleep(10)
        return "real"

    task = asyncio.create_task(Pipeline.builder().add(strategy).build().execute(slow))
    await asyncio.sleep(1)
    task.cancel()  # never turned into a fallback, in the pipeline form either
    with pytest.raises(asyncio.CancelledError):
        await task
    assert spare.used == 4


async def test_degradation_tiers_follow_the_signal() -> None:
    load = {"value": 0.1}

    async def full(pid: int) -> str:
        return f"full {pid}"

    async def basic(pid: int) -> str:
        return f"basic {pid}"

    async def cached(pid: int) -> str:
        return f"cached {pid}"

    tiers = GracefulDegradation(
        lambda: load["value"],
        [Tier("full", full, up_to=0.7), Tier("basic", basic, up_to=0.9), Tier("cached", cached)],
    )
    answers = []
    for value in (0.1, 0.8, 0.95, 0.5):
        load["value"] = value
        answers.append(await tiers.call(1))
    assert answers == ["full 1", "basic 1", "cached 1", "full 1"]
    assert tiers.served == {"full": 2, "basic": 1, "cached": 1}


async def test_a_failing_tier_falls_through_to_the_next() -> None:
    async def cached() -> str:
        return "cached"

    async def broken() -> str:
        raise ConnectionError("down")

    tiers = GracefulDegradation(
        lambda: 0.0, [Tier("full", broken, up_to=0.5), Tier("cached", cached)]
    )
    assert await tiers.call() == "cached"
    strict = GracefulDegradation(
        lambda: 0.0, [Tier("full", broken, up_to=0.5), Tier("c", cached)], fall_through=False
    )
    with pytest.raises(ConnectionError):
        await strict.call()


async def test_signals() -> None:
    in_flight = InFlight(capacity=4)
    with in_flight.track(), in_flight.track():
        assert in_flight() == 0.5
    assert in_flight() == 0.0

    latency = LatencyEWMA(alpha=0.5)
    with latency.track():
        await asyncio.sleep(2)
    latency.observe(4)
    assert latency() == pytest.approx(3.0)

    async with EventLoopLag(interval=0.1) as lag:
        await asyncio.sleep(1)
        assert lag() == 0.0  # virtual time: timers run exactly on time


async def test_event_loop_lag_sees_a_blocked_loop() -> None:
    lag = EventLoopLag(interval=0.1, alpha=1.0)
    loop = asyncio.get_running_loop()
    async with lag:
        await asyncio.sleep(0.05)
        loop.advance(0.5)  # as if a blocking call held the loop for 0.5 s
        await asyncio.sleep(0.01)  # the sampler's overdue timer has run, the next has not
    assert lag() == pytest.approx(0.45)


def test_event_loop_lag_samples_again_on_a_later_loop() -> None:
    """Started and left running when its loop ended (asyncio.run cancels the sampler), a lag
    started on the next loop samples there: it does not keep the last loop's reading."""
    from aioresilience.testing import run

    lag = EventLoopLag(interval=0.1, alpha=1.0)

    async def blocked() -> None:
        lag.start()
        await asyncio.sleep(0.05)
        asyncio.get_running_loop().advance(0.5)  # type: ignore[attr-defined]
        await asyncio.sleep(0.01)

    async def calm() -> float:
        lag.start()
        await asyncio.sleep(1)
        return lag()

    run(blocked())
    assert lag() == pytest.approx(0.45)
    assert run(calm()) == 0.0


async def test_load_shedding_by_priority() -> None:
    load = {"value": 0.5}
    shedder = LoadShedder(lambda: load["value"], retry_after=2.0)

    @shedder.limit(Priority.SHEDDABLE)
    async def recommendations() -> str:
        return "recs"

    @shedder.limit(Priority.CRITICAL)
    async def checkout() -> str:
        return "paid"

    async def browse() -> str:
        return "page"

    assert await recommendations() == "recs"
    load["value"] = 0.8  # sheddable work goes first
    with pytest.raises(LoadShed) as caught:
        await recommendations()
    assert isinstance(caught.value, Rejected) and caught.value.retry_after == 2.0
    assert await shedder.call(browse) == "page"
    load["value"] = 0.95  # then normal work
    with pytest.raises(LoadShed):
        await shedder.call(browse)
    assert await checkout() == "paid"  # critical work is never shed by default
    assert shedder.shed == {Priority.CRITICAL: 0, Priority.NORMAL: 1, Priority.SHEDDABLE: 1}


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: Fallback(), TypeError, "at least one handler"),
        (lambda: Fallback(1, on="x"), TypeError, "on must be an exception class"),
        (lambda: LatencyEWMA(alpha=2), ValueError, r"alpha must be in \(0, 1\]"),
        (lambda: GracefulDegradation(3, [Tier("a", failing)]), TypeError, "signal must be"),
        (lambda: GracefulDegradation(lambda: 0, []), ValueError, "tiers must not be empty"),
        (
            lambda: GracefulDegradation(
                lambda: 0,
                [Tier("a", failing, up_to=0.9), Tier("b", failing, up_to=0.5), Tier("c", failing)],
            ),
            ValueError,
            "increasing up_to",
        ),
        (
            lambda: GracefulDegradation(lambda: 0, [Tier("a", failing, up_to=0.9)]),
            ValueError,
            "last tier must have up_to=None",
        ),
        (
            lambda: LoadShedder(
                lambda: 0, thresholds={Priority.SHEDDABLE: 0.9, Priority.NORMAL: 0.5}
            ),
            ValueError,
            "must not shed a higher priority",
        ),
        (lambda: LoadShedder(lambda: 0, retry_after=-1), ValueError, "retry_after must be"),
        (lambda: LoadShedder(lambda: 0, retry_after=10**400), ValueError, "retry_after must be"),
        (lambda: LoadShedder(lambda: 0, thresholds=5), TypeError, "thresholds must be a mapping"),
        (
            lambda: LoadShedder(lambda: 0, thresholds={Priority.NORMAL: float("nan")}),
            ValueError,
            "threshold for NORMAL must be a number",
        ),
        (
            lambda: LoadShedder(lambda: 0, thresholds={Priority.NORMAL: 10**400}),
            ValueError,
            "threshold for NORMAL must be within float range",
        ),
        (
            lambda: LoadShedder(lambda: 0, thresholds={Priority.NORMAL: True}),
            TypeError,
            "threshold for NORMAL must be a number",
        ),
        (lambda: LoadShedder(lambda: 0, name=5), TypeError, "name must be a str or None, got 5"),
        (lambda: LoadShedder(sleep_a_second), TypeError, "signal must be a plain"),
        (lambda: GracefulDegradation(sleep_a_second, [Tier("a", failing)]), TypeError, "signal"),
        (lambda: GracefulDegradation(lambda: 0, 5), TypeError, "tiers must be a list of Tier"),
        (
            lambda: GracefulDegradation(lambda: 0, [("a", failing)]),
            TypeError,
            "tiers must be a list of Tier",
        ),
        (
            lambda: GracefulDegradation(lambda: 0, [Tier("a", failing)], name=5),
            TypeError,
            "name must be a str or None",
        ),
        (
            lambda: GracefulDegradation(lambda: 0, [Tier("a", failing)], fall_through=1),
            TypeError,
            "fall_through must be a bool",
        ),
        (lambda: Tier("a", failing, up_to=float("nan")), ValueError, "up_to must be a number"),
        (lambda: Tier("a", failing, up_to="x"), TypeError, "up_to must be a number"),
        (lambda: Tier("a", failing, up_to=float("inf")), ValueError, "up_to must be a finite"),
        (lambda: Tier("a", failing, up_to=10**400), ValueError, "up_to must be within float"),
        (lambda: Tier("a", lambda: "sync"), TypeError, "handler must be a coroutine function"),
        (lambda: Tier(5, failing), TypeError, "name must be a str, got 5"),
        (lambda: Fallback(1, on_fallback=5), TypeError, "on_fallback must be callable"),
        (lambda: Fallback(1, name=5), TypeError, "name must be a str or None"),
        (lambda: InFlight(capacity=5e-324), ValueError, "capacity must be >= 1e-12"),
        (lambda: InFlight(capacity=True), TypeError, "capacity must be a number"),
        (lambda: EventLoopLag(interval=5e-324), ValueError, "interval must be >= 0.001"),
    ],
)
def test_bad_input(build: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        build()


@pytest.mark.parametrize("priority", ["SHEDDABLE", 5, 1, True, None])
def test_a_priority_that_is_not_a_priority_is_refused_everywhere(priority: Any) -> None:
    shedder = LoadShedder(lambda: 1.0)
    with pytest.raises(TypeError, match="priority must be a Priority"):
        shedder.check(priority)
    with pytest.raises(TypeError, match="priority must be a Priority"):
        shedder.limit(priority)
    with pytest.raises(TypeError, match="priority must be a Priority"):
        Pipeline.builder("p").load_shed(shedder, priority)  # at build time


async def sleep_a_second() -> str:
    await asyncio.sleep(1)
    return "done"


@pytest.mark.parametrize("way", ["pipeline", "async with", "limit", "call"])
async def test_a_shedder_feeds_the_in_flight_signal_it_was_given(way: str) -> None:
    in_flight = InFlight(capacity=2)
    shedder = LoadShedder(in_flight, thresholds={Priority.NORMAL: 0.5})
    pipeline = Pipeline.builder("p").load_shed(shedder, Priority.NORMAL).build()
    limited = shedder.limit(Priority.NORMAL)(sleep_a_second)

    async def run() -> str:
        if way == "pipeline":
            return await pipeline.execute(sleep_a_second)
        if way == "async with":
            async with pipeline:
                return await sleep_a_second()
        if way == "limit":
            return await limited()
        return await shedder.call(sleep_a_second)

    first = asyncio.create_task(run())
    second = asyncio.create_task(run())
    await asyncio.sleep(0)
    assert in_flight.count == 2  # counted without any track() by hand
    with pytest.raises(LoadShed):
        await run()  # load 1.0 > 0.5: shed, and not counted
    assert in_flight.count == 2
    assert await first == await second == "done"
    assert in_flight.count == 0
    assert shedder.shed[Priority.NORMAL] == 1


async def test_tracking_by_hand_too_does_not_count_a_call_twice() -> None:
    in_flight = InFlight()
    shedder = LoadShedder(in_flight, thresholds={Priority.NORMAL: 5})
    pipeline = Pipeline.builder("p").load_shed(shedder).build()
    seen: list[int] = []

    async def work() -> None:
        seen.append(in_flight.count)

    async def tracking_work() -> None:
        with in_flight.track():  # inside the call the shedder feeds
            seen.append(in_flight.count)

    with in_flight.track():  # around it
        await pipeline.execute(work)
        await shedder.call(work)
    await pipeline.execute(tracking_work)
    await shedder.call(tracking_work)
    with in_flight.track():  # around it and inside it: still one call
        await pipeline.execute(tracking_work)
        await shedder.call(tracking_work)
    assert seen == [1, 1, 1, 1, 1, 1]
    assert in_flight.count == 0
    with in_flight.track(), in_flight.track():  # by hand only: as before, each one counts
        assert in_flight.count == 2


async def test_degradation_and_shedder_feed_latency_and_in_flight() -> None:
    latency = LatencyEWMA(alpha=1.0)
    shedder = LoadShedder(latency, thresholds={Priority.NORMAL: 0.5})
    assert await shedder.call(sleep_a_second) == "done"
    assert latency() == 1.0
    with pytest.raises(LoadShed):
        await shedder.call(sleep_a_second)

    in_flight = InFlight()

    async def full() -> str:
        await asyncio.sleep(1)
        return "full"

    async def basic() -> str:
        return "basic"

    page = GracefulDegradation(in_flight, [Tier("full", full, up_to=1), Tier("basic", basic)])
    results = await asyncio.gather(*(page.call() for _ in range(3)))
    assert results == ["full", "full", "basic"]  # the third saw two in flight
    assert in_flight.count == 0


async def test_the_seed_guides_update_system_load() -> None:
    async def full() -> str:
        return "full"

    async def cached() -> str:
        return "cached"

    page = GracefulDegradation(None, [Tier("full", full, up_to=0.8), Tier("cached", cached)])
    assert await page.call() == "full"
    page.update_system_load(0.95)
    assert await page.call() == "cached"
    with pytest.raises(ValueError, match="load must be a number"):
        page.update_system_load(float("nan"))
    reading = GracefulDegradation(lambda: 0.0, [Tier("full", full)])
    with pytest.raises(TypeError, match="reads its signal"):
        reading.update_system_load(0.5)


async def test_a_priority_left_out_is_shed_with_the_next_more_important_one() -> None:
    """{NORMAL: 0.9} alone used to shed NORMAL work and never SHEDDABLE work (review 7)."""
    load = 0.95
    shedder = LoadShedder(lambda: load, thresholds={Priority.NORMAL: 0.9})
    for priority in (Priority.SHEDDABLE, Priority.NORMAL):
        with pytest.raises(LoadShed):
            shedder.check(priority)
    shedder.check(Priority.CRITICAL)  # never: no threshold for it or above it
    critical_only = LoadShedder(lambda: load, thresholds={Priority.CRITICAL: 0.9})
    for priority in Priority:
        with pytest.raises(LoadShed):
            critical_only.check(priority)
    load = 0.5
    for priority in Priority:
        shedder.check(priority)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, 10**400, True, "0.1", None])
def test_latency_ewma_observe_refuses_what_is_not_a_latency(bad: object) -> None:
    # A NaN or an inf fed by hand stayed in the average for good (every later reading NaN,
    # so a shedder on it never shed); a str failed only at the next observe.
    ewma = LatencyEWMA()
    with pytest.raises((TypeError, ValueError), match="seconds"):
        ewma.observe(bad)  # type: ignore[arg-type]
    ewma.observe(0.25)
    assert ewma() == 0.25


@pytest.mark.parametrize(
    "value",
    [10**400, -(10**400), math.nan, "1", True],
    ids=["huge", "-huge", "nan", "str", "bool"],
)
async def test_a_signal_outside_float_range_gets_the_signal_error(value: object) -> None:
    # an int beyond float range escaped as a bare OverflowError (from math.isnan)
    async def serve() -> str:
        return "served"

    page = GracefulDegradation(lambda: value, [Tier("a", serve, up_to=1), Tier("b", serve)])
    with pytest.raises(TypeError, match="a load signal must return a number"):
        await page.call()
    with pytest.raises(TypeError, match="a load signal must return a number"):
        LoadShedder(lambda: value).check()


def test_a_cancelled_call_is_no_latency_sample_of_a_fed_ewma() -> None:
    """A LatencyEWMA fed by a shedder, a degradation or track() takes no sample from a
    cancelled call (its time is not the dependency's latency)."""
    import aioresilience as ar
    from aioresilience.testing import run

    async def main() -> None:
        ewma = ar.LatencyEWMA()
        shedder = ar.LoadShedder(ewma)
        degradation = ar.GracefulDegradation(ewma, [ar.Tier("only", asyncio.Event().wait)])

        async def tracked() -> None:
            with ewma.track():
                await asyncio.sleep(100)

        for start in (
            lambda: shedder.call(asyncio.sleep, 100),
            lambda: degradation.call(),
            tracked,
        ):
            task = asyncio.ensure_future(start())
            await asyncio.sleep(3)
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            assert ewma() == 0.0
        await shedder.call(asyncio.sleep, 2)
        assert ewma() == 2.0

    run(main())


def test_tiers_of_one_name_are_refused() -> None:
    async def serve() -> str:
        return "page"

    # `served` counts by name: two tiers named alike would share one count.
    with pytest.raises(ValueError, match="distinct names"):
        GracefulDegradation(None, [Tier("page", serve, up_to=0.5), Tier("page", serve)])

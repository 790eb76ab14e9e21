"""Chaos injection and hedging, in virtual time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import aioresilience as ar
from aioresilience import ChaosFault, ChaosMonkey, Pipeline


async def ok() -> str:
    return "ok"


async def test_chaos_monkey_rates_within_bounds_and_reproducible() -> None:
    def run(seed: int) -> list[bool]:
        monkey = ChaosMonkey(failure_rate=0.3, seed=seed)
        outcomes = []
        for _ in range(2000):
            try:
                monkey.maybe_fail()
                outcomes.append(False)
            except ChaosFault:
                outcomes.append(True)
        return outcomes

    first = run(7)
    assert first == run(7)  # same seed, same faults
    assert first != run(8)
    # 2000 draws at p=0.3: mean 600, sd ~20.5; 5 sd either way.
    assert 500 <= sum(first) <= 700


async def test_chaos_monkey_latency_kill_and_switch() -> None:
    loop = asyncio.get_running_loop()
    switch = {"on": False}
    monkey = ChaosMonkey(
        failure_rate=0.0,
        latency_rate=1.0,
        latency=(1.0, 2.0),
        kill_rate=0.0,
        enabled=lambda: switch["on"],
        seed=1,
    )
    chaotic = monkey(ok)
    assert await chaotic() == "ok" and loop.time() == 0.0  # switched off
    switch["on"] = True
    assert await chaotic() == "ok"
    assert 1.0 <= loop.time() <= 2.0
    killer = ChaosMonkey(failure_rate=0.0, kill_rate=1.0)
    with pytest.raises(ConnectionResetError):
        killer.kill_connection()
    assert monkey.injected["latency"] == 1


async def test_chaos_monkey_forms_inject_alike_from_one_core() -> None:
    """The decorator, ``async with`` and ``call`` draw the same injections in the same order
    (latency first, then a kill, then a fault) from the same seed."""
    loop = asyncio.get_running_loop()

    def monkey() -> ChaosMonkey:
        return ChaosMonkey(
            failure_rate=0.3, latency_rate=0.5, latency=(1.0, 2.0), kill_rate=0.2, seed=11
        )

    async def through_decorator(m: ChaosMonkey) -> str:
        return await m(ok)()

    async def through_async_with(m: ChaosMonkey) -> str:
        async with m:
            return await ok()

    async def through_call(m: ChaosMonkey) -> str:
        return await m.call(ok)

    traces = []
    for form in (through_decorator, through_async_with, through_call):
        m, trace = monkey(), []
        for _ in range(200):
            started = loop.time()
            try:
                trace.append(await form(m))
            except (ChaosFault, ConnectionResetError) as exc:
                trace.append(type(exc).__name__)
            trace.append(round(loop.time() - started, 9))
        traces.append((trace, dict(m.injected)))
    assert traces[0] == traces[1] == traces[2]
    injected = traces[0][1]
    assert injected["latency"] > 50 and injected["kill"] > 10 and injected["fault"] > 10


async def test_chaos_monkey_cancelled_in_its_latency_never_calls() -> None:
    calls = []

    async def tracked() -> None:
        calls.append(1)

    monkey = ChaosMonkey(failure_rate=1.0, latency_rate=1.0, latency=10.0)
    task = asyncio.create_task(monkey.call(tracked))
    await asyncio.sleep(1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Cancelled during the injected latency: no fault drawn or counted, no call made.
    assert calls == [] and monkey.injected == {"fault": 0, "latency": 1, "kill": 0}


async def test_resilient_service_absorbs_injected_faults() -> None:
    pipeline = (
        Pipeline.builder("service", seed=3)
        .retry(attempts=5, backoff=ar.constant(0.1))
        .circuit_breaker(failure_threshold=10)
        .chaos_fault(0.5)
        .build()
    )
    results = [await pipeline.execute(ok) for _ in range(50)]
    assert results == ["ok"] * 50  # every injected fault was retried away
    injected = pipeline.strategies[-1].describe()["injected"]
    assert 20 <= injected <= 80


async def test_chaos_strategies_latency_outcome_behavior_and_seed() -> None:
    loop = asyncio.get_running_loop()
    calls = []

    async def behavior() -> None:
        calls.append(loop.time())

    pipeline = (
        Pipeline.builder(seed=1)
        .chaos_latency(1.0, 2.0)
        .chaos_behavior(1.0, behavior)
        .chaos_outcome(1.0, "substituted")
        .build()
    )
    assert await pipeline.execute(ok) == "substituted"
    assert calls == [2.0] and loop.time() == 2.0

    def sequence(seed: int) -> list[Any]:
        p = Pipeline.builder(seed=seed).chaos_outcome(0.5, "x").build()
        return [asyncio.ensure_future(p.execute(ok)) for _ in range(30)]

    first = await asyncio.gather(*sequence(11))
    assert first == await asyncio.gather(*sequence(11))


def test_chaos_outcome_refuses_a_coroutine_function() -> None:
    # outcome() is called, never awaited: an async one made the call's result a coroutine.
    async def cached() -> str:
        return "cached"

    with pytest.raises(TypeError, match="outcome must be a value or a plain"):
        Pipeline.builder(seed=1).chaos_outcome(1.0, cached)
    Pipeline.builder(seed=1).chaos_outcome(1.0, lambda: "cached")  # a sync factory is fine


async def test_hedge_first_acceptable_wins_losers_cancelled_and_awaited() -> None:
    loop = asyncio.get_running_loop()
    started: list[float] = []
    finished_or_cancelled: list[str] = []
    latencies = iter([10.0, 0.5, 0.5])

    async def call() -> float:
        started.append(loop.time())
        latency = next(latencies)
        try:
            await asyncio.sleep(latency)
        except asyncio.CancelledError:
            finished_or_cancelled.append(f"cancelled@{loop.time()}")
            raise
        finished_or_cancelled.append(f"done@{loop.time()}")
        return latency

    pipeline = Pipeline.builder().hedge(max_hedged=2, delay=1.0, idempotent=True).build()
    assert await pipeline.execute(call) == 0.5
    assert started == [0.0, 1.0]  # the hedge started at 1.0 answered at 1.5, before a third
    assert finished_or_cancelled == ["done@1.5", "cancelled@1.5"]  # the loser was awaited


async def test_hedge_parallel_mode_and_failures_start_the_next_at_once() -> None:
    loop = asyncio.get_running_loop()
    started: list[float] = []

    async def flaky() -> str:
        started.append(loop.time())
        await asyncio.sleep(0.1)
        if len(started) < 3:
            raise OSError("bad replica")
        return "good"

    pipeline = Pipeline.builder().hedge(max_hedged=2, delay=5.0, idempotent=True).build()
    assert await pipeline.execute(flaky) == "good"
    assert started == [0.0, 0.1, 0.2]  # each failure started the next without waiting 5 s

    parallel = Pipeline.builder().hedge(max_hedged=2, delay=0, idempotent=True).build()
    started.clear()
    with pytest.raises(OSError):
        await parallel.execute(_always_fails(started))
    assert len(started) == 3 and len(set(started)) == 1  # all three at the same instant


async def test_hedge_two_failures_at_once_start_two_attempts_at_once() -> None:
    """Each handled failure starts the next attempt at once: attempts 0 (2 s) and 1 (started
    at 1 s, 1 s long) fail together at 2 s; attempts 2 and 3 both start then (the second
    waited for the next delay, at 3 s)."""
    loop = asyncio.get_running_loop()
    started: list[float] = []
    lengths = [2.0, 1.0, 10.0, 10.0]

    async def call() -> str:
        n = len(started)
        started.append(loop.time())
        await asyncio.sleep(lengths[n])
        if n < 2:
            raise OSError("bad replica")
        return "good"

    hedge = ar.Hedge(max_hedged=3, delay=1.0, idempotent=True)
    assert await hedge.call(call) == "good"
    assert started == [0.0, 1.0, 2.0, 2.0]


async def test_a_failure_hedge_on_does_not_name_ends_the_call_and_cancels_the_others() -> None:
    # A failure not worth another try (a 404, a bad argument) is the call's outcome: raised
    # at once, the attempt still running cancelled and awaited, no attempt started for it.
    loop = asyncio.get_running_loop()
    started: list[float] = []
    cancelled: list[int] = []

    async def call() -> str:
        n = len(started)
        started.append(loop.time())
        try:
            await asyncio.sleep(10.0 if n == 0 else 0.5)
        except asyncio.CancelledError:
            cancelled.append(n)
            raise
        raise (LookupError if n == 1 else OSError)(f"attempt {n}")

    hedge = ar.Hedge(max_hedged=3, delay=1.0, idempotent=True, hedge_on=OSError)
    with pytest.raises(LookupError, match="attempt 1"):
        await hedge.call(call)
    assert started == [0.0, 1.0] and cancelled == [0] and loop.time() == 1.5
    # A failure it names starts the next attempt at once, as by default.
    started.clear()
    hedge = ar.Hedge(max_hedged=2, delay=5.0, idempotent=True, hedge_on=[LookupError, OSError])
    with pytest.raises(OSError):
        await hedge.call(_always_fails(started))
    assert len(started) == 3
    # A predicate too, through the builder.
    pipeline = (
        Pipeline.builder()
        .hedge(idempotent=True, max_hedged=2, delay=5.0, hedge_on=lambda exc: "retry" in str(exc))
        .build()
    )
    started.clear()
    with pytest.raises(OSError, match="down"):
        await pipeline.execute(_always_fails(started))
    assert len(started) == 1


async def test_an_attempt_won_at_the_instant_another_fails_unhedged_wins_every_time() -> None:
    # Two attempts end at the same instant: one with a result, one with a failure hedge_on
    # leaves out. The outcome was whichever the set of done attempts listed first (by memory
    # address): the error about 3 times in 4. The result in hand wins, every time.
    def attempts(failing: int) -> Any:
        started: list[int] = []

        async def call() -> str:
            n = len(started)
            started.append(n)
            await asyncio.sleep(1.0)
            if n == failing:
                raise LookupError("not found")
            return "ok"

        return call

    outcomes: list[str] = []
    for i in range(20):
        hedge = ar.Hedge(max_hedged=1, delay=0, idempotent=True, hedge_on=ConnectionError)
        try:
            outcomes.append(await hedge.call(attempts(failing=i % 2)))
        except LookupError:
            outcomes.append("LookupError")
    assert outcomes == ["ok"] * 20


def _always_fails(started: list[float]) -> Any:
    async def call() -> None:
        started.append(asyncio.get_running_loop().time())
        await asyncio.sleep(0.1)
        raise OSError("down")

    return call


async def test_hedge_spends_a_budget_and_cancels_on_caller_cancel() -> None:
    # Envoy's form: hedges in flight count as retries in flight, at most max(1, 10 % of 1).
    budget = ar.RetryBudget.concurrency(percent=0.1, min_retries=1)
    pipeline = (
        Pipeline.builder().hedge(max_hedged=3, delay=1.0, idempotent=True, budget=budget).build()
    )
    started: list[float] = []

    async def slow() -> None:
        started.append(asyncio.get_running_loop().time())
        await asyncio.sleep(100)

    task = asyncio.create_task(pipeline.execute(slow))
    await asyncio.sleep(10)
    assert len(started) == 2  # one hedge in flight is all the budget allows
    assert budget.exhausted == 1  # refused once, then no more hedging for this call
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    assert (budget.ledger.requests, budget.ledger.retries) == (0, 0)


async def test_hedge_gives_the_budget_back_when_the_call_raises_at_once() -> None:
    # A call that raises before giving an awaitable (or gives none) ends the hedged call:
    # the budget's ledger hears it end too, and a hedge that failed to start frees its slot.
    budget = ar.RetryBudget.concurrency(percent=0.5, min_retries=1)
    hedge = ar.Hedge(max_hedged=1, delay=1.0, idempotent=True, budget=budget)

    def not_async() -> int:
        return 42

    with pytest.raises(TypeError):
        await hedge.call(not_async)  # type: ignore[arg-type]
    with pytest.raises(ZeroDivisionError):
        await hedge.call(lambda: 1 / 0)  # type: ignore[arg-type, return-value]
    calls = 0

    def second_raises() -> Any:
        nonlocal calls
        calls += 1
        if calls > 1:
            raise ZeroDivisionError("the hedge")
        return asyncio.sleep(5)

    with pytest.raises(ZeroDivisionError):
        await hedge.call(second_raises)
    assert (budget.ledger.requests, budget.ledger.retries) == (0, 0)
    assert not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


@pytest.mark.parametrize("seed", [True, 1.5, float("nan"), "1"])
def test_chaos_monkey_seed_must_be_an_int(seed: Any) -> None:
    with pytest.raises(TypeError, match="seed must be an int"):
        ChaosMonkey(seed=seed)


def test_hedge_and_chaos_validation() -> None:
    with pytest.raises(ValueError, match="pass idempotent=True"):
        Pipeline.builder().hedge()
    with pytest.raises(ValueError, match=r"rate must be a probability in \[0, 1\], got 1.5"):
        Pipeline.builder().chaos_fault(1.5)
    with pytest.raises(TypeError, match="enabled must be a bool or a callable"):
        Pipeline.builder().chaos_fault(0.1, enabled="yes")  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"latency range must satisfy 0 <= low <= high, got \(2.0, 1.0\)"
    ):
        Pipeline.builder().chaos_latency(0.1, (2.0, 1.0))
    with pytest.raises(ValueError, match="failure_rate must be a probability"):
        ChaosMonkey(failure_rate=-0.1)
    with pytest.warns(ar.PipelineOrderWarning, match="put retry outside the hedge"):
        Pipeline.builder().hedge(idempotent=True).retry().build()


# -- issue 11 --------------------------------------------------------------------------------


async def _async_switch() -> bool:
    return False


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: ChaosMonkey(latency=(1, 2, 3)),
            ValueError,
            r"latency must be a number or a \(low, high\) pair, got \(1, 2, 3\)",
        ),
        (lambda: ChaosMonkey(latency=(1,)), ValueError, "latency must be a number or a"),
        (lambda: ChaosMonkey(latency="1"), TypeError, "latency must be a number or a"),  # type: ignore[arg-type]
        (lambda: ChaosMonkey(latency=True), TypeError, "latency must be a number or a"),
        (lambda: ChaosMonkey(latency=(True, 2)), TypeError, "latency low must be a number"),
        (lambda: ChaosMonkey(latency=(0, 10**400)), ValueError, "latency high must be within"),
        (lambda: ChaosMonkey(failure_rate=True), TypeError, "failure_rate must be a probability"),
        (
            lambda: ChaosMonkey(kill_rate=float("nan")),
            ValueError,
            "kill_rate must be a probability",
        ),
        (lambda: ChaosMonkey(enabled=_async_switch), TypeError, "enabled must be a plain"),
        (
            lambda: Pipeline.builder().chaos_latency(0.5, True),
            TypeError,
            "latency must be a number",
        ),
        (
            lambda: Pipeline.builder().chaos_latency(0.5, (0, True)),
            TypeError,
            "latency high must be a number",
        ),
        (
            lambda: Pipeline.builder().chaos_fault(0.5, enabled=_async_switch),
            TypeError,
            "enabled must be a plain",
        ),
        (lambda: Pipeline.builder().chaos_fault(True), TypeError, "rate must be a probability"),
    ],
)
def test_chaos_bad_values_found_by_issue_11(build: Any, error: type, message: str) -> None:
    """Issue 11 item 18: ValueError/TypeError naming the parameter, never an unpacking
    error, and no async switch taken as always on."""
    with pytest.raises(error, match=message):
        build()


async def test_maybe_fail_takes_the_seed_error_message() -> None:
    monkey = ChaosMonkey(failure_rate=1.0)
    with pytest.raises(ChaosFault, match=r"^database on fire$"):
        monkey.maybe_fail("database on fire")
    with pytest.raises(ChaosFault, match=r"^chaos: injected failure$"):
        monkey.maybe_fail()
    with pytest.raises(TypeError, match="error_message must be a str or None, got 5"):
        monkey.maybe_fail(5)  # type: ignore[arg-type]


async def test_add_latency_takes_the_seed_range() -> None:
    loop = asyncio.get_running_loop()
    monkey = ChaosMonkey(latency_rate=1.0, latency=0.1, seed=3)
    for low, high in ((2.0, 3.0), (0.0, 0.05)):
        for _ in range(20):
            start = loop.time()
            await monkey.add_latency(min_seconds=low, max_seconds=high)
            assert low <= loop.time() - start <= high
    start = loop.time()
    await monkey.add_latency(max_seconds=0.1)  # the configured low end (0.1) stays
    assert loop.time() - start == pytest.approx(0.1)
    with pytest.raises(ValueError, match="need min_seconds <= max_seconds"):
        await monkey.add_latency(min_seconds=2.0, max_seconds=1.0)
    with pytest.raises(TypeError, match="min_seconds must be a number"):
        await monkey.add_latency(min_seconds="1")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="max_seconds must be a finite number >= 0, got inf"):
        await monkey.add_latency(max_seconds=float("inf"))
    assert monkey.injected["latency"] == 41


async def test_chaos_decorator_keeps_defaults_and_kwdefaults() -> None:
    """Issue 11 item 19."""

    async def fetch(a: int, b: int = 2, *, c: int = 3) -> int:
        return a + b + c

    decorated = ChaosMonkey(failure_rate=0.0)(fetch)
    assert decorated.__defaults__ == (2,)
    assert decorated.__kwdefaults__ == {"c": 3}
    assert await decorated(1) == 6


async def _async_fault() -> BaseException:
    return OSError("never raised")


async def _async_key(context: Any) -> str:
    return "k"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (
            lambda: Pipeline.builder().hedge(idempotent=True, acceptable=_async_switch),
            "acceptable must be a plain",
        ),
        (
            lambda: Pipeline.builder().chaos_fault(0.5, fault=_async_fault),
            r"fault must be an exception or a callable making one \(not async\)",
        ),
        (lambda: Pipeline.builder().rate_limit(rate="5/s", key=_async_key), "key must be a plain"),
        (lambda: Pipeline.builder().rate_limit(), "give a RateLimiter as limiter= or options"),
        (
            lambda: Pipeline.builder().retry(ar.Retry(), attempts=2),
            r"not both: policy=<Retry .*> and \['attempts'\]",
        ),
    ],
)
def test_builder_options_name_the_parameter(build: Any, message: str) -> None:
    """Issue 11 item 18, found by the constructor fuzz: async callables where the builder
    calls them without await, and errors that did not say which parameter."""
    with pytest.raises(TypeError, match=message):
        build()


async def test_the_pipeline_decorator_keeps_defaults_and_kwdefaults() -> None:
    """Issue 11 item 19, for @pipeline as for @Retry(...)."""

    async def fetch(a: int, b: int = 2, *, c: int = 3) -> int:
        return a + b + c

    decorated = Pipeline.builder("p").hedge(idempotent=True).build()(fetch)
    assert (decorated.__defaults__, decorated.__kwdefaults__) == ((2,), {"c": 3})
    assert await decorated(1) == 6


# -- issue 12: the strategies in their modules, each with one core --------------------------


def _no_task_left() -> bool:
    return not [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


async def test_hedge_on_its_own_call_and_decorator_cancel_and_await_the_losers() -> None:
    from aioresilience._hedging import Hedge

    loop = asyncio.get_running_loop()
    ends: list[str] = []

    async def replica(latency: float, *, tag: str) -> str:
        try:
            await asyncio.sleep(latency)
        except asyncio.CancelledError:
            ends.append(f"{tag} cancelled@{loop.time()}")
            raise
        return tag

    latencies = iter([10.0, 0.5])

    async def call(tag: str) -> str:
        return await replica(next(latencies), tag=tag)

    hedge = Hedge(max_hedged=1, delay=1.0, idempotent=True)
    assert await hedge.call(call, "a") == "a"
    assert ends == ["a cancelled@1.5"] and _no_task_left()
    assert hedge.started == 2

    decorated = hedge(replica)
    task = asyncio.create_task(decorated(100.0, tag="b"))
    await asyncio.sleep(5)
    task.cancel()  # the caller's cancellation reaches every attempt, none is left
    with pytest.raises(asyncio.CancelledError):
        await task
    assert ends[1:] == ["b cancelled@6.5", "b cancelled@6.5"] and _no_task_left()


async def test_a_hedge_alone_or_in_a_pipeline_has_listeners_of_its_own() -> None:
    from aioresilience._hedging import HedgeStrategy

    budget = ar.RetryBudget.concurrency(percent=0.1, min_retries=1)
    hedge = ar.Hedge(max_hedged=2, delay=1.0, idempotent=True, budget=budget)
    heard: list[ar.ResilienceEvent] = []
    hedge.add_listener(heard.append)

    async def slow() -> str:
        await asyncio.sleep(5)
        return "ok"

    assert await hedge.call(slow) == "ok"  # alone: nobody else would hear it
    assert [type(e) for e in heard] == [ar.HedgeStarted, ar.BudgetExhausted]
    assert (heard[0].hedge, heard[0].strategy, heard[0].pipeline) == (1, hedge.name, None)
    pipeline = Pipeline.builder("p").add(HedgeStrategy(hedge)).build()
    heard.clear()
    assert await pipeline.execute(slow) == "ok"
    assert [(e.name, e.pipeline) for e in heard] == [
        ("hedge_started", "p"),
        ("budget_exhausted", "p"),
    ]


async def test_the_builder_takes_an_existing_hedge_or_options_not_both() -> None:
    hedge = ar.Hedge(max_hedged=1, delay=0.1, idempotent=True)
    pipeline = Pipeline.builder("p").hedge(hedge).build()
    assert pipeline.describe()[0]["name"] == hedge.name

    async def slow() -> str:
        await asyncio.sleep(1)
        return "ok"

    assert await pipeline.execute(slow) == "ok"
    assert hedge.started == 2  # the very Hedge given ran the call
    with pytest.raises(TypeError, match=r"give a Hedge or options, not both: .*\['delay'\]"):
        Pipeline.builder().hedge(hedge, delay=1.0)
    with pytest.raises(TypeError, match="hedge must be a Hedge, got 3"):
        Pipeline.builder().hedge(3)  # type: ignore[arg-type]


async def test_hedge_strategy_counts_attempts_and_describes_itself() -> None:
    from aioresilience._hedging import Hedge, HedgeStrategy

    seen: list[int] = []

    async def call() -> str:
        context = ar.current_context()
        assert context is not None
        seen.append(context.attempt)
        await asyncio.sleep(10 if len(seen) == 1 else 0.1)
        return "ok"

    strategy = HedgeStrategy(Hedge(max_hedged=2, delay=1.0, idempotent=True))
    assert strategy.describe() == {
        "kind": "hedge",
        "name": "hedge(+2, 1s)",
        "max_hedged": 2,
        "delay": 1.0,
    }
    assert await Pipeline.builder().add(strategy).build().execute(call) == "ok"
    assert seen == [1, 2]


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({}, ValueError, "pass idempotent=True"),
        ({"idempotent": True, "max_hedged": 0}, ValueError, "max_hedged must be >= 1, got 0"),
        ({"idempotent": True, "delay": None}, ValueError, "delay must be a finite number >= 0"),
        ({"idempotent": True, "acceptable": _async_switch}, TypeError, "acceptable must be a"),
        ({"idempotent": True, "budget": 3}, TypeError, "budget must be a RetryBudget or None"),
        ({"idempotent": True, "hedge_on": "OSError"}, TypeError, "hedge_on must be an exception"),
        ({"idempotent": True, "name": 5}, TypeError, "name must be a str or None, got 5"),
    ],
)
def test_hedge_construction_errors_name_the_parameter(
    options: dict[str, Any], error: type, message: str
) -> None:
    from aioresilience._hedging import Hedge

    with pytest.raises(error, match=message):
        Hedge(**options)


async def test_chaos_guards_enter_without_a_coroutine_unless_they_wait() -> None:
    import random
    import types

    from aioresilience._chaos import ChaosGuard, ChaosOutcome, chaos_strategy

    never = chaos_strategy("chaos_latency", 0.0, True, random.Random(1), (1.0, 1.0))
    always = chaos_strategy("chaos_latency", 1.0, True, random.Random(1), (1.0, 1.0))
    assert isinstance(never, ChaosGuard) and isinstance(always, ChaosGuard)
    enter, exit_ = never.core()
    assert enter() is None  # nothing injected: a plain call, no coroutine
    enter, exit_ = always.core()
    sleep = enter()
    assert sleep.__class__ is types.CoroutineType
    await sleep
    assert asyncio.get_running_loop().time() == 1.0 and always.injected == 1
    assert exit_ is None  # nothing to undo: the fold skips the way out
    fault = chaos_strategy("chaos_fault", 1.0, True, random.Random(1), OSError("boom"))
    with pytest.raises(OSError, match="boom"):
        fault.core()[0]()  # type: ignore[union-attr]
    outcome = chaos_strategy("chaos_outcome", 1.0, True, random.Random(1), "canned")
    assert isinstance(outcome, ChaosOutcome) and not outcome.is_guard
    assert await outcome.execute(ok, None) == "canned"
    with pytest.raises(ValueError, match="kind must be a chaos strategy's kind, got 'chaos'"):
        chaos_strategy("chaos", 1.0, True, random.Random(1), None)

"""The time seam (issue 12, item 2): a Clock object per primitive and per pipeline.

Each primitive given a :class:`ManualClock` lives in that clock's time: the loop's clock (the
virtual-time loop's here, which jumps whenever nothing is ready) may run hours ahead and nothing
moves until the test advances the manual clock. The manual clocks start far from the loop's
time (10 000 s vs 0), so a deadline computed on one clock and fired on the other would go off
at once or never. A clock that is the loop's shifted by an offset checks the same from the
other side: the timers a primitive sets must come back through that clock's ``call_at``.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest

import aioresilience as ar
from aioresilience import (
    BackpressureQueue,
    Bulkhead,
    BulkheadFull,
    CircuitBreaker,
    CircuitState,
    Pipeline,
    QueueFull,
    Retry,
    TokenBucket,
    constant,
)
from aioresilience._hedging import Hedge
from aioresilience._support.clock import LOOP_CLOCK, Clock, LoopClock, clock_option
from aioresilience.testing import ManualClock

START = 10_000.0  # the manual clocks' start: far from the virtual loop's 0


async def loop_hours_pass() -> None:
    """Let the loop's own (virtual) clock run an hour ahead: nothing on a manual clock moves."""
    await asyncio.sleep(3600)


# -- the clock objects ------------------------------------------------------------------------


def test_manual_clock_fires_due_timers_in_order_at_their_deadlines() -> None:
    clock = ManualClock(START)
    seen: list[tuple[str, float]] = []

    def note(name: str) -> Callable[[], None]:
        return lambda: seen.append((name, clock.time()))

    clock.call_at(START + 2, note("b"))
    clock.call_at(START + 1, note("a"))
    clock.call_at(START + 2, note("c"))  # equal deadlines: in the order set
    clock.call_at(START + 9, note("late"))
    clock.call_at(START + 3, note("off")).cancel()

    def chain() -> None:  # a timer set by a callback, due within the same advance, fires too
        seen.append(("chain", clock.time()))
        clock.call_at(clock.time() + 0.5, note("chained"))

    clock.call_at(START + 2.5, chain)
    clock.advance(3)
    assert seen == [
        ("a", START + 1),
        ("b", START + 2),
        ("c", START + 2),
        ("chain", START + 2.5),
        ("chained", START + 3),
    ]
    assert clock.time() == START + 3 and clock.next_deadline == START + 9
    clock.jump_to(START + 9)
    assert seen[-1] == ("late", START + 9) and clock.next_deadline is None
    with pytest.raises(ValueError, match="seconds must be >= 0, got -1"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="when must be >= the clock's time"):
        clock.jump_to(START)
    with pytest.raises(TypeError, match="start must be a finite number of seconds, got 'x'"):
        ManualClock("x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "error"),
    [(math.inf, ValueError), (math.nan, ValueError), (10**400, ValueError), (True, TypeError)],
    ids=["inf", "nan", "huge-int", "bool"],
)
def test_manual_clock_moves_only_by_a_finite_number(value: object, error: type[Exception]) -> None:
    clock = ManualClock(START)
    with pytest.raises(error, match="seconds must be"):
        clock.advance(value)  # type: ignore[arg-type]
    with pytest.raises(error, match="when must be"):
        clock.jump_to(value)  # type: ignore[arg-type]
    assert clock.time() == START
    with pytest.raises(TypeError, match="start must be a finite number"):
        ManualClock(value)  # type: ignore[arg-type]


def test_manual_clock_refuses_a_timer_at_nan_that_would_hold_back_every_later_one() -> None:
    clock = ManualClock(START)
    with pytest.raises(ValueError, match="when must be a number of seconds, got nan"):
        clock.call_at(math.nan, lambda: None)
    fired: list[float] = []
    clock.call_at(START + 1, lambda: fired.append(clock.time()))
    clock.advance(5)
    assert fired == [START + 1]


def test_manual_clock_drops_cancelled_timers_that_it_would_otherwise_keep_for_ever() -> None:
    # Each cancelled timer stayed in the heap until the clock passed its deadline: a test
    # setting and cancelling far-off timers (sleeps cancelled, a limiter's timer re-armed)
    # grew the heap by one per cancel, for as long as the clock stood still.
    clock = ManualClock(START)
    fired: list[int] = []
    kept = [clock.call_at(START + 1, lambda i=i: fired.append(i)) for i in range(3)]
    for _ in range(10_000):
        clock.call_at(START + 3600, lambda: fired.append(-1)).cancel()
    assert int(repr(clock).split("timers=")[1].rstrip(")")) < 500  # (was 10,003)
    kept[1].cancel()
    assert clock.next_deadline == START + 1
    clock.advance(7200)
    assert fired == [0, 2]  # the live ones fired in order, no cancelled one did


async def test_manual_clock_sleep_waits_for_advance_and_a_cancelled_sleep_leaves_no_timer() -> None:
    clock = ManualClock(START)
    sleeper = asyncio.ensure_future(clock.sleep(5))
    await loop_hours_pass()
    assert not sleeper.done()
    clock.advance(4.9)
    await clock.settle()
    assert not sleeper.done()
    clock.advance(0.1)
    await clock.settle()
    assert sleeper.done() and sleeper.exception() is None

    cancelled = asyncio.ensure_future(clock.sleep(5))
    await clock.settle()
    cancelled.cancel()
    await asyncio.gather(cancelled, return_exceptions=True)
    assert clock.next_deadline is None
    await clock.sleep(0)  # no wait: one turn of the loop


async def test_the_default_clock_is_the_running_loops() -> None:
    loop = asyncio.get_running_loop()
    clock = clock_option("clock", None)
    assert isinstance(clock, LoopClock) and clock is not LOOP_CLOCK  # one per primitive
    assert isinstance(clock, Clock) and isinstance(ManualClock(), Clock)
    assert clock.time() == loop.time()
    await asyncio.sleep(7)
    assert clock.time() == loop.time() == LOOP_CLOCK.time()
    fired: list[float] = []
    clock.call_at(loop.time() + 2, lambda: fired.append(loop.time()))
    await clock.sleep(3)
    assert fired == [loop.time() - 1]


# -- validation -------------------------------------------------------------------------------


class _AsyncTime:
    async def time(self) -> float:
        return 0.0

    def call_at(self, when: float, callback: Callable[[], object]) -> Any:
        raise NotImplementedError

    async def sleep(self, seconds: float) -> None:
        pass


class _SyncSleep(_AsyncTime):
    def time(self) -> float:  # type: ignore[override]
        return 0.0

    def sleep(self, seconds: float) -> None:  # type: ignore[override]
        pass


CONSTRUCTORS: dict[str, Callable[[Any], object]] = {
    "TokenBucket": lambda clock: TokenBucket(5, 1.0, clock=clock),
    "GCRA": lambda clock: ar.GCRA(5, 1.0, clock=clock),
    "LeakyBucket": lambda clock: ar.LeakyBucket(5, 1.0, clock=clock),
    "FixedWindowCounter": lambda clock: ar.FixedWindowCounter(5, 1.0, clock=clock),
    "CircuitBreaker": lambda clock: CircuitBreaker(clock=clock),
    "Retry": lambda clock: Retry(clock=clock),
    "Bulkhead": lambda clock: Bulkhead(1, clock=clock),
    "PartitionedBulkhead": lambda clock: ar.PartitionedBulkhead(1, clock=clock),
    "BackpressureQueue": lambda clock: BackpressureQueue(1, clock=clock),
    "AdaptiveLimiter": lambda clock: ar.AdaptiveLimiter(clock=clock),
    "AdaptiveThrottle": lambda clock: ar.AdaptiveThrottle(clock=clock),
    "LatencyEWMA": lambda clock: ar.LatencyEWMA(clock=clock),
    "ChaosMonkey": lambda clock: ar.ChaosMonkey(clock=clock),
    "Hedge": lambda clock: Hedge(idempotent=True, clock=clock),
    "builder.hedge": lambda clock: Pipeline.builder().hedge(idempotent=True, clock=clock),
    "Pipeline.builder": lambda clock: Pipeline.builder(clock=clock),
}


@pytest.mark.parametrize("make", CONSTRUCTORS.values(), ids=CONSTRUCTORS.keys())
def test_every_clock_option_is_validated_with_the_standard_errors(
    make: Callable[[Any], object],
) -> None:
    make(None)
    make(ManualClock())
    with pytest.raises(TypeError, match=r"clock must be a Clock .*got 3: it has no time\(\)"):
        make(3)
    with pytest.raises(TypeError, match=r"clock\.time must be a plain \(not async\) method"):
        make(_AsyncTime())
    with pytest.raises(TypeError, match=r"clock\.sleep must be a coroutine function"):
        make(_SyncSleep())


# -- primitives in manual time ------------------------------------------------------------------


async def test_a_limiter_decides_and_waits_in_its_clocks_time() -> None:
    clock = ManualClock(START)
    limiter = TokenBucket(1, 1.0, clock=clock)
    assert limiter.clock is clock
    assert limiter.try_acquire() and not limiter.try_acquire()
    await loop_hours_pass()
    assert not limiter.try_acquire()  # an hour of the loop's time refilled nothing
    clock.advance(1)
    assert limiter.try_acquire()
    waiter = asyncio.ensure_future(limiter.acquire(timeout=None))
    await loop_hours_pass()
    assert not waiter.done()
    clock.advance(0.5)
    await clock.settle()
    assert not waiter.done()
    clock.advance(0.5)
    await clock.settle()
    assert waiter.done() and waiter.exception() is None


async def test_a_breaker_opens_for_its_break_on_its_clock() -> None:
    clock = ManualClock(START)
    breaker = CircuitBreaker(failure_threshold=1, break_duration=10.0, clock=clock)

    async def boom() -> None:
        raise OSError("down")

    with pytest.raises(OSError):
        await breaker.call(boom)
    assert breaker.state is CircuitState.OPEN and breaker.retry_after == 10.0
    await loop_hours_pass()
    assert breaker.state is CircuitState.OPEN
    clock.advance(10)
    assert breaker.state is CircuitState.HALF_OPEN


async def test_retry_sleeps_and_deadlines_on_its_clock() -> None:
    clock = ManualClock(START)
    attempts: list[float] = []

    async def flaky() -> str:
        attempts.append(clock.time())
        if len(attempts) < 3:
            raise OSError("again")
        return "ok"

    policy = Retry(attempts=3, backoff=constant(5.0), deadline=START + 100, clock=clock)
    run = asyncio.ensure_future(policy.call(flaky))
    await loop_hours_pass()
    assert attempts == [START] and not run.done()
    clock.advance(5)
    await clock.settle()
    clock.advance(5)
    await clock.settle()
    assert run.result() == "ok" and attempts == [START, START + 5, START + 10]

    attempts.clear()
    late = Retry(attempts=3, backoff=constant(5.0), deadline=START + 12, clock=clock)
    with pytest.raises(OSError):  # 10 + 5 would pass the deadline on *this* clock: no sleep
        await late.call(flaky)
    assert attempts == [START + 10]


async def test_a_bulkheads_max_wait_runs_on_its_clock() -> None:
    clock = ManualClock(START)
    bulkhead = Bulkhead(1, max_queue=1, max_wait=2.0, clock=clock)
    await bulkhead.acquire()
    waiter = asyncio.ensure_future(bulkhead.acquire())
    await loop_hours_pass()
    assert not waiter.done()
    clock.advance(2)
    await clock.settle()
    assert isinstance(waiter.exception(), BulkheadFull)
    bulkhead.release()


async def test_a_queues_blocked_put_times_out_on_its_clock() -> None:
    clock = ManualClock(START)
    queue: BackpressureQueue[int] = BackpressureQueue(1, clock=clock)
    await queue.put(1)
    blocked = asyncio.ensure_future(queue.put(2, timeout=3.0))
    await loop_hours_pass()
    assert not blocked.done()
    clock.advance(3)
    await clock.settle()
    assert isinstance(blocked.exception(), QueueFull)


async def test_a_pipeline_hands_its_clock_to_the_strategies_it_builds() -> None:
    clock = ManualClock(START)
    calls: list[float] = []

    async def flaky() -> str:
        calls.append(clock.time())
        if len(calls) < 2:
            raise OSError("again")
        return "ok"

    pipeline = (
        Pipeline.builder(clock=clock)
        .rate_limit(rate="1/s")
        .retry(attempts=2, backoff=constant(1.0))
        .circuit_breaker()
        .bulkhead(2, max_queue=1, max_wait=1.0)
        .build()
    )
    run = asyncio.ensure_future(pipeline.execute(flaky))
    await loop_hours_pass()
    assert calls == [START] and not run.done()  # the retry sleeps on the manual clock
    clock.advance(1)
    await clock.settle()
    assert run.result() == "ok" and calls == [START, START + 1]
    for strategy in pipeline.strategies:
        primitive = getattr(strategy, "policy", None) or getattr(strategy, "primitive", None)
        primitive = primitive or getattr(strategy, "limiter", None)
        if hasattr(primitive, "clock"):
            assert primitive.clock is clock


async def test_a_hedges_delay_runs_on_its_clock_and_the_builders_clock_reaches_it() -> None:
    clock = ManualClock(START)
    started: list[float] = []
    heard: list[ar.ResilienceEvent] = []
    release = asyncio.Event()

    async def slow() -> str:
        started.append(clock.time())
        await release.wait()
        return "ok"

    pipeline = Pipeline.builder(clock=clock).hedge(max_hedged=1, delay=2.0, idempotent=True)
    built = pipeline.build()
    built.add_listener(heard.append)
    hedge = built.strategies[0].primitive  # type: ignore[attr-defined]
    assert hedge.clock is clock
    run = asyncio.ensure_future(built.execute(slow))
    await loop_hours_pass()
    assert started == [START]  # an hour of the loop's time started no hedge
    clock.advance(1.5)
    await clock.settle()
    assert started == [START]
    clock.advance(0.5)
    await clock.settle()
    assert started == [START, START + 2.0]
    [event] = [e for e in heard if isinstance(e, ar.HedgeStarted)]
    assert event.at == START + 2.0 and event.pipeline == built.name  # stamped on its clock
    release.set()
    assert await run == "ok"
    assert clock.next_deadline is None  # the pause's timer went with the wait


async def test_a_hedge_cancelled_while_it_waits_on_its_clock_leaves_no_timer_nor_task() -> None:
    clock = ManualClock(START)
    hedge = Hedge(max_hedged=2, delay=5.0, idempotent=True, clock=clock)

    async def forever() -> None:
        await asyncio.sleep(math.inf)

    run = asyncio.ensure_future(hedge.call(forever))
    await clock.settle()
    assert clock.next_deadline == START + 5.0  # waiting on the manual clock, not the loop's
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    assert clock.next_deadline is None
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_a_hedge_without_delay_on_a_manual_clock_starts_every_attempt_at_once() -> None:
    clock = ManualClock(START)
    hedge = Hedge(max_hedged=2, delay=0, idempotent=True, clock=clock)
    started: list[float] = []

    async def fails() -> None:
        started.append(clock.time())
        await asyncio.sleep(1)
        raise OSError("down")

    with pytest.raises(OSError):
        await hedge.call(fails)  # the clock never moves: a zero delay must not wait for it
    assert started == [START] * 3


async def test_every_event_is_stamped_on_the_clock_of_the_primitive_that_emitted_it() -> None:
    clock = ManualClock(START)
    clock.advance(7.25)  # now START + 7.25 on the manual clock; the loop's virtual time is 0
    now = START + 7.25
    heard: list[ar.ResilienceEvent] = []
    await loop_hours_pass()  # ... and the loop's an hour further

    limiter = TokenBucket(1, 1.0, clock=clock)
    limiter.add_listener(heard.append)
    limiter.try_acquire()
    limiter.try_acquire()  # refused: RateLimitExceeded

    bulkhead = Bulkhead(1, max_queue=0, clock=clock)
    bulkhead.add_listener(heard.append)
    async with bulkhead:
        with pytest.raises(BulkheadFull):
            async with bulkhead:
                pass

    adaptive = ar.AdaptiveLimiter(initial_limit=1, min_limit=1, max_limit=1, clock=clock)
    adaptive.add_listener(heard.append)
    async with adaptive:
        with pytest.raises(ar.ConcurrencyLimited):
            async with adaptive:
                pass

    monkey = ar.ChaosMonkey(failure_rate=1.0, clock=clock)
    monkey.add_listener(heard.append)
    with pytest.raises(ar.ChaosFault):
        monkey.maybe_fail()

    async def call() -> str:
        return "ok"

    pipeline = Pipeline.builder("timed", clock=clock, seed=1).chaos_outcome(1.0, "x").build()
    pipeline.add_listener(heard.append)  # a pipeline listener hears DEBUG: its calls are timed
    assert await pipeline.execute(call) == "x"

    # A retry's give-up hook hears even a first failure that is not retried (listeners don't):
    # that event is built apart from the others, and is stamped on the retry's clock too.
    def give_up(event: ar.RetryGaveUp) -> None:
        heard.append(event)

    retry = ar.Retry(attempts=3, retry_on=OSError, on_give_up=give_up, clock=clock)

    async def not_retried() -> None:
        raise ValueError("not an OSError")

    with pytest.raises(ValueError):
        await retry.call(not_retried)

    kinds = {type(event).__name__: event.at for event in heard}
    assert kinds == {
        "RetryGaveUp": now,
        "RateLimitExceeded": now,
        "BulkheadRejected": now,
        "ConcurrencyRejected": now,
        "ChaosInjected": now,
        "PipelineExecuted": now,
    }
    [executed] = [e for e in heard if isinstance(e, ar.PipelineExecuted)]
    assert executed.duration == 0.0  # measured on the pipeline's (manual) clock too


async def test_a_retrys_attempts_in_a_timed_pipeline_are_measured_on_its_clock() -> None:
    clock = ManualClock(START)
    heard: list[ar.ResilienceEvent] = []
    pipeline = Pipeline.builder("timed", clock=clock).retry(attempts=2).build()
    pipeline.add_listener(heard.append)  # hears DEBUG: attempts are timed

    async def slow() -> str:
        await clock.sleep(4)
        return "ok"

    task = asyncio.ensure_future(pipeline.execute(slow))
    await clock.settle()
    clock.advance(4)
    assert await task == "ok"
    [attempt] = [e for e in heard if isinstance(e, ar.AttemptCompleted)]
    [executed] = [e for e in heard if isinstance(e, ar.PipelineExecuted)]
    assert (attempt.at, attempt.duration) == (START + 4, 4.0)  # the retry's clock, not the loop's
    assert (executed.at, executed.duration) == (START + 4, 4.0)


# -- one clock per deadline -------------------------------------------------------------------


class ShiftedLoopClock:
    """The loop's clock seen ``offset`` seconds ahead: its deadlines only fire right if they
    come back through its own ``call_at`` (which shifts them back), never the loop's."""

    def __init__(self, offset: float) -> None:
        self.offset = offset
        self.timers = 0

    def time(self) -> float:
        return asyncio.get_running_loop().time() + self.offset

    def call_at(self, when: float, callback: Callable[[], object]) -> asyncio.TimerHandle:
        self.timers += 1
        return asyncio.get_running_loop().call_at(when - self.offset, callback)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


async def test_no_deadline_is_computed_on_one_clock_and_fired_on_another() -> None:
    loop = asyncio.get_running_loop()
    clock = ShiftedLoopClock(offset=50_000.0)
    limiter = TokenBucket(1, 1.0, clock=clock)
    bulkhead = Bulkhead(1, max_queue=1, max_wait=2.0, clock=clock)
    queue: BackpressureQueue[int] = BackpressureQueue(1, clock=clock)

    limiter.try_acquire()
    began = loop.time()
    await limiter.acquire(timeout=None)
    assert loop.time() - began == pytest.approx(1.0)  # not at once, not 50 000 s late

    await bulkhead.acquire()
    began = loop.time()
    with pytest.raises(BulkheadFull):
        await bulkhead.acquire()
    assert loop.time() - began == pytest.approx(2.0)

    await queue.put(1)
    began = loop.time()
    with pytest.raises(QueueFull):
        await queue.put(2, timeout=3.0)
    assert loop.time() - began == pytest.approx(3.0)
    assert clock.timers == 3  # every timer went through the primitive's clock


async def test_the_readme_manual_clock_example_runs() -> None:
    import re
    from pathlib import Path

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "ManualClock(" in b]
    namespace: dict[str, Any] = {"ar": ar, "asyncio": asyncio}
    exec(compile(block, "README.md", "exec"), namespace)
    await namespace["manual"]()

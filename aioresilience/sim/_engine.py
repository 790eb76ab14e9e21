"""Runs a scenario: each variant's real pipeline against the modelled dependency, in virtual
time, on a fresh :class:`aioresilience.testing.VirtualTimeLoop`.

One run of a variant:

- arrivals are timers on the loop (``call_at``), each starting one request task, so nothing
  waits in a coroutine between arrivals; closed-loop users are one task each;
- a request is ``await pipeline.execute(dependency_call)``: the library's code, unchanged;
  the dependency call asks the :class:`~._models.Dependency` model when its answer comes
  and sleeps until then (a call the client cancels keeps the modelled server busy);
- every ``interval`` a timer closes the interval's aggregates (:mod:`._metrics`) and hands
  the row to the caller (the live view);
- after ``duration`` arrivals stop, the calls in flight may finish for up to ``drain``
  seconds, and what is left is cancelled and counted as unfinished.

Randomness: one ``random.Random`` per stream, seeded from the scenario's seed and the
stream's name (a string seed is hashed with SHA-512, stable across processes and Python
versions). Arrivals do not depend on the variant, so every variant sees the same traffic;
the dependency's and the pipeline's streams are per variant, so adding a variant shifts no
other variant's draws. The result is the same, byte for byte, for the same scenario and seed
(checked on CPython 3.11, 3.12 and 3.13, with and without 3.12's eager tasks).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import math
import random
from collections.abc import Callable, Coroutine
from typing import Any

import aioresilience as ar
from aioresilience.testing import run as run_virtual

from ._config import BuiltPipeline, Environment, Scenario, Substituted, Variant
from ._metrics import SERIES_KEYS, Metrics, Window, round_sig
from ._models import Dependency, PoissonArrivals

__all__ = ["IntervalCallback", "interval_count", "refusal_name", "run_variant", "stream"]

IntervalCallback = Callable[[dict[str, Any]], None]

#: What the dependency answers when it succeeds.
OK = "ok"

#: Refusal kinds by the class the library raises, under the names the result uses.
_REFUSAL_NAMES = {"CircuitBreakerOpenError": "CircuitOpen"}


def refusal_name(exc: BaseException) -> str:
    name = type(exc).__name__
    return _REFUSAL_NAMES.get(name, name)


def interval_count(duration: float, interval: float) -> int:
    """How many intervals the series have: the last may be shorter than the others."""
    return max(1, math.ceil(duration / interval - 1e-9))


def stream(seed: int, *names: str) -> random.Random:
    """The random stream ``names`` of a run seeded ``seed``."""
    return random.Random(":".join((str(seed), *names)))


def stream_seed(seed: int, *names: str) -> int:
    """An int seed for the stream ``names`` (for the library's ``seed=`` options)."""
    digest = hashlib.sha256(":".join((str(seed), *names)).encode()).digest()
    return int.from_bytes(digest[:8], "big")


class _BreakerClock:
    """Time the breakers of a pipeline spend open (any of them), overall and per interval."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._open: set[str] = set()
        self._since = 0.0  # when the current open stretch began (while any is open)
        self.total = 0.0
        self._interval_start = 0.0
        self._in_interval = 0.0

    def changed(self, event: ar.CircuitStateChange) -> None:
        now = self._loop.time()
        was_open = bool(self._open)
        if event.new is ar.CircuitState.OPEN or event.new is ar.CircuitState.ISOLATED:
            self._open.add(event.strategy)
        else:
            self._open.discard(event.strategy)
        if not was_open and self._open:
            self._since = now
        elif was_open and not self._open:
            self._add(now)

    def _add(self, now: float) -> None:
        start = max(self._since, self._interval_start)
        self._in_interval += now - start
        self.total += now - self._since

    def close_interval(self, end: float) -> float:
        """The time open in the interval ending at ``end``; a new interval starts."""
        if self._open:
            self._in_interval += end - max(self._since, self._interval_start)
        spent = self._in_interval
        self._interval_start = end
        self._in_interval = 0.0
        return spent

    def finish(self, end: float) -> None:
        if self._open:
            self.total += end - self._since
            self._open.clear()


def _wake(future: asyncio.Future[None]) -> None:
    """End a modelled wait, unless its caller cancelled it meanwhile."""
    if not future.done():
        future.set_result(None)


def _windows(scenario: Scenario) -> tuple[Window, ...]:
    """The scenario's events, each a window its calls are also counted in."""
    dependency = scenario.dependency
    events = [
        *(("outage", o.start, o.end) for o in dependency.outages),
        *(("spike", s.start, s.end) for s in dependency.spikes),
        *(("burst", b.start, b.end) for b in scenario.arrivals.bursts),
    ]
    seen: dict[str, int] = {}
    windows = []
    for label, start, end in events:
        if start < scenario.duration:
            seen[label] = seen.get(label, 0) + 1
            windows.append(Window(f"{label} {seen[label]}", start, min(end, scenario.duration)))
    return tuple(windows)


def _admitted(built: BuiltPipeline) -> int:
    return sum(limiter.statistics().admitted for limiter in built.limiters)


def run_variant(
    scenario: Scenario, variant: Variant, on_interval: IntervalCallback | None = None
) -> dict[str, Any]:
    """Run one variant to the end; its part of the result (name, pipeline, summary, series)."""
    return run_virtual(_run(scenario, variant, on_interval))


async def _run(
    scenario: Scenario, variant: Variant, on_interval: IntervalCallback | None
) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    eager = getattr(asyncio, "eager_task_factory", None)  # Python 3.12+
    if eager is not None:
        # A request runs up to its first wait as soon as it arrives, not one loop turn later:
        # one turn of the loop fewer per request, and the same events in the same order.
        loop.set_task_factory(eager)
    seed = scenario.seed
    env = Environment()
    built = variant.build(stream_seed(seed, variant.name, "pipeline"), env)
    breakers = _BreakerClock(loop)
    for breaker in built.breakers:
        breaker.add_state_listener(breakers.changed)
    dependency = Dependency(scenario.dependency, stream(seed, variant.name, "dependency"))
    metrics = Metrics(scenario.interval, _windows(scenario))
    duration = scenario.duration
    interval = scenario.interval
    intervals = interval_count(duration, interval)
    execute = built.pipeline.execute
    # The tasks of the requests (and users) still running: strong references, as asyncio asks
    # of its callers, dropped by each task as it ends (a done callback would cost every
    # request one more turn of the loop).
    tasks: set[asyncio.Task[Any]] = set()
    current_task = asyncio.current_task
    discard_task = tasks.discard
    sleep = asyncio.sleep
    time = loop.time
    call_at_dependency = dependency.call
    in_flight_at_dependency = dependency.in_flight
    count_dependency_call = metrics.dependency_call

    create_future = loop.create_future
    call_at = loop.call_at

    async def dependency_call() -> str:
        now = time()
        answer_at, _, error = call_at_dependency(now)
        count_dependency_call(now, in_flight_at_dependency(now), error)
        delay = answer_at - now
        if delay <= 0:
            await sleep(0)  # as asyncio.sleep(delay) does: one turn of the loop
        else:
            # asyncio.sleep(delay) without its per-call lookups: a future and one timer at
            # the instant asyncio.sleep would pick (call_later adds the delay to the clock's
            # now, so the same float, so the same order of timers and the same result).
            future = create_future()
            handle = call_at(now + delay, _wake, future)
            try:
                await future
            except BaseException:
                handle.cancel()  # the caller gave up (a timeout): no timer left behind
                raise
        if error is not None:
            raise error
        return OK

    success = metrics.success
    offered = metrics.offered
    windowed = bool(metrics.windows)
    window_of = metrics.window_of

    async def request() -> None:
        started = time()
        window = window_of(started) if windowed else None
        offered(window)
        env.in_flight += 1
        try:
            result: object = await execute(dependency_call)
        except ar.Rejected as exc:
            metrics.refusal(refusal_name(exc), window)
        except Exception as exc:
            metrics.failure(type(exc).__name__, window)
        else:
            if result.__class__ is Substituted:
                metrics.substituted()
            else:
                success(time() - started, window)
        finally:
            env.in_flight -= 1
            discard_task(current_task())

    add_task = tasks.add
    # A request's task: on 3.12+ the documented Task(..., eager_start=True) that the eager
    # factory makes, without the frames of create_task and the factory around it.
    start_task: Callable[[Coroutine[Any, Any, None]], asyncio.Task[None]] = (
        loop.create_task
        if eager is None
        else functools.partial(asyncio.Task, loop=loop, eager_start=True)  # type: ignore[call-arg,unused-ignore]
    )

    arrivals = scenario.arrivals
    users: list[asyncio.Task[None]] = []
    if arrivals.kind == "poisson":
        times = PoissonArrivals(arrivals, stream(seed, "arrivals"))

        next_arrival = times.next

        def arrive() -> None:
            task = start_task(request())
            if not task.done():  # an eager task may have ended already (a refusal at once)
                add_task(task)
            next_at = next_arrival()
            if next_at < duration:
                call_at(next_at, arrive)

        first = times.next()
        if first < duration:
            loop.call_at(first, arrive)
    else:
        think = stream(seed, variant.name, "users")

        async def user(first: float) -> None:
            await sleep(first)
            while time() < duration:
                await request()  # (in this task: it leaves the task set in its finally)
                await sleep(think.expovariate(1.0 / arrivals.think))

        for _ in range(arrivals.users):
            start = think.uniform(0.0, arrivals.think)
            users.append(loop.create_task(user(start)))

    admitted_before = 0
    finished = asyncio.Event()

    def close_interval(index: int) -> None:
        nonlocal admitted_before
        start = index * interval
        end = min(duration, start + interval)
        admitted = _admitted(built)
        values = metrics.close_interval(
            start,
            scenario.dependency.healthy_between(start, end),
            breakers.close_interval(end) / (end - start),
            admitted - admitted_before,
            end - start,
        )
        admitted_before = admitted
        if on_interval is not None:
            on_interval(
                {
                    "variant": variant.name,
                    "index": index,
                    "progress": round_sig((index + 1) / intervals),
                    **values,
                }
            )
        if index + 1 < intervals:
            loop.call_at(min(duration, (index + 2) * interval), close_interval, index + 1)
        else:
            breakers.finish(duration)
            metrics.closed = True
            finished.set()

    loop.call_at(min(duration, interval), close_interval, 0)
    await finished.wait()
    # Arrivals have stopped; the calls in flight get `drain` seconds to end.
    running = tasks | {u for u in users if not u.done()}
    if running:
        _, pending = await asyncio.wait(running, timeout=scenario.drain)
        # The requests still running: a closed-loop user that is thinking, not waiting for
        # an answer, has no request left to finish (its task is cancelled all the same).
        metrics.unfinished = env.in_flight
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending)
    summary = metrics.summary(duration, breakers.total)
    return {
        "name": variant.name,
        "description": variant.description,
        "pipeline": variant.describe(),
        "warnings": built.warnings,
        "summary": summary,
        "windows": [window.to_json() for window in metrics.windows],
        "series": {key: metrics.series[key] for key in SERIES_KEYS},
    }

"""Hedged requests: start another attempt when the first is slow or failed, take the first
acceptable result, and cancel *and await* the others.

:class:`Hedge` is the strategy (``await hedge.call(fn, ...)``, ``@hedge``); in a pipeline it
runs as :class:`HedgeStrategy` (``PipelineBuilder.hedge``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass
from typing import Any, ClassVar, TypeVar

from ._retry import BudgetExhausted, RetryBudget
from ._support.clock import Clock, clock_option
from ._support.context import ResilienceContext
from ._support.events import EventSource, ResilienceEvent, Severity, emit
from ._support.predicates import ExceptionFilter, exception_predicate, optional_sync_callable
from ._support.rerun import ExecuteForms, RerunStrategy
from ._support.tasks import cancel_and_wait
from ._support.validation import non_negative_or_none, positive_int, text

__all__ = ["Hedge", "HedgeStrategy"]

T = TypeVar("T")


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


async def _first_done(
    running: Collection[asyncio.Task[Any]], clock: Clock, delay: float | None
) -> set[asyncio.Task[Any]]:
    """The attempts of ``running`` done once one of them is, or once ``delay`` seconds have
    passed on ``clock`` (None: no limit): ``asyncio.wait(running, timeout=delay,
    return_when=FIRST_COMPLETED)`` on the hedge's clock rather than the loop's."""
    if delay is None:
        done, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
        return done
    loop = asyncio.get_running_loop()
    pause: asyncio.Future[None] = loop.create_future()
    # delay 0: one turn of the loop, as asyncio.wait(timeout=0) (a clock's call_at for a time
    # already reached may wait for the clock to move: a ManualClock's does).
    timer = (
        clock.call_at(clock.time() + delay, lambda: _wake(pause))
        if delay > 0
        else loop.call_soon(_wake, pause)
    )
    try:
        waited = await asyncio.wait({*running, pause}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        timer.cancel()  # cancelled or woken by an attempt: the timer must not outlive the wait
    return {task for task in running if task in waited[0]}


@dataclass(frozen=True, slots=True, kw_only=True)
class HedgeStarted(ResilienceEvent):
    """Another attempt was started (``hedge``: 1 for the first extra one)."""

    name: ClassVar[str] = "hedge_started"
    severity: ClassVar[Severity] = Severity.INFO

    hedge: int


class Hedge(ExecuteForms, EventSource):
    """Start another attempt every ``delay`` seconds without an acceptable result (up to
    ``max_hedged`` more); a failed attempt starts the next at once; the first acceptable
    result wins and the others are cancelled *and awaited*. Only for calls that are safe to
    repeat: say so with ``idempotent=True``. ``hedge_on`` (exception classes or a predicate,
    default any ``Exception``) says which failures start the next attempt; any other ends
    the call at once with its exception, the others cancelled (a 404 or a bad argument is
    no better on another try), unless an attempt done at the same instant won. ``delay=0``
    starts all attempts at once; a ``budget`` counts hedges in flight as retries in flight.
    ``delay`` runs on ``clock`` (default: the running loop's), which also stamps the hedge's
    events; ``add_listener`` hears them (``HedgeStarted``, ``BudgetExhausted``), used alone
    or in a pipeline."""

    def __init__(
        self,
        *,
        max_hedged: int = 1,
        delay: float = 0.1,
        idempotent: bool = False,
        acceptable: Callable[[Any], bool] | None = None,
        hedge_on: ExceptionFilter = Exception,
        budget: RetryBudget | None = None,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        if idempotent is not True:
            raise ValueError(
                "hedging runs the call several times at once: pass idempotent=True to confirm "
                "the call is safe to repeat"
            )
        self.max_hedged = positive_int("max_hedged", max_hedged)
        wait = non_negative_or_none("delay", delay)
        if wait is None:
            raise ValueError(f"delay must be a finite number >= 0, got {delay!r}")
        self.delay = wait
        self.acceptable = optional_sync_callable("acceptable", acceptable)
        self._hedge_on = exception_predicate("hedge_on", hedge_on)
        if budget is not None and not isinstance(budget, RetryBudget):
            raise TypeError(f"budget must be a RetryBudget or None, got {budget!r}")
        self.budget = budget
        self._clock = clock_option("clock", clock)  # the delay between hedges runs on it
        self.name = text("name", name, optional=True) or f"hedge(+{self.max_hedged}, {wait:g}s)"
        self.started = 0  # attempts started, hedges included
        self._events = None  # add_listener's (EventSource)

    async def execute(
        self, call: Callable[[], Awaitable[T]], context: ResilienceContext | None
    ) -> T:
        """The core: run ``call()`` as described above. In a pipeline every attempt started
        counts in ``context.attempt``."""
        loop = asyncio.get_running_loop()
        clock = self._clock
        ledger = None if self.budget is None else self.budget.ledger
        # In start order: attempts done at the same instant are read in it (a set's order
        # would make the call's outcome depend on memory addresses).
        running: dict[asyncio.Task[Any], None] = {}
        extra = 0
        may_hedge = True
        last: asyncio.Task[Any] | None = None

        def start(hedged: bool) -> None:
            if context is not None:
                context.attempt += 1
            self.started += 1
            try:
                task = asyncio.ensure_future(call(), loop=loop)
            except BaseException:
                if hedged and ledger is not None:  # the retry slot taken for it is free again
                    ledger.end_retry()
                raise
            if hedged:
                emit(self._events, self.name, HedgeStarted, clock, hedge=extra)
                if ledger is not None:  # the retry slot is held while the hedge runs
                    task.add_done_callback(lambda _: ledger.end_retry())
            running[task] = None

        if ledger is not None:
            ledger.start_request()
        try:
            start(hedged=False)
            while True:
                can_hedge = may_hedge and extra < self.max_hedged
                done = await _first_done(running, clock, self.delay if can_hedge else None)
                failed_now = 0
                final: BaseException | None = None
                for task in [task for task in running if task in done]:
                    del running[task]
                    last = task
                    error = task.exception()
                    won = error is None and (
                        self.acceptable is None or self.acceptable(task.result())
                    )
                    if ledger is not None:
                        ledger.record(won)
                    if won:
                        return task.result()  # type: ignore[no-any-return]
                    if error is not None and final is None and not self._hedge_on(error):
                        final = error
                    failed_now += 1
                if final is not None:
                    # Not one to hedge: the call's outcome (finally cancels the others),
                    # unless an attempt done at the same instant won.
                    raise final
                # The delay passed: one more; each failed attempt: one more at once.
                wanted = failed_now if done else 1
                while can_hedge and wanted > 0:
                    wanted -= 1
                    if self._budget_allows():
                        extra += 1
                        start(hedged=True)
                        can_hedge = extra < self.max_hedged
                    else:
                        may_hedge = can_hedge = False  # spent: no more hedges for this call
                if not running:
                    assert last is not None
                    return last.result()  # type: ignore[no-any-return]  # raises its exception
        finally:
            if ledger is not None:
                ledger.end_request()
            await cancel_and_wait(list(running))

    def _budget_allows(self) -> bool:
        budget = self.budget
        if budget is None or budget.try_retry():
            return True
        emit(self._events, self.name, BudgetExhausted, self._clock, budget=budget.kind)
        return False

    @property
    def clock(self) -> Clock:
        """The clock the delay between hedges runs on (``clock=``; by default the loop's)."""
        return self._clock

    def __repr__(self) -> str:
        return f"<Hedge {self.name!r} started={self.started}>"


class HedgeStrategy(RerunStrategy):
    """Hedging in a pipeline: ``execute(call, context)`` is the hedge's core."""

    def __init__(self, hedge: Hedge) -> None:
        super().__init__("hedge", hedge)
        self.hedge = hedge

    def describe(self) -> dict[str, Any]:
        hedge = self.hedge
        return {**super().describe(), "max_hedged": hedge.max_hedged, "delay": hedge.delay}

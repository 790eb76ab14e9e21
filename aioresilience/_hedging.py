"""Hedged requests (``PipelineBuilder.hedge``): start another attempt when the first is slow
or failed, take the first acceptable result, and cancel *and await* the others."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from ._retry import BudgetExhausted, RetryBudget
from ._support.compose import Call, Strategy
from ._support.context import ResilienceContext
from ._support.events import ResilienceEvent, Severity, emit


async def _cancel_and_await(tasks: set[asyncio.Task[Any]]) -> None:
    """Cancel ``tasks`` and wait until every one has finished, even if the waiting itself is
    cancelled again (then re-raise that cancellation afterwards): no task is left behind."""
    for task in tasks:
        task.cancel()
    cancelled = False
    while tasks:
        try:
            await asyncio.gather(*tasks, return_exceptions=True)
        except asyncio.CancelledError:
            cancelled = True
        tasks = {t for t in tasks if not t.done()}
    if cancelled:
        raise asyncio.CancelledError


@dataclass(frozen=True, slots=True, kw_only=True)
class HedgeStarted(ResilienceEvent):
    """Another attempt was started (``hedge``: 1 for the first extra one)."""

    name: ClassVar[str] = "hedge_started"
    severity: ClassVar[Severity] = Severity.INFO

    hedge: int


class _Hedge(Strategy):
    """Start another attempt every ``delay`` seconds without an acceptable result (up to
    ``max_hedged`` more); a failed attempt starts the next at once; the first acceptable
    result wins and the others are cancelled *and awaited*."""

    kind = "hedge"

    def __init__(
        self,
        max_hedged: int,
        delay: float,
        acceptable: Callable[[Any], bool] | None,
        budget: RetryBudget | None,
    ) -> None:
        super().__init__(f"hedge(+{max_hedged}, {delay:g}s)")
        self.max_hedged = max_hedged
        self.delay = delay
        self.acceptable = acceptable
        self.budget = budget
        self.started = 0

    async def execute(self, call: Call, context: ResilienceContext) -> Any:
        loop = asyncio.get_running_loop()
        core = None if self.budget is None else self.budget._core
        running: set[asyncio.Task[Any]] = set()
        extra = 0
        may_hedge = True
        last: asyncio.Task[Any] | None = None

        def start(hedged: bool) -> None:
            context.attempt += 1
            self.started += 1
            task = asyncio.ensure_future(call(), loop=loop)
            if hedged:
                emit(None, self.name, HedgeStarted, hedge=extra)
                if core is not None:  # the retry slot is held while the hedge runs
                    task.add_done_callback(lambda _: core.end_retry())
            running.add(task)

        if core is not None:
            core.start_request()
        start(hedged=False)
        try:
            while True:
                can_hedge = may_hedge and extra < self.max_hedged
                done, _ = await asyncio.wait(
                    running,
                    timeout=self.delay if can_hedge else None,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                failed_now = False
                for task in done:
                    running.discard(task)
                    last = task
                    won = task.exception() is None and (
                        self.acceptable is None or self.acceptable(task.result())
                    )
                    if core is not None:
                        core.record(won)
                    if won:
                        return task.result()
                    failed_now = True
                if can_hedge and (failed_now or not done):
                    if self._budget_allows(core):
                        extra += 1
                        start(hedged=True)
                    else:
                        may_hedge = False  # spent: no more hedges for this call
                if not running:
                    assert last is not None
                    return last.result()  # raises the last attempt's exception
        finally:
            if core is not None:
                core.end_request()
            await _cancel_and_await(running)

    def _budget_allows(self, core: Any) -> bool:
        if core is None or core.try_retry():
            return True
        assert self.budget is not None
        self.budget.exhausted += 1
        emit(None, self.name, BudgetExhausted, budget=self.budget.kind)
        return False

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "max_hedged": self.max_hedged, "delay": self.delay}

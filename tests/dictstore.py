"""A third breaker store, written against the public seam only (:mod:`aioresilience.abc`):
its state lives in a dict shared by every breaker bound with the same name (as processes
share a Redis hash), and it can be told to fail (:class:`StoreError` on the nth operation) or
to make admission wait (``delay``: admission then returns a coroutine, as a round trip
does). While an operation fails, a local state of the same options decides, and the failure
is reported (the Redis store's policy for breakers). Both the shared and the local state are
the public in-memory one (``abc.memory_breaker_state``). Nothing here imports a private
module or reads a private member of the front-end: the proof that the seam is real.
"""

from __future__ import annotations

import asyncio
from typing import Any

from aioresilience import StoreError
from aioresilience.abc import (
    BreakerOptions,
    BreakerReport,
    BreakerState,
    CircuitState,
    ManualAction,
    Refused,
    memory_breaker_state,
)


class Relay:
    """A :class:`BreakerReport` telling each state change to ``reports`` (every breaker bound
    to one name shares one state), unless ``muted``."""

    def __init__(self, reports: list[BreakerReport]) -> None:
        self.reports = reports
        self.muted = False

    def transition(self, old: CircuitState, new: CircuitState, at: float, retry: float) -> None:
        if not self.muted:
            for report in self.reports:
                report.transition(old, new, at, retry)

    def store_failure(self, error: BaseException | None) -> None:
        for report in self.reports:
            report.store_failure(error)


class DictBreakerStore:
    """``CircuitBreaker(name=..., store=DictBreakerStore())``; ``fail_on``: operation numbers
    (1-based, counted by :attr:`ops`) that raise StoreError; ``delay``: seconds admission
    waits (``asyncio.sleep``; 0: no coroutine at all)."""

    def __init__(self, *, fail_on: set[int] | None = None, delay: float = 0.0) -> None:
        self.data: dict[str, BreakerState] = {}
        self.reports: dict[str, list[BreakerReport]] = {}
        self.fail_on = set(fail_on or ())
        self.delay = delay
        self.ops = 0

    def bind_breaker(self, options: BreakerOptions, report: BreakerReport) -> DictBreaker:
        reports = self.reports.setdefault(options.name, [])
        reports.append(report)
        if options.name not in self.data:
            self.data[options.name] = memory_breaker_state(options, Relay(reports))
        return DictBreaker(self, options, report)

    def op(self) -> None:
        """Count an operation; raise if it is one told to fail."""
        self.ops += 1
        if self.ops in self.fail_on:
            raise StoreError(f"injected fault on operation {self.ops}")


class DictBreaker:
    """One breaker's view of the dict store (a :class:`aioresilience.abc.BreakerState`)."""

    closed_is_local = False  # every admission is an operation of the store

    def __init__(self, store: DictBreakerStore, options: BreakerOptions, report: Any) -> None:
        self.store, self.options, self.report = store, options, report
        self.local_report = Relay([report])
        self.local = memory_breaker_state(options, self.local_report)

    @property
    def shared(self) -> BreakerState:
        return self.store.data[self.options.name]

    @property
    def state(self) -> CircuitState:
        return self.shared.state

    @property
    def consecutive_failures(self) -> int:
        return self.shared.consecutive_failures

    def _answer(self, now: float) -> Any:
        try:
            self.store.op()
        except StoreError as exc:
            self.report.store_failure(exc)
            answer = self.local.try_admit(now)
            return answer if isinstance(answer, Refused) else ("local", answer)
        answer = self.shared.try_admit(now)
        return answer if isinstance(answer, Refused) else ("shared", answer)

    def try_admit(self, now: float) -> Any:
        if self.store.delay:
            return self._later(now)
        return self._answer(now)

    async def _later(self, now: float) -> Any:
        await asyncio.sleep(self.store.delay)
        return self._answer(now + self.store.delay)

    def _machine(self, ticket: tuple[str, int]) -> BreakerState:
        return self.local if ticket[0] == "local" else self.shared

    def on_outcome(self, ticket: tuple[str, int], now: float, failed: bool, slow: bool) -> bool:
        machine = self._machine(ticket)
        if machine is self.shared:
            try:
                self.store.op()
            except StoreError as exc:  # the outcome is lost, as a dropped reply would be
                self.report.store_failure(exc)
                return True
        return machine.on_outcome(ticket[1], now, failed, slow)

    def on_release(self, ticket: tuple[str, int]) -> bool:
        return self._machine(ticket).on_release(ticket[1])

    def read_state(self, now: float) -> CircuitState:
        return self.shared.read_state(now)

    def retry_after(self, now: float) -> float:
        return self.shared.retry_after(now)

    def window_totals(self, now: float) -> tuple[int, int, int]:
        return self.shared.window_totals(now)

    def manual(self, action: ManualAction, now: float) -> None:
        self.shared.manual(action, now)
        self.local_report.muted = True  # told once, by the shared one
        try:
            self.local.manual(action, now)
        finally:
            self.local_report.muted = False

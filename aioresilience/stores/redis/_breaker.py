"""A circuit breaker whose state machine lives in one Redis hash, shared by every process.

``breaker.lua`` runs the same machine as ``_core/breaker.py`` (consecutive failures, failure
and slow-call rates over a time window of buckets, a limited number of half-open probes, a
bounded half-open time) on server time. Each process keeps a *view* of it, refreshed by every
reply: while the view is CLOSED and younger than the store's ``breaker_staleness``, calls are
admitted without a round trip; outcomes are recorded in the background (coalesced with every
other operation of the loop turn). An OPEN view refuses locally until its break ends; then
half-open probes are leased from Redis, so only ``half_open_max_calls`` run across all
processes. When Redis cannot answer, the breaker's own in-process machine decides (the local
fallback) and a ``store_failure`` event is emitted.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, TypeVar

from ..._breaker import CircuitRejected
from ..._core.breaker import CircuitState
from ..._core.windows import CountWindow
from ..._support import clock as _clock
from ..._support.errors import CircuitBreakerOpenError
from ..._support.events import StoreFailed
from ._batcher import BREAKER_OPEN, Outage, StoreView
from ._protocol import SCRIPTS, Args, shared_name

if TYPE_CHECKING:
    from ..._breaker import CircuitBreaker

__all__ = ["RedisBreaker", "Ticket"]

T = TypeVar("T")
_PER_S: Final = 1e6  # µs per second
_STATES: Final = (
    CircuitState.CLOSED,
    CircuitState.OPEN,
    CircuitState.HALF_OPEN,
    CircuitState.ISOLATED,
    CircuitState.DISABLED,
)
_MANUAL: Final = {"isolate": 1, "disable": 2, "reset": 3, "trip": 4}
_SCRIPT: Final = SCRIPTS["breaker"]
_HALF_OPEN: Final = CircuitState.HALF_OPEN
NO_RESULT: Final = object()  # an `async with` block ends with no result to judge


@dataclass(frozen=True, slots=True)
class Ticket:
    """One admitted call: the generation it was admitted in, when, and by whom (the shared
    machine, or the local fallback during an outage); ``probe``: a half-open lease."""

    generation: int
    start: float
    shared: bool
    probe: bool = False


class RedisBreaker:
    """The shared state of one :class:`~aioresilience.CircuitBreaker`."""

    __slots__ = (
        "_config",
        "_epoch",
        "_last_break",
        "_refresh_at",
        "breaker",
        "generation",
        "key",
        "open_until",
        "opens",
        "state",
        "store",
        "synced_at",
    )

    def __init__(self, store: StoreView, breaker: CircuitBreaker) -> None:
        shared_name(breaker, default="CircuitBreaker")
        machine = breaker._machine
        window = machine.window
        if isinstance(window, CountWindow):
            raise TypeError(
                "a shared CircuitBreaker counts rates over time (window='time'): a window of "
                "the last N calls has no meaning across processes"
            )
        self.store = store
        self.breaker = breaker

        def rule(value: float | None) -> str:
            return "-1" if value is None else repr(value)

        seconds = window.seconds if window is not None else 60.0
        buckets = window.buckets if window is not None else 10
        self._config = ",".join(
            (
                rule(machine.failure_threshold),
                rule(machine.failure_rate_threshold),
                rule(machine.slow_call_rate_threshold),
                str(machine.minimum_calls),
                repr(seconds * _PER_S),
                str(buckets),
                str(machine.probes),
                repr(machine.half_open_timeout * _PER_S),
            )
        )
        self.key = f"{store.prefix}:breaker:{{{breaker.name}}}"
        self.state = CircuitState.CLOSED
        self.generation = self.opens = 0
        self.open_until = 0.0
        self.synced_at = -math.inf
        self._last_break: float | None = None
        # Bumped by manual actions: replies to operations sent before one are stale.
        self._epoch = 0
        self._refresh_at = 0.0  # no background refresh of an OPEN view before this

    # -- the view -------------------------------------------------------------------------------

    def current_state(self) -> CircuitState:
        if self.state is CircuitState.OPEN and _clock.now() >= self.open_until:
            return CircuitState.HALF_OPEN
        return self.state

    def retry_after(self) -> float:
        if self.state is CircuitState.ISOLATED:
            return math.inf
        if self.state is CircuitState.OPEN:
            return max(0.0, self.open_until - _clock.now())
        return 0.0

    def _break_us(self) -> float:
        """The break to use if this operation opens the circuit, drawn here (jitter and all)
        from the breaker's schedule, as the in-process machine would draw it."""
        machine = self.breaker._machine
        seconds = machine.break_duration.delay(self.opens, self._last_break, machine.random)
        return seconds * _PER_S

    def _sync(self, values: list[Any], now: float) -> None:
        _, code, generation, retry_us, opens, _ = values
        before, after = self.state, _STATES[code]
        self.state, self.generation, self.opens = after, generation, opens
        if after is CircuitState.OPEN:
            self.open_until = now + retry_us / _PER_S
            if before is not CircuitState.OPEN:
                self._last_break = retry_us / _PER_S
        self.synced_at = now
        if after is not before:
            self.breaker._announce(before, after, now, self.retry_after())

    def _on_reply(self, future: asyncio.Future[list[Any] | Outage], epoch: int) -> None:
        """The reply to an operation nobody awaits (an outcome, a release, a manual action)."""
        if future.cancelled():
            return
        error = future.exception()  # retrieved, so asyncio does not report it as lost
        values = None if error is not None else future.result()
        if error is not None or isinstance(values, Outage):
            self._note_outage(error if values is None else values.error)  # type: ignore[union-attr]
        elif values is not None and epoch == self._epoch:  # else sent before a manual action
            self._sync(values, _clock.now())

    def _note_outage(self, error: BaseException | None) -> None:
        breaker = self.breaker
        breaker._store_failures += 1
        breaker._emit(StoreFailed, policy="local", error=error)

    def _send(self, op: str, flags: int, generation: int, break_us: float | None = None) -> None:
        """An operation nobody waits for. Outcomes and reads are dropped while Redis is known
        to be away (the local machine decides meanwhile); lease releases and manual actions
        are owed, and reach Redis when it is back."""
        store = self.store
        if op in ("o", "g") and store._breaker.retry_after:
            self._note_outage(BREAKER_OPEN)
            return
        args: Args = (op, flags, generation, self._config, break_us or self._break_us())
        epoch = self._epoch
        store._batcher.send(_SCRIPT, self.key, args, lambda done: self._on_reply(done, epoch))

    # -- admission and outcomes -----------------------------------------------------------------

    async def admit(self) -> Ticket:
        """Admit a call, or raise :class:`CircuitBreakerOpenError`."""
        now = _clock.now()
        state = self.state
        if state is CircuitState.OPEN and now < self.open_until:
            # The break is known: refused here, with no round trip. A view older than the
            # staleness bound is refreshed in the background, so a reset made elsewhere
            # reaches this process without waiting for the break to end.
            if now - self.synced_at > self.store.breaker_staleness and now >= self._refresh_at:
                self._refresh_at = now + self.store.breaker_staleness
                self._send("g", 0, self.generation)
            raise self._rejection(self.open_until - now)
        if now - self.synced_at <= self.store.breaker_staleness:
            if state is CircuitState.CLOSED or state is CircuitState.DISABLED:
                return Ticket(self.generation, now, shared=True)
            if state is CircuitState.ISOLATED:
                raise self._rejection(math.inf)
        epoch = self._epoch
        args: Args = ("a", 0, 0, self._config, self._break_us())
        reply = await self.store._batcher.request(_SCRIPT, self.key, args)
        if isinstance(reply, Outage):
            self._note_outage(reply.error)
            generation, start = self.breaker._admit()  # the local fallback decides
            return Ticket(generation, start, shared=False)
        now = _clock.now()
        if epoch == self._epoch:
            self._sync(reply, now)
        if reply[0] == 1:
            return Ticket(reply[2], now, shared=True, probe=_STATES[reply[1]] is _HALF_OPEN)
        retry_us = reply[3]
        raise self._rejection(math.inf if retry_us < 0 else retry_us / _PER_S)

    def _rejection(self, retry_after: float) -> CircuitBreakerOpenError:
        breaker = self.breaker
        breaker._rejected += 1
        breaker._emit(CircuitRejected, retry_after=retry_after)
        state = self.current_state().value
        return CircuitBreakerOpenError(
            f"{breaker.name}: circuit {state} (shared); retry after {retry_after:.3f}s",
            retry_after=retry_after,
            breaker=breaker.name,
            state=state,
        )

    def finish(self, ticket: Ticket, exc: BaseException | None, result: Any = NO_RESULT) -> None:
        """Record how an admitted call ended (``exc`` None: it returned ``result``, or, for an
        ``async with`` block, nothing to judge)."""
        breaker = self.breaker
        if not ticket.shared:
            if exc is not None:
                breaker._on_exception(exc, ticket.generation, ticket.start)
            elif result is NO_RESULT:
                breaker._on_plain_success(ticket.generation, ticket.start)
            else:
                breaker._on_success(result, ticket.generation, ticket.start)
            return
        if self.state is CircuitState.DISABLED:
            return  # forced closed: nothing recorded, here or in Redis
        if exc is None:
            judge = breaker._failure_result
            failed = judge is not None and result is not NO_RESULT and bool(judge(result))
        elif breaker._is_failure(exc):
            failed = True
        else:
            # Cancellation, ignored exceptions, refusals inside: no outcome; a probe's lease
            # goes back.
            if isinstance(exc, asyncio.CancelledError):
                breaker._cancelled += 1
            else:
                breaker._ignored += 1
            if ticket.probe:
                self._send("r", 0, ticket.generation)
            return
        if failed:
            breaker._failures += 1
        else:
            breaker._successes += 1
        slow_after = breaker._slow_after
        slow = slow_after is not None and _clock.now() - ticket.start >= slow_after
        self._send("o", int(failed) + 2 * int(slow), ticket.generation)

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        ticket = await self.admit()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self.finish(ticket, exc)
            raise
        self.finish(ticket, None, result)
        return result

    def manual(self, action: str) -> None:
        """isolate / disable / reset / trip, for every process (needs a running loop). The
        view takes the new state at once; the next admission asks Redis, after this."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                f"{self.breaker.name}: a shared breaker's {action}() goes through Redis; call it "
                "from code running in the event loop"
            ) from None
        before = self.state
        break_us = self._break_us()
        self._epoch += 1
        self._send("m", _MANUAL[action], self.generation, break_us)
        now = _clock.now()
        if action == "trip":
            self.open_until = now + break_us / _PER_S
        self.state = {
            "isolate": CircuitState.ISOLATED,
            "disable": CircuitState.DISABLED,
            "reset": CircuitState.CLOSED,
            "trip": CircuitState.OPEN,
        }[action]
        self.synced_at = -math.inf
        if self.state is not before:
            self.breaker._announce(before, self.state, now, self.retry_after())

"""A circuit breaker whose state machine lives in one Redis hash, shared by every process.

``breaker.lua`` runs the same machine as ``_core/breaker.py`` (consecutive failures, failure
and slow-call rates over a time window of buckets, a limited number of half-open probes, a
bounded half-open time) on server time. Each process keeps a *view* of it, refreshed by every
reply: while the view is CLOSED and younger than the store's ``breaker_staleness``, calls are
admitted without a round trip; outcomes are recorded in the background (coalesced with every
other operation of the loop turn). An OPEN view refuses locally until its break ends; then
half-open probes are leased from Redis, so only ``half_open_max_calls`` run across all
processes. When Redis cannot answer, an in-process machine of the same options decides (the local
fallback) and the store failure is reported.

:class:`RedisBreaker` is a :class:`aioresilience.abc.BreakerState`: it knows its breaker only
by the :class:`~aioresilience.abc.BreakerOptions` it was bound to and the
:class:`~aioresilience.abc.BreakerReport` it tells changes to; it never touches the front-end.
"""

from __future__ import annotations

import asyncio
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

from ..._core.breaker import BreakerMachine, BreakerOptions, CircuitState, ManualAction, Refused
from ._batcher import BREAKER_OPEN, Outage, StoreView
from ._protocol import SCRIPTS, Args, shared_name

if TYPE_CHECKING:
    from ...abc import BreakerReport

__all__ = ["RedisBreaker", "Ticket"]

_PER_S: Final = 1e6  # µs per second
_STATES: Final = (
    CircuitState.CLOSED,
    CircuitState.OPEN,
    CircuitState.HALF_OPEN,
    CircuitState.ISOLATED,
    CircuitState.DISABLED,
)
_MANUAL: Final = {"isolate": 1, "disable": 2, "reset": 3, "trip": 4}
_SET_BY_HAND: Final = {
    "isolate": CircuitState.ISOLATED,
    "disable": CircuitState.DISABLED,
    "reset": CircuitState.CLOSED,
    "trip": CircuitState.OPEN,
}
_SCRIPT: Final = SCRIPTS["breaker"]
_HALF_OPEN: Final = CircuitState.HALF_OPEN


@dataclass(frozen=True, slots=True)
class Ticket:
    """One admitted call: the generation it was admitted in, and by whom (the shared
    machine, or the local fallback during an outage); ``probe``: a half-open lease;
    ``disabled``: admitted while disabled, never counted whenever it ends."""

    generation: int
    shared: bool
    probe: bool = False
    disabled: bool = False


class RedisBreaker:
    """The shared state of one breaker (a :class:`aioresilience.abc.BreakerState`)."""

    __slots__ = (
        "_config",
        "_epoch",
        "_followed",
        "_last_break",
        "_local",
        "_now",
        "_random",
        "_refresh_at",
        "_report",
        "generation",
        "key",
        "name",
        "open_until",
        "opens",
        "options",
        "state",
        "store",
        "synced_at",
    )

    # A closed view still has to know its age (``now``) before it admits.
    closed_is_local = False

    def __init__(self, store: StoreView, options: BreakerOptions, report: BreakerReport) -> None:
        shared_name(options, default="CircuitBreaker", kind="CircuitBreaker")
        if options.windowed and options.window == "count":
            raise TypeError(
                "a shared CircuitBreaker counts rates over time (window='time'): a window of "
                "the last N calls has no meaning across processes"
            )
        self.store = store
        self.options = options
        self.name = options.name
        self._report = report
        # The local fallback: the same machine in this process, deciding while Redis is away.
        # One stream of jitter for both, as one machine would draw it.
        self._random = random.Random(options.seed).random
        self._local = BreakerMachine.from_options(options, report.transition, self._random)

        def rule(value: float | None) -> str:
            return "-1" if value is None else repr(value)

        seconds = options.window_size if options.windowed else 60.0
        self._config = ",".join(
            (
                rule(options.failure_threshold),
                rule(options.failure_rate_threshold),
                rule(options.slow_call_rate_threshold),
                str(options.minimum_calls),
                repr(seconds * _PER_S),
                str(options.buckets),
                str(options.half_open_max_calls),
                repr(options.half_open_max_duration * _PER_S),
            )
        )
        self.key = f"{store.prefix}:breaker:{{{options.name}}}"
        self._now = options.clock.time  # the breaker's own clock: one clock per deadline
        self.state = CircuitState.CLOSED
        self.generation = self.opens = 0
        self.open_until = 0.0
        self.synced_at = -math.inf
        self._last_break: float | None = None
        # Bumped by manual actions: replies to operations sent before one are stale.
        self._epoch = 0
        self._refresh_at = 0.0  # no background refresh of an OPEN view before this
        self._followed = -math.inf  # the end of the last shared break the local machine took up

    def _quietly(self, change: Any, *args: Any) -> Any:
        """``change(*args)`` on the local machine with its report silenced: the view is what
        reports the shared circuit's changes (the local machine shadows it, or follows it)."""
        local = self._local
        report, local.report = local.report, None
        try:
            return change(*args)
        finally:
            local.report = report

    # -- the view -------------------------------------------------------------------------------

    @property
    def consecutive_failures(self) -> int:
        return self._local.consecutive_failures  # the shared streak lives in Redis

    def _local_decides(self, now: float) -> bool:
        """Redis is known to be away and the view is closed, or open with its break over (a
        probe would be asked for): the local machine decides the next call
        (:meth:`try_admit`), so state and retry_after read it too."""
        if not self.store._breaker.retry_after:
            return False
        state = self.state
        if state is CircuitState.OPEN and now >= self.open_until:
            self._take_up_break(now)
            return True
        return state is CircuitState.CLOSED

    def _take_up_break(self, now: float) -> None:
        """The local machine is to decide while the view is open, its break over: it takes
        up that break (once per break), so it admits half-open probes, not every call, to a
        dependency the shared circuit found failing."""
        if (
            self.state is CircuitState.OPEN
            and now >= self.open_until
            and self._followed != self.open_until
            and self._local.state is CircuitState.CLOSED
        ):
            self._followed = self.open_until
            self._local.follow_open(self.open_until, self._last_break or 0.0, self.opens)

    def read_state(self, now: float) -> CircuitState:
        if self._local_decides(now):
            return self._local.read_state(now)
        if self.state is CircuitState.OPEN and now >= self.open_until:
            return CircuitState.HALF_OPEN
        return self.state

    def retry_after(self, now: float) -> float:
        if self._local_decides(now):
            return self._local.retry_after(now)
        if self.state is CircuitState.ISOLATED:
            return math.inf
        if self.state is CircuitState.OPEN:
            return max(0.0, self.open_until - now)
        return 0.0

    def window_totals(self, now: float) -> tuple[int, int, int]:
        return self._local.window_totals(now)  # this process's fallback window

    def _break_us(self) -> float:
        """The break to use if this operation opens the circuit, drawn here (jitter and all)
        from the breaker's schedule, as the in-process machine would draw it."""
        schedule = self.options.break_duration
        return schedule.delay(self.opens, self._last_break, self._random) * _PER_S

    def _sync(self, values: list[Any], now: float) -> None:
        _, code, generation, retry_us, opens, _ = values
        before, after = self.state, _STATES[code]
        self.state, self.generation, self.opens = after, generation, opens
        if after is CircuitState.OPEN:
            self.open_until = now + retry_us / _PER_S
            if before is not CircuitState.OPEN:
                self._last_break = retry_us / _PER_S
        self.synced_at = now
        local = self._local
        if after is CircuitState.CLOSED and local.state is not CircuitState.CLOSED:
            # A break the local machine took up (or opened) while Redis was away is over for
            # the shared circuit: the local machine, which decides in the next outage, must
            # not decide from it then. Silently: the view reports the change.
            self._quietly(local.reset, now)
        if after is not before:
            self._report.transition(before, after, now, self.retry_after(now))

    def _on_reply(self, future: asyncio.Future[list[Any] | Outage], epoch: int) -> None:
        """The reply to an operation nobody awaits (an outcome, a release, a manual action)."""
        if future.cancelled():
            return
        error = future.exception()  # retrieved, so asyncio does not report it as lost
        values = None if error is not None else future.result()
        if error is not None or isinstance(values, Outage):
            self._report.store_failure(error if values is None else values.error)  # type: ignore[union-attr]
        elif values is not None and epoch == self._epoch:  # else sent before a manual action
            self._sync(values, self._now())

    def _send(self, op: str, flags: int, generation: int, break_us: float | None = None) -> None:
        """An operation nobody waits for. Outcomes and reads are dropped while Redis is known
        to be away (the local machine decides meanwhile); lease releases and manual actions
        are owed, and reach Redis when it is back."""
        store = self.store
        if op in ("o", "g") and store._breaker.retry_after:
            self._report.store_failure(BREAKER_OPEN)
            return
        args: Args = (op, flags, generation, self._config, break_us or self._break_us())
        epoch = self._epoch
        store._batcher.send(_SCRIPT, self.key, args, lambda done: self._on_reply(done, epoch))

    # -- admission and outcomes -----------------------------------------------------------------

    def try_admit(self, now: float) -> Any:
        """A ticket or :class:`Refused` from the view when it is fresh enough, else the
        coroutine of the round trip that asks Redis."""
        if self._local_decides(now):
            # Redis is known to be away: the local machine decides (as _ask would, at once).
            local = self._local.try_admit(now)
            return local if isinstance(local, Refused) else Ticket(local, shared=False)
        state = self.state
        if state is CircuitState.OPEN and now < self.open_until:
            # The break is known: refused here, with no round trip. A view older than the
            # staleness bound is refreshed in the background, so a reset made elsewhere
            # reaches this process without waiting for the break to end.
            if now - self.synced_at > self.store.breaker_staleness and now >= self._refresh_at:
                self._refresh_at = now + self.store.breaker_staleness
                self._send("g", 0, self.generation)
            return self._refused(self.open_until - now, now)
        if now - self.synced_at <= self.store.breaker_staleness:
            if state is CircuitState.CLOSED or state is CircuitState.DISABLED:
                return Ticket(self.generation, shared=True, disabled=state is CircuitState.DISABLED)
            if state is CircuitState.ISOLATED:
                return self._refused(math.inf, now)
        return self._ask()

    async def _ask(self) -> Ticket | Refused:
        epoch = self._epoch
        args: Args = ("a", 0, 0, self._config, self._break_us())
        reply = await self.store._batcher.request(_SCRIPT, self.key, args)
        now = self._now()  # after the round trip
        if isinstance(reply, Outage):
            self._report.store_failure(reply.error)
            self._take_up_break(now)
            local = self._local.try_admit(now)  # the local fallback decides
            return local if isinstance(local, Refused) else Ticket(local, shared=False)
        if epoch == self._epoch:
            self._sync(reply, now)
        if reply[0] == 1:
            state = _STATES[reply[1]]
            return Ticket(
                reply[2],
                shared=True,
                probe=state is _HALF_OPEN,
                disabled=state is CircuitState.DISABLED,
            )
        retry_us = reply[3]
        return self._refused(math.inf if retry_us < 0 else retry_us / _PER_S, now)

    def _refused(self, retry_after: float, now: float) -> Refused:
        return Refused(retry_after, self.read_state(now), shared=True)

    def on_outcome(self, ticket: Ticket, now: float, failed: bool, slow: bool) -> bool:
        if not ticket.shared:
            return self._local.on_outcome(ticket.generation, now, failed, slow)
        if self.state is CircuitState.DISABLED or ticket.disabled:
            return False  # forced closed: nothing recorded, here or in Redis
        if self.store._breaker.retry_after:
            # Redis is known to be away: the outcome cannot be recorded there, and the local
            # machine decides meanwhile, so it hears it (else the calls admitted from a fresh
            # view as Redis went away would never count, and a burst of failures would not
            # open the circuit).
            self._report.store_failure(BREAKER_OPEN)
            local = self._local
            return local.on_outcome(local.generation, now, failed, slow)
        local = self._local
        if local.state is CircuitState.CLOSED:
            # Shadowed in the local machine, so that it knows the streak when Redis goes away
            # (outcomes sent as Redis went away are lost; the local machine then decides).
            # Silently: the shared state is the one reported while Redis answers.
            self._quietly(local.on_outcome, local.generation, now, failed, slow)
        self._send("o", int(failed) + 2 * int(slow), ticket.generation)
        return True

    def on_release(self, ticket: Ticket) -> bool:
        if not ticket.shared:
            return self._local.on_release(ticket.generation)
        if self.state is CircuitState.DISABLED or ticket.disabled:
            return False
        if ticket.probe:  # a probe's lease goes back
            self._send("r", 0, ticket.generation)
        return True

    def manual(self, action: ManualAction, now: float) -> None:
        """isolate / disable / reset / trip, for every process (needs a running loop). The
        view takes the new state at once; the next admission asks Redis, after this. The
        local machine follows too: it decides while the store is unreachable."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise RuntimeError(
                f"{self.name}: a shared breaker's {action}() goes through Redis; call it "
                "from code running in the event loop"
            ) from None
        before = self.state
        break_us = self._break_us()
        self._epoch += 1
        self._send("m", _MANUAL[action], self.generation, break_us)
        if action == "trip":
            self.open_until = now + break_us / _PER_S
        self.state = _SET_BY_HAND[action]
        self.synced_at = -math.inf
        self._quietly(self._local.manual, action, now)  # told once, by the view below
        if self.state is not before:
            self._report.transition(before, self.state, now, self.retry_after(now))

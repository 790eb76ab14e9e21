"""The public seams: what a strategy, a clock or a store (or any other implementation) is
written against.

A protocol here names only public members, so anybody can implement it: the in-memory states
(under ``aioresilience._core`` and the limiter's own), the Redis store, and a test's
dict-backed store all do. The one exception is :class:`GuardForms`, a base class rather than a
protocol, whose core is the pair ``_enter``/``_exit`` (underscored so that they stay off the
built-in guards' own public surface; a subclass implements them). Code that drives a guard by
hand, outside ``async with`` (the Redis store's own breaker guarding its round trips), gets
that pair through the public ``GuardStrategy(kind, guard).core()``, never by name.

Running (DESIGN: the running seam): a pipeline layer is a :class:`Strategy`. A *guard* (never
re-runs the call) returns its :data:`Core` from ``core()``: ``enter()`` admits the call and
returns a ticket (or a native coroutine whose result is the ticket, when admission waits);
``exit(ticket, exc, result)`` accounts for the outcome (``result`` is :data:`NO_RESULT` when
unknown) and may raise to replace ``exc``, never suppresses it. A strategy that re-runs the
call implements ``execute(call, context)`` over a :data:`Call` (a zero-argument callable
returning an awaitable). :class:`GuardForms` builds ``async with``, ``@guard`` and
``guard.call(fn, ...)`` from ``_enter``/``_exit``; :class:`GuardStrategy` puts such a
primitive in a pipeline (``builder.add(GuardStrategy("my_guard", primitive))``).

Time (DESIGN: the time seam): a :class:`Clock` reads the time (``time()``), schedules a
callback (``call_at(when, callback)``, returning a :class:`Timer`) and sleeps (``async
sleep(seconds)``); every primitive takes ``clock=``. :data:`LOOP_CLOCK` is the default, the
running loop's own clock.

Circuit breaker (Polly's CircuitStateController / CircuitBehavior split): the front-end,
:class:`aioresilience.CircuitBreaker`, owns *classification* (which exception or result is a
failure, which call is slow), *statistics* and *events*; a :class:`BreakerState` owns
*admission* and the *state changes*, and tells every change back through the
:class:`BreakerReport` it was bound with. A :class:`BreakerStore` binds a state to a breaker's
:class:`BreakerOptions` (a frozen value), never to the front-end object.
:func:`memory_breaker_state` makes the in-memory state the breaker itself uses, for a store
that needs one (a local fallback while it cannot reach its backend, say).

Sync or awaitable: ``try_admit`` may return an awaitable (a native coroutine) when it needs a
round trip; every other method answers at once (a remote store sends outcomes, releases and
manual actions in the background). The in-memory state answers everything synchronously, so a
closed breaker's call costs plain method calls, no coroutine.

Rate limiter: a front-end (:class:`~aioresilience.RateLimiter`: validation, the ways in,
statistics and events) over a *state* that owns admission. The in-process state is the
limiter's own (the pure algorithms and key store of ``aioresilience._core``, with the FIFO
waiting machinery around them); a shared store (``aioresilience.stores.redis.RedisStore``, or
one of your own) implements :class:`LimiterStore`: given a limiter's frozen
:class:`LimiterOptions` (never the limiter object) it returns a :class:`LimiterState`, and the
limiter routes every decision to it. Nothing here names a private member, so anyone can write
a store.

Methods may answer synchronously or return an awaitable: an in-process state answers at once,
a store across the network needs a round trip. The front-end awaits whatever is awaitable.

Retry budget: :class:`~aioresilience.RetryBudget` is a name, an ``exhausted`` count and a
:class:`RetryLedger`, the accounting that every strategy spending the budget drives (the retry
policy and hedging both do; a strategy of your own can too, through ``budget.ledger``). Envoy's
and gRPC's forms are built in; ``RetryBudget(MyLedger(), kind="mine")`` takes any other.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from ._core.breaker import BreakerMachine, BreakerOptions, CircuitState, ManualAction, Refused
from ._core.ratelimit import Decision, RateAlgorithm
from ._support.clock import LOOP_CLOCK, Clock, Timer
from ._support.compose import Call, Core, GuardStrategy, Strategy
from ._support.guard import NO_RESULT, GuardForms

__all__ = [
    "LOOP_CLOCK",
    "NO_RESULT",
    "BreakerOptions",
    "BreakerReport",
    "BreakerState",
    "BreakerStore",
    "Call",
    "CircuitState",
    "Clock",
    "Core",
    "Decision",
    "GuardForms",
    "GuardStrategy",
    "LimiterOptions",
    "LimiterState",
    "LimiterStore",
    "ManualAction",
    "RateAlgorithm",
    "Refused",
    "RetryLedger",
    "Strategy",
    "Timer",
    "memory_breaker_state",
]


class BreakerReport(Protocol):
    """What a bound state tells its front-end; the front-end turns it into events,
    ``on_state_change`` callbacks and statistics."""

    def transition(
        self, old: CircuitState, new: CircuitState, at: float, retry_after: float
    ) -> None:
        """The state moved from ``old`` to ``new``, seen at ``at`` (the front-end's clock);
        ``retry_after``: seconds until the break ends (0 unless ``new`` is OPEN)."""

    def store_failure(self, error: BaseException | None) -> None:
        """The store could not answer (the state decided locally instead)."""


@runtime_checkable
class BreakerState(Protocol):
    """A circuit breaker's state: admission, outcomes and state changes.

    A *ticket* is whatever ``try_admit`` returns for an admitted call (anything but an
    awaitable, which is awaited for the answer), handed back unchanged to
    exactly one of ``on_outcome`` (the call's outcome counts) or ``on_release`` (it does not).
    Times (``now``) are the front-end's clock, in seconds.
    """

    @property
    def state(self) -> CircuitState:
        """The state as last known, with no time applied (the front-end's fast check)."""

    @property
    def closed_is_local(self) -> bool:
        """True if, while :attr:`state` is CLOSED, ``try_admit`` answers at once without
        reading ``now``: the front-end then skips reading the clock."""

    @property
    def consecutive_failures(self) -> int:
        """The current failure streak (statistics)."""

    def try_admit(self, now: float) -> Any | Refused | Awaitable[Any | Refused]:
        """A ticket if a call may run now, :class:`Refused` if not, or an awaitable of either
        (when a round trip is needed). Admission in HALF_OPEN takes a probe slot."""

    def on_outcome(self, ticket: Any, now: float, failed: bool, slow: bool) -> bool:
        """The admitted call's outcome (classified by the front-end). Returns whether it
        counts in statistics (not while disabled, nor for a call admitted while disabled)."""

    def on_release(self, ticket: Any) -> bool:
        """The admitted call ended with no outcome (cancelled, an ignored exception, a
        refusal inside): a half-open probe slot goes back. Returns whether it counts in
        statistics (as ``on_outcome``)."""

    def read_state(self, now: float) -> CircuitState:
        """The state the next call meets at ``now`` (an OPEN circuit past its break reads
        HALF_OPEN; stuck probes re-open it first)."""

    def retry_after(self, now: float) -> float:
        """Seconds until a call can be admitted (0: now; ``inf`` while isolated)."""

    def window_totals(self, now: float) -> tuple[int, int, int]:
        """(calls, failures, slow calls) in the rolling window, as far as known here."""

    def manual(self, action: ManualAction, now: float) -> None:
        """``isolate`` (forced open), ``disable`` (forced closed, nothing counted), ``reset``
        (closed, windows emptied) or ``trip`` (open for a normal break)."""


class BreakerStore(Protocol):
    """Where breakers keep their state (``CircuitBreaker(store=...)``)."""

    def bind_breaker(self, options: BreakerOptions, report: BreakerReport) -> BreakerState:
        """The state of the breaker with ``options``, telling its changes to ``report``."""


def memory_breaker_state(
    options: BreakerOptions, report: BreakerReport | None = None
) -> BreakerState:
    """A new in-memory :class:`BreakerState` for a breaker with ``options``: the state a
    :class:`~aioresilience.CircuitBreaker` without a store keeps, for a store to decide with
    when it cannot ask its own backend. It tells its state changes to ``report.transition``
    (``None``: to nobody); it never fails, so it never calls ``report.store_failure``. Its
    break jitter is drawn from ``random.Random(options.seed)``."""
    transition = None if report is None else report.transition
    return BreakerMachine.from_options(options, transition, random.Random(options.seed).random)


@dataclass(frozen=True, slots=True)
class LimiterOptions:
    """What a store is told about a limiter it keeps state for.

    ``name``: the limiter's name as given (``None`` when none was given: a shared store needs
    one, it is the identity every process shares). ``kind``: the limiter's class name, for
    messages. ``algorithm``: the policy, an immutable :class:`RateAlgorithm` (its public
    attributes: ``max_cost``, ``horizon`` and the algorithm's own parameters, such as
    ``interval``/``burst`` of GCRA or ``limit``/``window`` of the window counters).
    ``on_store_failure(policy, error)``: the state calls it each time it could not decide and
    its failure policy decided instead, so the front-end counts it and emits its event.
    """

    name: str | None
    kind: str
    algorithm: RateAlgorithm[Any]
    on_store_failure: Callable[[str, BaseException], None]
    # The limiter's Clock: a state reads every time, deadline and timer on it.
    clock: Clock = LOOP_CLOCK

    @property
    def label(self) -> str:
        """The name to show in messages (the kind when no name was given)."""
        return self.kind if self.name is None else self.name


class LimiterState(Protocol):
    """One limiter's state, for every key: admission is decided here.

    ``cost`` is always in ``1..algorithm.max_cost`` (the front-end checks it). A refusal is a
    :class:`~aioresilience.RateLimited` raised by :meth:`acquire` (naming ``retry_after``), or
    a :class:`Decision` with ``allowed=False`` from :meth:`decide`.
    """

    @property
    def limit(self) -> int:
        """The most cost admissible at once: what every :class:`Decision` carries as
        ``limit``."""
        ...

    def decide(self, key: Hashable, cost: int) -> Decision | Awaitable[Decision]:
        """Admit ``cost`` for ``key`` now or refuse, never waiting; the decision carries
        remaining capacity, retry-after and reset time."""
        ...

    def acquire(self, key: Hashable, cost: int, max_wait: float) -> bool | Awaitable[bool]:
        """Admit ``cost`` for ``key`` within ``max_wait`` seconds (``math.inf``: as long as it
        takes): ``True`` if the caller had to wait. Raises ``RateLimited`` at once, having
        consumed nothing, when admission would take longer. Cancelling the awaitable gives
        back whatever it reserved: a cancelled caller leaves no reservation behind."""
        ...

    def refund(self, key: Hashable, cost: int, at: float) -> None:
        """Give back the admission of ``cost`` for ``key`` whose :class:`Decision` carried
        ``at`` (this state's own stamp of it), as if it had never been made; never waits (a
        shared store may send it later, in order with what follows)."""
        ...

    def waiting(self) -> int:
        """Callers of this process waiting now."""
        ...

    def keys(self) -> int:
        """Keys whose state this process holds (0 for a store that holds them elsewhere)."""
        ...


class LimiterStore(Protocol):
    """A store that can keep rate limiters' state (``RateLimiter(..., store=...)``)."""

    def bind_limiter(self, options: LimiterOptions) -> LimiterState:
        """The state of one limiter in this store. Raises ``TypeError``/``ValueError``
        naming what the store cannot keep (an algorithm it has no script for, a missing
        name)."""
        ...


@runtime_checkable
class RetryLedger(Protocol):
    """A retry budget's accounting, driven by every call that spends the budget: one
    ``start_request()`` when the call begins and one ``end_request()`` when it is over (any
    path), ``record(success)`` per finished attempt, and before each retry (or hedge)
    ``try_retry()``, which takes a slot when the budget allows, given back by one
    ``end_retry()`` when that attempt finishes. All synchronous: the ledger is consulted on
    every call and must answer at once."""

    def start_request(self) -> None: ...

    def end_request(self) -> None: ...

    def record(self, success: bool) -> None: ...

    def try_retry(self) -> bool: ...

    def end_retry(self) -> None: ...

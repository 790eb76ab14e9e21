"""Circuit breaker: the async front-end over :class:`aioresilience._core.breaker.BreakerMachine`.

Three ways in, one accounting: ``await breaker.call(fn, *args)``, ``@breaker`` and
``async with breaker:``, all built by :class:`~aioresilience._support.guard.GuardForms` from
the breaker's one core, ``_enter``/``_exit``. A call is refused with
:class:`CircuitBreakerOpenError` (carrying ``retry_after``) while the circuit is open;
otherwise it runs and its outcome is recorded:

- an exception matching ``record`` and not ``ignore`` is a failure;
- a result for which ``failure_result(result)`` is true is a failure (the result is still
  returned to the caller);
- a call lasting at least ``slow_call_duration`` is slow (whatever its outcome);
- the library's own refusals raised by guards inside the breaker (:class:`Rejected`: a full
  bulkhead, a rate limit, another breaker's open circuit, load shedding...) are not the
  dependency's failures: they count neither way, unless ``record`` names their class;
- cancellation (and any BaseException that is not an Exception) is never recorded: it only
  gives back a half-open probe slot.

The same breaker entered again while an entry of it is running in the same task (or in a task
started inside that entry, while it runs) passes through: the outermost entry alone is
admitted and counted, so a call through ``breaker.call`` of a function decorated with the same
breaker counts once and can be the half-open probe. This is tracked in a
:class:`contextvars.ContextVar` per breaker (tasks copy their context when created).

The front-end owns classification (which exception or result is a failure, which call is
slow), statistics and events; the *state* (:class:`aioresilience.abc.BreakerState`: the
in-memory :class:`~aioresilience._core.breaker.BreakerMachine`, or a shared store's) owns
admission and the state changes, and tells each change back (Polly's CircuitStateController /
CircuitBehavior split). A store binds to the breaker's :class:`BreakerOptions`, never to the
front-end.
"""

from __future__ import annotations

import asyncio
import contextvars
import random as _random
import types
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from ._core.backoff import Backoff
from ._core.breaker import BreakerMachine, BreakerOptions, CircuitState, Refused
from ._support.clock import Clock, clock_option
from ._support.errors import CircuitBreakerOpenError, Rejected
from ._support.events import CallRejected, EventSource, ResilienceEvent, Severity, StoreFailed
from ._support.guard import NO_RESULT, GuardForms, async_with_from_core
from ._support.listeners import Listeners
from ._support.predicates import (
    ExceptionFilter,
    exception_predicate,
    exception_types,
    sync_callable,
)
from ._support.validation import aliased, checked_seed, number_in, shared_store_binder

if TYPE_CHECKING:
    from .abc import BreakerState, BreakerStore

__all__ = [
    "CircuitBreaker",
    "CircuitBreakerStatistics",
    "CircuitClosed",
    "CircuitDisabled",
    "CircuitHalfOpened",
    "CircuitIsolated",
    "CircuitOpened",
    "CircuitRejected",
    "CircuitState",
    "CircuitStateChange",
    "CircuitStateChanged",
]


CLOSED = CircuitState.CLOSED
_TRIPPED = (CircuitState.OPEN, CircuitState.ISOLATED)
DISABLED = CircuitState.DISABLED

# Bounds of the options. Durations: 1 µs (the shared store's resolution) to about 31 years
# (isolate() is the way to "forever"); counts up to 10**9; a count window keeps one int per
# call, so at most 10**6 of them; rates from 1e-6 (below that, any failure trips) to 1.
_SECONDS = (1e-6, 1e9)
_COUNT = (1, 10**9)
_WINDOW_CALLS = (1, 10**6)
_RATE = (1e-6, 1.0)
_DEFAULT_BREAK = 30.0
# The entry record of a context no entry ever ran in (its live flag never set to True).
_OUTSIDE: list[Any] = [False, None, 0.0]
_Coroutine = types.CoroutineType


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitStateChanged(ResilienceEvent):
    """The breaker went from ``old`` to ``new`` (at ``at``); ``retry_after``: seconds until it
    half-opens (0 unless OPEN). ``on_state_change`` callbacks and listeners get the same
    object, of the subclass named after the new state (``CircuitOpened``...)."""

    old: CircuitState
    new: CircuitState
    retry_after: float

    @property
    def breaker(self) -> str:
        """The breaker's name (``strategy``)."""
        return self.strategy


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitOpened(CircuitStateChanged):
    name: ClassVar[str] = "circuit_open"
    severity: ClassVar[Severity] = Severity.WARNING


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitHalfOpened(CircuitStateChanged):
    name: ClassVar[str] = "circuit_half_open"


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitClosed(CircuitStateChanged):
    name: ClassVar[str] = "circuit_closed"


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitIsolated(CircuitStateChanged):
    name: ClassVar[str] = "circuit_isolated"
    severity: ClassVar[Severity] = Severity.WARNING


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitDisabled(CircuitStateChanged):
    name: ClassVar[str] = "circuit_disabled"


# The public name of issue 11 and before: the same class.
CircuitStateChange = CircuitStateChanged

_CHANGED: dict[CircuitState, type[CircuitStateChanged]] = {
    CircuitState.OPEN: CircuitOpened,
    CircuitState.HALF_OPEN: CircuitHalfOpened,
    CircuitState.CLOSED: CircuitClosed,
    CircuitState.ISOLATED: CircuitIsolated,
    CircuitState.DISABLED: CircuitDisabled,
}


@dataclass(frozen=True, slots=True, kw_only=True)
class CircuitRejected(CallRejected):
    """A call was refused: the circuit is not closed; ``retry_after`` seconds until it may
    pass."""

    name: ClassVar[str] = "circuit_rejected"
    severity: ClassVar[Severity] = Severity.DEBUG

    retry_after: float


@dataclass(frozen=True, slots=True)
class CircuitBreakerStatistics:
    name: str
    state: CircuitState
    window_calls: int
    window_failures: int
    window_slow_calls: int
    consecutive_failures: int
    successes: int
    failures: int
    ignored: int  # ended with an exception that counts neither way (ignore=, refusals inside)
    rejected: int
    opened: int
    retry_after: float
    store_failures: int = 0  # shared breakers: operations Redis could not answer
    cancelled: int = 0  # cancelled calls: never an outcome of the dependency


def _fraction(name: str, value: Any) -> float | None:
    return None if value is None else number_in(name, value, *_RATE)


def _failure_filter(record: ExceptionFilter, ignore: ExceptionFilter) -> Callable[[Any], bool]:
    """Whether an exception raised by a call is a failure of the dependency: an Exception
    matching ``record`` and not ``ignore``; a refusal of a guard inside the breaker
    (:class:`Rejected`) only if ``record`` names its class (a predicate is not asked: it
    was written for the user's own exceptions)."""
    for option, value in (("record", record), ("ignore", ignore)):
        if callable(value) and not isinstance(value, type):
            sync_callable(option, value)
    is_recorded = exception_predicate("record", record)
    is_ignored = exception_predicate("ignore", ignore)
    named = exception_types("record", record) or ()
    refusals = tuple(kind for kind in named if issubclass(kind, Rejected))
    if record is Exception and exception_types("ignore", ignore) == ():
        return lambda exc: isinstance(exc, Exception) and not isinstance(exc, Rejected)

    def is_failure(exc: BaseException) -> bool:
        if not isinstance(exc, Exception):
            return False
        if isinstance(exc, Rejected) and not isinstance(exc, refusals):
            return False
        return is_recorded(exc) and not is_ignored(exc)

    return is_failure


def _state_listeners(value: Any) -> Listeners:
    if callable(value) or isinstance(value, str | bytes) or not isinstance(value, Iterable):
        raise TypeError(f"on_state_change must be an iterable of callables (a list), got {value!r}")
    callbacks = list(value)
    for callback in callbacks:
        if not callable(callback):
            raise TypeError(f"on_state_change must hold callables, got {callback!r} in {value!r}")
    return Listeners(callbacks)


def _break_schedule(break_duration: Any, recovery_timeout: Any) -> Backoff:
    # The seed guide's name, for seconds or a schedule alike.
    name, break_duration = aliased(
        "break_duration", break_duration, "recovery_timeout", recovery_timeout
    )
    if break_duration is None:
        return Backoff("constant", _DEFAULT_BREAK)
    if isinstance(break_duration, Backoff):
        # A schedule's first break must be sound (nan or 0 would keep it open, or never).
        for value in (break_duration.base, break_duration.nominal(0)):
            if not _SECONDS[0] <= value <= _SECONDS[1]:
                raise ValueError(
                    f"{name} must start above 0, in [{_SECONDS[0]:g}, {_SECONDS[1]:g}] s, "
                    f"got a schedule starting at {value!r}: {break_duration!r}"
                )
        return break_duration
    return Backoff("constant", number_in(name, break_duration, *_SECONDS))


class _Reporter:
    """What a bound state tells its front-end (:class:`aioresilience.abc.BreakerReport`)."""

    __slots__ = ("_breaker",)

    def __init__(self, breaker: CircuitBreaker) -> None:
        self._breaker = breaker

    def transition(
        self, old: CircuitState, new: CircuitState, at: float, retry_after: float
    ) -> None:
        self._breaker._announce(old, new, at, retry_after)

    def store_failure(self, error: BaseException | None) -> None:
        breaker = self._breaker
        breaker._store_failures += 1
        breaker._emit(StoreFailed, policy="local", error=error)


@async_with_from_core
class CircuitBreaker(GuardForms, EventSource):
    """Stop calling a dependency that keeps failing; try it again after a break.

    Defaults: open after 5 consecutive failures, stay open 30 s, then admit 1 probe; its
    success closes the circuit, its failure re-opens it. Add ``failure_rate_threshold`` and/or
    ``slow_call_rate_threshold`` (fractions in (0, 1]) to trip on rates over a sliding window
    of the last ``window_size`` calls (``window="count"``) or seconds (``window="time"``),
    once it holds ``minimum_calls`` (for a count window, at most ``window_size``, as in
    resilience4j). ``break_duration`` (``recovery_timeout``, the seed guide's name, is the
    same option) may be a backoff schedule (:func:`aioresilience.exponential`) so repeated
    openings wait longer. ``store``: where the state lives (any
    :class:`aioresilience.abc.BreakerStore`, such as a ``RedisStore``; None: this process).
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        failure_threshold: int | None = 5,
        failure_rate_threshold: float | None = None,
        slow_call_rate_threshold: float | None = None,
        slow_call_duration: float | None = None,
        window: Literal["count", "time"] = "count",
        window_size: float = 100,
        minimum_calls: int = 10,
        break_duration: float | Backoff | None = None,
        half_open_max_calls: int = 1,
        half_open_max_duration: float = 60.0,
        record: ExceptionFilter = Exception,
        ignore: ExceptionFilter = (),
        failure_result: Callable[[Any], bool] | None = None,
        on_state_change: Iterable[Callable[[CircuitStateChange], Any]] = (),
        seed: int | None = None,
        store: BreakerStore | None = None,
        recovery_timeout: float | Backoff | None = None,
        clock: Clock | None = None,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {name!r}")
        if name == "":
            raise ValueError("name must not be empty (None gives 'CircuitBreaker')")
        self.name = name or "CircuitBreaker"
        # One clock for every reading of this breaker: open-until, slow calls, windows.
        self._clock = clock_option("clock", clock)
        if failure_threshold is not None:
            number_in("failure_threshold", failure_threshold, *_COUNT, integer=True)
        rate = _fraction("failure_rate_threshold", failure_rate_threshold)
        slow_rate = _fraction("slow_call_rate_threshold", slow_call_rate_threshold)
        if slow_rate is not None and slow_call_duration is None:
            raise ValueError("slow_call_rate_threshold needs slow_call_duration (seconds)")
        self._slow_after: float | None = (
            None
            if slow_call_duration is None
            else number_in("slow_call_duration", slow_call_duration, *_SECONDS)
        )
        if failure_threshold is None and rate is None and slow_rate is None:
            raise ValueError(
                "no trip rule: set failure_threshold, failure_rate_threshold or "
                "slow_call_rate_threshold"
            )
        minimum = number_in("minimum_calls", minimum_calls, *_COUNT, integer=True)
        size: float
        if window == "count":
            size = number_in("window_size", window_size, *_WINDOW_CALLS, integer=True)
            minimum = min(minimum, int(size))  # a window of N calls never holds more than N
        elif window == "time":
            size = number_in("window_size", window_size, *_SECONDS)
        else:
            raise ValueError(f"window must be 'count' or 'time', got {window!r}")
        schedule = _break_schedule(break_duration, recovery_timeout)
        self._is_failure = _failure_filter(record, ignore)
        self._failure_result = (
            None if failure_result is None else sync_callable("failure_result", failure_result)
        )
        self._listeners = _state_listeners(on_state_change)
        checked_seed(seed)
        self.options = BreakerOptions(
            name=self.name,
            clock=self._clock,
            failure_threshold=failure_threshold,
            failure_rate_threshold=rate,
            slow_call_rate_threshold=slow_rate,
            slow_call_duration=self._slow_after,
            window=window,
            window_size=size,
            minimum_calls=minimum,
            break_duration=schedule,
            half_open_max_calls=number_in(
                "half_open_max_calls", half_open_max_calls, *_COUNT, integer=True
            ),
            half_open_max_duration=number_in(
                "half_open_max_duration", half_open_max_duration, *_SECONDS
            ),
            seed=seed,
        )
        # The record of the entry running in this context, [live, the state's ticket, start]
        # (shared with tasks started inside, which read only the live flag): entries inside a
        # live one pass through (see the module doc). The record is also the entry's ticket:
        # one list per call, no tuple around it.
        self._inside: contextvars.ContextVar[list[Any]] = contextvars.ContextVar(
            f"aioresilience.breaker.{self.name}.inside", default=_OUTSIDE
        )
        # Blocks of `async with` that passed through: (the record passed, the token undoing it).
        self._passed: contextvars.ContextVar[tuple[list[Any], contextvars.Token[Any]] | None]
        self._passed = contextvars.ContextVar(f"aioresilience.tickets.breaker.{self.name}")
        self._successes = self._failures = self._ignored = self._rejected = self._opened = 0
        self._cancelled = self._store_failures = 0
        self._events = None
        self._state: BreakerState
        if store is None:
            self._state = BreakerMachine.from_options(
                self.options, self._announce, _random.Random(seed).random
            )
        else:
            bind = shared_store_binder(store, "bind_breaker", "this process alone")
            self._state = bind(self.options, _Reporter(self))
        # While the state is CLOSED and answers locally, admitting needs no clock read
        # (nothing is timed), and a success with nothing but a streak to keep needs none
        # either: the hot path reads no time at all.
        local = bool(getattr(self._state, "closed_is_local", False))
        self._untimed_admit = local and self._slow_after is None
        # ...and with no failure_result to judge, a success while CLOSED is one call into the
        # state (the streak's reset) and nothing else: the quick exit.
        self._quick = (
            self._untimed_admit and not self.options.windowed and self._failure_result is None
        )
        # The in-memory state's own answers on those two paths, read here rather than called:
        # a CLOSED BreakerMachine admits with its generation as the ticket, and a success of
        # that generation resets its streak (try_admit's and on_outcome's first lines; their
        # public attributes). Two Python calls less per call: 9,695 -> ~8,500 instructions
        # of the @breaker call (callgrind, 3.12), hyx's being 12,430. Only for exactly that
        # class: any other state (a store's, a subclass) is asked through its methods.
        machine = self._state if type(self._state) is BreakerMachine else None
        self._closed_machine = machine if self._untimed_admit else None
        self._quick_machine = machine if self._quick else None

    # -- state --------------------------------------------------------------------------------

    @property
    def clock(self) -> Clock:
        """The clock this breaker reads (``clock=``; by default the running loop's)."""
        return self._clock

    @property
    def state(self) -> CircuitState:
        """The current state; an OPEN breaker whose break has ended reads HALF_OPEN, a
        HALF_OPEN one whose probes outlived ``half_open_max_duration`` reads OPEN. (Shared:
        this process's latest view of the state in the store.)"""
        return self._state.read_state(self._clock.time())

    @property
    def retry_after(self) -> float:
        """Seconds after which the next call can be admitted (0: now; ``inf`` while
        isolated): the time left open, or while the probes run, a short hint that follows
        them (see the README)."""
        return self._state.retry_after(self._clock.time())

    def _announce(
        self, before: CircuitState, after: CircuitState, now: float, retry_after: float
    ) -> None:
        """Tell events and listeners of a state change (here, or seen in a shared store)."""
        if after is CircuitState.OPEN:
            self._opened += 1
        kind = _CHANGED[after]
        if self._listeners:  # on_state_change callbacks: they get the listeners' object
            self._listeners.emit(
                self._event(kind, at=now, old=before, new=after, retry_after=retry_after)
            )
        else:
            self._emit(kind, at=now, old=before, new=after, retry_after=retry_after)

    # -- the one core (GuardForms builds call, @decorator and async with from it) ------------

    def _enter(self) -> Any:
        """Admit a call (or raise :class:`CircuitBreakerOpenError`): the ticket, the entry's
        record ``[live, the state's ticket, start time]``, a coroutine of it when the state
        must ask a store, or ``[None, that entry's record, start]`` when an entry of this breaker
        already runs here (the call passes through, see :meth:`_passed_out`)."""
        inside = self._inside
        outer = inside.get()
        if outer[0]:
            # Passes through, uncounted while the live entry lasts; a call that outlives it
            # (in a task started inside it) counts on its own when it ends (see _passed_out).
            return [None, outer, 0.0 if self._slow_after is None else self._clock.time()]
        machine = self._closed_machine
        if machine is not None and machine.state is CLOSED:
            entry: list[Any] = [True, machine.generation, 0.0]  # try_admit, inlined
            inside.set(entry)
            return entry
        state = self._state
        if self._untimed_admit and state.state is CLOSED:
            # closed_is_local: the answer is a ticket, at once, whatever the time.
            entry = [True, state.try_admit(0.0), 0.0]
            inside.set(entry)
            return entry
        now = self._clock.time()
        admitted = state.try_admit(now)
        if admitted.__class__ is _Coroutine:
            return self._admitted(admitted)
        if admitted.__class__ is Refused:
            raise self._refusal(admitted)
        if isinstance(admitted, Awaitable):  # another awaitable (a Task, a Future): its answer
            return self._admitted(admitted)
        entry = [True, admitted, now]
        inside.set(entry)
        return entry

    async def _admitted(self, pending: Any) -> list[Any]:
        try:
            admitted = await pending
        except asyncio.CancelledError:
            # A Task or Future that had already produced its ticket when the caller was
            # cancelled (a coroutine's answer cannot be lost so): give the ticket back.
            if (
                asyncio.isfuture(pending)
                and pending.done()
                and not pending.cancelled()
                and pending.exception() is None
                and pending.result().__class__ is not Refused
                and self._state.on_release(pending.result())
            ):
                self._cancelled += 1
            raise
        if admitted.__class__ is Refused:
            raise self._refusal(admitted)
        entry = [True, admitted, self._clock.time()]
        self._inside.set(entry)  # awaited in the caller's own context: marks its entry
        return entry

    # -- async with: the entry's record is already in `_inside`, so the block keeps no ticket of
    # its own (GuardForms' ticket stack costs two ContextVar sets and a reset per block;
    # callgrind, a block around a no-op call: 13,968 -> 9,753 instructions on 3.11, 16,835 ->
    # 11,176 on 3.12). Only a block that passes through (inside a live entry) pushes the
    # record it passed, so that its exit leaves that entry alone.

    async def __aenter__(self) -> None:
        entry = self._enter()
        if entry.__class__ is _Coroutine:
            await entry
        elif entry[0] is None:
            tickets = self._passed
            tickets.set((entry, tickets.set(None)))

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        record = self._inside.get()
        passed = self._passed.get(None)
        # The latest block of this context passed through when one is pending and no entry
        # admitted after it is still live (an entry admitted after it has a record of its own).
        if passed is not None and (record is passed[0][1] or not record[0]):
            self._passed.reset(passed[1])
            self._passed_out(passed[0], exc, NO_RESULT)
            return
        if not record[0]:
            raise RuntimeError(
                f"{self.name}: __aexit__ without an __aenter__ in this context (an "
                "`async with` entered in another task, e.g. through wait_for or gather "
                "on 3.11?): enter and leave a guard in the same task"
            )
        self._exit(record, exc, NO_RESULT)

    def _refusal(self, refused: Refused) -> CircuitBreakerOpenError:
        self._rejected += 1
        retry_after = refused.retry_after
        self._emit(CircuitRejected, retry_after=retry_after)
        state = refused.state
        where = " (shared)" if refused.shared else ""
        return CircuitBreakerOpenError(
            f"{self.name}: circuit {state.value}{where}; retry after {retry_after:.3f}s",
            retry_after=retry_after,
            breaker=self.name,
            state=state,
        )

    def _exit(self, ticket: Any, exc: BaseException | None, result: Any) -> None:
        """Classify how an admitted call ended and tell the state: an exception matching
        ``record``/``ignore``, or a result ``failure_result`` condemns, is a failure; any
        other exception (cancellation, ignored, a refusal inside) only releases the call."""
        if ticket[0] is None:
            self._passed_out(ticket, exc, result)  # passed through: the outer entry counts
            return
        ticket[0] = False  # no longer live: tasks started inside count from now on
        admitted = ticket[1]
        if exc is None:
            machine = self._quick_machine
            if machine is not None and machine.state is CLOSED and admitted == machine.generation:
                machine.consecutive_failures = 0  # BreakerMachine.on_outcome, inlined
                self._successes += 1
                return
            state = self._state
            if self._quick and state.state is CLOSED:
                # The hot path: a success while closed only resets the streak.
                if state.on_outcome(admitted, 0.0, False, False):
                    self._successes += 1
                return
        failed = self._failed(exc, result)
        if failed is not None:
            self._record(admitted, ticket[2], failed)
        elif self._state.on_release(admitted):
            # Not an outcome of the dependency: counted apart, never as a failure.
            if isinstance(exc, asyncio.CancelledError):
                self._cancelled += 1
            else:
                self._ignored += 1

    def _failed(self, exc: BaseException | None, result: Any) -> bool | None:
        """Whether a call that ended so failed (True) or succeeded (False); None when it
        has no outcome of the dependency's (cancelled, ignored, a refusal inside)."""
        if exc is None:
            judge = self._failure_result
            return judge is not None and result is not NO_RESULT and bool(judge(result))
        return True if self._is_failure(exc) else None

    def _passed_out(self, ticket: list[Any], exc: BaseException | None, result: Any) -> None:
        """A call that passed through an entry running when it began ended. While that entry
        is live, it alone counts. Once it has ended (the call ran in a task that outlived
        it), the call's own outcome counts, as one admitted with that entry (its generation:
        an outcome that arrives after the state changed does not apply), and only while
        CLOSED: it never held a half-open probe slot."""
        outer = ticket[1]
        if outer[0] or self._state.state is not CLOSED:
            return
        failed = self._failed(exc, result)
        if failed is not None:  # (no outcome: nothing to give back either, no slot was held)
            self._record(outer[1], ticket[2], failed)

    def _record(self, admitted: Any, start: float, failed: bool) -> None:
        now = self._clock.time()
        slow_after = self._slow_after
        # (now >= start + slow_after, not now - start >= slow_after: a call that lasted
        # slow_after on this clock, ending at start + slow_after, may differ from it by an ulp)
        slow = slow_after is not None and now >= start + slow_after
        if self._state.on_outcome(admitted, now, failed, slow):
            if failed:
                self._failures += 1
            else:
                self._successes += 1

    # -- manual control -------------------------------------------------------------------------

    def isolate(self) -> None:
        """Force the circuit open until :meth:`reset` (calls refused, ``retry_after=inf``)."""
        self._state.manual("isolate", self._clock.time())

    def disable(self) -> None:
        """Force the circuit closed until :meth:`reset`: everything admitted, nothing counted
        (nor are calls admitted while disabled, whenever they end)."""
        self._state.manual("disable", self._clock.time())

    def reset(self) -> None:
        """Back to CLOSED with empty statistics windows."""
        self._state.manual("reset", self._clock.time())

    def trip(self) -> None:
        """Open the circuit now, for a normal break."""
        self._state.manual("trip", self._clock.time())

    def add_state_listener(self, callback: Callable[[CircuitStateChange], Any]) -> None:
        """Like ``on_state_change=``: hear every :class:`CircuitStateChange`."""
        self._listeners.add(callback)

    def remove_state_listener(self, callback: Callable[[CircuitStateChange], Any]) -> None:
        """Stop ``callback`` hearing state changes (one added by :meth:`add_state_listener`
        or ``on_state_change=``); ``ValueError`` if it never did."""
        self._listeners.remove(callback)

    # -- inspection -----------------------------------------------------------------------------

    def statistics(self) -> CircuitBreakerStatistics:
        state = self._state
        now = self._clock.time()
        calls, failures, slow = state.window_totals(now)
        return CircuitBreakerStatistics(
            name=self.name,
            state=self.state,
            window_calls=calls,
            window_failures=failures,
            window_slow_calls=slow,
            consecutive_failures=state.consecutive_failures,
            successes=self._successes,
            failures=self._failures,
            ignored=self._ignored,
            rejected=self._rejected,
            opened=self._opened,
            retry_after=self.retry_after,
            store_failures=self._store_failures,
            cancelled=self._cancelled,
        )

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"<CircuitBreaker {self.name!r} state={stats.state.value} "
            f"consecutive_failures={stats.consecutive_failures} "
            f"window={stats.window_failures}/{stats.window_calls} failed "
            f"retry_after={stats.retry_after:.3f}s>"
        )

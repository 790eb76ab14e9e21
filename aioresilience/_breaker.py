"""Circuit breaker: the async front-end over :class:`aioresilience._core.breaker.BreakerMachine`.

Three ways in, one accounting: ``await breaker.call(fn, *args)``, ``@breaker`` and
``async with breaker:``. A call is refused with :class:`CircuitBreakerOpenError` (carrying
``retry_after``) while the circuit is open; otherwise it runs and its outcome is recorded:

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
"""

from __future__ import annotations

import asyncio
import contextvars
import math
import random as _random
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, ParamSpec, Protocol, TypeVar

from ._core.backoff import Backoff
from ._core.breaker import BreakerMachine, CircuitState
from ._core.windows import CountWindow, TimeWindow
from ._support import clock as _clock
from ._support.awaitable import DONE
from ._support.errors import CircuitBreakerOpenError, Rejected
from ._support.events import CallRejected, EventSource, ResilienceEvent, Severity
from ._support.listeners import Listeners
from ._support.predicates import (
    ExceptionFilter,
    exception_predicate,
    require_async,
    sync_callable,
    wraps,
)
from ._support.validation import number_in, shared_store_binder

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

P = ParamSpec("P")
T = TypeVar("T")

CLOSED = CircuitState.CLOSED
DISABLED = CircuitState.DISABLED

# Bounds of the options. Durations: 1 µs (the shared store's resolution) to about 31 years
# (isolate() is the way to "forever"); counts up to 10**9; a count window keeps one int per
# call, so at most 10**6 of them; rates from 1e-6 (below that, any failure trips) to 1.
_SECONDS = (1e-6, 1e9)
_COUNT = (1, 10**9)
_WINDOW_CALLS = (1, 10**6)
_RATE = (1e-6, 1.0)
_DEFAULT_BREAK = 30.0
_OUTSIDE = [False]  # the entry flag of a context no entry ever ran in (never set to True)


class SharedBreaker(Protocol):
    """A breaker's state kept by a shared store (such as a ``RedisStore``)."""

    def current_state(self) -> CircuitState: ...

    def retry_after(self) -> float: ...

    async def admit(self) -> Any: ...

    def finish(self, ticket: Any, exc: BaseException | None, result: Any = None) -> None: ...

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T: ...

    def manual(self, action: str) -> None: ...


class SharedBreakerStore(Protocol):
    def _bind_breaker(self, breaker: CircuitBreaker) -> SharedBreaker: ...


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
    named = record if isinstance(record, tuple) else (record,) if isinstance(record, type) else ()
    refusals = tuple(kind for kind in named if issubclass(kind, Rejected))
    if record is Exception and ignore == ():
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
    if recovery_timeout is not None:
        if break_duration is not None:
            raise TypeError(
                "recovery_timeout is another name for break_duration: give one of them, got "
                f"break_duration={break_duration!r} and recovery_timeout={recovery_timeout!r}"
            )
        return Backoff("constant", number_in("recovery_timeout", recovery_timeout, *_SECONDS))
    if break_duration is None:
        return Backoff("constant", _DEFAULT_BREAK)
    if isinstance(break_duration, Backoff):
        # A schedule's first break must be sound (nan or 0 would keep it open, or never).
        for value in (break_duration.base, break_duration.nominal(0)):
            if not _SECONDS[0] <= value <= _SECONDS[1]:
                raise ValueError(
                    f"break_duration must start above 0, in [{_SECONDS[0]:g}, {_SECONDS[1]:g}] s, "
                    f"got a schedule starting at {value!r}: {break_duration!r}"
                )
        return break_duration
    return Backoff("constant", number_in("break_duration", break_duration, *_SECONDS))


class CircuitBreaker(EventSource):
    """Stop calling a dependency that keeps failing; try it again after a break.

    Defaults: open after 5 consecutive failures, stay open 30 s, then admit 1 probe; its
    success closes the circuit, its failure re-opens it. Add ``failure_rate_threshold`` and/or
    ``slow_call_rate_threshold`` (fractions in (0, 1]) to trip on rates over a sliding window
    of the last ``window_size`` calls (``window="count"``) or seconds (``window="time"``),
    once it holds ``minimum_calls`` (for a count window, at most ``window_size``, as in
    resilience4j). ``break_duration`` (``recovery_timeout``, the seed guide's name, is the
    same option) may be a backoff schedule (:func:`aioresilience.exponential`) so repeated
    openings wait longer.
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
        store: SharedBreakerStore | None = None,
        recovery_timeout: float | None = None,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {name!r}")
        if name == "":
            raise ValueError("name must not be empty (None gives 'CircuitBreaker')")
        self.name = name or "CircuitBreaker"
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
        windowed = rate is not None or slow_rate is not None
        rolling: CountWindow | TimeWindow | None
        if window == "count":
            size = number_in("window_size", window_size, *_WINDOW_CALLS, integer=True)
            rolling = CountWindow(size) if windowed else None
            minimum = min(minimum, size)  # a window of N calls never holds more than N
        elif window == "time":
            seconds = number_in("window_size", window_size, *_SECONDS)
            rolling = TimeWindow(seconds) if windowed else None
        else:
            raise ValueError(f"window must be 'count' or 'time', got {window!r}")
        schedule = _break_schedule(break_duration, recovery_timeout)
        self._is_failure = _failure_filter(record, ignore)
        self._failure_result = (
            None if failure_result is None else sync_callable("failure_result", failure_result)
        )
        self._listeners = _state_listeners(on_state_change)
        if seed is not None:
            number_in("seed", seed, -math.inf, math.inf, integer=True)
        self._machine = BreakerMachine(
            failure_threshold=failure_threshold,
            failure_rate_threshold=rate,
            slow_call_rate_threshold=slow_rate,
            minimum_calls=minimum,
            window=rolling,
            break_duration=schedule,
            probes=number_in("half_open_max_calls", half_open_max_calls, *_COUNT, integer=True),
            half_open_timeout=number_in(
                "half_open_max_duration", half_open_max_duration, *_SECONDS
            ),
            random=_random.Random(seed).random,
        )
        # Whether a success only resets the failure streak (no windows, no slow calls).
        self._streak_only = self._slow_after is None and rolling is None
        # The live flag (a one-item list, shared with tasks started inside) of the entry
        # running in this context: entries inside it pass through (see the module doc).
        self._inside: contextvars.ContextVar[list[bool]] = contextvars.ContextVar(
            f"aioresilience.breaker.{self.name}.inside", default=_OUTSIDE
        )
        # Each `async with` entry, per context, as a stack: (generation, start, flag, below),
        # generation None for an entry that passed through.
        self._entries: contextvars.ContextVar[tuple[Any, Any, Any, Any]] = contextvars.ContextVar(
            f"aioresilience.breaker.{self.name}"
        )
        self._successes = self._failures = self._ignored = self._rejected = self._opened = 0
        self._cancelled = self._store_failures = 0
        # Calls admitted in this generation were admitted while disabled: never counted.
        self._uncounted = -1
        self._events = None
        self._shared: SharedBreaker | None = None
        if store is not None:
            self._shared = shared_store_binder(store, "_bind_breaker", "this process alone")(self)

    # -- state --------------------------------------------------------------------------------

    def _now(self) -> float:
        """The time, with the half-open watchdog applied (and announced) as of it: read-outs
        then say what the next call meets."""
        now = _clock.now()
        machine = self._machine
        if machine.state is CircuitState.HALF_OPEN:
            machine.expire(now)
            self._transition(CircuitState.HALF_OPEN, now)
        return now

    @property
    def state(self) -> CircuitState:
        """The current state; an OPEN breaker whose break has ended reads HALF_OPEN, a
        HALF_OPEN one whose probes outlived ``half_open_max_duration`` reads OPEN. (Shared:
        this process's latest view of the state in the store.)"""
        if self._shared is not None:
            return self._shared.current_state()
        now = self._now()
        machine = self._machine
        if machine.state is CircuitState.OPEN and now >= machine.open_until:
            return CircuitState.HALF_OPEN
        return machine.state

    @property
    def retry_after(self) -> float:
        """Seconds after which the next call can be admitted (0: now; ``inf`` while
        isolated): the time left open, or while the probes run, a short hint that follows
        them (see the README)."""
        if self._shared is not None:
            return self._shared.retry_after()
        return self._machine.wait(self._now())

    def _transition(self, before: CircuitState, now: float) -> None:
        after = self._machine.state
        if after is not before:
            retry = max(0.0, self._machine.open_until - now) if after is CircuitState.OPEN else 0.0
            self._announce(before, after, now, retry)

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

    # -- admission and outcome ------------------------------------------------------------------

    def _admit(self) -> tuple[int, float]:
        """Admit a call or raise; ``(generation, start time)``."""
        machine = self._machine
        now = _clock.now() if (machine.state is not CLOSED or self._slow_after) else 0.0
        if machine.state is not CLOSED:
            before = machine.state
            retry_after = machine.admit(now)
            self._transition(before, now)
            if retry_after:
                self._rejected += 1
                self._emit(CircuitRejected, retry_after=retry_after)
                raise CircuitBreakerOpenError(
                    f"{self.name}: circuit {machine.state.value}; retry after {retry_after:.3f}s",
                    retry_after=retry_after,
                    breaker=self.name,
                    state=machine.state.value,
                )
        return machine.generation, now

    def _enter(self) -> tuple[int, float, list[bool]] | None:
        """The pipeline's way in (``direct()``): ``None`` when an entry of this breaker is
        already running here (the call passes through), else what :meth:`_leave` needs."""
        if self._inside.get()[0]:
            return None
        machine = self._machine
        if machine.state is CLOSED and self._streak_only:  # as in call(): no _admit call
            generation, start = machine.generation, 0.0
        else:
            generation, start = self._admit()
        flag = [True]
        self._inside.set(flag)
        return generation, start, flag

    def _leave(
        self,
        entered: tuple[int, float, list[bool]] | None,
        exc_type: Any,
        exc: BaseException | None,
        tb: Any,
    ) -> None:
        """The outcome of a call :meth:`_enter` let in, in the shape of ``__aexit__``."""
        if entered is None:
            return
        generation, start, flag = entered
        flag[0] = False
        if exc is None:
            self._on_plain_success(generation, start)
        else:
            self._on_exception(exc, generation, start)

    def _direct(self) -> tuple[Callable[[], Any], Callable[[Any, Any, Any, Any], None]]:
        """``(enter, leave)`` for a pipeline's compiled guards (``Strategy.direct``)."""
        if self._shared is None:
            return self._enter, self._leave
        return self._enter_shared_direct, self._leave_shared_direct

    def _enter_shared_direct(self) -> Any:
        if self._inside.get()[0]:
            return None
        return self._admit_shared(self._shared)  # type: ignore[arg-type]  # the coroutine

    async def _admit_shared(self, shared: SharedBreaker) -> tuple[Any, list[bool]]:
        ticket = await shared.admit()
        flag = [True]
        self._inside.set(flag)
        return ticket, flag

    def _leave_shared_direct(
        self, entered: tuple[Any, list[bool]] | None, exc_type: Any, exc: Any, tb: Any
    ) -> None:
        if entered is None:
            return
        ticket, flag = entered
        flag[0] = False
        self._shared.finish(ticket, exc)  # type: ignore[union-attr]

    def _counting(self, generation: int) -> bool:
        """Whether an outcome counts at all: not while disabled, nor for a call admitted
        while disabled ("nothing recorded")."""
        return generation != self._uncounted and self._machine.state is not DISABLED

    def _on_success(self, result: Any, generation: int, start: float) -> None:
        judge = self._failure_result
        if judge is not None and judge(result):
            self._on_failure(generation, start)
            return
        self._on_plain_success(generation, start)

    def _on_plain_success(self, generation: int, start: float) -> None:
        """A success with no result to judge (the end of an ``async with`` block, or any
        call when there is no ``failure_result``)."""
        machine = self._machine
        if generation == machine.generation and machine.state is CLOSED and self._streak_only:
            # The hot path: a success while closed changes nothing but the streak.
            self._successes += 1
            machine.consecutive_failures = 0
            return
        if not self._counting(generation):
            return
        self._successes += 1
        now = _clock.now()
        slow_after = self._slow_after
        slow = slow_after is not None and now - start >= slow_after
        before = machine.state
        machine.record(now, generation, False, slow)
        self._transition(before, now)

    def _on_exception(self, exc: BaseException, generation: int, start: float) -> None:
        if self._is_failure(exc):
            self._on_failure(generation, start)
            return
        # Cancellation, ignored exceptions, refusals inside: not an outcome of the dependency.
        if self._counting(generation):
            if isinstance(exc, asyncio.CancelledError):
                self._cancelled += 1
            else:
                self._ignored += 1
        self._machine.release(generation)

    def _on_failure(self, generation: int, start: float) -> None:
        if not self._counting(generation):
            return
        self._failures += 1
        machine = self._machine
        now = _clock.now()
        slow = self._slow_after is not None and now - start >= self._slow_after
        before = machine.state
        machine.record(now, generation, True, slow)
        self._transition(before, now)

    # -- ways in --------------------------------------------------------------------------------

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` through the breaker."""
        inside = self._inside
        if inside.get()[0]:
            return await fn(*args, **kwargs)  # inside an entry of this breaker: it counts
        if self._shared is not None:
            return await self._call_shared(self._shared, fn, *args, **kwargs)
        machine = self._machine
        # The closed path, inlined (as in the decorator): no call to _admit, no clock.
        if machine.state is CLOSED and self._streak_only:
            generation, start = machine.generation, 0.0
        else:
            generation, start = self._admit()
        flag = [True]
        inside.set(flag)
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            flag[0] = False
            self._on_exception(exc, generation, start)
            raise
        flag[0] = False
        if self._failure_result is not None:
            self._on_success(result, generation, start)
        elif self._streak_only and generation == machine.generation and machine.state is CLOSED:
            self._successes += 1  # _on_plain_success's hot path, inlined
            machine.consecutive_failures = 0
        else:
            self._on_plain_success(generation, start)
        return result

    async def _call_shared(
        self, shared: SharedBreaker, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any
    ) -> T:
        flag = [True]
        self._inside.set(flag)
        try:
            return await shared.call(fn, *args, **kwargs)
        finally:
            flag[0] = False

    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate a coroutine function so each call goes through the breaker."""
        require_async(self.name, fn)
        if self._shared is not None:
            call = self.call

            @wraps(fn)
            async def shared_guarded(*args: P.args, **kwargs: P.kwargs) -> T:
                return await call(fn, *args, **kwargs)

            return shared_guarded
        admit, on_exception = self._admit, self._on_exception
        on_success, on_plain_success = self._on_success, self._on_plain_success
        judge = self._failure_result
        inside, machine = self._inside, self._machine
        # The closed path with nothing but a streak to keep, inlined: no method call at all.
        fast = self._streak_only
        quick = fast and judge is None  # a success is then only the streak's reset
        breaker = self

        @wraps(fn)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            if inside.get()[0]:
                return await fn(*args, **kwargs)  # inside an entry of this breaker
            if fast and machine.state is CLOSED:
                generation, start = machine.generation, 0.0
            else:
                generation, start = admit()
            flag = [True]
            inside.set(flag)
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                flag[0] = False
                on_exception(exc, generation, start)
                raise
            flag[0] = False
            if quick and generation == machine.generation and machine.state is CLOSED:
                breaker._successes += 1
                machine.consecutive_failures = 0
            elif judge is not None:
                on_success(result, generation, start)
            else:
                on_plain_success(generation, start)
            return result

        return guarded

    def __aenter__(self) -> Awaitable[None]:
        entries = self._entries
        if self._inside.get()[0]:
            entries.set((None, 0.0, None, entries.get(None)))  # passes through
            return DONE
        if self._shared is not None:
            return self._enter_shared(self._shared)
        generation, start = self._admit()
        flag = [True]
        self._inside.set(flag)
        entries.set((generation, start, flag, entries.get(None)))
        return DONE

    async def _enter_shared(self, shared: SharedBreaker) -> None:
        ticket, flag = await self._admit_shared(shared)
        entries = self._entries
        entries.set((ticket, 0.0, flag, entries.get(None)))

    def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Awaitable[None]:
        entries = self._entries
        generation, start, flag, below = entries.get()
        entries.set(below)
        if generation is None:
            return DONE  # an entry inside another: the outer one counts
        flag[0] = False
        if self._shared is not None:
            self._shared.finish(generation, exc)  # the shared path keeps its ticket there
            return DONE
        if exc is None:
            self._on_plain_success(generation, start)
        else:
            self._on_exception(exc, generation, start)
        return DONE

    # -- manual control -------------------------------------------------------------------------

    def isolate(self) -> None:
        """Force the circuit open until :meth:`reset` (calls refused, ``retry_after=inf``)."""
        self._manual("isolate", self._machine.isolate)

    def disable(self) -> None:
        """Force the circuit closed until :meth:`reset`: everything admitted, nothing counted
        (nor are calls admitted while disabled, whenever they end)."""
        self._manual("disable", self._disable)

    def _disable(self) -> None:
        self._machine.disable()
        self._uncounted = self._machine.generation

    def reset(self) -> None:
        """Back to CLOSED with empty statistics windows."""
        self._manual("reset", self._machine.reset)

    def trip(self) -> None:
        """Open the circuit now, for a normal break."""
        self._manual("trip", lambda: self._machine.force_open(_clock.now()))

    def _manual(self, name: str, action: Callable[[], None]) -> None:
        if self._shared is not None:  # every process's breaker, through the store
            self._shared.manual(name)
            action()  # the local machine too: it decides while the store is unreachable
            return
        before = self._machine.state
        action()
        self._transition(before, _clock.now())

    def add_state_listener(self, callback: Callable[[CircuitStateChange], Any]) -> None:
        """Like ``on_state_change=``: hear every :class:`CircuitStateChange`."""
        self._listeners.add(callback)

    # -- inspection -----------------------------------------------------------------------------

    def statistics(self) -> CircuitBreakerStatistics:
        machine = self._machine
        now = self._now()
        calls, failures, slow = (
            machine.window.totals(now) if machine.window is not None else (0, 0, 0)
        )
        return CircuitBreakerStatistics(
            name=self.name,
            state=self.state,
            window_calls=calls,
            window_failures=failures,
            window_slow_calls=slow,
            consecutive_failures=machine.consecutive_failures,
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

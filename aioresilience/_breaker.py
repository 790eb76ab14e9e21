"""Circuit breaker: the async front-end over :class:`aioresilience._core.breaker.BreakerMachine`.

Three ways in, one accounting: ``await breaker.call(fn, *args)``, ``@breaker`` and
``async with breaker:``. A call is refused with :class:`CircuitBreakerOpenError` (carrying
``retry_after``) while the circuit is open; otherwise it runs and its outcome is recorded:

- an exception matching ``record`` and not ``ignore`` is a failure;
- a result for which ``failure_result(result)`` is true is a failure (the result is still
  returned to the caller);
- a call lasting at least ``slow_call_duration`` is slow (whatever its outcome);
- cancellation (and any BaseException that is not an Exception) is never recorded: it only
  gives back a half-open probe slot.
"""

from __future__ import annotations

import contextvars
import functools
import math
import random as _random
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from dataclasses import dataclass
from typing import Any, Literal, ParamSpec, Protocol, TypeVar

from . import _clock
from ._awaitable import DONE
from ._core.backoff import Backoff
from ._core.breaker import BreakerMachine, CircuitState
from ._core.windows import CountWindow, TimeWindow
from ._errors import CircuitBreakerOpenError
from ._events import EventSource, Severity
from ._listeners import Listeners
from ._predicates import ExceptionFilter, exception_predicate, optional_callable, require_async
from ._validation import finite_positive, positive_int, shared_store_binder

__all__ = [
    "CircuitBreaker",
    "CircuitBreakerStatistics",
    "CircuitState",
    "CircuitStateChange",
]

P = ParamSpec("P")
T = TypeVar("T")

CLOSED = CircuitState.CLOSED
_TRIPPED = (CircuitState.OPEN, CircuitState.ISOLATED)


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


@dataclass(frozen=True, slots=True)
class CircuitStateChange:
    """Handed to ``on_state_change`` listeners when the breaker changes state."""

    breaker: str
    old: CircuitState
    new: CircuitState
    at: float
    retry_after: float  # seconds until the breaker half-opens (0 unless OPEN)


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
    ignored: int
    rejected: int
    opened: int
    retry_after: float
    store_failures: int = 0  # shared breakers: operations Redis could not answer


def _fraction(name: str, value: Any) -> float | None:
    if value is None:
        return None
    number = finite_positive(name, value)
    if number > 1:
        raise ValueError(f"{name} must be in (0, 1], got {value!r}")
    return number


class CircuitBreaker(EventSource):
    """Stop calling a dependency that keeps failing; try it again after a break.

    Defaults: open after 5 consecutive failures, stay open 30 s, then admit 1 probe; its
    success closes the circuit, its failure re-opens it. Add ``failure_rate_threshold`` and/or
    ``slow_call_rate_threshold`` (fractions in (0, 1]) to trip on rates over a sliding window
    of the last ``window_size`` calls (``window="count"``) or seconds (``window="time"``),
    once it holds ``minimum_calls``. ``break_duration`` may be a backoff schedule
    (:func:`aioresilience.exponential`) so repeated openings wait longer.
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
        break_duration: float | Backoff = 30.0,
        half_open_max_calls: int = 1,
        half_open_max_duration: float = 60.0,
        record: ExceptionFilter = Exception,
        ignore: ExceptionFilter = (),
        failure_result: Callable[[Any], bool] | None = None,
        on_state_change: Iterable[Callable[[CircuitStateChange], Any]] = (),
        seed: int | None = None,
        store: SharedBreakerStore | None = None,
    ) -> None:
        if name is not None and not isinstance(name, str):
            raise TypeError(f"name must be a str or None, got {name!r}")
        self.name = name or "CircuitBreaker"
        if failure_threshold is not None:
            positive_int("failure_threshold", failure_threshold)
        rate = _fraction("failure_rate_threshold", failure_rate_threshold)
        slow_rate = _fraction("slow_call_rate_threshold", slow_call_rate_threshold)
        if slow_rate is not None and slow_call_duration is None:
            raise ValueError("slow_call_rate_threshold needs slow_call_duration (seconds)")
        self._slow_after = (
            None
            if slow_call_duration is None
            else finite_positive("slow_call_duration", slow_call_duration)
        )
        if failure_threshold is None and rate is None and slow_rate is None:
            raise ValueError(
                "no trip rule: set failure_threshold, failure_rate_threshold or "
                "slow_call_rate_threshold"
            )
        windowed = rate is not None or slow_rate is not None
        if window == "count":
            rolling: CountWindow | TimeWindow | None = (
                CountWindow(positive_int("window_size", window_size)) if windowed else None
            )
        elif window == "time":
            seconds = finite_positive("window_size", window_size)
            rolling = TimeWindow(seconds) if windowed else None
        else:
            raise ValueError(f"window must be 'count' or 'time', got {window!r}")
        if isinstance(break_duration, Backoff):
            if break_duration.base <= 0:
                raise ValueError(
                    f"break_duration must start above 0 s, got a schedule from {break_duration!r}"
                )
            schedule = break_duration
        else:
            schedule = Backoff("constant", finite_positive("break_duration", break_duration))
        self._record = exception_predicate("record", record)
        self._ignore = exception_predicate("ignore", ignore)
        self._failure_result = optional_callable("failure_result", failure_result)
        self._listeners = Listeners(on_state_change)
        self._machine = BreakerMachine(
            failure_threshold=failure_threshold,
            failure_rate_threshold=rate,
            slow_call_rate_threshold=slow_rate,
            minimum_calls=positive_int("minimum_calls", minimum_calls),
            window=rolling,
            break_duration=schedule,
            probes=positive_int("half_open_max_calls", half_open_max_calls),
            half_open_timeout=finite_positive("half_open_max_duration", half_open_max_duration),
            random=_random.Random(seed).random,
        )
        # Whether a success only resets the failure streak (no windows, no slow calls).
        self._streak_only = self._slow_after is None and rolling is None
        # The generation and start time of each `async with` entry, per task (a stack, so the
        # same breaker may be entered again inside itself).
        self._entries: contextvars.ContextVar[tuple[int, float, Any]] = contextvars.ContextVar(
            f"aioresilience.breaker.{self.name}"
        )
        self._successes = self._failures = self._ignored = self._rejected = self._opened = 0
        self._store_failures = 0
        self._events = None
        self._shared: SharedBreaker | None = None
        if store is not None:
            self._shared = shared_store_binder(store, "_bind_breaker", "this process alone")(self)

    # -- state --------------------------------------------------------------------------------

    @property
    def state(self) -> CircuitState:
        """The current state; an OPEN breaker whose break has ended reads HALF_OPEN. (Shared:
        this process's latest view of the state in the store.)"""
        if self._shared is not None:
            return self._shared.current_state()
        machine = self._machine
        if machine.state is CircuitState.OPEN and _clock.now() >= machine.open_until:
            return CircuitState.HALF_OPEN
        return machine.state

    @property
    def retry_after(self) -> float:
        """Seconds until an open breaker admits a probe (0 when it admits calls now)."""
        if self._shared is not None:
            return self._shared.retry_after()
        machine = self._machine
        if machine.state is not CircuitState.OPEN:
            return 0.0
        return max(0.0, machine.open_until - _clock.now())

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
        severity = Severity.WARNING if after in _TRIPPED else Severity.INFO
        self._emit(f"circuit_{after.value}", severity, old=before.value)
        if self._listeners:
            self._listeners.emit(CircuitStateChange(self.name, before, after, now, retry_after))

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
                self._emit("circuit_rejected", Severity.DEBUG, retry_after=retry_after)
                raise CircuitBreakerOpenError(
                    f"{self.name}: circuit {machine.state.value}; retry after {retry_after:.3f}s",
                    retry_after=retry_after,
                    breaker=self.name,
                    state=machine.state.value,
                )
        return machine.generation, now

    def _finish(
        self, admitted: tuple[int, float], exc_type: Any, exc: BaseException | None, tb: Any
    ) -> None:
        """The outcome of a call ``_admit`` let in (``admitted``: what it returned), in the
        shape of ``__aexit__``, for callers that enter without ``async with`` (pipelines)."""
        if exc is None:
            self._on_plain_success(*admitted)
        else:
            self._on_exception(exc, *admitted)

    def _on_success(self, result: Any, generation: int, start: float) -> None:
        judge = self._failure_result
        if judge is not None and judge(result):
            self._on_failure(generation, start)
            return
        self._on_plain_success(generation, start)

    def _on_plain_success(self, generation: int, start: float) -> None:
        """A success with no result to judge (the end of an ``async with`` block, or any
        call when there is no ``failure_result``)."""
        self._successes += 1
        machine = self._machine
        if machine.state is CLOSED and self._streak_only:
            # The hot path: a success while closed changes nothing but the streak.
            if generation == machine.generation:
                machine.consecutive_failures = 0
            return
        now = _clock.now()
        slow_after = self._slow_after
        slow = slow_after is not None and now - start >= slow_after
        before = machine.state
        machine.record(now, generation, False, slow)
        self._transition(before, now)

    def _on_exception(self, exc: BaseException, generation: int, start: float) -> None:
        if isinstance(exc, Exception) and self._record(exc) and not self._ignore(exc):
            self._on_failure(generation, start)
        else:
            # Cancellation, ignored exceptions: not an outcome of the dependency.
            self._ignored += 1
            self._machine.release(generation)

    def _on_failure(self, generation: int, start: float) -> None:
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
        if self._shared is not None:
            return await self._shared.call(fn, *args, **kwargs)
        generation, start = self._admit()
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            self._on_exception(exc, generation, start)
            raise
        if self._failure_result is None:
            self._on_plain_success(generation, start)
        else:
            self._on_success(result, generation, start)
        return result

    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate a coroutine function so each call goes through the breaker."""
        require_async(self.name, fn)
        shared = self._shared
        if shared is not None:

            @functools.wraps(fn)
            async def shared_guarded(*args: P.args, **kwargs: P.kwargs) -> T:
                return await shared.call(fn, *args, **kwargs)

            return shared_guarded
        admit, on_exception = self._admit, self._on_exception
        on_success, on_plain_success = self._on_success, self._on_plain_success
        judge = self._failure_result

        @functools.wraps(fn)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            generation, start = admit()
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                on_exception(exc, generation, start)
                raise
            if judge is None:  # no result to judge: straight to the bookkeeping
                on_plain_success(generation, start)
            else:
                on_success(result, generation, start)
            return result

        return guarded

    def __aenter__(self) -> Awaitable[None]:
        if self._shared is not None:
            return self._enter_shared(self._shared)
        generation, start = self._admit()
        entries = self._entries
        entries.set((generation, start, entries.get(None)))
        return DONE

    async def _enter_shared(self, shared: SharedBreaker) -> None:
        ticket = await shared.admit()
        entries = self._entries
        entries.set((0, 0.0, (ticket, entries.get(None))))

    def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Awaitable[None]:
        entries = self._entries
        generation, start, outer = entries.get()
        if self._shared is not None:
            ticket, outer = outer
            entries.set(outer)
            self._shared.finish(ticket, exc)
            return DONE
        entries.set(outer)
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
        """Force the circuit closed until :meth:`reset`: everything admitted, nothing counted."""
        self._manual("disable", self._machine.disable)

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
        now = _clock.now()
        calls, failures, slow = (
            machine.window.totals(now) if machine.window is not None else (0, 0, 0)
        )
        state = self.state
        retry_after = (
            max(0.0, machine.open_until - now)
            if state is CircuitState.OPEN
            else math.inf
            if state is CircuitState.ISOLATED
            else 0.0
        )
        if self._shared is not None:
            retry_after = self._shared.retry_after()
        return CircuitBreakerStatistics(
            name=self.name,
            state=state,
            window_calls=calls,
            window_failures=failures,
            window_slow_calls=slow,
            consecutive_failures=machine.consecutive_failures,
            successes=self._successes,
            failures=self._failures,
            ignored=self._ignored,
            rejected=self._rejected,
            opened=self._opened,
            retry_after=retry_after,
            store_failures=self._store_failures,
        )

    def __repr__(self) -> str:
        stats = self.statistics()
        return (
            f"<CircuitBreaker {self.name!r} state={stats.state.value} "
            f"consecutive_failures={stats.consecutive_failures} "
            f"window={stats.window_failures}/{stats.window_calls} failed "
            f"retry_after={stats.retry_after:.3f}s>"
        )

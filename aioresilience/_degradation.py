"""Graceful degradation: fallbacks, degradation tiers chosen by load, and load shedding.

- :class:`Fallback` / :func:`fallback`: on handled exceptions or results, answer with a value
  or a handler (a chain of them, tried in order). The handler sees the original outcome.
  Cancellation is never turned into a fallback.
- Load signals: :class:`InFlight` (calls in progress), :class:`LatencyEWMA` (smoothed call
  latency), :class:`EventLoopLag` (how late the loop runs timers), or any callable returning a
  number.
- :class:`GracefulDegradation`: tiers (full, basic, cached...) chosen by a signal's value.
- :class:`LoadShedder`: refuse calls by :class:`Priority` when a signal crosses its threshold.

A degradation or a shedder given an :class:`InFlight` or :class:`LatencyEWMA` feeds it with
the calls it runs (a call counts from after the decision to its end), so the signal needs no
``track()`` by hand. A ``track()`` by hand of the same signal in the same task, around or
inside such a call, is not counted a second time.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import inspect
import math
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Generic, ParamSpec, TypeVar

from ._support import clock as _clock
from ._support.errors import LoadShed
from ._support.events import EventSource, Severity
from ._support.listeners import Listeners, logger
from ._support.predicates import (
    ExceptionFilter,
    decorate,
    exception_predicate,
    is_async_callable,
    optional_callable,
    optional_sync_callable,
    require_async,
    sync_callable,
    wraps,
)
from ._support.validation import divisor, finite_positive, number, text

__all__ = [
    "EventLoopLag",
    "Fallback",
    "FallbackOutcome",
    "GracefulDegradation",
    "InFlight",
    "LatencyEWMA",
    "LoadShedder",
    "Priority",
    "Tier",
    "fallback",
]

P = ParamSpec("P")
T = TypeVar("T")


# -- fallback ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FallbackOutcome:
    """What a fallback handler receives: the original exception (or the result judged a
    failure) and the call's arguments."""

    exception: BaseException | None
    result: Any
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]


class Fallback(EventSource):
    """Answer a failed call with something else.

    ``handlers`` are tried in order: a handler is a plain value (returned as is) or a callable
    ``handler(outcome)`` returning a value or an awaitable. A handler that raises passes the
    turn to the next one; if all fail, the *original* exception is raised, with a note per
    failed handler. ``on`` selects the exceptions handled (default: any ``Exception``);
    ``on_result`` marks results that should be replaced too.
    """

    def __init__(
        self,
        *handlers: Any,
        on: ExceptionFilter = Exception,
        on_result: Callable[[Any], bool] | None = None,
        on_fallback: Callable[[FallbackOutcome], Any] | None = None,
        name: str | None = None,
    ) -> None:
        if not handlers:
            raise TypeError("Fallback needs at least one handler (a value or a callable)")
        self.name = text("name", name, optional=True) or "Fallback"
        self._handlers = handlers
        self._on = exception_predicate("on", on)
        self._on_result = optional_sync_callable("on_result", on_result)
        on_fallback = optional_callable("on_fallback", on_fallback)
        self._listeners = Listeners([on_fallback] if on_fallback is not None else [])
        self.used = 0
        self._events = None

    async def call(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> T:
        try:
            result = await fn(*args, **kwargs)
        except Exception as exc:
            if not self._on(exc):
                raise
            return await self._fall_back(FallbackOutcome(exc, None, args, kwargs))  # type: ignore[no-any-return]
        judge = self._on_result
        if judge is not None and judge(result):
            return await self._fall_back(FallbackOutcome(None, result, args, kwargs))  # type: ignore[no-any-return]
        return result

    async def _fall_back(self, outcome: FallbackOutcome) -> Any:
        self.used += 1
        self._emit(
            "fallback_used",
            Severity.WARNING,
            outcome="result" if outcome.exception is None else type(outcome.exception).__name__,
        )
        if self._listeners:
            self._listeners.emit(outcome)
        failures: list[Exception] = []
        for handler in self._handlers:
            if not callable(handler):
                return handler
            try:
                value = handler(outcome)
                if inspect.isawaitable(value):
                    value = await value
                return value
            except Exception as exc:
                failures.append(exc)
        original = outcome.exception
        if original is None:
            raise failures[-1]
        for failure in failures:
            original.add_note(
                f"{self.name}: fallback failed too: {type(failure).__name__}: {failure}"
            )
        raise original

    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        return decorate(self.name, self.call, fn)

    def __repr__(self) -> str:
        return f"<Fallback {self.name!r} handlers={len(self._handlers)} used={self.used}>"


def fallback(*handlers: Any, **options: Any) -> Fallback:
    """``@fallback(default_value)`` or ``@fallback(from_cache, on=(ConnectionError,))``."""
    return Fallback(*handlers, **options)


# -- load signals -----------------------------------------------------------------------------

# The signals being fed in the current task: (signal, task, fed by a guard rather than by hand).
_feeding: contextvars.ContextVar[tuple[tuple[object, object, bool], ...]] = contextvars.ContextVar(
    "aioresilience_feeding", default=()
)


def _current_task() -> object:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running loop: nothing is being fed
        return None


class _FedSignal:
    """A signal fed around each call: by hand (``with signal.track():``) or by the guard it
    was given to (:class:`LoadShedder`, :class:`GracefulDegradation`). A guard does not feed
    it for a task already tracking it, and a ``track()`` inside a call the guard feeds is not
    counted again: one call, one count. (Nested ``track()`` by hand count as before.)"""

    def _open(self) -> Any:
        raise NotImplementedError

    def _close(self, opened: Any) -> None:
        raise NotImplementedError

    def _begin(self, by_guard: bool) -> Any:
        """Start feeding for the current call: a token for :meth:`_end`, or None if this
        call is already being fed."""
        task = _current_task()
        feeding = _feeding.get()
        for signal, owner, guarded in feeding:
            if signal is self and owner is task and (guarded or by_guard):
                return None
        return _feeding.set((*feeding, (self, task, by_guard))), self._open()

    def _end(self, token: Any) -> None:
        if token is not None:
            _feeding.reset(token[0])
            self._close(token[1])

    @contextmanager
    def track(self) -> Iterator[None]:
        """Feed the signal around the block (one call)."""
        token = self._begin(by_guard=False)
        try:
            yield
        finally:
            self._end(token)


def _fed(signal: Any) -> _FedSignal | None:
    return signal if isinstance(signal, _FedSignal) else None


class InFlight(_FedSignal):
    """The number of calls in progress (optionally as a fraction of ``capacity``)."""

    def __init__(self, capacity: float | None = None) -> None:
        self.capacity = None if capacity is None else divisor("capacity", capacity)
        self.count = 0

    def _open(self) -> None:
        self.count += 1

    def _close(self, opened: None) -> None:
        self.count -= 1

    def __call__(self) -> float:
        return self.count if self.capacity is None else self.count / self.capacity


class LatencyEWMA(_FedSignal):
    """An exponentially weighted moving average of call latencies, in seconds:
    ``avg += alpha * (sample - avg)``."""

    def __init__(self, alpha: float = 0.2) -> None:
        value = finite_positive("alpha", alpha)
        if value > 1:
            raise ValueError(f"alpha must be in (0, 1], got {alpha!r}")
        self.alpha = value
        self.value = 0.0
        self._seeded = False

    def observe(self, seconds: float) -> None:
        if not self._seeded:
            self.value, self._seeded = seconds, True
        else:
            self.value += self.alpha * (seconds - self.value)

    def _open(self) -> float:
        return _clock.now()

    def _close(self, opened: float) -> None:
        self.observe(_clock.now() - opened)

    def __call__(self) -> float:
        return self.value


class EventLoopLag:
    """How late the event loop runs a timer (seconds, smoothed): a direct measure of an
    overloaded loop. A background task samples every ``interval`` seconds while started
    (``async with lag:``, or ``start()``/``await stop()``)."""

    def __init__(self, interval: float = 0.25, alpha: float = 0.3) -> None:
        # At least a millisecond: a sampler any faster would keep the loop busy by itself.
        self.interval = finite_positive("interval", interval, minimum=0.001)
        self._average = LatencyEWMA(alpha)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._sample())

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)

    async def __aenter__(self) -> EventLoopLag:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    async def _sample(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            due = loop.time() + self.interval
            await asyncio.sleep(self.interval)
            self._average.observe(max(0.0, loop.time() - due))

    def __call__(self) -> float:
        return self._average.value


def _read(signal: Callable[[], float]) -> float:
    value = signal()
    if not isinstance(value, int | float) or math.isnan(value):
        raise TypeError(f"a load signal must return a number, got {value!r} from {signal!r}")
    return float(value)


# -- degradation tiers ------------------------------------------------------------------------


@dataclass(frozen=True)
class Tier(Generic[T]):
    """One level of service: ``handler`` (a coroutine function) serves while the signal is at
    most ``up_to`` (a finite number; ``None``: without bound — the last tier)."""

    name: str
    handler: Callable[..., Awaitable[T]]
    up_to: float | None = None

    def __post_init__(self) -> None:
        text("name", self.name)
        if not is_async_callable(self.handler):
            raise TypeError(
                f"tier {self.name!r} handler must be a coroutine function, got {self.handler!r}"
            )
        if self.up_to is not None and math.isinf(number("up_to", self.up_to)):
            raise ValueError(f"up_to must be a finite number or None, got {self.up_to!r}")


class GracefulDegradation(Generic[T]):
    """Serve from the richest tier the current load allows.

    ``GracefulDegradation(signal, [Tier("full", full, up_to=0.7), Tier("basic", basic,
    up_to=0.9), Tier("cached", cached)])``: ``await degradation.call(*args)`` reads the signal
    and runs the first tier whose ``up_to`` is not exceeded. With ``fall_through=True`` (the
    default) a tier that raises hands the call to the next, cheaper tier.

    ``signal=None``: the load is the last value given to :meth:`update_system_load` (the seed
    guide's way; 0 until then).
    """

    def __init__(
        self,
        signal: Callable[[], float] | None,
        tiers: Sequence[Tier[T]],
        *,
        fall_through: bool = True,
        name: str | None = None,
    ) -> None:
        self.name = text("name", name, optional=True) or "GracefulDegradation"
        if signal is not None:
            sync_callable("signal", signal)  # read on every call, never awaited
        if not isinstance(tiers, Sequence) or isinstance(tiers, str):
            raise TypeError(f"tiers must be a list of Tier, got {tiers!r}")
        if not tiers:
            raise ValueError("tiers must not be empty")
        for tier in tiers:
            if not isinstance(tier, Tier):
                raise TypeError(f"tiers must be a list of Tier, got {tier!r} among them")
        if not isinstance(fall_through, bool):
            raise TypeError(f"fall_through must be a bool, got {fall_through!r}")
        bounds = [t.up_to for t in tiers]
        if any(b is None for b in bounds[:-1]):
            raise ValueError("only the last tier may have up_to=None")
        finite = [b for b in bounds if b is not None]
        if finite != sorted(finite) or len(set(finite)) != len(finite):
            raise ValueError(f"tiers must have increasing up_to bounds, got {bounds!r}")
        if bounds[-1] is not None:
            raise ValueError("the last tier must have up_to=None, so every load has a tier")
        self._load = 0.0
        self._pushed = signal is None
        self._signal: Callable[[], float] = signal if signal is not None else self._pushed_load
        self._fed = _fed(signal)
        self._tiers = tuple(tiers)
        self._fall_through = fall_through
        self.served: dict[str, int] = {t.name: 0 for t in tiers}

    def _pushed_load(self) -> float:
        return self._load

    def update_system_load(self, load: float) -> None:
        """The seed guide's push-style signal: the load the next calls are served at. Only
        for a degradation built with ``signal=None`` (else the signal is read)."""
        if not self._pushed:
            raise TypeError(f"{self.name} reads its signal; build it with signal=None to push")
        self._load = number("load", load)

    def tier(self) -> Tier[T]:
        """The tier the current load selects."""
        load = _read(self._signal)
        for tier in self._tiers:
            if tier.up_to is None or load <= tier.up_to:
                return tier
        return self._tiers[-1]  # pragma: no cover - the last tier is unbounded

    async def call(self, *args: Any, **kwargs: Any) -> T:
        chosen = self.tier()
        fed = self._fed
        if fed is None:
            return await self._serve(chosen, args, kwargs)
        token = fed._begin(by_guard=True)
        try:
            return await self._serve(chosen, args, kwargs)
        finally:
            fed._end(token)

    async def _serve(self, chosen: Tier[T], args: Any, kwargs: Any) -> T:
        index = self._tiers.index(chosen)
        last_error: Exception | None = None
        for tier in self._tiers[index:]:
            try:
                result = await tier.handler(*args, **kwargs)
            except Exception as exc:
                if not self._fall_through:
                    raise
                logger.info("%s: tier %r failed, degrading further: %r", self.name, tier.name, exc)
                last_error = exc
                continue
            self.served[tier.name] += 1
            return result
        assert last_error is not None
        raise last_error

    def __repr__(self) -> str:
        tiers = [t.name for t in self._tiers]
        return f"<GracefulDegradation {self.name!r} tiers={tiers} served={self.served}>"


# -- load shedding ----------------------------------------------------------------------------


class Priority(enum.IntEnum):
    """Shed order: SHEDDABLE first, then NORMAL; CRITICAL only past its own threshold."""

    CRITICAL = 0
    NORMAL = 1
    SHEDDABLE = 2


def check_priority(priority: Any) -> Priority:
    """``priority`` if it is a :class:`Priority`, else a TypeError (a str or an int would
    never be shed: nothing matches it)."""
    if priority.__class__ is not Priority:
        raise TypeError(
            "priority must be a Priority (Priority.CRITICAL, Priority.NORMAL or "
            f"Priority.SHEDDABLE), got {priority!r}"
        )
    return priority


class LoadShedder(EventSource):
    """Refuse work by priority while a load signal is high.

    ``thresholds`` maps each priority to the signal value above which it is shed (default:
    SHEDDABLE above 0.7, NORMAL above 0.9, CRITICAL never; ``inf`` or a missing priority:
    never). A shed call raises :class:`LoadShed` with ``retry_after``.
    """

    def __init__(
        self,
        signal: Callable[[], float],
        *,
        thresholds: Mapping[Priority, float] | None = None,
        retry_after: float = 1.0,
        name: str | None = None,
    ) -> None:
        self.name = text("name", name, optional=True) or "LoadShedder"
        sync_callable("signal", signal)  # read on every check, never awaited
        limits = (
            {Priority.SHEDDABLE: 0.7, Priority.NORMAL: 0.9} if thresholds is None else thresholds
        )
        if not isinstance(limits, Mapping):
            raise TypeError(f"thresholds must be a mapping of Priority to number, got {limits!r}")
        for priority, value in limits.items():
            if not isinstance(priority, Priority):
                raise TypeError(f"thresholds keys must be Priority members, got {priority!r}")
            number(f"threshold for {priority.name}", value)
        ordered = [limits[p] for p in sorted(limits, reverse=True)]  # SHEDDABLE first
        if ordered != sorted(ordered):
            raise ValueError(
                "thresholds must not shed a higher priority before a lower one, got "
                f"{ {p.name: v for p, v in limits.items()} }"
            )
        self._signal = signal
        self._fed = _fed(signal)
        # Every priority has an entry (None: never shed), so a lookup is the whole check.
        self._thresholds: dict[Priority, float | None] = {
            p: (None if p not in limits else float(limits[p])) for p in Priority
        }
        self.retry_after = finite_positive("retry_after", retry_after)
        self.shed: dict[Priority, int] = dict.fromkeys(Priority, 0)
        self._events = None

    def __repr__(self) -> str:
        shed = {p.name: n for p, n in self.shed.items()}
        return f"<LoadShedder {self.name!r} load={_read(self._signal):.3g} shed={shed}>"

    def check(self, priority: Priority = Priority.NORMAL) -> None:
        """Raise :class:`LoadShed` if ``priority`` is shed at the current load."""
        threshold = self._thresholds[check_priority(priority)]
        if threshold is None:
            return
        load = _read(self._signal)
        if load > threshold:
            self.shed[priority] += 1
            self._emit("shed", Severity.WARNING, priority=priority.name, load=load)
            raise LoadShed(
                f"{self.name}: shedding {priority.name} work (load {load:.3g} > {threshold:g})",
                retry_after=self.retry_after,
            )

    async def call(
        self,
        fn: Callable[P, Coroutine[Any, Any, T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Run ``fn`` at NORMAL priority (use :meth:`limit` for another)."""
        token = self._admit(Priority.NORMAL)
        try:
            return await fn(*args, **kwargs)
        finally:
            self._finish(token)

    def _admit(self, priority: Priority) -> Any:
        """Check ``priority``, then start feeding the signal for this call: a token for
        :meth:`_finish` (the pipeline's way in and out)."""
        self.check(priority)
        fed = self._fed
        return None if fed is None else fed._begin(by_guard=True)

    def _finish(self, token: Any, *exc_info: object) -> None:
        if token is not None:
            self._fed._end(token)  # type: ignore[union-attr]

    def limit(
        self, priority: Priority = Priority.NORMAL
    ) -> Callable[[Callable[P, Coroutine[Any, Any, T]]], Callable[P, Coroutine[Any, Any, T]]]:
        """Decorator: shed calls of this function at ``priority``."""
        check_priority(priority)

        def decorate(
            fn: Callable[P, Coroutine[Any, Any, T]],
        ) -> Callable[P, Coroutine[Any, Any, T]]:
            require_async(self.name, fn)

            @wraps(fn)
            async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
                token = self._admit(priority)
                try:
                    return await fn(*args, **kwargs)
                finally:
                    self._finish(token)

            return guarded

        return decorate

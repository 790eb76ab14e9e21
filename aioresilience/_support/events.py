"""Events: what the strategies report, and who hears it.

Every occurrence worth knowing has its own frozen, slotted arguments class (Polly's
``OnRetryArguments`` and ``TelemetryEventArguments`` are the model), all subclasses of
:class:`ResilienceEvent`: ``RetryScheduled``, ``RetryGaveUp``, ``CircuitOpened``,
``RateLimitExceeded``, ``TimedOut``, ``FallbackUsed``... Each class names its occurrence
(``name``) and its ``severity`` (class attributes: the kind decides them), and every instance
carries the common fields: the ``strategy`` (primitive name) it came from, when it happened
(``at``, on the clock of the primitive that emitted it: its ``clock=``, so an event of a
primitive on a ``ManualClock`` is stamped with that clock's time) and the ``pipeline`` it ran
in, if any. The
rest are the kind's own typed fields; :attr:`ResilienceEvent.details` is a read-only mapping
derived from them, for log records.

ONE object per occurrence: the user's callback for it (``before_sleep``, ``on_state_change``,
``on_fallback``...) receives the very object the listeners and the telemetry hear.

Listeners attach to a primitive (``primitive.add_listener(cb)``) or to a pipeline (they then
hear the events of every strategy that runs inside its calls, except those of another
pipeline run inside them: its context, and so its own listeners alone, hear them). How
callbacks are called (sync or async, failing) is one rule, in :mod:`.listeners`. With no
listener attached (or only ones whose ``accepts`` refuses the kind's severity), emitting costs
a context lookup and two truth tests: the event object is not even built.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

from .clock import LOOP_CLOCK, Clock
from .context import context_var
from .listeners import Listeners

__all__ = [
    "AttemptCompleted",
    "CallRejected",
    "EventSource",
    "PipelineExecuted",
    "ResilienceEvent",
    "Severity",
    "StoreFailed",
    "announce",
    "build",
    "emit",
]


class Severity(enum.IntEnum):
    DEBUG = 10
    INFO = 20
    WARNING = 30
    ERROR = 40


# The common fields: every event has them; ``details`` lists the others.
_COMMON = frozenset({"strategy", "at", "pipeline"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ResilienceEvent:
    """One occurrence. ``name`` (e.g. ``"retry_scheduled"``) and ``severity`` are the kind's
    (class attributes); ``strategy`` (the primitive's name), ``at`` (when, on the time the
    primitive reads) and ``pipeline`` (if it ran inside one) are every event's; subclasses add
    their typed fields."""

    name: ClassVar[str] = "event"
    severity: ClassVar[Severity] = Severity.INFO

    strategy: str
    at: float
    pipeline: str | None = None

    @property
    def details(self) -> Mapping[str, Any]:
        """The kind's own fields by name (read-only), for log records: read the typed fields
        in code."""
        return MappingProxyType(
            {
                f.name: getattr(self, f.name)
                for f in dataclasses.fields(self)
                if f.name not in _COMMON
            }
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class CallRejected(ResilienceEvent):
    """Base of the events of a guard refusing a call (rate limited, circuit open, bulkhead or
    queue full, shed, throttled...): ``isinstance(event, CallRejected)`` counts refusals."""

    severity: ClassVar[Severity] = Severity.WARNING


@dataclass(frozen=True, slots=True, kw_only=True)
class StoreFailed(ResilienceEvent):
    """A shared store (Redis) did not answer; ``policy`` says what the primitive did instead
    (``"allow"``, ``"deny"``, ``"local"``)."""

    name: ClassVar[str] = "store_failure"
    severity: ClassVar[Severity] = Severity.ERROR

    policy: str
    error: BaseException | None


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptCompleted(ResilienceEvent):
    """One attempt inside a pipeline ended (only while some listener hears DEBUG): its number,
    ``duration`` in seconds and ``outcome``: ``"success"``, ``"failure"`` or
    ``"cancelled"``."""

    name: ClassVar[str] = "attempt"
    severity: ClassVar[Severity] = Severity.DEBUG

    attempt: int
    duration: float
    outcome: str


@dataclass(frozen=True, slots=True, kw_only=True)
class PipelineExecuted(ResilienceEvent):
    """One pipeline call ended (only while some listener hears DEBUG): ``duration`` in
    seconds and ``outcome`` as for :class:`AttemptCompleted`."""

    name: ClassVar[str] = "pipeline_executed"
    severity: ClassVar[Severity] = Severity.DEBUG

    duration: float
    outcome: str


E = TypeVar("E", bound=ResilienceEvent)


def build(strategy: str, kind: type[E], clock: Clock = LOOP_CLOCK, /, **fields: Any) -> E:
    """The event of ``kind`` from ``strategy``, in the pipeline running this call (if any),
    at ``fields["at"]`` or now on ``clock`` (the emitting primitive's clock; the default, the
    running loop's, is for code that has none: a timeout, which runs on its loop's clock)."""
    if "at" not in fields:
        fields["at"] = clock.time()
    context = context_var.get()
    return kind(strategy=strategy, pipeline=None if context is None else context.pipeline, **fields)


def emit(
    own: Listeners | None,
    strategy: str,
    kind: type[ResilienceEvent],
    clock: Clock = LOOP_CLOCK,
    /,
    **fields: Any,
) -> None:
    """Deliver an event of ``kind`` (stamped on ``clock``, as :func:`build`) to ``own``
    listeners and to those of the pipeline running this call. Returns at once, building
    nothing (not even reading the clock), when nobody would act on it."""
    context = context_var.get()
    scoped = None if context is None else context.listeners
    if not own and not scoped:
        return
    severity = kind.severity
    own_wants = own is not None and bool(own) and own.wants(severity)
    scoped_wants = scoped is not None and bool(scoped) and scoped.wants(severity)
    if not own_wants and not scoped_wants:
        return  # e.g. only a logging listener whose level is disabled: build nothing
    event = build(strategy, kind, clock, **fields)
    if own_wants:
        own.emit(event)  # type: ignore[union-attr]  # own_wants: not None
    if scoped_wants:
        scoped.emit(event)  # type: ignore[union-attr]


def announce(
    own: Listeners | None,
    strategy: str,
    kind: type[E],
    clock: Clock = LOOP_CLOCK,
    /,
    **fields: Any,
) -> E:
    """Build the event (a user callback receives it whoever listens) and deliver it to the
    listeners that would act on it, as :func:`emit` does."""
    event = build(strategy, kind, clock, **fields)
    deliver(own, event)
    return event


def deliver(own: Listeners | None, event: ResilienceEvent) -> None:
    """Hand a built event to ``own`` listeners and the pipeline's, where they want it."""
    context = context_var.get()
    scoped = None if context is None else context.listeners
    severity = event.severity
    if own and own.wants(severity):
        own.emit(event)
    if scoped and scoped.wants(severity):
        scoped.emit(event)


class EventSource:
    """Mixin for primitives: ``add_listener``, ``_emit`` and ``_event`` (slotted classes
    add ``_events`` to their slots). Events are stamped on the primitive's ``_clock`` (its
    ``clock=``); a primitive without a clock of its own (a fallback, a load shedder) inherits
    the running loop's."""

    __slots__ = ()
    _events: Listeners | None
    _clock: Clock = LOOP_CLOCK  # a primitive with clock= sets its own (a slot or attribute)

    def add_listener(self, callback: Callable[[ResilienceEvent], Any]) -> None:
        """Hear every :class:`ResilienceEvent` this primitive emits."""
        if self._events is None:
            self._events = Listeners()  # type: ignore[misc]  # a slot of the subclass
        self._events.add(callback)

    def remove_listener(self, callback: Callable[[ResilienceEvent], Any]) -> None:
        """Stop ``callback`` hearing this primitive's events (``ValueError`` if it never
        did)."""
        if self._events is None:
            raise ValueError(f"listener {callback!r} was never added")
        self._events.remove(callback)

    def _emit(self, kind: type[ResilienceEvent], /, **fields: Any) -> None:
        emit(
            self._events,
            getattr(self, "name", type(self).__name__),
            kind,
            self._clock,
            **fields,
        )

    def _event(self, kind: type[E], /, **fields: Any) -> E:
        """Build the event (a user callback needs it), deliver it to whoever listens, return
        it."""
        return announce(
            self._events,
            getattr(self, "name", type(self).__name__),
            kind,
            self._clock,
            **fields,
        )

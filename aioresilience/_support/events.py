"""Events: what the strategies report, and who hears it.

Every primitive emits frozen :class:`ResilienceEvent` objects at the moments worth knowing
(retry scheduled, gave up, circuit opened/half-opened/closed, rate limited, bulkhead rejected,
queue dropped, timeout, fallback used, shed, chaos injected, hedge started, budget exhausted).
Listeners attach to a primitive (``primitive.add_listener(cb)``) or to a pipeline (they then
hear the events of every strategy that runs inside its calls). Listeners may be sync or async;
one that raises is logged and never breaks the call. With no listener attached, emitting costs
one truth test: the event object is not even built.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from .clock import LOOP_CLOCK
from .context import context_var
from .listeners import Listeners

__all__ = ["EventSource", "ResilienceEvent", "Severity", "emit"]


class Severity(enum.IntEnum):
    DEBUG = 10
    INFO = 20
    WARNING = 30
    ERROR = 40


@dataclass(frozen=True, slots=True)
class ResilienceEvent:
    """One occurrence: ``name`` (e.g. ``"retry_scheduled"``), the ``strategy`` (primitive name)
    and ``pipeline`` (if it ran inside one) it came from, its ``severity``, when it happened on
    the loop clock, and event-specific ``details``."""

    name: str
    strategy: str
    severity: Severity
    at: float
    pipeline: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)


def emit(
    own: Listeners | None, strategy: str, name: str, severity: Severity, **details: Any
) -> None:
    """Deliver an event to ``own`` listeners and to those of the pipeline running this call.
    Returns at once, building nothing, when nobody listens."""
    context = context_var.get()
    scoped = None if context is None else context.listeners
    if not own and not scoped:
        return
    if not (own and own.wants(severity)) and not (scoped and scoped.wants(severity)):
        return  # e.g. only a logging listener whose level is disabled: build nothing
    event = ResilienceEvent(
        name,
        strategy,
        severity,
        LOOP_CLOCK.time(),  # (a timestamp only: no deadline is computed from it)
        None if context is None else context.pipeline,
        details,
    )
    if own:
        own.emit(event)
    if scoped:
        scoped.emit(event)


class EventSource:
    """Mixin for primitives: ``add_listener`` and ``_emit`` (slotted classes add ``_events``
    to their slots)."""

    __slots__ = ()
    _events: Listeners | None

    def add_listener(self, callback: Callable[[ResilienceEvent], Any]) -> None:
        """Hear every :class:`ResilienceEvent` this primitive emits."""
        if self._events is None:
            self._events = Listeners()  # type: ignore[misc]  # a slot of the subclass
        self._events.add(callback)

    def _emit(self, name: str, severity: Severity, **details: Any) -> None:
        emit(self._events, getattr(self, "name", type(self).__name__), name, severity, **details)

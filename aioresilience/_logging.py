"""A listener that writes events to stdlib logging (logger ``aioresilience``).

No handler is configured by the library. The level is checked before anything is formatted,
so a listener attached to a logger whose level is disabled costs a method call per event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ._events import ResilienceEvent, Severity

__all__ = ["LoggingListener"]

_LEVELS = {
    Severity.DEBUG: logging.DEBUG,
    Severity.INFO: logging.INFO,
    Severity.WARNING: logging.WARNING,
    Severity.ERROR: logging.ERROR,
}


class LoggingListener:
    """``pipeline.add_listener(LoggingListener())``: one log record per event, with the event
    in structured ``extra`` fields (``resilience_event``, ``strategy``, ``pipeline``,
    ``details``)."""

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        levels: Mapping[Severity, int] | None = None,
    ) -> None:
        self.logger = logger or logging.getLogger("aioresilience")
        self.levels = {**_LEVELS, **(levels or {})}
        if self.levels == _LEVELS:
            # Severities *are* the logging levels then: ask the logger directly (this runs
            # once per pipeline call, so a listener whose level is disabled costs one check).
            self.accepts = self.logger.isEnabledFor  # type: ignore[method-assign,assignment]

    def accepts(self, severity: Severity) -> bool:
        """Whether an event of ``severity`` would be logged (checked before it is built)."""
        return self.logger.isEnabledFor(self.levels[severity])  # an int finds its Severity

    def __call__(self, event: ResilienceEvent) -> None:
        level = self.levels[event.severity]
        if not self.logger.isEnabledFor(level):
            return
        where = f" in pipeline {event.pipeline!r}" if event.pipeline else ""
        self.logger.log(
            level,
            "%s from %s%s %s",
            event.name,
            event.strategy,
            where,
            dict(event.details),
            extra={
                "resilience_event": event.name,
                "strategy": event.strategy,
                "pipeline": event.pipeline,
                "details": dict(event.details),
            },
        )

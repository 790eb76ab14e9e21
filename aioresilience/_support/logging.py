"""A listener that writes events to stdlib logging (logger ``aioresilience``).

No handler is configured by the library. The level is checked before anything is formatted,
so a listener attached to a logger whose level is disabled costs a method call per event.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from types import MappingProxyType

from .events import ResilienceEvent, Severity

__all__ = ["LoggingListener"]

_LEVELS = {
    Severity.DEBUG: logging.DEBUG,
    Severity.INFO: logging.INFO,
    Severity.WARNING: logging.WARNING,
    Severity.ERROR: logging.ERROR,
}


def _levels(levels: object) -> dict[Severity, int]:
    """``levels`` checked: Severity keys (or their int values), logging levels (ints)."""
    if levels is None:
        return {}
    if not isinstance(levels, Mapping):
        raise TypeError(f"levels must be a mapping of Severity to a logging level, got {levels!r}")
    checked: dict[Severity, int] = {}
    for key, level in levels.items():
        try:
            severity = Severity(key)
        except ValueError:
            raise ValueError(
                f"levels keys must be Severity members, got {key!r} in {levels!r}"
            ) from None
        if not isinstance(level, int) or isinstance(level, bool) or level < 0:
            raise TypeError(
                f"levels values must be logging levels (ints >= 0), got {level!r} in {levels!r}"
            )
        checked[severity] = level
    return checked


class LoggingListener:
    """``pipeline.add_listener(LoggingListener())``: one log record per event, with the event
    in structured ``extra`` fields (``resilience_event``, ``strategy``, ``pipeline``,
    ``details``: the event's own fields by name, and ``event``: the typed event object)."""

    def __init__(
        self,
        logger: logging.Logger | None = None,
        *,
        levels: Mapping[Severity, int] | None = None,
    ) -> None:
        if logger is None:
            logger = logging.getLogger("aioresilience")
        elif not isinstance(logger, logging.Logger | logging.LoggerAdapter):
            raise TypeError(
                f"logger must be a logging.Logger, a logging.LoggerAdapter or None, got {logger!r}"
            )
        self._logger = logger
        self._levels = {**_LEVELS, **_levels(levels)}
        if self._levels == _LEVELS and type(self).accepts is LoggingListener.accepts:
            # Severities *are* the logging levels then: ask the logger directly (this runs
            # once per pipeline call, so a listener whose level is disabled costs one check).
            # Safe because the logger and the levels cannot change afterwards.
            self.accepts = self._logger.isEnabledFor  # type: ignore[method-assign,assignment]

    @property
    def logger(self) -> logging.Logger:
        return self._logger

    @property
    def levels(self) -> Mapping[Severity, int]:
        """The logging level of each severity (read-only: make a new listener to change)."""
        return MappingProxyType(self._levels)

    def accepts(self, severity: Severity) -> bool:
        """Whether an event of ``severity`` would be logged (checked before it is built)."""
        return self._logger.isEnabledFor(self._levels[severity])  # an int finds its Severity

    def __call__(self, event: ResilienceEvent) -> None:
        level = self._levels[event.severity]
        if not self._logger.isEnabledFor(level):
            return
        where = f" in pipeline {event.pipeline!r}" if event.pipeline else ""
        details = dict(event.details)  # the kind's own fields, derived once, for the record
        extra = {
            "resilience_event": event.name,
            "strategy": event.strategy,
            "pipeline": event.pipeline,
            "details": details,
            "event": event,  # the typed event itself, for handlers that know the kinds
        }
        logger = self._logger
        msg: object = "%s from %s%s %s"
        kwargs: dict[str, object] = {"extra": extra}
        # A LoggerAdapter's process() *replaces* the call's extra with its own (unless it
        # merges, 3.13's merge_extra): through it, the record would lose every field above.
        # Apply each adapter's process() here, keeping both: its fields and the event's.
        while isinstance(logger, logging.LoggerAdapter):
            msg, kwargs = logger.process(msg, kwargs)
            given = kwargs.get("extra")
            if given is not extra:
                merged = dict(given) if isinstance(given, Mapping) else {}
                merged.update(extra)
                kwargs = {**kwargs, "extra": merged}
                extra = merged
            logger = logger.logger
        logger.log(level, msg, event.name, event.strategy, where, details, **kwargs)  # type: ignore[arg-type]

"""Calling user listeners: sync or async, and never allowed to break the protected call.

A listener that raises is logged (logger ``aioresilience``) and otherwise ignored; an async
listener runs as a task that is kept referenced until it finishes.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Callable, Iterable
from typing import Any

__all__ = ["Listeners", "logger"]

logger = logging.getLogger("aioresilience")


class Listeners:
    __slots__ = ("_accepts", "_callbacks", "_tasks")

    def __init__(self, callbacks: Iterable[Callable[[Any], Any]] = ()) -> None:
        self._callbacks: list[Callable[[Any], Any]] = []
        # Each listener's ``accepts`` method, looked up once (None: it hears everything).
        self._accepts: list[Callable[[int], bool] | None] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        for callback in callbacks:
            self.add(callback)

    def add(self, callback: Callable[[Any], Any]) -> None:
        """Add a listener; its ``accepts`` method, if any, is looked up now, once."""
        if not callable(callback):
            raise TypeError(f"listener must be callable, got {callback!r}")
        self._callbacks.append(callback)
        self._accepts.append(getattr(callback, "accepts", None))

    def __bool__(self) -> bool:
        return bool(self._callbacks)

    def wants(self, severity: int) -> bool:
        """Whether any listener would act on an event of ``severity``: a listener may say so
        with an ``accepts(severity)`` method (LoggingListener does); others hear everything."""
        for accepts in self._accepts:
            if accepts is None:
                return True
            try:
                if accepts(severity):
                    return True
            except Exception:
                logger.exception("listener's accepts(%r) failed: %r", severity, accepts)
                return True
        return False

    def emit(self, event: object) -> None:
        for callback in self._callbacks:
            try:
                result = callback(event)
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(self._guard(result, callback, event))
                    self._tasks.add(task)
                    task.add_done_callback(self._tasks.discard)
            except Exception:
                logger.exception("listener %r failed on %r", callback, event)

    @staticmethod
    async def _guard(result: Any, callback: Callable[[Any], Any], event: object) -> None:
        try:
            await result
        except Exception:
            logger.exception("listener %r failed on %r", callback, event)

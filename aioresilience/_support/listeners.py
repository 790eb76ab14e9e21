"""Calling user callbacks: sync or async, and never allowed to break the protected call.

One rule, applied by :func:`_invoke` for every callback the package calls with an event:

- the callback is called inline with the event; if it raises, the error is logged (logger
  ``aioresilience``) and ignored — the protected call's own outcome is never replaced;
- if it returns an awaitable (an ``async def`` callback), what happens next depends on what
  the callback *is*, never on the call site:

  * a **hook** the primitive waits for before it goes on (``before_sleep``, ``on_give_up`` of
    a retry: a hook may pace or log the retries, and a deadline is checked after it) is
    awaited: :func:`run_hook`. Only coroutines call hooks, so they can always wait;
  * a **notification** (``add_listener`` listeners, ``on_state_change``, ``on_fallback``) is
    fire-and-forget: :meth:`Listeners.emit` runs it as a task, kept referenced until it ends
    (asyncio holds tasks weakly), because notifications are sent from synchronous code too
    (a breaker changes state inside ``try_acquire``-like sync paths) and a slow listener must
    not hold the call up. Outside a running loop an async notification is dropped, logged.

Either way a failure of the awaitable is logged like a failure of the call; cancellation is
not a failure: a hook's cancellation propagates (the caller's task was cancelled).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

__all__ = ["Listeners", "logger", "run_hook"]

logger = logging.getLogger("aioresilience")

# Tasks of async notifications still running: the loop only holds tasks weakly.
_pending: set[asyncio.Task[None]] = set()


def _invoke(callback: Callable[[Any], Any], event: object) -> Awaitable[Any] | None:
    """Call ``callback(event)``: its awaitable if it returned one, else None (also when it
    raised: logged)."""
    try:
        result = callback(event)
    except Exception:
        logger.exception("callback %r failed on %r", callback, event)
        return None
    return result if inspect.isawaitable(result) else None


async def _settle(awaitable: Awaitable[Any], callback: Callable[[Any], Any], event: object) -> None:
    try:
        await awaitable
    except Exception:
        logger.exception("callback %r failed on %r", callback, event)


async def run_hook(callback: Callable[[Any], Any], event: object) -> None:
    """Call a hook and wait for it if it is async (see the module docstring)."""
    awaitable = _invoke(callback, event)
    if awaitable is not None:
        await _settle(awaitable, callback, event)


def _notify(callback: Callable[[Any], Any], event: object) -> None:
    """Call a notification; an async one runs on as a task (see the module docstring)."""
    awaitable = _invoke(callback, event)
    if awaitable is None:
        return
    settle = _settle(awaitable, callback, event)
    try:
        task = asyncio.get_running_loop().create_task(settle)
    except RuntimeError:  # no running loop: nobody could run it
        settle.close()
        if inspect.iscoroutine(awaitable):
            awaitable.close()
        logger.error("async callback %r called outside a running loop on %r", callback, event)
        return
    _pending.add(task)
    task.add_done_callback(_pending.discard)


class Listeners:
    """The notification callbacks of one primitive (or pipeline), with their ``accepts``."""

    __slots__ = ("_accepts", "_callbacks")

    def __init__(self, callbacks: Iterable[Callable[[Any], Any]] = ()) -> None:
        # Tuples, replaced on add: an emission walks the listeners as they were when it began
        # (a listener added while an event is delivered hears the next one, not this one: one
        # that adds another on every event would otherwise never let the emission end).
        self._callbacks: tuple[Callable[[Any], Any], ...] = ()
        # Each listener's ``accepts`` method, looked up once (None: it hears everything).
        self._accepts: tuple[Callable[[int], bool] | None, ...] = ()
        for callback in callbacks:
            self.add(callback)

    def add(self, callback: Callable[[Any], Any]) -> None:
        """Add a listener; its ``accepts`` method, if any, is looked up now, once."""
        if not callable(callback):
            raise TypeError(f"listener must be callable, got {callback!r}")
        self._callbacks = (*self._callbacks, callback)
        self._accepts = (*self._accepts, getattr(callback, "accepts", None))

    def remove(self, callback: Callable[[Any], Any]) -> None:
        """Remove ``callback`` (its first registration, compared with ``==`` as
        ``list.remove`` does, so a bound method given again is found); ``ValueError`` if it
        was never added. An emission under way still reaches it: it walks the tuple it began
        with."""
        for index, registered in enumerate(self._callbacks):
            if registered == callback:
                self._callbacks = self._callbacks[:index] + self._callbacks[index + 1 :]
                self._accepts = self._accepts[:index] + self._accepts[index + 1 :]
                return
        raise ValueError(f"listener {callback!r} was never added")

    @property
    def callbacks(self) -> tuple[Callable[[Any], Any], ...]:
        """The listeners, in the order added."""
        return self._callbacks

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
        """Notify every listener (the rule of the module docstring)."""
        for callback in self._callbacks:
            _notify(callback, event)

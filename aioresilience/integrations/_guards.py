"""How the web adapters enter and leave the guards of a rule around a request (shared by
``integrations.asgi`` and ``integrations.fastapi``; no framework imported)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .. import LoadShedder, Pipeline, Priority
from .._support.guard import GuardForms

__all__ = ["Core", "core_of"]

# (enter(priority) -> ticket | coroutine of one, exit(ticket, exc, result) -> None | awaitable)
Core = tuple[Callable[[Priority | None], Any], Callable[[Any, BaseException | None, Any], Any]]


def core_of(where: str, guard: object) -> Core:
    """How the middleware enters and leaves a guard, decided once at start-up."""
    if isinstance(guard, LoadShedder):
        # The request's priority (the rule's, or its header's) picks the threshold.
        def enter_shedder(priority: Priority | None) -> Any:
            return guard._admit(Priority.NORMAL if priority is None else priority)

        return enter_shedder, guard._exit
    if isinstance(guard, GuardForms):
        enter = guard._enter
        return (lambda priority: enter()), guard._exit
    if isinstance(guard, Pipeline):
        redo = [s.kind for s in guard.strategies if s.core() is None]
        if redo:
            # A request cannot be re-run: its body is read and its response may be sent.
            raise TypeError(
                f"{where}: pipeline {guard.name!r} has {', '.join(redo)}, which would re-run "
                "the request; use it inside the handler (pipeline.execute) instead"
            )
    if callable(getattr(guard, "__aenter__", None)) and callable(getattr(guard, "__aexit__", None)):
        manager: Any = guard

        def exit_manager(ticket: Any, exc: BaseException | None, result: Any) -> Any:
            return manager.__aexit__(None if exc is None else type(exc), exc, None)

        return (lambda priority: manager.__aenter__()), exit_manager
    raise TypeError(
        f"{where} must be a guard (Bulkhead, AdaptiveLimiter, LoadShedder, CircuitBreaker, a "
        f"pipeline without retries, or an async context manager), got {guard!r}"
    )

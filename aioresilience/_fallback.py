"""Fallback: on handled exceptions or results, answer with a value or a handler (a chain of
them, tried in order). The handler sees the original outcome (:class:`FallbackOutcome`).
Cancellation is never turned into a fallback."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import CoroutineType, MappingProxyType
from typing import Any, ClassVar, TypeVar

from ._support.context import ResilienceContext
from ._support.events import EventSource, ResilienceEvent, Severity
from ._support.guard import isawaitable
from ._support.listeners import Listeners
from ._support.predicates import (
    ExceptionFilter,
    exception_predicate,
    optional_callable,
    optional_sync_callable,
)
from ._support.rerun import ExecuteForms, RerunStrategy, arguments_of
from ._support.validation import text

__all__ = ["Fallback", "FallbackOutcome", "FallbackStrategy", "FallbackUsed", "fallback"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True, kw_only=True)
class FallbackUsed(ResilienceEvent):
    """A call is answered by the fallback: the original ``exception`` (or the ``result``
    judged a failure) and the call's arguments. The handlers, ``on_fallback`` and the
    listeners get this same object."""

    name: ClassVar[str] = "fallback_used"
    severity: ClassVar[Severity] = Severity.WARNING

    exception: BaseException | None
    result: Any
    args: tuple[Any, ...]
    kwargs: Mapping[str, Any]

    @property
    def details(self) -> Mapping[str, Any]:
        """For log records: the outcome's kind, never the call's arguments (they may hold
        anything a log should not)."""
        outcome = "result" if self.exception is None else type(self.exception).__name__
        return MappingProxyType({"outcome": outcome})


# The public name of issue 11 and before: the same class.
FallbackOutcome = FallbackUsed


class Fallback(ExecuteForms, EventSource):
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

    async def execute(
        self, call: Callable[[], Awaitable[T]], context: ResilienceContext | None
    ) -> T:
        """The core: ``await call()``, answered by the handlers when it fails. The handlers
        see the call's arguments (``call``, ``@fallback`` and the pipeline's ways in pass
        them as a ``functools.partial``; in a pipeline it is inside the inner chain's)."""
        try:
            result: Any = call()
            if result.__class__ is CoroutineType or isawaitable(result):
                result = await result
        except Exception as exc:
            if not self._on(exc):
                raise
            failure: Exception | None = exc
        else:
            judge = self._on_result
            if judge is None or not judge(result):
                return result  # type: ignore[no-any-return]
            failure = None
        # Handled outside the `except` block: a handler's exception is not chained to the
        # original, which is re-raised unchanged if every handler fails.
        args, kwargs = arguments_of(call if context is None else _user_call(call, context))
        return await self._fall_back(  # type: ignore[no-any-return]
            failure, result if failure is None else None, args, kwargs
        )

    async def _fall_back(
        self,
        exc: BaseException | None,
        result: Any,
        args: tuple[Any, ...],
        kwargs: Mapping[str, Any],
    ) -> Any:
        self.used += 1
        outcome = self._event(FallbackUsed, exception=exc, result=result, args=args, kwargs=kwargs)
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
        if original is None:  # a result judged a failure: the last handler's error, noted
            original, failures = failures[-1], failures[:-1]
        for failure in failures:
            original.add_note(
                f"{self.name}: fallback failed too: {type(failure).__name__}: {failure}"
            )
        raise original

    def __repr__(self) -> str:
        return f"<Fallback {self.name!r} handlers={len(self._handlers)} used={self.used}>"


def _user_call(call: Callable[[], Any], context: ResilienceContext) -> Callable[[], Any]:
    """In a pipeline, the user's call inside ``call``: the fold hands a re-running strategy
    ``partial(inner, call, context)``, one per layer run inside it, around the pipeline's
    ``partial(fn, *args, **kwargs)``."""
    while (
        call.__class__ is functools.partial
        and len(call.args) == 2
        and call.args[1] is context
        and not call.keywords
    ):
        call = call.args[0]
    return call


def fallback(*handlers: Any, **options: Any) -> Fallback:
    """``@fallback(default_value)`` or ``@fallback(from_cache, on=(ConnectionError,))``."""
    return Fallback(*handlers, **options)


class FallbackStrategy(RerunStrategy):
    """A fallback in a pipeline: ``execute(call, context)`` is the fallback's core."""

    def __init__(self, fallback: Fallback) -> None:
        super().__init__("fallback", fallback)
        self.fallback = fallback

"""A guard's one core, and every way in built from it once (DESIGN: the running seam).

A *guard* acts around a call without re-running it (timeout, rate limit, circuit breaker,
bulkhead, adaptive limit, load shedding). Its core is two methods:

- ``_enter()`` admits the call (or raises the guard's refusal) and returns a *ticket*: whatever
  ``_exit`` needs to account for the call. When admission has to wait it returns a native
  coroutine instead, whose result is the ticket. So a guard that admits at once costs a plain
  method call, with no coroutine, future or task (DESIGN rule 7).
- ``_exit(ticket, exc, result)`` accounts for the outcome: ``exc`` the exception the call ended
  with (None on success), ``result`` its value, or :data:`NO_RESULT` where it is not known (the
  end of an ``async with`` block). It may raise to replace the exception (a timeout turns its
  own cancellation into ``TimeoutExceeded``); it never suppresses one.

:class:`GuardForms` builds ``async with``, ``@guard`` and ``await guard.call(fn, ...)`` from
that core; a pipeline's fold (``_support/compose.py``) calls the same two methods. A subclass
changes a guard's behaviour in every form at once by overriding the core. :func:`guarded` is
the one decorator over a core, also for a guard entered per key of the call's arguments
(``@limiter.limit(key=...)``).
"""

from __future__ import annotations

import contextvars
import inspect
import types
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from .predicates import not_callable, require_async, wraps

__all__ = [
    "NO_RESULT",
    "GuardForms",
    "async_with_from_core",
    "async_with_is_core",
    "guarded",
    "ticket_stack",
]

P = ParamSpec("P")
T = TypeVar("T")

_Coroutine = types.CoroutineType
# Whether a call's value is to be awaited: ``call(fn)`` and ``execute(fn)`` take a plain
# function too (the seed guide's ``breaker.call(func)``), whose value is the call's result.
# A coroutine is told by its class first: that test is all the common case costs.
isawaitable = inspect.isawaitable


class _NoResult:
    __slots__ = ()

    def __repr__(self) -> str:
        return "NO_RESULT"


NO_RESULT: Any = _NoResult()
"""``_exit``'s ``result`` when the block's value is unknown (``async with``)."""


class GuardForms:
    """``async with``, decorator and ``call`` from ``_enter``/``_exit``.

    A guard whose ticket carries nothing between entry and exit (``_enter`` returns None on
    every path) keeps nothing for ``async with``; one whose ticket matters sets
    ``_keeps_ticket = True`` and the ticket is kept per task (a ContextVar stack), so one
    instance can be entered by many tasks at once, and nested.
    """

    __slots__ = ()
    name: str
    _keeps_ticket = False
    _tickets: contextvars.ContextVar[list[Any]]  # [ticket, the token that undoes the entry]

    def _enter(self) -> Any:
        raise NotImplementedError

    def _exit(self, ticket: Any, exc: BaseException | None, result: Any) -> None:
        raise NotImplementedError

    async def __aenter__(self) -> None:
        ticket = self._enter()
        if ticket.__class__ is _Coroutine:
            ticket = await ticket
        if self._keeps_ticket:
            # [ticket, the token that undoes this entry]: leaving resets the variable, so a
            # long-lived task's context keeps nothing once the block is left (a set to None
            # would keep the variable there for good, one per guard ever entered). A list, so
            # that the token the one set returns goes into the value it set (a tuple took a
            # second set, the costliest step of an entry).
            entry = [ticket, None]
            entry[1] = self._tickets.set(entry)

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> None:
        ticket = None
        if self._keeps_ticket:
            tickets = self._tickets
            entry = tickets.get(None)
            if entry is None:
                raise RuntimeError(
                    f"{self.name}: __aexit__ without an __aenter__ in this context (an "
                    "`async with` entered in another task, e.g. through wait_for or gather "
                    "on 3.11?): enter and leave a guard in the same task"
                )
            ticket, token = entry
            tickets.reset(token)
        self._exit(ticket, exc, NO_RESULT)

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` through this guard (a plain function's value is
        the result as it is)."""
        if not callable(fn):
            raise not_callable(self.name, fn)
        ticket = self._enter()
        if ticket.__class__ is _Coroutine:
            ticket = await ticket
        try:
            result: Any = fn(*args, **kwargs)
            if result.__class__ is _Coroutine or isawaitable(result):
                result = await result
        except BaseException as exc:
            self._exit(ticket, exc, NO_RESULT)
            raise
        self._exit(ticket, None, result)
        return result  # type: ignore[no-any-return]

    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate a coroutine function: each call goes through this guard (signature kept)."""
        return guarded(self.name, fn, self._enter, self._exit)


Enter = Callable[..., Any]
Exit = Callable[[Any, BaseException | None, Any], None]

# The (__aenter__, __aexit__) pairs that are built from the class's own core: a pipeline (and
# every other user of GuardStrategy.core()) runs the core of such a guard, and an override's
# own `async with` only when a subclass changes it.
_CORE_BUILT: set[tuple[Any, Any]] = {(GuardForms.__aenter__, GuardForms.__aexit__)}

C = TypeVar("C", bound=type)


def async_with_from_core(cls: C) -> C:
    """Class decorator: ``cls`` defines its own ``__aenter__``/``__aexit__`` over its core
    (a faster way to keep the ticket, say), which behave exactly as GuardForms' own."""
    _CORE_BUILT.add((cls.__dict__["__aenter__"], cls.__dict__["__aexit__"]))
    return cls


def async_with_is_core(cls: type) -> bool:
    """Whether the ``async with`` of ``cls`` is built from its core (not changed by it)."""
    return (getattr(cls, "__aenter__", None), getattr(cls, "__aexit__", None)) in _CORE_BUILT


def guarded(
    name: str,
    fn: Callable[P, Coroutine[Any, Any, T]],
    enter: Enter,
    exit: Exit,
    key: Callable[..., Any] | None = None,
) -> Callable[P, Coroutine[Any, Any, T]]:
    """``fn`` decorated with a guard's core: each call runs between ``enter()`` (with a
    ``key``: ``enter(key(*args, **kwargs))``, the guard entered for that call's key) and
    ``exit(ticket, exc, result)``, in the wrapper's own coroutine: awaiting ``call`` there
    would add a second coroutine frame per call (measured: 120-130 ns of a breaker's ~900 on
    3.12). The signature of ``fn`` is kept; ``name`` names the guard if ``fn`` is not async."""
    require_async(name, fn)
    if key is None:

        @wraps(fn)
        async def guarded(*args: P.args, **kwargs: P.kwargs) -> T:
            ticket = enter()
            if ticket.__class__ is _Coroutine:
                ticket = await ticket
            try:
                result = await fn(*args, **kwargs)
            except BaseException as exc:
                exit(ticket, exc, NO_RESULT)
                raise
            exit(ticket, None, result)
            return result

        return guarded

    # The same lines but the first: two bodies rather than a per-call test or an enter() that
    # forwards the arguments (a frame more for every unkeyed guard).
    @wraps(fn)
    async def guarded_per_key(*args: P.args, **kwargs: P.kwargs) -> T:
        ticket = enter(key(*args, **kwargs))
        if ticket.__class__ is _Coroutine:
            ticket = await ticket
        try:
            result = await fn(*args, **kwargs)
        except BaseException as exc:
            exit(ticket, exc, NO_RESULT)
            raise
        exit(ticket, None, result)
        return result

    return guarded_per_key


def ticket_stack(name: str) -> contextvars.ContextVar[list[Any]]:
    """The per-task ticket stack of a guard with ``_keeps_ticket = True`` (one per instance,
    made in its ``__init__``)."""
    return contextvars.ContextVar(f"aioresilience.tickets.{name}")

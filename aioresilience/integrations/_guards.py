"""The one way the web adapters (``integrations.asgi``, ``.fastapi``, ``.aiohttp``) run a
request inside the guards of its rules; no framework imported.

:class:`GuardRunner` is built once per :class:`~aioresilience.integrations._http.Protection`
(at start-up: a guard that is not one fails there, naming it) and turns each guard into its
``(enter, exit)`` core through the public seams only (:data:`aioresilience.abc.Core`):

- a :class:`~aioresilience.abc.GuardForms` guard (bulkhead, adaptive limiter, breaker,
  timeout...) through ``GuardStrategy(kind, guard).core()``, the core a pipeline runs;
- a :class:`~aioresilience.LoadShedder` the same way at the request's priority
  (``shedder.limit(priority)``: the rule's, or its header's; NORMAL when none), one core per
  priority made up front;
- a :class:`~aioresilience.Pipeline` without re-running strategies through its ``async with``
  (a request cannot be re-run: its body is read, its response may be on the wire);
- any other async context manager through ``__aenter__``/``__aexit__``.

A request runs (:meth:`GuardRunner.run`, or :func:`enter` and :func:`leave` where the
framework splits the two, a FastAPI dependency) inside
its *plan* (:meth:`GuardRunner.plan`, cached per guards and priority): the guards entered in
order, the downstream awaited, the guards left innermost first with the outcome, as nested
``async with`` blocks would (an exit that raises replaces the exception, chained to it).
Every way out leaves every guard entered, a cancellation (the client went away) included:
no permit leaks. A client that goes away while its request runs is a cancellation on the
server's side, whatever the framework raises for it (Starlette's ``ClientDisconnect``,
aiohttp's ``ConnectionResetError``): ``run(..., gone=)`` and :func:`leave_gone` leave the
guards as after a cancellation (a breaker counts no failure), and the framework's exception
goes on.

Load signals: a shedder's :class:`~aioresilience.InFlight` or
:class:`~aioresilience.LatencyEWMA` (``shedder.feeds``) is fed with every request a rule of
the protection selects, so a cheap route's requests count toward the load that sheds an
expensive one and nobody tracks calls by hand. A request that goes through that shedder is
counted by the shedder itself, from after its check (its own load does not shed it); the
plan feeds the signal (``signal.core()``, outermost) only for the others, so no request is
counted twice.
"""

from __future__ import annotations

import asyncio
import types
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .. import LoadShedder, Pipeline, Priority
from .._support.compose import leave_all
from ..abc import NO_RESULT, Core, GuardForms, GuardStrategy

__all__ = ["Entered", "GuardRunner", "Plan", "enter", "leave", "leave_gone", "leave_raised"]

Plan = tuple[Core, ...]  # the cores of one request's guards, outermost first
Entered = list[tuple[Any, Any]]  # (exit, ticket) of each guard entered, outermost first

_Coroutine = types.CoroutineType
_NO_PLAN: Plan = ()


def _in_rules(rule: int, guard: int) -> str:
    return f"rules[{rule}].guards[{guard}]"  # what a construction error names


class GuardRunner:
    """How the requests of one protection enter and leave its rules' guards (module doc).

    ``active`` is False when no rule has a guard nor a shedder's signal to feed: the
    adapter then skips the runner altogether."""

    __slots__ = ("_cores", "_feeds", "_plans", "active")

    def __init__(self, rules: Sequence[Any], where: Callable[[int, int], str] = _in_rules) -> None:
        # id(guard) -> its core per priority (one entry, None, for a guard without one).
        self._cores: dict[int, dict[Priority | None, Core]] = {}
        # The signals of the shedders of every rule, each once, with their feeding core.
        self._feeds: list[tuple[object, Core]] = []
        for i, rule in enumerate(rules):
            for j, guard in enumerate(rule.guards):
                if id(guard) in self._cores:
                    continue
                self._cores[id(guard)] = _cores_of(where(i, j), guard)
                signal = guard.feeds if isinstance(guard, LoadShedder) else None
                if signal is not None and all(signal is not s for s, _ in self._feeds):
                    self._feeds.append((signal, signal.core()))
        self._plans: dict[tuple[tuple[object, ...], Priority | None], Plan] = {}
        self.active = bool(self._cores or self._feeds)

    def plan(self, guards: tuple[object, ...], priority: Priority | None) -> Plan:
        """The cores a request runs in: the signals to feed for it, then ``guards`` (those
        of its rules, outermost first) at ``priority``. Made once per (guards, priority)."""
        found = self._plans.get((guards, priority))
        if found is not None:
            return found
        cores: list[Core] = []
        # A shedder among the request's guards feeds its own signal (from after its check).
        own = [g.feeds for g in guards if isinstance(g, LoadShedder)]
        cores += [core for signal, core in self._feeds if all(signal is not o for o in own)]
        for guard in guards:
            by_priority = self._cores[id(guard)]
            core = by_priority.get(priority)
            cores.append(by_priority[None] if core is None else core)
        found = self._plans[(guards, priority)] = tuple(cores) or _NO_PLAN
        return found

    @staticmethod
    async def run(
        plan: Plan,
        downstream: Callable[..., Any],
        /,
        *args: Any,
        answer: Callable[[BaseException], bool] | None = None,
        gone: Callable[[BaseException], bool] | None = None,
    ) -> Any:
        """``await downstream(*args)`` inside ``plan``; its result (an ASGI app's None: none)
        is what the exits see, and is returned. ``answer(exc)``: whether an exception is the
        handler's answer rather than its failure (a framework's HTTP exception below 500: a
        404, a redirect), left as a success and raised on. ``gone(exc)``: whether it is the
        client going away (:func:`leave_gone`)."""
        entered = enter(plan)
        if not isinstance(entered, list):  # a guard waits to admit, or refused
            entered = await entered
        try:
            result = await downstream(*args)
        except BaseException as error:  # cancellation included: every guard is left
            failure = error
        else:
            pending = leave(entered, None, result)
            if pending is not None:
                await pending
            return result
        # Raised here, outside the handler: the exception keeps its own cause and context.
        raise await leave_raised(entered, failure, answer, gone)


# Entering and leaving are plain functions while every guard answers at once (the common
# case: no coroutine of ours but the request's own), and hand over to a coroutine from the
# first guard that has to be awaited (a bulkhead's queue, a pipeline's ``async with``).


def enter(plan: Plan) -> Entered | Awaitable[Entered]:
    """Enter the cores of ``plan`` in order: what :func:`leave` needs, or an awaitable of it.
    A refusal (or a cancellation while a guard waits) leaves those entered already and is
    raised (by the awaitable, when some were entered)."""
    return _enter_from(plan, 0, [])


def _enter_from(plan: Plan, start: int, entered: Entered) -> Entered | Awaitable[Entered]:
    for index in range(start, len(plan)):
        enter, exit = plan[index]
        try:
            ticket = enter()
        except BaseException as error:
            if not entered:
                raise
            return _failed(entered, error)
        if ticket.__class__ is _Coroutine:
            return _awaiting_entry(plan, index, ticket, entered)
        entered.append((exit, ticket))
    return entered


async def _awaiting_entry(plan: Plan, index: int, pending: Any, entered: Entered) -> Entered:
    try:
        entered.append((plan[index][1], await pending))
    except BaseException as error:
        failure = error
    else:
        rest = _enter_from(plan, index + 1, entered)
        return rest if isinstance(rest, list) else await rest
    raise await _left(entered, failure)


def leave(entered: Entered, exc: BaseException | None, result: Any = NO_RESULT) -> Any:
    """Leave the guards entered, innermost first, with the outcome: ``exc`` (None on
    success) and ``result`` (``NO_RESULT`` when unknown). None when done at once; else an
    awaitable to await, which raises the exception the request ends with (always when
    ``exc`` is given: ``exc``, or one an exit replaced it with)."""
    if exc is not None:
        return _failed(entered, exc)
    if result is None:
        result = NO_RESULT  # an ASGI app returns nothing: its response went out by send
    return _leave_from(entered, len(entered) - 1, result)


def _leave_from(entered: Entered, index: int, result: Any) -> Awaitable[None] | None:
    while index >= 0:
        exit, ticket = entered[index]
        if exit is not None:
            try:
                pending = exit(ticket, None, result)
            except BaseException as error:  # the guards outside see it, as with async with
                return _failed(entered[:index], error)
            if pending is not None:
                return _awaiting_exit(entered, index, pending, result)
        index -= 1
    return None


async def _awaiting_exit(entered: Entered, index: int, pending: Any, result: Any) -> None:
    try:
        await pending
    except BaseException as error:
        failure = error
    else:
        rest = _leave_from(entered, index - 1, result)
        if rest is not None:
            await rest
        return
    raise await _left(entered[:index], failure)


async def leave_raised(
    entered: Entered,
    error: BaseException,
    answer: Callable[[BaseException], bool] | None = None,
    gone: Callable[[BaseException], bool] | None = None,
) -> BaseException:
    """Leave ``entered`` after the downstream raised ``error``: as after a response when
    ``answer(error)`` (a 404, a redirect), as after a cancellation when ``gone(error)`` (the
    client went away: :func:`leave_gone`), else with the failure (a cancellation included).
    Returns the exception to raise on: ``error``, or one an exit replaced it with."""
    if answer is not None and answer(error):
        pending = leave(entered, None)
        if pending is not None:
            await pending
        return error
    if gone is not None and gone(error):
        return await leave_gone(entered, error)
    return await _left(entered, error)


async def leave_gone(entered: Entered, error: BaseException) -> BaseException:
    """Leave ``entered`` after the client went away while its request ran (``error``: what
    the framework raised for it) as after a cancellation, which it is on the server's side:
    a breaker counts no failure, a bulkhead hands the slot on, an adaptive limiter learns
    nothing. Returns the exception to raise on: ``error``, or one an exit replaced it with."""
    cancelled = asyncio.CancelledError(f"the client went away ({type(error).__name__})")
    final = await leave_all(entered, cancelled)
    return error if final is cancelled else final  # type: ignore[return-value]


async def _failed(entered: Entered, error: BaseException) -> Any:
    raise await _left(entered, error)


async def _left(entered: Entered, error: BaseException) -> BaseException:
    """The exception to raise after leaving ``entered`` with ``error`` (the shared fold's
    ``leave_all``: an exit that raises replaces it, chained)."""
    final = await leave_all(entered, error)
    assert final is not None  # exits never suppress
    return final


def _cores_of(where: str, guard: object) -> dict[Priority | None, Core]:
    """A guard's core(s), decided once at start-up: per priority for a shedder."""
    if isinstance(guard, LoadShedder):
        at: dict[Priority | None, Core] = {
            p: GuardStrategy("load_shed", guard.limit(p)).core() for p in Priority
        }
        at[None] = at[Priority.NORMAL]  # no priority given: NORMAL
        return at
    if isinstance(guard, GuardForms):
        return {None: GuardStrategy(type(guard).__name__.lower(), guard).core()}
    if isinstance(guard, Pipeline):
        redo = [s.kind for s in guard.strategies if s.core() is None]
        if redo:
            raise TypeError(
                f"{where}: pipeline {guard.name!r} has {', '.join(redo)}, which would re-run "
                "the request; use it inside the handler (pipeline.execute) instead"
            )
    if callable(getattr(guard, "__aenter__", None)) and callable(getattr(guard, "__aexit__", None)):
        return {None: _async_with(guard)}
    raise TypeError(
        f"{where} must be a guard (Bulkhead, AdaptiveLimiter, LoadShedder, CircuitBreaker, a "
        f"pipeline without retries, or an async context manager), got {guard!r}"
    )


def _async_with(manager: Any) -> Core:
    """The core of an async context manager: its ``__aenter__``/``__aexit__`` awaitables
    (a true return of ``__aexit__`` is ignored: a guard never suppresses)."""

    def enter() -> Any:
        return manager.__aenter__()

    def exit(ticket: Any, exc: BaseException | None, result: Any) -> Any:
        if exc is None:
            return manager.__aexit__(None, None, None)
        return manager.__aexit__(type(exc), exc, exc.__traceback__)

    return enter, exit

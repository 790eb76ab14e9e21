"""A re-running strategy's one core, and every way in built from it once (DESIGN: the running
seam).

A *re-running* strategy (retry, hedging, fallback) may run the call more than once, or
replace its outcome, so it cannot be split into an enter/exit pair like a guard. Its core is
one coroutine method::

    async def execute(self, call: Callable[[], Awaitable[T]],
                      context: ResilienceContext | None) -> T

``call`` starts one attempt (a zero-argument callable returning an awaitable); ``context`` is
the pipeline call's :class:`ResilienceContext`, or None outside a pipeline (the core then keeps
its own count of attempts and makes no context: nothing outside a pipeline reads one).

:class:`ExecuteForms` builds ``await x.call(fn, *args, **kwargs)`` and ``@x`` from that core;
:class:`RerunStrategy` is its pipeline form (``execute(call, context)`` *is* the core, bound
once, so a pipeline adds no frame of its own). A subclass changes a strategy in every form at
once by overriding ``execute``.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from types import CoroutineType
from typing import Any, ParamSpec, TypeVar

from .clock import LOOP_CLOCK, Clock
from .compose import Strategy
from .context import ResilienceContext
from .events import AttemptCompleted, PipelineExecuted, emit
from .guard import isawaitable
from .predicates import not_callable, require_async, wraps

__all__ = ["ExecuteForms", "RerunStrategy", "arguments_of", "timed"]

P = ParamSpec("P")
T = TypeVar("T")

_partial = functools.partial


class ExecuteForms:
    """``call`` and the decorator from the core ``execute(call, context)``.

    The forms run ``self._core``: ``execute`` as the class that defines it last wrote it. A
    subclass that must give the *name* ``execute`` another meaning (the seed guide's
    ``ExponentialBackoff.execute(fn, *args)``) sets ``_core`` to the real core explicitly.
    """

    __slots__ = ()
    name: str
    _core: Callable[..., Coroutine[Any, Any, Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "_core" not in cls.__dict__ and "execute" in cls.__dict__:
            cls._core = cls.__dict__["execute"]

    async def execute(
        self, call: Callable[[], Awaitable[T]], context: ResilienceContext | None
    ) -> T:
        raise NotImplementedError

    async def call(self, fn: Callable[P, Awaitable[T]], /, *args: P.args, **kwargs: P.kwargs) -> T:
        """Run ``await fn(*args, **kwargs)`` through this strategy."""
        if not (args or kwargs or callable(fn)):  # with arguments, partial refuses it
            raise not_callable(self.name, fn)
        return await self._core(_partial(fn, *args, **kwargs) if args or kwargs else fn, None)  # type: ignore[no-any-return]

    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate a coroutine function: each call runs through this strategy (signature
        kept)."""
        require_async(self.name, fn)
        core = self._core

        @wraps(fn)
        async def run(*args: P.args, **kwargs: P.kwargs) -> T:
            return await core(_partial(fn, *args, **kwargs) if args or kwargs else fn, None)  # type: ignore[no-any-return]

        return run


ExecuteForms._core = ExecuteForms.execute


def arguments_of(call: Callable[[], Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The positional and keyword arguments ``call`` was made with, when it is a
    ``functools.partial`` (what :meth:`ExecuteForms.call` and the decorator make for a call
    with arguments), else none."""
    if call.__class__ is _partial:
        return call.args, call.keywords
    return (), {}


class RerunStrategy(Strategy):
    """The pipeline form of an :class:`ExecuteForms` primitive: its core, bound once.
    ``kind`` names it in ``describe()`` and in the builder's order advice."""

    def __init__(self, kind: str, primitive: ExecuteForms) -> None:
        super().__init__(primitive.name)
        self.kind = kind
        self.primitive = primitive
        # An instance attribute: the pipeline's fold calls the core itself, no frame between.
        self.execute = primitive._core  # type: ignore[method-assign]


async def timed(
    work: Callable[[], Any],
    strategy: str,
    kind: type[AttemptCompleted | PipelineExecuted],
    *,
    clock: Clock = LOOP_CLOCK,
    **fields: Any,
) -> T:
    """Run ``work()`` (awaiting its value if awaitable) and emit a ``kind`` event (DEBUG)
    with its duration on ``clock`` (the timing strategy's or pipeline's) and outcome:
    success, failure, or cancelled (a listener of the pipeline wants them:
    ``context._timed``)."""
    started, outcome = clock.time(), "cancelled"
    try:
        result: Any = work()
        if result.__class__ is CoroutineType or isawaitable(result):
            result = await result
        outcome = "success"
        return result  # type: ignore[no-any-return]
    except Exception:
        outcome = "failure"
        raise
    finally:
        ended = clock.time()
        emit(
            None,
            strategy,
            kind,
            clock,
            at=ended,
            duration=ended - started,
            outcome=outcome,
            **fields,
        )

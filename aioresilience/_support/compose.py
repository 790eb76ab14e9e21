"""How a pipeline's strategies become one runner: the :class:`Strategy` base and composition.

A runner is ``runner(call, context) -> awaitable``: it runs ``call()`` (the user's call, a
zero-argument callable returning an awaitable) through some strategies. Strategies that re-run
what they wrap (retry, hedging, fallback) wrap the runner inside them (:meth:`Strategy.wrap`).
Consecutive guards (strategies that only act around a block: timeouts, limiters, breakers,
bulkheads) become one block:

- guards offering :meth:`Strategy.direct` are compiled into one coroutine function of
  straight-line code (nested ``try`` blocks), which behaves as nested ``async with`` blocks
  would but creates no guard object, awaitable or loop per call;
- any other guard makes its block run the ``async with`` protocol of :meth:`Strategy.guard`.

The outermost runner also makes the call's context current (``current_context()``).
"""

from __future__ import annotations

import linecache
import types
from collections.abc import Awaitable, Callable
from typing import Any

from .context import ResilienceContext, context_var

__all__ = ["Call", "Direct", "Runner", "Strategy", "compose", "exit_all"]

Call = Callable[[], Awaitable[Any]]
Runner = Callable[[Call, ResilienceContext], Awaitable[Any]]
Leave = Callable[[Any, Any, BaseException | None, Any], Any]
Direct = tuple[Callable[[], Any], Leave | None]


class Strategy:
    """One layer of a pipeline. Subclasses implement :meth:`execute` (around a call) and,
    for a guard (``is_guard = True``: runs around a block without re-running it),
    :meth:`guard` and optionally :meth:`direct`."""

    kind = "strategy"
    is_guard = False  # True: guard() gives an async context manager (no re-running)

    def __init__(self, name: str) -> None:
        self.name = name

    async def execute(self, call: Call, context: ResilienceContext) -> Any:
        raise NotImplementedError

    def wrap(self, inner: Runner) -> Runner:
        """The runner of this strategy around ``inner`` (the strategies inside it)."""
        execute = self.execute

        async def run(call: Call, context: ResilienceContext) -> Any:
            return await execute(lambda: inner(call, context), context)

        return run

    def guard(self, context: ResilienceContext) -> Any:
        """An async context manager guarding one call (for a guard), else None."""
        return None

    def direct(self) -> Direct | None:
        """For a guard that can run without ``async with``: ``(enter, leave)``, which the
        pipeline calls in straight-line code. ``enter()`` returns a token, or a native
        coroutine (when admission has to wait) whose result is the token; ``leave(token,
        exc_type, exc, tb)`` is the way out (it may raise to replace the exception, never
        suppresses it; None: nothing to do). The call's context is current while they run.
        None (the default): the pipeline uses :meth:`guard`.
        """
        return None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name}

    def __repr__(self) -> str:
        return f"{self.kind}({self.name!r})"


def compose(strategies: tuple[Strategy, ...]) -> Runner:
    """One runner for the whole chain (outermost first), which also makes the call's
    context current."""
    run: Runner | None = None  # None: the call itself
    block: list[Strategy] = []
    for strategy in reversed(strategies):
        if strategy.is_guard:
            block.insert(0, strategy)
            continue
        if block:
            run, block = _block(block, run, sets_context=False), []
        run = strategy.wrap(_call if run is None else run)
    if block:
        return _block(block, run, sets_context=True)
    return _in_context(_call if run is None else run)


def _call(call: Call, context: ResilienceContext) -> Awaitable[Any]:
    return call()


def _in_context(runner: Runner) -> Runner:
    async def run(call: Call, context: ResilienceContext) -> Any:
        token = context_var.set(context)
        try:
            return await runner(call, context)
        finally:
            context_var.reset(token)

    return run


def _block(guards: list[Strategy], inner: Runner | None, sets_context: bool) -> Runner:
    directs = [guard.direct() for guard in guards]
    if None not in directs:
        return _direct_block(directs, inner, sets_context)  # type: ignore[arg-type]
    run = _guard_block(guards, _call if inner is None else inner)
    return _in_context(run) if sets_context else run


# Python allows 20 statically nested blocks; a compiled block nests one `try` per guard with a
# way out, plus one for the context: longer runs of guards are split into chained blocks.
_MAX_NESTED = 16


def _direct_block(directs: list[Direct], inner: Runner | None, sets_context: bool) -> Runner:
    """Guards entered and left directly, as one coroutine function (see the module doc):
    ``enter`` in order, then the call (or ``inner``), then ``leave`` in reverse, each way out
    in the ``except`` of its own ``try`` so that an exception raised there replaces the one
    being handled and is chained to it, exactly as with nested ``async with`` blocks."""
    with_leave = [index for index, (_, leave) in enumerate(directs) if leave is not None]
    if len(with_leave) > _MAX_NESTED:
        split = with_leave[_MAX_NESTED]
        inner = _direct_block(directs[split:], inner, sets_context=False)
        directs = directs[:split]
    layout = (tuple(leave is not None for _, leave in directs), inner is None, sets_context)
    names: dict[str, Any] = {
        "__name__": __name__,
        "Coroutine": types.CoroutineType,
        "context_var": context_var,
        "inner": inner,
    }
    for index, (enter, leave) in enumerate(directs):
        names[f"enter{index}"], names[f"leave{index}"] = enter, leave
    exec(_compiled(layout), names)
    run: Runner = names["run_guards"]
    return run


_code_by_layout: dict[tuple[tuple[bool, ...], bool, bool], types.CodeType] = {}


def _compiled(layout: tuple[tuple[bool, ...], bool, bool]) -> types.CodeType:
    """The code of a compiled block, once per layout (which guards have a way out, whether
    the call is inner, whether the block sets the context): pipelines built per request do
    not compile again."""
    code = _code_by_layout.get(layout)
    if code is not None:
        return code
    leaves, calls_directly, sets_context = layout
    lines = ["async def run_guards(call, context):"]
    pad = "    "
    if sets_context:
        lines += [pad + "context_token = context_var.set(context)", pad + "try:"]
        pad += "    "
    for index, has_leave in enumerate(leaves):
        lines += [
            f"{pad}token{index} = enter{index}()",
            f"{pad}if token{index}.__class__ is Coroutine:",
            f"{pad}    token{index} = await token{index}",
        ]
        if has_leave:
            lines.append(f"{pad}try:")
            pad += "    "
    lines.append(pad + "result = await " + ("call()" if calls_directly else "inner(call, context)"))
    for index in reversed(range(len(leaves))):
        if leaves[index]:
            pad = pad[:-4]
            lines += [
                f"{pad}except BaseException as exc:",
                f"{pad}    leave{index}(token{index}, type(exc), exc, exc.__traceback__)",
                f"{pad}    raise",
                f"{pad}leave{index}(token{index}, None, None, None)",
            ]
    lines.append(pad + "return result")
    if sets_context:
        lines += ["    finally:", "        context_var.reset(context_token)"]
    source = "\n".join(lines) + "\n"
    filename = f"<aioresilience guards {len(_code_by_layout)}>"
    # Registered like a file, so tracebacks through a pipeline show these lines.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    code = _code_by_layout[layout] = compile(source, filename, "exec")
    return code


def _guard_block(guards: list[Strategy], inner: Runner) -> Runner:
    """Guards entered with ``async with`` (:meth:`Strategy.guard`), in one coroutine."""
    makers = tuple(strategy.guard for strategy in guards)

    async def run(call: Call, context: ResilienceContext) -> Any:
        entered = []
        try:
            for make in makers:
                guard = make(context)
                await guard.__aenter__()
                entered.append(guard)
            result = await inner(call, context)
        except BaseException as exc:
            error = await exit_all(entered, exc)
            if error is None:
                return None  # a guard suppressed it, as `async with` allows
            if error is exc:
                raise
        else:
            # The way out without an exception, inlined (no coroutine for exit_all) until a
            # guard's exit raises; the guards outside it then see that exception.
            index = len(entered)
            while index:
                index -= 1
                try:
                    await entered[index].__aexit__(None, None, None)
                except BaseException as exit_error:
                    error = await exit_all(entered[:index], exit_error)
                    break
            else:
                return result
            if error is None:
                return None  # an outer guard suppressed the exit error
        # Raised out here, not in the except block, so Python keeps the __context__ that
        # exit_all chained (the exception it replaced) instead of the original one.
        raise error

    return run


async def exit_all(entered: list[Any], exc: BaseException | None) -> BaseException | None:
    """Leave guards innermost first, as nested ``async with`` blocks would: each sees the
    exception so far; one that raises replaces it (chained to it); one that returns true
    suppresses it. Returns the exception to raise, or None."""
    original = exc
    for guard in reversed(entered):
        try:
            if exc is None:
                await guard.__aexit__(None, None, None)
            elif await guard.__aexit__(type(exc), exc, exc.__traceback__):
                exc = None
        except BaseException as error:
            # Python chained it to the exception our caller is handling (the original); a
            # nested `async with` would chain it to the one it replaces.
            if exc is not None and error is not exc and error.__context__ in (None, original):
                error.__context__ = exc
            exc = error
    return exc

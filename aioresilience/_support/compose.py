"""How a pipeline's strategies become one runner: the :class:`Strategy` base and the fold.

A strategy is one of two kinds (DESIGN: the running seam):

- a *guard* acts around the call without re-running it (timeouts, limiters, breakers,
  bulkheads, shedders): :meth:`Strategy.core` returns its ``(enter, exit)`` pair, the same
  core its own ``async with``, decorator and ``call`` forms are built from
  (``_support/guard.py``). :class:`GuardStrategy` makes one from any such primitive;
- a *re-running* strategy (retry, hedging, fallback) implements
  ``execute(call, context)`` and calls ``call()`` as often as it likes.

A runner is ``runner(call, context) -> awaitable``: it runs ``call()`` (the user's call, a
zero-argument callable returning an awaitable) through some strategies. :func:`compose` folds
the chain from the innermost strategy out (Polly's ``DelegatingComponent``, Starlette's
middleware stack): a re-running strategy's layer is ``execute(lambda: inner(call, context),
context)``; a run of consecutive guards becomes ONE coroutine function of straight-line code
(``enter`` in order, then the call, then ``exit`` in reverse, each ``exit`` in the ``except``
of its own ``try``), which behaves exactly like nested ``async with`` blocks but creates no
guard object, awaitable or coroutine per guard. That generated code is the only
implementation of a guard layer: a guard's own :meth:`Strategy.execute` and the pipeline's
``async with`` use the same cores.

Why generated code, measured (2026-12-02, 2 shared cores, ``benchmarks/harness.measure``, 9
interleaved repeats of 20,000 calls; the benchmark's five-strategy pipeline timeout -> rate
limit -> retry -> breaker -> timeout, against the same fold with one closure coroutine per
guard, each doing what one guard's part of the generated code does): in bare awaits, generated
52.1 against closures 60.6 on CPython 3.12.1, 57.3 against 66.4 on 3.13.0 (3,790 against
4,410 ns and 3,830 against 4,430 ns a call): the generated blocks cost 14 % less, one
coroutine frame per run of guards instead of one per guard.

The fold goes further than runs of guards: a re-running strategy that offers its first attempt
(:meth:`Strategy._inline`: retry does) has that attempt run inline too, the layers inside it in
the same coroutine, and only a failed first attempt goes on in the strategy's own code (with a
runner of the inner layers as its ``call``). The pipeline's ways in (``execute`` and
``@pipeline``) are the outermost runner itself, their own lines (the call's context) at its
head. So a call through timeout -> rate limit -> retry -> breaker -> timeout that succeeds at
once is ONE coroutine of ours (before: four, and two frames). Callgrind, instructions per
``await pipeline.execute(trivial)`` (N=20,000 minus N=2,000, same loop): 3.11 43,038 ->
35,929, 3.12 43,214 -> 35,465, 3.13 42,335 -> 34,897 (with timeout's inline _enter; a bare
``await trivial()`` costs 1,220-1,265 there).

The outermost runner also makes the call's context current (``current_context()``).
"""

from __future__ import annotations

import functools
import itertools
import linecache
import types
from collections.abc import Awaitable, Callable
from typing import Any

from .context import ResilienceContext, context_var
from .events import Severity
from .guard import NO_RESULT, GuardForms, async_with_is_core, isawaitable
from .predicates import not_callable

__all__ = [
    "Call",
    "Core",
    "GuardStrategy",
    "Layer",
    "Runner",
    "Strategy",
    "compose",
    "layers_of",
    "leave_all",
    "linecache_and_compile",
]

Call = Callable[[], Awaitable[Any]]
Runner = Callable[[Call, ResilienceContext], Awaitable[Any]]
Enter = Callable[[], Any]
# exit(ticket, exc, result) -> None; only the adapter over an overridden __aexit__
# (GuardStrategy) returns an awaitable, which the fold awaits.
Exit = Callable[[Any, BaseException | None, Any], Any]
Core = tuple[Enter, Exit | None]  # exit None: nothing to do on the way out


class Strategy:
    """One layer of a pipeline. A guard implements :meth:`core`; a strategy that re-runs
    the call implements :meth:`execute` (a guard's ``execute`` comes from its core)."""

    kind = "strategy"

    def __init__(self, name: str) -> None:
        self.name = name

    def core(self) -> Core | None:
        """For a guard: ``(enter, exit)``. ``enter()`` admits the call (or raises the guard's
        refusal) and returns a ticket, or a native coroutine (when admission has to wait)
        whose result is the ticket; ``exit(ticket, exc, result)`` accounts for the outcome
        (``exc``: the exception, None on success; ``result``: the call's value, or
        :data:`NO_RESULT`); it may raise to replace the exception, never suppresses it.
        ``exit`` None: nothing to do on the way out. The call's context is current
        (``current_context()``) while they run. None (the default): not a guard."""
        return None

    def _inline(self) -> tuple[Callable[[ResilienceContext], Any], Callable[..., Any]] | None:
        """For a re-running strategy whose first attempt the fold may run inline, in the
        coroutine of the layers around it: ``(begin, rest)``. ``begin(context)`` starts the
        first attempt (a token) or declines (None: :meth:`execute` runs instead, from the
        start); the attempt's outcome is then the call's, unless it raises an ``Exception``:
        ``rest(token, call, context, exc)`` returns the awaitable of everything
        :meth:`execute` would do after that first failure. Together they behave exactly as
        :meth:`execute`. None (the default): :meth:`execute` runs every time."""
        return None

    @property
    def is_guard(self) -> bool:
        """Whether this strategy is a guard (never re-runs the call)."""
        return self.core() is not None

    def execute(self, call: Call, context: ResilienceContext) -> Awaitable[Any]:
        """Run ``call()`` through this strategy. A guard's comes from its core (the
        pipeline's own code for a guard layer); a re-running strategy overrides it."""
        core = self.core()
        if core is None:
            raise NotImplementedError(
                f"{type(self).__name__} must implement core() (a guard) or execute() "
                "(a strategy that re-runs the call)"
            )
        runner: Runner | None = self.__dict__.get("_guard_runner")
        if runner is None:  # the guard layer's code, made once per strategy
            runner = self.__dict__["_guard_runner"] = _runner([("guard", *core)], "inner")
        return runner(call, context)

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name}

    def __repr__(self) -> str:
        return f"{self.kind}({self.name!r})"


def _overrides(cls: type, base: type, *names: str) -> bool:
    return any(getattr(cls, name) is not getattr(base, name) for name in names)


class GuardStrategy(Strategy):
    """A :class:`~aioresilience._support.guard.GuardForms` primitive as a pipeline guard:
    its ``_enter``/``_exit`` core, or, for a subclass that changes its ``async with``, that
    ``async with`` (a subclass is entered through its override, never around it)."""

    def __init__(self, kind: str, primitive: GuardForms) -> None:
        super().__init__(primitive.name)
        self.kind = kind
        self.primitive = primitive

    def core(self) -> Core:
        primitive = self.primitive
        if async_with_is_core(type(primitive)):
            return primitive._enter, primitive._exit
        return _async_with_core(primitive)


def _async_with_core(manager: Any) -> Core:
    """``(enter, exit)`` over an async context manager's own ``__aenter__``/``__aexit__``
    (their awaitables awaited by the fold; a true return of ``__aexit__`` is ignored: a
    guard never suppresses)."""

    async def enter() -> None:
        await manager.__aenter__()

    def exit(ticket: Any, exc: BaseException | None, result: Any) -> Awaitable[Any]:
        if exc is None:
            return manager.__aexit__(None, None, None)  # type: ignore[no-any-return]
        return manager.__aexit__(type(exc), exc, exc.__traceback__)  # type: ignore[no-any-return]

    return enter, exit


# -- the fold ---------------------------------------------------------------------------------

# One layer of a compiled runner, per strategy: a guard ("guard", enter, exit); a re-running
# strategy whose first attempt runs inline ("inline", begin, rest, execute); any other
# re-running strategy ("rerun", execute), inside which the rest of the chain runs.
Layer = tuple[Any, ...]


def layers_of(strategies: tuple[Strategy, ...]) -> list[Layer]:
    """The layers of a chain (outermost first): each strategy's core, or how it re-runs."""
    return [_layer(strategy) for strategy in strategies]


def compose(layers: list[Layer], pipeline: Any = None, fn: Callable[..., Any] | None = None) -> Any:
    """One coroutine function for the whole chain, which also makes the call's context
    current: the runner ``run(call, context)``; given the ``pipeline``, its own way in
    ``execute(fn, *args, **kwargs)``; given ``fn`` too, the decorated ``fn(*args,
    **kwargs)``. A way in does, in the same coroutine, what ``Pipeline.execute`` does before
    it runs the chain: makes the call's context (``pipeline.name``, ``pipeline._listeners``)
    and hands a call some listener times to ``pipeline._execute_timed(context, call)``."""
    if pipeline is None:
        return _runner(layers, "runner")
    names = {
        "pipeline": pipeline,
        "new": object.__new__,
        "ResilienceContext": ResilienceContext,
        "DEBUG": Severity.DEBUG,
        "fn": fn,
    }
    return _runner(layers, "execute" if fn is None else "decorator", names)


def _layer(strategy: Strategy) -> Layer:
    core = strategy.core()
    if core is not None:
        return ("guard", *core)
    inline = strategy._inline()
    if inline is not None:
        begin, rest = inline
        return ("inline", begin, rest, strategy.execute)
    return ("rerun", strategy.execute)


async def leave_all(
    entered: list[tuple[Exit | None, Any]], exc: BaseException | None
) -> BaseException | None:
    """Leave entered guards innermost first, as nested ``async with`` blocks would: each
    sees the exception so far; one whose exit raises replaces it (chained to it). Returns
    the exception to raise, or None. (The pipeline's ``async with`` and a refusal while
    entering it; the compiled blocks do the same in straight-line code.)"""
    original = exc
    for exit, ticket in reversed(entered):
        if exit is None:
            continue
        try:
            pending = exit(ticket, exc, NO_RESULT)
            if pending is not None:
                await pending
        except BaseException as error:
            # Python chained it to the exception our caller is handling (the original); a
            # nested `async with` would chain it to the one it replaces.
            if exc is not None and error is not exc and error.__context__ in (None, original):
                error.__context__ = exc
            exc = error
    return exc


# Python allows 20 statically nested blocks; a compiled runner nests one `try` per guard with a
# way out and per inline first attempt, plus one for the context: a longer chain goes on in a
# runner of its own.
_MAX_NESTED = 16


def _runner(layers: list[Layer], head: str, entry: dict[str, Any] | None = None) -> Any:
    """``layers`` as one coroutine function (see the module doc): each guard's ``enter`` in
    order, the call, each ``exit`` in reverse in the ``except`` of its own ``try`` (so that an
    exception raised there replaces the one being handled and is chained to it, exactly as
    with nested ``async with`` blocks); an inline first attempt (``begin(context)``: None to
    run the strategy's ``execute`` instead) around the layers inside it, given to ``rest``
    when it fails; a re-running strategy's ``execute`` around a runner of the layers inside
    it. A strategy that re-runs the call is given that inner runner as its ``call`` (a C
    partial, no closure per call). ``head``: "inner" (the runner of layers inside others),
    "runner" (sets the call's context), "execute" or "decorator" (:func:`compose_entry`)."""
    shape: list[tuple[str, bool]] = []
    names: dict[str, Any] = {
        **(entry or {}),
        "__name__": __name__,
        "Coroutine": types.CoroutineType,
        "isawaitable": isawaitable,
        "NO_RESULT": NO_RESULT,
        "context_var": context_var,
        "partial": functools.partial,
        "not_callable": not_callable,
    }
    nested = 0
    for index, layer in enumerate(layers):
        kind = layer[0]
        if kind == "guard":
            _, names[f"enter{index}"], names[f"exit{index}"] = layer
            has_exit = layer[2] is not None
            if has_exit:
                nested += 1
                if nested > _MAX_NESTED:
                    names[f"inner{index}"] = _runner(layers[index:], "inner")
                    shape.append(("tail", True))
                    break
            shape.append((kind, has_exit))
            continue
        rest = layers[index + 1 :]
        if rest:
            names[f"inner{index}"] = _runner(rest, "inner")
        if kind == "inline":
            nested += 1
            if nested <= _MAX_NESTED:
                _, names[f"begin{index}"], names[f"rest{index}"], names[f"execute{index}"] = layer
                shape.append((kind, bool(rest)))
                continue
        names[f"execute{index}"] = layer[-1]
        shape.append(("rerun", bool(rest)))
        break
    exec(_compiled((tuple(shape), head)), names)
    return names["run_strategies"]


_Layout = tuple[tuple[tuple[str, bool], ...], str]
_code_by_layout: dict[_Layout, types.CodeType] = {}

# The first lines of an entry (compose_entry): Pipeline.execute's, before the chain.
_ENTRY = [
    "    listeners = pipeline._listeners",
    # ResilienceContext(None, 0, {}, pipeline.name, listeners), its __init__'s stores inline:
    # the class call and its __init__ frame cost more than the stores themselves.
    "    context = new(ResilienceContext)",
    "    context.operation_key = None",
    "    context.attempt = 0",
    "    context.properties = {}",
    "    context.pipeline = pipeline.name",
    "    context.listeners = listeners",
    "    context._timed = False",
    "    if args or kwargs:",
    "        call = partial(fn, *args, **kwargs)",  # (refuses what cannot be called)
    "    elif callable(fn):",
    "        call = fn",
    "    else:",
    "        raise not_callable(pipeline.name, fn)",
    "    if listeners._callbacks and listeners.wants(DEBUG):",
    "        return await pipeline._execute_timed(context, call)",
]
_SIGNATURES = {
    "inner": "call, context",
    "runner": "call, context",
    "execute": "fn, /, *args, **kwargs",
    "decorator": "*args, **kwargs",
}


def _compiled(layout: _Layout) -> types.CodeType:
    """The code of a runner, once per layout (each layer's kind and whether it has a way out
    or layers inside it; the runner's head): pipelines built per request do not compile
    again."""
    code = _code_by_layout.get(layout)
    if code is not None:
        return code
    shape, head = layout
    lines = [f"async def run_strategies({_SIGNATURES[head]}):"]
    if head in ("execute", "decorator"):
        lines += _ENTRY
    pad = "    "
    if head != "inner":
        lines += [pad + "context_token = context_var.set(context)", pad + "try:"]
        pad += "    "
    _layers(shape, 0, pad, lines)
    lines.append(pad + "return result")
    if head != "inner":
        lines += ["    finally:", "        context_var.reset(context_token)"]
    code = _code_by_layout[layout] = linecache_and_compile(
        "\n".join(lines) + "\n", "aioresilience strategies"
    )
    return code


def _layers(shape: tuple[tuple[str, bool], ...], index: int, pad: str, lines: list[str]) -> None:
    """The lines that leave the outcome of ``shape[index:]`` in ``result``."""
    if index == len(shape):
        lines.append(pad + "result = call()")  # (a plain function's value is the result)
        lines.append(pad + "if result.__class__ is Coroutine or isawaitable(result):")
        lines.append(pad + "    result = await result")
        return
    kind, flag = shape[index]
    inner = f"partial(inner{index}, call, context)" if flag else "call"
    if kind == "tail":
        lines.append(f"{pad}result = await inner{index}(call, context)")
    elif kind == "rerun":
        lines.append(f"{pad}result = await execute{index}({inner}, context)")
    elif kind == "inline":
        # The first attempt runs here, the layers inside it inline; a failure (an Exception:
        # a cancellation passes through) goes on in the strategy's `rest`, outside the
        # `except` block, so later attempts' exceptions do not carry it as their __context__.
        lines += [
            f"{pad}token{index} = begin{index}(context)",
            f"{pad}if token{index} is None:",
            f"{pad}    result = await execute{index}({inner}, context)",
            f"{pad}else:",
            f"{pad}    try:",
        ]
        _layers(shape, index + 1, pad + "        ", lines)
        lines += [
            f"{pad}    except Exception as exc:",
            f"{pad}        failure{index} = exc",
            f"{pad}    else:",
            f"{pad}        failure{index} = None",
            f"{pad}    if failure{index} is not None:",
            f"{pad}        result = await rest{index}(token{index}, {inner}, context, "
            f"failure{index})",
        ]
    else:  # a guard
        lines += [
            f"{pad}ticket{index} = enter{index}()",
            f"{pad}if ticket{index}.__class__ is Coroutine:",
            f"{pad}    ticket{index} = await ticket{index}",
        ]
        if not flag:
            _layers(shape, index + 1, pad, lines)
            return
        lines.append(f"{pad}try:")
        _layers(shape, index + 1, pad + "    ", lines)
        # An exit returns None, or (the adapter over an overridden __aexit__) an awaitable.
        lines += [
            f"{pad}except BaseException as exc:",
            f"{pad}    pending = exit{index}(ticket{index}, exc, NO_RESULT)",
            f"{pad}    if pending is not None:",
            f"{pad}        await pending",
            f"{pad}    raise",
            f"{pad}pending = exit{index}(ticket{index}, None, result)",
            f"{pad}if pending is not None:",
            f"{pad}    await pending",
        ]


_unique = itertools.count()


def linecache_and_compile(source: str, what: str) -> types.CodeType:
    """Compile generated ``source`` under a file name of its own, its lines registered in
    ``linecache`` so tracebacks and debuggers show them (attrs' ``_linecache_and_compile``):
    the one way this package generates code."""
    filename = f"<{what} {next(_unique)}>"
    # (size, mtime None: never checked against a file, lines, name), as attrs does.
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    return compile(source, filename, "exec")

"""Pipelines: compose strategies in an explicit order and run calls through them.

``Pipeline.builder()`` adds strategies outermost first (the order of Polly and failsafe):
``.timeout(10).retry(...).circuit_breaker(...).timeout(2)`` is an overall deadline around
per-attempt timeouts. Each builder method takes options or an existing primitive, so one
breaker or limiter can be shared by several pipelines.

Ways in: ``await pipeline.execute(fn, *args, **kwargs)``, ``@pipeline``, ``async with
pipeline:`` (only when every strategy is a guard that does not re-run the body), and
``await pipeline.execute_outcome(...)``, which returns an :class:`Outcome` instead of raising.
A per-call :class:`ResilienceContext` (operation key, attempt number, properties) is reachable
from callbacks through :func:`current_context`.
"""

from __future__ import annotations

import contextvars
import functools
import operator
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Hashable
from dataclasses import dataclass, field
from typing import Any, Generic, ParamSpec, TypeVar

from ._adaptive import AdaptiveLimiter
from ._breaker import CircuitBreaker
from ._bulkhead import Bulkhead
from ._degradation import Fallback, LoadShedder, Priority
from ._predicates import require_async
from ._ratelimit import RateLimiter, TokenBucket
from ._retry import Retry
from ._timeout import timeout
from ._validation import non_negative_or_none

__all__ = [
    "Outcome",
    "Pipeline",
    "PipelineBuilder",
    "PipelineOrderWarning",
    "PipelineRegistry",
    "ResilienceContext",
    "current_context",
]

P = ParamSpec("P")
T = TypeVar("T")
Call = Callable[[], Awaitable[Any]]
Runner = Callable[[Call, "ResilienceContext"], Awaitable[Any]]


@dataclass
class ResilienceContext:
    """Per-call data for strategies and callbacks: ``attempt`` counts attempts started (retry
    increments it), ``properties`` is a small bag for the caller's own values."""

    operation_key: str | None = None
    attempt: int = 0
    properties: dict[str, Any] = field(default_factory=dict)


_context: contextvars.ContextVar[ResilienceContext | None] = contextvars.ContextVar(
    "aioresilience.context", default=None
)


def current_context() -> ResilienceContext | None:
    """The context of the pipeline call running in this task, if any."""
    return _context.get()


@dataclass(frozen=True)
class Outcome(Generic[T]):
    """A call's result or exception, for callers that branch instead of catching."""

    result: T | None = None
    exception: Exception | None = None

    @property
    def ok(self) -> bool:
        return self.exception is None

    def unwrap(self) -> T:
        if self.exception is not None:
            raise self.exception
        return self.result  # type: ignore[return-value]


class PipelineOrderWarning(UserWarning):
    """A pipeline's strategy order is known to surprise; the message says what to use."""


# -- strategies -------------------------------------------------------------------------------


class Strategy:
    """One layer of a pipeline. ``guard`` is an async context manager factory when the
    strategy can run around a block without re-running it, else None."""

    kind = "strategy"
    is_guard = False  # True: guard() gives an async context manager (no re-running)

    def __init__(self, name: str) -> None:
        self.name = name

    async def execute(self, call: Call, context: ResilienceContext) -> Any:
        raise NotImplementedError

    def guard(self, context: ResilienceContext) -> Any:
        return None

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "name": self.name}

    def __repr__(self) -> str:
        return f"{self.kind}({self.name!r})"


class _Timeout(Strategy):
    kind = "timeout"
    is_guard = True

    def __init__(self, seconds: float | None) -> None:
        self.seconds = non_negative_or_none("seconds", seconds)
        super().__init__("no limit" if self.seconds is None else f"{self.seconds:g}s")

    async def execute(self, call: Call, context: ResilienceContext) -> Any:
        async with timeout(self.seconds):
            return await call()

    def guard(self, context: ResilienceContext) -> Any:
        return timeout(self.seconds)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "seconds": self.seconds}


class _RateLimit(Strategy):
    kind = "rate_limit"
    is_guard = True

    def __init__(
        self,
        limiter: RateLimiter[Any],
        key: Callable[[ResilienceContext], Hashable] | None,
        cost: int,
    ) -> None:
        super().__init__(limiter.name)
        self.limiter, self.key, self.cost = limiter, key, cost

    async def execute(self, call: Call, context: ResilienceContext) -> Any:
        key = None if self.key is None else self.key(context)
        await self.limiter.acquire(self.cost, key=key)
        return await call()

    def guard(self, context: ResilienceContext) -> Any:
        return self.limiter.for_key(None if self.key is None else self.key(context), cost=self.cost)


class _Retry(Strategy):
    kind = "retry"

    def __init__(self, policy: Retry) -> None:
        super().__init__(policy.name)
        self.policy = policy

    async def execute(self, call: Call, context: ResilienceContext) -> Any:
        async def attempt() -> Any:
            context.attempt += 1
            return await call()

        return await self.policy.call(attempt)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "attempts": self.policy.attempts}


class _Wrapping(Strategy):
    """A primitive with ``call(fn)`` and, when ``is_guard``, ``async with``."""

    def __init__(self, kind: str, primitive: Any, is_guard: bool) -> None:
        super().__init__(primitive.name)
        self.kind = kind
        self.primitive = primitive
        self.is_guard = is_guard

    async def execute(self, call: Call, context: ResilienceContext) -> Any:
        return await self.primitive.call(call)

    def guard(self, context: ResilienceContext) -> Any:
        return self.primitive if self.is_guard else None


class _LoadShed(Strategy):
    kind = "load_shed"
    is_guard = True

    def __init__(self, shedder: LoadShedder, priority: Priority) -> None:
        super().__init__(shedder.name)
        self.shedder, self.priority = shedder, priority

    async def execute(self, call: Call, context: ResilienceContext) -> Any:
        self.shedder.check(self.priority)
        return await call()

    def guard(self, context: ResilienceContext) -> Any:
        return _Check(lambda: self.shedder.check(self.priority))


class _Check:
    """A guard that only checks on entry."""

    def __init__(self, check: Callable[[], None]) -> None:
        self._check = check

    async def __aenter__(self) -> None:
        self._check()

    async def __aexit__(self, *exc_info: object) -> None:
        return None


# -- order advice -----------------------------------------------------------------------------

# (outer kind, inner kind, why it surprises, the order to use) — collected from the Polly and
# resilience4j issue trackers (e.g. resilience4j's "Retry and CircuitBreaker order" reports).
_SURPRISING_ORDERS: tuple[tuple[str, str, str], ...] = (
    (
        "circuit_breaker",
        "retry",
        "the breaker sees one outcome per *retried* call, so it opens only after every "
        "retry failed, and an open breaker's refusal is never retried; put retry outside "
        "the circuit breaker: .retry(...).circuit_breaker(...)",
    ),
    (
        "retry",
        "fallback",
        "the fallback turns failures into results, so the retry never sees a failure; put "
        "the fallback outermost: .fallback(...).retry(...)",
    ),
    (
        "circuit_breaker",
        "fallback",
        "the fallback hides failures from the breaker, which then never opens; put the "
        "fallback outside the breaker: .fallback(...).circuit_breaker(...)",
    ),
    (
        "bulkhead",
        "retry",
        "the bulkhead slot stays taken while the retry sleeps between attempts; put the "
        "bulkhead inside the retry: .retry(...).bulkhead(...)",
    ),
    (
        "timeout",
        "fallback",
        "the fallback answers before the timeout can expire only if it is fast; a slow "
        "fallback is cut by the timeout too — usually you want .fallback(...).timeout(...)",
    ),
)


def _order_warnings(kinds: list[str]) -> list[str]:
    found = []
    for outer, inner, advice in _SURPRISING_ORDERS:
        if outer in kinds and inner in kinds and kinds.index(outer) < kinds.index(inner):
            found.append(f"{outer} outside {inner}: {advice}")
    return found


# -- the pipeline -----------------------------------------------------------------------------


class Pipeline:
    """Strategies composed outermost first. Build with :meth:`builder`."""

    def __init__(self, strategies: tuple[Strategy, ...], name: str) -> None:
        self.name = name
        self.strategies = strategies
        self._run = _compose(strategies)
        self._guards_only = all(s.is_guard for s in strategies)
        self._stacks: contextvars.ContextVar[list[Any] | None] = contextvars.ContextVar(
            f"aioresilience.pipeline.{name}", default=None
        )
        if not strategies:
            # Nothing to add: `execute(fn, *args)` is `fn(*args)` itself. operator.call is the
            # C implementation of exactly that, so an empty pipeline costs one C call.
            self.execute = operator.call  # type: ignore[method-assign]

    @staticmethod
    def builder(name: str = "pipeline") -> PipelineBuilder:
        return PipelineBuilder(name)

    def execute(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        """Run ``fn(*args, **kwargs)`` through every strategy, outermost first."""
        return self._execute(ResilienceContext(), functools.partial(fn, *args, **kwargs))

    async def execute_in(
        self,
        context: ResilienceContext,
        fn: Callable[P, Coroutine[Any, Any, T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Like :meth:`execute`, with a context of the caller's (operation key, properties)."""
        return await self._execute(context, functools.partial(fn, *args, **kwargs))  # type: ignore[no-any-return]

    async def _execute(self, context: ResilienceContext, call: Call) -> Any:
        token = _context.set(context)
        try:
            return await self._run(call, context)
        finally:
            _context.reset(token)

    async def execute_outcome(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Outcome[T]:
        """Like :meth:`execute`, returning the result or the exception in an
        :class:`Outcome`. Cancellation still propagates: it is not an outcome."""
        try:
            return Outcome(result=await self.execute(fn, *args, **kwargs))
        except Exception as exc:
            return Outcome(exception=exc)

    def __call__(
        self, fn: Callable[P, Coroutine[Any, Any, T]]
    ) -> Callable[P, Coroutine[Any, Any, T]]:
        """Decorate a coroutine function (its signature is kept)."""
        require_async(self.name, fn)
        execute = self.execute

        @functools.wraps(fn)
        async def resilient(*args: P.args, **kwargs: P.kwargs) -> T:
            return await execute(fn, *args, **kwargs)

        return resilient

    async def __aenter__(self) -> None:
        if not self._guards_only:
            kinds = [s.kind for s in self.strategies if not s.is_guard]
            raise TypeError(
                f"{self.name}: `async with` cannot re-run its body, and {', '.join(kinds)} "
                "would need to; use pipeline.execute(fn, ...) or @pipeline instead"
            )
        context = ResilienceContext()
        entered: list[Any] = []
        try:
            for strategy in self.strategies:
                guard = strategy.guard(context)
                await guard.__aenter__()
                entered.append(guard)
        except BaseException as exc:
            await _exit_all(entered, exc)
            raise
        stack = self._stacks.get()
        self._stacks.set([*(stack or ()), entered])

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        stacks = self._stacks.get() or []
        entered = stacks[-1]
        self._stacks.set(stacks[:-1])
        return await _exit_all(entered, exc)

    def describe(self) -> list[dict[str, Any]]:
        """The strategies, outermost first, as plain data (for tests and diagnostics)."""
        return [s.describe() for s in self.strategies]

    def __repr__(self) -> str:
        chain = " -> ".join(repr(s) for s in self.strategies) or "(no strategies)"
        return f"<Pipeline {self.name!r}: {chain}>"


async def _exit_all(entered: list[Any], exc: BaseException | None) -> bool:
    """Leave guards innermost first; an exception a guard raises replaces the current one."""
    suppressed = False
    for guard in reversed(entered):
        exc_type = None if exc is None else type(exc)
        try:
            if await guard.__aexit__(exc_type, exc, None if exc is None else exc.__traceback__):
                suppressed, exc = True, None
        except BaseException as error:
            exc, suppressed = error, False
    if exc is not None and not suppressed:
        raise exc
    return suppressed


def _compose(strategies: tuple[Strategy, ...]) -> Runner:
    async def innermost(call: Call, context: ResilienceContext) -> Any:
        return await call()

    run: Runner = innermost
    for strategy in reversed(strategies):
        run = _layer(strategy, run)
    return run


def _layer(strategy: Strategy, inner: Runner) -> Runner:
    execute = strategy.execute

    async def run(call: Call, context: ResilienceContext) -> Any:
        return await execute(lambda: inner(call, context), context)

    return run


# -- the builder ------------------------------------------------------------------------------


class PipelineBuilder:
    """Add strategies outermost first, then :meth:`build`."""

    def __init__(self, name: str = "pipeline", *, seed: int | None = None) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        self.name = name
        self.seed = seed
        self._strategies: list[Strategy] = []
        self._built = False

    def _add(self, strategy: Strategy) -> PipelineBuilder:
        if self._built:
            raise RuntimeError(f"{self.name}: strategies cannot be added after build()")
        self._strategies.append(strategy)
        return self

    def timeout(self, seconds: float | None) -> PipelineBuilder:
        return self._add(_Timeout(seconds))

    def rate_limit(
        self,
        limiter: RateLimiter[Any] | None = None,
        *,
        key: Callable[[ResilienceContext], Hashable] | None = None,
        cost: int = 1,
        **options: Any,
    ) -> PipelineBuilder:
        """An existing limiter, or ``rate="100/s"`` (and TokenBucket options) for a new one.
        ``key(context)`` picks the key per call."""
        if limiter is None:
            limiter = TokenBucket(**options)
        elif options:
            raise TypeError(f"give a limiter or options, not both: {sorted(options)}")
        if not isinstance(limiter, RateLimiter):
            raise TypeError(f"limiter must be a RateLimiter, got {limiter!r}")
        if key is not None and not callable(key):
            raise TypeError(f"key must be a callable taking the context, got {key!r}")
        return self._add(_RateLimit(limiter, key, cost))

    def retry(self, policy: Retry | None = None, **options: Any) -> PipelineBuilder:
        if policy is None:
            options.setdefault("seed", self.seed)
            policy = Retry(**options)
        elif options:
            raise TypeError(f"give a Retry or options, not both: {sorted(options)}")
        if not isinstance(policy, Retry):
            raise TypeError(f"policy must be a Retry, got {policy!r}")
        return self._add(_Retry(policy))

    def circuit_breaker(
        self, breaker: CircuitBreaker | None = None, **options: Any
    ) -> PipelineBuilder:
        if breaker is None:
            options.setdefault("seed", self.seed)
            breaker = CircuitBreaker(**options)
        elif options:
            raise TypeError(f"give a CircuitBreaker or options, not both: {sorted(options)}")
        if not isinstance(breaker, CircuitBreaker):
            raise TypeError(f"breaker must be a CircuitBreaker, got {breaker!r}")
        return self._add(_Wrapping("circuit_breaker", breaker, is_guard=True))

    def bulkhead(self, bulkhead: Bulkhead | int | None = None, **options: Any) -> PipelineBuilder:
        if not isinstance(bulkhead, Bulkhead):
            bulkhead = Bulkhead(
                bulkhead if bulkhead is not None else options.pop("max_concurrent"), **options
            )
        elif options:
            raise TypeError(f"give a Bulkhead or options, not both: {sorted(options)}")
        return self._add(_Wrapping("bulkhead", bulkhead, is_guard=True))

    def fallback(self, *handlers: Any, **options: Any) -> PipelineBuilder:
        if len(handlers) == 1 and isinstance(handlers[0], Fallback) and not options:
            fallback = handlers[0]
        else:
            fallback = Fallback(*handlers, **options)
        return self._add(_Wrapping("fallback", fallback, is_guard=False))

    def adaptive_limit(
        self, limiter: AdaptiveLimiter | None = None, **options: Any
    ) -> PipelineBuilder:
        if limiter is None:
            limiter = AdaptiveLimiter(**options)
        elif options:
            raise TypeError(f"give an AdaptiveLimiter or options, not both: {sorted(options)}")
        return self._add(_Wrapping("adaptive_limit", limiter, is_guard=True))

    def load_shed(
        self, shedder: LoadShedder, priority: Priority = Priority.NORMAL
    ) -> PipelineBuilder:
        if not isinstance(shedder, LoadShedder):
            raise TypeError(f"shedder must be a LoadShedder, got {shedder!r}")
        return self._add(_LoadShed(shedder, priority))

    def add(self, strategy: Strategy) -> PipelineBuilder:
        """A custom :class:`Strategy`."""
        if not isinstance(strategy, Strategy):
            raise TypeError(f"strategy must be a Strategy, got {strategy!r}")
        return self._add(strategy)

    def build(self) -> Pipeline:
        """The pipeline (an empty one just runs the call). Warns about surprising orders."""
        if self._built:
            raise RuntimeError(f"{self.name}: build() was called already")
        self._built = True
        for message in _order_warnings([s.kind for s in self._strategies]):
            warnings.warn(f"{self.name}: {message}", PipelineOrderWarning, stacklevel=2)
        return Pipeline(tuple(self._strategies), self.name)


class PipelineRegistry:
    """Named pipelines for an application, so handlers share them: ``registry.get("db")``."""

    def __init__(self) -> None:
        self._pipelines: dict[str, Pipeline] = {}

    def register(self, pipeline: Pipeline, *, name: str | None = None) -> Pipeline:
        key = name or pipeline.name
        if key in self._pipelines:
            raise ValueError(f"a pipeline named {key!r} is registered already")
        self._pipelines[key] = pipeline
        return pipeline

    def get(self, name: str) -> Pipeline:
        try:
            return self._pipelines[name]
        except KeyError:
            known = ", ".join(sorted(self._pipelines)) or "none"
            raise KeyError(f"no pipeline named {name!r} (registered: {known})") from None

    def __contains__(self, name: object) -> bool:
        return name in self._pipelines

    def names(self) -> list[str]:
        return sorted(self._pipelines)

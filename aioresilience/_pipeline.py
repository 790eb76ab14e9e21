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
import difflib
import functools
import operator
import random
import types
import warnings
from collections.abc import Awaitable, Callable, Coroutine, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, ParamSpec, TypedDict, TypeVar, Unpack

from ._adaptive import AdaptiveLimiter, LimitAlgorithm
from ._breaker import CircuitBreaker, CircuitStateChanged
from ._bulkhead import Bulkhead
from ._chaos import ChaosFault, chaos_latency_range, chaos_strategy
from ._core.backoff import Backoff as BreakBackoff
from ._fallback import Fallback, FallbackStrategy, FallbackUsed
from ._hedging import Hedge, HedgeStrategy
from ._ratelimit import RateLimiter, RateLimitStrategy, TokenBucket
from ._retry import Retry, RetryBudget, RetryState, RetryStrategy
from ._shedding import LoadShedder, LoadShedStrategy, Priority
from ._support.clock import LOOP_CLOCK, Clock, clock_option
from ._support.compose import (
    Call,
    GuardStrategy,
    Runner,
    Strategy,
    compose,
    layers_of,
    leave_all,
)
from ._support.context import ResilienceContext, context_var, current_context
from ._support.events import (
    PipelineExecuted,
    ResilienceEvent,
    Severity,
)
from ._support.listeners import Listeners
from ._support.predicates import (
    ExceptionFilter,
    is_async_callable,
    not_callable,
    require_async,
    wraps,
)
from ._support.rerun import timed
from ._support.schedules import Backoff
from ._support.validation import checked_seed, text
from ._timeout import TimeoutStrategy
from .abc import BreakerStore, LimiterStore

__all__ = [
    "Outcome",
    "Pipeline",
    "PipelineBuilder",
    "PipelineOrderWarning",
    "PipelineRegistry",
    "ResilienceContext",
    "Strategy",
    "current_context",
]

P = ParamSpec("P")
T = TypeVar("T")

_Coroutine = types.CoroutineType
_DEBUG = Severity.DEBUG  # an enum member read from the class costs more than the check itself


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
        "hedge",
        "retry",
        "every hedged attempt retries on its own, multiplying the load on a struggling "
        "dependency; put retry outside the hedge: .retry(...).hedge(...)",
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
        outers = [i for i, kind in enumerate(kinds) if kind == outer]
        inners = [i for i, kind in enumerate(kinds) if kind == inner]
        if outers and inners and min(outers) < max(inners):
            found.append(f"{outer} outside {inner}: {advice}")
    return found


# -- the pipeline -----------------------------------------------------------------------------


class Pipeline:
    """Strategies composed outermost first. Build with :meth:`builder`."""

    def __init__(
        self, strategies: tuple[Strategy, ...], name: str, clock: Clock | None = None
    ) -> None:
        self.name = name
        # The pipeline's own events (its calls' durations) are read on it: the builder's.
        self.clock: Clock = LOOP_CLOCK if clock is None else clock
        self.strategies = strategies
        self._listeners = Listeners()
        self._layers = layers_of(strategies)
        self._run: Runner = compose(self._layers)  # sets the call's context, runs them
        # `async with pipeline` enters the guards' cores (the same the fold runs).
        self._cores = [s.core() for s in strategies]
        self._stacks: contextvars.ContextVar[list[tuple[list[Any], Any]] | None]
        self._stacks = contextvars.ContextVar(f"aioresilience.pipeline.{name}", default=None)
        if not strategies:
            # Nothing to add: `execute(fn, *args)` is `fn(*args)` itself. operator.call is the
            # C implementation of exactly that, so an empty pipeline costs one C call.
            self.execute = operator.call  # type: ignore[method-assign]
        elif type(self).execute is Pipeline.execute:
            # execute's own lines and the chain's in one coroutine (compose): no frame of
            # execute's own per call. (A subclass that changes execute keeps its own.)
            execute = compose(self._layers, self)
            execute.__name__, execute.__qualname__ = "execute", f"{type(self).__qualname__}.execute"
            execute.__doc__ = Pipeline.execute.__doc__
            self.execute = execute  # type: ignore[method-assign]

    @staticmethod
    def builder(
        name: str = "pipeline", *, seed: int | None = None, clock: Clock | None = None
    ) -> PipelineBuilder:
        """A :class:`PipelineBuilder`; ``seed`` makes every random choice of the strategies
        built from options (jitter, chaos) reproducible; ``clock`` is handed to every strategy
        built from options (primitives given ready-made keep their own clock; timeouts run on
        the loop's clock, see :func:`aioresilience.timeout`)."""
        return PipelineBuilder(name, seed=seed, clock=clock)

    def execute(
        self, fn: Callable[P, Coroutine[Any, Any, T]], /, *args: P.args, **kwargs: P.kwargs
    ) -> Coroutine[Any, Any, T]:
        """Run ``fn(*args, **kwargs)`` through every strategy, outermost first."""
        listeners = self._listeners
        context = ResilienceContext(None, 0, {}, self.name, listeners)
        call: Callable[[], Coroutine[Any, Any, T]]
        if args or kwargs:
            call = functools.partial(fn, *args, **kwargs)  # (refuses what cannot be called)
        elif callable(fn):
            call = fn
        else:
            raise not_callable(self.name, fn)
        if listeners._callbacks and listeners.wants(_DEBUG):
            return self._execute_timed(context, call)
        # The runner sets the context itself: no coroutine of ours around it.
        return self._run(call, context)  # type: ignore[return-value]

    async def execute_in(
        self,
        context: ResilienceContext,
        fn: Callable[P, Coroutine[Any, Any, T]],
        /,
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        """Like :meth:`execute`, with the caller's operation key and properties. The context
        object given is a template: each call gets its own copy (sharing ``properties``, so
        callbacks can leave values there), and the template itself is not changed."""
        listeners = self._listeners
        call_context = ResilienceContext(
            context.operation_key, 0, context.properties, self.name, listeners
        )
        call = functools.partial(fn, *args, **kwargs)
        if listeners._callbacks and listeners.wants(_DEBUG):
            return await self._execute_timed(call_context, call)  # type: ignore[no-any-return]
        return await self._run(call, call_context)  # type: ignore[no-any-return]

    async def _execute_timed(self, context: ResilienceContext, call: Call) -> Any:
        """A call some listener times: the pipeline's and every attempt's duration."""
        context._timed = True
        token = context_var.set(context)  # the pipeline_executed event finds the listeners
        try:
            return await timed(
                functools.partial(self._run, call, context),
                self.name,
                PipelineExecuted,
                clock=self.clock,
            )
        finally:
            context_var.reset(token)

    def add_listener(self, callback: Callable[[ResilienceEvent], Any]) -> None:
        """Hear the events of every strategy while it runs a call of this pipeline."""
        self._listeners.add(callback)

    def remove_listener(self, callback: Callable[[ResilienceEvent], Any]) -> None:
        """Stop ``callback`` hearing this pipeline's events (``ValueError`` if it never did)."""
        self._listeners.remove(callback)

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
        if self.strategies and type(self).execute is Pipeline.execute:
            # execute's lines and the chain's in the decorated function's own coroutine.
            return wraps(fn)(compose(self._layers, self, fn))
        execute = self.execute

        @wraps(fn)
        async def resilient(*args: P.args, **kwargs: P.kwargs) -> T:
            return await execute(fn, *args, **kwargs)

        return resilient

    async def __aenter__(self) -> None:
        if None in self._cores:
            kinds = [
                s.kind for s, core in zip(self.strategies, self._cores, strict=True) if core is None
            ]
            raise TypeError(
                f"{self.name}: `async with` cannot re-run its body, and {', '.join(kinds)} "
                "would need to; use pipeline.execute(fn, ...) or @pipeline instead"
            )
        context = ResilienceContext(pipeline=self.name, listeners=self._listeners)
        token = context_var.set(context)
        entered: list[Any] = []
        try:
            for enter, exit in self._cores:  # type: ignore[misc]  # (no None: checked above)
                ticket = enter()
                if ticket.__class__ is _Coroutine:
                    ticket = await ticket
                entered.append((exit, ticket))
        except BaseException as exc:
            final = await leave_all(entered, exc)
            context_var.reset(token)
            if final is None or final is exc:
                raise
            raise final from final.__cause__  # its own cause kept (a timeout: its cancellation)
        stack = self._stacks.get()
        self._stacks.set([*(stack or ()), (entered, token)])

    async def __aexit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        stacks = self._stacks.get() or []
        entered, token = stacks[-1]
        self._stacks.set(stacks[:-1])
        try:
            final = await leave_all(entered, exc)
        finally:
            context_var.reset(token)
        if final is None or final is exc:
            return False  # Python re-raises it, with its own traceback
        raise final  # its own cause and context kept (a timeout: from its cancellation)

    def describe(self) -> list[dict[str, Any]]:
        """The strategies, outermost first, as plain data (for tests and diagnostics)."""
        return [s.describe() for s in self.strategies]

    def __repr__(self) -> str:
        chain = " -> ".join(repr(s) for s in self.strategies) or "(no strategies)"
        return f"<Pipeline {self.name!r}: {chain}>"


# -- the builder ------------------------------------------------------------------------------

# The options each builder method passes on to a primitive's constructor, as TypedDicts for
# ``**options: Unpack[...]`` (PEP 692): a misspelt or mistyped option is a type-checking error
# (``.retry(atempts=3)``), and the defaults stay in one place, the constructor. Each lists
# exactly the constructor's keyword parameters (tests/test_pipeline_options.py checks that).


class TokenBucketOptions(TypedDict, total=False):
    """``.rate_limit(**options)``: a new :class:`TokenBucket`."""

    capacity: int | None
    refill_rate: float | str | None
    rate: str | None
    name: str | None
    max_wait: float | None
    max_keys: int
    store: LimiterStore | None
    clock: Clock | None


class RetryOptions(TypedDict, total=False):
    """``.retry(**options)``: a new :class:`Retry`."""

    attempts: int | None
    backoff: Backoff | None
    max_elapsed: float | None
    deadline: float | None
    retry_on: ExceptionFilter
    retry_on_result: Callable[[Any], bool] | None
    retry_rejections: bool
    retry_after: Callable[[Any], float | None] | None
    max_retry_after: float
    before_sleep: Callable[[RetryState], Any] | None
    on_give_up: Callable[[RetryState], Any] | None
    budget: RetryBudget | None
    seed: int | None
    name: str | None
    clock: Clock | None


class CircuitBreakerOptions(TypedDict, total=False):
    """``.circuit_breaker(**options)``: a new :class:`CircuitBreaker`."""

    name: str | None
    failure_threshold: int | None
    failure_rate_threshold: float | None
    slow_call_rate_threshold: float | None
    slow_call_duration: float | None
    window: Literal["count", "time"]
    window_size: float
    minimum_calls: int
    break_duration: float | BreakBackoff | None
    half_open_max_calls: int
    half_open_max_duration: float
    record: ExceptionFilter
    ignore: ExceptionFilter
    failure_result: Callable[[Any], bool] | None
    on_state_change: Iterable[Callable[[CircuitStateChanged], Any]]
    seed: int | None
    store: BreakerStore | None
    recovery_timeout: float | Backoff | None
    clock: Clock | None


class BulkheadOptions(TypedDict, total=False):
    """``.bulkhead(**options)``: a new :class:`Bulkhead`."""

    max_concurrent: int
    max_queue: int
    max_wait: float | None
    name: str | None
    clock: Clock | None


class FallbackOptions(TypedDict, total=False):
    """``.fallback(*handlers, **options)``: a new :class:`Fallback`."""

    on: ExceptionFilter
    on_result: Callable[[Any], bool] | None
    on_fallback: Callable[[FallbackUsed], Any] | None
    name: str | None


class AdaptiveLimiterOptions(TypedDict, total=False):
    """``.adaptive_limit(**options)``: a new :class:`AdaptiveLimiter`."""

    algorithm: LimitAlgorithm | None
    initial_limit: int
    min_limit: int
    max_limit: int
    sample_window: float
    min_samples: int
    name: str | None
    clock: Clock | None


class HedgeOptions(TypedDict, total=False):
    """``.hedge(**options)``: a new :class:`Hedge`."""

    max_hedged: int
    delay: float
    idempotent: bool
    acceptable: Callable[[Any], bool] | None
    hedge_on: ExceptionFilter
    budget: RetryBudget | None
    name: str | None
    clock: Clock | None


def _known_options(method: str, options: Mapping[str, Any], kind: type[Any]) -> None:
    """At run time (no type checker at hand), a misspelt option fails here, naming the method,
    the option, the closest valid one and all of them, before any primitive is built."""
    known: frozenset[str] = kind.__optional_keys__
    for option in options:
        if option not in known:
            close = difflib.get_close_matches(option, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise TypeError(
                f"{method}() got an unexpected keyword argument {option!r}{hint}; "
                f"its options: {', '.join(sorted(known))}"
            )


def _given_or_built(
    name: str, given: Any, kind: type[T], build: Callable[..., T], options: Mapping[str, Any]
) -> T:
    """A builder method's primitive: the one ``given`` (shared with other code), or a new one
    built from ``options`` — not both."""
    if given is None:
        if options:
            return build(**options)
        try:
            return build()
        except TypeError as exc:  # the defaults alone build nothing: say which parameter
            raise TypeError(f"give a {kind.__name__} as {name}= or options: {exc}") from None
    if options:
        raise TypeError(
            f"give a {kind.__name__} or options, not both: {name}={given!r} and {sorted(options)}"
        )
    if not isinstance(given, kind):
        raise TypeError(f"{name} must be a {kind.__name__}, got {given!r}")
    return given


class PipelineBuilder:
    """Add strategies outermost first, then :meth:`build`."""

    def __init__(
        self, name: str = "pipeline", *, seed: int | None = None, clock: Clock | None = None
    ) -> None:
        if not isinstance(name, str) or not name:
            raise TypeError(f"name must be a non-empty str, got {name!r}")
        self.name = name
        checked_seed(seed)
        self.seed = seed
        # Handed to the strategies built from options; None: each reads the loop's clock.
        self.clock = None if clock is None else clock_option("clock", clock)
        self._strategies: list[Strategy] = []
        self._built = False

    def _defaults(self, options: Mapping[str, Any], *, seed: bool = False) -> dict[str, Any]:
        """``options`` with the builder's clock as ``clock=`` (and its seed as ``seed=``),
        unless they name one."""
        built = dict(options)
        if self.clock is not None:
            built.setdefault("clock", self.clock)
        if seed:
            built.setdefault("seed", self.seed)
        return built

    def _add(self, strategy: Strategy) -> PipelineBuilder:
        if self._built:
            raise RuntimeError(f"{self.name}: strategies cannot be added after build()")
        self._strategies.append(strategy)
        return self

    def timeout(self, seconds: float | None) -> PipelineBuilder:
        return self._add(TimeoutStrategy(seconds))

    def rate_limit(
        self,
        limiter: RateLimiter[Any] | None = None,
        *,
        key: Callable[[ResilienceContext], Hashable] | None = None,
        cost: int = 1,
        **options: Unpack[TokenBucketOptions],
    ) -> PipelineBuilder:
        """An existing limiter, or ``rate="100/s"`` (and TokenBucket options) for a new one.
        ``key(context)`` picks the key per call."""
        _known_options("rate_limit", options, TokenBucketOptions)
        built = self._defaults(options) if limiter is None and options else options
        limiter = _given_or_built("limiter", limiter, RateLimiter, TokenBucket, built)
        if key is not None and not callable(key):
            raise TypeError(f"key must be a callable taking the context, got {key!r}")
        return self._add(RateLimitStrategy(limiter, key, cost))

    def retry(
        self, policy: Retry | None = None, **options: Unpack[RetryOptions]
    ) -> PipelineBuilder:
        """An existing :class:`Retry`, or :class:`Retry` options for a new one (the
        builder's seed and clock unless given)."""
        _known_options("retry", options, RetryOptions)
        built = self._defaults(options, seed=True) if policy is None else options
        policy = _given_or_built("policy", policy, Retry, Retry, built)
        return self._add(RetryStrategy(policy))

    def circuit_breaker(
        self, breaker: CircuitBreaker | None = None, **options: Unpack[CircuitBreakerOptions]
    ) -> PipelineBuilder:
        """An existing :class:`CircuitBreaker` (shared), or options for a new one (the
        builder's seed and clock unless given)."""
        _known_options("circuit_breaker", options, CircuitBreakerOptions)
        built = self._defaults(options, seed=True) if breaker is None else options
        breaker = _given_or_built("breaker", breaker, CircuitBreaker, CircuitBreaker, built)
        return self._add(GuardStrategy("circuit_breaker", breaker))

    def bulkhead(
        self, bulkhead: Bulkhead | int | None = None, **options: Unpack[BulkheadOptions]
    ) -> PipelineBuilder:
        """An existing :class:`Bulkhead`, or its size (or ``max_concurrent=``) and options."""
        _known_options("bulkhead", options, BulkheadOptions)
        if not isinstance(bulkhead, Bulkhead):
            built = self._defaults(options)
            size = bulkhead if bulkhead is not None else built.pop("max_concurrent", None)
            if size is None:
                raise TypeError("bulkhead() needs a Bulkhead or max_concurrent")
            bulkhead = Bulkhead(size, **built)
        elif options:
            raise TypeError(f"give a Bulkhead or options, not both: {sorted(options)}")
        return self._add(GuardStrategy("bulkhead", bulkhead))

    def fallback(self, *handlers: Any, **options: Unpack[FallbackOptions]) -> PipelineBuilder:
        """An existing :class:`Fallback`, or handlers and options for a new one."""
        _known_options("fallback", options, FallbackOptions)
        if len(handlers) == 1 and isinstance(handlers[0], Fallback) and not options:
            fallback = handlers[0]
        else:
            fallback = Fallback(*handlers, **options)
        return self._add(FallbackStrategy(fallback))

    def adaptive_limit(
        self, limiter: AdaptiveLimiter | None = None, **options: Unpack[AdaptiveLimiterOptions]
    ) -> PipelineBuilder:
        """An existing :class:`AdaptiveLimiter`, or options for a new one."""
        _known_options("adaptive_limit", options, AdaptiveLimiterOptions)
        built = self._defaults(options) if limiter is None else options
        limiter = _given_or_built("limiter", limiter, AdaptiveLimiter, AdaptiveLimiter, built)
        return self._add(GuardStrategy("adaptive_limit", limiter))

    def load_shed(
        self, shedder: LoadShedder, priority: Priority = Priority.NORMAL
    ) -> PipelineBuilder:
        if not isinstance(shedder, LoadShedder):
            raise TypeError(f"shedder must be a LoadShedder, got {shedder!r}")
        return self._add(LoadShedStrategy(shedder, priority))

    def hedge(self, hedge: Hedge | None = None, **options: Unpack[HedgeOptions]) -> PipelineBuilder:
        """An existing :class:`Hedge`, or options for a new one (the builder's clock unless
        given). Only for calls that are safe to repeat: say so with ``idempotent=True``.
        ``delay=0`` starts all attempts at once."""
        _known_options("hedge", options, HedgeOptions)
        built = self._defaults(options) if hedge is None else options
        return self._add(HedgeStrategy(_given_or_built("hedge", hedge, Hedge, Hedge, built)))

    def _chaos(self, kind: str, rate: float, enabled: Any, action: Any) -> PipelineBuilder:
        # Each chaos strategy draws from its own stream, derived from the builder's seed, so
        # adding one does not shift the others' sequences.
        # (A str seed is hashed with SHA-512 by random.Random: stable across processes.)
        seed = None if self.seed is None else f"{self.seed}:{len(self._strategies)}:{kind}"
        return self._add(
            chaos_strategy(kind, rate, enabled, random.Random(seed), action, self.clock)
        )

    def chaos_fault(
        self,
        rate: float,
        *,
        fault: BaseException | Callable[[], BaseException] | None = None,
        enabled: bool | Callable[[], bool] = True,
    ) -> PipelineBuilder:
        """Raise ``fault`` (default :class:`ChaosFault`) instead of calling, at ``rate``.
        ``fault`` is an exception (a fresh copy is raised each time) or a factory of them."""
        if fault is not None and not (
            isinstance(fault, BaseException) or (callable(fault) and not is_async_callable(fault))
        ):
            raise TypeError(
                f"fault must be an exception or a callable making one (not async), got {fault!r}"
            )
        return self._chaos(
            "chaos_fault", rate, enabled, fault or (lambda: ChaosFault("chaos: injected fault"))
        )

    def chaos_latency(
        self,
        rate: float,
        latency: float | tuple[float, float],
        *,
        enabled: bool | Callable[[], bool] = True,
    ) -> PipelineBuilder:
        """Sleep ``latency`` seconds (or a uniform draw from ``(low, high)``) before calling."""
        return self._chaos("chaos_latency", rate, enabled, chaos_latency_range("latency", latency))

    def chaos_outcome(
        self, rate: float, outcome: Any, *, enabled: bool | Callable[[], bool] = True
    ) -> PipelineBuilder:
        """Return ``outcome`` (or ``outcome()`` when callable) instead of calling."""
        if callable(outcome) and is_async_callable(outcome):
            raise TypeError(
                f"outcome must be a value or a plain (sync) callable making one, "
                f"got a coroutine function {outcome!r}"
            )
        return self._chaos("chaos_outcome", rate, enabled, outcome)

    def chaos_behavior(
        self,
        rate: float,
        behavior: Callable[[], Awaitable[Any]],
        *,
        enabled: bool | Callable[[], bool] = True,
    ) -> PipelineBuilder:
        """Run ``await behavior()`` (drop a cache, restart a pool...) before calling."""
        require_async("chaos_behavior", behavior)
        return self._chaos("chaos_behavior", rate, enabled, behavior)

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
        return Pipeline(tuple(self._strategies), self.name, self.clock)


class PipelineRegistry:
    """Named pipelines for an application, so handlers share them: ``registry.get("db")``."""

    def __init__(self) -> None:
        self._pipelines: dict[str, Pipeline] = {}

    def register(self, pipeline: Pipeline, *, name: str | None = None) -> Pipeline:
        if not isinstance(pipeline, Pipeline):
            raise TypeError(f"pipeline must be a Pipeline, got {pipeline!r}")
        key = text("name", name, optional=True) or pipeline.name
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

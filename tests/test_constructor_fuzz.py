"""Every public constructor, fed bad values one parameter at a time (issue 11 item 18).

For each class and factory that ``aioresilience.__all__`` exports (the data records, enums and
classes built only by the library are listed in ``NOT_CONSTRUCTORS`` with the reason), every
parameter in turn gets each value of ``BAD_VALUES`` (and, in the hypothesis test, random
objects) while the others keep a valid baseline. The constructor must either

- raise ``ValueError`` or ``TypeError`` whose message names the parameter, or
- build an object that works on a cheap first use, which may refuse (any
  ``ResilienceError``), time out or pass on the call's own ``OSError``, but never fails with
  another exception (OverflowError, ZeroDivisionError, AttributeError, an unawaited
  coroutine taken as true...).

First uses run on a fresh virtual-time loop, so sleeps and waits of any length cost nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import math
import random
import warnings
from collections.abc import Awaitable, Callable
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aioresilience as ar
from aioresilience._core.budget import TokenBudget
from aioresilience._core.token_bucket import TokenBucketAlgorithm
from aioresilience._support import validation as v
from aioresilience._support.validation import MIN_DIVISOR
from aioresilience.testing import run

# (constructor, parameter) cases that fail here until another engineer's branch is merged:
# the lead removes these marks after merging (strict: they must fail until then).
KNOWN_FAILING: dict[tuple[str, str], str] = {}


class FuzzCallableCalled(Exception):
    """What the fuzz's callables raise when called: the user's error, not the library's."""


def sync_callable(*args: Any, **kwargs: Any) -> Any:
    raise FuzzCallableCalled


async def async_callable(*args: Any, **kwargs: Any) -> Any:
    raise FuzzCallableCalled


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque>"


BAD_VALUES: list[Any] = [
    True,
    False,
    math.nan,
    math.inf,
    -math.inf,
    10**400,
    -(10**400),
    2**64,
    5e-324,
    1e-300,
    1e308,
    -1,
    0,
    0.5,
    "x",
    "",
    b"1",
    None,
    Opaque(),
    (1, 2, 3),
    (1,),
    [1],
    {"x": 10},
    Fraction(1, 2),
    1 + 2j,
    sync_callable,
    async_callable,
    ValueError,
    ValueError("x"),
]

RANDOM_OBJECTS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=2**53),
    st.floats(),
    st.floats(min_value=0, max_value=1e-290),
    st.text(max_size=4),
    st.binary(max_size=2),
    st.tuples(st.floats(), st.floats()),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.fractions(),
    st.decimals(allow_nan=True),
    st.complex_numbers(),
    st.sampled_from([Opaque(), sync_callable, async_callable, object, KeyError, len, print]),
)


# -- valid baselines and first uses ---------------------------------------------------------


async def ok(*args: Any, **kwargs: Any) -> str:
    return "ok"


async def fail() -> str:
    raise OSError("down")


class FailOnce:
    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls == 1:
            raise OSError("down")
        return "ok"


async def use_algorithm(algorithm: Any) -> None:
    for dropped in (False, True):
        assert math.isfinite(algorithm.update(10.0, 0.1, 5, dropped))


async def use_backoff(schedule: Any) -> None:
    rng = random.Random(1).random
    for attempt, previous in ((0, None), (1, 0.5), (60, 1e3), (10**6, 1e300)):
        delay = schedule.delay(attempt, previous, rng)
        assert delay >= 0 and not math.isnan(delay)
    repr(schedule)


async def use_limiter(limiter: Any) -> None:
    limiter.try_acquire()
    limiter.check()
    await limiter.acquire()
    repr(limiter)
    limiter.statistics()


async def use_call(guard: Any) -> None:
    await guard.call(ok)
    repr(guard)


async def use_retry(policy: Any) -> None:
    await policy.call(FailOnce())
    await policy.call(ok)


async def use_breaker(breaker: Any) -> None:
    await breaker.call(ok)
    for _ in range(3):
        with pytest.raises((OSError, ar.CircuitBreakerOpenError)):
            await breaker.call(fail)
    breaker.statistics()
    repr(breaker)


async def use_queue(queue: Any) -> None:
    queue.put_nowait(1)
    queue.get_nowait()
    queue.statistics()


async def use_worker_pool(pool: Any) -> None:
    # Checked before start() (statistics count started workers only): an unbounded count
    # would exhaust memory there.
    assert pool._workers <= 10_000, f"accepted workers={pool._workers}"
    pool.start()
    await asyncio.sleep(0)
    await pool.shutdown()


async def use_chaos(monkey: Any) -> None:
    await monkey(ok)()
    monkey.maybe_fail()
    await monkey.add_latency()


async def use_signal(signal: Any) -> None:
    if hasattr(signal, "observe"):
        signal.observe(0.1)
    if hasattr(signal, "track"):
        with signal.track():
            signal()
    value = signal()
    assert not math.isnan(value)


async def use_loop_lag(lag: Any) -> None:
    # The sampler runs every `interval`: a period the library cannot time (below MIN_DIVISOR)
    # would spin; a hundred samples are enough otherwise.
    assert lag.interval >= MIN_DIVISOR, f"accepted interval={lag.interval!r}"
    async with lag:
        await asyncio.sleep(min(1.0, 100 * lag.interval))
    assert not math.isnan(lag())


async def use_shedder(shedder: Any) -> None:
    shedder.check()
    await shedder.call(ok)


async def use_degradation(degradation: Any) -> None:
    await degradation.call()


async def use_tier(tier: Any) -> None:
    # A tier without a bound can only be the last one.
    tiers = [tier] if tier.up_to is None else [tier, ar.Tier("last", ok)]
    await ar.GracefulDegradation(lambda: 0.5, tiers).call()


async def use_listener(listener: Any) -> None:
    listener(ar.ResilienceEvent(strategy="s", at=0.0))
    listener.accepts(ar.Severity.INFO)


async def use_partitioned(bulkhead: Any) -> None:
    await bulkhead["key"].call(ok)


async def use_builder(builder: Any) -> None:
    await builder.chaos_latency(0.5, 0.1).build().execute(ok)


async def use_pipeline(pipeline: Any) -> None:
    await pipeline.execute(ok)


async def use_timeout(guard: Any) -> None:
    async with guard:
        await asyncio.sleep(0)


async def use_budget(budget: Any) -> None:
    await ar.Retry(budget=budget, backoff=ar.constant(0)).call(FailOnce())


async def use_hedge(hedge: Any) -> None:
    assert await hedge.call(FailOnce()) == "ok"  # the failure starts the hedge at once
    assert await hedge.call(ok) == "ok"


async def use_fallback(fallback: Any) -> None:
    await fallback.call(fail)
    await fallback.call(ok)


def pipeline() -> ar.Pipeline:
    return ar.Pipeline.builder("p").build()


def queue() -> ar.BackpressureQueue[int]:
    return ar.BackpressureQueue(2)


async def handler(item: Any) -> None:
    pass


Use = Callable[[Any], Awaitable[None]]


class Fresh:
    """A baseline value made anew for each construction (a queue a pool closes, ...)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self.factory = factory


class Case:
    """One constructor: how to call it with valid values, and how to use what it builds."""

    def __init__(
        self,
        name: str,
        build: Callable[..., Any],
        use: Use,
        /,
        signature_of: Callable[..., Any] | None = None,
        **baseline: Any,
    ) -> None:
        self.name = name
        self.build = build
        self.use = use
        self.baseline = baseline
        signature = inspect.signature(signature_of or build)
        self.parameters = [
            p.name for p in signature.parameters.values() if p.kind is not p.VAR_KEYWORD
        ]
        self.varargs = {p.name for p in signature.parameters.values() if p.kind is p.VAR_POSITIONAL}

    def call(self, **values: Any) -> Any:
        arguments = {
            name: value.factory() if isinstance(value, Fresh) else value
            for name, value in {**self.baseline, **values}.items()
        }
        args: list[Any] = []
        for name in self.varargs:  # a fuzzed *args parameter gets the value as its one item
            args.extend((arguments.pop(name),) if name in values else arguments.pop(name, ()))
        return self.build(*args, **arguments)


LIMITER = {"capacity": 5, "refill_rate": 1.0}
WINDOW = {"max_requests": 5, "window_seconds": 1.0}

CASES = [
    Case("AIMD", ar.AIMD, use_algorithm),
    Case("Vegas", ar.Vegas, use_algorithm),
    Case("Gradient2", ar.Gradient2, use_algorithm),
    Case("AdaptiveLimiter", ar.AdaptiveLimiter, use_call),
    Case("AdaptiveThrottle", ar.AdaptiveThrottle, use_call),
    Case("Backoff", ar.Backoff, use_backoff, kind="constant", base=1.0),
    Case("constant", ar.constant, use_backoff, delay=1.0),
    Case("linear", ar.linear, use_backoff, start=1.0),
    Case("exponential", ar.exponential, use_backoff),
    Case("BackpressureQueue", ar.BackpressureQueue, use_queue, maxsize=2),
    Case("Bulkhead", ar.Bulkhead, use_call, max_concurrent=2),
    Case("PartitionedBulkhead", ar.PartitionedBulkhead, use_partitioned, max_concurrent=2),
    Case("ChaosMonkey", ar.ChaosMonkey, use_chaos),
    Case("CircuitBreaker", ar.CircuitBreaker, use_breaker),
    Case(
        "CircuitBreaker(window='time')",
        ar.CircuitBreaker,
        use_breaker,
        window="time",
        window_size=10.0,
        failure_rate_threshold=0.5,
        failure_threshold=None,
        minimum_calls=2,
    ),
    Case("EventLoopLag", ar.EventLoopLag, use_loop_lag),
    Case("InFlight", ar.InFlight, use_signal),
    Case("LatencyEWMA", ar.LatencyEWMA, use_signal),
    Case("ExponentialBackoff", ar.ExponentialBackoff, use_retry),
    Case("Retry", ar.Retry, use_retry),
    Case("retry", ar.retry, use_retry, signature_of=ar.Retry),
    Case("RetryBudget.concurrency", ar.RetryBudget.concurrency, use_budget),
    Case("RetryBudget.tokens", ar.RetryBudget.tokens, use_budget),
    Case(
        "RetryBudget",
        ar.RetryBudget,
        use_budget,
        ledger=Fresh(lambda: TokenBudget(max_tokens=10.0, token_ratio=0.1)),
    ),
    Case("Hedge", ar.Hedge, use_hedge, idempotent=True),
    Case("Fallback", ar.Fallback, use_fallback, handlers=("x",)),
    Case("fallback", ar.fallback, use_fallback, signature_of=ar.Fallback, handlers=("x",)),
    Case("TokenBucket", ar.TokenBucket, use_limiter, **LIMITER),
    Case("LeakyBucket", ar.LeakyBucket, use_limiter, capacity=5, leak_rate=1.0),
    Case(
        "LeakyBucket(mode='shaper')",
        ar.LeakyBucket,
        use_limiter,
        capacity=5,
        leak_rate=1.0,
        mode="shaper",
    ),
    Case("GCRA", ar.GCRA, use_limiter, limit=5, period=1.0),
    Case("FixedWindowCounter", ar.FixedWindowCounter, use_limiter, **WINDOW),
    Case("SlidingWindowLog", ar.SlidingWindowLog, use_limiter, **WINDOW),
    Case("SlidingWindowCounter", ar.SlidingWindowCounter, use_limiter, **WINDOW),
    Case("RateLimiter", ar.RateLimiter, use_limiter, algorithm=TokenBucketAlgorithm(5, 1.0)),
    Case(
        "GracefulDegradation",
        ar.GracefulDegradation,
        use_degradation,
        signal=lambda: 0.5,
        tiers=[ar.Tier("full", ok, up_to=0.7), ar.Tier("cached", ok)],
    ),
    Case("Tier", ar.Tier, use_tier, name="t", handler=ok, up_to=0.9),
    Case("LoadShedder", ar.LoadShedder, use_shedder, signal=lambda: 0.5),
    Case("LoggingListener", ar.LoggingListener, use_listener),
    Case("PipelineBuilder", ar.PipelineBuilder, use_builder),
    Case(
        "PipelineRegistry().register",
        lambda *args, **kwargs: ar.PipelineRegistry().register(*args, **kwargs),
        use_pipeline,
        signature_of=ar.PipelineRegistry.register,
        pipeline=pipeline(),
    ),
    Case("WorkerPool", ar.WorkerPool, use_worker_pool, queue=Fresh(queue), handler=handler),
    # The builder's own options (those it passes on to a constructor are fuzzed there).
    Case(
        "builder.hedge",
        lambda **kw: ar.Pipeline.builder("p").hedge(**kw).build(),
        use_pipeline,
        signature_of=ar.PipelineBuilder.hedge,
        idempotent=True,
    ),
    Case(
        "builder.chaos_fault",
        lambda **kw: ar.Pipeline.builder("p", seed=1).chaos_fault(**kw).build(),
        use_pipeline,
        signature_of=ar.PipelineBuilder.chaos_fault,
        rate=0.0,  # a fault given is raised when injected: the fuzzed rate decides
    ),
    Case(
        "builder.chaos_latency",
        lambda **kw: ar.Pipeline.builder("p", seed=1).chaos_latency(**kw).build(),
        use_pipeline,
        signature_of=ar.PipelineBuilder.chaos_latency,
        rate=0.5,
        latency=0.1,
    ),
    Case(
        "builder.chaos_behavior",
        lambda **kw: ar.Pipeline.builder("p", seed=1).chaos_behavior(**kw).build(),
        use_pipeline,
        signature_of=ar.PipelineBuilder.chaos_behavior,
        rate=0.5,
        behavior=ok,
    ),
    Case(
        "builder.rate_limit",
        lambda **kw: ar.Pipeline.builder("p").rate_limit(**kw).build(),
        use_pipeline,
        signature_of=ar.PipelineBuilder.rate_limit,
        limiter=Fresh(lambda: ar.TokenBucket(5, 1.0)),
    ),
    Case("timeout", ar.timeout, use_timeout, seconds=1.0),
    Case("timeout_at", ar.timeout_at, use_timeout, when=1.0),
]
for case in CASES:  # `self` of an unbound method is not a parameter anyone passes
    if "self" in case.parameters:
        case.parameters.remove("self")

# Exported names that are not constructors users call with options, and why.
NOT_CONSTRUCTORS = {
    "RetryRun": "made by Retry.start(), from a Retry already validated",
    "AdaptiveStatistics": "a statistics record the library builds",
    "BulkheadStatistics": "a statistics record the library builds",
    "CircuitBreakerStatistics": "a statistics record the library builds",
    "QueueStatistics": "a statistics record the library builds",
    "RateLimiterStatistics": "a statistics record the library builds",
    "WorkerStatistics": "a statistics record the library builds",
    "CircuitStateChange": "an event record the library builds",
    "ResilienceEvent": "an event record the library builds",
    "RetryState": "a hook argument the library builds",
    "FallbackOutcome": "a hook argument the library builds",
    "Decision": "a rate-limit decision the library builds",
    "RatePolicy": "a rate-limit policy description the library builds",
    "Outcome": "a strategy's outcome record",
    "ResilienceContext": "built by the pipeline for each call",
    "current_context": "takes no parameter",
    "Attempt": "built by `async for attempt in policy`",
    "KeyedLimit": "built by limiter.for_key()",
    "Pipeline": "built by PipelineBuilder.build() (its register() is fuzzed)",
    "PipelineRegistry": "takes no parameter (its register() is fuzzed)",
    "Strategy": "a base class for custom strategies",
    "CircuitState": "an enum",
    "Priority": "an enum",
    "Severity": "an enum",
    "LimitAlgorithm": "a protocol",
    "SharedStore": "a protocol",
}


def test_every_export_is_fuzzed_or_excused() -> None:
    covered = {case.name.split("(")[0].split(".")[0] for case in CASES} | {"PipelineBuilder"}
    for name in ar.__all__:
        exported = getattr(ar, name)
        if isinstance(exported, type) and issubclass(exported, BaseException):
            continue  # the error tree has its own tests
        if isinstance(exported, type) and issubclass(exported, ar.ResilienceEvent):
            continue  # event records the library builds (test_events checks their shape)
        if isinstance(exported, type | Callable):  # type: ignore[arg-type]
            assert name in covered or name in NOT_CONSTRUCTORS, f"{name} is not fuzzed"
    assert set(KNOWN_FAILING) <= {(c.name, p) for c in CASES for p in c.parameters}


# -- the checks -------------------------------------------------------------------------------

ALLOWED_ON_USE = (ar.ResilienceError, OSError, FuzzCallableCalled)  # OSError: our call's own,
# TimeoutError (a timeout fired), ConnectionResetError (chaos)


def describe(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}...({len(text)} chars)"


_REFUSED: Any = object()


def construct(case: Case, parameter: str, value: Any) -> tuple[str | None, Any]:
    """(a problem, or None; the object built, or _REFUSED)."""
    where = f"{case.name}({parameter}={describe(value)})"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ar.PipelineOrderWarning)
        try:
            return None, case.call(**{parameter: value})
        except (ValueError, TypeError) as exc:
            if parameter not in str(exc):
                return f"{where}: {type(exc).__name__} not naming {parameter!r}: {exc}", _REFUSED
            return None, _REFUSED
        except Exception as exc:
            return f"{where}: raised {type(exc).__name__}: {exc}", _REFUSED


async def first_use(case: Case, parameter: str, value: Any, built: Any) -> str | None:
    """None if what was built works, else what went wrong."""
    where = f"{case.name}({parameter}={describe(value)})"
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        try:
            async with asyncio.timeout(1e6):  # virtual seconds: a wait of any length ends
                await case.use(built)
        except ALLOWED_ON_USE:
            pass
        except Exception as exc:
            # What a user's callable returns is only known when it is called: its faults
            # are its own. Anything else is the constructor's.
            if not callable(value):
                return f"{where}: accepted, then first use raised {type(exc).__name__}: {exc}"
        del built  # an unawaited coroutine warns when freed (at once, by refcount)
    for warning in caught:
        if "was never awaited" in str(warning.message):
            return f"{where}: accepted an async callable, then called it without awaiting"
    return None


def check_all(case: Case, parameter: str, values: list[Any]) -> list[str]:
    """The problems found with each of ``values`` as ``parameter``; first uses of what was
    built run together on one virtual-time loop."""
    problems, accepted = [], []
    for value in values:
        problem, built = construct(case, parameter, value)
        if problem is not None:
            problems.append(problem)
        elif built is not _REFUSED:
            accepted.append((value, built))

    async def use_all() -> None:
        for value, built in accepted:
            problem = await first_use(case, parameter, value, built)
            if problem is not None:
                problems.append(problem)

    if accepted:
        run(use_all())
    return problems


def cases() -> list[Any]:
    params = []
    for case in CASES:
        for parameter in case.parameters:
            branch = KNOWN_FAILING.get((case.name, parameter))
            marks = (
                [pytest.mark.xfail(strict=True, reason=f"fixed on branch {branch}")]
                if branch
                else []
            )
            params.append(pytest.param(case, parameter, id=f"{case.name}-{parameter}", marks=marks))
    return params


@pytest.fixture(autouse=True)
def quiet_logging() -> Any:
    """First uses that log (a failing hook, a listener) stay out of the test's output."""
    logger = logging.getLogger("aioresilience")
    level = logger.level
    logger.setLevel(logging.CRITICAL)
    yield
    logger.setLevel(level)


@pytest.mark.parametrize(("case", "parameter"), cases())
def test_bad_values_fail_at_construction_naming_the_parameter(case: Case, parameter: str) -> None:
    problems = check_all(case, parameter, BAD_VALUES)
    assert not problems, "\n".join(problems)


# The cases marked above join the random search once their marks are removed.
UNMARKED = [
    (case, parameter)
    for case in CASES
    for parameter in case.parameters
    if (case.name, parameter) not in KNOWN_FAILING
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(pair=st.sampled_from(UNMARKED), value=RANDOM_OBJECTS)
def test_random_objects_fail_at_construction_naming_the_parameter(
    pair: tuple[Case, str], value: Any
) -> None:
    case, parameter = pair
    problems = check_all(case, parameter, [value])
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_the_baseline_builds_and_works(case: Case) -> None:
    """The baselines are valid: a refusal above is about the fuzzed parameter alone."""

    async def main() -> None:
        # A refusal or an injected fault still means the first use ran.
        with contextlib.suppress(ar.ResilienceError, OSError):
            await case.use(case.call())

    run(main())


# -- the helpers themselves -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("check", "error", "message"),
    [
        (lambda: v.finite_positive("rate", 10**400), ValueError, "rate must be within float"),
        (lambda: v.finite_positive("rate", True), TypeError, "rate must be a number, got True"),
        (lambda: v.finite_positive("rate", math.nan), ValueError, "rate must be a positive"),
        (lambda: v.divisor("period", 5e-324), ValueError, "period must be >= 1e-12"),
        (lambda: v.divisor("period", 1e-300), ValueError, "period must be >= 1e-12"),
        (lambda: v.divisor("period", 1e13), ValueError, "period must be <= 1e\\+12"),
        (lambda: v.non_negative("delay", -math.inf), ValueError, "delay must be a finite"),
        (lambda: v.non_negative_or_none("w", 10**400), ValueError, "w must be within float"),
        (lambda: v.number("d", math.nan), ValueError, "d must be a number, got nan"),
        (lambda: v.positive_int("n", 10**400, maximum=10), ValueError, "n must be <= 10"),
        (lambda: v.non_negative_int("n", 1.0), TypeError, "n must be an int, got 1.0"),
        (lambda: v.fraction("p", 1.5), ValueError, r"p must be in \[0, 1\], got 1.5"),
        (lambda: v.fraction("p", 0, zero=False), ValueError, r"p must be in \(0, 1\], got 0"),
        (lambda: v.text("name", 5), TypeError, "name must be a str, got 5"),
        (lambda: v.one_of("kind", "x", ("a", "b")), ValueError, "kind must be one of"),
        (lambda: v.one_of("kind", 1, ("a",)), TypeError, "kind must be one of"),
        (
            lambda: v.positive_int("workers", -(10**400)),
            ValueError,
            r"workers must be >= 1, got -10000000000\.\.\. \(an int of 401 digits\)$",
        ),
    ],
)
def test_validation_helpers(check: Any, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        check()


def test_validation_helpers_return_floats_and_pass_good_values() -> None:
    assert v.finite_positive("x", 3) == 3.0 and type(v.finite_positive("x", 3)) is float
    assert v.divisor("x", 1e-12) == 1e-12
    assert v.number("x", math.inf) == math.inf
    assert v.non_negative_or_none("x", math.inf) is None
    assert v.text("x", None, optional=True) is None
    assert v.positive_int("x", 10**400) == 10**400  # a count may be huge unless bounded

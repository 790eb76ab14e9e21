"""Events: emitted once per occurrence, heard per primitive and per pipeline; listeners."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import sys
import warnings
from typing import Any
from unittest import mock

import pytest

import aioresilience as ar
from aioresilience import LoggingListener, Pipeline, ResilienceEvent, Severity


async def fail() -> None:
    raise OSError("down")


async def ok() -> str:
    return "ok"


async def test_every_primitive_reports_its_occurrences_once() -> None:
    seen: list[ResilienceEvent] = []
    limiter = ar.TokenBucket(1, 1.0, max_wait=0)
    breaker = ar.CircuitBreaker(failure_threshold=1, break_duration=1.0)
    bulkhead = ar.Bulkhead(1)
    queue: ar.BackpressureQueue[int] = ar.BackpressureQueue(1, policy="drop_newest")
    fallback = ar.Fallback("x")
    shedder = ar.LoadShedder(lambda: 1.0)
    for primitive in (limiter, breaker, bulkhead, queue, fallback, shedder):
        primitive.add_listener(seen.append)

    limiter.try_acquire()
    limiter.try_acquire()
    with pytest.raises(OSError):
        await breaker.call(fail)
    await bulkhead.acquire()
    with pytest.raises(ar.BulkheadFull):
        await bulkhead.acquire()
    await queue.put(1)
    await queue.put(2)
    await fallback.call(fail)
    with pytest.raises(ar.LoadShed):
        shedder.check(ar.Priority.SHEDDABLE)
    assert [(e.name, e.strategy, e.severity) for e in seen] == [
        ("rate_limited", "TokenBucket", Severity.WARNING),
        ("circuit_open", "CircuitBreaker", Severity.WARNING),
        ("bulkhead_rejected", "Bulkhead", Severity.WARNING),
        ("queue_dropped", "BackpressureQueue", Severity.WARNING),
        ("fallback_used", "Fallback", Severity.WARNING),
        ("shed", "LoadShedder", Severity.WARNING),
    ]
    with pytest.raises(AttributeError):  # frozen: the fields cannot change
        seen[0].strategy = "x"  # type: ignore[misc]


async def test_pipeline_listeners_hear_every_strategy_with_the_pipeline_name() -> None:
    events: list[ResilienceEvent] = []
    pipeline = (
        Pipeline.builder("orders")
        .timeout(10)
        .retry(attempts=3, backoff=ar.constant(0.5))
        .timeout(1)
        .build()
    )
    pipeline.add_listener(events.append)

    async def hang() -> None:
        await asyncio.sleep(100)

    with pytest.raises(ar.TimeoutExceeded):
        await pipeline.execute(hang)
    names = [e.name for e in events]
    assert names == [
        "timeout",
        "attempt",
        "retry_scheduled",
        "timeout",
        "attempt",
        "retry_scheduled",
        "timeout",
        "attempt",
        "retry_gave_up",
        "pipeline_executed",
    ]
    assert all(e.pipeline == "orders" for e in events)
    assert events[1].details["outcome"] == "failure" and events[1].details["duration"] == 1.0
    assert events[-1].details == {"duration": 4.0, "outcome": "failure"}


async def test_a_pipeline_inside_a_call_is_heard_by_its_own_listeners_alone() -> None:
    """As documented: the outer pipeline hears a bare primitive run inside its call, not the
    strategies of another pipeline run there (their context is the inner pipeline's)."""
    outer_heard: list[str] = []
    inner_heard: list[str] = []
    inner = Pipeline.builder("inner").retry(attempts=2, backoff=ar.constant(0.1)).build()
    outer = Pipeline.builder("outer").timeout(5).build()
    outer.add_listener(lambda e: outer_heard.append(f"{e.pipeline}:{e.name}"))
    inner.add_listener(lambda e: inner_heard.append(f"{e.pipeline}:{e.name}"))
    calls = 0

    async def flaky() -> None:
        nonlocal calls
        calls += 1
        if calls < 2:
            raise OSError

    async def body() -> None:
        await inner.execute(flaky)
        limiter = ar.GCRA(rate="1/second", name="bare")
        limiter.try_acquire()
        limiter.try_acquire()

    await outer.execute(body)
    assert "inner:retry_scheduled" in inner_heard
    assert not [name for name in outer_heard if name.startswith("inner:")], outer_heard
    assert "outer:rate_limited" in outer_heard, outer_heard


async def test_no_listener_no_event_object() -> None:
    limiter = ar.TokenBucket(1, 1.0)
    limiter.try_acquire()
    assert not limiter.try_acquire()  # nobody listens: nothing built, nothing raised


async def test_failing_and_async_listeners(caplog: pytest.LogCaptureFixture) -> None:
    heard: list[str] = []

    def broken(event: ResilienceEvent) -> None:
        raise RuntimeError("listener bug")

    async def slow(event: ResilienceEvent) -> None:
        await asyncio.sleep(0)
        heard.append(event.name)

    limiter = ar.TokenBucket(1, 1.0, max_wait=0)
    limiter.add_listener(broken)
    limiter.add_listener(slow)
    limiter.try_acquire()
    with caplog.at_level(logging.ERROR, logger="aioresilience"):
        with pytest.raises(ar.RateLimited):
            await limiter.acquire()  # the call's own outcome, untouched by the listener bug
        await asyncio.sleep(0.1)
    assert heard == ["rate_limited"]
    assert "listener bug" in caplog.text


async def test_logging_listener(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("aioresilience.test")
    limiter = ar.TokenBucket(1, 1.0)
    limiter.add_listener(LoggingListener(logger))
    limiter.try_acquire()
    with caplog.at_level(logging.WARNING, logger="aioresilience.test"):
        limiter.try_acquire()
    [record] = caplog.records
    assert record.levelno == logging.WARNING
    assert record.resilience_event == "rate_limited"  # type: ignore[attr-defined]
    assert record.strategy == "TokenBucket"  # type: ignore[attr-defined]
    caplog.clear()
    with caplog.at_level(logging.ERROR, logger="aioresilience.test"):
        limiter.try_acquire()
    assert not caplog.records  # level disabled: nothing formatted or written


async def test_opentelemetry_listener_with_the_sdk_in_memory_reader() -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from aioresilience.integrations.opentelemetry import OpenTelemetryListener

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    listener = OpenTelemetryListener(provider.get_meter("test"))
    pipeline = Pipeline.builder("checkout").retry(attempts=2, backoff=ar.constant(0)).build()
    pipeline.add_listener(listener)
    with pytest.raises(OSError):
        await pipeline.execute(fail)
    metrics: dict[str, Any] = {}
    for resource in reader.get_metrics_data().resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                metrics[metric.name] = metric
    events = {
        (dict(p.attributes)["event"], p.value)
        for p in metrics["aioresilience.events"].data.data_points
    }
    assert ("attempt", 2) in events and ("retry_gave_up", 1) in events
    [pipeline_point] = metrics["aioresilience.pipeline.duration"].data.data_points
    assert pipeline_point.count == 1
    assert dict(pipeline_point.attributes) == {"pipeline": "checkout", "outcome": "failure"}
    assert metrics["aioresilience.attempt.duration"].unit == "s"


async def test_prometheus_listener_with_a_private_registry() -> None:
    from prometheus_client import CollectorRegistry

    from aioresilience.integrations.prometheus import PrometheusListener

    registry = CollectorRegistry()
    pipeline = Pipeline.builder("search").retry(attempts=3, backoff=ar.constant(0)).build()
    pipeline.add_listener(PrometheusListener(registry))
    with pytest.raises(OSError):
        await pipeline.execute(fail)
    assert (
        registry.get_sample_value(
            "aioresilience_events_total",
            {
                "event": "retry_scheduled",
                "strategy": "Retry",
                "pipeline": "search",
                "severity": "info",
            },
        )
        == 2
    )
    assert (
        registry.get_sample_value(
            "aioresilience_pipeline_duration_seconds_count",
            {"pipeline": "search", "outcome": "failure"},
        )
        == 1
    )
    with pytest.raises(TypeError, match="registry must be a prometheus_client CollectorRegistry"):
        PrometheusListener(None)  # type: ignore[arg-type]


def test_prometheus_listener_refused_by_a_clash_leaves_nothing_registered() -> None:
    """A clash on its last metric used to leave the first two in the registry (half-built):
    a second try, once the clash was removed, failed on those."""
    from prometheus_client import CollectorRegistry, Histogram

    from aioresilience.integrations.prometheus import PrometheusListener

    registry = CollectorRegistry()
    clash = Histogram("aioresilience_pipeline_duration_seconds", "mine", registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusListener(registry)
    assert registry.get_sample_value("aioresilience_events_total") is None
    assert not any(n.startswith("aioresilience_events") for n in registry._names_to_collectors)
    registry.unregister(clash)
    PrometheusListener(registry)  # nothing of the refused one is left in the way


def test_opentelemetry_listener_refuses_a_meter_that_is_not_one() -> None:
    """A wrong meter failed with AttributeError ('str' object has no attribute
    'create_counter'), naming neither the parameter nor what it wants."""
    from opentelemetry.sdk.metrics import MeterProvider

    from aioresilience.integrations.opentelemetry import OpenTelemetryListener

    for wrong in ("meter", MeterProvider()):
        with pytest.raises(TypeError, match=r"meter must be an opentelemetry.metrics.Meter"):
            OpenTelemetryListener(wrong)
    OpenTelemetryListener(MeterProvider().get_meter("test"))  # the SDK's meters, as before
    OpenTelemetryListener()  # the global provider's
    stand_in = mock.Mock(spec=["create_counter", "create_histogram"])
    OpenTelemetryListener(stand_in)  # a test's stand-in with the two methods, as before
    assert stand_in.create_counter.called


@pytest.mark.parametrize(
    ("namespace", "error"),
    [(3, TypeError), (None, TypeError), ("my-app", ValueError), ("a b", ValueError)],
)
def test_prometheus_listener_refuses_a_namespace_that_makes_no_metric_name(
    namespace: Any, error: type
) -> None:
    """namespace=3 failed with "unsupported operand type(s) for +"; None, "my-app" and
    "a b" registered metrics named "events_total", "my-app_events_total", "a b_events_total"
    (not snake_case names; only quoted in the UTF-8 exposition format)."""
    from prometheus_client import CollectorRegistry

    from aioresilience.integrations.prometheus import PrometheusListener

    registry = CollectorRegistry()
    with pytest.raises(error, match=rf"namespace must be a metric name prefix.*{namespace!r}"):
        PrometheusListener(registry, namespace=namespace)
    assert not list(registry.collect())  # nothing registered
    PrometheusListener(registry, namespace="shop_2")
    assert registry.get_sample_value("shop_2_events_total") is None  # registered, not yet seen
    assert "shop_2_events" in {metric.name for metric in registry.collect()}


# -- issue 11 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (
            lambda: LoggingListener(5),  # type: ignore[arg-type]
            TypeError,
            "logger must be a logging.Logger, a logging.LoggerAdapter or None, got 5",
        ),
        (
            lambda: LoggingListener(levels={"x": 10}),
            ValueError,
            "levels keys must be Severity members, got 'x'",
        ),  # type: ignore[dict-item]
        (lambda: LoggingListener(levels={99: 10}), ValueError, "levels keys must be Severity"),  # type: ignore[dict-item]
        (
            lambda: LoggingListener(levels={Severity.INFO: "x"}),
            TypeError,
            "levels values must be logging levels",
        ),  # type: ignore[dict-item]
        (lambda: LoggingListener(levels={Severity.INFO: True}), TypeError, "levels values must be"),
        (lambda: LoggingListener(levels=[1]), TypeError, "levels must be a mapping"),  # type: ignore[arg-type]
        (
            lambda: ar.PipelineRegistry().register(5),
            TypeError,
            "pipeline must be a Pipeline, got 5",
        ),  # type: ignore[arg-type]
        (
            lambda: ar.PipelineRegistry().register(Pipeline.builder("p").build(), name=5),
            TypeError,
            "name must be a str or None, got 5",
        ),  # type: ignore[arg-type]
    ],
)
def test_listener_and_registry_bad_values(build: Any, error: type, message: str) -> None:
    """Issue 11 item 18: no AttributeError, no accepted typo in the levels."""
    with pytest.raises(error, match=message):
        build()


def test_logging_listener_takes_int_severities_and_adapters(
    caplog: pytest.LogCaptureFixture,
) -> None:
    listener = LoggingListener(levels={20: logging.WARNING})
    assert listener.levels[Severity.INFO] == logging.WARNING
    adapter = logging.LoggerAdapter(logging.getLogger("aioresilience.test"), {})
    with caplog.at_level(logging.INFO, logger="aioresilience.test"):
        LoggingListener(adapter)(ResilienceEvent(strategy="s", at=0.0))  # type: ignore[arg-type]
    assert [r.getMessage() for r in caplog.records] == ["event from s {}"]


def test_logging_listener_through_an_adapter_keeps_the_structured_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A LoggerAdapter's process() replaces the call's extra with its own: through one (even
    one with no fields), the records lost resilience_event, strategy, details and event."""
    base = logging.getLogger("aioresilience.test.adapter")
    inner = logging.LoggerAdapter(base, {"request_id": "r1"})
    outer = logging.LoggerAdapter(inner, {"service": "shop"})
    limiter = ar.TokenBucket(1, 1.0, name="api")
    limiter.add_listener(LoggingListener(outer))
    limiter.try_acquire()
    with caplog.at_level(logging.WARNING, logger="aioresilience.test.adapter"):
        assert not limiter.try_acquire()
    [record] = caplog.records
    assert record.resilience_event == "rate_limited"  # type: ignore[attr-defined]
    assert record.strategy == "api"  # type: ignore[attr-defined]
    assert isinstance(record.event, ar.RateLimitExceeded)  # type: ignore[attr-defined]
    assert record.details["cost"] == 1  # type: ignore[attr-defined]
    assert (record.request_id, record.service) == ("r1", "shop")  # type: ignore[attr-defined]
    assert record.getMessage().startswith("rate_limited from api ")


# -- issue 12: one event shape -----------------------------------------------------------------


def _event_classes() -> list[type[ResilienceEvent]]:
    """Every event class the package defines (the public hub exports them all)."""
    found: list[type[ResilienceEvent]] = []
    pending: list[type[ResilienceEvent]] = [ResilienceEvent]
    while pending:
        kind = pending.pop()
        found.append(kind)
        pending.extend(kind.__subclasses__())
    # (slots=True makes each dataclass anew: the first class lingers among the subclasses
    # until collected; the module's name is the real one.)
    return [
        k
        for k in found
        if k.__module__.startswith("aioresilience")
        and vars(sys.modules[k.__module__]).get(k.__name__) is k
    ]


def test_every_event_class_is_frozen_slotted_typed_and_exported() -> None:
    classes = _event_classes()
    assert len(classes) > 20
    for kind in classes:
        assert getattr(ar, kind.__name__) is kind, kind  # exported from the hub
        assert "__slots__" in vars(kind) and "__dict__" not in dir(kind), kind
        params = kind.__dataclass_params__
        assert params.frozen, kind
        assert isinstance(kind.name, str) and isinstance(kind.severity, Severity), kind
        for field in dataclasses.fields(kind):  # typed fields, no string-keyed bag
            assert field.name != "details", kind
            mapping = "Mapping" in str(field.type) or "dict" in str(field.type)
            assert not mapping or field.name == "kwargs", (kind, field)  # the call's own
    # The names of issue 11 and before stay importable: aliases, or the common base.
    assert ar.CircuitStateChange is ar.CircuitStateChanged
    assert ar.FallbackOutcome is ar.FallbackUsed
    assert issubclass(ar.RetryScheduled, ar.RetryState)
    assert issubclass(ar.RetryGaveUp, ar.RetryState)
    refusals = {k.__name__ for k in classes if issubclass(k, ar.CallRejected)}
    assert {"RateLimitExceeded", "CircuitRejected", "BulkheadRejected", "QueueRejected"} <= (
        refusals
    )


def test_details_derive_from_the_fields_and_are_read_only() -> None:
    event = ar.RateLimitExceeded(strategy="api", at=1.0, key="k", cost=2, retry_after=0.5)
    assert event.details == {"key": "k", "cost": 2, "retry_after": 0.5}
    with pytest.raises(TypeError):
        event.details["cost"] = 3  # type: ignore[index]
    with pytest.raises(AttributeError):
        event.cost = 3  # type: ignore[misc]


async def test_retry_hooks_get_the_object_the_listeners_hear() -> None:
    heard: list[ResilienceEvent] = []
    hooked: list[ar.RetryState] = []
    policy = ar.Retry(
        attempts=2,
        backoff=ar.constant(0.5),
        before_sleep=hooked.append,
        on_give_up=hooked.append,
        name="fetch",
    )
    policy.add_listener(heard.append)
    with pytest.raises(OSError):
        await policy.call(fail)
    scheduled, gave_up = hooked
    assert [e for e in heard if isinstance(e, ar.RetryState)] == hooked
    assert heard[0] is scheduled and heard[1] is gave_up  # the same objects, not copies
    assert isinstance(scheduled, ar.RetryScheduled) and isinstance(gave_up, ar.RetryGaveUp)
    assert (scheduled.attempt, scheduled.delay, scheduled.reason) == (1, 0.5, "retrying")
    assert isinstance(scheduled.exception, OSError) and scheduled.policy == "fetch"
    assert (gave_up.attempt, gave_up.reason, gave_up.at) == (2, "attempts", 0.5)


async def test_a_not_retryable_first_failure_reaches_the_hook_not_the_listeners() -> None:
    heard: list[ResilienceEvent] = []
    hooked: list[ar.RetryState] = []
    policy = ar.Retry(attempts=3, retry_on=KeyError, on_give_up=hooked.append)
    policy.add_listener(heard.append)
    with pytest.raises(OSError):
        await policy.call(fail)
    assert heard == [] and [s.reason for s in hooked] == ["not_retryable"]


async def test_breaker_state_listeners_get_the_object_the_listeners_hear() -> None:
    heard: list[ResilienceEvent] = []
    changes: list[ar.CircuitStateChange] = []
    breaker = ar.CircuitBreaker(
        failure_threshold=1, break_duration=2.0, on_state_change=[changes.append], name="db"
    )
    breaker.add_listener(heard.append)
    with pytest.raises(OSError):
        await breaker.call(fail)
    with pytest.raises(ar.CircuitBreakerOpenError):
        await breaker.call(ok)
    opened, rejected = heard
    assert changes == [opened] and changes[0] is opened
    assert isinstance(opened, ar.CircuitOpened) and opened.name == "circuit_open"
    assert (opened.old, opened.new, opened.retry_after, opened.breaker) == (
        ar.CircuitState.CLOSED,
        ar.CircuitState.OPEN,
        2.0,
        "db",
    )
    assert isinstance(rejected, ar.CircuitRejected) and rejected.retry_after == 2.0


async def test_fallback_handler_callback_and_listeners_share_one_object() -> None:
    heard: list[ResilienceEvent] = []
    notified: list[ar.FallbackUsed] = []
    handled: list[ar.FallbackOutcome] = []

    def handler(outcome: ar.FallbackOutcome) -> str:
        handled.append(outcome)
        return "cached"

    fallback = ar.Fallback(handler, on_fallback=notified.append)
    fallback.add_listener(heard.append)
    assert await fallback.call(fail) == "cached"
    [event] = heard
    assert notified == [event] and handled == [event] and handled[0] is event
    assert isinstance(event.exception, OSError) and event.args == ()
    assert event.details == {"outcome": "OSError"}  # never the call's arguments in a log


async def test_typed_fields_of_the_guards_events() -> None:
    heard: list[ResilienceEvent] = []
    limiter = ar.TokenBucket(1, 1.0)
    bulkhead = ar.Bulkhead(1, max_queue=0)
    for primitive in (limiter, bulkhead):
        primitive.add_listener(heard.append)
    limiter.try_acquire(key=None)
    limiter.try_acquire(key=None)
    await bulkhead.acquire()
    with pytest.raises(ar.BulkheadFull):
        await bulkhead.acquire()
    limited, full = heard
    assert isinstance(limited, ar.RateLimitExceeded) and limited.cost == 1
    assert limited.retry_after == pytest.approx(1.0)
    assert isinstance(full, ar.BulkheadRejected) and (full.reason, full.active) == ("full", 1)


async def test_a_block_put_past_its_timeout_is_heard_as_a_rejection() -> None:
    # Counted in rejected, so heard too: as put_nowait on the same full queue is.
    heard: list[ResilienceEvent] = []
    queue: ar.BackpressureQueue[int] = ar.BackpressureQueue(1, policy="block")
    queue.add_listener(heard.append)
    await queue.put(1)
    with pytest.raises(ar.QueueFull):
        queue.put_nowait(2)
    with pytest.raises(ar.QueueFull):
        await queue.put(3, timeout=2)
    loop = asyncio.get_running_loop()
    assert [(type(e).__name__, e.policy) for e in heard] == [("QueueRejected", "block")] * 2
    assert heard[1].at == loop.time()
    assert queue.statistics().rejected == 2


def test_a_refusal_by_check_is_heard_as_by_try_acquire() -> None:
    # check() is what every web integration decides with: its 429s reach the listeners.
    heard: list[ResilienceEvent] = []
    limiter = ar.FixedWindowCounter(1, 60)
    limiter.add_listener(heard.append)
    assert limiter.check(key="k") and not limiter.check(key="k")
    assert not limiter.try_acquire(key="k")
    assert [type(e).__name__ for e in heard] == ["RateLimitExceeded", "RateLimitExceeded"]
    assert heard[0].key == "k" and 0 < heard[0].retry_after <= 60.0
    assert limiter.statistics().rejected == 2


async def test_pipeline_timing_events_are_typed() -> None:
    events: list[ResilienceEvent] = []
    pipeline = Pipeline.builder("p").retry(attempts=2, backoff=ar.constant(0)).build()
    pipeline.add_listener(events.append)
    with pytest.raises(OSError):
        await pipeline.execute(fail)
    attempts = [e for e in events if isinstance(e, ar.AttemptCompleted)]
    assert [(a.attempt, a.outcome) for a in attempts] == [(1, "failure"), (2, "failure")]
    [executed] = [e for e in events if isinstance(e, ar.PipelineExecuted)]
    assert (executed.outcome, executed.duration, executed.pipeline) == ("failure", 0.0, "p")


async def test_one_rule_for_async_callbacks(caplog: pytest.LogCaptureFixture) -> None:
    """Hooks are awaited before the retry goes on; notifications run on as tasks."""
    order: list[str] = []

    async def hook(state: ar.RetryState) -> None:
        await asyncio.sleep(0.25)
        order.append(f"hook {state.attempt}")

    async def notification(event: ResilienceEvent) -> None:
        await asyncio.sleep(1.0)  # longer than the hook: the retry does not wait for it
        order.append(f"listener {event.name}")

    async def failing(event: ResilienceEvent) -> None:
        raise RuntimeError("async listener bug")

    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        order.append(f"attempt {attempts}")
        if attempts == 1:
            raise OSError("once")
        return "ok"

    policy = ar.Retry(attempts=2, backoff=ar.constant(0), before_sleep=hook)
    policy.add_listener(notification)
    policy.add_listener(failing)
    with caplog.at_level(logging.ERROR, logger="aioresilience"):
        assert await policy.call(flaky) == "ok"
        assert order == ["attempt 1", "hook 1", "attempt 2"]  # the listener still sleeps
        await asyncio.sleep(2)
    assert order[-1] == "listener retry_scheduled"
    assert "async listener bug" in caplog.text


def test_an_async_notification_outside_a_loop_is_dropped_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def listener(event: ResilienceEvent) -> None:
        raise AssertionError("never runs")

    limiter = ar.TokenBucket(1, 1.0)
    limiter.add_listener(listener)
    with caplog.at_level(logging.ERROR, logger="aioresilience"), warnings.catch_warnings():
        warnings.simplefilter("error")  # no "coroutine was never awaited"
        limiter.try_acquire()
        assert not limiter.try_acquire()  # the call's own answer, untouched
    assert "outside a running loop" in caplog.text


async def test_nothing_is_built_when_nobody_would_act(monkeypatch: pytest.MonkeyPatch) -> None:
    from aioresilience._support import events

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("an event was built")

    monkeypatch.setattr(events, "build", refuse)
    logger = logging.getLogger("aioresilience.test.quiet")
    logger.setLevel(logging.CRITICAL)
    limiter = ar.TokenBucket(1, 1.0)
    limiter.try_acquire()
    assert not limiter.try_acquire()  # no listener
    limiter.add_listener(LoggingListener(logger))
    assert not limiter.try_acquire()  # a listener whose level is disabled


def test_a_listener_added_during_an_emission_hears_the_next_event_not_this_one() -> None:
    breaker = ar.CircuitBreaker(name="b", failure_threshold=1)
    heard: list[str] = []

    def spawner(event: object) -> None:
        heard.append(type(event).__name__)
        breaker.add_listener(spawner)  # (walking the live list, one emission never ended)

    breaker.add_listener(spawner)
    breaker.trip()
    assert heard == ["CircuitOpened"]
    breaker.reset()
    assert heard == ["CircuitOpened", "CircuitClosed", "CircuitClosed"]  # now two listen


async def test_remove_listener_detaches_one_listener_from_every_kind_of_source() -> None:
    heard: list[str] = []
    kept: list[str] = []
    limiter = ar.TokenBucket(1, 1.0, max_wait=0)
    services: ar.PartitionedBulkhead[str] = ar.PartitionedBulkhead(1)
    pipeline = Pipeline.builder("p").bulkhead(1).build()

    def listener(event: ResilienceEvent) -> None:
        heard.append(type(event).__name__)

    for source in (limiter, services, pipeline):
        source.add_listener(listener)
        source.add_listener(lambda event: kept.append(type(event).__name__))
    services["a"]  # opened before the removal: it loses the listener too
    services["z"].remove_listener(listener)  # taken off one partition by hand first
    for source in (limiter, services, pipeline):
        source.remove_listener(listener)
        with pytest.raises(ValueError, match="never added"):
            source.remove_listener(listener)
    limiter.try_acquire()
    limiter.try_acquire()
    for key in "ab":  # "b" opened after the removal
        async with services[key]:
            with pytest.raises(ar.BulkheadFull):
                await services[key].call(ok)
    await pipeline.execute(ok)
    assert heard == []
    assert kept == ["RateLimitExceeded", "BulkheadRejected", "BulkheadRejected", "PipelineExecuted"]
    with pytest.raises(ValueError, match="never added"):
        ar.Bulkhead(1).remove_listener(listener)  # nothing ever added


def test_remove_state_listener_and_removal_during_an_emission() -> None:
    changes: list[str] = []
    breaker = ar.CircuitBreaker(
        failure_threshold=1, on_state_change=[lambda c: changes.append("a")]
    )
    heard: list[str] = []

    def once(event: object) -> None:
        heard.append(type(event).__name__)
        breaker.remove_listener(once)  # removed while this emission walks: it ends normally

    breaker.add_listener(once)
    breaker.add_state_listener(changes.append)
    breaker.trip()
    breaker.remove_state_listener(changes.append)  # an equal bound method is found
    breaker.reset()
    assert heard == ["CircuitOpened"]
    assert changes[0] == "a" and len(changes) == 3 and changes[2] == "a"
    with pytest.raises(ValueError, match="never added"):
        breaker.remove_state_listener(print)

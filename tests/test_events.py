"""Events: emitted once per occurrence, heard per primitive and per pipeline; listeners."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

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


# -- issue 11 --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: LoggingListener(5), TypeError, "logger must be a logging.Logger or None, got 5"),  # type: ignore[arg-type]
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

"""Prometheus metrics for aioresilience events (extra ``prometheus``: ``prometheus-client``).

``PrometheusListener(registry)`` registers, in the registry you pass (never the global one
implicitly):

- ``aioresilience_events_total{event, strategy, pipeline, severity}``;
- ``aioresilience_attempt_duration_seconds{pipeline, strategy, outcome}``;
- ``aioresilience_pipeline_duration_seconds{pipeline, outcome}``.
"""

from __future__ import annotations

import re

from .._support.events import AttemptCompleted, PipelineExecuted, ResilienceEvent

try:
    from prometheus_client import CollectorRegistry, Counter, Histogram
except ImportError as error:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "PrometheusListener needs prometheus-client: pip install aioresilience[prometheus]"
    ) from error

__all__ = ["PrometheusListener"]

# snake_case metric names (the classic Prometheus charset, without the colons of recording
# rules); "" leaves the names unprefixed.
_NAMESPACE = re.compile(r"(?:[a-zA-Z_][a-zA-Z0-9_]*)?")


class PrometheusListener:
    def __init__(self, registry: CollectorRegistry, *, namespace: str = "aioresilience") -> None:
        if not isinstance(registry, CollectorRegistry):
            raise TypeError(
                f"registry must be a prometheus_client CollectorRegistry, got {registry!r}"
            )
        if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
            kind = TypeError if not isinstance(namespace, str) else ValueError
            raise kind(
                "namespace must be a metric name prefix (letters, digits, '_'; not starting"
                f" with a digit), got {namespace!r}"
            )
        made: list[Counter | Histogram] = []  # a clash on a later one unregisters these
        try:
            self._events = Counter(
                "events",
                "aioresilience events",
                ["event", "strategy", "pipeline", "severity"],
                namespace=namespace,
                registry=registry,
            )
            made.append(self._events)
            self._attempts = Histogram(
                "attempt_duration_seconds",
                "duration of each attempt inside a pipeline",
                ["pipeline", "strategy", "outcome"],
                namespace=namespace,
                registry=registry,
            )
            made.append(self._attempts)
            self._calls = Histogram(
                "pipeline_duration_seconds",
                "duration of each pipeline call",
                ["pipeline", "outcome"],
                namespace=namespace,
                registry=registry,
            )
        except BaseException:
            for metric in made:
                registry.unregister(metric)
            raise

    def __call__(self, event: ResilienceEvent) -> None:
        pipeline = event.pipeline or ""
        if isinstance(event, AttemptCompleted):
            self._attempts.labels(pipeline, event.strategy, event.outcome).observe(event.duration)
        elif isinstance(event, PipelineExecuted):
            self._calls.labels(pipeline, event.outcome).observe(event.duration)
        self._events.labels(event.name, event.strategy, pipeline, event.severity.name.lower()).inc()

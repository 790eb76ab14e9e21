"""OpenTelemetry metrics for aioresilience events (extra ``otel``: ``opentelemetry-api``).

``pipeline.add_listener(OpenTelemetryListener())`` records:

- ``aioresilience.events`` (counter): one per event, attributes ``event``, ``strategy``,
  ``pipeline``, ``severity`` — all low-cardinality (never a rate-limit key);
- ``aioresilience.attempt.duration`` (histogram, seconds): each attempt inside a pipeline
  (from :class:`AttemptCompleted` events), attributes ``pipeline``, ``strategy``, ``outcome``;
- ``aioresilience.pipeline.duration`` (histogram, seconds): each pipeline call (from
  :class:`PipelineExecuted` events), attributes ``pipeline``, ``outcome``.

Only the API package is needed; the application installs and configures the SDK.
"""

from __future__ import annotations

from typing import Any

from .._support.events import AttemptCompleted, PipelineExecuted, ResilienceEvent

try:
    from opentelemetry import metrics
except ImportError as error:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "OpenTelemetryListener needs opentelemetry-api: pip install aioresilience[otel]"
    ) from error

__all__ = ["OpenTelemetryListener"]


class OpenTelemetryListener:
    def __init__(self, meter: Any = None) -> None:
        if meter is None:
            meter = metrics.get_meter("aioresilience")
        elif not all(
            callable(getattr(meter, m, None)) for m in ("create_counter", "create_histogram")
        ):
            # (Duck-typed, as the API is: a test's stand-in meter with these two is taken.)
            raise TypeError(
                "meter must be an opentelemetry.metrics.Meter (create_counter, "
                f"create_histogram) or None, got {meter!r}"
            )
        self.meter = meter
        self._events = self.meter.create_counter(
            "aioresilience.events", unit="{event}", description="aioresilience events"
        )
        self._attempts = self.meter.create_histogram(
            "aioresilience.attempt.duration", unit="s", description="attempt duration"
        )
        self._calls = self.meter.create_histogram(
            "aioresilience.pipeline.duration", unit="s", description="pipeline call duration"
        )

    def __call__(self, event: ResilienceEvent) -> None:
        pipeline = event.pipeline or ""
        if isinstance(event, AttemptCompleted):
            self._attempts.record(
                event.duration,
                {"pipeline": pipeline, "strategy": event.strategy, "outcome": event.outcome},
            )
        elif isinstance(event, PipelineExecuted):
            self._calls.record(event.duration, {"pipeline": pipeline, "outcome": event.outcome})
        self._events.add(
            1,
            {
                "event": event.name,
                "strategy": event.strategy,
                "pipeline": pipeline,
                "severity": event.severity.name.lower(),
            },
        )

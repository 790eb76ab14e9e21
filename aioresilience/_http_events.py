"""The HTTP clients' events (integrations._client emits them; the hub exports them, as every
event class, without importing any HTTP library)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from ._support.events import CallRejected, ResilienceEvent, Severity

__all__ = ["HttpAttempt", "HttpPaused"]


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpAttempt(ResilienceEvent):
    """One attempt of an HTTP call ended: ``host`` (``"host"`` or ``"host:port"``, never the
    URL: low cardinality), ``method``, ``status`` (``None`` when no response came),
    ``attempt`` (1-based), ``duration`` in seconds, ``outcome`` (``"success"``,
    ``"retryable"``: a response this request may be retried on, ``"failure"``,
    ``"rejected"``: a guard refused it, ``"cancelled"``) and ``error`` (the exception's type
    name, or ``None``)."""

    name: ClassVar[str] = "http_attempt"
    severity: ClassVar[Severity] = Severity.DEBUG

    host: str
    method: str
    status: int | None
    attempt: int
    duration: float
    outcome: str
    error: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class HttpPaused(CallRejected):
    """A call was refused: its host asked for a pause (``Retry-After``, a spent quota)
    longer than ``max_pause`` (``retry_after`` is the time left), or the call was held
    ``max_pause`` for an answer that would tell the quota (``retry_after`` is ``None``)."""

    name: ClassVar[str] = "http_paused"

    host: str
    retry_after: float | None

"""The per-call context a pipeline sets for the strategies and callbacks running inside it."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .listeners import Listeners

__all__ = ["ResilienceContext", "context_var", "current_context"]


@dataclass(slots=True)
class ResilienceContext:
    """Per-call data for strategies and callbacks: ``attempt`` counts attempts started (retry
    and hedging increment it), ``properties`` is a small bag for the caller's own values.
    ``pipeline`` names the pipeline running the call."""

    operation_key: str | None = None
    attempt: int = 0
    properties: dict[str, Any] = field(default_factory=dict)
    pipeline: str | None = None
    listeners: Listeners | None = field(default=None, repr=False, compare=False)
    # Whether a listener wants the DEBUG timing events (checked once per call).
    _timed: bool = field(default=False, init=False, repr=False, compare=False)


context_var: contextvars.ContextVar[ResilienceContext | None] = contextvars.ContextVar(
    "aioresilience.context", default=None
)


def current_context() -> ResilienceContext | None:
    """The context of the pipeline call running in this task, if any."""
    return context_var.get()

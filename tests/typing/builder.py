"""Checked by mypy --strict (see pyproject), not run: the builder's options are typed.

Each ``# type: ignore[code]`` below is an error mypy must report (strict mode warns about an
unused ignore, so a builder method that stopped checking its options fails ``make typecheck``);
the lines without one must pass. tests/test_pipeline_options.py runs mypy on a snippet too and
reads the messages.
"""

from __future__ import annotations

import aioresilience as ar

builder = ar.Pipeline.builder("typed", seed=1)

# The correct forms pass.
builder.timeout(1.0)
builder.rate_limit(rate="100/s", max_wait=0.5, key=lambda context: context.operation_key)
builder.retry(attempts=3, backoff=ar.exponential(0.1, cap=1.0), retry_on=(OSError,))
builder.circuit_breaker(failure_threshold=5, window="time", window_size=10.0)
builder.bulkhead(4, max_queue=8)
builder.bulkhead(max_concurrent=4, max_wait=1.0)
builder.fallback("cached", on=(OSError,))
builder.adaptive_limit(initial_limit=10, max_limit=100)
builder.retry(ar.Retry(attempts=2))
builder.circuit_breaker(ar.CircuitBreaker())

# A misspelt option is an error in every method.
builder.rate_limit(rat="100/s")  # type: ignore[call-arg]
builder.retry(atempts=3)  # type: ignore[call-arg]
builder.circuit_breaker(failure_treshold=5)  # type: ignore[call-arg]
builder.bulkhead(4, max_queu=8)  # type: ignore[call-arg]
builder.fallback("cached", onn=(OSError,))  # type: ignore[call-arg]
builder.adaptive_limit(initial_limt=10)  # type: ignore[call-arg]

# So is a value of the wrong type.
builder.retry(attempts="3")  # type: ignore[arg-type]
builder.circuit_breaker(window="sliding")  # type: ignore[arg-type]

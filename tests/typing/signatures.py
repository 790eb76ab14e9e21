"""Checked by mypy --strict (see pyproject), not run: every decorator keeps the signature."""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any, assert_type

import aioresilience as ar

pipeline = ar.Pipeline.builder().retry().build()
breaker = ar.CircuitBreaker()
limiter = ar.TokenBucket(10, 1.0)


async def fetch(user_id: int, *, verbose: bool = False) -> str:
    return str(user_id)


for decorated in (
    pipeline(fetch),
    breaker(fetch),
    limiter(fetch),
    ar.retry(attempts=2)(fetch),
    ar.timeout(1)(fetch),
    ar.Bulkhead(2)(fetch),
    ar.fallback("x")(fetch),
    ar.AdaptiveLimiter()(fetch),
):
    call: Coroutine[Any, Any, str] = decorated(1, verbose=True)
    call.close()
    # With the signature lost these would type-check, and the ignores would be unused errors.
    decorated("one").close()  # type: ignore[arg-type]
    decorated(1, colour=True).close()  # type: ignore[call-arg]


async def uses() -> None:
    assert_type(await pipeline.execute(fetch, 1, verbose=True), str)
    assert_type(await breaker.call(fetch, 2), str)
    assert_type(await ar.Retry().call(fetch, 3), str)
    outcome = await pipeline.execute_outcome(fetch, 4)
    assert_type(outcome, ar.Outcome[str])

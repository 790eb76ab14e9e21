"""Construction-time validation of the rate limiters (issue 11, item 18): every bad input is a
ValueError or TypeError at construction naming the parameter and the value, never an
OverflowError, AttributeError or a failure at first use."""

from __future__ import annotations

import asyncio
import contextlib
import math
from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aioresilience import (
    GCRA,
    FixedWindowCounter,
    LeakyBucket,
    RateLimited,
    RateLimiter,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)
from aioresilience.testing import run

BAD: list[tuple[Callable[[], object], type[Exception], str]] = [
    (lambda: TokenBucket(5, 1e-300), ValueError, "refill_rate"),
    (lambda: LeakyBucket(5, 1e-300), ValueError, "leak_rate"),
    (lambda: GCRA(5, 1e308), ValueError, "period"),
    (lambda: FixedWindowCounter(5, 5e-324), ValueError, "window_seconds"),
    (lambda: SlidingWindowCounter(5, 5e-324), ValueError, "window_seconds"),
    (lambda: SlidingWindowLog(5, 5e-324), ValueError, "window_seconds"),
    (lambda: TokenBucket(10, 10**400), ValueError, "refill_rate"),
    (lambda: TokenBucket(10**400, 1.0), ValueError, "capacity"),
    (lambda: GCRA(10, 1.0, burst=10**400), ValueError, "burst"),
    (lambda: GCRA(10**400, 1.0), ValueError, "limit"),
    (lambda: FixedWindowCounter(10**400, 1.0), ValueError, "max_requests"),
    (lambda: TokenBucket(5, 1.0, max_keys=10**400), ValueError, "max_keys"),
    (lambda: TokenBucket(5, 1.0, max_keys=True), TypeError, "max_keys"),
    (lambda: TokenBucket(5, 1.0, max_wait=10**400), ValueError, "max_wait"),
    (lambda: TokenBucket(5, 1.0, max_wait=math.nan), ValueError, "max_wait"),
    (lambda: TokenBucket(5, 1.0, name=5), TypeError, "name"),  # type: ignore[arg-type]
    (lambda: GCRA(5, 1.0, name=b"x"), TypeError, "name"),  # type: ignore[arg-type]
    (lambda: TokenBucket(True, 1.0), TypeError, "capacity"),
    (lambda: TokenBucket(5, True), TypeError, "refill_rate"),  # type: ignore[arg-type]
    (lambda: LeakyBucket(5, 1.0, mode="queue"), ValueError, "mode"),
    (lambda: LeakyBucket(5, 1.0, mode=None), TypeError, "mode"),  # type: ignore[arg-type]
    (lambda: RateLimiter(5), TypeError, "algorithm"),  # type: ignore[arg-type]
    (lambda: RateLimiter(object()), TypeError, "algorithm"),  # type: ignore[arg-type]
    (lambda: RateLimiter("gcra"), TypeError, "algorithm"),  # type: ignore[arg-type]
]


@pytest.mark.parametrize(("build", "error", "name"), BAD)
def test_bad_input_fails_at_construction_naming_it(
    build: Callable[[], object], error: type[Exception], name: str
) -> None:
    with pytest.raises(error, match=name):
        build()


async def test_bad_call_arguments_name_themselves() -> None:
    limiter = TokenBucket(5, 1.0)
    bad_costs = [(True, TypeError), (1.5, TypeError), (0, ValueError), (10**400, ValueError)]
    for cost, error in bad_costs:
        with pytest.raises(error, match="cost"):
            await limiter.acquire(cost)  # type: ignore[arg-type]
        with pytest.raises(error, match="cost"):
            limiter.try_acquire(cost)  # type: ignore[arg-type]
    for timeout, error in [(10**400, ValueError), (math.nan, ValueError), (-1, ValueError)]:
        with pytest.raises(error, match="timeout"):
            await limiter.acquire(timeout=timeout)
    with pytest.raises(TypeError, match="timeout"):
        await limiter.acquire(timeout=True)  # type: ignore[arg-type]

    async def async_key(x: int) -> int:
        return x

    with pytest.raises(TypeError, match="key"):
        limiter.limit(key=async_key)
    assert limiter.statistics().admitted == 0  # nothing was consumed by the bad calls


VALUES = st.one_of(
    st.integers(-3, 10**6),
    st.sampled_from([10**400, 2**53, 2**53 + 1, True, False, None, "x", "10/s", b"1"]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([5e-324, 1e-300, 1e-12, 1e12, 1e308, -0.0]),
)
CONSTRUCTORS: list[Callable[..., RateLimiter[Any]]] = [
    TokenBucket,
    LeakyBucket,
    lambda a, b, **kw: LeakyBucket(a, b, mode="shaper", **kw),
    GCRA,
    lambda a, b, **kw: GCRA(a, 1.0, burst=b, **kw),
    FixedWindowCounter,
    SlidingWindowLog,
    SlidingWindowCounter,
]


@settings(max_examples=400, deadline=None)
@given(
    build=st.sampled_from(CONSTRUCTORS),
    a=VALUES,
    b=VALUES,
    max_wait=st.one_of(st.none(), VALUES),
    max_keys=st.one_of(st.just(100), VALUES),
)
def test_fuzzed_constructors_refuse_cleanly_or_work(
    build: Callable[..., RateLimiter[Any]], a: Any, b: Any, max_wait: Any, max_keys: Any
) -> None:
    try:
        limiter = build(a, b, max_wait=max_wait, max_keys=max_keys)
    except (ValueError, TypeError):
        return

    async def use() -> None:
        limiter.try_acquire()
        limiter.check()
        limiter.remaining()
        with contextlib.suppress(RateLimited, TimeoutError):
            await asyncio.wait_for(limiter.acquire(), 1.0)
        repr(limiter)

    run(use())

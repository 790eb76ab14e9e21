"""aioresilience: asyncio-native resilience primitives.

This module only re-exports; the code lives in the private modules.
"""

from ._core.ratelimit import Decision
from ._errors import RateLimited, Rejected, ResilienceError, TimeoutExceeded
from ._ratelimit import (
    GCRA,
    FixedWindowCounter,
    KeyedLimit,
    LeakyBucket,
    RateLimiter,
    RateLimiterStatistics,
    SlidingWindowCounter,
    SlidingWindowLog,
    TokenBucket,
)

__all__ = [
    "GCRA",
    "Decision",
    "FixedWindowCounter",
    "KeyedLimit",
    "LeakyBucket",
    "RateLimited",
    "RateLimiter",
    "RateLimiterStatistics",
    "Rejected",
    "ResilienceError",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "TimeoutExceeded",
    "TokenBucket",
]

__version__ = "0.1.0"

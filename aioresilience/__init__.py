"""aioresilience: asyncio-native resilience primitives.

This module only re-exports; the code lives in the private modules.
"""

from ._breaker import CircuitBreaker, CircuitBreakerStatistics, CircuitState, CircuitStateChange
from ._core.ratelimit import Decision
from ._errors import (
    CircuitBreakerOpenError,
    RateLimited,
    Rejected,
    ResilienceError,
    Throttled,
    TimeoutExceeded,
)
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
from ._retry import (
    AdaptiveThrottle,
    Attempt,
    ExponentialBackoff,
    Retry,
    RetryBudget,
    RetryState,
    retry,
)
from ._schedules import Backoff, constant, exponential, linear
from ._timeout import timeout

__all__ = [
    "GCRA",
    "AdaptiveThrottle",
    "Attempt",
    "Backoff",
    "CircuitBreaker",
    "CircuitBreakerOpenError",
    "CircuitBreakerStatistics",
    "CircuitState",
    "CircuitStateChange",
    "Decision",
    "ExponentialBackoff",
    "FixedWindowCounter",
    "KeyedLimit",
    "LeakyBucket",
    "RateLimited",
    "RateLimiter",
    "RateLimiterStatistics",
    "Rejected",
    "ResilienceError",
    "Retry",
    "RetryBudget",
    "RetryState",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "Throttled",
    "TimeoutExceeded",
    "TokenBucket",
    "constant",
    "exponential",
    "linear",
    "retry",
    "timeout",
]

__version__ = "0.1.0"

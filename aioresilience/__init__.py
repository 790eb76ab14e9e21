"""aioresilience: asyncio-native resilience primitives.

This module only re-exports; the code lives in the private modules.
"""

from ._adaptive import AIMD, AdaptiveLimiter, AdaptiveStatistics, Gradient2, Vegas
from ._backpressure import (
    BackpressureQueue,
    QueueClosed,
    QueueStatistics,
    WorkerPool,
    WorkerStatistics,
)
from ._breaker import CircuitBreaker, CircuitBreakerStatistics, CircuitState, CircuitStateChange
from ._bulkhead import Bulkhead, BulkheadStatistics, PartitionedBulkhead
from ._chaos import ChaosFault, ChaosMonkey
from ._core.ratelimit import Decision, RatePolicy
from ._degradation import GracefulDegradation, Tier
from ._fallback import Fallback, FallbackOutcome, fallback
from ._pipeline import (
    Outcome,
    Pipeline,
    PipelineBuilder,
    PipelineOrderWarning,
    PipelineRegistry,
    Strategy,
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
    Attempt,
    ExponentialBackoff,
    Retry,
    RetryBudget,
    RetryState,
    retry,
)
from ._shedding import LoadShedder, Priority
from ._signals import EventLoopLag, InFlight, LatencyEWMA
from ._support.context import ResilienceContext, current_context
from ._support.errors import (
    BulkheadFull,
    CircuitBreakerOpenError,
    ConcurrencyLimited,
    LoadShed,
    QueueFull,
    RateLimited,
    Rejected,
    ResilienceError,
    StoreError,
    Throttled,
    TimeoutExceeded,
)
from ._support.events import ResilienceEvent, Severity
from ._support.logging import LoggingListener
from ._support.schedules import Backoff, constant, exponential, linear
from ._throttle import AdaptiveThrottle
from ._timeout import timeout, timeout_at

__all__ = [
    "AIMD",
    "GCRA",
    "AdaptiveLimiter",
    "AdaptiveStatistics",
    "AdaptiveThrottle",
    "Attempt",
    "Backoff",
    "BackpressureQueue",
    "Bulkhead",
    "BulkheadFull",
    "BulkheadStatistics",
    "ChaosFault",
    "ChaosMonkey",
    "CircuitBreaker",
    "CircuitBreakerOpenError",
    "CircuitBreakerStatistics",
    "CircuitState",
    "CircuitStateChange",
    "ConcurrencyLimited",
    "Decision",
    "EventLoopLag",
    "ExponentialBackoff",
    "Fallback",
    "FallbackOutcome",
    "FixedWindowCounter",
    "GracefulDegradation",
    "Gradient2",
    "InFlight",
    "KeyedLimit",
    "LatencyEWMA",
    "LeakyBucket",
    "LoadShed",
    "LoadShedder",
    "LoggingListener",
    "Outcome",
    "PartitionedBulkhead",
    "Pipeline",
    "PipelineBuilder",
    "PipelineOrderWarning",
    "PipelineRegistry",
    "Priority",
    "QueueClosed",
    "QueueFull",
    "QueueStatistics",
    "RateLimited",
    "RateLimiter",
    "RateLimiterStatistics",
    "RatePolicy",
    "Rejected",
    "ResilienceContext",
    "ResilienceError",
    "ResilienceEvent",
    "Retry",
    "RetryBudget",
    "RetryState",
    "Severity",
    "SlidingWindowCounter",
    "SlidingWindowLog",
    "StoreError",
    "Strategy",
    "Throttled",
    "Tier",
    "TimeoutExceeded",
    "TokenBucket",
    "Vegas",
    "WorkerPool",
    "WorkerStatistics",
    "constant",
    "current_context",
    "exponential",
    "fallback",
    "linear",
    "retry",
    "timeout",
    "timeout_at",
]

__version__ = "0.1.0"

"""The one error tree of aioresilience.

::

    Exception
     └── ResilienceError                 root of everything the library raises itself
          ├── Rejected                   a guard refused to run your call; ``retry_after``
          │    │                          says when trying again can succeed (None: unknown)
          │    └── RateLimited           a rate limiter had no capacity within the wait allowed
          └── TimeoutExceeded            a deadline of ours expired (also a builtin TimeoutError)

Later patterns add their refusals under ``Rejected`` (circuit open, bulkhead full, queue full,
load shed), so ``except Rejected`` catches "the call never ran" in one place. Exceptions raised
by the user's own code are never wrapped: they pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Hashable

__all__ = ["RateLimited", "Rejected", "ResilienceError", "TimeoutExceeded"]


class ResilienceError(Exception):
    """Root of every exception aioresilience raises on its own behalf."""


class Rejected(ResilienceError):
    """A guard refused to run the call; nothing of the user's code ran.

    ``retry_after`` is the number of seconds after which the same request can succeed, when the
    guard knows it, else ``None``.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(Rejected):
    """A rate limiter could not admit the request within the wait the caller allowed."""

    def __init__(
        self,
        message: str,
        *,
        retry_after: float,
        limiter: str,
        key: Hashable = None,
        cost: int = 1,
    ) -> None:
        super().__init__(message, retry_after=retry_after)
        self.limiter = limiter
        self.key = key
        self.cost = cost


class TimeoutExceeded(ResilienceError, TimeoutError):
    """A deadline set through aioresilience expired. Also a builtin ``TimeoutError``."""

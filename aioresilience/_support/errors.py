"""The one error tree of aioresilience.

::

    Exception
     └── ResilienceError                 root of everything the library raises itself
          ├── Rejected                   a guard refused to run your call; ``retry_after``
          │    │                          says when trying again can succeed (None: unknown)
          │    ├── RateLimited           a rate limiter had no capacity within the wait allowed
          │    ├── CircuitBreakerOpenError  the circuit is open (or its probes are all taken)
          │    ├── Throttled             client-side adaptive throttling refused the call
          │    ├── BulkheadFull          no slot free and the wait queue full (or wait too long)
          │    ├── QueueFull             a backpressure queue refused an item
          │    ├── LoadShed              shed by priority while the system is overloaded
          │    └── ConcurrencyLimited    an adaptive concurrency limit is reached
          ├── TimeoutExceeded            a deadline of ours expired (also a builtin TimeoutError)
          ├── QueueClosed                a closed backpressure queue: no puts; no gets once
          │                               empty (also asyncio.QueueShutDown on Python 3.13+)
          ├── ChaosFault                 the fault chaos injection raises by default
          └── StoreError                 a shared store (Redis) failed in a way no policy covers

Later patterns add their refusals under ``Rejected`` (circuit open, bulkhead full, queue full,
load shed), so ``except Rejected`` catches "the call never ran" in one place. Exceptions raised
by the user's own code are never wrapped: they pass through unchanged.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Hashable
from typing import Any

__all__ = [
    "BulkheadFull",
    "ChaosFault",
    "CircuitBreakerOpenError",
    "ConcurrencyLimited",
    "LoadShed",
    "QueueClosed",
    "QueueFull",
    "RateLimited",
    "Rejected",
    "ResilienceError",
    "StoreError",
    "Throttled",
    "TimeoutExceeded",
]


class ResilienceError(Exception):
    """Root of every exception aioresilience raises on its own behalf."""

    def __reduce__(self) -> tuple[Any, ...]:
        # Pickle and copy rebuild an exception as ``cls(*args)``, which lacks the keyword-only
        # fields (``seconds=``, ``retry_after=``...): rebuild without __init__, then restore
        # the fields from __dict__ (as BaseException's own reduction does).
        return _rebuild, (type(self), self.args), self.__dict__


def _rebuild(cls: type[BaseException], args: tuple[Any, ...]) -> BaseException:
    error = cls.__new__(cls, *args)
    error.args = args  # (OSError's __new__ leaves them to __init__: TimeoutExceeded)
    return error


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


class CircuitBreakerOpenError(Rejected):
    """The circuit breaker refused the call. ``retry_after`` is the time left open (``inf``
    while isolated by hand); ``state`` the breaker's state when it refused (a
    ``CircuitState``, a ``str`` enum: ``error.state is CircuitState.HALF_OPEN``, and
    ``error.state == "half_open"``)."""

    def __init__(self, message: str, *, retry_after: float, breaker: str, state: str) -> None:
        super().__init__(message, retry_after=retry_after)
        self.breaker = breaker
        self.state = state


class Throttled(Rejected):
    """Client-side adaptive throttling refused the call locally (the backend is overloaded)."""


class BulkheadFull(Rejected):
    """Every slot of the bulkhead is busy and its wait queue is full, or the wait for a slot
    exceeded ``max_wait``. ``retry_after`` estimates when a slot frees up for a new caller,
    from the slots' recent hold times; ``None`` before any call has finished."""


class QueueFull(Rejected):
    """A backpressure queue refused an item (policy ``reject``, or ``block`` past its timeout).
    The item was not enqueued; ``item`` holds it."""

    def __init__(self, message: str, *, item: object = None) -> None:
        super().__init__(message)
        self.item = item


class LoadShed(Rejected):
    """The call was shed: its priority is below what the current load allows."""


class ConcurrencyLimited(Rejected):
    """An adaptive concurrency limiter is at its current limit."""


class TimeoutExceeded(ResilienceError, TimeoutError):
    """A deadline set through aioresilience expired. Also a builtin ``TimeoutError``.

    ``seconds`` is the duration that was exceeded."""

    def __init__(self, message: str, *, seconds: float) -> None:
        super().__init__(message)
        self.seconds = seconds


if sys.version_info >= (3, 13):

    class QueueClosed(ResilienceError, asyncio.QueueShutDown):
        """The backpressure queue was closed: no more puts; gets fail once it is empty.
        Also an ``asyncio.QueueShutDown``, the error of a shut-down ``asyncio.Queue``."""

else:  # asyncio.QueueShutDown is new in Python 3.13

    class QueueClosed(ResilienceError):
        """The backpressure queue was closed: no more puts; gets fail once it is empty."""


class ChaosFault(ResilienceError):
    """The exception chaos injection raises by default."""


class StoreError(ResilienceError):
    """A shared store failed in a way no failure policy covers: a key holding a foreign value,
    a server too old for the scripts. (An unreachable store is handled by the policy.)"""

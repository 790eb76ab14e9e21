"""Adaptive concurrency limiting: admit while in flight < limit, learn the limit from rtts.

``async with limiter:``, ``@limiter``, ``await limiter.call(fn, *args)``. A call over the
limit is refused with :class:`ConcurrencyLimited`. Each completed call feeds its round-trip
time, the in-flight count and whether it was *dropped* (a timeout, or an overload refusal from
further down: any :class:`Rejected`) to the algorithm; cancellations feed nothing.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from ._core import adaptive as _core
from ._support.clock import Clock, clock_option
from ._support.errors import ConcurrencyLimited, Rejected
from ._support.events import CallRejected, EventSource, ResilienceEvent, Severity
from ._support.guard import GuardForms, ticket_stack
from ._support.listeners import logger
from ._support.predicates import sync_callable
from ._support.validation import (
    finite_positive,
    fraction,
    non_negative,
    number,
    positive_int,
    text,
)

__all__ = [
    "AIMD",
    "AdaptiveLimiter",
    "AdaptiveStatistics",
    "ConcurrencyRejected",
    "Gradient2",
    "LimitAlgorithm",
    "LimitChanged",
    "Vegas",
]


_MAX_LIMIT = 1_000_000_000
_DROPS = (TimeoutError, Rejected)  # outcomes that mean "overloaded": timeouts, refusals


class LimitAlgorithm(Protocol):
    def update(self, limit: float, rtt: float, in_flight: int, dropped: bool) -> float: ...


# The algorithms as exported: the pure ones of ``_core.adaptive``, their options checked.


class AIMD(_core.AIMD):
    """Additive increase, multiplicative decrease: ``limit * backoff`` on a drop or an rtt
    over ``timeout``, ``limit + 1`` while the limit is in use."""

    __slots__ = ()

    def __init__(self, *, timeout: float = 5.0, backoff: float = 0.9) -> None:
        factor = number("backoff", backoff)
        if not 0 < factor < 1:
            raise ValueError(f"backoff must be in (0, 1), got {backoff!r}")
        super().__init__(timeout=finite_positive("timeout", timeout), backoff=factor)


class Vegas(_core.Vegas):
    """TCP Vegas applied to concurrency: grow while the queue estimated from the rtt over
    the no-load rtt is short, shrink when it is long."""

    __slots__ = ()

    def __init__(self, *, probe_multiplier: int = 30) -> None:
        # Bounded: it multiplies the (float) limit to count the updates between probes.
        super().__init__(
            probe_multiplier=positive_int("probe_multiplier", probe_multiplier, maximum=10**6)
        )


class Gradient2(_core.Gradient2):
    """Netflix's Gradient2: the limit follows the ratio of the long-term to the current rtt."""

    __slots__ = ()

    def __init__(
        self,
        *,
        tolerance: float = 1.5,
        smoothing: float = 0.2,
        queue_size: float = 4.0,
        long_window: int = 600,
    ) -> None:
        super().__init__(
            tolerance=finite_positive("tolerance", tolerance, minimum=1),
            smoothing=fraction("smoothing", smoothing, zero=False),
            queue_size=non_negative("queue_size", queue_size),
            # Bounded: the EMA divides a float by it.
            long_window=positive_int("long_window", long_window, maximum=10**9),
        )


@dataclass(frozen=True, slots=True)
class AdaptiveStatistics:
    name: str
    limit: int
    in_flight: int
    admitted: int
    rejected: int
    dropped: int
    history: tuple[tuple[float, int], ...]  # (time, limit) at each change, the latest 1000


@dataclass(frozen=True, slots=True, kw_only=True)
class ConcurrencyRejected(CallRejected):
    """A call was refused: ``limit`` calls already run."""

    name: ClassVar[str] = "concurrency_limited"

    limit: int


@dataclass(frozen=True, slots=True, kw_only=True)
class LimitChanged(ResilienceEvent):
    """The adaptive limit moved from ``old`` to ``new``."""

    name: ClassVar[str] = "limit_changed"
    severity: ClassVar[Severity] = Severity.DEBUG

    old: int
    new: int


class AdaptiveLimiter(GuardForms, EventSource):
    """Concurrency limit that adapts to the dependency (AIMD, Vegas or Gradient2)."""

    _keeps_ticket = True  # the ticket is the call's start time, for its rtt

    def __init__(
        self,
        algorithm: LimitAlgorithm | None = None,
        *,
        initial_limit: int = 20,
        min_limit: int = 1,
        max_limit: int = 1000,
        sample_window: float = 0.1,
        min_samples: int = 10,
        name: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.name = text("name", name, optional=True) or "AdaptiveLimiter"
        self._clock = clock_option("clock", clock)  # round-trip times and sample windows
        self.algorithm = algorithm if algorithm is not None else Vegas()
        update = getattr(self.algorithm, "update", None)
        if isinstance(self.algorithm, type) or not callable(update):
            raise TypeError(
                "algorithm must have update(limit, rtt, in_flight, dropped) (an instance), "
                f"got {algorithm!r}"
            )
        sync_callable("algorithm.update", update)  # its result is the new limit, not awaited
        self.min_limit = positive_int("min_limit", min_limit)
        # Bounded: the limit is learned as a float.
        self.max_limit = positive_int("max_limit", max_limit, maximum=_MAX_LIMIT)
        initial = positive_int("initial_limit", initial_limit)
        if not self.min_limit <= initial <= self.max_limit:
            raise ValueError(
                f"need min_limit <= initial_limit <= max_limit, got {min_limit!r}, "
                f"{initial_limit!r}, {max_limit!r}"
            )
        # Samples are aggregated over a window (as Netflix's WindowedLimit does) and the
        # algorithm sees the window's mean rtt, its peak in-flight count and whether anything
        # was dropped: single samples are noisy, and a limit changed per sample at high
        # throughput chases that noise.
        # (None: no window, as 0. An inf is refused: it would have meant no window too.)
        self.sample_window = (
            0.0 if sample_window is None else non_negative("sample_window", sample_window)
        )
        self.min_samples = positive_int("min_samples", min_samples)
        self._window_start = self._clock.time()
        self._rtt_sum = 0.0
        self._samples = 0
        self._peak_in_flight = 0
        self._window_dropped = False
        self._limit = float(initial)
        self._events = None
        self.limit = initial
        self.in_flight = 0
        self._admitted = self._rejected = self._dropped = 0
        self._history: deque[tuple[float, int]] = deque(
            [(self._clock.time(), initial)], maxlen=1000
        )
        # Start times of `async with` entries, per task (a stack, for nesting).
        self._tickets = ticket_stack(f"adaptive.{self.name}")

    def acquire(self) -> float:
        """Admit one call or raise :class:`ConcurrencyLimited`; returns its start time, to
        pass to :meth:`release`."""
        if self.in_flight >= self.limit:
            self._rejected += 1
            self._emit(ConcurrencyRejected, limit=self.limit)
            raise ConcurrencyLimited(
                f"{self.name}: {self.in_flight} in flight at limit {self.limit}"
            )
        self.in_flight += 1
        self._admitted += 1
        return self._clock.time()

    def release(self, started: float, exc: BaseException | None = None) -> None:
        """End a call: feed the algorithm unless it was cancelled. Raises ``ValueError`` if
        no call is in flight (as ``asyncio.BoundedSemaphore`` does)."""
        in_flight = self.in_flight
        if not in_flight:
            raise ValueError(f"{self.name}: release() without a call in flight")
        self.in_flight = in_flight - 1
        if exc is not None:
            if not isinstance(exc, Exception):
                return  # cancellation: not a measurement
            if isinstance(exc, _DROPS):
                self._dropped += 1
                self._window_dropped = True
        now = self._clock.time()
        self._rtt_sum += now - started
        samples = self._samples = self._samples + 1
        if in_flight > self._peak_in_flight:
            self._peak_in_flight = in_flight
        if samples < self.min_samples or now - self._window_start < self.sample_window:
            if now < self._window_start:  # made before its loop ran, on another clock reading
                self._window_start = now  # (a virtual-time loop's starts at 0)
            return
        self._update(now)

    def _update(self, now: float) -> None:
        """Feed the window's aggregate to the algorithm and start a new window."""
        rtt, peak, dropped = (
            self._rtt_sum / self._samples,
            self._peak_in_flight,
            self._window_dropped,
        )
        self._window_start = now
        self._rtt_sum, self._samples, self._peak_in_flight = 0.0, 0, 0
        self._window_dropped = False
        try:
            new = number("the new limit", self.algorithm.update(self._limit, rtt, peak, dropped))
        except Exception:
            # A faulty (user-supplied) algorithm must not fail the call that fed it.
            logger.exception("%s: %r failed to update the limit", self.name, self.algorithm)
            return
        self._limit = min(float(self.max_limit), max(float(self.min_limit), new))
        limit = int(self._limit)
        if limit != self.limit:
            self._emit(LimitChanged, old=self.limit, new=limit)
            self.limit = limit
            self._history.append((now, limit))

    # The guard's core (``async with``, ``@limiter``, ``call`` and pipelines): the ticket is
    # the start time.
    def _enter(self) -> float:
        return self.acquire()

    def _exit(self, ticket: float, exc: BaseException | None, result: Any) -> None:
        self.release(ticket, exc)

    def statistics(self) -> AdaptiveStatistics:
        return AdaptiveStatistics(
            name=self.name,
            limit=self.limit,
            in_flight=self.in_flight,
            admitted=self._admitted,
            rejected=self._rejected,
            dropped=self._dropped,
            history=tuple(self._history),
        )

    def __repr__(self) -> str:
        return (
            f"<AdaptiveLimiter {self.name!r} {self.algorithm!r} limit={self.limit} "
            f"in_flight={self.in_flight}>"
        )
